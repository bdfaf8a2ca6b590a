//! The diffusion process on tensors, as guided-diffusion's `GaussianDiffusion` with ε-prediction
//! and a fixed variance: `q_sample`, the ε-MSE training loss, the posterior, `p_mean_variance`,
//! the ancestral step and loop, and DDIM. Per-step coefficients are gathered per sample from the
//! f64 [`Schedule`] and cast to the data's dtype (`_extract_into_tensor`), then broadcast.
//!
//! The model is any `Fn(x_t, t) -> ε̂` with t the *original* process's timesteps as a float tensor
//! \[N\] (respaced processes map their steps through `timestep_map`, as `_WrappedModel` does).
//! Randomness (t, ε, the sampler's noise) enters as tensors, or from a seeded generator in the
//! loops, so tests can inject it and same seed ⇒ same samples.

use rand::rngs::StdRng;

use super::schedule::{Schedule, space_sections, space_timesteps};
use crate::autograd::no_grad;
use crate::ops::loss::mse_loss;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};

const OP: &str = "diffusion";

/// ε-prediction model: (x_t [N, C, H, W], t \[N\]) → ε̂ with x_t's shape.
pub type EpsModel<'a> = dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a;

/// How to draw samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampler {
    /// Every step of the process (`p_sample_loop`): the study's choice.
    Ancestral,
    /// Ancestral sampling over K evenly spaced steps (`timestep_respacing = "K"`).
    Respaced(usize),
    /// DDIM with η = 0 over K steps with the integer stride of `"ddimK"`.
    Ddim(usize),
}

impl Sampler {
    /// "ancestral", "respaced:K" or "ddim:K".
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                OP,
                format!("unknown sampler {s:?} (ancestral, respaced:K or ddim:K with K ≥ 1)"),
            )
        };
        let k = |v: &str| v.parse::<usize>().ok().filter(|&k| k > 0).ok_or_else(bad);
        match s.split_once(':') {
            None if s == "ancestral" => Ok(Sampler::Ancestral),
            Some(("respaced", v)) => Ok(Sampler::Respaced(k(v)?)),
            Some(("ddim", v)) => Ok(Sampler::Ddim(k(v)?)),
            _ => Err(bad()),
        }
    }
}

/// What `p_mean_variance` returns, each with x_t's shape.
pub struct MeanVariance {
    pub mean: Tensor,
    pub variance: Tensor,
    pub log_variance: Tensor,
    pub pred_xstart: Tensor,
}

/// A Gaussian diffusion process with ε-prediction and fixed variance.
#[derive(Clone, Debug)]
pub struct Diffusion {
    pub schedule: Schedule,
    /// Clamp the predicted x₀ to [−1, 1] when sampling (guided-diffusion's `clip_denoised`, on by
    /// default in its sampling script).
    pub clip_denoised: bool,
    /// Where the sampling loops draw their noise (the model's device).
    pub device: Device,
}

impl Diffusion {
    pub fn new(schedule: Schedule) -> Self {
        Diffusion {
            schedule,
            clip_denoised: true,
            device: Device::Cpu,
        }
    }

    /// This process, sampling on `device`.
    pub fn on(self, device: Device) -> Self {
        Diffusion { device, ..self }
    }

    pub fn num_steps(&self) -> usize {
        self.schedule.num_steps()
    }

    /// The process that keeps the steps `use_timesteps` of this one.
    pub fn respaced(&self, use_timesteps: &[usize]) -> Result<Self> {
        Ok(Diffusion {
            schedule: self.schedule.respaced(use_timesteps)?,
            clip_denoised: self.clip_denoised,
            device: self.device,
        })
    }

    /// The step indices in t \[N\] (integral floats in 0..T), checked against x's batch.
    pub fn steps(&self, t: &Tensor, batch: usize) -> Result<Vec<usize>> {
        if t.shape() != [batch] {
            return Err(Error::shape(
                OP,
                format!("timesteps {:?} must be [{batch}], one per image", t.shape()),
            ));
        }
        let n = self.num_steps();
        // read on the host (t may live on the GPU with the model)
        t.to_device(Device::Cpu)?
            .to_vec_f64()?
            .into_iter()
            .map(|v| {
                if v >= 0.0 && v < n as f64 && v.fract() == 0.0 {
                    Ok(v as usize)
                } else {
                    Err(Error::invalid(
                        OP,
                        format!("timestep {v} is not a step of a {n}-step process"),
                    ))
                }
            })
            .collect()
    }

