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
/// - one segmenter pair: U-Net 1200 steps (≈ 100 s) + Swin 600 steps (≈ 132 s) + tests ≈ 4 min;
///   the real baseline and every synthetic variant use this same budget, so the synthetic/real
///   ratio compares equal training;
/// - six pairs (real + five generators): ≈ 24 min;
/// - five generators, each for the images of [`QUICK_GEN_KIMG`] (≈ 6 min each): ≈ 30 min;
/// - 300 images each: the GANs within ~2 min together, the diffusion model with DDIM over 10
///   steps (3000 image-steps) ≤ 15 min loaded, a few minutes quiet; audits and measures: seconds;
/// - total on a quiet machine ≈ 24 + 30 + 5 + phantom and slicing (< 1 min) ≈ 60 min.
///
/// Every budget counts steps or images; none is a wall-clock limit, so a study's numbers do not
/// depend on the machine's load.
///
/// `paper` keeps the paper's budgets (100,000 synthetic images, full-length trainings, the
/// diffusion model's ancestral sampler over all 4000 steps) and is meant for GPUs.
/// The quick study's training length per generator (kimg), with the seconds each is expected
/// to take on two quiet CPU cores (for the progress view only). Sized from CPU time measured with
/// `train-gen --time-limit 0` on the 24-subject phantom (CPU-seconds per kimg: StyleGAN2 63,
/// ProGAN 113 over its first 12 kimg of growing, StyleGAN 1 124 over its first 8, the diffusion
/// model 227, StyleGAN3-T 1300 before its fused filtered leaky ReLU and about 4.5× StyleGAN2
/// after) so that each trains for about six minutes. These budgets are far
/// below what a GAN or a diffusion model needs to learn the phantom's tumours (see README).
pub const QUICK_GEN_KIMG: [(&str, f64, f64); 5] = [
    ("progan", 8.0, 400.0),
    ("stylegan1", 6.0, 500.0),
    ("stylegan2", 8.0, 340.0),
    ("stylegan3", 1.6, 380.0),
    ("diffusion", 2.4, 360.0),
];

/// Expected seconds per segmenter step of the quick profile on two quiet cores (progress view).
const QUICK_SEG_STEP_S: [(SegKind, f64); 2] = [(SegKind::UNet, 0.09), (SegKind::Swin, 0.22)];

