//! Launch wrappers for the fused kernels in cuda/group_norm.cu, cuda/window_attention.cu and
//! cuda/modconv.cu. Called through `backend::fused`, which checks shapes and devices first.
//!
//! The window-attention kernels keep a whole window in shared memory: the f64 backward at
//! N = dim = 64 needs 138 KiB, over the 99 KiB that sm_86/sm_89 offer. Where the device offers
//! less than a launch needs, both directions fall back to the general form (batched matmuls and
//! a softmax on the device, as `ops::attention` differentiates it).

use std::sync::Arc;

use super::ops::{GpuConvGeom, split_k, tile_grid};
use super::{CudaBackend, CudaStorage, launch, sfx};
use crate::backend::cpu::fused_reference::{GnDims, McDims, WaDims};
use crate::backend::cpu::reference::ConvGeom;
use crate::backend::fused::{
    GnAct, GroupNormGrads, GroupNormOut, ModConvGrads, ModConvOut, WindowAttnGrads, WindowAttnOut,
};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Contiguous device storage of a GPU tensor.
fn dev(t: &Tensor) -> Result<Arc<CudaStorage>> {
    let c = t.contiguous_device()?;
    c.cuda_storage()
        .cloned()
        .ok_or_else(|| Error::Cuda("expected a GPU tensor".into()))
}

/// Device address, or 0 (a null pointer) for an absent optional input.
fn ptr_or_null(s: &Option<Arc<CudaStorage>>) -> u64 {
    s.as_ref().map(|s| s.ptr()).unwrap_or(0)
}

const GN_THREADS: u32 = 256;

