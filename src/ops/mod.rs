//! Ops, one file per family: forward dispatch to the backend kernels plus the backward rule,
//! written with differentiable ops.

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod filter_design;
pub mod filtered_lrelu;
pub mod grid_sample;
pub mod loss;
pub mod matmul;
pub mod modconv;
pub mod norm;
pub mod reduce;
pub mod resize;
pub mod stylegan;
pub mod upfirdn;
pub mod view;

pub use conv::Conv2dParams;
pub use elementwise::{Binary, Unary};
pub use modconv::{ModConvParams, modulated_conv2d};
