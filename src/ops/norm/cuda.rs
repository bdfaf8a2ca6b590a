//! The CUDA side of the norms. x is [n, c, inner] with statistics per (sample, group) row.
//!
//! - Group norm and instance norm on images with their affine step (and SiLU: the diffusion
//!   U-Net's `normalization` + `SiLU`) run the handwritten fused kernels of cuda/group_norm.cu:
//!   one block per (sample, group), Welford statistics in double, normalise + affine + activation
//!   in the same pass; the forward keeps mean and rstd for the first-order backward, which is one
//!   kernel plus a sum of per-sample weight/bias partials ([`group_forward`], [`group_backward`]).
//! - Layer norm (inner = 1: one value per channel, the per-channel block sums of group_norm.cu
//!   would do one value's work each), the bare normalisation x̂ and rstd (the primitives the
//!   recorded, second-order rule is written with) run the generic kernels of cuda/norm.cu: per-row
//!   statistics, elementwise apply, and a first-order backward whose weight and bias gradients
//!   are partial sums per (sample range, channel), summed in a second pass.

use std::sync::Arc;

use crate::backend::cuda::{CudaBackend, CudaStorage, launch, sfx};
use crate::tensor::DType;
use crate::{Error, Result};

const BLOCK: u32 = 256;

/// x as [n, c, inner], statistics over `groups` groups of c/groups channels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormGeom {
    pub n: usize,
    pub c: usize,
    pub inner: usize,
    pub groups: usize,
    pub eps: f64,
    /// 0: none, 1: SiLU (as `NACT_*` in cuda/norm.cu).
    pub act: i32,
}

impl NormGeom {
    fn rows(&self) -> usize {
        self.n * self.groups
    }
    fn m(&self) -> usize {
        (self.c / self.groups.max(1)) * self.inner
    }
    fn total(&self) -> usize {
        self.n * self.c * self.inner
    }
    fn check(&self, x: &CudaStorage) -> Result<()> {
        if self.groups == 0 || !self.c.is_multiple_of(self.groups) || x.len() != self.total() {
            return Err(Error::shape(
                "group_norm",
                format!(
                    "{} values for [n={}, c={}, inner={}] in {} groups",
                    x.len(),
                    self.n,
                    self.c,
                    self.inner,
                    self.groups
                ),
            ));
        }
        Ok(())
    }
}

/// Mean and rstd per row, in f64 device buffers.
fn stats(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    g: &NormGeom,
) -> Result<(CudaStorage, CudaStorage)> {
    let rows = g.rows();
    let mean = be.alloc(DType::F64, rows)?;
    let rstd = be.alloc(DType::F64, rows)?;
    if rows > 0 {
        let f = be.func("norm", &format!("norm_stats_{}", sfx(x.dtype())))?;
        let (r, m, eps) = (rows as i64, g.m() as i64, g.eps);
        let (xp, mp, rp) = (x.ptr(), mean.ptr(), rstd.ptr());
        launch!(be, "group_norm", f, be.blocks(rows, BLOCK, 0); &r, &m, &eps, &xp, &mp, &rp)?;
    }
    Ok((mean, rstd))
}

/// act(x̂·w + b) (or act(x̂) when `affine` is None).
pub(crate) fn forward(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    affine: Option<(&CudaStorage, &CudaStorage)>,
    g: &NormGeom,
) -> Result<CudaStorage> {
    g.check(x)?;
    let dt = x.dtype();
    let total = g.total();
    let y = be.alloc(dt, total)?;
    if total == 0 {
        return Ok(y);
    }
    let (mean, rstd) = stats(be, x, g)?;
    let f = be.func("norm", &format!("norm_apply_{}", sfx(dt)))?;
    let (wp, bp, aff) = match affine {
        Some((w, b)) => (w.ptr(), b.ptr(), 1i32),
        None => (0u64, 0u64, 0i32),
    };
    let (t, m, inner, cpg, groups) = (
        total as i64,
        g.m() as i64,
        g.inner as i64,
        (g.c / g.groups) as i64,
        g.groups as i64,
    );
    let (xp, mp, rp, yp) = (x.ptr(), mean.ptr(), rstd.ptr(), y.ptr());
    launch!(be, "group_norm", f, be.grid(total, BLOCK);
        &t, &m, &inner, &cpg, &groups, &aff, &g.act, &xp, &wp, &bp, &mp, &rp, &yp)?;
    Ok(y)
}

