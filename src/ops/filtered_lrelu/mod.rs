//! StyleGAN3's filtered leaky ReLU as one fused CPU op: upsample + FIR, bias / leaky ReLU /
//! gain / clamp, FIR + downsample, plane by plane in cache (see `cpu.rs`), with a fused
//! first-order backward for the input and the bias. It computes what NVlabs'
//! `filtered_lrelu.py` computes (`_filtered_lrelu_ref`, our
//! [`crate::ops::stylegan::filtered_lrelu_ref`], which stays the reference every test compares
//! against); like NVlabs' CUDA kernel it keeps only a per-sample sign/clamp mask for the
//! backward, not the upsampled tensor.
//!
//! Where it applies: CPU tensors, separable (1-D) or absent filters, the `Fast` CPU kernels.
//! Anything else (2-D filters, a GPU, `with_reference`) runs the reference composite.
//!
//! Derivatives: the op is piecewise linear in x and b, so its gradient is linear in the output
//! gradient with a constant mask. A first-order backward (no `create_graph`) runs the fused
//! adjoint kernel. When the gradient itself is recorded (`create_graph`), the backward rebuilds
//! the reference composite on detached copies of x and b and differentiates that with
//! `create_graph`: the result is differentiable in the output gradient to any order, and its
//! derivative in x and b is zero almost everywhere, as for the reference. StyleGAN3-T's
//! training never takes that path (no path-length penalty; R1 runs through the StyleGAN2
//! discriminator).

mod cpu;

use std::sync::{Arc, Mutex};

use cpu::{AxisPass, PlaneSpec};

use crate::autograd::{GradFn, is_grad_enabled, record};
use crate::backend::cpu::{CpuKernels, kernels};
use crate::tensor::{Kernel, StorageElem, Tensor};
use crate::{Device, Error, Result};

/// The arguments of one filtered leaky ReLU call, as [`crate::ops::stylegan::filtered_lrelu`].
#[derive(Clone, Debug)]
pub struct Params {
    pub up: usize,
    pub down: usize,
    /// (x0, x1, y0, y1) on the upsampled image; negative crops.
    pub padding: (isize, isize, isize, isize),
    pub gain: f64,
    pub slope: f64,
    pub clamp: Option<f64>,
    pub flip_filter: bool,
}

/// Correlation-order taps of an optional 1-D filter with the per-axis gain folded in; `None`
/// when the filter is 2-D (the fused kernel handles separable filters only).
fn axis_taps(f: Option<&Tensor>, axis_gain: f64, flip: bool) -> Result<Option<Vec<f64>>> {
    let Some(f) = f else {
        return Ok(Some(vec![axis_gain]));
    };
    if f.rank() != 1 {
        return Ok(None);
    }
    let mut t = f.to_device(Device::Cpu)?.to_vec_f64()?;
    if t.is_empty() {
        return Err(Error::shape("filtered_lrelu", "empty filter of shape [0]"));
    }
    // the passes correlate; true convolution (flip_filter = false) correlates with the flip
    if !flip {
        t.reverse();
    }
    t.iter_mut().for_each(|v| *v *= axis_gain);
    Ok(Some(t))
}

/// Output length of one axis after upsampling, padding, both filters and downsampling, with
/// the upsampled length; None when a filter is longer than what it filters.
fn axis_lens(
    n: usize,
    up: usize,
    p0: isize,
    p1: isize,
    ku: usize,
    kd: usize,
    down: usize,
) -> Option<(usize, usize)> {
    let mid = (n * up) as isize + p0 + p1 - ku as isize + 1;
    if mid < kd as isize {
        return None;
    }
    let mid = mid as usize;
    Some((mid, (mid - kd) / down + 1))
}

/// The plane spec of a call, or None when the fused kernel does not apply.
fn plan(
    x: &Tensor,
    fu: Option<&Tensor>,
    fd: Option<&Tensor>,
    p: &Params,
) -> Result<Option<PlaneSpec>> {
    let (h, w) = (x.shape()[2], x.shape()[3]);
    // upfirdn2d's gain up² on the whole filter is `up` along each axis of a separable one
    let (Some(tu), Some(td)) = (
        axis_taps(fu, p.up as f64, p.flip_filter)?,
        axis_taps(fd, 1.0, p.flip_filter)?,
    ) else {
        return Ok(None);
    };
    let (x0, x1, y0, y1) = p.padding;
    let (ku, kd) = (tu.len(), td.len());
    let (Some((wz, wo)), Some((hz, ho))) = (
        axis_lens(w, p.up, x0, x1, ku, kd, p.down),
        axis_lens(h, p.up, y0, y1, ku, kd, p.down),
    ) else {
        return Err(Error::shape(
            "filtered_lrelu",
            format!(
                "input {h}x{w} upsampled by {} and padded by {:?} is smaller than the {ku}-tap \
                 up filter and the {kd}-tap down filter",
                p.up, p.padding
            ),
        ));
    };
    Ok(Some(PlaneSpec {
        uy: AxisPass::new(h, hz, tu.clone(), p.up, 1, y0),
        ux: AxisPass::new(w, wz, tu, p.up, 1, x0),
        dx: AxisPass::new(wz, wo, td.clone(), 1, p.down, 0),
        dy: AxisPass::new(hz, ho, td, 1, p.down, 0),
        gain: p.gain,
        slope: p.slope,
        clamp: p.clamp,
    }))
}

