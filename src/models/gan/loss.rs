//! The StyleGAN training core as NVlabs' `training/loss.py` (`StyleGAN2Loss`) and
//! `training/training_loop.py` run it:
//! - phases G main (non-saturating logistic loss on fakes), G reg (path length on half the batch,
//!   running mean `pl_mean`, decay 0.01), D main (logistic loss on fakes and reals; the fakes'
//!   forward updates w_avg and StyleGAN3's magnitude EMAs) and D reg (R1 = γ/2·‖∂D/∂x‖² on
//!   reals); each phase's loss is multiplied by its interval (`gain`);
//! - lazy regularisation: G reg every 4 and D reg every 16 minibatches, with the optimisers' lr
//!   and betas corrected by mb_ratio = k/(k+1);
//! - style mixing (probability 0.9 for StyleGAN2): from a random cutoff in [1, num_ws) the ws of a
//!   second latent;
//! - StyleGAN3's discriminator blur (σ 10 fading to 0 over `blur_fade_kimg`);
//! - non-finite gradients replaced as `nan_to_num(nan=0, posinf=1e5, neginf=−1e5)`;
//! - G EMA with half-life `ema_kimg` = batch·10/32 thousand images and ramp-up 0.05;
//! - mirror augmentation of the whole 5-channel image (x-flip, each image with probability ½).

use rand::{Rng, RngExt};

use super::discriminator::Discriminator;
use super::layers::Noise;
use super::mapping::Mapping;
use super::stylegan2::StyleGan2Generator;
use super::stylegan3::StyleGan3Generator;
use crate::autograd::{GradOptions, grad_with};
use crate::nn::ParamStore;
use crate::ops::loss::{path_length_penalty, r1_penalty, r1_penalty_with};
use crate::ops::upfirdn::filter2d;
use crate::optim::{Adam, AdamConfig, Ema, Optimizer, lazy_regularization};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// What the loss needs of a generator.
pub trait StyleGenerator {
    fn store(&self) -> &ParamStore;
    fn mapping(&self) -> &Mapping;
    /// ws → images in training mode: fresh noise (StyleGAN2, non-fused modconv as NVlabs trains)
    /// and, with `update_emas`, StyleGAN3's magnitude EMAs moved.
    fn synthesize_train(&self, ws: &Tensor, update_emas: bool, rng: &mut dyn Rng)
    -> Result<Tensor>;
}

impl StyleGenerator for StyleGan2Generator {
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn mapping(&self) -> &Mapping {
        &self.mapping
    }
    fn synthesize_train(&self, ws: &Tensor, _: bool, rng: &mut dyn Rng) -> Result<Tensor> {
        self.synthesis(ws, &mut Noise::Random(rng), false)
    }
}

impl StyleGenerator for StyleGan3Generator {
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn mapping(&self) -> &Mapping {
        &self.mapping
    }
    fn synthesize_train(&self, ws: &Tensor, update_emas: bool, _: &mut dyn Rng) -> Result<Tensor> {
        self.synthesis(ws, update_emas)
    }
}

/// The four phases of a training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    GMain,
    GReg,
    DMain,
    DReg,
}

/// `StyleGAN2Loss` settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LossConfig {
    pub r1_gamma: f64,
    pub style_mixing_prob: f64,
    /// 0 disables the path-length phase (StyleGAN3).
    pub pl_weight: f64,
    pub pl_batch_shrink: usize,
    pub pl_decay: f64,
    pub blur_init_sigma: f64,
    pub blur_fade_kimg: f64,
}

impl LossConfig {
    /// `--cfg=stylegan2`: mixing 0.9, path length weight 2.
    pub fn stylegan2(r1_gamma: f64) -> LossConfig {
        LossConfig {
            r1_gamma,
            style_mixing_prob: 0.9,
            pl_weight: 2.0,
            pl_batch_shrink: 2,
            pl_decay: 0.01,
            blur_init_sigma: 0.0,
            blur_fade_kimg: 0.0,
        }
    }
    /// `--cfg=stylegan3-t`: no mixing, no path length, D blur σ 10 fading over batch·200/32 kimg.
    pub fn stylegan3(r1_gamma: f64, batch: usize) -> LossConfig {
        LossConfig {
            r1_gamma,
            style_mixing_prob: 0.0,
            pl_weight: 0.0,
            pl_batch_shrink: 2,
            pl_decay: 0.01,
            blur_init_sigma: 10.0,
            blur_fade_kimg: batch as f64 * 200.0 / 32.0,
        }
    }
}

