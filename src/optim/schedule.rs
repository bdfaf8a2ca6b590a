//! Learning-rate schedules by iteration (constant, poly, cosine, each with an optional linear
//! warm-up as mmcv's), and StyleGAN2's lazy-regularisation adjustment.

use std::f64::consts::PI;

/// The decay part of a schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    Constant,
    /// lr·((1 − min_factor)·(1 − it/max_iters)^power + min_factor); nnU-Net: power 0.9,
    /// min_factor 0; UperNet/Swin (mmseg): power 1.0, min_lr 0.
    Poly {
        max_iters: u64,
        power: f64,
        min_factor: f64,
    },
    /// lr·(min_factor + (1 − min_factor)·(1 + cos(π·it/max_iters))/2).
    Cosine {
        max_iters: u64,
        min_factor: f64,
    },
}

/// mmcv's linear warm-up: for it < iters the decayed lr is multiplied by
/// 1 − (1 − it/iters)·(1 − ratio), rising from `ratio` to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warmup {
    pub iters: u64,
    pub ratio: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub decay: Decay,
    pub warmup: Option<Warmup>,
}

impl LrSchedule {
    pub fn constant(base_lr: f64) -> Self {
        LrSchedule {
            base_lr,
            decay: Decay::Constant,
            warmup: None,
        }
    }
    /// nnU-Net's PolyLRScheduler: lr·(1 − it/max_iters)^power (power 0.9).
    pub fn poly(base_lr: f64, max_iters: u64, power: f64) -> Self {
        LrSchedule {
            base_lr,
            decay: Decay::Poly {
                max_iters,
                power,
                min_factor: 0.0,
            },
            warmup: None,
        }
    }
    pub fn cosine(base_lr: f64, max_iters: u64, min_factor: f64) -> Self {
        LrSchedule {
            base_lr,
            decay: Decay::Cosine {
                max_iters,
                min_factor,
            },
            warmup: None,
        }
    }
    /// Swin/UperNet: linear warm-up from `ratio`·lr over `iters`, then the decay.
    pub fn with_warmup(mut self, iters: u64, ratio: f64) -> Self {
        self.warmup = Some(Warmup { iters, ratio });
        self
    }

    /// Learning rate at iteration `it` (0-based; iterations past the end keep the final value).
    pub fn lr_at(&self, it: u64) -> f64 {
        let progress = |max: u64| {
            if max == 0 {
                1.0
            } else {
                it.min(max) as f64 / max as f64
            }
        };
        let mut f = match self.decay {
            Decay::Constant => 1.0,
            Decay::Poly {
                max_iters,
                power,
                min_factor,
            } => (1.0 - min_factor) * (1.0 - progress(max_iters)).powf(power) + min_factor,
            Decay::Cosine {
                max_iters,
                min_factor,
            } => min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (PI * progress(max_iters)).cos()),
        };
        if let Some(w) = self.warmup
            && it < w.iters
        {
            let k = (1.0 - it as f64 / w.iters as f64) * (1.0 - w.ratio);
            f *= 1.0 - k;
        }
        self.base_lr * f
    }
}

/// StyleGAN2's lazy regularisation: with the regulariser run every `interval` minibatches, the
/// optimiser's lr and betas are adjusted by mb_ratio = k/(k+1): lr·mb_ratio, βᵢ^mb_ratio.
/// `None` or 0 leaves them unchanged.
pub fn lazy_regularization(lr: f64, betas: (f64, f64), interval: Option<u32>) -> (f64, (f64, f64)) {
    match interval {
        Some(k) if k > 0 => {
            let r = k as f64 / (k as f64 + 1.0);
            (lr * r, (betas.0.powf(r), betas.1.powf(r)))
        }
        _ => (lr, betas),
    }
}
