//! guided-diffusion's `QKVAttentionLegacy` on the fast CPU kernels, read straight from the qkv
//! tensor: q, k, v of block (sample, head) are its three [C, T] feature-major slices, so no
//! transposed copies are made going in or coming out (the generic path transposes q, k, v to
//! [T, C] and the output back). The first-order backward writes dqkv in qkv's layout in one
//! pass; under `create_graph` the recorded rule of the parent module runs on views of qkv.

use std::sync::Arc;

use super::{AttnBackward, AttnDims};
use crate::Result;
use crate::autograd::{GradFn, is_grad_enabled, record};
use crate::backend::cpu::attention::{self as fast_attn, BlockDims, BlockGrads, Mat, MatMut};
use crate::backend::cpu::{self, par_blocks_mut};
use crate::tensor::{Kernel, StorageElem, Tensor};

/// Sizes: qkv [b·heads, 3·c, t] (as blocks), output [b·heads, c, t].
#[derive(Clone, Copy, Debug)]
struct Legacy {
    blocks: usize,
    c: usize,
    t: usize,
}

impl Legacy {
    fn dims(&self) -> BlockDims {
        BlockDims {
            nq: self.t,
            nk: self.t,
            d: self.c,
            dv: self.c,
            scale: 1.0 / (self.c as f64).sqrt(),
        }
    }
    /// Part `i` (0 = q, 1 = k, 2 = v) of block `b` of qkv, feature-major.
    fn part<'a, T>(&self, qkv: &'a [T], b: usize, i: usize) -> Mat<'a, T> {
        let ct = self.c * self.t;
        let at = b * 3 * ct + i * ct;
        Mat {
            data: &qkv[at..at + ct],
            rs: 1,
            cs: self.t,
        }
    }
}

struct Forward(Legacy);

impl Kernel for Forward {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let l = self.0;
        let ct = l.c * l.t;
        let mut out = vec![T::zero(); l.blocks * ct];
        if ct == 0 {
            return Ok(out);
        }
        let qkv = xs[0];
        par_blocks_mut(&mut out, ct, |first, outs| {
            cpu::vectorized(
                #[inline(always)]
                || {
                    let mut s = fast_attn::Scratch::new();
                    for (i, o) in outs.chunks_mut(ct).enumerate() {
                        let b = first + i;
                        let (q, k, v) = (l.part(qkv, b, 0), l.part(qkv, b, 1), l.part(qkv, b, 2));
                        let o = MatMut {
                            data: o,
                            rs: 1,
                            cs: l.t,
                        };
                        fast_attn::forward_block(&mut s, l.dims(), q, k, v, None, None, o);
                    }
                },
            )
        });
        Ok(out)
    }
}

/// Inputs qkv and the output gradient; output dqkv in qkv's layout.
struct Backward(Legacy);

impl Kernel for Backward {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let l = self.0;
        let ct = l.c * l.t;
        let mut out = vec![T::zero(); l.blocks * 3 * ct];
        if ct == 0 {
            return Ok(out);
        }
        let (qkv, go) = (xs[0], xs[1]);
        par_blocks_mut(&mut out, 3 * ct, |first, outs| {
            cpu::vectorized(
                #[inline(always)]
                || {
                    let mut s = fast_attn::Scratch::new();
                    for (i, o) in outs.chunks_mut(3 * ct).enumerate() {
                        let b = first + i;
                        let (q, k, v) = (l.part(qkv, b, 0), l.part(qkv, b, 1), l.part(qkv, b, 2));
                        let g = Mat {
                            data: &go[b * ct..(b + 1) * ct],
                            rs: 1,
                            cs: l.t,
                        };
                        let (dq, rest) = o.split_at_mut(ct);
                        let (dk, dv) = rest.split_at_mut(ct);
                        let view = |data| MatMut {
                            data,
                            rs: 1,
                            cs: l.t,
                        };
                        let grads = BlockGrads {
                            dq: view(dq),
                            dk: view(dk),
                            dv: view(dv),
                            dbias: None,
                        };
                        fast_attn::backward_block(&mut s, l.dims(), q, k, v, None, None, g, grads);
                    }
                },
            )
        });
        Ok(out)
    }
}

/// The op on qkv [b, heads·3·c, t] (checked by the caller): output [b, heads·c, t].
pub fn forward(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let s = qkv.shape();
    let l = Legacy {
        blocks: s[0] * heads,
        c: s[1] / (3 * heads),
        t: s[2],
    };
    let out_shape = [s[0], heads * l.c, l.t];
    let out = Tensor::run_kernel("qkv_attention_legacy", &[qkv], &out_shape, &Forward(l))?;
    Ok(record(out, &[qkv], || {
        Arc::new(LegacyBackward {
            qkv: qkv.clone(),
            l,
        })
    }))
}

struct LegacyBackward {
    qkv: Tensor,
    l: Legacy,
}

impl GradFn for LegacyBackward {
    fn name(&self) -> &'static str {
        "qkv_attention_legacy"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.qkv.clone()]
    }
    fn backward(&self, out: &Tensor, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let l = self.l;
        let shape = self.qkv.shape();
        if !is_grad_enabled() {
            let k = Backward(l);
            let ins = [self.qkv.detach(), g.detach()];
            let dqkv = Tensor::run_kernel(
                "qkv_attention_legacy_backward",
                &[&ins[0], &ins[1]],
                shape,
                &k,
            )?;
            return Ok(vec![Some(dqkv)]);
        }
        // recorded rule on views of qkv (differentiable again)
        let parts = self.qkv.reshape(&[l.blocks, 3 * l.c, l.t])?.chunk(1, 3)?;
        let tr = |x: &Tensor| x.transpose(1, 2);
        let rule = AttnBackward {
            q: tr(&parts[0])?,
            k: tr(&parts[1])?,
            v: tr(&parts[2])?,
            bias: None,
            mask: None,
            lse: None,
            a: AttnDims {
                batch: l.blocks,
                nq: l.t,
                nk: l.t,
                d: l.c,
                dv: l.c,
                heads: 1,
                windows: 1,
                scale: 1.0 / (l.c as f64).sqrt(),
            },
        };
        let g3 = tr(&g.reshape(&[l.blocks, l.c, l.t])?)?;
        let grads = rule.backward(out, &g3, &[true, true, true])?;
        let mut parts = Vec::with_capacity(3);
        for gi in grads.into_iter().take(3) {
            let gi = gi.ok_or_else(|| {
                crate::Error::invalid("qkv_attention_legacy", "attention rule gave no gradient")
            })?;
            parts.push(tr(&gi)?);
        }
        Ok(vec![Some(Tensor::cat(&parts, 1)?.reshape(shape)?)])
    }
}
