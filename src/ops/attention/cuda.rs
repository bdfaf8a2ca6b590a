//! The CUDA side of `ops::attention`. Where a block fits the handwritten window kernels of
//! cuda/window_attention.cu (square blocks of at most 64 tokens, head dim at most 64, equal q/v
//! widths, and the shared memory the device offers), the forward is one fused kernel per
//! (window, head) that also keeps each row's log-sum-exp, and the first-order backward is the
//! fused backward kernel from that log-sum-exp. Elsewhere the forward is the simple two-pass
//! kernel of cuda/attention.cu and the backward is the recorded rule of the parent module
//! (batched matmuls and a softmax on the device), which also serves every second-order gradient.

use std::sync::Arc;

use super::AttnDims;
use crate::backend::cuda::{CudaBackend, CudaStorage, launch, sfx};
use crate::ops::gpu::storages;
use crate::tensor::Tensor;
use crate::{Error, Result};

const BLOCK: u32 = 256;
/// Warps per block of the window kernels (`WA_WARPS` in cuda/window_attention.cu).
const WA_WARPS: usize = 8;

fn check_sizes(
    a: &AttnDims,
    q: &CudaStorage,
    k: &CudaStorage,
    v: &CudaStorage,
    bias: Option<&CudaStorage>,
    mask: Option<&CudaStorage>,
) -> Result<()> {
    let ok = q.len() == a.batch * a.nq * a.d
        && k.len() == a.batch * a.nk * a.d
        && v.len() == a.batch * a.nk * a.dv
        && bias.is_none_or(|b| b.len() == a.heads.max(1) * a.nq * a.nk)
        && mask.is_none_or(|m| m.len() == a.windows.max(1) * a.nq * a.nk);
    if ok {
        Ok(())
    } else {
        Err(Error::shape(
            "attention",
            format!("operand sizes do not match {a:?}"),
        ))
    }
}

/// Whether the window kernels take these sizes (shared memory aside).
fn window_fits(a: &AttnDims) -> bool {
    let heads = a.heads.max(1);
    a.nq == a.nk
        && a.d == a.dv
        && a.nq <= 64
        && a.d <= 64
        && a.nk > 0
        && a.batch.is_multiple_of(heads)
        && heads <= i32::MAX as usize
}

/// Window-kernel sizes: (B = batch / heads, heads, N, dim, nW).
fn window_args(a: &AttnDims) -> (i64, i32, i32, i32, i64) {
    let heads = a.heads.max(1);
    (
        (a.batch / heads) as i64,
        heads as i32,
        a.nq as i32,
        a.d as i32,
        a.windows.max(1) as i64,
    )
}

/// softmax(q·kᵀ·scale + bias + mask)·v as [batch, nq, dv], and the rows' log-sum-exp
/// [batch, nq] when the window kernel ran.
fn forward_storage(
    be: &Arc<CudaBackend>,
    a: &AttnDims,
    q: &CudaStorage,
    k: &CudaStorage,
    v: &CudaStorage,
    bias: Option<&CudaStorage>,
    mask: Option<&CudaStorage>,
) -> Result<(CudaStorage, Option<CudaStorage>)> {
    check_sizes(a, q, k, v, bias, mask)?;
    let dt = q.dtype();
    let out_len = a.batch * a.nq * a.dv;
    let out = be.alloc(dt, out_len)?;
    if out_len == 0 {
        return Ok((out, None));
    }
    let bp = bias.map(|b| b.ptr()).unwrap_or(0);
    let mp = mask.map(|m| m.ptr()).unwrap_or(0);
    let (qp, kp, vp, op) = (q.ptr(), k.ptr(), v.ptr(), out.ptr());
    if window_fits(a) {
        let f = be.func("window_attention", &format!("win_attn_fwd_{}", sfx(dt)))?;
        let smem = (2 * a.nq * (a.d + 1) + WA_WARPS * a.d + WA_WARPS * a.nq) * dt.size_in_bytes();
        if be.try_allow_smem(&f, "attention", smem)? {
            let lse = be.alloc(dt, a.batch * a.nq)?;
            let (b, h, n, dd, nw) = window_args(a);
            let lp = lse.ptr();
            launch!(be, "attention", f, be.blocks(a.batch, (WA_WARPS * 32) as u32, smem);
                &b, &h, &n, &dd, &a.scale, &qp, &kp, &vp, &bp, &mp, &nw, &op, &lp)?;
            return Ok((out, Some(lse)));
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
        a.heads.max(1) as i64,
        a.windows.max(1) as i64,
    );
    let f = be.func("attention", &format!("attn_probs_{}", sfx(dt)))?;
    launch!(be, "attention", f, be.grid(a.batch * a.nq, BLOCK);
        &bt, &nq, &nk, &d, &hh, &ww, &a.scale, &qp, &kp, &bp, &mp, &pp)?;
    let f = be.func("attention", &format!("attn_pv_{}", sfx(dt)))?;
    launch!(be, "attention", f, be.grid(out_len, BLOCK); &bt, &nq, &nk, &dv, &pp, &vp, &op)?;
    Ok((out, None))
}

/// The forward on GPU tensors q, k, v [batch, n, d] (bias [heads, n, n], mask [windows, n, n]):
/// the output [batch, nq, dv] and, from the window kernel, the log-sum-exp its backward uses.
pub(super) fn forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    a: AttnDims,
) -> Result<(Tensor, Option<Tensor>)> {
    let mut ins = vec![q, k, v];
    ins.extend(bias);
    ins.extend(mask);
    let (be, s) = storages("attention", &ins)?;
    let mut rest = s[3..].iter().map(|s| s.as_ref());
    let bs = if bias.is_some() { rest.next() } else { None };
    let ms = if mask.is_some() { rest.next() } else { None };
    let (o, lse) = forward_storage(&be, &a, &s[0], &s[1], &s[2], bs, ms)?;
    Ok((
        Tensor::from_cuda(o, &[a.batch, a.nq, a.dv]),
        lse.map(|l| Tensor::from_cuda(l, &[a.batch, a.nq])),
    ))
}

