//! The fused CPU kernels of filtered leaky ReLU, one image plane at a time.
//!
//! A plane goes through four separable FIR passes and the activation without leaving the
//! cache: every pass is "vertical" (each output row a weighted sum of input rows, so the inner
//! loop runs along contiguous columns and vectorizes), and the plane is transposed between the
//! y and x passes. The upsampled plane z is therefore held transposed, `[Wz, Hz]`, and so is the
//! activation mask that the backward needs (one byte per sample of z: clamped, positive or
//! negative), which is all the forward keeps: no upsampled tensor is stored.
//!
//! Forward per plane: x + b → up along y → transpose → up along x → act (mask) → down along x
//! → transpose → down along y. Backward runs the adjoint passes in reverse order, scaling by
//! the mask in the middle, and sums the plane for the bias gradient. Each pass is polyphase:
//! only the taps that meet real (not zero-stuffed) samples are visited, and only the kept
//! outputs of a downsampling pass are computed.

use std::ops::Range;

use crate::backend::cpu::{pool, vectorized, worker_threads};
use crate::tensor::StorageElem;

/// Mask codes, one byte per upsampled sample.
pub(super) const CLAMPED: u8 = 0;
pub(super) const POSITIVE: u8 = 1;
pub(super) const NEGATIVE: u8 = 2;

/// For output index i along an axis: it reads input `ix0 + m` with tap `t0 + m·step` for m in
/// `0..count` (step = the upsampling factor: the taps between fall on inserted zeros).
#[derive(Clone, Copy, Debug)]
pub(super) struct Run {
    t0: usize,
    ix0: usize,
    count: usize,
}

/// One separable pass along one axis: `n_in` → `n_out` samples.
#[derive(Clone, Debug)]
pub(super) struct AxisPass {
    pub n_in: usize,
    pub n_out: usize,
    runs: Vec<Run>,
    /// Correlation-order taps with the gain folded in.
    taps: Vec<f64>,
    step: usize,
}

impl AxisPass {
    /// Zero-stuff by `up`, pad by `p0` in front (negative crops), correlate with `taps`, keep
    /// every `down`-th output; `n_out` outputs.
    pub fn new(
        n_in: usize,
        n_out: usize,
        taps: Vec<f64>,
        up: usize,
        down: usize,
        p0: isize,
    ) -> Self {
        let k = taps.len();
        let runs = (0..n_out)
            .map(|i| {
                // tap t of output i sits at buffer position q = i·down + t − p0; real samples
                // are at q = up·ix
                let base = (i * down) as isize - p0;
                let q0 = ((base.max(0) as usize).div_ceil(up) * up) as isize;
                let t0 = (q0 - base) as usize;
                let ix0 = q0 as usize / up;
                let count = if t0 >= k || ix0 >= n_in {
                    0
                } else {
                    (k - t0).div_ceil(up).min(n_in - ix0)
                };
                Run { t0, ix0, count }
            })
            .collect();
        AxisPass {
            n_in,
            n_out,
            runs,
            taps,
            step: up,
        }
    }

    fn taps_as<T: StorageElem>(&self) -> Vec<T> {
        self.taps.iter().map(|&t| T::from_f64(t)).collect()
    }

    /// Multiply-adds per column of one plane (for sizing the thread split).
    fn work(&self) -> usize {
        self.runs.iter().map(|r| r.count).sum()
    }
}

/// The whole op for one plane shape.
#[derive(Clone, Debug)]
pub(super) struct PlaneSpec {
    /// Upsampling along y (rows) and x (columns), then downsampling along x and y.
    pub uy: AxisPass,
    pub ux: AxisPass,
    pub dx: AxisPass,
    pub dy: AxisPass,
    pub gain: f64,
    pub slope: f64,
    pub clamp: Option<f64>,
}