/// Values a phase reports (NaN where the phase does not compute them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseStats {
    pub loss: f64,
    pub r1_penalty: f64,
    pub pl_penalty: f64,
}

/// The loss with its state (`pl_mean`).
#[derive(Clone, Debug)]
pub struct StyleGan2Loss {
    pub config: LossConfig,
    pub pl_mean: f64,
    /// The N(0, 1) images of the path-length phase, drawn fresh from the phase's generator when
    /// None; set, they are used as given (to reproduce another implementation's phase exactly).
    pub pl_noise: Option<Tensor>,
}

/// Add `gs` into the parameters' accumulated gradients.
fn accumulate(params: &[Tensor], gs: Vec<Tensor>) -> Result<()> {
    for (p, g) in params.iter().zip(gs) {
        let g = g.detach();
        let total = match p.grad() {
            Some(old) => old.add(&g)?,
            None => g,
        };
        p.set_grad(Some(total));
    }
    Ok(())
}

/// d`loss`/d`params` added into the accumulated gradients. A parameter the loss does not reach
/// (R1 never reaches D's output bias; the path length never reaches the toRGB biases) gets no
/// gradient at all, as PyTorch leaves its `.grad` None and Adam then skips it; an exactly zero
/// gradient is taken as such a parameter.
fn backward_into(loss: &Tensor, params: &[Tensor]) -> Result<()> {
    let gs = grad_with(
        std::slice::from_ref(loss),
        None,
        params,
        GradOptions {
            create_graph: false,
            allow_unused: true,
        },
    )?;
    let (mut used_p, mut used_g) = (Vec::new(), Vec::new());
    for (p, g) in params.iter().zip(gs) {
        // reduced where the gradient lives (one scalar read back from a GPU); NaN counts as
        // non-zero, as it must reach `sanitize_grads`
        if g.abs()?.sum_all()?.item()? != 0.0 {
            used_p.push(p.clone());
            used_g.push(g);
        }
    }
    accumulate(&used_p, used_g)
}

/// NVlabs' `nan_to_num(nan=0, posinf=1e5, neginf=−1e5)` on every accumulated gradient.
pub fn sanitize_grads(store: &ParamStore) -> Result<()> {
    for p in store.trainable() {
        if let Some(g) = p.tensor.grad() {
            let finite_or_inf = g.ge_mask(&g)?; // 0 exactly where NaN
            let clean = Tensor::where_cond(&finite_or_inf, &g.clamp(-1e5, 1e5)?, &g.zeros_like())?;
            p.tensor.set_grad(Some(clean));
        }
    }
    Ok(())
}

