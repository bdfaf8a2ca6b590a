//! Resizing and pooling of `[N, C, H, W]` batches, with torch's conventions: nearest and bilinear
//! resize (`align_corners = False`), avg_pool2d (`count_include_pad = True`), max_pool2d and
//! adaptive_avg_pool2d.
//!
//! All but max pooling are separable linear maps, so they share one primitive: a sparse matrix
//! applied along one axis ([`Tensor::resample_axis`]), whose adjoint
//! ([`Tensor::resample_axis_adjoint`]) is its backward and vice versa. Max pooling gathers the
//! arg-max of each window through an index map (`gather_map`), whose backward scatters the
//! gradient back to it, linear in the gradient.

#[cfg(feature = "cuda")]
mod cuda;

use std::sync::Arc;

use crate::autograd::{GradFn, record};
use crate::ops::upfirdn::par_rows;
use crate::ops::view::ZERO;
use crate::tensor::shape::axis;
use crate::tensor::{CpuStorage, Float, Kernel, StorageElem, Tensor};
use crate::{Error, Result};

/// A sparse `out_len × in_len` matrix in compressed rows: output i is
/// `Σ_{t in start[i]..start[i+1]} w[t] · input[idx[t]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisMap {
    pub in_len: usize,
    pub out_len: usize,
    pub start: Vec<usize>,
    pub idx: Vec<usize>,
    pub w: Vec<f64>,
}

impl AxisMap {
    /// Build from each output's list of (input index, weight).
    pub fn from_rows(in_len: usize, rows: Vec<Vec<(usize, f64)>>) -> AxisMap {
        let mut m = AxisMap {
            in_len,
            out_len: rows.len(),
            start: vec![0],
            idx: Vec::new(),
            w: Vec::new(),
        };
        for r in rows {
            for (j, w) in r {
                m.idx.push(j);
                m.w.push(w);
            }
            m.start.push(m.idx.len());
        }
        m
    }

    fn check(&self, op: &'static str) -> Result<()> {
        let ok = self.start.len() == self.out_len + 1
            && self.start.first() == Some(&0)
            && self.start.windows(2).all(|p| p[0] <= p[1])
            && self.start.last() == Some(&self.idx.len())
            && self.idx.len() == self.w.len()
            && self.idx.iter().all(|&j| j < self.in_len);
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                op,
                "malformed axis map (row starts, indices or weights)",
            ))
        }
    }
}

struct AxisKernel {
    map: Arc<AxisMap>,
    outer: usize,
    inner: usize,
    /// false: out = M·x (out_len rows); true: out = Mᵀ·g (in_len rows).
    adjoint: bool,
}

impl Kernel for AxisKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let (x, m, inner) = (xs[0], &self.map, self.inner);
        let (n_src, n_dst) = if self.adjoint {
            (m.out_len, m.in_len)
        } else {
            (m.in_len, m.out_len)
        };
        let w: Vec<T> = m.w.iter().map(|&v| T::from_f64(v)).collect();
        let mut out = vec![T::zero(); self.outer * n_dst * inner];
        let taps = m.idx.len().max(1);
        par_rows(&mut out, n_dst * inner, taps * inner, |o, d| {
            let s = &x[o * n_src * inner..(o + 1) * n_src * inner];
            if inner == 1 {
                // along the last axis rows are single values: a plain sparse matrix-vector
                // product, without a slice per tap
                for i in 0..m.out_len {
                    let taps = m.start[i]..m.start[i + 1];
                    if self.adjoint {
                        for (&j, &wt) in m.idx[taps.clone()].iter().zip(&w[taps]) {
                            d[j] += wt * s[i];
                        }
                    } else {
                        let mut acc = T::zero();
                        for (&j, &wt) in m.idx[taps.clone()].iter().zip(&w[taps]) {
                            acc += wt * s[j];
                        }
                        d[i] = acc;
                    }
                }
                return;
            }
            for i in 0..m.out_len {
                let taps = m.start[i]..m.start[i + 1];
                for (&j, &wt) in m.idx[taps.clone()].iter().zip(&w[taps]) {
                    // forward reads row j into row i; the adjoint reads row i into row j
                    let (from, to) = if self.adjoint { (i, j) } else { (j, i) };
                    let src = &s[from * inner..(from + 1) * inner];
                    let dst = &mut d[to * inner..(to + 1) * inner];
                    for (a, &b) in dst.iter_mut().zip(src) {
                        *a += wt * b;
                    }
                }
            }
        });
        Ok(out)
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        xs: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        let m = &self.map;
        let csr = cuda::Csr {
            in_len: m.in_len,
            out_len: m.out_len,
            start: &m.start,
            idx: &m.idx,
            w: &m.w,
        };
        cuda::axis_map(be, xs[0], &csr, self.outer, self.inner, self.adjoint)
    }
}

