//! Progressive growing, shared by the Progressive GAN and StyleGAN 1, as NVlabs' TensorFlow code
//! runs it (`progressive_growing_of_gans` and `stylegan`: `train.py`'s `TrainingSchedule` and
//! `process_reals`, `networks.py`'s "recursive" structure).
//!
//! Conventions:
//! - **level** 0 is 4×4, level ℓ makes (4·2^ℓ)×(4·2^ℓ) images, the top level log2(R) − 2 the final
//!   resolution R. NVlabs counts the other way (`lod` = top level − level, fractional while a level
//!   fades in); [`GrowthSchedule::lod`] gives their number.
//! - **α** is the weight of the newest level while it fades in: the output is
//!   `lerp(new, old, 1 − α)` (NVlabs' `lerp(x, y, lod_in − lod)`), α = 1 once the level is stable.
//!   The generator blends its new toRGB with the previous level's toRGB output, nearest-upsampled
//!   2×; the discriminator blends its new block's output with the previous level's fromRGB of the
//!   2×2 average-pooled image ([`fade`], [`upsample2x`], [`downsample2x`]). Both are linear in the
//!   network outputs, so gradients of any order pass through.
//! - **Schedule** per phase of `training_kimg + transition_kimg` thousand images: the level trains
//!   stable, then the next one fades in (α from 0 to 1); the top level then trains for ever.
//! - Networks run at the current level's resolution (NVlabs runs them at the final resolution on
//!   nearest-upscaled images, which gives the same numbers: an average pool undoes the upscale).
//!   Reals are average-pooled to that resolution ([`reals_at_level`], NVlabs' dataset mip-maps)
//!   and, during a fade-in, blended with their own 2×-down-then-up copy ([`fade_reals`], NVlabs'
//!   `FadeLOD`), so D sees reals and fakes equally blurred.

use rand::{Rng, RngExt};

use super::loss::{GrowingLoss, backward_params, mirror, sanitize_grads};
use crate::nn::ParamStore;
use crate::ops::resize::{avg_pool2d, resize_nearest};
use crate::optim::{Adam, AdamConfig, Ema, Optimizer};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Where a growing network stands: its level and the weight of that level during its fade-in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Growth {
    /// 0 = 4×4, top = log2(R) − 2.
    pub level: usize,
    /// Weight of the newest level during its fade-in in [0, 1]; 1 = stable.
    pub alpha: f64,
}

impl Growth {
    /// Level `level`, fully faded in.
    pub fn stable(level: usize) -> Growth {
        Growth { level, alpha: 1.0 }
    }

    /// The image side at this level.
    pub fn resolution(&self) -> usize {
        4usize << self.level
    }

    /// Whether the previous level still shows (α < 1 above level 0).
    pub fn is_fading(&self) -> bool {
        self.level > 0 && self.alpha < 1.0
    }

