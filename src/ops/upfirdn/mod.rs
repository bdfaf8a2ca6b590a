//! FIR resampling of image batches, as NVlabs' `upfirdn2d`: upsample by zero insertion, pad (or
//! crop), filter, downsample by keeping every d-th sample. Plus the helpers StyleGAN builds on it
//! (`setup_filter`, `upsample2d`, `downsample2d`, `filter2d`).
//!
//! Conventions (NVlabs `torch_utils/ops/upfirdn2d.py`):
//! - `flip_filter == false` is true convolution (the filter is flipped before a correlation),
//!   `true` is correlation. For the symmetric filters StyleGAN uses both agree.
//! - A 1-D filter `[k]` is separable: applied along x, then along y. `gain` scales the filter by
//!   `gain^(ndim/2)`, so the whole op scales by `gain` either way.
//! - Padding is `(x0, x1, y0, y1)` on the upsampled image; negative values crop.
//! - The filter is a constant (it gets no gradient, as in NVlabs).
//!
//! The backward of upfirdn2d is upfirdn2d with up and down swapped, the filter flipped and the
//! padding adjusted so the result has the input's shape; being linear, the pair are each other's
//! backward, so gradients of any order come for free.

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use std::sync::Arc;

use crate::autograd::{GradFn, record};
use crate::tensor::{DType, Kernel, StorageElem, Tensor};
use crate::{Error, Result};

/// One fully resolved upfirdn2d: filter taps in correlation order with the gain folded in.
#[derive(Clone, Debug)]
struct Plan {
    /// `[fh*fw]` for a 2-D filter, `[k]` for a separable one (used along x, then along y).
    taps: Arc<Vec<f64>>,
    separable: bool,
    fw: usize,
    fh: usize,
    up: (usize, usize),
    down: (usize, usize),
    /// (x0, x1, y0, y1)
    pad: (isize, isize, isize, isize),
}

impl Plan {
    /// Output length along one axis, or None when the padded buffer is shorter than the filter.
    fn out_len(n: usize, up: usize, p0: isize, p1: isize, k: usize, down: usize) -> Option<usize> {
        let buf = (n * up) as isize + p0 + p1;
        if buf < k as isize {
            return None;
        }
        Some((buf as usize - k) / down + 1)
    }

    fn out_hw(&self, op: &'static str, h: usize, w: usize) -> Result<(usize, usize)> {
        let (x0, x1, y0, y1) = self.pad;
        let ow = Plan::out_len(w, self.up.0, x0, x1, self.fw, self.down.0);
        let oh = Plan::out_len(h, self.up.1, y0, y1, self.fh, self.down.1);
        match (oh, ow) {
            (Some(oh), Some(ow)) => Ok((oh, ow)),
            _ => Err(Error::shape(
                op,
                format!(
                    "input {h}x{w} upsampled by {:?} and padded by {:?} is smaller than the {}x{} filter",
                    self.up, self.pad, self.fh, self.fw
                ),
            )),
        }
    }

    /// The plan whose output is the gradient of this one's input: up/down swapped, filter
    /// reversed, padding chosen so that the result has the input's shape.
    fn adjoint(&self, in_hw: (usize, usize), out_hw: (usize, usize)) -> Plan {
        let (ih, iw) = (in_hw.0 as isize, in_hw.1 as isize);
        let (oh, ow) = (out_hw.0 as isize, out_hw.1 as isize);
        let (upx, upy) = (self.up.0 as isize, self.up.1 as isize);
        let (dx, dy) = (self.down.0 as isize, self.down.1 as isize);
        let (fw, fh) = (self.fw as isize, self.fh as isize);
        let (x0, _, y0, _) = self.pad;
        let mut taps = self.taps.as_ref().clone();
        taps.reverse(); // reversing [fh*fw] row-major flips both axes
        Plan {
            taps: Arc::new(taps),
            separable: self.separable,
            fw: self.fw,
            fh: self.fh,
            up: self.down,
            down: self.up,
            pad: (
                fw - x0 - 1,
                iw * upx - ow * dx + x0 - upx + 1,
                fh - y0 - 1,
                ih * upy - oh * dy + y0 - upy + 1,
            ),
        }
    }
}

