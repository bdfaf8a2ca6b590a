//! Fast CPU loops of the norm kernels. A norm row (one sample's group: c/groups channels ×
//! inner values, or one token's features for layer norm) is small enough to stay in cache, so
//! each row is finished in one visit: statistics, weight/bias partial sums and the output, with
//! the data read from memory once. Sums run in f64 over independent lanes (`LANES` separate
//! accumulators) so the compiler can vectorise them; a single accumulator chain would serialise
//! every add on its latency.

use crate::backend::cpu::{as_worker, worker_threads};
use crate::tensor::StorageElem;

/// Independent accumulators per sum.
const LANES: usize = 8;

/// Below this many elements, one thread does the whole kernel.
const PAR_MIN: usize = 1 << 15;

/// Values summed in the element type before each flush into the f64 totals.
const BLOCK: usize = LANES * 16;

/// Σ f(a[i], b[i]) over two equally long slices into two f64 sums: `LANES` accumulators of the
/// element type per block of `BLOCK` values (vectorisable, and short enough that f32 rounding
/// stays at the level of one block), the blocks' sums added in f64.
#[inline(always)]
fn lane_sums2<T: StorageElem>(a: &[T], b: &[T], f: impl Fn(T, T) -> (T, T)) -> (f64, f64) {
    let (mut s, mut t) = (0f64, 0f64);
    for (ba, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let (mut ls, mut lt) = ([T::zero(); LANES], [T::zero(); LANES]);
        let (ac, bc) = (ba.chunks_exact(LANES), bb.chunks_exact(LANES));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (ca, cb) in ac.zip(bc) {
            let ca: &[T; LANES] = ca.try_into().unwrap_or_else(|_| unreachable!());
            let cb: &[T; LANES] = cb.try_into().unwrap_or_else(|_| unreachable!());
            for l in 0..LANES {
                let (u, v) = f(ca[l], cb[l]);
                ls[l] += u;
                lt[l] += v;
            }
        }
        for (&x, &y) in ar.iter().zip(br) {
            let (u, v) = f(x, y);
            ls[0] += u;
            lt[0] += v;
        }
        s += ls.iter().map(|v| v.to_f64()).sum::<f64>();
        t += lt.iter().map(|v| v.to_f64()).sum::<f64>();
    }
    (s, t)
}

/// Mean and 1/sqrt(var + eps) of one row (biased variance), accumulated in f64 in one pass.
/// Values are shifted by the first element so that a large mean does not cancel the variance.
pub(super) fn row_stats<T: StorageElem>(xr: &[T], eps: f64) -> (f64, f64) {
    let m = xr.len();
    if m == 0 {
        return (0.0, 1.0 / eps.sqrt());
    }
    let kt = xr[0];
    let (s1, s2) = lane_sums2(xr, xr, |v, _| {
        let d = v - kt;
        (d, d * d)
    });
    let k = kt.to_f64();
    let mf = m as f64;
    let var = ((s2 - s1 * s1 / mf) / mf).max(0.0);
    (k + s1 / mf, 1.0 / (var + eps).sqrt())
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
    std::thread::scope(|s| {
        let hs: Vec<_> = out
            .chunks_mut(per * row_len)
            .enumerate()
            .map(|(i, c)| {
                let f = &f;
                s.spawn(move || as_worker(|| f(i * per, c)))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
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
            let g = g.to_f64();
            *pw += g * (v.to_f64() - mean) * rstd;
            *pb += g;
        }
        let (mut sg, mut sgx) = ([0f64; LANES], [0f64; LANES]);
        for (k, ((&g, &v), &wc)) in gzr.iter().zip(xr).zip(w).enumerate() {
            let gw = g.to_f64() * wc.to_f64();
            sg[k % LANES] += gw;
            sgx[k % LANES] += gw * (v.to_f64() - mean);
        }
        sgx.iter_mut().for_each(|s| *s *= rstd);
        let mg = T::from_f64(sg.iter().sum::<f64>() / mf);
        let mgx = T::from_f64(sgx.iter().sum::<f64>() / mf);
        for (((o, &g), &v), &wc) in gx.iter_mut().zip(gzr).zip(xr).zip(w) {
            *o = rs * (g * wc - mg - (v - mt) * rs * mgx);
        }
        return;
    }
    // per channel: Σ gz and Σ gz·(x − mean)
    let (mut sg, mut sgx) = (0f64, 0f64);
    for (ci, (gc, xc)) in gzr.chunks(inner).zip(xr.chunks(inner)).enumerate() {
        // Σ g·(x − mean) from the rounded mean, corrected in f64
        let (pb, pxd) = lane_sums2(gc, xc, |g, v| (g, g * (v - mt)));
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