/// rstd per row as `n·groups` values of x's dtype.
pub(crate) fn rstd(be: &Arc<CudaBackend>, x: &CudaStorage, g: &NormGeom) -> Result<CudaStorage> {
    g.check(x)?;
    let dt = x.dtype();
    let rows = g.rows();
    let out = be.alloc(dt, rows)?;
    if rows == 0 {
        return Ok(out);
    }
    let (_, rs) = stats(be, x, g)?;
    let f = be.func("norm", &format!("cast_from_f64_{}", sfx(dt)))?;
    let (n, sp, op) = (rows as i64, rs.ptr(), out.ptr());
    launch!(be, "group_norm", f, be.grid(rows, BLOCK); &n, &sp, &op)?;
    Ok(out)
}

/// The flat [gx (n·c·inner), gw (c), gb (c)] of act(x̂·w + b) given the upstream gradient `gy`.
pub(crate) fn backward(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    w: &CudaStorage,
    b: &CudaStorage,
    gy: &CudaStorage,
    g: &NormGeom,
) -> Result<CudaStorage> {
    g.check(x)?;
    if w.len() != g.c || b.len() != g.c || gy.len() != g.total() {
        return Err(Error::shape(
            "group_norm_backward",
            format!(
                "weight {}, bias {}, gradient {} values for {} channels and {} elements",
                w.len(),
                b.len(),
                gy.len(),
                g.c,
                g.total()
            ),
        ));
    }
    let dt = x.dtype();
    let total = g.total();
    let out = be.zeros(dt, total + 2 * g.c)?;
    if total == 0 {
        return Ok(out);
    }
    let rows = g.rows();
    let (mean, rstd) = stats(be, x, g)?;
    let mg = be.alloc(DType::F64, rows)?;
    let mgx = be.alloc(DType::F64, rows)?;
    let (r, t, m, inner, cpg, groups, n, c) = (
        rows as i64,
        total as i64,
        g.m() as i64,
        g.inner as i64,
        (g.c / g.groups) as i64,
        g.groups as i64,
        g.n as i64,
        g.c as i64,
    );
    let (xp, wp, bp, gp) = (x.ptr(), w.ptr(), b.ptr(), gy.ptr());
    let (mp, rp, mgp, mgxp) = (mean.ptr(), rstd.ptr(), mg.ptr(), mgx.ptr());
    let f = be.func("norm", &format!("norm_bwd_rows_{}", sfx(dt)))?;
    launch!(be, "group_norm_backward", f, be.blocks(rows, BLOCK, 0);
        &r, &m, &inner, &cpg, &groups, &g.act, &xp, &wp, &bp, &gp, &mp, &rp, &mgp, &mgxp)?;
    let f = be.func("norm", &format!("norm_bwd_dx_{}", sfx(dt)))?;
    let gxp = out.ptr();
    launch!(be, "group_norm_backward", f, be.grid(total, BLOCK);
        &t, &m, &inner, &cpg, &groups, &g.act, &xp, &wp, &bp, &gp, &mp, &rp, &mgp, &mgxp, &gxp)?;
    let sz = dt.size_in_bytes() as u64;
    let gwp = out.ptr() + total as u64 * sz;
    let gbp = gwp + g.c as u64 * sz;
    // weight and bias gradients: partials per (sample range, channel), then their sums
    let spp = samples_per_part(g.n, g.inner);
    let parts = g.n.div_ceil(spp);
    let pw = be.alloc(DType::F64, parts * g.c)?;
    let pb = be.alloc(DType::F64, parts * g.c)?;
    let (sp, pa, pwp, pbp) = (spp as i64, parts as i64, pw.ptr(), pb.ptr());
    let f = be.func("norm", &format!("norm_bwd_wb_part_{}", sfx(dt)))?;
    launch!(be, "group_norm_backward", f, be.blocks(parts * g.c, BLOCK, 0);
        &n, &c, &inner, &cpg, &groups, &sp, &g.act, &xp, &wp, &bp, &gp, &mp, &rp, &pwp, &pbp)?;
    let f = be.func("norm", &format!("norm_bwd_wb_sum_{}", sfx(dt)))?;
    launch!(be, "group_norm_backward", f, be.grid(g.c, BLOCK); &pa, &c, &pwp, &pbp, &gwp, &gbp)?;
    Ok(out)
}