/// Run `f(row, chunk)` over the `rows` consecutive chunks of `row_len` values of `out`, split
/// over threads when the work is large enough to pay for them.
pub(crate) fn par_rows<U: Send>(
    out: &mut [U],
    row_len: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [U]) + Sync,
) {
    if row_len == 0 {
        return;
    }
    let rows = out.len() / row_len;
    let threads = crate::backend::cpu::worker_threads()
        .min((rows * work_per_row) >> 15)
        .min(rows)
        .max(1);
    if threads == 1 {
        for (r, c) in out.chunks_mut(row_len).enumerate() {
            f(r, c);
        }
        return;
    }
    let per = rows.div_ceil(threads);
    let f = &f;
    crate::backend::cpu::pool::join_all(
        out.chunks_mut(per * row_len)
            .enumerate()
            .map(|(t, block)| {
                Box::new(move || {
                    for (r, c) in block.chunks_mut(row_len).enumerate() {
                        f(t * per + r, c);
                    }
                }) as Box<dyn FnOnce() + Send + '_>
            })
            .collect(),
    );
}

/// For each output index along an axis, the taps that meet real input samples: output i reads
/// input `ix0 + m` with tap `t0 + m·up` for m in 0..count. This replaces a per-tap test of
/// "is this position of the zero-stuffed, padded buffer a real sample?".
#[derive(Clone, Copy)]
struct TapRun {
    t0: usize,
    ix0: usize,
    count: usize,
}

fn tap_runs(n_out: usize, n_in: usize, k: usize, up: usize, down: usize, p0: isize) -> Vec<TapRun> {
    (0..n_out)
        .map(|i| {
            // buffer position of tap t is q = i·down + t − p0; real samples sit at q = up·ix
            let base = (i * down) as isize - p0;
            // first real sample at or after the buffer start
            let q0 = ((base.max(0) as usize).div_ceil(up) * up) as isize;
            let t0 = (q0 - base) as usize;
            let ix0 = q0 as usize / up;
            let count = if t0 >= k || ix0 >= n_in {
                0
            } else {
                (k - t0).div_ceil(up).min(n_in - ix0)
            };
            TapRun { t0, ix0, count }
        })
        .collect()
}

/// One separable pass along an axis of `lines` lines of `n_in` entries, each entry a run of
/// `inner` contiguous values (inner = 1 along x, = width along y).
#[allow(clippy::too_many_arguments)]
fn pass_1d<T: StorageElem>(
    src: &[T],
    lines: usize,
    n_in: usize,
    n_out: usize,
    inner: usize,
    taps: &[T],
    up: usize,
    down: usize,
    p0: isize,
) -> Vec<T> {
    let runs = tap_runs(n_out, n_in, taps.len(), up, down, p0);
    let mut dst = vec![T::zero(); lines * n_out * inner];
    par_rows(
        &mut dst,
        n_out * inner,
        n_out * inner * taps.len(),
        |l, d| {
            // compiled for the CPU's vector width (the loops below are its whole cost)
            crate::backend::cpu::vectorized(
                #[inline(always)]
                || {
                    let s = &src[l * n_in * inner..(l + 1) * n_in * inner];
                    for (i, r) in runs.iter().enumerate() {
                        let drow = &mut d[i * inner..(i + 1) * inner];
                        for m in 0..r.count {
                            let w = taps[r.t0 + m * up];
                            let j = r.ix0 + m;
                            let srow = &s[j * inner..(j + 1) * inner];
                            for (o, &v) in drow.iter_mut().zip(srow) {
                                *o += w * v;
                            }
                        }
                    }
                },
            )
        },
    );
    dst
}

/// Output columns `lo..hi` that, without upsampling along x, read all `k` taps from real input
/// samples: output i reads input `cols[lo].ix0 + (i − lo)·down + m` with tap m. Where x is
/// upsampled (or no column is full) the span is empty.
fn full_span(cols: &[TapRun], k: usize, up: usize) -> (usize, usize) {
    if up != 1 {
        return (0, 0);
    }
    let full = |r: &TapRun| r.t0 == 0 && r.count == k;
    match cols.iter().position(full) {
        // with up = 1 the full columns are one contiguous run (input start rises by `down`)
        Some(lo) => {
            let hi = lo + cols[lo..].iter().take_while(|r| full(r)).count();
            (lo, hi)
        }
        None => (0, 0),
    }
}