pub(crate) fn group_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    d: GnDims,
    eps: f64,
    act: GnAct,
) -> Result<GroupNormOut> {
    let (xs, gs, bs) = (dev(x)?, dev(gamma)?, dev(beta)?);
    let be = xs.backend().clone();
    let dt = xs.dtype();
    let y = be.alloc(dt, xs.len())?;
    let mean = be.alloc(dt, d.n * d.groups)?;
    let rstd = be.alloc(dt, d.n * d.groups)?;
    if d.n * d.groups > 0 {
        let f = be.func("group_norm", &format!("group_norm_fwd_{}", sfx(dt)))?;
        let (n, c, hw, g, a) = (
            d.n as i64,
            d.c as i64,
            d.hw as i64,
            d.groups as i64,
            act as i32,
        );
        let (xp, gp, bp, yp, mp, rp) = (
            xs.ptr(),
            gs.ptr(),
            bs.ptr(),
            y.ptr(),
            mean.ptr(),
            rstd.ptr(),
        );
        launch!(be, "group_norm", f, be.blocks(d.n * d.groups, GN_THREADS, 0);
            &n, &c, &hw, &g, &eps, &a, &xp, &gp, &bp, &yp, &mp, &rp)?;
    }
    Ok(GroupNormOut {
        y: Tensor::from_cuda(y, x.shape()),
        mean: Tensor::from_cuda(mean, &[d.n, d.groups]),
        rstd: Tensor::from_cuda(rstd, &[d.n, d.groups]),
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm_backward(
    dy: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    d: GnDims,
    act: GnAct,
) -> Result<GroupNormGrads> {
    let (dys, xs, gs, bs, ms, rs) = (
        dev(dy)?,
        dev(x)?,
        dev(gamma)?,
        dev(beta)?,
        dev(mean)?,
        dev(rstd)?,
    );
    let be = xs.backend().clone();
    let dt = xs.dtype();
    let dx = be.alloc(dt, xs.len())?;
    let dg_part = be.zeros(dt, d.n * d.c)?;
    let db_part = be.zeros(dt, d.n * d.c)?;
    let dgamma = be.alloc(dt, d.c)?;
    let dbeta = be.alloc(dt, d.c)?;
    let (n, c, hw, g, a) = (
        d.n as i64,
        d.c as i64,
        d.hw as i64,
        d.groups as i64,
        act as i32,
    );
    if d.n * d.groups > 0 {
        let f = be.func("group_norm", &format!("group_norm_bwd_{}", sfx(dt)))?;
        let p = (xs.ptr(), gs.ptr(), bs.ptr(), ms.ptr(), rs.ptr(), dys.ptr());
        let q = (dx.ptr(), dg_part.ptr(), db_part.ptr());
        launch!(be, "group_norm_backward", f, be.blocks(d.n * d.groups, GN_THREADS, 0);
            &n, &c, &hw, &g, &a, &p.0, &p.1, &p.2, &p.3, &p.4, &p.5, &q.0, &q.1, &q.2)?;
    }
    if d.c > 0 {
        let f = be.func("group_norm", &format!("sum_rows_{}", sfx(dt)))?;
        for (part, out) in [(&dg_part, &dgamma), (&db_part, &dbeta)] {
            let (pp, op) = (part.ptr(), out.ptr());
            launch!(be, "group_norm_backward", f, be.grid(d.c, 256); &n, &c, &pp, &op)?;
        }
    }
    Ok(GroupNormGrads {
        dx: Tensor::from_cuda(dx, x.shape()),
        dgamma: Tensor::from_cuda(dgamma, &[d.c]),
        dbeta: Tensor::from_cuda(dbeta, &[d.c]),
    })
}

const WA_WARPS: usize = 8;

fn wa_check(d: &WaDims) -> Result<()> {
    if d.n > 64 || d.dim > 64 {
        return Err(Error::invalid(
            "window_attention",
            format!(
                "the GPU kernel takes windows of at most 64 tokens and head dim at most 64 (got {} and {})",
                d.n, d.dim
            ),
        ));
    }
    if d.heads > i32::MAX as usize {
        return Err(Error::invalid("window_attention", "too many heads"));
    }
    Ok(())
}

pub(crate) fn window_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    d: WaDims,
    scale: f64,
) -> Result<WindowAttnOut> {
    wa_check(&d)?;
    let (qs, ks, vs) = (dev(q)?, dev(k)?, dev(v)?);
    let bs = bias.map(dev).transpose()?;
    let ms = mask.map(dev).transpose()?;
    let be = qs.backend().clone();
    let dt = qs.dtype();
    let o = be.alloc(dt, qs.len())?;
    let lse = be.alloc(dt, d.b * d.heads * d.n)?;
    let items = d.b * d.heads;
    if items > 0 && d.n > 0 {
        let f = be.func("window_attention", &format!("win_attn_fwd_{}", sfx(dt)))?;
        let smem = (2 * d.n * (d.dim + 1) + WA_WARPS * d.dim + WA_WARPS * d.n) * dt.size_in_bytes();
        if !be.try_allow_smem(&f, "window_attention", smem)? {
            return general::forward(q, k, v, bias, mask, d, scale);
        }
        let (b, h, n, dd, nw) = (
            d.b as i64,
            d.heads as i32,
            d.n as i32,
            d.dim as i32,
            d.nw as i64,
        );
        let (qp, kp, vp, bp, mp, op, lp) = (
            qs.ptr(),
            ks.ptr(),
            vs.ptr(),
            ptr_or_null(&bs),
            ptr_or_null(&ms),
            o.ptr(),
            lse.ptr(),
        );
        launch!(be, "window_attention", f, be.blocks(items, (WA_WARPS * 32) as u32, smem);
            &b, &h, &n, &dd, &scale, &qp, &kp, &vp, &bp, &mp, &nw, &op, &lp)?;
    }
    Ok(WindowAttnOut {
        o: Tensor::from_cuda(o, q.shape()),
        lse: Tensor::from_cuda(lse, &[d.b, d.heads, d.n]),
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn window_attention_backward(
    dout: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    d: WaDims,
    scale: f64,
    o: &Tensor,
    lse: &Tensor,
) -> Result<WindowAttnGrads> {
    wa_check(&d)?;
    let (dos, qs, ks, vs, os, ls) = (dev(dout)?, dev(q)?, dev(k)?, dev(v)?, dev(o)?, dev(lse)?);
    let bs = bias.map(dev).transpose()?;
    let ms = mask.map(dev).transpose()?;
    let be = qs.backend().clone();
    let dt = qs.dtype();
    let dq = be.alloc(dt, qs.len())?;
    let dk = be.alloc(dt, qs.len())?;
    let dv = be.alloc(dt, qs.len())?;
    let dbias = match bias {
        Some(_) => Some(be.zeros(dt, d.heads * d.n * d.n)?),
        None => None,
    };
    let items = d.b * d.heads;
    if items > 0 && d.n > 0 {
        let f = be.func("window_attention", &format!("win_attn_bwd_{}", sfx(dt)))?;
        let smem = (2 * d.n * (d.dim + 1) + 2 * d.n * (d.n + 1) + 2 * WA_WARPS * d.dim)
            * dt.size_in_bytes();
        if !be.try_allow_smem(&f, "window_attention_backward", smem)? {
            return general::backward(dout, q, k, v, bias, mask, d, scale);
        }
        let (b, h, n, dd, nw) = (
            d.b as i64,
            d.heads as i32,
            d.n as i32,
            d.dim as i32,
            d.nw as i64,
        );
        let ins = (
            qs.ptr(),
            ks.ptr(),
            vs.ptr(),
            ptr_or_null(&bs),
            ptr_or_null(&ms),
        );
        let saved = (os.ptr(), ls.ptr(), dos.ptr());
        let dbp = dbias.as_ref().map(|s| s.ptr()).unwrap_or(0);
        let outs = (dq.ptr(), dk.ptr(), dv.ptr(), dbp);
        launch!(be, "window_attention_backward", f, be.blocks(items, (WA_WARPS * 32) as u32, smem);
            &b, &h, &n, &dd, &scale, &ins.0, &ins.1, &ins.2, &ins.3, &ins.4, &nw,
            &saved.0, &saved.1, &saved.2, &outs.0, &outs.1, &outs.2, &outs.3)?;
    }
    Ok(WindowAttnGrads {
        dq: Tensor::from_cuda(dq, q.shape()),
        dk: Tensor::from_cuda(dk, q.shape()),
        dv: Tensor::from_cuda(dv, q.shape()),
        dbias: dbias.map(|s| Tensor::from_cuda(s, &[d.heads, d.n, d.n])),
    })
}

/// Window attention without the window kernels, for devices with too little shared memory.
mod general {
    use super::*;
    use crate::autograd::no_grad;

    /// The logits scale·QKᵀ + bias[h] + mask[b mod nW] as [B, heads, N, N].
    fn logits(
        q: &Tensor,
        k: &Tensor,
        bias: Option<&Tensor>,
        mask: Option<&Tensor>,
        d: WaDims,
        scale: f64,
    ) -> Result<Tensor> {
        // [B/nW, nW, heads, N, N]: bias broadcasts over the leading two, mask over heads
        let mut s = q
            .matmul(&k.transpose(-1, -2)?)?
            .affine(scale, 0.0)?
            .reshape(&[d.b / d.nw, d.nw, d.heads, d.n, d.n])?;
        if let Some(b) = bias {
            s = s.add(b)?;
        }
        if let Some(m) = mask {
            s = s.add(&m.reshape(&[d.nw, 1, d.n, d.n])?)?;
        }
        s.reshape(&[d.b, d.heads, d.n, d.n])
    }

    pub(super) fn forward(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        mask: Option<&Tensor>,
        d: WaDims,
        scale: f64,
    ) -> Result<WindowAttnOut> {
        no_grad(|| {
            let s = logits(q, k, bias, mask, d, scale)?;
            Ok(WindowAttnOut {
                o: s.softmax(-1)?.matmul(v)?.contiguous()?,
                lse: s.logsumexp(&[-1], false)?.contiguous()?,
            })
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward(
        dout: &Tensor,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        mask: Option<&Tensor>,
        d: WaDims,
        scale: f64,
    ) -> Result<WindowAttnGrads> {
        no_grad(|| {
            let p = logits(q, k, bias, mask, d, scale)?.softmax(-1)?;
            // softmax rule: gS = P ∘ (gP − Σ_j gP·P)
            let gp = dout.matmul(&v.transpose(-1, -2)?)?;
            let gs = p.mul(&gp.sub(&gp.mul(&p)?.sum_axes(&[-1], true)?)?)?;
            Ok(WindowAttnGrads {
                dq: gs.matmul(k)?.affine(scale, 0.0)?.contiguous()?,
                dk: gs
                    .transpose(-1, -2)?
                    .matmul(q)?
                    .affine(scale, 0.0)?
                    .contiguous()?,
                dv: p.transpose(-1, -2)?.matmul(dout)?.contiguous()?,
                dbias: match bias {
                    Some(_) => Some(gs.sum_axes(&[0], false)?.contiguous()?),
                    None => None,
                },
            })
        })
    }
}

fn mc_geom(d: &McDims) -> GpuConvGeom {
    GpuConvGeom::from(&ConvGeom {
        n: d.n,
        cin: d.cin,
        h: d.h,
        w: d.w,
        cout: d.cout,
        kh: d.k,
        kw: d.k,
        oh: d.oh(),
        ow: d.ow(),
        stride: (1, 1),
        pad: (d.pad, d.pad),
        dil: (1, 1),
        groups: 1,
    })
}

/// d[n, o]: demodulation coefficients, or ones.
fn demod_coeffs(
    be: &Arc<CudaBackend>,
    ws: &CudaStorage,
    ss: &CudaStorage,
    d: &McDims,
    demodulate: bool,
    eps: f64,
) -> Result<CudaStorage> {
    let dt = ws.dtype();
    if !demodulate {
        return super::ops::fill(be, dt, d.n * d.cout, 1.0);
    }
    let out = be.alloc(dt, d.n * d.cout)?;
    if d.n * d.cout > 0 {
        let f = be.func("modconv", &format!("modconv_demod_{}", sfx(dt)))?;
        let (n, co, ci, kk) = (d.n as i64, d.cout as i64, d.cin as i64, (d.k * d.k) as i64);
        let (wp, sp, op) = (ws.ptr(), ss.ptr(), out.ptr());
        launch!(be, "modulated_conv2d", f, be.grid(d.n * d.cout, 128); &n, &co, &ci, &kk, &eps, &wp, &sp, &op)?;
    }
    Ok(out)
}

pub(crate) fn modulated_conv2d(
    x: &Tensor,
    w: &Tensor,
    s: &Tensor,
    d: McDims,
    demodulate: bool,
    eps: f64,
) -> Result<ModConvOut> {
    let (xs, ws, ss) = (dev(x)?, dev(w)?, dev(s)?);
    let be = xs.backend().clone();
    let dt = xs.dtype();
    let dm = demod_coeffs(&be, &ws, &ss, &d, demodulate, eps)?;
    let y = be.alloc(dt, d.n * d.cout * d.oh() * d.ow())?;
    if !y.is_empty() {
        let g = mc_geom(&d);
        let cfg = tile_grid("modulated_conv2d", d.cout, d.n * d.oh() * d.ow(), 1)?;
        let f = be.func("modconv", &format!("modconv_fwd_{}", sfx(dt)))?;
        let (xp, wp, sp, dp, yp) = (xs.ptr(), ws.ptr(), ss.ptr(), dm.ptr(), y.ptr());
        launch!(be, "modulated_conv2d", f, cfg; &g, &xp, &wp, &sp, &dp, &yp)?;
    }
    Ok(ModConvOut {
        y: Tensor::from_cuda(y, &[d.n, d.cout, d.oh(), d.ow()]),
        demod: Tensor::from_cuda(dm, &[d.n, d.cout]),
    })
}

pub(crate) fn modulated_conv2d_backward(
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    s: &Tensor,
    out: &ModConvOut,
    d: McDims,
    demodulate: bool,
) -> Result<ModConvGrads> {
    let (dys, xs, ws, ss, ys, dms) = (
        dev(dy)?,
        dev(x)?,
        dev(w)?,
        dev(s)?,
        dev(&out.y)?,
        dev(&out.demod)?,
    );
    let be = xs.backend().clone();
    let dt = xs.dtype();
    let g = mc_geom(&d);
    let (n, ci, co, kk) = (d.n as i64, d.cin as i64, d.cout as i64, (d.k * d.k) as i64);
    let (hw, ohw) = (d.h * d.w, d.oh() * d.ow());
    let dmp = if demodulate { dms.ptr() } else { 0 };
    let sf = |name: &str| format!("{name}_{}", sfx(dt));
    let op = "modulated_conv2d_backward";

    // gd = conv_bwd_data(dy · d, w)
    let gd = be.alloc(dt, xs.len())?;
    if !gd.is_empty() {
        let cfg = tile_grid(op, d.cin, d.n * hw, 1)?;
        let f = be.func("modconv", &sf("modconv_bwd_data"))?;
        let (dyp, wp, gdp) = (dys.ptr(), ws.ptr(), gd.ptr());
        launch!(be, op, f, cfg; &g, &dyp, &wp, &dmp, &gdp)?;
    }
    // t[n, o] and wsq[o, i] for the demodulation terms
    let t = be.zeros(dt, d.n * d.cout)?;
    let wsq = be.zeros(dt, d.cout * d.cin)?;
    if demodulate && d.n * d.cout > 0 {
        let f = be.func("modconv", &sf("modconv_t"))?;
        let (p, dyp, yp, tp) = (ohw as i64, dys.ptr(), ys.ptr(), t.ptr());
        launch!(be, op, f, be.blocks(d.n * d.cout, 256, 0); &n, &co, &p, &dyp, &yp, &dmp, &tp)?;
        let f = be.func("modconv", &sf("modconv_wsq"))?;
        let (wp, qp) = (ws.ptr(), wsq.ptr());
        launch!(be, op, f, be.grid(d.cout * d.cin, 256); &co, &ci, &kk, &wp, &qp)?;
    }
    // dx = s · gd, ds = Σ x·gd − s Σ_o t d³ wsq
    let dx = be.alloc(dt, xs.len())?;
    let ds = be.alloc(dt, d.n * d.cin)?;
    if d.n * d.cin > 0 {
        let f = be.func("modconv", &sf("modconv_dx_ds"))?;
        let (p, dm) = (hw as i64, demodulate as i32);
        let ptrs = (
            xs.ptr(),
            ss.ptr(),
            gd.ptr(),
            t.ptr(),
            dms.ptr(),
            wsq.ptr(),
            dx.ptr(),
            ds.ptr(),
        );
        launch!(be, op, f, be.blocks(d.n * d.cin, 256, 0);
            &n, &ci, &p, &co, &dm, &ptrs.0, &ptrs.1, &ptrs.2, &ptrs.3, &ptrs.4, &ptrs.5, &ptrs.6, &ptrs.7)?;
    }
    // dw = conv_bwd_weight(x · s, dy · d) − w Σ_n t d³ s²
    let kdim = d.cin * d.k * d.k;
    let dw = be.zeros(dt, d.cout * kdim)?;
    let pix = d.n * ohw;
    if !dw.is_empty() && pix > 0 {
        let base = d.cout.div_ceil(64) * kdim.div_ceil(64);
        let (splits, chunk) = split_k(&be, pix, base, 65535);
        let cfg = tile_grid(op, d.cout, kdim, splits)?;
        let f = be.func("modconv", &sf("modconv_bwd_weight"))?;
        let (ch, xp, sp, dyp, dwp) = (chunk as i64, xs.ptr(), ss.ptr(), dys.ptr(), dw.ptr());
        launch!(be, op, f, cfg; &g, &ch, &xp, &sp, &dyp, &dmp, &dwp)?;
        if demodulate {
            let f = be.func("modconv", &sf("modconv_dw_demod"))?;
            let (wp, tp) = (ws.ptr(), t.ptr());
            launch!(be, op, f, be.grid(d.cout * d.cin, 256); &n, &co, &ci, &kk, &wp, &sp, &tp, &dmp, &dwp)?;
        }
    }
    Ok(ModConvGrads {
        dx: Tensor::from_cuda(dx, x.shape()),
        dw: Tensor::from_cuda(dw, w.shape()),
        ds: Tensor::from_cuda(ds, s.shape()),
    })
}