/// x-flip each image whose `flips` entry is set (the study's only augmentation: it is valid on
/// all five channels, annotation included).
pub fn mirror(images: &Tensor, flips: &[bool]) -> Result<Tensor> {
    let n = images.shape().first().copied().unwrap_or(0);
    if images.rank() != 4 || flips.len() != n {
        return Err(Error::shape(
            "mirror",
            format!(
                "images {:?} must be [N, C, H, W] with one flip flag each ({} given)",
                images.shape(),
                flips.len()
            ),
        ));
    }
    if !flips.iter().any(|&f| f) {
        return Ok(images.clone());
    }
    let parts = (0..n)
        .map(|i| {
            let x = images.narrow(0, i, 1)?;
            if flips[i] { x.flip(&[3]) } else { Ok(x) }
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0)
}

impl StyleGan2Loss {
    pub fn new(config: LossConfig) -> StyleGan2Loss {
        StyleGan2Loss {
            config,
            pl_mean: 0.0,
            pl_noise: None,
        }
    }

    /// `run_G`: mapping (w_avg updated with `update_emas`), style mixing, synthesis.
    pub fn run_g(
        &self,
        g: &dyn StyleGenerator,
        z: &Tensor,
        update_emas: bool,
        rng: &mut dyn Rng,
    ) -> Result<(Tensor, Tensor)> {
        let map = g.mapping();
        let mut ws = map.forward(z, 1.0, None, update_emas)?;
        let num_ws = map.num_ws;
        if self.config.style_mixing_prob > 0.0 && num_ws > 1 {
            let cutoff = rng.random_range(1..num_ws);
            let mix = rng.random::<f64>() < self.config.style_mixing_prob;
            let z2 = Tensor::randn(z.shape(), z.dtype(), &mut &mut *rng).to_device(z.device())?;
            if mix {
                let ws2 = map.forward(&z2, 1.0, None, false)?;
                ws = Tensor::cat(
                    &[
                        ws.narrow(1, 0, cutoff)?,
                        ws2.narrow(1, cutoff, num_ws - cutoff)?,
                    ],
                    1,
                )?;
            }
        }
        let img = g.synthesize_train(&ws, update_emas, rng)?;
        Ok((img, ws))
    }

    /// `run_D` with the fading blur.
    pub fn run_d(&self, d: &Discriminator, img: &Tensor, cur_nimg: u64) -> Result<Tensor> {
        let c = &self.config;
        let sigma = if c.blur_fade_kimg > 0.0 {
            (1.0 - cur_nimg as f64 / (c.blur_fade_kimg * 1e3)).max(0.0) * c.blur_init_sigma
        } else {
            0.0
        };
        let size = (sigma * 3.0).floor();
        if size > 0.0 {
            let k = size as i64;
            let taps: Vec<f64> = (-k..=k)
                .map(|i| (-(i as f64 / sigma).powi(2)).exp2())
                .collect();
            let s: f64 = taps.iter().sum();
            let taps: Vec<f64> = taps.iter().map(|t| t / s).collect();
            let f =
                Tensor::from_f64s(&taps, &[taps.len()], img.dtype())?.to_device(img.device())?;
            return d.forward(&filter2d(img, &f, (0, 0, 0, 0), 1.0)?);
        }
        d.forward(img)
    }

    /// One phase: its loss × `gain`, differentiated into the accumulated gradients of the
    /// phase's network (G for G phases, D for D phases; the other network gets none).
    #[allow(clippy::too_many_arguments)]
    pub fn accumulate_gradients(
        &mut self,
        phase: Phase,
        g: &dyn StyleGenerator,
        d: &Discriminator,
        reals: &Tensor,
        gen_z: &Tensor,
        gain: f64,
        cur_nimg: u64,
        rng: &mut dyn Rng,
    ) -> Result<PhaseStats> {
        let mut st = PhaseStats {
            loss: f64::NAN,
            r1_penalty: f64::NAN,
            pl_penalty: f64::NAN,
        };
        let _grad_on = crate::autograd::set_grad_enabled(true);
        match phase {
            Phase::GMain => {
                let (img, _) = self.run_g(g, gen_z, false, rng)?;
                let logits = self.run_d(d, &img, cur_nimg)?;
                let loss = logits.neg()?.softplus()?.mean_all()?;
                st.loss = loss.item()?;
                let params = g.store().trainable_tensors();
                backward_into(&loss.mul_scalar(gain)?, &params)?;
            }
            Phase::GReg => {
                if self.config.pl_weight == 0.0 {
                    return Ok(st);
                }
                let n = (gen_z.shape()[0] / self.config.pl_batch_shrink).max(1);
                let (img, ws) = self.run_g(g, &gen_z.narrow(0, 0, n)?, false, rng)?;
                let noise = match &self.pl_noise {
                    Some(n) => n.to_device(img.device())?,
                    None => Tensor::randn(img.shape(), img.dtype(), &mut &mut *rng)
                        .to_device(img.device())?,
                };
                let (pen, new_mean) = path_length_penalty(
                    &img,
                    &ws,
                    &noise,
                    self.pl_mean,
                    self.config.pl_decay,
                    self.config.pl_weight,
                )?;
                self.pl_mean = new_mean;
                st.pl_penalty = pen.item()? / self.config.pl_weight;
                st.loss = pen.item()?;
                let params = g.store().trainable_tensors();
                backward_into(&pen.mul_scalar(gain)?, &params)?;
            }
            Phase::DMain => {
                let img = {
                    let _off = crate::autograd::no_grad_guard();
                    self.run_g(g, gen_z, true, rng)?.0.detach()
                };
                let gen_logits = self.run_d(d, &img, cur_nimg)?;
                let real_logits = self.run_d(d, reals, cur_nimg)?;
                let loss = gen_logits
                    .softplus()?
                    .mean_all()?
                    .add(&real_logits.neg()?.softplus()?.mean_all()?)?;
                st.loss = loss.item()?;
                let params = d.store.trainable_tensors();
                backward_into(&loss.mul_scalar(gain)?, &params)?;
            }
            Phase::DReg => {
                if self.config.r1_gamma == 0.0 {
                    return Ok(st);
                }
                let loss =
                    r1_penalty_with(reals, self.config.r1_gamma, |x| self.run_d(d, x, cur_nimg))?;
                st.loss = loss.item()?;
                st.r1_penalty = st.loss * 2.0 / self.config.r1_gamma;
                let params = d.store.trainable_tensors();
                backward_into(&loss.mul_scalar(gain)?, &params)?;
            }
        }
        Ok(st)
    }
}

/// Training hyper-parameters (`train.py`'s defaults for the StyleGAN configs).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub batch: usize,
    pub g_lr: f64,
    pub d_lr: f64,
    /// Path length every 4 minibatches (None: no G regulariser phase).
    pub g_reg_interval: Option<u32>,
    /// R1 every 16 minibatches.
    pub d_reg_interval: Option<u32>,
    /// Mirror augmentation of the reals.
    pub mirror: bool,
    pub loss: LossConfig,
}

