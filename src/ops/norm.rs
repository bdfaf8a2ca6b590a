//! Normalisation: group / instance / layer norm (torch semantics, biased variance), group norm
//! with a fused SiLU (diffusion U-Net), StyleGAN1 AdaIN and StyleGAN2's 2nd-moment normalisation.
//!
//! Every norm here is one shape: x viewed as [n, c, inner] with statistics over each of `groups`
//! groups of c/groups channels (layer norm: c = normalised size, inner = 1, one group). The
//! forward is one fused kernel (each row's statistics, then affine and activation, while the row
//! is in cache: see `cpu`). Its recorded backward is built from two more primitives, the bare
//! normalisation x̂(x) and the inverse deviation rstd(x), whose own backward rules use each other,
//! so every derivative order is exact (R1 and path-length regularisation differentiate through
//! these); a first-order gradient (no `create_graph`) takes one fused kernel instead.

use std::sync::Arc;

use cpu::{backward_row, forward_row, par_rows, row_stats};

use crate::autograd::{GradFn, is_grad_enabled, record};
use crate::tensor::{Kernel, StorageElem, Tensor};
use crate::{Error, Result};

/// Default epsilon of group / layer / instance norm (DESIGN §5).
pub const NORM_EPS: f64 = 1e-5;
/// Epsilon of StyleGAN's instance norm, pixel norm and 2nd-moment norm (DESIGN §5).
pub const STYLEGAN_EPS: f64 = 1e-8;

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

/// Activation applied after the affine step of the fused kernel.
use cpu::RowAct as Act;

/// x as [n, c, inner]; statistics per (sample, group) over c/groups · inner values.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    c: usize,
    inner: usize,
    groups: usize,
}

impl Dims {
    fn cpg(&self) -> usize {
        self.c / self.groups
    }
    fn row_len(&self) -> usize {
        self.cpg() * self.inner
    }
    fn shape3(&self) -> [usize; 3] {
        [self.n, self.c, self.inner]
    }
    /// One row per (sample, group).
    fn rows_shape(&self) -> [usize; 3] {
        [self.n, self.groups, self.row_len()]
    }
}

/// y = act(x̂ · w[c] + b[c]) with x̂ the group-normalised input; inputs x (and w, b when affine).
struct NormKernel {
    d: Dims,
    eps: f64,
    affine: bool,
    act: Act,
}

impl Kernel for NormKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let x = xs[0];
        let d = self.d;
        let (m, cpg) = (d.row_len(), d.cpg());
        let mut out = vec![T::zero(); x.len()];
        if m == 0 {
            return Ok(out);
        }
        par_rows(&mut out, m, |first, ys| {
            for (i, y) in ys.chunks_mut(m).enumerate() {
                let r = first + i;
                let c0 = (r % d.groups) * cpg;
                let wb = self
                    .affine
                    .then(|| (&xs[1][c0..c0 + cpg], &xs[2][c0..c0 + cpg]));
                forward_row(&x[r * m..(r + 1) * m], y, wb, d.inner, self.eps, self.act);
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
        let affine = if self.affine {
            Some((xs[1], xs[2]))
        } else {
            None
        };
        cuda::forward(be, xs[0], affine, &self.d.gpu(self.eps, self.act))
    }
}

/// 1/sqrt(var + eps) per (sample, group): output [n, groups].
struct RstdKernel {
    d: Dims,
    eps: f64,
}

impl Kernel for RstdKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let m = self.d.row_len();
        let rows = self.d.n * self.d.groups;
        Ok((0..rows)
            .map(|r| T::from_f64(row_stats(&xs[0][r * m..(r + 1) * m], self.eps).1))
            .collect())
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        xs: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        cuda::rstd(be, xs[0], &self.d.gpu(self.eps, Act::None))
    }
}

/// First-order backward of act(x̂·w + b), one visit per row (see `cpu`), used when the gradient
/// will not be differentiated again (no `create_graph`): inputs x, w, b, g; output the flat
/// concatenation [gx (n·c·inner), gw (c), gb (c)]. The recorded rule in [`NormAffineBackward`]
/// computes the same values with differentiable ops.
struct NormBackwardKernel {
    d: Dims,
    eps: f64,
    act: Act,
}