    /// arr[t] per sample as [N, 1, 1, 1] in the dtype and on the device of `like`, broadcast to
    /// its shape.
    fn extract(arr: &[f64], steps: &[usize], like: &Tensor) -> Result<Tensor> {
        let v: Vec<f64> = steps.iter().map(|&i| arr[i]).collect();
        let shape = like.shape();
        let mut s = vec![1; shape.len()];
        s[0] = steps.len();
        Tensor::from_f64s(&v, &s, like.dtype())?
            .to_device(like.device())?
            .broadcast_as(shape)
    }

    /// The timesteps the model is conditioned on (through `timestep_map`), in the dtype and on
    /// the device of `like`.
    pub fn model_timesteps(&self, steps: &[usize], like: &Tensor) -> Result<Tensor> {
        let v: Vec<f64> = steps
            .iter()
            .map(|&i| self.schedule.timestep_map[i] as f64)
            .collect();
        Tensor::from_f64s(&v, &[steps.len()], like.dtype())?.to_device(like.device())
    }

    fn check_x(x: &Tensor) -> Result<()> {
        if x.rank() < 2 || x.shape()[0] == 0 {
            return Err(Error::shape(
                OP,
                format!("images {:?} must be [N, C, ...] with N ≥ 1", x.shape()),
            ));
        }
        Ok(())
    }

    /// x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.
    pub fn q_sample(&self, x0: &Tensor, t: &Tensor, noise: &Tensor) -> Result<Tensor> {
        Self::check_x(x0)?;
        if noise.shape() != x0.shape() {
            return Err(Error::shape(
                OP,
                format!("noise {:?} must match x₀ {:?}", noise.shape(), x0.shape()),
            ));
        }
        let st = self.steps(t, x0.shape()[0])?;
        let s = &self.schedule;
        Self::extract(&s.sqrt_alphas_cumprod, &st, x0)?
            .mul(x0)?
            .add(&Self::extract(&s.sqrt_one_minus_alphas_cumprod, &st, x0)?.mul(noise)?)
    }

    /// The ε-MSE loss (mean over every element) for given t \[N\] and ε: `training_losses` with
    /// `LossType.MSE` averaged over the batch with uniform weights.
    pub fn training_loss(
        &self,
        model: &EpsModel,
        x0: &Tensor,
        t: &Tensor,
        noise: &Tensor,
    ) -> Result<Tensor> {
        let xt = self.q_sample(x0, t, noise)?;
        let st = self.steps(t, x0.shape()[0])?;
        let eps = model(&xt, &self.model_timesteps(&st, x0)?)?;
        mse_loss(&eps, noise)
    }

    /// q(x_{t−1} | x_t, x₀): the posterior mean (its variance is `schedule.posterior_variance`).
    pub fn q_posterior_mean(&self, x0: &Tensor, xt: &Tensor, steps: &[usize]) -> Result<Tensor> {
        let s = &self.schedule;
        Self::extract(&s.posterior_mean_coef1, steps, xt)?
            .mul(x0)?
            .add(&Self::extract(&s.posterior_mean_coef2, steps, xt)?.mul(xt)?)
    }

    /// The reverse step's mean and (fixed) variance at x_t, t, with the predicted x₀.
    pub fn p_mean_variance(
        &self,
        model: &EpsModel,
        x: &Tensor,
        t: &Tensor,
    ) -> Result<MeanVariance> {
        Self::check_x(x)?;
        let st = self.steps(t, x.shape()[0])?;
        self.p_mean_variance_at(model, x, &st)
    }

