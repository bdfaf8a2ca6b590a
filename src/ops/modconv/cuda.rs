//! The CUDA side of `ops::modconv`: StyleGAN2's modulated convolution (stride 1, no resampling)
//! as the handwritten fused kernels of cuda/modconv.cu. The styles scale the input inside the
//! implicit-GEMM loader and the demodulation coefficients scale the output in its store, so all
//! samples share one weight tile and no per-sample weight is built. The first-order backward is
//! six kernels (see cuda/modconv.cu); the recorded rule for second order is in the parent module.

use std::sync::Arc;

use crate::Result;
use crate::backend::cuda::{CudaBackend, CudaStorage, launch, ops::fill, sfx};
use crate::ops::conv::ConvGeom;
use crate::ops::conv::cuda::{GpuConvGeom, split_k, tile_grid};
use crate::ops::gpu::storages;
use crate::tensor::Tensor;

/// d[n, o]: demodulation coefficients 1/sqrt(Σ (w·s)² + eps), or ones.
fn demod_coeffs(
    be: &Arc<CudaBackend>,
    ws: &CudaStorage,
    ss: &CudaStorage,
    g: &ConvGeom,
    demodulate: bool,
    eps: f64,
) -> Result<CudaStorage> {
    let dt = ws.dtype();
    if !demodulate {
        return fill(be, dt, g.n * g.cout, 1.0);
    }
    let out = be.alloc(dt, g.n * g.cout)?;
    if g.n * g.cout > 0 {
        let f = be.func("modconv", &format!("modconv_demod_{}", sfx(dt)))?;
        let (n, co, ci, kk) = (
            g.n as i64,
            g.cout as i64,
            g.cin as i64,
            (g.kh * g.kw) as i64,
        );
        let (wp, sp, op) = (ws.ptr(), ss.ptr(), out.ptr());
        launch!(be, "modulated_conv2d", f, be.grid(g.n * g.cout, 128);
            &n, &co, &ci, &kk, &eps, &wp, &sp, &op)?;
    }
    Ok(out)
}

/// y [n, cout, oh, ow] of the modulated conv with geometry `g` (stride 1, one group, square
/// kernel), and its demodulation coefficients [n, cout].
pub(super) fn forward(
    x: &Tensor,
    w: &Tensor,
    s: &Tensor,
    g: &ConvGeom,
    demodulate: bool,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "modulated_conv2d";
    let (be, st) = storages(OP, &[x, w, s])?;
    let (xs, ws, ss) = (&st[0], &st[1], &st[2]);
    let dt = xs.dtype();
    let dm = demod_coeffs(&be, ws, ss, g, demodulate, eps)?;
    let y = be.alloc(dt, g.n * g.cout * g.oh * g.ow)?;
    if !y.is_empty() {
        let gg = GpuConvGeom::from(g);
        let cfg = tile_grid(OP, g.cout, g.n * g.oh * g.ow, 1)?;
        let f = be.func("modconv", &format!("modconv_fwd_{}", sfx(dt)))?;
        let (xp, wp, sp, dp, yp) = (xs.ptr(), ws.ptr(), ss.ptr(), dm.ptr(), y.ptr());
        launch!(be, OP, f, cfg; &gg, &xp, &wp, &sp, &dp, &yp)?;
    }
    Ok((
        Tensor::from_cuda(y, &[g.n, g.cout, g.oh, g.ow]),
        Tensor::from_cuda(dm, &[g.n, g.cout]),
    ))
}