    /// Check against a network whose top level is `top_level`.
    pub fn validate(&self, top_level: usize) -> Result<()> {
        if self.level > top_level {
            return Err(Error::invalid(
                "Growth",
                format!(
                    "level {} ({}×{}) is above this network's top level {top_level} ({}×{})",
                    self.level,
                    self.resolution(),
                    self.resolution(),
                    4usize << top_level,
                    4usize << top_level
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::invalid(
                "Growth",
                format!("fade-in weight α = {} must lie in [0, 1]", self.alpha),
            ));
        }
        Ok(())
    }
}

/// The top level of a network of side `resolution` (a power of two ≥ 4).
pub fn top_level_for(resolution: usize) -> Result<usize> {
    if resolution < 4 || !resolution.is_power_of_two() {
        return Err(Error::invalid(
            "progressive growing",
            format!("resolution {resolution} must be a power of two ≥ 4"),
        ));
    }
    Ok(resolution.trailing_zeros() as usize - 2)
}

/// NVlabs' `TrainingSchedule`: level of detail, minibatch and learning rate as functions of the
/// number of real images shown.
#[derive(Clone, Debug, PartialEq)]
pub struct GrowthSchedule {
    /// Final image side R.
    pub final_resolution: usize,
    /// Side at the start (`lod_initial_resolution`: 4 for ProGAN, 8 for NVlabs' StyleGAN config).
    pub initial_resolution: usize,
    /// Thousands of images per level shown stable (`lod_training_kimg`).
    pub training_kimg: f64,
    /// Thousands of images per fade-in (`lod_transition_kimg`).
    pub transition_kimg: f64,
    /// Minibatch where `batch_per_resolution` says nothing (`minibatch_base`).
    pub batch_base: usize,
    /// Minibatch by resolution (`minibatch_dict`).
    pub batch_per_resolution: Vec<(usize, usize)>,
    /// Learning rate by resolution (`G_lrate_dict`, used for D too), else the trainer's base rate.
    pub lr_per_resolution: Vec<(usize, f64)>,
    /// Minibatches between schedule updates (`minibatch_repeats`, 4 in both NVlabs codes).
    pub minibatch_repeats: u64,
}

/// One evaluation of the schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleAt {
    /// NVlabs' level of detail (0 = final resolution; fractional while fading).
    pub lod: f64,
    pub growth: Growth,
    pub batch: usize,
}

impl GrowthSchedule {
    pub fn validate(&self) -> Result<()> {
        let op = "GrowthSchedule";
        top_level_for(self.final_resolution)?;
        top_level_for(self.initial_resolution)?;
        if self.initial_resolution > self.final_resolution {
            return Err(Error::invalid(
                op,
                format!(
                    "initial resolution {} exceeds the final resolution {}",
                    self.initial_resolution, self.final_resolution
                ),
            ));
        }
        for (name, v) in [
            ("training kimg", self.training_kimg),
            ("transition kimg", self.transition_kimg),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(
                    op,
                    format!("{name} must be a finite number >= 0, not {v}"),
                ));
            }
        }
        if self.batch_base == 0
            || self.batch_per_resolution.iter().any(|&(_, b)| b == 0)
            || self.minibatch_repeats == 0
        {
            return Err(Error::invalid(
                op,
                "minibatch sizes and minibatch repeats must be at least 1",
            ));
        }
        if let Some(&(r, lr)) = self
            .lr_per_resolution
            .iter()
            .find(|(_, lr)| !(lr.is_finite() && *lr > 0.0))
        {
            return Err(Error::invalid(
                op,
                format!("learning rate {lr} at resolution {r} must be a number > 0"),
            ));
        }
        Ok(())
    }

    pub fn top_level(&self) -> usize {
        top_level_for(self.final_resolution).unwrap_or(0)
    }

    /// NVlabs' lod after `cur_nimg` images: per phase of `training + transition` kimg, stable at
    /// the phase's level, then decreasing linearly by 1 during the transition; never below 0.
    pub fn lod(&self, cur_nimg: u64) -> f64 {
        let kimg = cur_nimg as f64 / 1000.0;
        let phase_dur = self.training_kimg + self.transition_kimg;
        let phase_idx = if phase_dur > 0.0 {
            (kimg / phase_dur).floor()
        } else {
            0.0
        };
        let phase_kimg = kimg - phase_idx * phase_dur;
        let mut lod = self.final_resolution.trailing_zeros() as f64
            - self.initial_resolution.trailing_zeros() as f64
            - phase_idx;
        if self.transition_kimg > 0.0 {
            lod -= (phase_kimg - self.training_kimg).max(0.0) / self.transition_kimg;
        }
        lod.max(0.0)
    }

    /// Level and α for a lod: the resolution is 2^(log2 R − ⌊lod⌋) (during a fade-in the new,
    /// larger one) and α = 1 − (lod − ⌊lod⌋).
    pub fn growth_for_lod(&self, lod: f64) -> Growth {
        let top = self.top_level();
        let fl = lod.floor().max(0.0) as usize;
        Growth {
            level: top.saturating_sub(fl),
            alpha: 1.0 - (lod - lod.floor()),
        }
    }

    /// The schedule after `cur_nimg` images.
    pub fn at(&self, cur_nimg: u64) -> ScheduleAt {
        let lod = self.lod(cur_nimg);
        let growth = self.growth_for_lod(lod);
        ScheduleAt {
            lod,
            growth,
            batch: self.batch_at(growth.resolution()),
        }
    }

    /// Minibatch at image side `resolution`.
    pub fn batch_at(&self, resolution: usize) -> usize {
        self.batch_per_resolution
            .iter()
            .find(|(r, _)| *r == resolution)
            .map_or(self.batch_base, |&(_, b)| b)
    }

    /// Learning rate at image side `resolution`, `base` where the schedule sets none.
    pub fn lr_at(&self, resolution: usize, base: f64) -> f64 {
        self.lr_per_resolution
            .iter()
            .find(|(r, _)| *r == resolution)
            .map_or(base, |&(_, lr)| lr)
    }

    /// Images until the top level is stable: every level below it trains and the top one fades in.
    pub fn kimg_to_top(&self) -> f64 {
        let levels = (self.final_resolution.trailing_zeros()
            - self.initial_resolution.trailing_zeros()) as f64;
        levels * (self.training_kimg + self.transition_kimg)
    }

    /// NVlabs' `reset_opt_for_new_lod`: the optimisers' moments are cleared when ⌊lod⌋ or ⌈lod⌉
    /// changes, i.e. when a fade-in starts or a level becomes stable.
    pub fn resets_optimizers(prev_lod: Option<f64>, lod: f64) -> bool {
        match prev_lod {
            None => false,
            Some(p) => p.floor() != lod.floor() || p.ceil() != lod.ceil(),
        }
    }

    /// A one-line description for checkpoints: resuming under another schedule is refused.
    pub fn describe(&self) -> String {
        let pairs = |v: &[(usize, String)]| {
            v.iter()
                .map(|(r, x)| format!("{r}:{x}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let batches: Vec<(usize, String)> = self
            .batch_per_resolution
            .iter()
            .map(|&(r, b)| (r, b.to_string()))
            .collect();
        let lrs: Vec<(usize, String)> = self
            .lr_per_resolution
            .iter()
            .map(|&(r, l)| (r, format!("{l}")))
            .collect();
        format!(
            "R {} from {}, {} + {} kimg per level, batch {} {{{}}}, lr {{{}}}, repeats {}",
            self.final_resolution,
            self.initial_resolution,
            self.training_kimg,
            self.transition_kimg,
            self.batch_base,
            pairs(&batches),
            pairs(&lrs),
            self.minibatch_repeats
        )
    }
}

fn check_nchw(op: &'static str, x: &Tensor) -> Result<()> {
    if x.rank() != 4 {
        return Err(Error::shape(
            op,
            format!("images must be [N, C, H, W], got {:?}", x.shape()),
        ));
    }
    Ok(())
}

/// Nearest-neighbour 2× up-sampling (NVlabs' `upscale2d`: each pixel becomes a 2×2 block).
pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
    check_nchw("upsample2x", x)?;
    let s = x.shape();
    resize_nearest(x, (s[2] * 2, s[3] * 2))
}

/// 2×2 average pooling (NVlabs' `downscale2d`).
pub fn downsample2x(x: &Tensor) -> Result<Tensor> {
    check_nchw("downsample2x", x)?;
    let s = x.shape();
    if !s[2].is_multiple_of(2) || !s[3].is_multiple_of(2) {
        return Err(Error::shape(
            "downsample2x",
            format!("images {s:?} must have an even height and width"),
        ));
    }
    avg_pool2d(x, (2, 2), (2, 2), (0, 0))
}

/// The fade-in blend `lerp(new, old, 1 − α)` = new + (old − new)·(1 − α) of two tensors of one
/// shape; at α = 1 `new` itself.
pub fn fade(new: &Tensor, old: &Tensor, alpha: f64) -> Result<Tensor> {
    if new.shape() != old.shape() {
        return Err(Error::shape(
            "fade",
            format!(
                "the new level's output {:?} and the previous level's {:?} differ in shape",
                new.shape(),
                old.shape()
            ),
        ));
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::invalid(
            "fade",
            format!("α = {alpha} must lie in [0, 1]"),
        ));
    }
    if alpha == 1.0 {
        return Ok(new.clone());
    }
    new.add(&old.sub(new)?.mul_scalar(1.0 - alpha)?)
}