    fn p_mean_variance_at(
        &self,
        model: &EpsModel,
        x: &Tensor,
        st: &[usize],
    ) -> Result<MeanVariance> {
        let s = &self.schedule;
        let sh = x.shape();
        let eps = model(x, &self.model_timesteps(st, x)?)?;
        if eps.shape() != sh {
            return Err(Error::shape(
                OP,
                format!("the model returned {:?} for images {sh:?}", eps.shape()),
            ));
        }
        let mut x0 = Self::extract(&s.sqrt_recip_alphas_cumprod, st, x)?
            .mul(x)?
            .sub(&Self::extract(&s.sqrt_recipm1_alphas_cumprod, st, x)?.mul(&eps)?)?;
        if self.clip_denoised {
            x0 = x0.clamp(-1.0, 1.0)?;
        }
        Ok(MeanVariance {
            mean: self.q_posterior_mean(&x0, x, st)?,
            variance: Self::extract(&s.model_variance, st, x)?,
            log_variance: Self::extract(&s.model_log_variance, st, x)?,
            pred_xstart: x0,
        })
    }

    /// Per-sample 0/1 mask of t ≠ 0 (no noise is added at the last step).
    fn nonzero_mask(st: &[usize], like: &Tensor) -> Result<Tensor> {
        let m: Vec<f64> = st.iter().map(|&i| f64::from(u8::from(i != 0))).collect();
        Self::extract(&m, &(0..st.len()).collect::<Vec<_>>(), like)
    }

    /// One ancestral step x_t → x_{t−1} = mean + [t ≠ 0]·exp(½ log σ²)·noise.
    pub fn p_sample(
        &self,
        model: &EpsModel,
        x: &Tensor,
        t: &Tensor,
        noise: &Tensor,
    ) -> Result<Tensor> {
        Self::check_x(x)?;
        let st = self.steps(t, x.shape()[0])?;
        self.p_sample_at(model, x, &st, noise)
    }

    fn p_sample_at(
        &self,
        model: &EpsModel,
        x: &Tensor,
        st: &[usize],
        noise: &Tensor,
    ) -> Result<Tensor> {
        if noise.shape() != x.shape() {
            return Err(Error::shape(
                OP,
                format!("noise {:?} must match x {:?}", noise.shape(), x.shape()),
            ));
        }
        let out = self.p_mean_variance_at(model, x, st)?;
        let sd = out.log_variance.mul_scalar(0.5)?.exp()?;
        out.mean
            .add(&Self::nonzero_mask(st, x)?.mul(&sd)?.mul(noise)?)
    }

    /// One DDIM step (`ddim_sample`) with η (0: deterministic, `noise` unused).
    pub fn ddim_sample(
        &self,
        model: &EpsModel,
        x: &Tensor,
        t: &Tensor,
        eta: f64,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        Self::check_x(x)?;
        let st = self.steps(t, x.shape()[0])?;
        self.ddim_at(model, x, &st, eta, noise)
    }

    fn ddim_at(
        &self,
        model: &EpsModel,
        x: &Tensor,
        st: &[usize],
        eta: f64,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        if eta.is_nan() || eta < 0.0 {
            return Err(Error::invalid(OP, format!("DDIM η must be ≥ 0, not {eta}")));
        }
        let s = &self.schedule;
        let (sh, dt) = (x.shape(), x.dtype());
        let out = self.p_mean_variance_at(model, x, st)?;
        // ε re-derived from the (clipped) x₀, as `_predict_eps_from_xstart`
        let eps = Self::extract(&s.sqrt_recip_alphas_cumprod, st, x)?
            .mul(x)?
            .sub(&out.pred_xstart)?
            .div(&Self::extract(&s.sqrt_recipm1_alphas_cumprod, st, x)?)?;
        // ᾱ's are gathered in the data's dtype before the arithmetic, as guided-diffusion does:
        // near t = 0, 1 − ᾱ_prev is tiny and its rounding visibly moves the result
        let r = |v: f64| match dt {
            DType::F32 => v as f32 as f64,
            DType::F64 => v,
        };
        let sigma: Vec<f64> = st
            .iter()
            .map(|&i| {
                let (a, ap) = (r(s.alphas_cumprod[i]), r(s.alphas_cumprod_prev[i]));
                eta * ((1.0 - ap) / (1.0 - a)).sqrt() * (1.0 - a / ap).sqrt()
            })
            .collect();
        let c_x0: Vec<f64> = st
            .iter()
            .map(|&i| r(s.alphas_cumprod_prev[i]).sqrt())
            .collect();
        let c_eps: Vec<f64> = st
            .iter()
            .zip(&sigma)
            .map(|(&i, sg)| {
                (1.0 - r(s.alphas_cumprod_prev[i]) - sg * sg)
                    .max(0.0)
                    .sqrt()
            })
            .collect();
        let idx: Vec<usize> = (0..st.len()).collect();
        let mut y = Self::extract(&c_x0, &idx, x)?
            .mul(&out.pred_xstart)?
            .add(&Self::extract(&c_eps, &idx, x)?.mul(&eps)?)?;
        if eta > 0.0 {
            let noise =
                noise.ok_or_else(|| Error::invalid(OP, "DDIM with η > 0 needs a noise tensor"))?;
            if noise.shape() != sh {
                return Err(Error::shape(
                    OP,
                    format!("noise {:?} must match x {sh:?}", noise.shape()),
                ));
            }
            let m: Vec<f64> = st
                .iter()
                .zip(&sigma)
                .map(|(&i, sg)| if i == 0 { 0.0 } else { *sg })
                .collect();
            y = y.add(&Self::extract(&m, &idx, x)?.mul(noise)?)?;
        }
        Ok(y)
    }

