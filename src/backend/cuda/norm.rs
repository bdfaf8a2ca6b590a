//! Launch wrappers for cuda/norm.cu: the generic normalisation kernels behind `ops::norm`
//! (group / instance / layer norm with optional affine and SiLU), forward, rstd, and the fused
//! first-order backward. x is [n, c, inner] with statistics per (sample, group) row; the weight
//! and bias gradients are partial sums per (sample range, channel), summed in a second pass.

use std::sync::Arc;

use super::{CudaBackend, CudaStorage, launch, sfx};
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