#[derive(Clone, Debug)]
pub struct StudyProfile {
    /// The segmenters' networks and training budget (the same for real and synthetic data).
    pub seg: SegProfile,
    /// Name of the generators' size profile (`GanProfile`, `DiffusionTrainConfig`).
    pub gen_profile: &'static str,
    /// Training length of each generator in thousands of training images, and the seconds it
    /// is expected to take, by generator name (a generator not listed trains for its profile's
    /// own length).
    pub gen_kimg: Vec<(&'static str, f64, f64)>,
    /// One training length for every generator (`--gen-kimg`), before `gen_kimg`.
    pub gen_kimg_all: Option<f64>,
    /// An optional wall-clock cap on each generator's training (`--gen-time-limit`). Off by
    /// default: a cap makes the result depend on the machine's speed and load.
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
        // step budgets, not wall-clock ones: the same command gives the same numbers on a busy
        // machine (only slower)
        seg.time_limit = None;
        StudyProfile {
            seg,
            gen_profile: "quick",
            gen_kimg: QUICK_GEN_KIMG.to_vec(),
            gen_kimg_all: None,
            gen_time_limit: None,
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
            gen_kimg: Vec::new(),
            gen_kimg_all: None,
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

    /// The training length of generator `name` in kimg, or None for its profile's own.
    pub fn gen_kimg(&self, name: &str) -> Option<f64> {
        self.gen_kimg_all.or_else(|| {
            self.gen_kimg
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|&(_, k, _)| k)
        })
    }

    /// Seconds generator `name`'s training is expected to take (for the progress view): its
    /// time cap, else its table entry scaled to the budget, else an hour.
    pub fn gen_estimate_s(&self, name: &str) -> f64 {
        if let Some(t) = self.gen_time_limit {
            return t.as_secs_f64();
        }
        self.gen_kimg
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or(3600.0, |&(_, k, s)| {
                s * self.gen_kimg(name).unwrap_or(k) / k
            })
    }

    /// Seconds a segmenter's training is expected to take (for the progress view).
    pub fn seg_estimate_s(&self, kind: SegKind) -> f64 {
        if let Some(t) = self.seg.time_limit {
            return t.as_secs_f64();
        }
        let iterations = self.seg.train_config(kind, 0).iterations as f64;
        match QUICK_SEG_STEP_S.iter().find(|(k, _)| *k == kind) {
            Some(&(_, s)) if self.gen_profile == "quick" => iterations * s,
            _ => 600.0,
        }
    }

    /// The profile as `key = value` lines, for the results file.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut v = self.seg.describe();
        v.push(("generator_profile".into(), self.gen_profile.into()));
        if let Some(k) = self.gen_kimg_all {
            v.push(("generator_kimg".into(), format!("{k}")));
        } else if !self.gen_kimg.is_empty() {
            let list: Vec<String> = self
                .gen_kimg
                .iter()
                .map(|(n, k, _)| format!("{n} {k}"))
                .collect();
            v.push(("generator_kimg".into(), list.join(", ")));
        }
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
    /// The test split: `paper` (the study's own, BraTS 2020/2021) or a split file; None: the
    /// study's own under the paper profile on BraTS 2020/2021 cases, else seeded.
    pub split: Option<String>,
    /// Where the models train, sample and are tested.
    pub device: Device,
    /// The memorisation experiment (empty: not run): each of `memorization_generators` is
    /// also trained on the slices of only this many training subjects (the first ones of the
    /// generators' training subjects), sampled and audited against those slices, to see how
    /// memorisation depends on the size of the training set.
    pub memorization_sizes: Vec<usize>,
    /// The generators of the memorisation experiment.
    pub memorization_generators: Vec<&'static GeneratorSpec>,
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
        if !self.memorization_sizes.is_empty() {
            if self.memorization_generators.is_empty() {
                return Err(Error::invalid(
                    "study",
                    "--memorization-sizes needs at least one generator to train \
                     (--memorization-generators)",
                ));
            }
            let mut sizes = self.memorization_sizes.clone();
            sizes.sort_unstable();
            sizes.dedup();
            if sizes.len() != self.memorization_sizes.len() || sizes[0] == 0 {
                return Err(Error::invalid(
                    "study",
                    format!(
                        "--memorization-sizes must be distinct numbers of subjects >= 1, not {:?}",
                        self.memorization_sizes
                    ),
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::generators::GENERATORS;

    /// The quick study runs on step and image budgets only, so its numbers do not depend on how
    /// busy the machine is; every generator of the study has its own budget.
    #[test]
    fn quick_study_has_no_wall_clock_limits_and_a_budget_per_generator() {
        let p = StudyProfile::quick();
        assert_eq!(p.seg.time_limit, None);
        assert_eq!(p.gen_time_limit, None);
        for g in &GENERATORS {
            let k = p.gen_kimg(g.name);
            assert!(k.is_some_and(|k| k > 0.0), "{} has no budget", g.name);
        }
        assert_eq!(p.gen_kimg("no-such-generator"), None);
    }

    #[test]
    fn one_budget_for_all_overrides_the_table() {
        let mut p = StudyProfile::quick();
        p.gen_kimg_all = Some(0.5);
        for g in &GENERATORS {
            assert_eq!(p.gen_kimg(g.name), Some(0.5));
        }
        assert!(
            p.describe()
                .iter()
                .any(|(k, v)| k == "generator_kimg" && v == "0.5")
        );
        assert_eq!(StudyProfile::paper().gen_kimg("stylegan2"), None);
    }
}