impl PlaneSpec {
    pub fn in_len(&self) -> usize {
        self.uy.n_in * self.ux.n_in
    }
    pub fn out_len(&self) -> usize {
        self.dy.n_out * self.dx.n_out
    }
    /// Samples of the upsampled plane (= mask bytes per plane).
    pub fn mid_len(&self) -> usize {
        self.uy.n_out * self.ux.n_out
    }
    fn work(&self) -> usize {
        let (hx, hz) = (self.uy.n_in, self.uy.n_out);
        let wo = self.dx.n_out;
        self.uy.work() * self.ux.n_in
            + self.ux.work() * hz
            + self.dx.work() * hz
            + self.dy.work() * wo
            + self.mid_len()
            + hx
    }
    /// Largest scratch plane any stage needs.
    fn scratch_len(&self) -> usize {
        let (hx, hz, wx, wz, wo) = (
            self.uy.n_in,
            self.uy.n_out,
            self.ux.n_in,
            self.ux.n_out,
            self.dx.n_out,
        );
        [hx * wx, hz * wx, hz * wz, hz * wo]
            .into_iter()
            .max()
            .unwrap_or(0)
    }
}

/// Columns handled per register block in the row passes.
const BLOCK: usize = 16;

/// `dst` row i = Σ_m taps[t0 + m·step] · `src` row (ix0 + m), rows of `cols` values.
#[inline(always)]
fn pass_gather<T: StorageElem>(src: &[T], cols: usize, p: &AxisPass, taps: &[T], dst: &mut [T]) {
    for (i, r) in p.runs.iter().enumerate() {
        let drow = &mut dst[i * cols..(i + 1) * cols];
        let mut c0 = 0;
        // a block of columns accumulates in registers over all its taps, then is stored once
        while c0 + BLOCK <= cols {
            let mut acc = [T::zero(); BLOCK];
            for m in 0..r.count {
                let w = taps[r.t0 + m * p.step];
                let s = &src[(r.ix0 + m) * cols + c0..][..BLOCK];
                for (a, &v) in acc.iter_mut().zip(s) {
                    *a += w * v;
                }
            }
            drow[c0..c0 + BLOCK].copy_from_slice(&acc);
            c0 += BLOCK;
        }
        let tail = &mut drow[c0..];
        tail.fill(T::zero());
        for m in 0..r.count {
            let w = taps[r.t0 + m * p.step];
            let s = &src[(r.ix0 + m) * cols + c0..][..tail.len()];
            for (a, &v) in tail.iter_mut().zip(s) {
                *a += w * v;
            }
        }
    }
}

/// The adjoint of [`pass_gather`]: `dst` (the pass's input shape) row (ix0 + m) +=
/// taps[t0 + m·step] · `src` row i, outputs i in order.
#[inline(always)]
fn pass_scatter<T: StorageElem>(src: &[T], cols: usize, p: &AxisPass, taps: &[T], dst: &mut [T]) {
    dst[..p.n_in * cols].fill(T::zero());
    for (i, r) in p.runs.iter().enumerate() {
        let srow = &src[i * cols..(i + 1) * cols];
        for m in 0..r.count {
            let w = taps[r.t0 + m * p.step];
            let drow = &mut dst[(r.ix0 + m) * cols..][..cols];
            for (d, &v) in drow.iter_mut().zip(srow) {
                *d += w * v;
            }
        }
    }
}

/// `dst[c·rows + r] = src[r·cols + c]`, in 8×8 tiles.
#[inline(always)]
fn transpose<T: StorageElem>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const TILE: usize = 8;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// Per-thread buffers, each big enough for any stage of one plane.
struct Scratch<T> {
    a: Vec<T>,
    b: Vec<T>,
}

impl<T: StorageElem> Scratch<T> {
    fn new(spec: &PlaneSpec) -> Self {
        let n = spec.scratch_len();
        Scratch {
            a: vec![T::zero(); n],
            b: vec![T::zero(); n],
        }
    }
}