impl Kernel for NormBackwardKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let (x, w, b, g) = (xs[0], xs[1], xs[2], xs[3]);
        let d = self.d;
        let (m, cpg) = (d.row_len(), d.cpg());
        let total = x.len();
        let mut out = vec![T::zero(); total + 2 * d.c];
        if m == 0 {
            return Ok(out);
        }
        let (gx, gwb) = out.split_at_mut(total);
        // each thread finishes its rows and returns its partial weight / bias sums [gw | gb]
        let partials = par_rows(gx, m, |first, ys| {
            let mut acc = vec![0f64; 2 * d.c];
            let mut scratch = vec![T::zero(); if self.act == Act::None { 0 } else { m }];
            for (i, y) in ys.chunks_mut(m).enumerate() {
                let r = first + i;
                let c0 = (r % d.groups) * cpg;
                let (aw, ab) = acc.split_at_mut(d.c);
                backward_row(
                    &x[r * m..(r + 1) * m],
                    &g[r * m..(r + 1) * m],
                    &w[c0..c0 + cpg],
                    &b[c0..c0 + cpg],
                    y,
                    &mut aw[c0..c0 + cpg],
                    &mut ab[c0..c0 + cpg],
                    &mut scratch,
                    d.inner,
                    self.eps,
                    self.act,
                );
            }
            acc
        });
        for (c, o) in gwb.iter_mut().enumerate() {
            *o = T::from_f64(partials.iter().map(|p| p[c]).sum());
        }
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
        let g = self.d.gpu(self.eps, self.act);
        cuda::backward(be, xs[0], xs[1], xs[2], xs[3], &g)
    }
}

/// [gx, gw, gb] of act(x̂·w + b) by the fused kernel (values only, no history).
fn norm_backward_fused(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    g: &Tensor,
    d: Dims,
    eps: f64,
    act: Act,
) -> Result<[Tensor; 3]> {
    let total = x.elem_count();
    let k = NormBackwardKernel { d, eps, act };
    let flat = Tensor::run_kernel(
        "group_norm_backward",
        &[&x.detach(), &w.detach(), &b.detach(), &g.detach()],
        &[total + 2 * d.c],
        &k,
    )?;
    Ok([
        flat.narrow(0, 0, total)?.reshape(&d.shape3())?,
        flat.narrow(0, total, d.c)?,
        flat.narrow(0, total + d.c, d.c)?,
    ])
}

/// x̂ = (x − mean) · rstd per group, x given as [n, c, inner]. Differentiable to every order.
fn normalize(x: &Tensor, d: Dims, eps: f64) -> Result<Tensor> {
    let k = NormKernel {
        d,
        eps,
        affine: false,
        act: Act::None,
    };
    let out = Tensor::run_kernel("group_norm", &[x], &d.shape3(), &k)?;
    Ok(record(out, &[x], || {
        Arc::new(NormalizeBackward {
            x: x.clone(),
            d,
            eps,
        })
    }))
}

/// rstd per group as [n, groups, 1] (broadcasts against the [n, groups, row] view).
fn rstd(x: &Tensor, d: Dims, eps: f64) -> Result<Tensor> {
    let k = RstdKernel { d, eps };
    let out = Tensor::run_kernel("group_norm", &[x], &[d.n, d.groups, 1], &k)?;
    Ok(record(out, &[x], || {
        Arc::new(RstdBackward {
            x: x.clone(),
            d,
            eps,
        })
    }))
}

/// Gradient through x̂: rstd · (g − mean(g) − x̂ · mean(g · x̂)) per group. `xhat` and `g` are
/// [n, c, inner]; the result is too.
fn normalize_grad(x: &Tensor, xhat: &Tensor, g: &Tensor, d: Dims, eps: f64) -> Result<Tensor> {
    let rs = d.rows_shape();
    let xh = xhat.reshape(&rs)?;
    let g = g.reshape(&rs)?;
    let r = rstd(x, d, eps)?;
    let mg = g.mean_axes(&[2], true)?;
    let mgx = g.mul(&xh)?.mean_axes(&[2], true)?;
    g.sub(&mg)?
        .sub(&xh.mul(&mgx)?)?
        .mul(&r)?
        .reshape(&d.shape3())
}

