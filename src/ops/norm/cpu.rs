//! Fast CPU loops of the norm kernels. A norm row (one sample's group: c/groups channels ×
//! inner values, or one token's features for layer norm) is small enough to stay in cache, so
//! each row is finished in one visit: statistics, weight/bias partial sums and the output, with
//! the data read from memory once. Sums run over `LANES` independent accumulators of the element
//! type (one array per sum, which the compiler turns into vector adds; a single accumulator chain
//! would serialise every add on its latency), flushed into f64 every `BLOCK` values.

use crate::backend::cpu::{vectorized, worker_threads};
use crate::tensor::StorageElem;

/// Independent accumulators per sum.
const LANES: usize = 16;

/// Below this many elements, one thread does the whole kernel.
const PAR_MIN: usize = 1 << 15;

/// Values summed in the element type before each flush into the f64 totals.
const BLOCK: usize = LANES * 16;

/// Σ f(x[i]) in f64: `LANES` accumulators of the element type per block of `BLOCK` values
/// (one accumulator array, which the compiler turns into vector adds), blocks added in f64.
#[inline(always)]
fn lane_sum<T: StorageElem>(x: &[T], f: impl Fn(T) -> T) -> f64 {
    let mut s = 0f64;
    for blk in x.chunks(BLOCK) {
        let mut ls = [T::zero(); LANES];
        let chunks = blk.chunks_exact(LANES);
        // the tail has its own sum: folding it into a lane keeps the lanes scalar
        let mut rs = T::zero();
        for &v in chunks.remainder() {
            rs += f(v);
        }
        for c in chunks {
            for l in 0..LANES {
                ls[l] += f(c[l]);
            }
        }
        s += rs.to_f64() + ls.iter().map(|v| v.to_f64()).sum::<f64>();
    }
    s
}

/// (Σ f(a[i], b[i]).0, Σ f(a[i], b[i]).1) in f64 in one pass, each summed like [`lane_sum`].
#[inline(always)]
fn lane_sum2<T: StorageElem>(a: &[T], b: &[T], f: impl Fn(T, T) -> (T, T)) -> (f64, f64) {
    let (mut s0, mut s1) = (0f64, 0f64);
    for (ba, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let (mut l0, mut l1) = ([T::zero(); LANES], [T::zero(); LANES]);
        let (ca, cb) = (ba.chunks_exact(LANES), bb.chunks_exact(LANES));
        let (mut r0, mut r1) = (T::zero(), T::zero());
        for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
            let (u, v) = f(x, y);
            r0 += u;
            r1 += v;
        }
        for (x, y) in ca.zip(cb) {
            for l in 0..LANES {
                let (u, v) = f(x[l], y[l]);
                l0[l] += u;
                l1[l] += v;
            }
        }
        s0 += r0.to_f64() + l0.iter().map(|v| v.to_f64()).sum::<f64>();
        s1 += r1.to_f64() + l1.iter().map(|v| v.to_f64()).sum::<f64>();
    }
    (s0, s1)
}

/// Σ f(a[i], b[i], c[i]) in f64, summed like [`lane_sum`].
#[inline(always)]
fn lane_sum3<T: StorageElem>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T) -> f64 {
    let mut s = 0f64;
    for ((ba, bb), bc) in a.chunks(BLOCK).zip(b.chunks(BLOCK)).zip(c.chunks(BLOCK)) {
        let mut ls = [T::zero(); LANES];
        let (ca, cb, cc) = (
            ba.chunks_exact(LANES),
            bb.chunks_exact(LANES),
            bc.chunks_exact(LANES),
        );
        let mut rs = T::zero();
        for ((&x, &y), &z) in ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .zip(cc.remainder())
        {
            rs += f(x, y, z);
        }
        for ((x, y), z) in ca.zip(cb).zip(cc) {
            for l in 0..LANES {
                ls[l] += f(x[l], y[l], z[l]);
            }
        }
        s += rs.to_f64() + ls.iter().map(|v| v.to_f64()).sum::<f64>();
    }
    s
}