impl TrainConfig {
    pub fn stylegan2(batch: usize, gamma: f64) -> TrainConfig {
        TrainConfig {
            batch,
            g_lr: 0.002,
            d_lr: 0.002,
            g_reg_interval: Some(4),
            d_reg_interval: Some(16),
            mirror: true,
            loss: LossConfig::stylegan2(gamma),
        }
    }
    pub fn stylegan3(batch: usize, gamma: f64) -> TrainConfig {
        TrainConfig {
            g_lr: 0.0025,
            g_reg_interval: None,
            loss: LossConfig::stylegan3(gamma, batch),
            ..TrainConfig::stylegan2(batch, gamma)
        }
    }
}

/// Losses of one step (NaN for phases that did not run).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub g_loss: f64,
    pub d_loss: f64,
    pub pl_penalty: f64,
    pub r1_penalty: f64,
}

/// G, D, their Adam optimisers (lazy-regularisation corrected), G's EMA and the loss state.
pub struct GanTrainer<G: StyleGenerator> {
    pub g: G,
    pub d: Discriminator,
    pub g_opt: Adam,
    pub d_opt: Adam,
    pub g_ema: Ema,
    pub loss: StyleGan2Loss,
    pub config: TrainConfig,
    pub batch_idx: u64,
    pub cur_nimg: u64,
}

fn adam_for(store: &ParamStore, lr: f64, interval: Option<u32>) -> Result<Adam> {
    let (lr, (b1, b2)) = lazy_regularization(lr, (0.0, 0.99), interval);
    Adam::new(
        store,
        AdamConfig::adam(lr).with_betas(b1, b2).with_eps(1e-8),
    )
}

impl<G: StyleGenerator> GanTrainer<G> {
    pub fn new(g: G, d: Discriminator, config: TrainConfig) -> Result<GanTrainer<G>> {
        if config.batch == 0 {
            return Err(Error::invalid("GanTrainer", "batch must be at least 1"));
        }
        let g_opt = adam_for(g.store(), config.g_lr, config.g_reg_interval)?;
        let d_opt = adam_for(&d.store, config.d_lr, config.d_reg_interval)?;
        let ema_kimg = config.batch as f64 * 10.0 / 32.0;
        let g_ema = Ema::half_life(g.store(), ema_kimg, Some(0.05))?;
        Ok(GanTrainer {
            loss: StyleGan2Loss::new(config.loss.clone()),
            g,
            d,
            g_opt,
            d_opt,
            g_ema,
            config,
            batch_idx: 0,
            cur_nimg: 0,
        })
    }

