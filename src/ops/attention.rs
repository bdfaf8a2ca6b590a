//! Attention: Swin's window partition / reverse, relative-position index and shifted-window mask,
//! window attention softmax(q·kᵀ·scale + bias + mask)·v, and plain multi-head attention for the
//! diffusion U-Net (whose `QKVAttentionLegacy` head split lives with the model, in
//! `models::diffusion::qkv_attention`).
//!
//! The forward is one fused kernel per (batch, head) block: scores by GEMM, bias and mask added
//! and the softmax taken in place in a per-thread scratch buffer, then the product with v by GEMM;
//! the score matrix never reaches memory as a tensor. The recorded backward recomputes the
//! probabilities with recorded ops and applies the softmax rule with matmuls, so it is exact to
//! every order; when the gradient will not be differentiated again (no `create_graph`) on the
//! CPU, one fused kernel (`attention/backward.rs`) gives the same values in a single pass. On a
//! GPU (`attention/cuda.rs`), blocks that fit the handwritten window kernels of
//! cuda/window_attention.cu (Swin's windows) run its fused forward and, at first order, its fused
//! backward; second order always takes the recorded rule.

use std::sync::Arc;

mod backward;
#[cfg(feature = "cuda")]
mod cuda;
pub mod qkv_legacy;

use crate::autograd::{GradFn, is_grad_enabled, record};
use crate::backend::cpu::attention as fast_attn;
use crate::backend::cpu::{self, CpuKernels, par_blocks_mut};
use crate::tensor::Device;
use crate::tensor::{Kernel, StorageElem, Tensor};
use crate::{Error, Result};

/// Value Swin puts on masked pairs of a shifted window (DESIGN §5).
pub const SWIN_MASK_VALUE: f64 = -100.0;

/// Sizes of the fused op: q [batch, nq, d], k [batch, nk, d], v [batch, nk, dv]; block b uses
/// bias[b % heads] and mask[(b / heads) % windows].
#[derive(Clone, Copy, Debug)]
struct AttnDims {
    batch: usize,
    nq: usize,
    nk: usize,
    d: usize,
    dv: usize,
    heads: usize,
    windows: usize,
    scale: f64,
}

impl AttnDims {
    /// Sizes of one (batch, head) block for the fast kernels.
    fn block(&self) -> fast_attn::BlockDims {
        fast_attn::BlockDims {
            nq: self.nq,
            nk: self.nk,
            d: self.d,
            dv: self.dv,
            scale: self.scale,
        }
    }
    /// Block `b`'s [nq, nk] slices of the bias (of its head) and the mask (of its window).
    fn bias_mask<'a, T>(
        &self,
        b: usize,
        bias: Option<&'a [T]>,
        mask: Option<&'a [T]>,
    ) -> (Option<&'a [T]>, Option<&'a [T]>) {
        let len = self.nq * self.nk;
        let (h, w) = (b % self.heads, (b / self.heads) % self.windows);
        (
            bias.map(|x| &x[h * len..(h + 1) * len]),
            mask.map(|x| &x[w * len..(w + 1) * len]),
        )
    }
}

/// Block `b` of a contiguous [batch, n, d] operand as a token-major view.
fn rows<T>(x: &[T], b: usize, n: usize, d: usize) -> fast_attn::Mat<'_, T> {
    fast_attn::Mat {
        data: &x[b * n * d..(b + 1) * n * d],
        rs: d,
        cs: 1,
    }
}

struct AttnKernel {
    a: AttnDims,
    has_bias: bool,
    has_mask: bool,
}