impl Tensor {
    /// Apply the sparse matrix `map` along axis `ax` (length `map.in_len` → `map.out_len`).
    pub fn resample_axis(&self, ax: isize, map: Arc<AxisMap>) -> Result<Tensor> {
        self.axis_map_op(ax, map, false)
    }

    /// The adjoint of [`Tensor::resample_axis`]: `mapᵀ` along `ax` (`out_len` → `in_len`).
    pub fn resample_axis_adjoint(&self, ax: isize, map: Arc<AxisMap>) -> Result<Tensor> {
        self.axis_map_op(ax, map, true)
    }

    fn axis_map_op(&self, ax: isize, map: Arc<AxisMap>, adjoint: bool) -> Result<Tensor> {
        const OP: &str = "resample_axis";
        let a = axis(OP, ax, self.rank())?;
        map.check(OP)?;
        let (n_src, n_dst) = if adjoint {
            (map.out_len, map.in_len)
        } else {
            (map.in_len, map.out_len)
        };
        if self.shape()[a] != n_src {
            return Err(Error::shape(
                OP,
                format!(
                    "axis {a} of {:?} has length {}, the map expects {n_src}",
                    self.shape(),
                    self.shape()[a]
                ),
            ));
        }
        let s = self.shape();
        let mut shape = s.to_vec();
        shape[a] = n_dst;
        let k = AxisKernel {
            map: map.clone(),
            outer: s[..a].iter().product(),
            inner: s[a + 1..].iter().product(),
            adjoint,
        };
        let out = Tensor::run_kernel(OP, &[self], &shape, &k)?;
        Ok(record(out, &[self], || {
            Arc::new(AxisMapBackward {
                x: self.clone(),
                ax: a,
                map,
                adjoint,
            })
        }))
    }
}

struct AxisMapBackward {
    x: Tensor,
    ax: usize,
    map: Arc<AxisMap>,
    adjoint: bool,
}
impl GradFn for AxisMapBackward {
    fn name(&self) -> &'static str {
        if self.adjoint {
            "resample_axis_adjoint"
        } else {
            "resample_axis"
        }
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.axis_map_op(
            self.ax as isize,
            self.map.clone(),
            !self.adjoint,
        )?)])
    }
}

fn check4(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    match x.shape() {
        [_, _, h, w] => Ok((*h, *w)),
        s => Err(Error::shape(
            op,
            format!("input must be [N, C, H, W], got {s:?}"),
        )),
    }
}

fn check_size(op: &'static str, size: (usize, usize)) -> Result<()> {
    if size.0 == 0 || size.1 == 0 {
        return Err(Error::invalid(
            op,
            format!("output size {size:?} must be positive"),
        ));
    }
    Ok(())
}

/// Separable resize: `rows` along H, `cols` along W.
fn apply_hw(x: &Tensor, rows: AxisMap, cols: AxisMap) -> Result<Tensor> {
    x.resample_axis(2, Arc::new(rows))?
        .resample_axis(3, Arc::new(cols))
}

/// torch 'nearest' source index: floor(dst · in/out) in f32, as torch computes it.
fn nearest_map(n_in: usize, n_out: usize) -> AxisMap {
    let scale = n_in as f32 / n_out as f32;
    let rows = (0..n_out)
        .map(|i| {
            let j = ((i as f32 * scale).floor() as usize).min(n_in - 1);
            vec![(j, 1.0)]
        })
        .collect();
    AxisMap::from_rows(n_in, rows)
}