struct NormalizeBackward {
    x: Tensor,
    d: Dims,
    eps: f64,
}
impl GradFn for NormalizeBackward {
    fn name(&self) -> &'static str {
        "group_norm"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, out: &Tensor, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        if !is_grad_enabled() {
            // not differentiated again: the fused kernel gives the same values in two passes
            let (w, b) = (
                Tensor::ones(&[self.d.c], self.x.dtype()).to_device(self.x.device())?,
                Tensor::zeros(&[self.d.c], self.x.dtype()).to_device(self.x.device())?,
            );
            let [gx, _, _] = norm_backward_fused(&self.x, &w, &b, g, self.d, self.eps, Act::None)?;
            return Ok(vec![Some(gx)]);
        }
        Ok(vec![Some(normalize_grad(
            &self.x, out, g, self.d, self.eps,
        )?)])
    }
}

struct RstdBackward {
    x: Tensor,
    d: Dims,
    eps: f64,
}
impl GradFn for RstdBackward {
    fn name(&self) -> &'static str {
        "group_norm_rstd"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    /// d rstd / dx = −rstd² · x̂ / m (m values per group).
    fn backward(&self, out: &Tensor, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let d = self.d;
        let xh = normalize(&self.x, d, self.eps)?.reshape(&d.rows_shape())?;
        let coef = g
            .mul(&out.sqr()?)?
            .affine(-1.0 / d.row_len().max(1) as f64, 0.0)?;
        Ok(vec![Some(xh.mul(&coef)?.reshape(&d.shape3())?)])
    }
}

/// The fused op: act(x̂ · w + b) with w, b of shape [c].
fn norm_affine(x: &Tensor, w: &Tensor, b: &Tensor, d: Dims, eps: f64, act: Act) -> Result<Tensor> {
    let k = NormKernel {
        d,
        eps,
        affine: true,
        act,
    };
    // on a GPU, images run the fused group-norm kernel, which keeps its statistics for the
    // backward (see `cuda.rs`)
    #[cfg(feature = "cuda")]
    let (out, stats) = if cuda::uses_group_kernel(x, &d) {
        let (y, st) = cuda::group_norm_forward(x, w, b, d, eps, act)?;
        (y, Some(st))
    } else {
        (
            Tensor::run_kernel("group_norm", &[x, w, b], &d.shape3(), &k)?,
            None,
        )
    };
    #[cfg(not(feature = "cuda"))]
    let (out, stats) = (
        Tensor::run_kernel("group_norm", &[x, w, b], &d.shape3(), &k)?,
        None,
    );
    Ok(record(out, &[x, w, b], || {
        Arc::new(NormAffineBackward {
            x: x.clone(),
            w: w.clone(),
            b: b.clone(),
            d,
            eps,
            act,
            stats,
        })
    }))
}

