//! Fused CPU backward of the attention op, for gradients that are not differentiated again:
//! per (batch, head) block, in one pass over threads, recompute P = softmax(q·kᵀ·scale + bias +
//! mask) in scratch, then dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP − Σ_j P·dP), dQ = scale·dS·K,
//! dK = scale·dSᵀ·Q, and d(bias)[head] += dS (per-thread partials, summed at the end). Neither P
//! nor dS reaches memory as a tensor. The recorded rule in the parent module computes the same
//! values with differentiable ops; it is the one used under `create_graph`.

use super::{AttnDims, mm, rows, softmax_scores};
use crate::Result;
use crate::backend::cpu::attention as fast_attn;
use crate::backend::cpu::{self, CpuKernels, worker_threads};
use crate::tensor::{Kernel, StorageElem};

/// Inputs q, k, v, [bias], [mask], dO; output the flat concatenation
/// [dQ (batch·nq·d), dK (batch·nk·d), dV (batch·nk·dv), dbias (heads·nq·nk) when there is a bias].
pub(super) struct AttnBackwardKernel {
    pub(super) a: AttnDims,
    pub(super) has_bias: bool,
    pub(super) has_mask: bool,
}

impl AttnBackwardKernel {
    /// Length of the flat output.
    pub(super) fn out_len(&self) -> usize {
        let a = self.a;
        a.batch * (a.nq * a.d + a.nk * a.d + a.nk * a.dv)
            + if self.has_bias {
                a.heads * a.nq * a.nk
            } else {
                0
            }
    }
}

/// Below this many score entries (batch · nq · nk), one thread does everything.
const PAR_MIN_SCORES: usize = 1 << 14;

impl Kernel for AttnBackwardKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let a = self.a;
        let (q, k, v) = (xs[0], xs[1], xs[2]);
        let mut rest = xs[3..].iter().copied();
        let bias = if self.has_bias { rest.next() } else { None };
        let mask = if self.has_mask { rest.next() } else { None };
        let go = rest.next().unwrap_or(&[]);
        let (nq, nk, d, dv) = (a.nq, a.nk, a.d, a.dv);
        let mut out = vec![T::zero(); self.out_len()];
        let (dq, r) = out.split_at_mut(a.batch * nq * d);
        let (dk, r) = r.split_at_mut(a.batch * nk * d);
        let (dvv, dbias) = r.split_at_mut(a.batch * nk * dv);
        if a.batch == 0 {
            return Ok(out);
        }
        let scale = T::from_f64(a.scale);
        let bias_len = if self.has_bias { a.heads * nq * nk } else { 0 };
        // blocks first..first + dq.len() / (nq·d), with their slices of dQ, dK, dV
        let fast = cpu::kernels() == CpuKernels::Fast;
        let work = |first: usize, blocks: usize, dq: &mut [T], dk: &mut [T], dvv: &mut [T]| {
            let mut db = vec![T::zero(); bias_len];
            if fast {
                let dm = a.block();
                cpu::vectorized(
                    #[inline(always)]
                    || {
                        let mut s = fast_attn::Scratch::new();
                        for (i, ((dqb, dkb), dvb)) in dq
                            .chunks_mut(nq * d)
                            .zip(dk.chunks_mut(nk * d))
                            .zip(dvv.chunks_mut(nk * dv))
                            .take(blocks)
                            .enumerate()
                        {
                            let b = first + i;
                            let (bb, mb) = a.bias_mask(b, bias, mask);
                            let hb = b % a.heads;
                            let view = |data, rs| fast_attn::MatMut { data, rs, cs: 1 };
                            fast_attn::backward_block(
                                &mut s,
                                dm,
                                rows(q, b, nq, d),
                                rows(k, b, nk, d),
                                rows(v, b, nk, dv),
                                bb,
                                mb,
                                rows(go, b, nq, dv),
                                fast_attn::BlockGrads {
                                    dq: view(dqb, d),
                                    dk: view(dkb, d),
                                    dv: view(dvb, dv),
                                    dbias: (bias_len > 0)
                                        .then(|| &mut db[hb * nq * nk..(hb + 1) * nq * nk]),
                                },
                            );
                        }
                    },
                );
                return db;
            }
            let mut p = vec![T::zero(); nq * nk];
            let mut ds = vec![T::zero(); nq * nk];
            for i in 0..blocks {
                let b = first + i;
                let qb = &q[b * nq * d..(b + 1) * nq * d];
                let kb = &k[b * nk * d..(b + 1) * nk * d];
                let vb = &v[b * nk * dv..(b + 1) * nk * dv];
                let gb = &go[b * nq * dv..(b + 1) * nq * dv];
                let hb = b % a.heads;
                softmax_scores(qb, kb, bias, mask, &a, b, &mut p);
                // dV = Pᵀ·dO
                mm(
                    nk,
                    nq,
                    dv,
                    &p,
                    (1, nk),
                    gb,
                    (dv, 1),
                    &mut dvv[i * nk * dv..(i + 1) * nk * dv],
                );
                // dP = dO·Vᵀ, then dS = P ∘ (dP − Σ_j P·dP) in place
                mm(nq, dv, nk, gb, (dv, 1), vb, (1, dv), &mut ds);
                for (pr, sr) in p.chunks(nk.max(1)).zip(ds.chunks_mut(nk.max(1))) {
                    let dot: f64 = pr
                        .iter()
                        .zip(sr.iter())
                        .map(|(&x, &y)| (x * y).to_f64())
                        .sum();
                    let dot = T::from_f64(dot);
                    for (s, &x) in sr.iter_mut().zip(pr) {
                        *s = x * (*s - dot);
                    }
                }
                if bias_len > 0 {
                    for (o, &s) in db[hb * nq * nk..(hb + 1) * nq * nk].iter_mut().zip(&ds) {
                        *o += s;
                    }
                }
                // dQ = scale·dS·K, dK = scale·dSᵀ·Q
                let dqb = &mut dq[i * nq * d..(i + 1) * nq * d];
                mm(nq, nk, d, &ds, (nk, 1), kb, (d, 1), dqb);
                dqb.iter_mut().for_each(|x| *x = *x * scale);
                let dkb = &mut dk[i * nk * d..(i + 1) * nk * d];
                mm(nk, nq, d, &ds, (1, nk), qb, (d, 1), dkb);
                dkb.iter_mut().for_each(|x| *x = *x * scale);
            }
            db
        };
        let threads = if a.batch * nq * nk < PAR_MIN_SCORES || nq * d == 0 || nk * d.min(dv) == 0 {
            1
        } else {
            worker_threads().min(a.batch).max(1)
        };
        let partials: Vec<Vec<T>> = if threads == 1 {
            vec![work(0, a.batch, dq, dk, dvv)]
        } else {
            let per = a.batch.div_ceil(threads);
            let work = &work;
            crate::backend::cpu::pool::join_all(
                dq.chunks_mut(per * nq * d)
                    .zip(dk.chunks_mut(per * nk * d))
                    .zip(dvv.chunks_mut(per * nk * dv))
                    .enumerate()
                    .map(|(t, ((dq, dk), dvv))| {
                        let blocks = dq.len() / (nq * d);
                        Box::new(move || work(t * per, blocks, dq, dk, dvv))
                            as Box<dyn FnOnce() -> Vec<T> + Send + '_>
                    })
                    .collect(),
            )
        };
        for part in &partials {
            for (o, &x) in dbias.iter_mut().zip(part) {
                *o += x;
            }
        }
        Ok(out)
    }
}
