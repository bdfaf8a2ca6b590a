//! 2-D convolution as three linear primitives — forward, backward-data (the transposed
//! convolution) and backward-weight — each the backward of the others, so gradients of any
//! order reduce to these three kernels (as NVlabs' conv2d_gradfix does).
//!
//! The family's parts: this file (API, backward rules, dispatch), `reference.rs` (plain loops),
//! `fast.rs` (im2col + GEMM) and `direct.rs` (AVX-512 3×3), `cuda.rs` (launches of
//! cuda/conv.cu, implicit GEMM on the tiles of cuda/gemm_tile.cuh).

use std::sync::Arc;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod direct;
pub mod fast;
pub mod reference;

use crate::autograd::{GradFn, record};
use crate::backend::cpu::{self, CpuKernels};
use crate::tensor::{Kernel, StorageElem, Tensor};
use crate::{Error, Result};
pub use reference::ConvGeom;

/// Stride, zero padding, dilation and groups of a convolution (PyTorch's meanings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Stride 1 and the padding that keeps the size for an odd square kernel k.
    pub fn same(k: usize) -> Self {
        Conv2dParams {
            padding: (k / 2, k / 2),
            ..Default::default()
        }
    }
    pub fn with_stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    pub fn with_padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    pub fn with_groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// Check shapes and derive the geometry for x [n, cin, h, w] and w [cout, cin/groups, kh, kw].
pub fn conv_geom(op: &'static str, x: &[usize], w: &[usize], p: &Conv2dParams) -> Result<ConvGeom> {
    let bad = |m: String| Err(Error::shape(op, m));
    if x.len() != 4 || w.len() != 4 {
        return bad(format!(
            "input {x:?} must be [N, C, H, W] and weight {w:?} [Cout, Cin/groups, kH, kW]"
        ));
    }
    if p.groups == 0 || p.stride.0 == 0 || p.stride.1 == 0 || p.dilation.0 == 0 || p.dilation.1 == 0
    {
        return Err(Error::invalid(
            op,
            format!("groups, stride and dilation must be positive: {p:?}"),
        ));
    }
    let (n, cin, h, wd) = (x[0], x[1], x[2], x[3]);
    let (cout, cig, kh, kw) = (w[0], w[1], w[2], w[3]);
    if cin % p.groups != 0 || cout % p.groups != 0 || cig * p.groups != cin {
        return bad(format!(
            "input {x:?} and weight {w:?} do not fit {} groups",
            p.groups
        ));
    }
    let eh = p.dilation.0 * (kh.max(1) - 1) + 1;
    let ew = p.dilation.1 * (kw.max(1) - 1) + 1;
    if h + 2 * p.padding.0 < eh || wd + 2 * p.padding.1 < ew || kh == 0 || kw == 0 {
        return bad(format!(
            "kernel {kh}x{kw} (dilation {:?}) is larger than the padded input {x:?}",
            p.dilation
        ));
    }
    Ok(ConvGeom {
        n,
        cin,
        h,
        w: wd,
        cout,
        kh,
        kw,
        oh: (h + 2 * p.padding.0 - eh) / p.stride.0 + 1,
        ow: (wd + 2 * p.padding.1 - ew) / p.stride.1 + 1,
        stride: p.stride,
        pad: p.padding,
        dil: p.dilation,
        groups: p.groups,
    })
}

#[derive(Clone, Copy)]
enum Which {
    Forward,
    Data,
    Weight,
}

struct ConvKernel {
    which: Which,
    g: ConvGeom,
}