/// C (m×n) = A (m×k) · B (k×n) with strided A and B, on the selected CPU kernels.
#[allow(clippy::too_many_arguments)]
fn mm<T: StorageElem>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    sa: (usize, usize),
    b: &[T],
    sb: (usize, usize),
    c: &mut [T],
) {
    match cpu::kernels() {
        CpuKernels::Fast => cpu::fast::gemm(
            m,
            k,
            n,
            a,
            (sa.0 as isize, sa.1 as isize),
            b,
            (sb.0 as isize, sb.1 as isize),
            c,
            false,
        ),
        CpuKernels::Reference => {
            for i in 0..m {
                for j in 0..n {
                    let mut s = T::zero();
                    for p in 0..k {
                        s += a[i * sa.0 + p * sa.1] * b[p * sb.0 + j * sb.1];
                    }
                    c[i * n + j] = s;
                }
            }
        }
    }
}

/// P = softmax(q·kᵀ·scale + bias[head] + mask[window]) of block `b` into `s` [nq, nk], q and k
/// the block's [nq, d] and [nk, d] slices. Row sums in f64.
fn softmax_scores<T: StorageElem>(
    qb: &[T],
    kb: &[T],
    bias: Option<&[T]>,
    mask: Option<&[T]>,
    a: &AttnDims,
    b: usize,
    s: &mut [T],
) {
    let (nq, nk, d) = (a.nq, a.nk, a.d);
    let scale = T::from_f64(a.scale);
    // S = q · kᵀ (kᵀ read through strides)
    mm(nq, d, nk, qb, (d, 1), kb, (1, d), s);
    let hb = b % a.heads;
    let wb = (b / a.heads) % a.windows;
    let bias = bias.map(|bs| &bs[hb * nq * nk..(hb + 1) * nq * nk]);
    let mask = mask.map(|ms| &ms[wb * nq * nk..(wb + 1) * nq * nk]);
    for r in 0..nq {
        let row = &mut s[r * nk..(r + 1) * nk];
        let off = r * nk;
        for x in row.iter_mut() {
            *x = *x * scale;
        }
        if let Some(bs) = bias {
            for (x, &y) in row.iter_mut().zip(&bs[off..off + nk]) {
                *x += y;
            }
        }
        if let Some(ms) = mask {
            for (x, &y) in row.iter_mut().zip(&ms[off..off + nk]) {
                *x += y;
            }
        }
        let mut mx = T::from_f64(f64::NEG_INFINITY);
        for &x in row.iter() {
            if x > mx {
                mx = x;
            }
        }
        let mut sum = 0f64;
        for x in row.iter_mut() {
            *x = (*x - mx).exp();
            sum += x.to_f64();
        }
        let inv = T::from_f64(1.0 / sum);
        for x in row.iter_mut() {
            *x = *x * inv;
        }
    }
}

impl Kernel for AttnKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let a = self.a;
        let (q, k, v) = (xs[0], xs[1], xs[2]);
        let mut rest = xs[3..].iter();
        let bias = if self.has_bias { rest.next() } else { None };
        let mask = if self.has_mask { rest.next() } else { None };
        let (nq, nk, d, dv) = (a.nq, a.nk, a.d, a.dv);
        let mut out = vec![T::zero(); a.batch * nq * dv];
        if out.is_empty() {
            return Ok(out);
        }
        if cpu::kernels() == CpuKernels::Fast {
            let dm = a.block();
            par_blocks_mut(&mut out, nq * dv, |first, outs| {
                cpu::vectorized(
                    #[inline(always)]
                    || {
                        let mut s = fast_attn::Scratch::new();
                        for (i, o) in outs.chunks_mut(nq * dv).enumerate() {
                            let b = first + i;
                            let (bb, mb) = a.bias_mask(b, bias.copied(), mask.copied());
                            fast_attn::forward_block(
                                &mut s,
                                dm,
                                rows(q, b, nq, d),
                                rows(k, b, nk, d),
                                rows(v, b, nk, dv),
                                bb,
                                mb,
                                fast_attn::MatMut {
                                    data: o,
                                    rs: dv,
                                    cs: 1,
                                },
                            );
                        }
                    },
                )
            });
            return Ok(out);
        }
        par_blocks_mut(&mut out, nq * dv, |first, outs| {
            let mut s = vec![T::zero(); nq * nk];
            for (i, o) in outs.chunks_mut(nq * dv).enumerate() {
                let b = first + i;
                let qb = &q[b * nq * d..(b + 1) * nq * d];
                let kb = &k[b * nk * d..(b + 1) * nk * d];
                let vb = &v[b * nk * dv..(b + 1) * nk * dv];
                softmax_scores(qb, kb, bias.copied(), mask.copied(), &a, b, &mut s);
                mm(nq, nk, dv, &s, (nk, 1), vb, (dv, 1), o);
            }
        });
        Ok(out)
    }
}

