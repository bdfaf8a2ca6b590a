//! guided-diffusion's `QKVAttentionLegacy`: the diffusion U-Net's split of one fused qkv
//! projection into per-head q, k, v, over plain attention (`ops::attention::attention`).

use crate::backend::cpu::{self, CpuKernels};
use crate::ops::attention::{attention, qkv_legacy};
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// guided-diffusion `QKVAttentionLegacy`: qkv [B, heads·3·C, T] split per head into q, k, v
/// [B·heads, C, T], attention over T with scale 1/√C, output [B, heads·C, T].
pub fn qkv_attention_legacy(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let op = "qkv_attention_legacy";
    let s = qkv.shape();
    if s.len() != 3 || heads == 0 || !s[1].is_multiple_of(3 * heads) {
        return Err(Error::shape(
            op,
            format!("qkv {s:?} must be [B, heads*3*C, T] with heads = {heads}"),
        ));
    }
    // the fast CPU kernel reads q, k, v straight from qkv (no transposed copies)
    if qkv.device() == Device::Cpu && cpu::kernels() == CpuKernels::Fast {
        return qkv_legacy::forward(qkv, heads);
    }
    let (b, t) = (s[0], s[2]);
    let c = s[1] / (3 * heads);
    let parts = qkv.reshape(&[b * heads, 3 * c, t])?.chunk(1, 3)?;
    // [B·heads, C, T] → [B·heads, T, C]
    let tr = |x: &Tensor| x.transpose(1, 2);
    let o = attention(
        &tr(&parts[0])?,
        &tr(&parts[1])?,
        &tr(&parts[2])?,
        1.0 / (c as f64).sqrt(),
    )?;
    o.transpose(1, 2)?.reshape(&[b, heads * c, t])
}