impl Kernel for ConvKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let g = &self.g;
        Ok(match (cpu::kernels(), self.which) {
            (CpuKernels::Reference, Which::Forward) => reference::conv2d(xs[0], xs[1], g),
            (CpuKernels::Reference, Which::Data) => {
                reference::conv2d_backward_data(xs[0], xs[1], g)
            }
            (CpuKernels::Reference, Which::Weight) => {
                reference::conv2d_backward_weight(xs[0], xs[1], g)
            }
            (CpuKernels::Fast, Which::Forward) => fast::conv2d(xs[0], xs[1], g),
            (CpuKernels::Fast, Which::Data) => fast::conv2d_backward_data(xs[0], xs[1], g),
            (CpuKernels::Fast, Which::Weight) => fast::conv2d_backward_weight(xs[0], xs[1], g),
        })
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        x: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        use cuda::{ConvPass, conv};
        let pass = match self.which {
            Which::Forward => ConvPass::Forward,
            Which::Data => ConvPass::Data,
            Which::Weight => ConvPass::Weight,
        };
        conv(be, pass, x[0], x[1], &self.g)
    }
}

impl Tensor {
    /// Cross-correlation of x [N, Cin, H, W] with w [Cout, Cin/groups, kH, kW] (PyTorch's conv2d).
    pub fn conv2d(&self, w: &Tensor, p: Conv2dParams) -> Result<Tensor> {
        let g = conv_geom("conv2d", self.shape(), w.shape(), &p)?;
        let out = Tensor::run_kernel(
            "conv2d",
            &[self, w],
            &[g.n, g.cout, g.oh, g.ow],
            &ConvKernel {
                which: Which::Forward,
                g,
            },
        )?;
        Ok(record(out, &[self, w], || {
            Arc::new(ConvBackward {
                x: self.clone(),
                w: w.clone(),
                p,
            })
        }))
    }

    /// The adjoint of `conv2d` in its input: maps dy [N, Cout, oH, oW] to an x-shaped
    /// `x_shape` tensor. With stride > 1 this is the transposed convolution.
    pub fn conv2d_backward_data(
        &self,
        w: &Tensor,
        x_shape: &[usize],
        p: Conv2dParams,
    ) -> Result<Tensor> {
        let g = conv_geom("conv2d_backward_data", x_shape, w.shape(), &p)?;
        if self.shape() != [g.n, g.cout, g.oh, g.ow] {
            return Err(Error::shape(
                "conv2d_backward_data",
                format!(
                    "gradient {:?} does not match the output [{}, {}, {}, {}] of a conv of {x_shape:?} with {:?}",
                    self.shape(),
                    g.n,
                    g.cout,
                    g.oh,
                    g.ow,
                    w.shape()
                ),
            ));
        }
        let out = Tensor::run_kernel(
            "conv2d_backward_data",
            &[self, w],
            x_shape,
            &ConvKernel {
                which: Which::Data,
                g,
            },
        )?;
        Ok(record(out, &[self, w], || {
            Arc::new(ConvDataBackward {
                dy: self.clone(),
                w: w.clone(),
                p,
            })
        }))
    }

    /// The adjoint of `conv2d` in its weight: correlates x with dy into a `w_shape` tensor.
    pub fn conv2d_backward_weight(
        &self,
        dy: &Tensor,
        w_shape: &[usize],
        p: Conv2dParams,
    ) -> Result<Tensor> {
        let g = conv_geom("conv2d_backward_weight", self.shape(), w_shape, &p)?;
        if dy.shape() != [g.n, g.cout, g.oh, g.ow] {
            return Err(Error::shape(
                "conv2d_backward_weight",
                format!(
                    "gradient {:?} does not match the output [{}, {}, {}, {}] of a conv of {:?} with {w_shape:?}",
                    dy.shape(),
                    g.n,
                    g.cout,
                    g.oh,
                    g.ow,
                    self.shape()
                ),
            ));
        }
        let out = Tensor::run_kernel(
            "conv2d_backward_weight",
            &[self, dy],
            w_shape,
            &ConvKernel {
                which: Which::Weight,
                g,
            },
        )?;
        Ok(record(out, &[self, dy], || {
            Arc::new(ConvWeightBackward {
                x: self.clone(),
                dy: dy.clone(),
                p,
            })
        }))
    }