/// The generator side of a fade-in: the new level's image blended with the previous level's
/// image (half the side), nearest-upsampled.
pub fn fade_rgb(new_rgb: &Tensor, old_rgb: &Tensor, alpha: f64) -> Result<Tensor> {
    fade(new_rgb, &upsample2x(old_rgb)?, alpha)
}

/// Full-resolution images average-pooled down to the side of `level` (repeated 2×2 means, as
/// NVlabs' dataset mip-maps).
pub fn reals_at_level(x: &Tensor, level: usize) -> Result<Tensor> {
    check_nchw("reals_at_level", x)?;
    let want = 4usize << level;
    let (h, w) = (x.shape()[2], x.shape()[3]);
    if h != w || h < want || !h.is_power_of_two() {
        return Err(Error::shape(
            "reals_at_level",
            format!(
                "images {:?} must be square, a power of two and at least {want}×{want}",
                x.shape()
            ),
        ));
    }
    let mut y = x.clone();
    while y.shape()[2] > want {
        y = downsample2x(&y)?;
    }
    Ok(y)
}

/// NVlabs' `FadeLOD` on reals at the current level's side: `lerp(x, up(down(x)), 1 − α)`.
pub fn fade_reals(x: &Tensor, alpha: f64) -> Result<Tensor> {
    if alpha == 1.0 {
        return Ok(x.clone());
    }
    fade(x, &upsample2x(&downsample2x(x)?)?, alpha)
}