/// [dx, dw, ds] from the upstream gradient `dy`, the forward's output `y` and coefficients
/// `demod` (values only, no history):
/// gd = conv_bwd_data(dy·d, w); t[n, o] = Σ_p dy·y/d; wsq[o, i] = Σ_k w²;
/// dx = s·gd; ds = Σ_p x·gd − s Σ_o t d³ wsq; dw = conv_bwd_weight(x·s, dy·d) − w Σ_n t d³ s².
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    s: &Tensor,
    y: &Tensor,
    demod: &Tensor,
    g: &ConvGeom,
    demodulate: bool,
) -> Result<[Tensor; 3]> {
    const OP: &str = "modulated_conv2d_backward";
    let (be, st) = storages(OP, &[dy, x, w, s, y, demod])?;
    let (dys, xs, ws, ss, ys, dms) = (&st[0], &st[1], &st[2], &st[3], &st[4], &st[5]);
    let dt = xs.dtype();
    let gg = GpuConvGeom::from(g);
    let (n, ci, co, kk) = (
        g.n as i64,
        g.cin as i64,
        g.cout as i64,
        (g.kh * g.kw) as i64,
    );
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let dmp = if demodulate { dms.ptr() } else { 0 };
    let sf = |name: &str| format!("{name}_{}", sfx(dt));

    let gd = be.alloc(dt, xs.len())?;
    if !gd.is_empty() {
        let cfg = tile_grid(OP, g.cin, g.n * hw, 1)?;
        let f = be.func("modconv", &sf("modconv_bwd_data"))?;
        let (dyp, wp, gdp) = (dys.ptr(), ws.ptr(), gd.ptr());
        launch!(be, OP, f, cfg; &gg, &dyp, &wp, &dmp, &gdp)?;
    }
    let t = be.zeros(dt, g.n * g.cout)?;
    let wsq = be.zeros(dt, g.cout * g.cin)?;
    if demodulate && g.n * g.cout > 0 {
        let f = be.func("modconv", &sf("modconv_t"))?;
        let (p, dyp, yp, tp) = (ohw as i64, dys.ptr(), ys.ptr(), t.ptr());
        launch!(be, OP, f, be.blocks(g.n * g.cout, 256, 0); &n, &co, &p, &dyp, &yp, &dmp, &tp)?;
        let f = be.func("modconv", &sf("modconv_wsq"))?;
        let (wp, qp) = (ws.ptr(), wsq.ptr());
        launch!(be, OP, f, be.grid(g.cout * g.cin, 256); &co, &ci, &kk, &wp, &qp)?;
    }
    let dx = be.alloc(dt, xs.len())?;
    let ds = be.alloc(dt, g.n * g.cin)?;
    if g.n * g.cin > 0 {
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
        launch!(be, OP, f, be.blocks(g.n * g.cin, 256, 0);
            &n, &ci, &p, &co, &dm, &ptrs.0, &ptrs.1, &ptrs.2, &ptrs.3, &ptrs.4, &ptrs.5, &ptrs.6, &ptrs.7)?;
    }
    let kdim = g.cin * g.kh * g.kw;
    let dw = be.zeros(dt, g.cout * kdim)?;
    let pix = g.n * ohw;
    if !dw.is_empty() && pix > 0 {
        let base = g.cout.div_ceil(64) * kdim.div_ceil(64);
        let (splits, chunk) = split_k(&be, pix, base, 65535);
        let cfg = tile_grid(OP, g.cout, kdim, splits)?;
        let f = be.func("modconv", &sf("modconv_bwd_weight"))?;
        let (ch, xp, sp, dyp, dwp) = (chunk as i64, xs.ptr(), ss.ptr(), dys.ptr(), dw.ptr());
        launch!(be, OP, f, cfg; &gg, &ch, &xp, &sp, &dyp, &dmp, &dwp)?;
        if demodulate {
            let f = be.func("modconv", &sf("modconv_dw_demod"))?;
            let (wp, tp) = (ws.ptr(), t.ptr());
            launch!(be, OP, f, be.grid(g.cout * g.cin, 256);
                &n, &co, &ci, &kk, &wp, &sp, &tp, &dmp, &dwp)?;
        }
    }
    Ok([
        Tensor::from_cuda(dx, x.shape()),
        Tensor::from_cuda(dw, w.shape()),
        Tensor::from_cuda(ds, s.shape()),
    ])
}