struct NormAffineBackward {
    x: Tensor,
    w: Tensor,
    b: Tensor,
    d: Dims,
    eps: f64,
    act: Act,
    /// Mean and rstd [n, groups] kept by the fused GPU forward (None on the CPU).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    stats: Option<[Tensor; 2]>,
}
impl GradFn for NormAffineBackward {
    fn name(&self) -> &'static str {
        "group_norm_affine"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone(), self.w.clone(), self.b.clone()]
    }
    fn backward(&self, _out: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let d = self.d;
        if !is_grad_enabled() {
            // not differentiated again: the fused kernel gives the same values in two passes
            // (on a GPU, the group-norm kernel from the forward's statistics)
            #[cfg(feature = "cuda")]
            let fused = match &self.stats {
                Some(st) => cuda::group_norm_backward(
                    &self.x, &self.w, &self.b, st, g, d, self.eps, self.act,
                )?,
                None => norm_backward_fused(&self.x, &self.w, &self.b, g, d, self.eps, self.act)?,
            };
            #[cfg(not(feature = "cuda"))]
            let fused = norm_backward_fused(&self.x, &self.w, &self.b, g, d, self.eps, self.act)?;
            let [gx, gw, gb] = fused;
            let pick = |t: Tensor, i: usize| if needs[i] { Some(t) } else { None };
            return Ok(vec![pick(gx, 0), pick(gw, 1), pick(gb, 2)]);
        }
        // recompute x̂ (recorded, so the gradient differentiates again)
        let xhat = normalize(&self.x, d, self.eps)?;
        let w3 = self.w.reshape(&[1, d.c, 1])?;
        let gz = match self.act {
            Act::None => g.clone(),
            Act::Silu => {
                // silu'(z) = σ(z)·(1 + z·(1 − σ(z)))
                let z = xhat.mul(&w3)?.add(&self.b.reshape(&[1, d.c, 1])?)?;
                let s = z.sigmoid()?;
                g.mul(&s.mul(&z.mul(&s.affine(-1.0, 1.0)?)?.affine(1.0, 1.0)?)?)?
            }
        };
        let gx = if needs[0] {
            Some(normalize_grad(&self.x, &xhat, &gz.mul(&w3)?, d, self.eps)?)
        } else {
            None
        };
        let gw = if needs[1] {
            Some(gz.mul(&xhat)?.sum_axes(&[0, 2], false)?)
        } else {
            None
        };
        let gb = if needs[2] {
            Some(gz.sum_axes(&[0, 2], false)?)
        } else {
            None
        };
        Ok(vec![gx, gw, gb])
    }
}

/// Check an optional per-channel parameter has shape [c].
fn check_param(op: &'static str, what: &str, p: Option<&Tensor>, c: usize) -> Result<()> {
    if let Some(p) = p
        && p.shape() != [c]
    {
        return Err(Error::shape(
            op,
            format!("{what} has shape {:?}, expected [{c}]", p.shape()),
        ));
    }
    Ok(())
}

/// Normalise x viewed as [n, c, inner] and apply the optional affine and activation; the result
/// has `out_shape`.
#[allow(clippy::too_many_arguments)]
fn run_norm(
    x: &Tensor,
    d: Dims,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    act: Act,
    op: &'static str,
) -> Result<Tensor> {
    if eps.is_nan() || eps < 0.0 {
        return Err(Error::invalid(op, format!("eps must be >= 0, got {eps}")));
    }
    let x3 = x.reshape(&d.shape3())?;
    let y = if weight.is_none() && bias.is_none() && act == Act::None {
        normalize(&x3, d, eps)?
    } else {
        // missing parameters become constants (no gradient is asked of them)
        let w = match weight {
            Some(w) => w.clone(),
            None => Tensor::ones(&[d.c], x.dtype()).to_device(x.device())?,
        };
        let b = match bias {
            Some(b) => b.clone(),
            None => Tensor::zeros(&[d.c], x.dtype()).to_device(x.device())?,
        };
        norm_affine(&x3, &w, &b, d, eps, act)?
    };
    y.reshape(x.shape())
}

fn group_dims(op: &'static str, x: &Tensor, groups: usize) -> Result<Dims> {
    if x.rank() < 2 {
        return Err(Error::shape(
            op,
            format!("input {:?} needs at least [N, C]", x.shape()),
        ));
    }
    let s = x.shape();
    let c = s[1];
    if groups == 0 || !c.is_multiple_of(groups) {
        return Err(Error::invalid(
            op,
            format!("{groups} groups do not divide {c} channels of input {s:?}"),
        ));
    }
    Ok(Dims {
        n: s[0],
        c,
        inner: s[2..].iter().product(),
        groups,
    })
}

/// torch.nn.functional.group_norm: x [N, C, *] normalised over each group of C/groups channels
/// (biased variance), then · weight\[c\] + bias\[c\] when given.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let d = group_dims("group_norm", x, groups)?;
    check_param("group_norm", "weight", weight, d.c)?;
    check_param("group_norm", "bias", bias, d.c)?;
    run_norm(x, d, weight, bias, eps, Act::None, "group_norm")
}