/// Truncation at sampling (StyleGAN 1: ψ and the number of layers it applies to; ProGAN has none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truncation {
    /// 1 = no truncation.
    pub psi: f64,
    /// Truncate only the first `cutoff` style layers (None: the network's default).
    pub cutoff: Option<usize>,
}

impl Truncation {
    pub const NONE: Truncation = Truncation {
        psi: 1.0,
        cutoff: None,
    };

    pub fn is_none(&self) -> bool {
        self.psi == 1.0
    }
}

/// What progressive training and sampling need of a growing generator.
pub trait GrowingGenerator {
    /// Trainable parameters and buffers.
    fn store(&self) -> &ParamStore;
    /// Latent size.
    fn z_dim(&self) -> usize;
    /// log2(R) − 2.
    fn top_level(&self) -> usize;
    /// z [N, z_dim] → images [N, C, r, r] at `growth` (r its resolution), in training mode: fresh
    /// noise and style mixing from `rng` where the network has them, tracked statistics (StyleGAN
    /// 1's average w) moved when `update_emas`.
    fn forward_train(
        &self,
        z: &Tensor,
        growth: Growth,
        update_emas: bool,
        rng: &mut dyn Rng,
    ) -> Result<Tensor>;
    /// z → images at `growth` for display and `generate`: deterministic given z (constant noise),
    /// with truncation (an error on networks without it unless `trunc.is_none()`).
    fn sample(&self, z: &Tensor, growth: Growth, trunc: Truncation) -> Result<Tensor>;
}

/// What progressive training needs of a growing discriminator.
pub trait GrowingDiscriminator {
    fn store(&self) -> &ParamStore;
    fn top_level(&self) -> usize;
    /// images [N, C, r, r] at `growth` → scores [N, 1].
    fn forward(&self, img: &Tensor, growth: Growth) -> Result<Tensor>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched() -> GrowthSchedule {
        GrowthSchedule {
            final_resolution: 32,
            initial_resolution: 4,
            training_kimg: 1.0,
            transition_kimg: 2.0,
            batch_base: 4,
            batch_per_resolution: vec![(4, 16), (8, 8)],
            lr_per_resolution: vec![(32, 0.002)],
            minibatch_repeats: 4,
        }
    }