    /// One training step on `reals` [batch, C, R, R]: G main, G reg (every interval), D main,
    /// D reg (every interval), each followed by its optimiser step; then the G EMA update.
    pub fn step(&mut self, reals: &Tensor, rng: &mut dyn Rng) -> Result<StepStats> {
        let b = self.config.batch;
        if reals.shape().first() != Some(&b) {
            return Err(Error::shape(
                "GanTrainer::step",
                format!("reals {:?} must hold a batch of {b}", reals.shape()),
            ));
        }
        let reals = if self.config.mirror {
            let flips: Vec<bool> = (0..b).map(|_| rng.random::<bool>()).collect();
            mirror(reals, &flips)?
        } else {
            reals.clone()
        };
        let z_dim = self.g.mapping().z_dim;
        let mut stats = StepStats {
            g_loss: f64::NAN,
            d_loss: f64::NAN,
            pl_penalty: f64::NAN,
            r1_penalty: f64::NAN,
        };
        let phases = [
            (Phase::GMain, 1),
            (Phase::GReg, self.config.g_reg_interval.unwrap_or(0)),
            (Phase::DMain, 1),
            (Phase::DReg, self.config.d_reg_interval.unwrap_or(0)),
        ];
        for (phase, interval) in phases {
            if interval == 0 || !self.batch_idx.is_multiple_of(interval as u64) {
                continue;
            }
            let z = Tensor::randn(&[b, z_dim], self.g.store().dtype(), &mut &mut *rng)
                .to_device(self.g.store().device())?;
            let is_g = matches!(phase, Phase::GMain | Phase::GReg);
            let (store, opt) = if is_g {
                (self.g.store().clone(), &mut self.g_opt)
            } else {
                (self.d.store.clone(), &mut self.d_opt)
            };
            store.zero_grad();
            let st = self.loss.accumulate_gradients(
                phase,
                &self.g,
                &self.d,
                &reals,
                &z,
                interval as f64,
                self.cur_nimg,
                rng,
            )?;
            sanitize_grads(&store)?;
            opt.step()?;
            store.zero_grad();
            match phase {
                Phase::GMain => stats.g_loss = st.loss,
                Phase::GReg => stats.pl_penalty = st.pl_penalty,
                Phase::DMain => stats.d_loss = st.loss,
                Phase::DReg => stats.r1_penalty = st.r1_penalty,
            }
        }
        self.g_ema.update(self.g.store(), self.cur_nimg, b)?;
        self.cur_nimg += b as u64;
        self.batch_idx += 1;
        Ok(stats)
    }
}

// ---- progressive growing (ProGAN, StyleGAN 1) ---------------------------------------------------

/// The losses of the progressively grown GANs, as NVlabs' TensorFlow `loss.py` of each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GrowingLoss {
    /// ProGAN's `G_wgan_acgan` / `D_wgangp_acgan` (unconditional): G −D(G(z)); D
    /// D(G(z)) − D(x) + λ/t²·(‖∇D(x̃)‖ − t)² + ε·D(x)², x̃ = lerp(x, G(z), u), u ~ U[0, 1) per
    /// image; all means over the batch.
    WganGp {
        lambda: f64,
        epsilon: f64,
        target: f64,
    },
    /// StyleGAN 1's `G_logistic_nonsaturating` / `D_logistic_simplegp`: G softplus(−D(G(z)));
    /// D softplus(D(G(z))) + softplus(−D(x)) + γ/2·‖∇D(x)‖² (R1 every step).
    LogisticR1 { gamma: f64 },
}

/// D's loss terms of one step (NaN where a loss lacks one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrowingDStats {
    pub loss: f64,
    /// The mean gradient penalty before its weight: (‖∇D(x̃)‖ − t)² or ‖∇D(x)‖².
    pub penalty: f64,
}

impl GrowingLoss {
    /// ProGAN's `iwass` settings: λ 10, ε_drift 0.001, target 1.
    pub const PROGAN: GrowingLoss = GrowingLoss::WganGp {
        lambda: 10.0,
        epsilon: 0.001,
        target: 1.0,
    };