/// softmax(q·kᵀ·scale + bias + mask) with recorded ops: [batch, nq, nk].
fn probs(
    q: &Tensor,
    k: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    a: AttnDims,
) -> Result<Tensor> {
    let s = q.matmul(&k.transpose(-1, -2)?)?.affine(a.scale, 0.0)?;
    // [groups, windows, heads, nq, nk]: bias broadcasts over the leading two, mask over heads
    let mut s = s.reshape(&[usize::MAX, a.windows, a.heads, a.nq, a.nk])?;
    if let Some(b) = bias {
        s = s.add(b)?;
    }
    if let Some(m) = mask {
        s = s.add(&m.reshape(&[a.windows, 1, a.nq, a.nk])?)?;
    }
    s.softmax(-1)?.reshape(&[a.batch, a.nq, a.nk])
}

/// The fused op on [batch, n, d] operands.
fn attention_core(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    a: AttnDims,
) -> Result<Tensor> {
    let mask = mask.map(|m| m.detach());
    let mut ins: Vec<&Tensor> = vec![q, k, v];
    ins.extend(bias);
    ins.extend(mask.as_ref());
    let kern = AttnKernel {
        a,
        has_bias: bias.is_some(),
        has_mask: mask.is_some(),
    };
    // on a GPU: the window kernel where it fits, keeping the log-sum-exp for its backward
    #[cfg(feature = "cuda")]
    let (out, lse) = if crate::ops::gpu::on_gpu(q) {
        cuda::forward(q, k, v, bias, mask.as_ref(), a)?
    } else {
        (
            Tensor::run_kernel("attention", &ins, &[a.batch, a.nq, a.dv], &kern)?,
            None,
        )
    };
    #[cfg(not(feature = "cuda"))]
    let (out, lse) = (
        Tensor::run_kernel("attention", &ins, &[a.batch, a.nq, a.dv], &kern)?,
        None,
    );
    let mut rec: Vec<&Tensor> = vec![q, k, v];
    rec.extend(bias);
    Ok(record(out, &rec, || {
        Arc::new(AttnBackward {
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            bias: bias.cloned(),
            mask: mask.clone(),
            a,
            lse,
        })
    }))
}

struct AttnBackward {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Option<Tensor>,
    mask: Option<Tensor>,
    a: AttnDims,
    /// Row log-sum-exp [batch, nq] kept by the GPU window kernel (None elsewhere).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    lse: Option<Tensor>,
}

