//! One training step of the diffusion model as guided-diffusion's `TrainLoop.run_step` does it
//! with the study's flags: uniform t, Gaussian ε, the ε-MSE loss, backward, optional gradient-norm
//! clipping, an AdamW step (lr 1e-4, no weight decay) and the EMA update. The generic runner
//! (device, checkpoints, time limit) calls this; t and ε enter as tensors so tests can fix them.

use rand::RngExt;
use rand::rngs::StdRng;

use super::sampler::Diffusion;
use super::unet::DiffusionUNet;
use crate::nn::ParamStore;
use crate::optim::{AdamConfig, Ema, Optimizer, clip_grad_norm};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// guided-diffusion's optimiser: AdamW with lr 1e-4 and weight decay 0 (its `--weight_decay`
/// default), PyTorch's betas and eps.
pub fn study_optimizer_config() -> AdamConfig {
    AdamConfig::adamw(1e-4).with_weight_decay(0.0)
}

/// guided-diffusion's `--ema_rate` default.
pub const STUDY_EMA_RATE: f64 = 0.9999;

/// t ~ U{0, …, T−1} per image (`UniformSampler`) and ε ~ N(0, I) with x₀'s shape, from `rng`.
pub fn draw_t_noise(d: &Diffusion, x0: &Tensor, rng: &mut StdRng) -> Result<(Tensor, Tensor)> {
    let s = x0.shape();
    if s.is_empty() || s[0] == 0 {
        return Err(Error::shape(
            "diffusion_train",
            format!("batch {s:?} must be [N, C, H, W] with N ≥ 1"),
        ));
    }
    let steps = d.num_steps();
    let t: Vec<f64> = (0..s[0])
        .map(|_| rng.random_range(0..steps) as f64)
        .collect();
    let t = Tensor::from_f64s(&t, &[s[0]], x0.dtype())?.to_device(x0.device())?;
    let noise = Tensor::randn(s, x0.dtype(), rng).to_device(x0.device())?;
    Ok((t, noise))
}

/// What one step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    /// The gradient norm before clipping, when clipping is on.
    pub grad_norm: Option<f64>,
}

/// One optimiser step on the batch x₀ (in [−1, 1]) with the given t \[N\] and ε. `store` holds the
/// model's parameters (those `opt` updates); `clip` bounds the gradient norm; `ema`, when given,
/// is updated after the step with its own decay; `dropout_rng` draws the dropout masks when the
/// model has dropout (the study's flags have none).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: &DiffusionUNet,
    diffusion: &Diffusion,
    store: &ParamStore,
    opt: &mut dyn Optimizer,
    x0: &Tensor,
    t: &Tensor,
    noise: &Tensor,
    clip: Option<f64>,
    ema: Option<&mut Ema>,
    dropout_rng: &mut StdRng,
) -> Result<StepStats> {
    opt.zero_grad();
    let rng = std::cell::RefCell::new(dropout_rng);
    let eps = |x: &Tensor, t: &Tensor| {
        if model.config.dropout > 0.0 {
            model.forward_with(x, t, Some(&mut **rng.borrow_mut()))
        } else {
            model.forward(x, t)
        }
    };
    let loss = diffusion.training_loss(&eps, x0, t, noise)?;
    let value = loss.item()?;
    if !value.is_finite() {
        return Err(Error::invalid(
            "diffusion_train",
            format!("the loss is {value}; the step was not taken (lower the learning rate?)"),
        ));
    }
    loss.backward()?;
    let grad_norm = match clip {
        Some(c) => Some(clip_grad_norm(&store.trainable_tensors(), c)?),
        None => None,
    };
    opt.step()?;
    if let Some(e) = ema {
        e.update(store, 0, x0.shape()[0])?;
    }
    Ok(StepStats {
        loss: value,
        grad_norm,
    })
}