    /// StyleGAN 1: R1 with γ (10 in NVlabs' `train.py`).
    pub fn stylegan1(gamma: f64) -> GrowingLoss {
        GrowingLoss::LogisticR1 { gamma }
    }

    pub fn validate(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        let good = match *self {
            GrowingLoss::WganGp {
                lambda,
                epsilon,
                target,
            } => ok(lambda) && ok(epsilon) && target.is_finite() && target > 0.0,
            GrowingLoss::LogisticR1 { gamma } => ok(gamma),
        };
        if !good {
            return Err(Error::invalid(
                "GrowingLoss",
                format!("{self:?}: weights must be finite and >= 0, the WGAN target > 0"),
            ));
        }
        Ok(())
    }

    /// G's loss from D's scores of fakes.
    pub fn g_loss(&self, fake_scores: &Tensor) -> Result<Tensor> {
        match self {
            GrowingLoss::WganGp { .. } => crate::ops::loss::wgan_g_loss(fake_scores),
            GrowingLoss::LogisticR1 { .. } => crate::ops::loss::logistic_g_loss(fake_scores),
        }
    }

    /// D's whole loss on `reals` and (detached) `fakes` of one shape, with D given as a closure
    /// (so the gradient penalty differentiates through it, second order). `rng` draws the WGAN-GP
    /// mixing factors.
    pub fn d_loss(
        &self,
        d: &dyn Fn(&Tensor) -> Result<Tensor>,
        reals: &Tensor,
        fakes: &Tensor,
        rng: &mut dyn Rng,
    ) -> Result<(Tensor, GrowingDStats)> {
        if reals.shape() != fakes.shape() || reals.rank() != 4 {
            return Err(Error::shape(
                "GrowingLoss",
                format!(
                    "reals {:?} and fakes {:?} must be [N, C, H, W] of one shape",
                    reals.shape(),
                    fakes.shape()
                ),
            ));
        }
        let _grad_on = crate::autograd::set_grad_enabled(true);
        let fakes = fakes.detach();
        match *self {
            GrowingLoss::WganGp {
                lambda,
                epsilon,
                target,
            } => {
                let fake_scores = d(&fakes)?;
                let real_scores = d(reals)?;
                let n = reals.shape()[0];
                let u =
                    Tensor::rand_uniform(&[n, 1, 1, 1], 0.0, 1.0, reals.dtype(), &mut &mut *rng)
                        .to_device(reals.device())?;
                let mixed = reals.detach().lerp(&fakes, &u)?;
                let gp = crate::ops::loss::wgan_gp_penalty_with(&mixed, lambda, target, d)?;
                let loss = crate::ops::loss::wgan_d_loss(&fake_scores, &real_scores)?
                    .add(&gp)?
                    .add(&crate::ops::loss::wgan_drift(&real_scores, epsilon)?)?;
                let penalty = if lambda > 0.0 {
                    gp.item()? * target * target / lambda
                } else {
                    f64::NAN
                };
                Ok((
                    loss.clone(),
                    GrowingDStats {
                        loss: loss.item()?,
                        penalty,
                    },
                ))
            }
            GrowingLoss::LogisticR1 { gamma } => {
                let fake_scores = d(&fakes)?;
                let x = reals.detach().variable();
                let real_scores = d(&x)?;
                let mut loss = crate::ops::loss::logistic_d_loss(&fake_scores, &real_scores)?;
                let mut penalty = f64::NAN;
                if gamma > 0.0 {
                    let r1 = r1_penalty(&real_scores, &x, gamma)?;
                    penalty = r1.item()? * 2.0 / gamma;
                    loss = loss.add(&r1)?;
                }
                Ok((
                    loss.clone(),
                    GrowingDStats {
                        loss: loss.item()?,
                        penalty,
                    },
                ))
            }
        }
    }
}

/// d`loss`/d`params` (with unused parameters left without a gradient) into the accumulated
/// gradients, for the progressive trainer.
pub(crate) fn backward_params(loss: &Tensor, params: &[Tensor]) -> Result<()> {
    backward_into(loss, params)
}