impl GradFn for AttnBackward {
    fn name(&self) -> &'static str {
        "attention"
    }
    fn inputs(&self) -> Vec<Tensor> {
        let mut v = vec![self.q.clone(), self.k.clone(), self.v.clone()];
        v.extend(self.bias.clone());
        v
    }
    fn backward(&self, out: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let a = self.a;
        if !is_grad_enabled() && self.q.device() == Device::Cpu {
            // not differentiated again: one fused pass gives the same values
            return self.fused(g, needs);
        }
        // on a GPU, the fused window backward from the forward's log-sum-exp
        #[cfg(feature = "cuda")]
        if !is_grad_enabled()
            && let Some(lse) = &self.lse
            && let Some(gs) = cuda::window_backward(
                &self.q,
                &self.k,
                &self.v,
                self.bias.as_ref(),
                self.mask.as_ref(),
                out,
                lse,
                g,
                a,
            )?
        {
            return Ok(gs
                .into_iter()
                .zip(needs)
                .map(|(t, &n)| n.then_some(t))
                .collect());
        }
        #[cfg(not(feature = "cuda"))]
        let _ = out;
        let p = probs(&self.q, &self.k, self.bias.as_ref(), self.mask.as_ref(), a)?;
        let gv = if needs[2] {
            Some(p.transpose(-1, -2)?.matmul(g)?)
        } else {
            None
        };
        let want_s = needs[0] || needs[1] || needs.get(3).copied().unwrap_or(false);
        let mut out = vec![None, None, gv];
        if want_s {
            // softmax rule: gS = P ∘ (gP − Σ_j gP·P)
            let gp = g.matmul(&self.v.transpose(-1, -2)?)?;
            let gs = p.mul(&gp.sub(&gp.mul(&p)?.sum_axes(&[-1], true)?)?)?;
            if needs[0] {
                out[0] = Some(gs.matmul(&self.k)?.affine(a.scale, 0.0)?);
            }
            if needs[1] {
                out[1] = Some(
                    gs.transpose(-1, -2)?
                        .matmul(&self.q)?
                        .affine(a.scale, 0.0)?,
                );
            }
            if self.bias.is_some() {
                out.push(if needs[3] {
                    Some(
                        gs.reshape(&[usize::MAX, a.heads, a.nq, a.nk])?
                            .sum_axes(&[0], false)?,
                    )
                } else {
                    None
                });
            }
        } else if self.bias.is_some() {
            out.push(None);
        }
        Ok(out)
    }
}

impl AttnBackward {
    /// [dQ, dK, dV, (dbias)] by [`backward::AttnBackwardKernel`] (values only, no history).
    fn fused(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let a = self.a;
        let kern = backward::AttnBackwardKernel {
            a,
            has_bias: self.bias.is_some(),
            has_mask: self.mask.is_some(),
        };
        let det = |t: &Tensor| t.detach();
        let mut ins = vec![det(&self.q), det(&self.k), det(&self.v)];
        ins.extend(self.bias.as_ref().map(det));
        ins.extend(self.mask.as_ref().map(det));
        ins.push(det(g));
        let refs: Vec<&Tensor> = ins.iter().collect();
        let flat = Tensor::run_kernel("attention_backward", &refs, &[kern.out_len()], &kern)?;
        let mut at = 0;
        let mut take = |len: usize, shape: &[usize]| -> Result<Tensor> {
            let t = flat.narrow(0, at, len)?.reshape(shape)?;
            at += len;
            Ok(t)
        };
        let dq = take(a.batch * a.nq * a.d, &[a.batch, a.nq, a.d])?;
        let dk = take(a.batch * a.nk * a.d, &[a.batch, a.nk, a.d])?;
        let dv = take(a.batch * a.nk * a.dv, &[a.batch, a.nk, a.dv])?;
        let mut out = vec![Some(dq), Some(dk), Some(dv)];
        if self.bias.is_some() {
            out.push(Some(take(a.heads * a.nq * a.nk, &[a.heads, a.nq, a.nk])?));
        }
        for (o, &need) in out.iter_mut().zip(needs) {
            if !need {
                *o = None;
            }
        }
        Ok(out)
    }
}