/// Terms of a channel each block of the weight/bias gradient sums, at least.
const WB_TERMS_PER_BLOCK: usize = 2048;

/// Samples per partial of the weight/bias gradients: one for large images (instance norm: one
/// block per (sample, channel)), many for one value per sample (layer norm), so that each block
/// sums at least [`WB_TERMS_PER_BLOCK`] terms where there are that many.
fn samples_per_part(n: usize, inner: usize) -> usize {
    WB_TERMS_PER_BLOCK.div_ceil(inner.max(1)).clamp(1, n.max(1))
}

/// Threads per block of the group_norm.cu kernels (a multiple of 32).
const GN_THREADS: u32 = 256;

/// Output of [`group_forward`]: y, and mean and rstd per (sample, group) in x's dtype.
pub(crate) struct GroupForward {
    pub y: CudaStorage,
    pub mean: CudaStorage,
    pub rstd: CudaStorage,
}

/// act(x̂·w + b) by cuda/group_norm.cu, keeping the statistics.
pub(crate) fn group_forward(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    w: &CudaStorage,
    b: &CudaStorage,
    g: &NormGeom,
) -> Result<GroupForward> {
    g.check(x)?;
    let dt = x.dtype();
    let y = be.alloc(dt, g.total())?;
    let mean = be.alloc(dt, g.rows())?;
    let rstd = be.alloc(dt, g.rows())?;
    if g.total() > 0 {
        let f = be.func("group_norm", &format!("group_norm_fwd_{}", sfx(dt)))?;
        let (n, c, hw, gr) = (g.n as i64, g.c as i64, g.inner as i64, g.groups as i64);
        let (xp, wp, bp, yp, mp, rp) = (x.ptr(), w.ptr(), b.ptr(), y.ptr(), mean.ptr(), rstd.ptr());
        launch!(be, "group_norm", f, be.blocks(g.rows(), GN_THREADS, 0);
            &n, &c, &hw, &gr, &g.eps, &g.act, &xp, &wp, &bp, &yp, &mp, &rp)?;
    }
    Ok(GroupForward { y, mean, rstd })
}