/// [dq, dk, dv, dbias (with a bias)] by the fused window backward kernel from the forward's
/// output `o` and log-sum-exp, or None when the device has too little shared memory for it
/// (the caller then takes the recorded rule).
#[allow(clippy::too_many_arguments)]
pub(super) fn window_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    o: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    a: AttnDims,
) -> Result<Option<Vec<Tensor>>> {
    const OP: &str = "attention_backward";
    if !window_fits(&a) {
        return Ok(None);
    }
    let mut ins = vec![q, k, v, o, lse, dout];
    ins.extend(bias);
    ins.extend(mask);
    let (be, s) = storages(OP, &ins)?;
    let mut rest = s[6..].iter().map(|s| s.as_ref());
    let bs = if bias.is_some() { rest.next() } else { None };
    let ms = if mask.is_some() { rest.next() } else { None };
    check_sizes(&a, &s[0], &s[1], &s[2], bs, ms)?;
    let dt = s[0].dtype();
    let qkv_shape = [a.batch, a.nq, a.d];
    let dq = be.alloc(dt, s[0].len())?;
    let dk = be.alloc(dt, s[0].len())?;
    let dv = be.alloc(dt, s[0].len())?;
    // windows of one head add into dbias atomically: it starts at zero
    let dbias = match bs {
        Some(_) => Some(be.zeros(dt, a.heads.max(1) * a.nq * a.nk)?),
        None => None,
    };
    if a.batch > 0 {
        let f = be.func("window_attention", &format!("win_attn_bwd_{}", sfx(dt)))?;
        let smem = (2 * a.nq * (a.d + 1) + 2 * a.nq * (a.nq + 1) + 2 * WA_WARPS * a.d)
            * dt.size_in_bytes();
        if !be.try_allow_smem(&f, OP, smem)? {
            return Ok(None);
        }
        let (b, h, n, dd, nw) = window_args(&a);
        let ins = (
            s[0].ptr(),
            s[1].ptr(),
            s[2].ptr(),
            bs.map(|b| b.ptr()).unwrap_or(0),
            ms.map(|m| m.ptr()).unwrap_or(0),
        );
        let saved = (s[3].ptr(), s[4].ptr(), s[5].ptr());
        let dbp = dbias.as_ref().map(|d| d.ptr()).unwrap_or(0);
        let outs = (dq.ptr(), dk.ptr(), dv.ptr(), dbp);
        launch!(be, OP, f, be.blocks(a.batch, (WA_WARPS * 32) as u32, smem);
            &b, &h, &n, &dd, &a.scale, &ins.0, &ins.1, &ins.2, &ins.3, &ins.4, &nw,
            &saved.0, &saved.1, &saved.2, &outs.0, &outs.1, &outs.2, &outs.3)?;
    }
    let mut out = vec![
        Tensor::from_cuda(dq, &qkv_shape),
        Tensor::from_cuda(dk, &qkv_shape),
        Tensor::from_cuda(dv, &qkv_shape),
    ];
    out.extend(dbias.map(|d| Tensor::from_cuda(d, &[a.heads.max(1), a.nq, a.nk])));
    Ok(Some(out))
}