/// Mean and 1/sqrt(var + eps) of one row (biased variance) in two passes over the (cached) row:
/// the mean, then the centred sum of squares, each summed in f64 across blocks.
#[inline(always)]
pub(super) fn row_stats<T: StorageElem>(xr: &[T], eps: f64) -> (f64, f64) {
    let m = xr.len();
    if m == 0 {
        return (0.0, 1.0 / eps.sqrt());
    }
    // shifted by the first value, so that the f32 block sums of a large mean stay exact-ish
    let kt = xr[0];
    let mf = m as f64;
    let mean = kt.to_f64() + lane_sum(xr, |v| v - kt) / mf;
    let mean_t = T::from_f64(mean);
    let ss = lane_sum(xr, |v| {
        let d = v - mean_t;
        d * d
    });
    // the rounded mean m̃ gives Σ(x − m̃)² = Σ(x − m)² + m·(m − m̃)²: correct for it
    let dm = mean - mean_t.to_f64();
    let var = (ss / mf - dm * dm).max(0.0);
    (mean, 1.0 / (var + eps).sqrt())
}

/// Split `rows` rows of `out` (each `row_len` long) over worker threads in contiguous runs and
/// call `f(first_row, run)` on each; returns each run's result in order. One thread for small
/// outputs or inside a worker.
pub(super) fn par_rows<U: Send, R: Send>(
    out: &mut [U],
    row_len: usize,
    f: impl Fn(usize, &mut [U]) -> R + Sync,
) -> Vec<R> {
    let row_len = row_len.max(1);
    let rows = out.len() / row_len;
    let threads = if out.len() < PAR_MIN {
        1
    } else {
        worker_threads().min(rows).max(1)
    };
    if threads == 1 {
        return vec![f(0, out)];
    }
    let per = rows.div_ceil(threads);
    let f = &f;
    crate::backend::cpu::pool::join_all(
        out.chunks_mut(per * row_len)
            .enumerate()
            .map(|(i, c)| Box::new(move || f(i * per, c)) as Box<dyn FnOnce() -> R + Send + '_>)
            .collect(),
    )
}

/// Activation fused after the affine step (see `Act` in the parent module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RowAct {
    None,
    Silu,
}

#[inline(always)]
fn silu<T: StorageElem>(z: T) -> T {
    z / (T::one() + (-z).exp())
}

/// silu'(z) · g.
#[inline(always)]
fn silu_grad<T: StorageElem>(g: T, z: T) -> T {
    let s = T::one() / (T::one() + (-z).exp());
    g * s * (T::one() + z * (T::one() - s))
}

/// One row of the forward: y = act((x − mean) · rstd · w + b), with `w`, `b` per channel
/// (`cpg` channels of `inner` values; `None` means w = 1, b = 0).
pub(super) fn forward_row<T: StorageElem>(
    xr: &[T],
    y: &mut [T],
    wb: Option<(&[T], &[T])>,
    inner: usize,
    eps: f64,
    act: RowAct,
) {
    vectorized(
        #[inline(always)]
        || forward_row_body(xr, y, wb, inner, eps, act),
    )
}

#[inline(always)]
fn forward_row_body<T: StorageElem>(
    xr: &[T],
    y: &mut [T],
    wb: Option<(&[T], &[T])>,
    inner: usize,
    eps: f64,
    act: RowAct,
) {
    let (mean, rstd) = row_stats(xr, eps);
    let mt = T::from_f64(mean);
    if inner == 1 {
        // layer norm: a weight per element
        let rs = T::from_f64(rstd);
        match wb {
            Some((w, b)) => {
                for (((o, &v), &wc), &bc) in y.iter_mut().zip(xr).zip(w).zip(b) {
                    *o = (v - mt) * rs * wc + bc;
                }
            }
            None => {
                for (o, &v) in y.iter_mut().zip(xr) {
                    *o = (v - mt) * rs;
                }
            }
        }
        if act == RowAct::Silu {
            y.iter_mut().for_each(|o| *o = silu(*o));
        }
        return;
    }
    for (ci, (xc, yc)) in xr.chunks(inner).zip(y.chunks_mut(inner)).enumerate() {
        let (a, s) = match wb {
            Some((w, b)) => (rstd * w[ci].to_f64(), b[ci].to_f64()),
            None => (rstd, 0.0),
        };
        let (a, s) = (T::from_f64(a), T::from_f64(s));
        match act {
            RowAct::None => {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = (v - mt) * a + s;
                }
            }
            RowAct::Silu => {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = silu((v - mt) * a + s);
                }
            }
        }
    }
}

