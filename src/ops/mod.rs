//! Ops, one file per family: forward dispatch to the backend kernels plus the backward rule,
//! written with differentiable ops.

pub mod elementwise;
pub mod matmul;
pub mod reduce;
pub mod view;

pub use elementwise::{Binary, Unary};
pub mod filter_design;
pub mod grid_sample;
pub mod resize;
pub mod stylegan;
pub mod upfirdn;
