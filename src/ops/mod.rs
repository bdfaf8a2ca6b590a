//! Ops, one file per family: forward dispatch to the backend kernels plus the backward rule,
//! written with differentiable ops.

pub mod conv;
pub mod elementwise;
pub mod matmul;
pub mod modconv;
pub mod reduce;
pub mod view;

pub use conv::Conv2dParams;
pub use elementwise::{Binary, Unary};
pub use modconv::{ModConvParams, modulated_conv2d};
