//! Launches of cuda/conv.cu: the three convolution primitives as implicit GEMMs on the 64×64
//! tiles of cuda/gemm_tile.cuh (the modulated conv of `ops::modconv` shares the tile helpers).
//! Inputs arrive contiguous; every function returns fresh storage.

use std::sync::Arc;

use super::reference::ConvGeom;
use crate::backend::cuda::{CudaBackend, CudaStorage, KernelArg, LaunchConfig, launch, sfx};
use crate::{Error, Result};

/// Convolution geometry as `ConvGeom` in cuda/gemm_tile.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct GpuConvGeom {
    n: i64,
    cin: i64,
    h: i64,
    w: i64,
    cout: i64,
    kh: i64,
    kw: i64,
    oh: i64,
    ow: i64,
    sh: i64,
    sw: i64,
    ph: i64,
    pw: i64,
    dh: i64,
    dw: i64,
    groups: i64,
}
unsafe impl KernelArg for GpuConvGeom {}

impl From<&ConvGeom> for GpuConvGeom {
    fn from(g: &ConvGeom) -> Self {
        GpuConvGeom {
            n: g.n as i64,
            cin: g.cin as i64,
            h: g.h as i64,
            w: g.w as i64,
            cout: g.cout as i64,
            kh: g.kh as i64,
            kw: g.kw as i64,
            oh: g.oh as i64,
            ow: g.ow as i64,
            sh: g.stride.0 as i64,
            sw: g.stride.1 as i64,
            ph: g.pad.0 as i64,
            pw: g.pad.1 as i64,
            dh: g.dil.0 as i64,
            dw: g.dil.1 as i64,
            groups: g.groups as i64,
        }
    }
}

const TILE: usize = 64;

/// Grid of 64×64 tiles over an M×N product with `z` slices.
pub(crate) fn tile_grid(op: &'static str, m: usize, n: usize, z: usize) -> Result<LaunchConfig> {
    let (gx, gy) = (n.div_ceil(TILE), m.div_ceil(TILE));
    if gx == 0 || gy == 0 || z == 0 {
        return Err(Error::invalid(op, "empty problem"));
    }
    if gx > i32::MAX as usize || gy > 65535 || z > 65535 {
        return Err(Error::invalid(
            op,
            format!("{m}×{n} in {z} slices is beyond the GPU grid limits"),
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (gx as u32, gy as u32, z as u32),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Split of a reduction of length `p` over blocks so that about 4 blocks per SM run: returns
/// (splits, chunk) with chunk a multiple of 16.
pub(crate) fn split_k(
    be: &CudaBackend,
    p: usize,
    base_blocks: usize,
    max_splits: usize,
) -> (usize, usize) {
    let target = 4 * be.sm_count() as usize;
    let want = target.div_ceil(base_blocks.max(1));
    let splits = want.clamp(1, p.div_ceil(256).max(1)).min(max_splits.max(1));
    let chunk = p.div_ceil(splits).div_ceil(16) * 16;
    (p.div_ceil(chunk.max(1)).max(1), chunk.max(16))
}

/// Which of the three convolution primitives.
#[derive(Clone, Copy)]
pub(crate) enum ConvPass {
    Forward,
    Data,
    Weight,
}

/// Forward: (x, w) → y. Data: (dy, w) → dx. Weight: (x, dy) → dw.
pub(crate) fn conv(
    be: &Arc<CudaBackend>,
    pass: ConvPass,
    p: &CudaStorage,
    q: &CudaStorage,
    g: &ConvGeom,
) -> Result<CudaStorage> {
    if p.dtype() != q.dtype() {
        return Err(Error::DType {
            op: "conv2d",
            msg: format!("{} and {}", p.dtype().name(), q.dtype().name()),
        });
    }
    let dt = p.dtype();
    let gg = GpuConvGeom::from(g);
    let (cig, cog) = (g.cin / g.groups, g.cout / g.groups);
    let (pp, qp) = (p.ptr(), q.ptr());
    match pass {
        ConvPass::Forward => {
            let y = be.alloc(dt, g.n * g.cout * g.oh * g.ow)?;
            if y.is_empty() {
                return Ok(y);
            }
            let cfg = tile_grid("conv2d", cog, g.n * g.oh * g.ow, g.groups)?;
            let f = be.func("conv", &format!("conv2d_fwd_{}", sfx(dt)))?;
            let yp = y.ptr();
            launch!(be, "conv2d", f, cfg; &gg, &pp, &qp, &yp)?;
            Ok(y)
        }
        ConvPass::Data => {
            let dx = be.alloc(dt, g.n * g.cin * g.h * g.w)?;
            if dx.is_empty() {
                return Ok(dx);
            }
            let cfg = tile_grid("conv2d_backward_data", cig, g.n * g.h * g.w, g.groups)?;
            let f = be.func("conv", &format!("conv2d_bwd_data_{}", sfx(dt)))?;
            let dxp = dx.ptr();
            launch!(be, "conv2d_backward_data", f, cfg; &gg, &pp, &qp, &dxp)?;
            Ok(dx)
        }
        ConvPass::Weight => {
            let k = cig * g.kh * g.kw;
            let dw = be.zeros(dt, g.cout * k)?;
            let pix = g.n * g.oh * g.ow;
            if dw.is_empty() || pix == 0 {
                return Ok(dw);
            }
            let base = cog.div_ceil(TILE) * k.div_ceil(TILE) * g.groups;
            let (splits, chunk) = split_k(be, pix, base, 65535 / g.groups);
            let cfg = tile_grid("conv2d_backward_weight", cog, k, g.groups * splits)?;
            let f = be.func("conv", &format!("conv2d_bwd_weight_{}", sfx(dt)))?;
            let (sp, ch, dwp) = (splits as i64, chunk as i64, dw.ptr());
            launch!(be, "conv2d_backward_weight", f, cfg; &gg, &sp, &ch, &pp, &qp, &dwp)?;
            Ok(dw)
        }
    }
}
