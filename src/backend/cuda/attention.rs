//! Launch wrappers for the fused attention of `ops::attention` on the GPU: the window-attention
//! kernel of cuda/window_attention.cu where its limits fit (square blocks of at most 64 tokens,
//! head dim at most 64, equal q/v widths), else the simple two-pass kernel of cuda/attention.cu.

use std::sync::Arc;

use super::{CudaBackend, CudaStorage, launch, sfx};
use crate::{Error, Result};

const BLOCK: u32 = 256;
/// Warps per block of the window kernel (`WA_WARPS` in cuda/window_attention.cu).
const WA_WARPS: usize = 8;

/// q [batch, nq, d], k [batch, nk, d], v [batch, nk, dv]; block b uses bias[b % heads] and
/// mask[(b / heads) % windows].
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnGeom {
    pub batch: usize,
    pub nq: usize,
    pub nk: usize,
    pub d: usize,
    pub dv: usize,
    pub heads: usize,
    pub windows: usize,
    pub scale: f64,
}

/// softmax(q·kᵀ·scale + bias + mask)·v as [batch, nq, dv].
pub(crate) fn attention(
    be: &Arc<CudaBackend>,
    q: &CudaStorage,
    k: &CudaStorage,
    v: &CudaStorage,
    bias: Option<&CudaStorage>,
    mask: Option<&CudaStorage>,
    a: &AttnGeom,
) -> Result<CudaStorage> {
    let heads = a.heads.max(1);
    let windows = a.windows.max(1);
    let ok = q.len() == a.batch * a.nq * a.d
        && k.len() == a.batch * a.nk * a.d
        && v.len() == a.batch * a.nk * a.dv
        && bias.is_none_or(|b| b.len() == heads * a.nq * a.nk)
        && mask.is_none_or(|m| m.len() == windows * a.nq * a.nk);
    if !ok {
        return Err(Error::shape(
            "attention",
            format!("operand sizes do not match {a:?}"),
        ));
    }
    let dt = q.dtype();
    let out_len = a.batch * a.nq * a.dv;
    let out = be.alloc(dt, out_len)?;
    if out_len == 0 {
        return Ok(out);
    }
    let bp = bias.map(|b| b.ptr()).unwrap_or(0);
    let mp = mask.map(|m| m.ptr()).unwrap_or(0);
    let (qp, kp, vp, op) = (q.ptr(), k.ptr(), v.ptr(), out.ptr());
    let window_fits = a.nq == a.nk
        && a.d == a.dv
        && a.nq <= 64
        && a.d <= 64
        && a.nk > 0
        && a.batch.is_multiple_of(heads)
        && heads <= i32::MAX as usize;
    if window_fits {
        let f = be.func("window_attention", &format!("win_attn_fwd_{}", sfx(dt)))?;
        let smem = (2 * a.nq * (a.d + 1) + WA_WARPS * a.d + WA_WARPS * a.nq) * dt.size_in_bytes();
        if be.allow_smem(&f, "attention", smem).is_ok() {
            let lse = be.alloc(dt, a.batch * a.nq)?;
            let (b, h, n, dd, nw) = (
                (a.batch / heads) as i64,
                heads as i32,
                a.nq as i32,
                a.d as i32,
                windows as i64,
            );
            let lp = lse.ptr();
            launch!(be, "attention", f, be.blocks(a.batch, (WA_WARPS * 32) as u32, smem);
                &b, &h, &n, &dd, &a.scale, &qp, &kp, &vp, &bp, &mp, &nw, &op, &lp)?;
            return Ok(out);
        }
    }
    let p = be.alloc(dt, a.batch * a.nq * a.nk)?;
    let pp = p.ptr();
    let (bt, nq, nk, d, dv, hh, ww) = (
        a.batch as i64,
        a.nq as i64,
        a.nk as i64,
        a.d as i64,
        a.dv as i64,
        heads as i64,
        windows as i64,
    );
    let f = be.func("attention", &format!("attn_probs_{}", sfx(dt)))?;
    launch!(be, "attention", f, be.grid(a.batch * a.nq, BLOCK);
        &bt, &nq, &nk, &d, &hh, &ww, &a.scale, &qp, &kp, &bp, &mp, &pp)?;
    let f = be.func("attention", &format!("attn_pv_{}", sfx(dt)))?;
    launch!(be, "attention", f, be.grid(out_len, BLOCK); &bt, &nq, &nk, &dv, &pp, &vp, &op)?;
    Ok(out)
}