/// The fused op, or `Ok(None)` when it does not apply here (the caller then runs the
/// reference). Arguments are validated by the caller.
pub(crate) fn try_fused(
    x: &Tensor,
    fu: Option<&Tensor>,
    fd: Option<&Tensor>,
    b: Option<&Tensor>,
    p: &Params,
) -> Result<Option<Tensor>> {
    if x.device() != Device::Cpu
        || kernels() != CpuKernels::Fast
        || fu.is_some_and(|f| f.device() != Device::Cpu)
        || b.is_some_and(|b| b.device() != Device::Cpu)
    {
        return Ok(None);
    }
    let Some(spec) = plan(x, fu, fd, p)? else {
        return Ok(None);
    };
    let spec = Arc::new(spec);
    let s = x.shape();
    let (n, c) = (s[0], s[1]);
    let wants_grad =
        is_grad_enabled() && (x.requires_grad() || b.is_some_and(|b| b.requires_grad()));
    let k = ForwardKernel {
        spec: spec.clone(),
        channels: c,
        keep_mask: wants_grad,
        mask: Mutex::new(Vec::new()),
    };
    let out_shape = [n, c, spec.dy.n_out, spec.dx.n_out];
    let out = match b {
        Some(b) => Tensor::run_kernel("filtered_lrelu", &[x, b], &out_shape, &k)?,
        None => Tensor::run_kernel("filtered_lrelu", &[x], &out_shape, &k)?,
    };
    let mut inputs = vec![x];
    inputs.extend(b);
    Ok(Some(record(out, &inputs, || {
        let mask = std::mem::take(&mut *k.mask.lock().unwrap_or_else(|e| e.into_inner()));
        Arc::new(FilteredLreluBackward {
            x: x.clone(),
            b: b.cloned(),
            fu: fu.map(Tensor::detach),
            fd: fd.map(Tensor::detach),
            params: p.clone(),
            spec,
            mask: Arc::new(mask),
        })
    })))
}

struct ForwardKernel {
    spec: Arc<PlaneSpec>,
    channels: usize,
    keep_mask: bool,
    /// The masks the forward leaves for the backward (filled by `run`).
    mask: Mutex<Vec<u8>>,
}

impl Kernel for ForwardKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let bias: &[T] = xs.get(1).copied().unwrap_or(&[]);
        let (out, mask) = cpu::forward(&self.spec, xs[0], bias, self.channels, self.keep_mask);
        if self.keep_mask {
            *self.mask.lock().unwrap_or_else(|e| e.into_inner()) = mask;
        }
        Ok(out)
    }
}

struct BackwardKernel {
    spec: Arc<PlaneSpec>,
    mask: Arc<Vec<u8>>,
    channels: usize,
}

impl Kernel for BackwardKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        Ok(cpu::backward(&self.spec, xs[0], &self.mask, self.channels))
    }
}

struct FilteredLreluBackward {
    x: Tensor,
    b: Option<Tensor>,
    fu: Option<Tensor>,
    fd: Option<Tensor>,
    params: Params,
    spec: Arc<PlaneSpec>,
    mask: Arc<Vec<u8>>,
}

impl FilteredLreluBackward {
    /// The reference's gradient, recorded (see the module docs).
    fn recorded(&self, g: &Tensor) -> Result<Vec<Tensor>> {
        let x = self.x.detach().variable();
        let b = self.b.as_ref().map(|b| b.detach().variable());
        let p = &self.params;
        let y = crate::ops::stylegan::filtered_lrelu_ref(
            &x,
            self.fu.as_ref(),
            self.fd.as_ref(),
            b.as_ref(),
            p.up,
            p.down,
            p.padding,
            p.gain,
            p.slope,
            p.clamp,
            p.flip_filter,
        )?;
        let mut wrt = vec![x];
        wrt.extend(b);
        crate::autograd::grad(&[y], Some(std::slice::from_ref(g)), &wrt, true)
    }
}

impl GradFn for FilteredLreluBackward {
    fn name(&self) -> &'static str {
        "filtered_lrelu"
    }
    fn inputs(&self) -> Vec<Tensor> {
        let mut v = vec![self.x.clone()];
        v.extend(self.b.clone());
        v
    }
    fn backward(&self, _out: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let pick = |t: Tensor, i: usize| needs.get(i).copied().unwrap_or(false).then_some(t);
        if is_grad_enabled() || self.mask.is_empty() {
            let gs = self.recorded(g)?;
            return Ok(gs
                .into_iter()
                .enumerate()
                .map(|(i, t)| pick(t, i))
                .collect());
        }
        let s = self.x.shape();
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        let k = BackwardKernel {
            spec: self.spec.clone(),
            mask: self.mask.clone(),
            channels: c,
        };
        let total = n * c * h * w;
        let flat = Tensor::run_kernel("filtered_lrelu_backward", &[g], &[total + c], &k)?;
        let gx = flat.narrow(0, 0, total)?.reshape(s)?;
        let mut out = vec![pick(gx, 0)];
        if self.b.is_some() {
            out.push(pick(flat.narrow(0, total, c)?, 1));
        }
        Ok(out)
    }
}
