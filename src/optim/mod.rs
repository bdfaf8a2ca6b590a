//! Optimisers with PyTorch's update rules (Adam, AdamW, SGD with momentum/Nesterov), gradient
//! clipping, an exponential moving average of weights, learning-rate schedules and StyleGAN2's
//! lazy-regularisation adjustment.
//!
//! Optimisers read each parameter's accumulated gradient (`Tensor::grad`, filled by `backward()`;
//! gradients from `autograd::grad` can be handed over with `Tensor::set_grad`), skip frozen
//! parameters and those without a gradient, scale the learning rate by the parameter's
//! `lr_mult` and apply weight decay only where its `weight_decay` attribute allows. All state lives
//! in tensors (`state_tensors`), so a checkpoint saves and restores it like weights.

pub mod adam;
pub mod clip;
#[cfg(feature = "cuda")]
mod cuda;
pub mod ema;
pub mod schedule;
pub mod sgd;

pub use adam::{Adam, AdamConfig};
pub use clip::clip_grad_norm;
pub use ema::{Ema, EmaDecay};
pub use schedule::{Decay, LrSchedule, Warmup, lazy_regularization};
pub use sgd::{Sgd, SgdConfig};

use crate::nn::{Param, ParamStore};
use crate::tensor::{DType, StorageElem, Tensor};
use crate::{Error, Result};

/// What every optimiser offers the training loops and the checkpoint code.
pub trait Optimizer {
    /// Short name stored in checkpoints ("adam", "adamw", "sgd").
    fn kind(&self) -> &'static str;
    /// Apply one update to every trainable parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// Forget the gradients of the optimised parameters.
    fn zero_grad(&self);
    /// Base learning rate (before per-parameter multipliers).
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    /// The live state tensors, named `<param>.<slot>`; loading a checkpoint assigns into them.
    fn state_tensors(&self) -> Vec<(String, Tensor)>;
}

/// One parameter's optimiser state: a step count (an f64 scalar tensor, like PyTorch's
/// `state['step']`) and the per-element slots (same shape and dtype as the parameter).
#[derive(Clone, Debug)]
pub(crate) struct ParamState {
    pub name: String,
    pub step: Tensor,
    pub slots: Vec<Tensor>,
}

/// The store's parameters with one state each, all starting at zero.
pub(crate) fn init_states(store: &ParamStore, n_slots: usize) -> Vec<ParamState> {
    store
        .params()
        .iter()
        .map(|p| ParamState {
            name: p.name.clone(),
            step: Tensor::scalar(0.0, DType::F64),
            slots: (0..n_slots).map(|_| p.tensor.zeros_like()).collect(),
        })
        .collect()
}

pub(crate) fn state_names(states: &[ParamState], slot_names: &[&str]) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for s in states {
        out.push((format!("{}.step", s.name), s.step.clone()));
        for (t, n) in s.slots.iter().zip(slot_names) {
            out.push((format!("{}.{n}", s.name), t.clone()));
        }
    }
    out
}

/// The store's parameters matched with their states (the store may have grown since, never
/// reordered).
pub(crate) fn params_for<'a>(
    store: &ParamStore,
    states: &'a mut [ParamState],
) -> Result<Vec<(Param, &'a mut ParamState)>> {
    let params = store.params();
    let mut out = Vec::with_capacity(states.len());
    for (s, p) in states.iter_mut().zip(params) {
        if s.name != p.name {
            return Err(Error::invalid(
                "optimizer",
                format!(
                    "parameter order changed: state for {:?} found {:?}",
                    s.name, p.name
                ),
            ));
        }
        out.push((p, s));
    }
    Ok(out)
}

/// Increment a state's step count and return the new value.
pub(crate) fn next_step(s: &ParamState) -> Result<f64> {
    s.step.update_data::<f64, _>(|v| {
        v[0] += 1.0;
        v[0]
    })
}

/// A parameter's gradient as a vector of its element type, or None when it has none.
pub(crate) fn grad_values<T: StorageElem>(p: &Tensor) -> Result<Option<Vec<T>>> {
    let Some(g) = p.grad() else { return Ok(None) };
    if g.shape() != p.shape() {
        return Err(Error::shape(
            "optimizer",
            format!("gradient {:?} for parameter {:?}", g.shape(), p.shape()),
        ));
    }
    Ok(Some(g.to_vec_of::<T>()?))
}

/// Move a parameter's state buffers to its device (states start where the parameter was when
/// the optimiser was made; a model moved to the GPU afterwards takes its states along here).
#[cfg(feature = "cuda")]
pub(crate) fn slots_to_device(p: &Tensor, s: &mut ParamState) -> Result<()> {
    for slot in &mut s.slots {
        if slot.device() != p.device() {
            *slot = slot.to_device(p.device())?;
        }
    }
    Ok(())
}
