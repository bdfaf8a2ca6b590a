//! The CUDA side of `ops::upfirdn`: FIR resampling by cuda/resample.cu. The filter taps are host
//! metadata of the op, uploaded on first use and then kept on the device (see
//! `backend/cuda/consts.rs`), like the index maps of gather.

use std::sync::Arc;

use crate::backend::cuda::{CudaBackend, CudaStorage, alloc::Buffer, launch, sfx};
use crate::tensor::DType;
use crate::{Error, Result};

const BLOCK: u32 = 256;

/// `v` on the device as values of `dt`.
pub(crate) fn upload_vals(be: &Arc<CudaBackend>, dt: DType, v: &[f64]) -> Result<Arc<Buffer>> {
    match dt {
        DType::F32 => be.upload_const(
            "resample f32",
            &v.iter().map(|&x| x as f32).collect::<Vec<f32>>(),
        ),
        DType::F64 => be.upload_const("resample f64", v),
    }
}

/// A resolved upfirdn2d (as `ops::upfirdn::Plan`): taps in correlation order, gain folded in;
/// `[fh*fw]` for a 2-D filter or `[k]` for a separable one; pads (x0, y0) on the upsampled image.
pub(crate) struct FirPlan<'a> {
    pub taps: &'a [f64],
    pub separable: bool,
    pub fh: usize,
    pub fw: usize,
    pub up: (usize, usize),
    pub down: (usize, usize),
    pub pad0: (isize, isize),
}

/// upfirdn2d of `planes` images of `in_hw` into `out_hw`.
pub(crate) fn upfirdn(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    p: &FirPlan,
    planes: usize,
    in_hw: (usize, usize),
    out_hw: (usize, usize),
) -> Result<CudaStorage> {
    let (h, w) = in_hw;
    let (oh, ow) = out_hw;
    if x.len() != planes * h * w || p.up.0 == 0 || p.up.1 == 0 || p.down.0 == 0 || p.down.1 == 0 {
        return Err(Error::shape(
            "upfirdn2d",
            format!("{} values for {planes} planes of {h}x{w}", x.len()),
        ));
    }
    let dt = x.dtype();
    let n = planes * oh * ow;
    if n == 0 {
        return be.alloc(dt, 0);
    }
    let taps = upload_vals(be, dt, p.taps)?;
    let tp = taps.ptr();
    if p.separable {
        let k = p.taps.len() as i64;
        let f = be.func("resample", &format!("fir_pass_{}", sfx(dt)))?;
        // along x: planes*h lines of w entries → ow
        let t = be.alloc(dt, planes * h * ow)?;
        if !t.is_empty() {
            let (l, ni, no, inn) = ((planes * h) as i64, w as i64, ow as i64, 1i64);
            let (up, down, p0) = (p.up.0 as i64, p.down.0 as i64, p.pad0.0 as i64);
            let (xp, yp) = (x.ptr(), t.ptr());
            launch!(be, "upfirdn2d", f, be.grid(t.len(), BLOCK);
                &l, &ni, &no, &inn, &tp, &k, &up, &down, &p0, &xp, &yp)?;
        }
        // along y: planes lines of h entries of ow values → oh
        let out = be.zeros(dt, n)?;
        if !t.is_empty() {
            let (l, ni, no, inn) = (planes as i64, h as i64, oh as i64, ow as i64);
            let (up, down, p0) = (p.up.1 as i64, p.down.1 as i64, p.pad0.1 as i64);
            let (xp, yp) = (t.ptr(), out.ptr());
            launch!(be, "upfirdn2d", f, be.grid(n, BLOCK);
                &l, &ni, &no, &inn, &tp, &k, &up, &down, &p0, &xp, &yp)?;
        }
        return Ok(out);
    }
    if p.taps.len() != p.fh * p.fw {
        return Err(Error::shape(
            "upfirdn2d",
            format!("{} taps for a {}x{} filter", p.taps.len(), p.fh, p.fw),
        ));
    }
    let out = be.alloc(dt, n)?;
    let f = be.func("resample", &format!("fir_2d_{}", sfx(dt)))?;
    let (pl, hh, ww, ohh, oww, fh, fw) = (
        planes as i64,
        h as i64,
        w as i64,
        oh as i64,
        ow as i64,
        p.fh as i64,
        p.fw as i64,
    );
    let (ux, uy, dx, dy) = (
        p.up.0 as i64,
        p.up.1 as i64,
        p.down.0 as i64,
        p.down.1 as i64,
    );
    let (px, py) = (p.pad0.0 as i64, p.pad0.1 as i64);
    let (xp, yp) = (x.ptr(), out.ptr());
    launch!(be, "upfirdn2d", f, be.grid(n, BLOCK);
        &pl, &hh, &ww, &ohh, &oww, &tp, &fh, &fw, &ux, &uy, &dx, &dy, &px, &py, &xp, &yp)?;
    Ok(out)
}
