//! What a study run is decided by: its data, its budgets (the study profile), and which
//! generators, segmenters, variants and seeds it covers.

use std::path::PathBuf;
use std::time::Duration;

use crate::models::diffusion::Sampler;
use crate::tensor::Device;
use crate::train::profile::SegProfile;
use crate::train::seg::SegKind;
use crate::{Error, Result};

use super::generators::GeneratorSpec;
use super::variants::Variant;

/// Where the study's slices come from.
#[derive(Clone, Debug)]
pub enum StudyData {
    /// Generate the embedded phantom (this many subjects, this seed).
    Phantom { subjects: usize, seed: u64 },
    /// BraTS case folders under this directory.
    Cases(PathBuf),
    /// A slice store written by `prepare`.
    Store(PathBuf),
}

impl StudyData {
    /// The data source as the study's configuration records it.
    pub fn describe(&self) -> String {
        match self {
            StudyData::Phantom { subjects, seed } => {
                format!("phantom, {subjects} subjects, seed {seed}")
            }
            StudyData::Cases(d) => format!("cases in {}", d.display()),
            StudyData::Store(p) => format!("slice store {}", p.display()),
        }
    }
}

/// The budgets of every stage: the segmenters' profile (networks, steps, time limit) and the
/// generators' share.
///
/// `quick` is sized so that the default study (real baseline, then for each of the five
/// generators: training, sampling, audit and both segmenters on the synthetic-only variant) fits
/// in 75 minutes on two CPU cores. The arithmetic starts from speeds measured on this project's
/// 2-core machine: U-Net 2700 steps in 225 s (0.083 s a step) and Swin 2000 steps in 440 s
/// (0.22 s a step) when the machine was quiet; sampling under a load of ~14 processes on the two
/// cores: StyleGAN2 16 images in 1 s, StyleGAN3-T 16 in 22 s, the diffusion model 16 with DDIM
/// over 20 steps in 100 s (so ~0.3 s per image and step loaded, less when quiet):
///
/// - one segmenter pair: U-Net 1200 steps (≈ 100 s) + Swin 600 steps (≈ 132 s) + tests ≈ 4 min,
///   each capped at 150 s; the real baseline and every synthetic variant use this same budget,
///   so the synthetic/real ratio compares equal training;
/// - six pairs (real + five generators): ≈ 24 min;
/// - five generators × 6 min of training: 30 min;
/// - 300 images each: the GANs within ~2 min together, the diffusion model with DDIM over 10
///   steps (3000 image-steps) ≤ 15 min loaded, a few minutes quiet; audits and measures: seconds;
/// - total on a quiet machine ≈ 24 + 30 + 5 + phantom and slicing (< 1 min) ≈ 60 min.
///
/// `paper` keeps the paper's budgets (100,000 synthetic images, full-length trainings, the
/// diffusion model's ancestral sampler over all 4000 steps) and is meant for GPUs.
#[derive(Clone, Debug)]
pub struct StudyProfile {
    /// The segmenters' networks and training budget (the same for real and synthetic data).
    pub seg: SegProfile,
    /// Name of the generators' size profile (`GanProfile`, `DiffusionTrainConfig`).
    pub gen_profile: &'static str,
    /// Wall-clock budget of each generator's training (None: the generator profile's own run
    /// length decides).
    pub gen_time_limit: Option<Duration>,
    /// Synthetic images each generator makes.
    pub n_synthetic: usize,
    /// Sampler of the diffusion model.
    pub diffusion_sampler: Sampler,
    /// Images per forward pass when sampling.
    pub sample_batch: usize,
    /// Truncation ψ of the style-based GANs (1: none, as the paper for StyleGAN2/3).
    pub psi: f64,
}

impl StudyProfile {
    pub fn quick() -> Self {
        let mut seg = SegProfile::quick();
        seg.unet.iterations = 1200;
        seg.unet.val_every = 150;
        seg.swin.iterations = 600;
        seg.swin.val_every = 50;
        seg.time_limit = Some(Duration::from_secs(150));
        StudyProfile {
            seg,
            gen_profile: "quick",
            gen_time_limit: Some(Duration::from_secs(6 * 60)),
            n_synthetic: 300,
            diffusion_sampler: Sampler::Ddim(10),
            sample_batch: 16,
            psi: 1.0,
        }
    }

    pub fn paper() -> Self {
        StudyProfile {
            seg: SegProfile::paper(),
            gen_profile: "paper",
            gen_time_limit: None,
            n_synthetic: 100_000,
            diffusion_sampler: Sampler::Ancestral,
            sample_batch: 32,
            psi: 1.0,
        }
    }

    pub fn by_name(name: &str) -> Result<Self> {
        match name {
            "quick" => Ok(Self::quick()),
            "paper" => Ok(Self::paper()),
            _ => Err(Error::invalid(
                "profile",
                format!("'{name}' is not a profile; use quick or paper"),
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        self.seg.name
    }

    /// The profile as `key = value` lines, for the results file.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut v = self.seg.describe();
        v.push(("generator_profile".into(), self.gen_profile.into()));
        v.push((
            "generator_time_limit".into(),
            self.gen_time_limit
                .map_or("none".into(), |t| format!("{} s", t.as_secs())),
        ));
        v.push(("n_synthetic".into(), self.n_synthetic.to_string()));
        v.push((
            "diffusion_sampler".into(),
            format!("{:?}", self.diffusion_sampler),
        ));
        v.push(("psi".into(), self.psi.to_string()));
        v
    }
}

/// How to run the study.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    pub profile: StudyProfile,
    pub data: StudyData,
    pub out: PathBuf,
    /// Generators compared with the real baseline (none: the real baseline alone).
    pub generators: Vec<&'static GeneratorSpec>,
    pub segmenters: Vec<SegKind>,
    /// Ways of training on a synthetic set.
    pub variants: Vec<Variant>,
    pub seeds: Vec<u64>,
    /// Seed of the subject split (fixed across training seeds, as in the paper).
    pub split_seed: u64,
    /// Where the models train, sample and are tested.
    pub device: Device,
}

impl StudyOptions {
    /// Errors for selections that cannot run.
    pub fn check(&self) -> Result<()> {
        if self.segmenters.is_empty() || self.seeds.is_empty() {
            return Err(Error::invalid(
                "study",
                "at least one segmenter and one seed are needed",
            ));
        }
        if !self.generators.is_empty() && self.variants.is_empty() {
            return Err(Error::invalid(
                "study",
                "generators were chosen but no variant to train on their images",
            ));
        }
        if self.profile.n_synthetic < 5 {
            return Err(Error::invalid(
                "study",
                format!(
                    "--n-synthetic {} is too few: the synthetic set is split 80/20 into training \
                     and validation, so at least 5 images are needed",
                    self.profile.n_synthetic
                ),
            ));
        }
        if self.profile.sample_batch == 0 {
            return Err(Error::invalid(
                "study",
                "the sampling batch must be at least 1",
            ));
        }
        Ok(())
    }
}