/// Forward of one plane: `out` gets `[Ho, Wo]`, `mask` `[Wz, Hz]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_plane<T: StorageElem>(
    spec: &PlaneSpec,
    x: &[T],
    bias: T,
    tu: &[T],
    td: &[T],
    s: &mut Scratch<T>,
    out: &mut [T],
    mask: &mut [u8],
) {
    let (wx, hz, wz, wo) = (spec.ux.n_in, spec.uy.n_out, spec.ux.n_out, spec.dx.n_out);
    let (a, b) = (&mut s.a, &mut s.b);
    for (d, &v) in a.iter_mut().zip(x) {
        *d = v + bias;
    }
    pass_gather(a, wx, &spec.uy, tu, b); // [Hz, Wx]
    transpose(b, hz, wx, a); // [Wx, Hz]
    pass_gather(a, hz, &spec.ux, tu, b); // z: [Wz, Hz]
    let z = &mut b[..wz * hz];
    let (gain, slope) = (T::from_f64(spec.gain), T::from_f64(spec.slope));
    match spec.clamp {
        Some(c) => {
            let (lo, hi) = (T::from_f64(-c), T::from_f64(c));
            for (v, m) in z.iter_mut().zip(mask.iter_mut()) {
                let pos = *v > T::zero();
                let y = if pos { *v } else { *v * slope } * gain;
                // the gradient passes where the unclamped value lies in [−c, c], as clamp's
                *m = if y >= lo && y <= hi {
                    if pos { POSITIVE } else { NEGATIVE }
                } else {
                    CLAMPED
                };
                *v = y.max(lo).min(hi);
            }
        }
        None => {
            for (v, m) in z.iter_mut().zip(mask.iter_mut()) {
                let pos = *v > T::zero();
                *m = if pos { POSITIVE } else { NEGATIVE };
                *v = if pos { *v } else { *v * slope } * gain;
            }
        }
    }
    pass_gather(b, hz, &spec.dx, td, a); // [Wo, Hz]
    transpose(a, wo, hz, b); // [Hz, Wo]
    pass_gather(b, wo, &spec.dy, td, out); // [Ho, Wo]
}

/// Backward of one plane: `gx` gets the input gradient `[H, W]`; returns its sum.
#[inline(always)]
fn backward_plane<T: StorageElem>(
    spec: &PlaneSpec,
    g: &[T],
    mask: &[u8],
    tu: &[T],
    td: &[T],
    s: &mut Scratch<T>,
    gx: &mut [T],
) -> f64 {
    let (wx, hz, wz, wo) = (spec.ux.n_in, spec.uy.n_out, spec.ux.n_out, spec.dx.n_out);
    let (a, b) = (&mut s.a, &mut s.b);
    pass_scatter(g, wo, &spec.dy, td, a); // [Hz, Wo]
    transpose(a, hz, wo, b); // [Wo, Hz]
    pass_scatter(b, hz, &spec.dx, td, a); // [Wz, Hz]
    let (gain, slope) = (T::from_f64(spec.gain), T::from_f64(spec.slope));
    for (v, &m) in a[..wz * hz].iter_mut().zip(mask) {
        // (g · gain) · slope, the order of the reference's chain rule
        let t = *v * gain;
        *v = match m {
            POSITIVE => t,
            NEGATIVE => t * slope,
            _ => T::zero(),
        };
    }
    pass_scatter(a, hz, &spec.ux, tu, b); // [Wx, Hz]
    transpose(b, wx, hz, a); // [Hz, Wx]
    pass_scatter(a, wx, &spec.uy, tu, gx); // [H, W]
    gx.iter().map(|v| v.to_f64()).sum()
}

/// Split `planes` into contiguous blocks, one per thread when the work pays for threads, and
/// run `f(block, out_chunk, mask_chunk)` on each; the results come back in block order.
fn par_planes<T: Send, M: Send, R: Send>(
    planes: usize,
    work_per_plane: usize,
    out: &mut [T],
    out_plane: usize,
    mask: &mut [M],
    mask_plane: usize,
    f: impl Fn(Range<usize>, &mut [T], &mut [M]) -> R + Sync,
) -> Vec<R> {
    let threads = worker_threads()
        .min((planes * work_per_plane) >> 15)
        .min(planes)
        .max(1);
    let per = planes.div_ceil(threads).max(1);
    if threads == 1 {
        return vec![f(0..planes, out, mask)];
    }
    let f = &f;
    let mut jobs: Vec<Box<dyn FnOnce() -> R + Send + '_>> = Vec::new();
    let mut rest_out = out;
    let mut rest_mask = mask;
    let mut p0 = 0;
    while p0 < planes {
        let n = per.min(planes - p0);
        let (o, ro) = std::mem::take(&mut rest_out).split_at_mut(n * out_plane);
        let ml = (n * mask_plane).min(rest_mask.len());
        let (m, rm) = std::mem::take(&mut rest_mask).split_at_mut(ml);
        rest_out = ro;
        rest_mask = rm;
        let range = p0..p0 + n;
        jobs.push(Box::new(move || f(range, o, m)));
        p0 += n;
    }
    pool::join_all(jobs)
}

