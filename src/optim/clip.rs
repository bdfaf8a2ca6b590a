//! Gradient-norm clipping with `torch.nn.utils.clip_grad_norm_`'s semantics.

use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// Scale the gradients of `params` (those that have one) so that their joint 2-norm is at most
/// `max_norm`: with total = ‖(‖g₁‖, ‖g₂‖, …)‖, each gradient is multiplied by
/// min(1, max_norm / (total + 1e-6)). Returns the total norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<f64> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::invalid(
            "clip_grad_norm",
            format!("max_norm must be non-negative, got {max_norm}"),
        ));
    }
    let grads: Vec<(&Tensor, Tensor)> = params
        .iter()
        .filter_map(|p| p.grad().map(|g| (p, g)))
        .collect();
    let mut sq = 0.0;
    // GPU gradients: squared sums reduced on their device, one scalar read per device and dtype
    let mut on_device: Vec<Tensor> = Vec::new();
    for (_, g) in &grads {
        if g.device() == Device::Cpu {
            sq += g.to_vec_f64()?.iter().map(|v| v * v).sum::<f64>();
            continue;
        }
        let s = g.detach().sqr()?.sum_all()?;
        match on_device
            .iter_mut()
            .find(|t| t.device() == s.device() && t.dtype() == s.dtype())
        {
            Some(t) => *t = t.add(&s)?,
            None => on_device.push(s),
        }
    }
    for t in &on_device {
        sq += t.item()?;
    }
    let total = sq.sqrt();
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        for (p, g) in grads {
            // a new gradient tensor: the old one may be shared with other holders
            p.set_grad(Some(g.detach().mul_scalar(coef)?));
        }
    }
    Ok(total)
}
