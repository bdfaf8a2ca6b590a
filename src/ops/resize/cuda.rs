//! The CUDA side of `ops::resize`: the sparse along-axis map (resize, average and adaptive pools,
//! and their adjoints) by cuda/resample.cu. The maps are host metadata of the op, uploaded on
//! first use and then kept on the device (see `backend/cuda/consts.rs`).

use std::sync::Arc;

use crate::backend::cuda::{CudaBackend, CudaStorage, alloc::Buffer, launch, sfx};
use crate::ops::upfirdn::cuda::upload_vals;
use crate::{Error, Result};

const BLOCK: u32 = 256;

fn upload_i64(be: &Arc<CudaBackend>, v: &[i64]) -> Result<Arc<Buffer>> {
    be.upload_const("resample i64", v)
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