struct UpfirdnKernel {
    plan: Plan,
    planes: usize,
    in_hw: (usize, usize),
    out_hw: (usize, usize),
}

impl Kernel for UpfirdnKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let x = xs[0];
        let p = &self.plan;
        let (h, w) = self.in_hw;
        let (oh, ow) = self.out_hw;
        let taps: Vec<T> = p.taps.iter().map(|&v| T::from_f64(v)).collect();
        if p.separable {
            let t = pass_1d(
                x,
                self.planes * h,
                w,
                ow,
                1,
                &taps,
                p.up.0,
                p.down.0,
                p.pad.0,
            );
            return Ok(pass_1d(
                &t,
                self.planes,
                h,
                oh,
                ow,
                &taps,
                p.up.1,
                p.down.1,
                p.pad.2,
            ));
        }
        let (fh, fw) = (p.fh, p.fw);
        let rows = tap_runs(oh, h, fh, p.up.1, p.down.1, p.pad.2);
        let cols = tap_runs(ow, w, fw, p.up.0, p.down.0, p.pad.0);
        let (lo, hi) = full_span(&cols, fw, p.up.0);
        let down = p.down.0;
        let mut out = vec![T::zero(); self.planes * oh * ow];
        par_rows(&mut out, oh * ow, oh * ow * fh * fw, |plane, o| {
            // compiled for the CPU's vector width: the span loops vectorise (no FMA
            // contraction, so the same bits as before)
            crate::backend::cpu::vectorized(
                #[inline(always)]
                || {
                    let xp = &x[plane * h * w..(plane + 1) * h * w];
                    for (oy, ry) in rows.iter().enumerate() {
                        let orow = &mut o[oy * ow..(oy + 1) * ow];
                        for my in 0..ry.count {
                            let iy = ry.ix0 + my;
                            let xrow = &xp[iy * w..(iy + 1) * w];
                            let trow = &taps[(ry.t0 + my * p.up.1) * fw..][..fw];
                            // edge columns tap by tap
                            for ox in (0..lo).chain(hi..ow) {
                                let rx = &cols[ox];
                                let acc = &mut orow[ox];
                                for mx in 0..rx.count {
                                    *acc += trow[rx.t0 + mx * p.up.0] * xrow[rx.ix0 + mx];
                                }
                            }
                            if lo == hi {
                                continue;
                            }
                            // interior columns one tap at a time over the whole span (vectorises);
                            // each output still adds its taps in the order of the loop above, so the
                            // sums are the same bits
                            let start = cols[lo].ix0;
                            let span = &mut orow[lo..hi];
                            for (mx, &t) in trow.iter().enumerate() {
                                let xs = &xrow[start + mx..];
                                if down == 1 {
                                    for (a, &v) in span.iter_mut().zip(xs) {
                                        *a += t * v;
                                    }
                                } else {
                                    for (a, &v) in span.iter_mut().zip(xs.iter().step_by(down)) {
                                        *a += t * v;
                                    }
                                }
                            }
                        }
                    }
                },
            )
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
        let p = &self.plan;
        let plan = cuda::FirPlan {
            taps: &p.taps,
            separable: p.separable,
            fh: p.fh,
            fw: p.fw,
            up: p.up,
            down: p.down,
            pad0: (p.pad.0, p.pad.2),
        };
        cuda::upfirdn(be, xs[0], &plan, self.planes, self.in_hw, self.out_hw)
    }
}

fn run_plan(x: &Tensor, plan: Plan) -> Result<Tensor> {
    let s = x.shape();
    let (h, w) = (s[2], s[3]);
    let (oh, ow) = plan.out_hw("upfirdn2d", h, w)?;
    let k = UpfirdnKernel {
        plan: plan.clone(),
        planes: s[0] * s[1],
        in_hw: (h, w),
        out_hw: (oh, ow),
    };
    let out = Tensor::run_kernel("upfirdn2d", &[x], &[s[0], s[1], oh, ow], &k)?;
    Ok(record(out, &[x], || {
        Arc::new(UpfirdnBackward {
            x: x.clone(),
            adjoint: plan.adjoint((h, w), (oh, ow)),
        })
    }))
}

