//! Normalisation layers shared by the models: layer norm over the channel (last) dimension and
//! batch norm with running statistics.

use crate::autograd::no_grad;
use crate::nn::{Init, Scope};
use crate::ops::norm::layer_norm;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// LayerNorm over the last dimension with a learned scale and shift (eps 1e-5).
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: usize,
}

impl LayerNorm {
    pub fn new(vs: &Scope, dim: usize) -> Result<Self> {
        let vs = vs.no_weight_decay();
        Ok(LayerNorm {
            weight: vs.param("weight", &[dim], Init::Constant(1.0))?,
            bias: vs.param("bias", &[dim], Init::Constant(0.0))?,
            dim,
        })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm(x, &[self.dim], Some(&self.weight), Some(&self.bias), 1e-5)
    }
}

/// BatchNorm2d (PyTorch semantics): batch statistics in training, with running mean and
/// (unbiased) variance updated by momentum 0.1 and used in evaluation.
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    momentum: f64,
    eps: f64,
}

impl BatchNorm2d {
    pub fn new(vs: &Scope, c: usize) -> Result<Self> {
        let p = vs.no_weight_decay();
        Ok(BatchNorm2d {
            weight: p.param("weight", &[c], Init::Constant(1.0))?,
            bias: p.param("bias", &[c], Init::Constant(0.0))?,
            running_mean: vs.buffer_init("running_mean", &[c], Init::Constant(0.0))?,
            running_var: vs.buffer_init("running_var", &[c], Init::Constant(1.0))?,
            momentum: 0.1,
            eps: 1e-5,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let s = x.shape();
        let c = self.weight.elem_count();
        if s.len() != 4 || s[1] != c {
            return Err(Error::shape(
                "batch_norm",
                format!("input {s:?} must be [N, {c}, H, W]"),
            ));
        }
        let cs = [1, c, 1, 1];
        let (mean, var) = if train {
            let count = s[0] * s[2] * s[3];
            if count < 2 {
                return Err(Error::shape(
                    "batch_norm",
                    format!("training needs more than one value per channel, input {s:?}"),
                ));
            }
            let mean = x.mean_axes(&[0, 2, 3], true)?;
            let var = x.var_axes(&[0, 2, 3], true, false)?;
            no_grad(|| -> Result<()> {
                let unbiased = var
                    .mul_scalar(count as f64 / (count - 1) as f64)?
                    .reshape(&[c])?;
                let m = self.momentum;
                self.running_mean.assign(
                    &self
                        .running_mean
                        .mul_scalar(1.0 - m)?
                        .add(&mean.reshape(&[c])?.mul_scalar(m)?)?,
                )?;
                self.running_var.assign(
                    &self
                        .running_var
                        .mul_scalar(1.0 - m)?
                        .add(&unbiased.mul_scalar(m)?)?,
                )
            })?;
            (mean, var)
        } else {
            (
                self.running_mean.reshape(&cs)?,
                self.running_var.reshape(&cs)?,
            )
        };
        let inv = var.add_scalar(self.eps)?.rsqrt()?;
        x.sub(&mean)?
            .mul(&inv.mul(&self.weight.reshape(&cs)?)?)?
            .add(&self.bias.reshape(&cs)?)
    }
}