/// One row of the backward of act(x̂ · w + b): writes gx and adds the row's contributions to
/// the per-channel sums `gw` (Σ ∂L/∂z · x̂) and `gb` (Σ ∂L/∂z) of this row's channels. `gz` is
/// scratch of the row's length (used with the activation).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_row<T: StorageElem>(
    xr: &[T],
    gr: &[T],
    w: &[T],
    b: &[T],
    gx: &mut [T],
    gw: &mut [f64],
    gb: &mut [f64],
    gz: &mut [T],
    inner: usize,
    eps: f64,
    act: RowAct,
) {
    vectorized(
        #[inline(always)]
        || backward_row_body(xr, gr, w, b, gx, gw, gb, gz, inner, eps, act),
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_row_body<T: StorageElem>(
    xr: &[T],
    gr: &[T],
    w: &[T],
    b: &[T],
    gx: &mut [T],
    gw: &mut [f64],
    gb: &mut [f64],
    gz: &mut [T],
    inner: usize,
    eps: f64,
    act: RowAct,
) {
    let m = xr.len();
    let (mean, rstd) = row_stats(xr, eps);
    let (mt, rs) = (T::from_f64(mean), T::from_f64(rstd));
    // ∂L/∂z through the activation
    let gzr: &[T] = match act {
        RowAct::None => gr,
        RowAct::Silu => {
            if inner == 1 {
                for ((((o, &g), &v), &wc), &bc) in gz.iter_mut().zip(gr).zip(xr).zip(w).zip(b) {
                    *o = silu_grad(g, (v - mt) * rs * wc + bc);
                }
            } else {
                for (ci, ((o, gc), xc)) in gz
                    .chunks_mut(inner)
                    .zip(gr.chunks(inner))
                    .zip(xr.chunks(inner))
                    .enumerate()
                {
                    let (a, s) = (T::from_f64(rstd * w[ci].to_f64()), b[ci]);
                    for ((o, &g), &v) in o.iter_mut().zip(gc).zip(xc) {
                        *o = silu_grad(g, (v - mt) * a + s);
                    }
                }
            }
            gz
        }
    };
    let mf = m as f64;
    if inner == 1 {
        // layer norm: per-element weights; gw / gb sums are elementwise
        for (((pw, pb), &g), &v) in gw.iter_mut().zip(gb.iter_mut()).zip(gzr).zip(xr) {
            *pw += (g * (v - mt) * rs).to_f64();
            *pb += g.to_f64();
        }
        let sg = lane_sum3(gzr, w, w, |g, wc, _| g * wc);
        // Σ g·w·(x − mean) from the rounded mean, corrected in f64
        let sgx = lane_sum3(gzr, w, xr, |g, wc, v| g * wc * (v - mt));
        let sgx = (sgx + (mt.to_f64() - mean) * sg) * rstd;
        let (mg, mgx) = (T::from_f64(sg / mf), T::from_f64(sgx / mf));
        for (((o, &g), &v), &wc) in gx.iter_mut().zip(gzr).zip(xr).zip(w) {
            *o = rs * (g * wc - mg - (v - mt) * rs * mgx);
        }
        return;
    }
    // per channel: Σ gz and Σ gz·(x − mean)
    let (mut sg, mut sgx) = (0f64, 0f64);
    for (ci, (gc, xc)) in gzr.chunks(inner).zip(xr.chunks(inner)).enumerate() {
        // Σ g·(x − mean) from the rounded mean, corrected in f64
        let (pb, pxd) = lane_sum2(gc, xc, |g, v| (g, g * (v - mt)));
        let pw = (pxd + (mt.to_f64() - mean) * pb) * rstd;
        gw[ci] += pw;
        gb[ci] += pb;
        let wc = w[ci].to_f64();
        sg += wc * pb;
        sgx += wc * pw;
    }
    let (mg, mgx) = (sg / mf, sgx / mf);
    // gx = rstd·(gz·w − mg − x̂·mgx) = gz·a − c − (x − mean)·e per channel
    let c = T::from_f64(rstd * mg);
    let e = T::from_f64(rstd * rstd * mgx);
    for (ci, ((o, gc), xc)) in gx
        .chunks_mut(inner)
        .zip(gzr.chunks(inner))
        .zip(xr.chunks(inner))
        .enumerate()
    {
        let a = T::from_f64(rstd * w[ci].to_f64());
        for ((o, &g), &v) in o.iter_mut().zip(gc).zip(xc) {
            *o = g * a - c - (v - mt) * e;
        }
    }
}