struct UpfirdnBackward {
    x: Tensor,
    adjoint: Plan,
}
impl GradFn for UpfirdnBackward {
    fn name(&self) -> &'static str {
        "upfirdn2d"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(run_plan(g, self.adjoint.clone())?)])
    }
}

/// Filter taps and size `(fw, fh)` from a 1-D (separable) or 2-D filter tensor.
fn filter_taps(op: &'static str, f: &Tensor) -> Result<(Vec<f64>, bool, usize, usize)> {
    // taps are host metadata of the op: a filter on a GPU is read back once
    let v = f.to_device(crate::Device::Cpu)?.to_vec_f64()?;
    let (separable, fw, fh) = match f.shape() {
        [k] => (true, *k, *k),
        [fh, fw] => (false, *fw, *fh),
        s => {
            return Err(Error::shape(
                op,
                format!("the filter must be [taps] or [height, width], got {s:?}"),
            ));
        }
    };
    if fw == 0 || fh == 0 {
        return Err(Error::shape(
            op,
            format!("empty filter of shape {:?}", f.shape()),
        ));
    }
    Ok((v, separable, fw, fh))
}

fn check_x(op: &'static str, x: &Tensor) -> Result<()> {
    if x.rank() != 4 {
        return Err(Error::shape(
            op,
            format!("input must be [N, C, H, W], got {:?}", x.shape()),
        ));
    }
    Ok(())
}

/// Upsample (zero insertion), pad/crop, FIR-filter and downsample a batch `[N, C, H, W]`.
///
/// `f` is `[fh, fw]` or separable `[k]`; `up`/`down` are `(x, y)` factors ≥ 1; `pad` is
/// `(x0, x1, y0, y1)` on the upsampled image (negative crops). Output width is
/// `(W·up_x + x0 + x1 − fw) / down_x + 1` (integer division), likewise the height.
pub fn upfirdn2d(
    x: &Tensor,
    f: &Tensor,
    up: (usize, usize),
    down: (usize, usize),
    pad: (isize, isize, isize, isize),
    gain: f64,
    flip_filter: bool,
) -> Result<Tensor> {
    const OP: &str = "upfirdn2d";
    check_x(OP, x)?;
    if up.0 == 0 || up.1 == 0 || down.0 == 0 || down.1 == 0 {
        return Err(Error::invalid(
            OP,
            format!("up {up:?} and down {down:?} must be at least 1"),
        ));
    }
    if f.requires_grad() {
        // As in NVlabs: filters are fixed buffers; a gradient for them is never computed.
        return Err(Error::invalid(
            OP,
            "the filter must be a constant (detach it): upfirdn2d gives it no gradient",
        ));
    }
    let (mut taps, separable, fw, fh) = filter_taps(OP, f)?;
    let scale = if separable { gain.sqrt() } else { gain };
    // The kernel correlates; true convolution (the default) correlates with the flipped filter.
    if !flip_filter {
        taps.reverse();
    }
    for t in &mut taps {
        *t *= scale;
    }
    run_plan(
        x,
        Plan {
            taps: Arc::new(taps),
            separable,
            fw,
            fh,
            up,
            down,
            pad,
        },
    )
}

