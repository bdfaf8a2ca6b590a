//! Normalisation layers with learned scale and shift, PyTorch's `torch.nn` semantics and
//! parameter names (`weight`, `bias`; BatchNorm's `running_mean`, `running_var` buffers):
//! group norm (GroupNorm32 of guided-diffusion, optionally fused with SiLU), instance norm
//! (nnU-Net's `InstanceNorm2d(affine=True)`), layer norm over the last dimension (Swin) and 2-D
//! batch norm (mmseg's heads). Scales start at 1 and shifts at 0; every layer's parameters are
//! exempt from weight decay, as in the nnU-Net, timm and mmseg recipes (guided-diffusion trains
//! without weight decay, so it makes no difference there). ε is 1e-5 as PyTorch's default.

use crate::autograd::no_grad;
use crate::nn::{Init, Scope};
use crate::ops::norm::{NORM_EPS, group_norm, group_norm_silu, instance_norm, layer_norm};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// The affine pair every layer here holds.
struct Affine {
    weight: Tensor,
    bias: Tensor,
}

impl Affine {
    fn new(vs: &Scope, c: usize) -> Result<Self> {
        let vs = vs.no_weight_decay();
        Ok(Affine {
            weight: vs.param("weight", &[c], Init::Constant(1.0))?,
            bias: vs.param("bias", &[c], Init::Constant(0.0))?,
        })
    }
}

/// GroupNorm over [N, C, ...]: statistics per sample and group of C / `groups` channels.
pub struct GroupNorm {
    affine: Affine,
    groups: usize,
}

impl GroupNorm {
    /// `c` channels in `groups` groups (`c` must be a multiple of `groups`).
    pub fn new(vs: &Scope, groups: usize, c: usize) -> Result<Self> {
        if groups == 0 || !c.is_multiple_of(groups) {
            return Err(Error::invalid(
                "GroupNorm",
                format!("{c} channels do not split into {groups} groups"),
            ));
        }
        Ok(GroupNorm {
            affine: Affine::new(vs, c)?,
            groups,
        })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = &self.affine;
        group_norm(x, self.groups, Some(&a.weight), Some(&a.bias), NORM_EPS)
    }
    /// `forward` followed by SiLU, as one fused op (guided-diffusion's `normalization` + SiLU).
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        let a = &self.affine;
        group_norm_silu(x, self.groups, Some(&a.weight), Some(&a.bias), NORM_EPS)
    }
}

/// InstanceNorm over [N, C, spatial...] with a learned per-channel scale and shift.
pub struct InstanceNorm {
    affine: Affine,
}

impl InstanceNorm {
    pub fn new(vs: &Scope, c: usize) -> Result<Self> {
        Ok(InstanceNorm {
            affine: Affine::new(vs, c)?,
        })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = &self.affine;
        instance_norm(x, Some(&a.weight), Some(&a.bias), NORM_EPS)
    }
}

/// LayerNorm over the last dimension.
pub struct LayerNorm {
    affine: Affine,
    dim: usize,
}

impl LayerNorm {
    pub fn new(vs: &Scope, dim: usize) -> Result<Self> {
        Ok(LayerNorm {
            affine: Affine::new(vs, dim)?,
            dim,
        })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = &self.affine;
        layer_norm(x, &[self.dim], Some(&a.weight), Some(&a.bias), NORM_EPS)
    }
}

/// BatchNorm2d: batch statistics in training, with the running mean and (unbiased) variance
/// updated by momentum 0.1 and used in evaluation.
pub struct BatchNorm2d {
    affine: Affine,
    running_mean: Tensor,
    running_var: Tensor,
    momentum: f64,
}

impl BatchNorm2d {
    pub fn new(vs: &Scope, c: usize) -> Result<Self> {
        Ok(BatchNorm2d {
            affine: Affine::new(vs, c)?,
            running_mean: vs.buffer_init("running_mean", &[c], Init::Constant(0.0))?,
            running_var: vs.buffer_init("running_var", &[c], Init::Constant(1.0))?,
            momentum: 0.1,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let s = x.shape();
        let c = self.affine.weight.elem_count();
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
        let inv = var.add_scalar(NORM_EPS)?.rsqrt()?;
        x.sub(&mean)?
            .mul(&inv.mul(&self.affine.weight.reshape(&cs)?)?)?
            .add(&self.affine.bias.reshape(&cs)?)
    }
}