/// Swin window attention: softmax(q·kᵀ·scale + rel_bias + mask)·v for q, k, v
/// [B·nW, heads, N, d], relative-position bias [heads, N, N] and, for shifted windows, the mask
/// [nW, N, N] of [`shifted_window_mask`] (window w of image b is batch entry b·nW + w, as
/// [`window_partition`] lays them out). The mask gets no gradient. Output [B·nW, heads, N, d].
pub fn window_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    rel_bias: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let op = "window_attention";
    let s = q.shape();
    if s.len() != 4 || k.shape() != s || v.shape() != s {
        return Err(Error::shape(
            op,
            format!(
                "q {:?}, k {:?}, v {:?} must be equal and [B*nW, heads, N, d]",
                s,
                k.shape(),
                v.shape()
            ),
        ));
    }
    let (bw, heads, n, d) = (s[0], s[1], s[2], s[3]);
    if rel_bias.shape() != [heads, n, n] {
        return Err(Error::shape(
            op,
            format!(
                "relative position bias {:?}, expected [{heads}, {n}, {n}] for q {s:?}",
                rel_bias.shape()
            ),
        ));
    }
    let windows = match mask {
        Some(m) => {
            let ms = m.shape();
            if ms.len() != 3 || ms[1] != n || ms[2] != n || ms[0] == 0 || bw % ms[0] != 0 {
                return Err(Error::shape(
                    op,
                    format!("mask {ms:?}, expected [nW, {n}, {n}] with nW dividing {bw}"),
                ));
            }
            ms[0]
        }
        None => 1,
    };
    let a = AttnDims {
        batch: bw * heads,
        nq: n,
        nk: n,
        d,
        dv: d,
        heads,
        windows,
        scale,
    };
    let r = |t: &Tensor| t.reshape(&[bw * heads, n, d]);
    attention_core(&r(q)?, &r(k)?, &r(v)?, Some(rel_bias), mask, a)?.reshape(s)
}

/// softmax(q·kᵀ·scale)·v over the last two dims: q [..., Tq, d], k [..., Tk, d], v [..., Tk, dv]
/// with equal leading dims; output [..., Tq, dv].
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let op = "attention";
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let r = qs.len();
    let bad = || {
        Error::shape(
            op,
            format!(
                "q {qs:?}, k {ks:?}, v {vs:?}: expected [..., Tq, d], [..., Tk, d], [..., Tk, dv]"
            ),
        )
    };
    if r < 2 || ks.len() != r || vs.len() != r {
        return Err(bad());
    }
    if qs[..r - 2] != ks[..r - 2] || qs[..r - 2] != vs[..r - 2] {
        return Err(bad());
    }
    let (tq, d, tk, dv) = (qs[r - 2], qs[r - 1], ks[r - 2], vs[r - 1]);
    if ks[r - 1] != d || vs[r - 2] != tk {
        return Err(bad());
    }
    let batch: usize = qs[..r - 2].iter().product();
    let a = AttnDims {
        batch,
        nq: tq,
        nk: tk,
        d,
        dv,
        heads: 1,
        windows: 1,
        scale,
    };
    let out = attention_core(
        &q.reshape(&[batch, tq, d])?,
        &k.reshape(&[batch, tk, d])?,
        &v.reshape(&[batch, tk, dv])?,
        None,
        None,
        a,
    )?;
    let mut os = qs[..r - 2].to_vec();
    os.extend([tq, dv]);
    out.reshape(&os)
}

// ---- Swin window bookkeeping -------------------------------------------------------------------