/// A FIR filter ready for [`upfirdn2d`], as NVlabs' `setup_filter`: `taps` is 1-D `[k]` (given
/// as `shape = [k]`) or 2-D (`shape = [fh, fw]`). A 1-D filter stays separable when `separable`
/// says so (by default when it has at least 8 taps, NVlabs' rule) and is otherwise expanded to
/// its outer product. Then: normalised to sum 1 (`normalize`), flipped (`flip_filter`), and
/// scaled by `gain^(ndim/2)`.
pub fn setup_filter(
    taps: &[f64],
    shape: &[usize],
    normalize: bool,
    flip_filter: bool,
    gain: f64,
    separable: Option<bool>,
    dtype: DType,
) -> Result<Tensor> {
    const OP: &str = "setup_filter";
    let n: usize = shape.iter().product();
    if taps.is_empty() || n != taps.len() || shape.is_empty() || shape.len() > 2 {
        return Err(Error::shape(
            OP,
            format!(
                "{} taps for filter shape {shape:?} (want [k] or [fh, fw], non-empty)",
                taps.len()
            ),
        ));
    }
    let sep = shape.len() == 1 && separable.unwrap_or(taps.len() >= 8);
    if separable == Some(true) && shape.len() == 2 {
        return Err(Error::invalid(OP, "a 2-D filter cannot be separable"));
    }
    let (mut v, shape): (Vec<f64>, Vec<usize>) = if shape.len() == 1 && !sep {
        let k = taps.len();
        let outer = (0..k * k).map(|i| taps[i / k] * taps[i % k]).collect();
        (outer, vec![k, k])
    } else {
        (taps.to_vec(), shape.to_vec())
    };
    if normalize {
        let s: f64 = v.iter().sum();
        if s == 0.0 {
            return Err(Error::invalid(
                OP,
                "cannot normalise a filter that sums to 0",
            ));
        }
        v.iter_mut().for_each(|t| *t /= s);
    }
    if flip_filter {
        v.reverse();
    }
    let g = gain.powf(shape.len() as f64 / 2.0);
    v.iter_mut().for_each(|t| *t *= g);
    Tensor::from_f64s(&v, &shape, dtype)
}

/// (fw, fh) of a filter tensor.
fn filter_size(op: &'static str, f: &Tensor) -> Result<(isize, isize)> {
    let (_, _, fw, fh) = filter_taps(op, f)?;
    Ok((fw as isize, fh as isize))
}

/// Filter without resampling; by default the output has the input's size. `padding`
/// `(x0, x1, y0, y1)` is added to that (negative crops).
pub fn filter2d(
    x: &Tensor,
    f: &Tensor,
    padding: (isize, isize, isize, isize),
    gain: f64,
) -> Result<Tensor> {
    let (fw, fh) = filter_size("filter2d", f)?;
    let (x0, x1, y0, y1) = padding;
    let p = (
        x0 + fw / 2,
        x1 + (fw - 1) / 2,
        y0 + fh / 2,
        y1 + (fh - 1) / 2,
    );
    upfirdn2d(x, f, (1, 1), (1, 1), p, gain, false)
}

/// Upsample by `up` (both axes) with the filter (offsets as NVlabs, with Python's floor
/// division); by default the output is exactly `up` times
/// the input. The filter is scaled by `up²` so a DC input keeps its level.
pub fn upsample2d(
    x: &Tensor,
    f: &Tensor,
    up: usize,
    padding: (isize, isize, isize, isize),
    gain: f64,
) -> Result<Tensor> {
    let (fw, fh) = filter_size("upsample2d", f)?;
    let u = up as isize;
    let (x0, x1, y0, y1) = padding;
    let p = (
        x0 + (fw + u - 1).div_euclid(2),
        x1 + (fw - u).div_euclid(2),
        y0 + (fh + u - 1).div_euclid(2),
        y1 + (fh - u).div_euclid(2),
    );
    upfirdn2d(x, f, (up, up), (1, 1), p, gain * (up * up) as f64, false)
}

/// Downsample by `down` (both axes) after filtering; by default the output is exactly the input
/// divided by `down`.
pub fn downsample2d(
    x: &Tensor,
    f: &Tensor,
    down: usize,
    padding: (isize, isize, isize, isize),
    gain: f64,
) -> Result<Tensor> {
    let (fw, fh) = filter_size("downsample2d", f)?;
    let d = down as isize;
    let (x0, x1, y0, y1) = padding;
    let p = (
        x0 + (fw - d + 1).div_euclid(2),
        x1 + (fw - d).div_euclid(2),
        y0 + (fh - d + 1).div_euclid(2),
        y1 + (fh - d).div_euclid(2),
    );
    upfirdn2d(x, f, (1, 1), (down, down), p, gain, false)
}
