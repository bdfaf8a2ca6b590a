//! The CUDA side of the elementwise ops: each [`Unary`] / [`Binary`] as its kernel code in
//! cuda/elementwise.cu. The codes themselves come from the one table cuda/elementwise_ops.cuh
//! (build.rs turns it into `UnaryCode` / `BinaryCode`); this match only pairs names with names, so
//! the compiler checks it and a new op cannot be forgotten.

use std::sync::Arc;

use super::{Binary, Unary, broadcast_strides};
use crate::Result;
use crate::backend::cuda::ops::{self as launch, BinaryCode, UnaryCode};
use crate::backend::cuda::{CudaBackend, CudaStorage};

/// The kernel code of `op` and its two parameters (zeros for ops without them).
fn unary_code(op: Unary) -> (UnaryCode, f64, f64) {
    use UnaryCode as C;
    match op {
        Unary::Neg => (C::Neg, 0.0, 0.0),
        Unary::Exp => (C::Exp, 0.0, 0.0),
        Unary::Log => (C::Log, 0.0, 0.0),
        Unary::Sqrt => (C::Sqrt, 0.0, 0.0),
        Unary::Rsqrt => (C::Rsqrt, 0.0, 0.0),
        Unary::Recip => (C::Recip, 0.0, 0.0),
        Unary::Sqr => (C::Sqr, 0.0, 0.0),
        Unary::Sin => (C::Sin, 0.0, 0.0),
        Unary::Cos => (C::Cos, 0.0, 0.0),
        Unary::Abs => (C::Abs, 0.0, 0.0),
        Unary::Tanh => (C::Tanh, 0.0, 0.0),
        Unary::Sigmoid => (C::Sigmoid, 0.0, 0.0),
        Unary::Erf => (C::Erf, 0.0, 0.0),
        Unary::Relu => (C::Relu, 0.0, 0.0),
        Unary::Silu => (C::Silu, 0.0, 0.0),
        Unary::Gelu => (C::Gelu, 0.0, 0.0),
        Unary::Softplus => (C::Softplus, 0.0, 0.0),
        Unary::Powf(p) => (C::Powf, p, 0.0),
        Unary::LeakyRelu(s) => (C::LeakyRelu, s, 0.0),
        Unary::Clamp(lo, hi) => (C::Clamp, lo, hi),
        Unary::Affine(a, b) => (C::Affine, a, b),
        Unary::StepPos => (C::StepPos, 0.0, 0.0),
        Unary::Sign => (C::Sign, 0.0, 0.0),
        Unary::InRange(lo, hi) => (C::InRange, lo, hi),
        Unary::Ge(c) => (C::Ge, c, 0.0),
        Unary::LeakyDeriv(s) => (C::LeakyDeriv, s, 0.0),
        Unary::GeluDeriv => (C::GeluDeriv, 0.0, 0.0),
    }
}

fn binary_code(op: Binary) -> BinaryCode {
    use BinaryCode as C;
    match op {
        Binary::Add => C::Add,
        Binary::Sub => C::Sub,
        Binary::Mul => C::Mul,
        Binary::Div => C::Div,
        Binary::Max => C::Max,
        Binary::Min => C::Min,
        Binary::GeMask => C::GeMask,
    }
}

pub(super) fn unary(be: &Arc<CudaBackend>, x: &CudaStorage, op: Unary) -> Result<CudaStorage> {
    let (code, p, q) = unary_code(op);
    launch::unary(be, x, code, p, q)
}

/// a op b broadcast to `out`.
pub(super) fn binary(
    be: &Arc<CudaBackend>,
    a: &CudaStorage,
    b: &CudaStorage,
    op: Binary,
    a_shape: &[usize],
    b_shape: &[usize],
    out: &[usize],
) -> Result<CudaStorage> {
    let sa = broadcast_strides(a_shape, out);
    let sb = broadcast_strides(b_shape, out);
    launch::binary(be, a, b, binary_code(op), out, &sa, &sb)
}
