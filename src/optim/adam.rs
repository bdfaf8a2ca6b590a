//! Adam (L2 weight decay added to the gradient) and AdamW (decoupled decay), as
//! `torch.optim.Adam`/`AdamW` (single-tensor path, no amsgrad).

use super::{Optimizer, ParamState, grad_values, init_states, next_step, params_for, state_names};
use crate::nn::ParamStore;
use crate::tensor::{DType, StorageElem, Tensor};
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW: p ← p·(1 − lr·wd) before the Adam step, instead of g ← g + wd·p.
    pub decoupled: bool,
}

impl AdamConfig {
    /// PyTorch's Adam defaults with learning rate `lr` (β = (0.9, 0.999), eps 1e-8, no decay).
    pub fn adam(lr: f64) -> Self {
        AdamConfig {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
    /// PyTorch's AdamW defaults (weight decay 0.01).
    pub fn adamw(lr: f64) -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled: true,
            ..AdamConfig::adam(lr)
        }
    }
    pub fn with_betas(mut self, b1: f64, b2: f64) -> Self {
        self.betas = (b1, b2);
        self
    }
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    pub fn with_weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
}

/// Adam or AdamW over every parameter of a store.
pub struct Adam {
    pub config: AdamConfig,
    store: ParamStore,
    states: Vec<ParamState>,
}

struct Hyper {
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    wd: f64,
    decoupled: bool,
    step: f64,
}

impl Adam {
    pub fn new(store: &ParamStore, config: AdamConfig) -> Result<Adam> {
        let (b1, b2) = config.betas;
        if !(0.0..1.0).contains(&b1)
            || !(0.0..1.0).contains(&b2)
            || config.lr < 0.0
            || config.eps < 0.0
        {
            return Err(Error::invalid(
                "Adam",
                format!("betas must be in [0, 1), lr and eps non-negative: {config:?}"),
            ));
        }
        Ok(Adam {
            config,
            store: store.clone(),
            states: init_states(store, 2),
        })
    }

    fn update<T: StorageElem>(p: &Tensor, g: Vec<T>, s: &ParamState, h: &Hyper) -> Result<()> {
        let f = T::from_f64;
        let (b1, b2, eps) = (f(h.b1), f(h.b2), f(h.eps));
        let bc1 = 1.0 - h.b1.powf(h.step);
        let bc2_sqrt = f((1.0 - h.b2.powf(h.step)).sqrt());
        let step_size = f(h.lr / bc1);
        let decay = f(1.0 - h.lr * h.wd);
        let wd = f(h.wd);
        s.slots[0].update_data::<T, _>(|m| {
            s.slots[1].update_data::<T, _>(|v| {
                p.update_data::<T, _>(|x| {
                    let (decoupled, coupled_wd) = (h.decoupled, !h.decoupled && h.wd != 0.0);
                    let n = x.len().min(m.len()).min(v.len()).min(g.len());
                    let (x, m, v, g) = (&mut x[..n], &mut m[..n], &mut v[..n], &g[..n]);
                    crate::backend::cpu::vectorized(
                        #[inline(always)]
                        || {
                            for i in 0..n {
                                let mut gi = g[i];
                                if decoupled {
                                    x[i] = x[i] * decay;
                                } else if coupled_wd {
                                    gi += wd * x[i];
                                }
                                m[i] = m[i] + (T::one() - b1) * (gi - m[i]);
                                v[i] = v[i] * b2 + (T::one() - b2) * gi * gi;
                                let denom = v[i].sqrt() / bc2_sqrt + eps;
                                x[i] = x[i] - step_size * (m[i] / denom);
                            }
                        },
                    )
                })
            })
        })???;
        Ok(())
    }
}

impl Optimizer for Adam {
    fn kind(&self) -> &'static str {
        if self.config.decoupled {
            "adamw"
        } else {
            "adam"
        }
    }

    fn step(&mut self) -> Result<()> {
        let c = self.config;
        for (p, s) in params_for(&self.store, &mut self.states)? {
            if p.attrs.frozen || p.tensor.grad().is_none() {
                continue;
            }
            let step = next_step(s)?;
            let h = Hyper {
                lr: c.lr * p.attrs.lr_mult,
                b1: c.betas.0,
                b2: c.betas.1,
                eps: c.eps,
                wd: if p.attrs.weight_decay {
                    c.weight_decay
                } else {
                    0.0
                },
                decoupled: c.decoupled,
                step,
            };
            #[cfg(feature = "cuda")]
            {
                if p.tensor.device() != crate::tensor::Device::Cpu {
                    // the CPU loop's constants, computed the same way
                    let gh = super::cuda::AdamStep {
                        b1: h.b1,
                        b2: h.b2,
                        eps: h.eps,
                        bc2_sqrt: (1.0 - h.b2.powf(h.step)).sqrt(),
                        step_size: h.lr / (1.0 - h.b1.powf(h.step)),
                        decay: 1.0 - h.lr * h.wd,
                        wd: h.wd,
                        decoupled: h.decoupled,
                    };
                    if let Some(g) = p.tensor.grad() {
                        super::slots_to_device(&p.tensor, s)?;
                        let (m, v) = (&s.slots[0], &s.slots[1]);
                        super::cuda::adam_step(&p.tensor, &g, m, v, &gh)?;
                    }
                    continue;
                }
            }
            match p.tensor.dtype() {
                DType::F32 => {
                    if let Some(g) = grad_values::<f32>(&p.tensor)? {
                        Adam::update(&p.tensor, g, s, &h)?;
                    }
                }
                DType::F64 => {
                    if let Some(g) = grad_values::<f64>(&p.tensor)? {
                        Adam::update(&p.tensor, g, s, &h)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn zero_grad(&self) {
        self.store.zero_grad()
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        state_names(&self.states, &["exp_avg", "exp_avg_sq"])
    }
}