/// silu(group_norm(x)) in one pass: the diffusion U-Net's `normalization` + `SiLU`.
pub fn group_norm_silu(
    x: &Tensor,
    groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let d = group_dims("group_norm_silu", x, groups)?;
    check_param("group_norm_silu", "weight", weight, d.c)?;
    check_param("group_norm_silu", "bias", bias, d.c)?;
    run_norm(x, d, weight, bias, eps, Act::Silu, "group_norm_silu")
}

/// torch.nn.functional.instance_norm without running statistics: x [N, C, *] normalised per
/// sample and channel, then the optional per-channel affine.
pub fn instance_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    if x.rank() < 3 {
        return Err(Error::shape(
            "instance_norm",
            format!("input {:?} needs [N, C, spatial...]", x.shape()),
        ));
    }
    let c = x.shape()[1];
    let d = group_dims("instance_norm", x, c.max(1))?;
    check_param("instance_norm", "weight", weight, d.c)?;
    check_param("instance_norm", "bias", bias, d.c)?;
    run_norm(x, d, weight, bias, eps, Act::None, "instance_norm")
}

/// torch.nn.functional.layer_norm: normalise over the trailing dims `normalized_shape`, then
/// · weight + bias (each of shape `normalized_shape`) when given.
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let s = x.shape();
    let k = normalized_shape.len();
    if k == 0 || k > s.len() || s[s.len() - k..] != *normalized_shape {
        return Err(Error::shape(
            "layer_norm",
            format!("input {s:?} does not end with normalized shape {normalized_shape:?}"),
        ));
    }
    for (what, p) in [("weight", weight), ("bias", bias)] {
        if let Some(p) = p
            && p.shape() != normalized_shape
        {
            return Err(Error::shape(
                "layer_norm",
                format!(
                    "{what} has shape {:?}, expected {normalized_shape:?}",
                    p.shape()
                ),
            ));
        }
    }
    let m: usize = normalized_shape.iter().product();
    let d = Dims {
        n: s[..s.len() - k].iter().product(),
        c: m,
        inner: 1,
        groups: 1,
    };
    let w = weight.map(|w| w.reshape(&[m])).transpose()?;
    let b = bias.map(|b| b.reshape(&[m])).transpose()?;
    run_norm(x, d, w.as_ref(), b.as_ref(), eps, Act::None, "layer_norm")
}

/// StyleGAN1 AdaIN: instance norm (eps 1e-8 in StyleGAN, see [`STYLEGAN_EPS`]) followed by the
/// style modulation of NVlabs' `style_mod`: x̂ · (scale + 1) + bias, with scale and bias [N, C]
/// (the two halves of the style affine's output).
pub fn adain(x: &Tensor, style_scale: &Tensor, style_bias: &Tensor, eps: f64) -> Result<Tensor> {
    if x.rank() < 3 {
        return Err(Error::shape(
            "adain",
            format!("input {:?} needs [N, C, spatial...]", x.shape()),
        ));
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    for (what, t) in [("style scale", style_scale), ("style bias", style_bias)] {
        if t.shape() != [n, c] {
            return Err(Error::shape(
                "adain",
                format!(
                    "{what} has shape {:?}, expected [{n}, {c}] for input {:?}",
                    t.shape(),
                    x.shape()
                ),
            ));
        }
    }
    let mut ps = vec![n, c];
    ps.resize(x.rank(), 1);
    let xn = instance_norm(x, None, None, eps)?;
    xn.mul(&style_scale.add_scalar(1.0)?.reshape(&ps)?)?
        .add(&style_bias.reshape(&ps)?)
}

/// StyleGAN2 `normalize_2nd_moment`: x · rsqrt(mean(x², dim) + eps) (eps 1e-8 there).
pub fn normalize_2nd_moment(x: &Tensor, dim: isize, eps: f64) -> Result<Tensor> {
    if x.rank() == 0 {
        return Err(Error::shape(
            "normalize_2nd_moment",
            "needs at least one dimension, got a scalar",
        ));
    }
    let ms = x.sqr()?.mean_axes(&[dim], true)?;
    x.mul(&ms.add_scalar(eps)?.rsqrt()?)
}