/// Swin `window_partition`: x [B, H, W, C] → [B·nW, ws·ws, C], windows in row-major order.
pub fn window_partition(x: &Tensor, ws: usize) -> Result<Tensor> {
    let s = x.shape();
    if s.len() != 4 || ws == 0 || !s[1].is_multiple_of(ws) || !s[2].is_multiple_of(ws) {
        return Err(Error::shape(
            "window_partition",
            format!("input {s:?} must be [B, H, W, C] with H and W multiples of window {ws}"),
        ));
    }
    let (b, h, w, c) = (s[0], s[1], s[2], s[3]);
    x.reshape(&[b, h / ws, ws, w / ws, ws, c])?
        .permute(&[0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape(&[b * (h / ws) * (w / ws), ws * ws, c])
}

/// Swin `window_reverse`: windows [B·nW, ws·ws, C] (or [B·nW, ws, ws, C]) → [B, H, W, C].
pub fn window_reverse(windows: &Tensor, ws: usize, h: usize, w: usize) -> Result<Tensor> {
    let s = windows.shape();
    let bad = || {
        Error::shape(
            "window_reverse",
            format!("windows {s:?} do not tile a {h}x{w} image with window {ws}"),
        )
    };
    if ws == 0 || !h.is_multiple_of(ws) || !w.is_multiple_of(ws) || s.len() < 3 {
        return Err(bad());
    }
    let nw = (h / ws) * (w / ws);
    let c = s[s.len() - 1];
    let per: usize = s[1..s.len() - 1].iter().product();
    if per != ws * ws || nw == 0 || !s[0].is_multiple_of(nw) {
        return Err(bad());
    }
    let b = s[0] / nw;
    windows
        .reshape(&[b, h / ws, w / ws, ws, ws, c])?
        .permute(&[0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape(&[b, h, w, c])
}

/// Swin's `relative_position_index` for a ws×ws window: entry (i, j) (flattened i·N + j, N = ws²)
/// indexes the (2ws−1)² bias table by the offset between positions i and j.
pub fn relative_position_index(ws: usize) -> Vec<usize> {
    relative_position_index_in(ws, ws)
}

/// [`relative_position_index`] of a ws×ws window into the table of a larger window `table_ws`
/// ((2·table_ws−1)² entries): the same offset reads the same entry, so a block whose map is
/// smaller than its window (the window shrinks to the map, as Swin does) keeps its learned
/// biases for the offsets it still has. `ws ≤ table_ws`.
pub fn relative_position_index_in(ws: usize, table_ws: usize) -> Vec<usize> {
    debug_assert!(ws <= table_ws);
    let n = ws * ws;
    let side = (2 * table_ws).saturating_sub(1);
    let mut idx = Vec::with_capacity(n * n);
    for i in 0..n {
        let (hi, wi) = (i / ws, i % ws);
        for j in 0..n {
            let (hj, wj) = (j / ws, j % ws);
            idx.push((hi + table_ws - 1 - hj) * side + (wi + table_ws - 1 - wj));
        }
    }
    idx
}

/// The attention mask of a shifted-window block (Swin `SwinTransformerBlock`): [nW, N, N] with 0
/// where two positions of a window came from the same region before the cyclic shift and −100
/// where they did not. With `shift == 0` every entry is 0.
pub fn shifted_window_mask(
    h: usize,
    w: usize,
    ws: usize,
    shift: usize,
    dtype: crate::DType,
) -> Result<Tensor> {
    if ws == 0 || !h.is_multiple_of(ws) || !w.is_multiple_of(ws) || shift >= ws {
        return Err(Error::invalid(
            "shifted_window_mask",
            format!(
                "a {h}x{w} image, window {ws} and shift {shift} need ws | H, ws | W, shift < ws"
            ),
        ));
    }
    // region label of each pixel: slices (0, -ws), (-ws, -shift), (-shift, None) per axis
    let region = |p: usize, len: usize| -> usize {
        if shift == 0 || p + ws < len {
            0
        } else if p + shift < len {
            1
        } else {
            2
        }
    };
    let (nh, nw) = (h / ws, w / ws);
    let n = ws * ws;
    let mut out = Vec::with_capacity(nh * nw * n * n);
    let mut labels = vec![0usize; n];
    for wh in 0..nh {
        for ww in 0..nw {
            for (i, l) in labels.iter_mut().enumerate() {
                let (y, x) = (wh * ws + i / ws, ww * ws + i % ws);
                *l = region(y, h) * 3 + region(x, w);
            }
            for &li in &labels {
                for &lj in &labels {
                    out.push(if li == lj { 0.0 } else { SWIN_MASK_VALUE });
                }
            }
        }
    }
    Tensor::from_f64s(&out, &[nh * nw, n, n], dtype)
}
