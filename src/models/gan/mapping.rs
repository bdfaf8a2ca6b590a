//! NVlabs' `MappingNetwork` (unconditional): z → 2nd-moment normalisation (ε 1e-8) → `layers`
//! fully connected leaky-ReLU layers (lr multiplier 0.01) → w, broadcast to `num_ws` copies;
//! `w_avg` (a buffer) tracks the mean w during training (β 0.998) for the truncation trick
//! `w_avg + ψ·(w − w_avg)` on the first `cutoff` ws (all when `None`).

use super::layers::{FullyConnected, LRELU};
use crate::nn::{Init, Scope};
use crate::ops::stylegan::pixel_norm;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// The mapping layers' learning-rate multiplier.
pub const MAPPING_LR_MULTIPLIER: f64 = 0.01;
/// Decay of the tracked mean w.
pub const W_AVG_BETA: f64 = 0.998;

#[derive(Clone, Debug)]
pub struct Mapping {
    pub fcs: Vec<FullyConnected>,
    pub w_avg: Tensor,
    pub z_dim: usize,
    pub w_dim: usize,
    pub num_ws: usize,
}

impl Mapping {
    /// Layers `mapping.fc0 … fc{layers−1}` and the buffer `mapping.w_avg` under `vs`.
    pub fn new(
        vs: &Scope,
        z_dim: usize,
        w_dim: usize,
        num_ws: usize,
        layers: usize,
    ) -> Result<Mapping> {
        if z_dim == 0 || w_dim == 0 || layers == 0 || num_ws == 0 {
            return Err(Error::invalid(
                "Mapping",
                format!(
                    "z_dim {z_dim}, w_dim {w_dim}, {layers} layers and {num_ws} ws must all be at least 1"
                ),
            ));
        }
        let fcs = (0..layers)
            .map(|i| {
                let fin = if i == 0 { z_dim } else { w_dim };
                FullyConnected::new(
                    &vs.sub(format!("fc{i}")),
                    fin,
                    w_dim,
                    LRELU,
                    MAPPING_LR_MULTIPLIER,
                    0.0,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mapping {
            fcs,
            w_avg: vs.buffer_init("w_avg", &[w_dim], Init::Constant(0.0))?,
            z_dim,
            w_dim,
            num_ws,
        })
    }

    /// z [N, z_dim] → ws [N, num_ws, w_dim]. `update_w_avg` (training) moves `w_avg` towards the
    /// batch mean of w before truncation; `psi` = 1 leaves w as is.
    pub fn forward(
        &self,
        z: &Tensor,
        psi: f64,
        cutoff: Option<usize>,
        update_w_avg: bool,
    ) -> Result<Tensor> {
        if z.rank() != 2 || z.shape()[1] != self.z_dim {
            return Err(Error::shape(
                "Mapping",
                format!("z must be [N, {}], got {:?}", self.z_dim, z.shape()),
            ));
        }
        let mut x = pixel_norm(z)?;
        for fc in &self.fcs {
            x = fc.forward(&x)?;
        }
        if update_w_avg {
            let _g = crate::autograd::no_grad_guard();
            let mean = x.detach().mean_axes(&[0], false)?;
            // lerp(mean, w_avg, β) = mean + β·(w_avg − mean)
            let new = mean.add(&self.w_avg.sub(&mean)?.mul_scalar(W_AVG_BETA)?)?;
            self.w_avg.assign(&new)?;
        }
        let n = x.shape()[0];
        let ws = x
            .reshape(&[n, 1, self.w_dim])?
            .broadcast_as(&[n, self.num_ws, self.w_dim])?;
        if psi == 1.0 {
            return Ok(ws);
        }
        let avg = self.w_avg.reshape(&[1, 1, self.w_dim])?;
        let trunc = avg.add(&ws.sub(&avg)?.mul_scalar(psi)?)?;
        match cutoff {
            Some(c) if c < self.num_ws => Tensor::cat(
                &[trunc.narrow(1, 0, c)?, ws.narrow(1, c, self.num_ws - c)?],
                1,
            ),
            _ => Ok(trunc),
        }
    }
}