/// torch bilinear (align_corners = False) weights along one axis.
fn linear_map(n_in: usize, n_out: usize) -> AxisMap {
    let scale = n_in as f64 / n_out as f64;
    let rows = (0..n_out)
        .map(|i| {
            let src = (scale * (i as f64 + 0.5) - 0.5).max(0.0);
            let j0 = (src.floor() as usize).min(n_in - 1);
            let j1 = (j0 + 1).min(n_in - 1);
            let l1 = src - j0 as f64;
            vec![(j0, 1.0 - l1), (j1, l1)]
        })
        .collect();
    AxisMap::from_rows(n_in, rows)
}

/// Nearest-neighbour resize to `size = (out_h, out_w)`, as torch `interpolate(mode='nearest')`.
pub fn resize_nearest(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    const OP: &str = "resize_nearest";
    let (h, w) = check4(OP, x)?;
    check_size(OP, size)?;
    if h == 0 || w == 0 {
        return Err(Error::shape(OP, format!("empty input {:?}", x.shape())));
    }
    apply_hw(x, nearest_map(h, size.0), nearest_map(w, size.1))
}

/// Bilinear resize to `size = (out_h, out_w)`, as torch
/// `interpolate(mode='bilinear', align_corners=False)` (no antialiasing).
pub fn resize_bilinear(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    const OP: &str = "resize_bilinear";
    let (h, w) = check4(OP, x)?;
    check_size(OP, size)?;
    if h == 0 || w == 0 {
        return Err(Error::shape(OP, format!("empty input {:?}", x.shape())));
    }
    apply_hw(x, linear_map(h, size.0), linear_map(w, size.1))
}

/// Output length of a pooling window sweep, torch's floor mode.
fn pool_len(op: &'static str, n: usize, k: usize, stride: usize, pad: usize) -> Result<usize> {
    if k == 0 || stride == 0 {
        return Err(Error::invalid(
            op,
            format!("kernel {k} and stride {stride} must be positive"),
        ));
    }
    if pad > k / 2 {
        return Err(Error::invalid(
            op,
            format!("padding {pad} must be at most half the kernel size {k}"),
        ));
    }
    if n + 2 * pad < k {
        return Err(Error::shape(
            op,
            format!("input length {n} padded by {pad} is shorter than the kernel {k}"),
        ));
    }
    Ok((n + 2 * pad - k) / stride + 1)
}

/// Window sums along one axis with weight 1/k (padding counts towards k).
fn window_map(n: usize, n_out: usize, k: usize, stride: usize, pad: usize) -> AxisMap {
    let rows = (0..n_out)
        .map(|i| {
            let s = (i * stride) as isize - pad as isize;
            (s..s + k as isize)
                .filter(|&j| j >= 0 && (j as usize) < n)
                .map(|j| (j as usize, 1.0 / k as f64))
                .collect()
        })
        .collect();
    AxisMap::from_rows(n, rows)
}

/// Average pooling with `kernel`, `stride`, `padding` as (h, w), as torch `avg_pool2d` with
/// `count_include_pad = True` and floor mode.
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    const OP: &str = "avg_pool2d";
    let (h, w) = check4(OP, x)?;
    let oh = pool_len(OP, h, kernel.0, stride.0, padding.0)?;
    let ow = pool_len(OP, w, kernel.1, stride.1, padding.1)?;
    apply_hw(
        x,
        window_map(h, oh, kernel.0, stride.0, padding.0),
        window_map(w, ow, kernel.1, stride.1, padding.1),
    )
}

/// torch's adaptive bins: output i averages `floor(i·in/out) .. ceil((i+1)·in/out)`.
fn adaptive_map(n: usize, n_out: usize) -> AxisMap {
    let rows = (0..n_out)
        .map(|i| {
            let s = i * n / n_out;
            let e = ((i + 1) * n).div_ceil(n_out);
            (s..e).map(|j| (j, 1.0 / (e - s) as f64)).collect()
        })
        .collect();
    AxisMap::from_rows(n, rows)
}