    /// Transposed convolution (PyTorch's conv_transpose2d) of x [N, Cin, H, W] with
    /// w [Cin, Cout/groups, kH, kW]; `output_padding` adds rows/cols at the bottom/right.
    pub fn conv_transpose2d(
        &self,
        w: &Tensor,
        p: Conv2dParams,
        output_padding: (usize, usize),
    ) -> Result<Tensor> {
        let (x, ws) = (self.shape(), w.shape());
        if x.len() != 4 || ws.len() != 4 || x[1] != ws[0] || p.groups == 0 || x[1] % p.groups != 0 {
            return Err(Error::shape(
                "conv_transpose2d",
                format!(
                    "input {x:?} with weight {ws:?} [Cin, Cout/groups, kH, kW], {} groups",
                    p.groups
                ),
            ));
        }
        if output_padding.0 >= p.stride.0.max(p.dilation.0)
            || output_padding.1 >= p.stride.1.max(p.dilation.1)
        {
            return Err(Error::invalid(
                "conv_transpose2d",
                format!(
                    "output padding {output_padding:?} must be smaller than stride or dilation"
                ),
            ));
        }
        let cout = ws[1] * p.groups;
        let size =
            |i: usize, k: usize, s: usize, pd: usize, d: usize, op: usize| -> Result<usize> {
                ((i - 1) * s + d * (k - 1) + 1 + op)
                    .checked_sub(2 * pd)
                    .ok_or_else(|| {
                        Error::shape(
                            "conv_transpose2d",
                            format!("padding {pd} too large for input {x:?}"),
                        )
                    })
            };
        let oh = size(
            x[2],
            ws[2],
            p.stride.0,
            p.padding.0,
            p.dilation.0,
            output_padding.0,
        )?;
        let ow = size(
            x[3],
            ws[3],
            p.stride.1,
            p.padding.1,
            p.dilation.1,
            output_padding.1,
        )?;
        // The transposed conv is conv2d's data adjoint with the roles of cin and cout swapped:
        // a conv mapping [N, cout, oh, ow] → [N, cin, h, w] has weight [cin, cout/g, kh, kw] = w.
        self.conv2d_backward_data(w, &[x[0], cout, oh, ow], p)
    }
}

struct ConvBackward {
    x: Tensor,
    w: Tensor,
    p: Conv2dParams,
}
impl GradFn for ConvBackward {
    fn name(&self) -> &'static str {
        "conv2d"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone(), self.w.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            if needs[0] {
                Some(g.conv2d_backward_data(&self.w, self.x.shape(), self.p)?)
            } else {
                None
            },
            if needs[1] {
                Some(self.x.conv2d_backward_weight(g, self.w.shape(), self.p)?)
            } else {
                None
            },
        ])
    }
}

/// y = D(dy, w) is linear in each: dL/d dy = conv2d(h, w), dL/dw = W(h, dy) for output grad h.
struct ConvDataBackward {
    dy: Tensor,
    w: Tensor,
    p: Conv2dParams,
}
impl GradFn for ConvDataBackward {
    fn name(&self) -> &'static str {
        "conv2d_backward_data"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.dy.clone(), self.w.clone()]
    }
    fn backward(&self, _o: &Tensor, h: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            if needs[0] {
                Some(h.conv2d(&self.w, self.p)?)
            } else {
                None
            },
            if needs[1] {
                Some(h.conv2d_backward_weight(&self.dy, self.w.shape(), self.p)?)
            } else {
                None
            },
        ])
    }
}

/// y = W(x, dy): dL/dx = D(dy, h), dL/d dy = conv2d(x, h) for output grad h.
struct ConvWeightBackward {
    x: Tensor,
    dy: Tensor,
    p: Conv2dParams,
}
impl GradFn for ConvWeightBackward {
    fn name(&self) -> &'static str {
        "conv2d_backward_weight"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone(), self.dy.clone()]
    }
    fn backward(&self, _o: &Tensor, h: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            if needs[0] {
                Some(self.dy.conv2d_backward_data(h, self.x.shape(), self.p)?)
            } else {
                None
            },
            if needs[1] {
                Some(self.x.conv2d(h, self.p)?)
            } else {
                None
            },
        ])
    }
}