    /// `p_sample_loop`: from pure noise through every step of this process.
    pub fn p_sample_loop(
        &self,
        model: &EpsModel,
        shape: &[usize],
        dtype: DType,
        rng: &mut StdRng,
    ) -> Result<Tensor> {
        // sampling needs no graph (and would keep every step's alive)
        no_grad(|| {
            let mut x = Tensor::randn(shape, dtype, rng).to_device(self.device)?;
            Self::check_x(&x)?;
            for i in (0..self.num_steps()).rev() {
                let st = vec![i; shape[0]];
                // drawn at every step, the last included, as guided-diffusion does
                let noise = Tensor::randn(shape, dtype, rng).to_device(self.device)?;
                x = self.p_sample_at(model, &x, &st, &noise)?;
            }
            Ok(x)
        })
    }

    /// `ddim_sample_loop` with η (noise drawn only when η > 0).
    pub fn ddim_sample_loop(
        &self,
        model: &EpsModel,
        shape: &[usize],
        dtype: DType,
        eta: f64,
        rng: &mut StdRng,
    ) -> Result<Tensor> {
        no_grad(|| {
            let mut x = Tensor::randn(shape, dtype, rng).to_device(self.device)?;
            Self::check_x(&x)?;
            for i in (0..self.num_steps()).rev() {
                let st = vec![i; shape[0]];
                let noise = match eta > 0.0 {
                    true => Some(Tensor::randn(shape, dtype, rng).to_device(self.device)?),
                    false => None,
                };
                x = self.ddim_at(model, &x, &st, eta, noise.as_ref())?;
            }
            Ok(x)
        })
    }

    /// Samples of `shape` with the chosen sampler (respacing this process as needed).
    pub fn sample(
        &self,
        model: &EpsModel,
        sampler: Sampler,
        shape: &[usize],
        dtype: DType,
        rng: &mut StdRng,
    ) -> Result<Tensor> {
        let t = self.num_steps();
        let check_k = |k: usize| {
            if k == 0 || k > t {
                Err(Error::invalid(
                    OP,
                    format!("a sampler with {k} steps needs 1 ≤ K ≤ {t}, the process's steps"),
                ))
            } else {
                Ok(())
            }
        };
        match sampler {
            Sampler::Ancestral => self.p_sample_loop(model, shape, dtype, rng),
            Sampler::Respaced(k) => {
                check_k(k)?;
                self.respaced(&space_sections(t, &[k])?)?
                    .p_sample_loop(model, shape, dtype, rng)
            }
            Sampler::Ddim(k) => {
                check_k(k)?;
                self.respaced(&space_timesteps(t, &format!("ddim{k}"))?)?
                    .ddim_sample_loop(model, shape, dtype, 0.0, rng)
            }
        }
    }
}