/// Adaptive average pooling to `size = (out_h, out_w)`, as torch `adaptive_avg_pool2d`.
pub fn adaptive_avg_pool2d(x: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    const OP: &str = "adaptive_avg_pool2d";
    let (h, w) = check4(OP, x)?;
    check_size(OP, size)?;
    if h == 0 || w == 0 {
        return Err(Error::shape(OP, format!("empty input {:?}", x.shape())));
    }
    apply_hw(x, adaptive_map(h, size.0), adaptive_map(w, size.1))
}

/// The flat input index of each window's maximum (first one in scan order; a NaN wins, as in
/// torch). Windows never lie wholly in the padding because padding ≤ kernel/2.
#[allow(clippy::too_many_arguments)]
fn argmax_map<T: Float>(
    x: &[T],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
) -> Vec<u32> {
    if k == (2, 2) && s == (2, 2) && p == (0, 0) {
        return argmax_map_2x2(x, planes, (h, w), (oh, ow));
    }
    let mut map = Vec::with_capacity(planes * oh * ow);
    for plane in 0..planes {
        let base = plane * h * w;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best: Option<(usize, T)> = None;
                for ky in 0..k.0 {
                    let iy = (oy * s.0 + ky) as isize - p.0 as isize;
                    if iy < 0 || iy as usize >= h {
                        continue;
                    }
                    for kx in 0..k.1 {
                        let ix = (ox * s.1 + kx) as isize - p.1 as isize;
                        if ix < 0 || ix as usize >= w {
                            continue;
                        }
                        let i = base + iy as usize * w + ix as usize;
                        let v = x[i];
                        let take = match best {
                            None => true,
                            Some((_, b)) => !b.to_f64().is_nan() && (v > b || v.to_f64().is_nan()),
                        };
                        if take {
                            best = Some((i, v));
                        }
                    }
                }
                map.push(best.map(|(i, _)| i as u32).unwrap_or(ZERO));
            }
        }
    }
    map
}

/// `argmax_map` for 2×2 windows with stride 2 and no padding (U-Net down-sampling): the four
/// candidates in scan order, planes split over threads; the same choice as the general loop.
fn argmax_map_2x2<T: Float>(
    x: &[T],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<u32> {
    let mut map = vec![0u32; planes * oh * ow];
    let per_plane = (oh * ow).max(1);
    crate::backend::cpu::par_blocks_mut(&mut map, per_plane, |first, out| {
        for (j, o) in out.chunks_mut(per_plane).enumerate() {
            let base = (first + j) * h * w;
            for oy in 0..oh {
                for ox in 0..ow {
                    let i0 = base + 2 * oy * w + 2 * ox;
                    let mut best = i0;
                    for c in [i0 + 1, i0 + w, i0 + w + 1] {
                        let (b, v) = (x[best], x[c]);
                        #[allow(clippy::eq_op)]
                        let (b_nan, v_nan) = (b != b, v != v);
                        if !b_nan && (v > b || v_nan) {
                            best = c;
                        }
                    }
                    o[oy * ow + ox] = best as u32;
                }
            }
        }
    });
    map
}

/// Max pooling with `kernel`, `stride`, `padding` as (h, w) (torch `max_pool2d`, floor mode,
/// implicit −∞ padding). The gradient goes to each window's arg-max.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    const OP: &str = "max_pool2d";
    let (h, w) = check4(OP, x)?;
    let oh = pool_len(OP, h, kernel.0, stride.0, padding.0)?;
    let ow = pool_len(OP, w, kernel.1, stride.1, padding.1)?;
    let (n, c) = (x.shape()[0], x.shape()[1]);
    if x.elem_count() >= ZERO as usize || n * c * oh * ow >= ZERO as usize {
        return Err(Error::invalid(OP, "tensor too large for 32-bit index maps"));
    }
    let xc = x.detach().contiguous()?;
    let off = xc.layout().offset;
    let len = xc.elem_count();
    let map = {
        let st = xc.storage_read();
        let args = ((h, w), (oh, ow), kernel, stride, padding);
        let (a, b, k, s, p) = args;
        match &*st {
            CpuStorage::F32(v) => argmax_map(&v[off..off + len], n * c, a, b, k, s, p),
            CpuStorage::F64(v) => argmax_map(&v[off..off + len], n * c, a, b, k, s, p),
        }
    };
    x.gather_map(Arc::new(map), &[n, c, oh, ow])
}