    #[test]
    fn schedule_trains_then_fades_each_level() {
        let s = sched();
        s.validate().unwrap();
        assert_eq!(s.top_level(), 3);
        // phase 0: 4×4 stable for 1 kimg, then 8×8 fades in over 2 kimg
        assert_eq!(s.at(0).growth, Growth::stable(0));
        assert_eq!(s.at(999).growth, Growth::stable(0));
        let g = s.at(2000).growth;
        assert_eq!(g.level, 1);
        assert!((g.alpha - 0.5).abs() < 1e-12);
        assert_eq!(s.at(3000).growth, Growth::stable(1));
        // 16 fades in over [4, 6) kimg, 32 over [7, 9), then 32 forever
        assert!((s.at(5000).growth.alpha - 0.5).abs() < 1e-12);
        assert_eq!(s.at(5000).growth.level, 2);
        assert_eq!(s.at(9000).growth, Growth::stable(3));
        assert_eq!(s.at(100_000).growth, Growth::stable(3));
        assert_eq!(s.kimg_to_top(), 9.0);
        assert_eq!(s.at(0).batch, 16);
        assert_eq!(s.at(2000).batch, 8);
        assert_eq!(s.at(9000).batch, 4);
        assert_eq!(s.lr_at(32, 0.001), 0.002);
        assert_eq!(s.lr_at(16, 0.001), 0.001);
    }

    #[test]
    fn optimizers_reset_when_a_fade_starts_or_ends() {
        let s = sched();
        let l = |n| Some(s.lod(n));
        assert!(!GrowthSchedule::resets_optimizers(None, s.lod(0)));
        assert!(!GrowthSchedule::resets_optimizers(l(0), s.lod(900)));
        assert!(GrowthSchedule::resets_optimizers(l(900), s.lod(1100)));
        assert!(!GrowthSchedule::resets_optimizers(l(1100), s.lod(2900)));
        assert!(GrowthSchedule::resets_optimizers(l(2900), s.lod(3000)));
    }

    #[test]
    fn bad_schedules_and_growth_are_refused() {
        let mut s = sched();
        s.final_resolution = 48;
        assert!(s.validate().is_err());
        let mut s = sched();
        s.batch_base = 0;
        assert!(s.validate().is_err());
        assert!(
            Growth {
                level: 4,
                alpha: 1.0
            }
            .validate(3)
            .is_err()
        );
        assert!(
            Growth {
                level: 1,
                alpha: 1.5
            }
            .validate(3)
            .is_err()
        );
    }
}

// ---- the training step ---------------------------------------------------------------------------

/// How G_ema's β is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EmaRule {
    /// A fixed β per minibatch (ProGAN's `G_smoothing` 0.999).
    Beta(f64),
    /// Half-life in thousands of images (StyleGAN 1's `G_smoothing_kimg` 10).
    HalfLifeKimg(f64),
}

/// Everything of a progressive run's training step (NVlabs' `train.py` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressiveConfig {
    pub schedule: GrowthSchedule,
    pub loss: GrowingLoss,
    /// Base learning rates (the schedule may override them per resolution).
    pub g_lr: f64,
    pub d_lr: f64,
    /// Adam β1, β2 (0, 0.99) and ε 1e-8.
    pub betas: (f64, f64),
    pub ema: EmaRule,
    /// x-flip each real with probability ½ (all five channels).
    pub mirror: bool,
    /// Clear the optimisers when a fade-in starts or ends (`reset_opt_for_new_lod`).
    pub reset_opt_for_new_lod: bool,
}

