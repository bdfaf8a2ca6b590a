//! The CUDA side of the optimisers: cuda/optim.cu's in-place SGD and Adam/AdamW updates of a GPU
//! parameter and its state buffers (same arithmetic as the CPU loops in `optim::{sgd, adam}`).

use std::sync::Arc;

use crate::backend::cuda::{CudaStorage, launch, sfx};
use crate::tensor::Tensor;
use crate::{Error, Result};

const BLOCK: u32 = 256;

/// The device storage that `t` views in full (offset 0, contiguous), to be written in place.
fn in_place(op: &'static str, t: &Tensor) -> Result<Arc<CudaStorage>> {
    let own = t.cuda_storage().cloned().ok_or_else(|| Error::Device {
        op,
        msg: "expected a GPU tensor".into(),
    })?;
    let view = t.contiguous_device()?;
    match view.cuda_storage() {
        Some(v) if v.ptr() == own.ptr() && own.len() == t.elem_count() => Ok(own),
        _ => Err(Error::invalid(
            op,
            "a GPU parameter or optimiser state must be a whole contiguous tensor to update in place",
        )),
    }
}

/// Gradient values as contiguous device storage of the parameter's size.
fn grad_storage(op: &'static str, p: &Tensor, g: &Tensor) -> Result<Arc<CudaStorage>> {
    if g.shape() != p.shape() || g.dtype() != p.dtype() || g.device() != p.device() {
        return Err(Error::shape(
            op,
            format!(
                "gradient {:?} {} on {} for parameter {:?} {} on {}",
                g.shape(),
                g.dtype().name(),
                g.device(),
                p.shape(),
                p.dtype().name(),
                p.device()
            ),
        ));
    }
    g.contiguous_device()?
        .cuda_storage()
        .cloned()
        .ok_or_else(|| Error::Cuda(format!("{op}: gradient is not on the GPU")))
}

/// SGD hyper-parameters of one step (momentum 0 means no buffer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SgdStep {
    pub lr: f64,
    pub wd: f64,
    pub momentum: f64,
    /// 1 − dampening
    pub damp: f64,
    pub nesterov: bool,
    pub first: bool,
}

pub(crate) fn sgd_step(p: &Tensor, g: &Tensor, buf: &Tensor, h: &SgdStep) -> Result<()> {
    const OP: &str = "sgd";
    let x = in_place(OP, p)?;
    let gs = grad_storage(OP, p, g)?;
    let n = x.len();
    // without momentum the buffer is not read or written; any pointer will do
    let bp = if h.momentum != 0.0 {
        let b = in_place(OP, buf)?;
        if b.len() != n || b.dtype() != x.dtype() {
            return Err(Error::shape(
                OP,
                "momentum buffer does not match the parameter",
            ));
        }
        b.ptr()
    } else {
        0
    };
    if n == 0 {
        return Ok(());
    }
    let be = x.backend().clone();
    let f = be.func("optim", &format!("sgd_step_{}", sfx(x.dtype())))?;
    let (nn, xp, gp) = (n as i64, x.ptr(), gs.ptr());
    let (has_wd, has_mom, nest, first) = (
        (h.wd != 0.0) as i32,
        (h.momentum != 0.0) as i32,
        h.nesterov as i32,
        h.first as i32,
    );
    launch!(be, OP, f, be.grid(n, BLOCK);
        &nn, &xp, &gp, &bp, &h.lr, &h.wd, &h.momentum, &h.damp, &has_wd, &has_mom, &nest, &first)
}

/// Adam hyper-parameters of one step, with the bias corrections already folded in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamStep {
    pub b1: f64,
    pub b2: f64,
    pub eps: f64,
    pub bc2_sqrt: f64,
    pub step_size: f64,
    pub decay: f64,
    pub wd: f64,
    pub decoupled: bool,
}

pub(crate) fn adam_step(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    h: &AdamStep,
) -> Result<()> {
    const OP: &str = "adam";
    let x = in_place(OP, p)?;
    let gs = grad_storage(OP, p, g)?;
    let (ms, vs) = (in_place(OP, m)?, in_place(OP, v)?);
    let n = x.len();
    if ms.len() != n || vs.len() != n || ms.dtype() != x.dtype() || vs.dtype() != x.dtype() {
        return Err(Error::shape(
            OP,
            "moment buffers do not match the parameter",
        ));
    }
    if n == 0 {
        return Ok(());
    }
    let be = x.backend().clone();
    let f = be.func("optim", &format!("adam_step_{}", sfx(x.dtype())))?;
    let (nn, xp, gp, mp, vp) = (n as i64, x.ptr(), gs.ptr(), ms.ptr(), vs.ptr());
    let (dec, has_wd) = (h.decoupled as i32, (h.wd != 0.0) as i32);
    launch!(be, OP, f, be.grid(n, BLOCK);
        &nn, &xp, &gp, &mp, &vp, &h.b1, &h.b2, &h.eps, &h.bc2_sqrt, &h.step_size, &h.decay,
        &h.wd, &dec, &has_wd)
}