/// [gx, gw, gb] of act(x̂·w + b) by cuda/group_norm.cu from the statistics [`group_forward`]
/// kept: one block per (sample, group) writes gx and per-sample weight/bias partials, which a
/// second kernel sums over the samples in a fixed order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_backward(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    w: &CudaStorage,
    b: &CudaStorage,
    mean: &CudaStorage,
    rstd: &CudaStorage,
    gy: &CudaStorage,
    g: &NormGeom,
) -> Result<[CudaStorage; 3]> {
    g.check(x)?;
    if w.len() != g.c || b.len() != g.c || gy.len() != g.total() || mean.len() != g.rows() {
        return Err(Error::shape(
            "group_norm_backward",
            format!(
                "weight {}, bias {}, gradient {}, statistics {} values for {} channels, {} elements, {} rows",
                w.len(),
                b.len(),
                gy.len(),
                mean.len(),
                g.c,
                g.total(),
                g.rows()
            ),
        ));
    }
    let dt = x.dtype();
    let gx = be.alloc(dt, g.total())?;
    let gw = be.zeros(dt, g.c)?;
    let gb = be.zeros(dt, g.c)?;
    if g.total() == 0 {
        return Ok([gx, gw, gb]);
    }
    let gw_part = be.alloc(dt, g.n * g.c)?;
    let gb_part = be.alloc(dt, g.n * g.c)?;
    let (n, c, hw, gr) = (g.n as i64, g.c as i64, g.inner as i64, g.groups as i64);
    let f = be.func("group_norm", &format!("group_norm_bwd_{}", sfx(dt)))?;
    let ins = (x.ptr(), w.ptr(), b.ptr(), mean.ptr(), rstd.ptr(), gy.ptr());
    let outs = (gx.ptr(), gw_part.ptr(), gb_part.ptr());
    launch!(be, "group_norm_backward", f, be.blocks(g.rows(), GN_THREADS, 0);
        &n, &c, &hw, &gr, &g.act, &ins.0, &ins.1, &ins.2, &ins.3, &ins.4, &ins.5,
        &outs.0, &outs.1, &outs.2)?;
    let f = be.func("group_norm", &format!("sum_rows_{}", sfx(dt)))?;
    for (part, out) in [(&gw_part, &gw), (&gb_part, &gb)] {
        let (pp, op) = (part.ptr(), out.ptr());
        launch!(be, "group_norm_backward", f, be.grid(g.c, 256); &n, &c, &pp, &op)?;
    }
    Ok([gx, gw, gb])
}

// ---- the fused group norm on tensors (called from `ops::norm`'s dispatch) ------------------------

use super::{Act, Dims};
use crate::ops::gpu::{on_gpu, storages};
use crate::tensor::Tensor;

impl Dims {
    pub(super) fn gpu(&self, eps: f64, act: Act) -> NormGeom {
        NormGeom {
            n: self.n,
            c: self.c,
            inner: self.inner,
            groups: self.groups,
            eps,
            act: match act {
                Act::None => 0,
                Act::Silu => 1,
            },
        }
    }
}

/// Whether act(x̂·w + b) of `x` runs the fused kernels of cuda/group_norm.cu: on a GPU, for
/// images (inner > 1; layer norm's one value per channel stays on cuda/norm.cu).
pub(super) fn uses_group_kernel(x: &Tensor, d: &Dims) -> bool {
    on_gpu(x) && d.inner > 1
}

/// y = act(x̂·w + b) ([n, c, inner]) and the statistics (mean, rstd), each [n, groups].
pub(super) fn group_norm_forward(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    d: Dims,
    eps: f64,
    act: Act,
) -> Result<(Tensor, [Tensor; 2])> {
    let (be, s) = storages("group_norm", &[x, w, b])?;
    let o = group_forward(&be, &s[0], &s[1], &s[2], &d.gpu(eps, act))?;
    let stats = [d.n, d.groups];
    Ok((
        Tensor::from_cuda(o.y, &d.shape3()),
        [
            Tensor::from_cuda(o.mean, &stats),
            Tensor::from_cuda(o.rstd, &stats),
        ],
    ))
}

/// [gx, gw, gb] of act(x̂·w + b) from the statistics of [`group_norm_forward`] (values only).
#[allow(clippy::too_many_arguments)]
pub(super) fn group_norm_backward(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stats: &[Tensor; 2],
    g: &Tensor,
    d: Dims,
    eps: f64,
    act: Act,
) -> Result<[Tensor; 3]> {
    let (be, s) = storages("group_norm_backward", &[x, w, b, &stats[0], &stats[1], g])?;
    let [gx, gw, gb] = group_backward(
        &be,
        &s[0],
        &s[1],
        &s[2],
        &s[3],
        &s[4],
        &s[5],
        &d.gpu(eps, act),
    )?;
    Ok([
        Tensor::from_cuda(gx, &d.shape3()),
        Tensor::from_cuda(gw, &[d.c]),
        Tensor::from_cuda(gb, &[d.c]),
    ])
}