/// Forward over `planes` planes of `x` (plane p has bias `bias[p % channels]`, none when
/// `bias` is empty). Returns the output and, when `keep_mask`, the masks of all planes.
pub(super) fn forward<T: StorageElem>(
    spec: &PlaneSpec,
    x: &[T],
    bias: &[T],
    channels: usize,
    keep_mask: bool,
) -> (Vec<T>, Vec<u8>) {
    let planes = x.len() / spec.in_len().max(1);
    let (il, ol, ml) = (spec.in_len(), spec.out_len(), spec.mid_len());
    let mut out = vec![T::zero(); planes * ol];
    let mut mask = vec![0u8; if keep_mask { planes * ml } else { 0 }];
    let mask_plane = if keep_mask { ml } else { 0 };
    let (tu, td) = (spec.ux.taps_as::<T>(), spec.dx.taps_as::<T>());
    par_planes(
        planes,
        spec.work(),
        &mut out,
        ol,
        &mut mask,
        mask_plane,
        |range, o, m| {
            let mut s = Scratch::new(spec);
            let mut own = vec![0u8; if keep_mask { 0 } else { ml }];
            for (i, p) in range.enumerate() {
                let b = if bias.is_empty() {
                    T::zero()
                } else {
                    bias[p % channels]
                };
                let mp = if keep_mask {
                    &mut m[i * ml..(i + 1) * ml]
                } else {
                    &mut own[..]
                };
                vectorized(
                    #[inline(always)]
                    || {
                        forward_plane(
                            spec,
                            &x[p * il..(p + 1) * il],
                            b,
                            &tu,
                            &td,
                            &mut s,
                            &mut o[i * ol..(i + 1) * ol],
                            mp,
                        )
                    },
                );
            }
        },
    );
    (out, mask)
}

/// Backward over all planes: `[gx (planes · H · W) | gb (channels)]`, gb summed over the batch
/// in plane order (the same bits for any thread count).
pub(super) fn backward<T: StorageElem>(
    spec: &PlaneSpec,
    g: &[T],
    mask: &[u8],
    channels: usize,
) -> Vec<T> {
    let (il, ol, ml) = (spec.in_len(), spec.out_len(), spec.mid_len());
    let planes = g.len() / ol.max(1);
    let mut out = vec![T::zero(); planes * il + channels];
    let (gx, gb) = out.split_at_mut(planes * il);
    let (tu, td) = (spec.ux.taps_as::<T>(), spec.dx.taps_as::<T>());
    let mut none: [u8; 0] = [];
    let sums = par_planes(
        planes,
        spec.work(),
        gx,
        il,
        &mut none[..],
        0,
        |range, gxs, _| {
            let mut s = Scratch::new(spec);
            range
                .enumerate()
                .map(|(i, p)| {
                    vectorized(
                        #[inline(always)]
                        || {
                            backward_plane(
                                spec,
                                &g[p * ol..(p + 1) * ol],
                                &mask[p * ml..(p + 1) * ml],
                                &tu,
                                &td,
                                &mut s,
                                &mut gxs[i * il..(i + 1) * il],
                            )
                        },
                    )
                })
                .collect::<Vec<f64>>()
        },
    );
    let sums: Vec<f64> = sums.into_iter().flatten().collect();
    for (c, o) in gb.iter_mut().enumerate() {
        *o = T::from_f64(sums.iter().skip(c).step_by(channels.max(1)).sum());
    }
    out
}