impl ProgressiveConfig {
    /// ProGAN's `train.py`: WGAN-GP, lr 0.001, Adam (0, 0.99), G_smoothing 0.999, optimisers
    /// reset per level of detail.
    pub fn progan(schedule: GrowthSchedule) -> ProgressiveConfig {
        ProgressiveConfig {
            schedule,
            loss: GrowingLoss::PROGAN,
            g_lr: 0.001,
            d_lr: 0.001,
            betas: (0.0, 0.99),
            ema: EmaRule::Beta(0.999),
            mirror: true,
            reset_opt_for_new_lod: true,
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.schedule.validate()?;
        self.loss.validate()?;
        for (name, v) in [
            ("G learning rate", self.g_lr),
            ("D learning rate", self.d_lr),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(
                    "ProgressiveConfig",
                    format!("{name} must be a number > 0, not {v}"),
                ));
            }
        }
        match self.ema {
            EmaRule::Beta(b) if !(0.0..1.0).contains(&b) => Err(Error::invalid(
                "ProgressiveConfig",
                format!("EMA β {b} must lie in [0, 1)"),
            )),
            EmaRule::HalfLifeKimg(k) if !(k.is_finite() && k > 0.0) => Err(Error::invalid(
                "ProgressiveConfig",
                format!("EMA half-life {k} kimg must be > 0"),
            )),
            _ => Ok(()),
        }
    }
}

/// What one step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProgressiveStats {
    pub g_loss: f64,
    pub d_loss: f64,
    /// WGAN-GP's (‖∇D‖ − 1)² or R1's ‖∇D‖², before their weights.
    pub penalty: f64,
    pub growth: Growth,
    pub batch: usize,
}

/// G, D, their optimisers, G_ema and the schedule's state: NVlabs' training loop of both
/// growing GANs. Per minibatch (as `train.py` with `D_repeats` 1): update the schedule every
/// `minibatch_repeats` minibatches (resetting the optimisers when the level of detail crosses an
/// integer), one D step on a fresh minibatch of reals and latents, one G step on fresh latents,
/// then the G_ema update.
pub struct ProgressiveCore {
    pub g: Box<dyn GrowingGenerator>,
    pub d: Box<dyn GrowingDiscriminator>,
    pub g_opt: Adam,
    pub d_opt: Adam,
    pub g_ema: Ema,
    pub config: ProgressiveConfig,
    pub cur_nimg: u64,
    pub batch_idx: u64,
    /// The schedule in force (set every `minibatch_repeats` steps).
    pub sched: ScheduleAt,
    /// lod at the last schedule update (None before the first).
    pub prev_lod: Option<f64>,
}

fn reset_optimizer(opt: &dyn Optimizer) -> Result<()> {
    for (_, t) in opt.state_tensors() {
        t.assign(&t.zeros_like())?;
    }
    Ok(())
}

impl ProgressiveCore {
    pub fn new(
        g: Box<dyn GrowingGenerator>,
        d: Box<dyn GrowingDiscriminator>,
        config: ProgressiveConfig,
    ) -> Result<ProgressiveCore> {
        config.validate()?;
        let top = config.schedule.top_level();
        if g.top_level() != top || d.top_level() != top {
            return Err(Error::invalid(
                "ProgressiveCore",
                format!(
                    "the schedule grows to {}×{}, but G and D are built for {}×{} and {}×{}",
                    config.schedule.final_resolution,
                    config.schedule.final_resolution,
                    4usize << g.top_level(),
                    4usize << g.top_level(),
                    4usize << d.top_level(),
                    4usize << d.top_level()
                ),
            ));
        }
        let adam = |store: &ParamStore, lr: f64| {
            Adam::new(
                store,
                AdamConfig::adam(lr)
                    .with_betas(config.betas.0, config.betas.1)
                    .with_eps(1e-8),
            )
        };
        let g_opt = adam(g.store(), config.g_lr)?;
        let d_opt = adam(d.store(), config.d_lr)?;
        let g_ema = match config.ema {
            EmaRule::Beta(b) => Ema::with_beta(g.store(), b)?,
            EmaRule::HalfLifeKimg(k) => Ema::half_life(g.store(), k, None)?,
        };
        let sched = config.schedule.at(0);
        Ok(ProgressiveCore {
            g,
            d,
            g_opt,
            d_opt,
            g_ema,
            config,
            cur_nimg: 0,
            batch_idx: 0,
            sched,
            prev_lod: None,
        })
    }

