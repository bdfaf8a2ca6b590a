//! Launch wrappers for cuda/resample.cu: the sparse along-axis map of `ops::resize` (resize,
//! average and adaptive pools, and their adjoints) and `ops::upfirdn`'s FIR resampling. The maps
//! and filter taps are host metadata of the op, uploaded on first use and then kept on the
//! device (see `consts.rs`), like the index maps of gather.

use std::sync::Arc;

use super::{CudaBackend, CudaStorage, alloc::Buffer, launch, sfx};
use crate::tensor::DType;
use crate::{Error, Result};

const BLOCK: u32 = 256;

fn upload_i64(be: &Arc<CudaBackend>, v: &[i64]) -> Result<Arc<Buffer>> {
    be.upload_const("resample i64", v)
}

/// `v` on the device as values of `dt`.
fn upload_vals(be: &Arc<CudaBackend>, dt: DType, v: &[f64]) -> Result<Arc<Buffer>> {
    match dt {
        DType::F32 => be.upload_const(
            "resample f32",
            &v.iter().map(|&x| x as f32).collect::<Vec<f32>>(),
        ),
        DType::F64 => be.upload_const("resample f64", v),
    }
}

/// A sparse `out_len × in_len` matrix in compressed rows (as `ops::resize::AxisMap`).
pub(crate) struct Csr<'a> {
    pub in_len: usize,
    pub out_len: usize,
    pub start: &'a [usize],
    pub idx: &'a [usize],
    pub w: &'a [f64],
}

/// The transposed matrix, each new row's entries in increasing old-row order (the order in
/// which the CPU adjoint accumulates them). Returns (start, idx, w).
fn transpose(m: &Csr) -> (Vec<usize>, Vec<usize>, Vec<f64>) {
    let mut start = vec![0usize; m.in_len + 1];
    for &j in m.idx {
        start[j + 1] += 1;
    }
    for j in 0..m.in_len {
        start[j + 1] += start[j];
    }
    let mut next = start.clone();
    let (mut idx, mut w) = (vec![0usize; m.idx.len()], vec![0f64; m.idx.len()]);
    for i in 0..m.out_len {
        for t in m.start[i]..m.start[i + 1] {
            let j = m.idx[t];
            idx[next[j]] = i;
            w[next[j]] = m.w[t];
            next[j] += 1;
        }
    }
    (start, idx, w)
}

/// out = M·x along the middle axis of x as [outer, in_len, inner] (or Mᵀ·x when `adjoint`).
pub(crate) fn axis_map(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    m: &Csr,
    outer: usize,
    inner: usize,
    adjoint: bool,
) -> Result<CudaStorage> {
    let ok = m.start.len() == m.out_len + 1
        && m.start.last() == Some(&m.idx.len())
        && m.w.len() == m.idx.len()
        && m.idx.iter().all(|&j| j < m.in_len);
    if !ok {
        return Err(Error::invalid("resample_axis", "malformed axis map"));
    }
    let (n_src, n_dst) = if adjoint {
        (m.out_len, m.in_len)
    } else {
        (m.in_len, m.out_len)
    };
    if x.len() != outer * n_src * inner {
        return Err(Error::shape(
            "resample_axis",
            format!("{} values for [{outer}, {n_src}, {inner}]", x.len()),
        ));
    }
    let dt = x.dtype();
    let n = outer * n_dst * inner;
    let out = be.alloc(dt, n)?;
    if n == 0 {
        return Ok(out);
    }
    let (start, idx, w) = if adjoint {
        transpose(m)
    } else {
        (m.start.to_vec(), m.idx.to_vec(), m.w.to_vec())
    };
    let to_i64 = |v: &[usize]| v.iter().map(|&u| u as i64).collect::<Vec<i64>>();
    let sb = upload_i64(be, &to_i64(&start))?;
    let ib = upload_i64(be, &to_i64(&idx))?;
    let wb = upload_vals(be, dt, &w)?;
    let f = be.func("resample", &format!("axis_map_{}", sfx(dt)))?;
    let (o, ns, nd, inn) = (outer as i64, n_src as i64, n_dst as i64, inner as i64);
    let (sp, ip, wp, xp, yp) = (sb.ptr(), ib.ptr(), wb.ptr(), x.ptr(), out.ptr());
    launch!(be, "resample_axis", f, be.grid(n, BLOCK); &o, &ns, &nd, &inn, &sp, &ip, &wp, &xp, &yp)?;
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The transposed rows hold exactly the dense transpose, entries in increasing old-row order.
    #[test]
    fn transpose_is_the_dense_transpose() {
        let start = [0, 2, 2, 5, 6];
        let idx = [1, 0, 2, 1, 1, 2];
        let w = [0.5, 1.5, 2.0, -1.0, 3.0, 4.0];
        let m = Csr {
            in_len: 3,
            out_len: 4,
            start: &start,
            idx: &idx,
            w: &w,
        };
        let (ts, ti, tw) = transpose(&m);
        assert_eq!(ts, vec![0, 1, 4, 6]);
        let mut dense = [[0.0; 4]; 3];
        for i in 0..4 {
            for t in start[i]..start[i + 1] {
                dense[idx[t]][i] += w[t];
            }
        }
        let mut back = [[0.0; 4]; 3];
        for j in 0..3 {
            assert!(ti[ts[j]..ts[j + 1]].windows(2).all(|p| p[0] <= p[1]));
            for t in ts[j]..ts[j + 1] {
                back[j][ti[t]] += tw[t];
            }
        }
        assert_eq!(back, dense);
    }
}
