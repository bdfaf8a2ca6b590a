//! Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay, as
//! `torch.optim.SGD` (the first step seeds the momentum buffer with the gradient itself).

use super::{Optimizer, ParamState, grad_values, init_states, next_step, params_for, state_names};
use crate::nn::ParamStore;
use crate::tensor::{DType, StorageElem, Tensor};
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl SgdConfig {
    pub fn new(lr: f64) -> Self {
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
    pub fn with_momentum(mut self, m: f64) -> Self {
        self.momentum = m;
        self
    }
    pub fn with_dampening(mut self, d: f64) -> Self {
        self.dampening = d;
        self
    }
    pub fn with_weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
    pub fn with_nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
}

pub struct Sgd {
    pub config: SgdConfig,
    store: ParamStore,
    states: Vec<ParamState>,
}

impl Sgd {
    pub fn new(store: &ParamStore, config: SgdConfig) -> Result<Sgd> {
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::invalid(
                "Sgd",
                "Nesterov momentum requires a momentum and zero dampening",
            ));
        }
        if config.lr < 0.0 || config.momentum < 0.0 {
            return Err(Error::invalid(
                "Sgd",
                format!("lr and momentum must be non-negative: {config:?}"),
            ));
        }
        Ok(Sgd {
            config,
            store: store.clone(),
            states: init_states(store, 1),
        })
    }

    fn update<T: StorageElem>(
        p: &Tensor,
        g: Vec<T>,
        s: &ParamState,
        c: &SgdConfig,
        lr: f64,
        wd: f64,
        first: bool,
    ) -> Result<()> {
        let f = T::from_f64;
        let (mom, damp, lr_t, wd_t) = (f(c.momentum), f(1.0 - c.dampening), f(lr), f(wd));
        s.slots[0].update_data::<T, _>(|buf| {
            p.update_data::<T, _>(|x| {
                let (decay, momentum, nesterov) = (wd != 0.0, c.momentum != 0.0, c.nesterov);
                let n = x.len().min(buf.len()).min(g.len());
                let (x, buf, g) = (&mut x[..n], &mut buf[..n], &g[..n]);
                crate::backend::cpu::vectorized(
                    #[inline(always)]
                    || {
                        for i in 0..n {
                            let mut gi = g[i];
                            if decay {
                                gi += wd_t * x[i];
                            }
                            if momentum {
                                buf[i] = if first { gi } else { buf[i] * mom + damp * gi };
                                gi = if nesterov { gi + mom * buf[i] } else { buf[i] };
                            }
                            x[i] = x[i] - lr_t * gi;
                        }
                    },
                )
            })
        })??;
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn kind(&self) -> &'static str {
        "sgd"
    }

    fn step(&mut self) -> Result<()> {
        let c = self.config;
        for (p, s) in params_for(&self.store, &mut self.states)? {
            if p.attrs.frozen || p.tensor.grad().is_none() {
                continue;
            }
            let first = next_step(s)? == 1.0;
            let lr = c.lr * p.attrs.lr_mult;
            let wd = if p.attrs.weight_decay {
                c.weight_decay
            } else {
                0.0
            };
            #[cfg(feature = "cuda")]
            {
                if p.tensor.device() != crate::tensor::Device::Cpu {
                    let h = super::cuda::SgdStep {
                        lr,
                        wd,
                        momentum: c.momentum,
                        damp: 1.0 - c.dampening,
                        nesterov: c.nesterov,
                        first,
                    };
                    if let Some(g) = p.tensor.grad() {
                        super::slots_to_device(&p.tensor, s)?;
                        super::cuda::sgd_step(&p.tensor, &g, &s.slots[0], &h)?;
                    }
                    continue;
                }
            }
            match p.tensor.dtype() {
                DType::F32 => {
                    if let Some(g) = grad_values::<f32>(&p.tensor)? {
                        Sgd::update(&p.tensor, g, s, &c, lr, wd, first)?;
                    }
                }
                DType::F64 => {
                    if let Some(g) = grad_values::<f64>(&p.tensor)? {
                        Sgd::update(&p.tensor, g, s, &c, lr, wd, first)?;
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
        state_names(&self.states, &["momentum_buffer"])
    }
}