    /// The schedule for the coming step: re-evaluated every `minibatch_repeats` steps, with the
    /// optimisers reset and the learning rates set as NVlabs' loop does there.
    pub fn plan(&mut self) -> Result<ScheduleAt> {
        if self
            .batch_idx
            .is_multiple_of(self.config.schedule.minibatch_repeats)
        {
            let s = self.config.schedule.at(self.cur_nimg);
            if self.config.reset_opt_for_new_lod
                && GrowthSchedule::resets_optimizers(self.prev_lod, s.lod)
            {
                reset_optimizer(&self.g_opt)?;
                reset_optimizer(&self.d_opt)?;
            }
            let r = s.growth.resolution();
            self.g_opt
                .set_lr(self.config.schedule.lr_at(r, self.config.g_lr));
            self.d_opt
                .set_lr(self.config.schedule.lr_at(r, self.config.d_lr));
            self.prev_lod = Some(s.lod);
            self.sched = s;
        }
        Ok(self.sched)
    }

    /// Full-resolution reals → the D input at `growth`: mirrored, pooled to the level, faded.
    pub fn process_reals(
        &self,
        reals: &Tensor,
        growth: Growth,
        rng: &mut dyn Rng,
    ) -> Result<Tensor> {
        let x = if self.config.mirror {
            let n = reals.shape().first().copied().unwrap_or(0);
            let flips: Vec<bool> = (0..n).map(|_| rng.random::<bool>()).collect();
            mirror(reals, &flips)?
        } else {
            reals.clone()
        };
        fade_reals(&reals_at_level(&x, growth.level)?, growth.alpha)
    }

    /// One minibatch: [`ProgressiveCore::plan`], then `draw(batch)` gives that many
    /// full-resolution reals [batch, C, R, R]; D step, G step, G_ema.
    pub fn step(
        &mut self,
        draw: &mut dyn FnMut(usize) -> Result<Tensor>,
        rng: &mut dyn Rng,
    ) -> Result<ProgressiveStats> {
        let s = self.plan()?;
        let (growth, b) = (s.growth, s.batch);
        let reals = draw(b)?;
        if reals.shape().first() != Some(&b) {
            return Err(Error::shape(
                "ProgressiveCore::step",
                format!("reals {:?} must hold a batch of {b}", reals.shape()),
            ));
        }
        let reals = self.process_reals(&reals, growth, rng)?;
        let dtype = self.g.store().dtype();
        let z_dim = self.g.z_dim();
        let device = reals.device();

        // D
        let z = Tensor::randn(&[b, z_dim], dtype, &mut &mut *rng).to_device(device)?;
        let fakes = {
            let _off = crate::autograd::no_grad_guard();
            self.g.forward_train(&z, growth, true, rng)?.detach()
        };
        let d_store = self.d.store().clone();
        d_store.zero_grad();
        let d = &self.d;
        let dfn = |x: &Tensor| d.forward(x, growth);
        let (d_loss, d_stats) = self.config.loss.d_loss(&dfn, &reals, &fakes, rng)?;
        backward_params(&d_loss, &d_store.trainable_tensors())?;
        sanitize_grads(&d_store)?;
        self.d_opt.step()?;
        d_store.zero_grad();
        self.cur_nimg += b as u64;

        // G
        let g_store = self.g.store().clone();
        g_store.zero_grad();
        let g_loss = {
            let _on = crate::autograd::set_grad_enabled(true);
            let z = Tensor::randn(&[b, z_dim], dtype, &mut &mut *rng).to_device(device)?;
            let fakes = self.g.forward_train(&z, growth, true, rng)?;
            let loss = self.config.loss.g_loss(&self.d.forward(&fakes, growth)?)?;
            backward_params(&loss, &g_store.trainable_tensors())?;
            loss.item()?
        };
        sanitize_grads(&g_store)?;
        self.g_opt.step()?;
        g_store.zero_grad();
        match self.config.ema {
            EmaRule::Beta(beta) => self.g_ema.update_with_beta(self.g.store(), beta)?,
            EmaRule::HalfLifeKimg(_) => self.g_ema.update(self.g.store(), self.cur_nimg, b)?,
        }
        self.batch_idx += 1;
        Ok(ProgressiveStats {
            g_loss,
            d_loss: d_stats.loss,
            penalty: d_stats.penalty,
            growth,
            batch: b,
        })
    }
}
