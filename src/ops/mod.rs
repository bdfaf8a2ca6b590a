//! Ops: each family's forward, its dispatch to a kernel per device, and its backward rule
//! (written with differentiable ops where higher orders are needed).
//!
//! # Where an op family's parts live
//!
//! A family is a folder `src/ops/<family>/` (or, while it is one file, `<family>.rs` with a
//! `<family>/` folder beside it for the parts it has grown):
//!
//! - `mod.rs` (or `<family>.rs`): the public API, shape checks, the recorded backward rule, and
//!   the one place that chooses the kernel: the CPU kernel (reference or fast, by the scoped
//!   [`crate::backend::cpu::kernels`] setting) through `Tensor::run_kernel`, or on a GPU the
//!   family's `cuda.rs`;
//! - `reference.rs`: plain loops, f64-capable, the ground truth of the tests;
//! - `fast.rs` (and helpers such as conv's `direct.rs`): the fast CPU kernels;
//! - `cuda.rs` (feature `cuda`): the launches of the family's kernels in `cuda/<family>.cu` (or
//!   the `.cu` it names), on device storages, plus the glue for kernels that return more than one
//!   tensor (a fused forward that keeps statistics for its backward).
//!
//! Moved so far: `conv/` (cuda/conv.cu), `modconv/` (cuda/modconv.cu), `upfirdn/` and `resize/`
//! (cuda/resample.cu), `elementwise/cuda.rs` (cuda/elementwise.cu and its op table
//! cuda/elementwise_ops.cuh), the CUDA sides of `norm/` (cuda/group_norm.cu, cuda/norm.cu) and
//! `attention/` (cuda/window_attention.cu, cuda/attention.cu); the optimisers' launches are in
//! `optim/cuda.rs` (cuda/optim.cu). The rest (reduce, view, matmul) still call the
//! general-purpose launches of `backend::cuda::ops`; a family that grows a kernel of its own
//! follows the rule above. Model-specific helpers belong to their model (the diffusion U-Net's
//! legacy QKV attention is in `models::diffusion::qkv_attention`).
//!
//! # Layering
//!
//! Dependencies run one way: `backend` (CPU threads, GEMM; CUDA context, memory, launch, driver
//! or emulator, general-purpose launches on raw storages) ← `tensor` (storage, views: it calls the
//! backend for copies and fills) ← `autograd` ← `ops` (which call both) ← `nn` ← `models` ←
//! `train`. `backend` imports no `Tensor` and nothing from `ops`; of `tensor` it uses only the
//! leaf types (`DType`, `Device`, `Layout`, `StorageElem`). `audit` (feature `cuda`), the
//! kernel parity harness, is an `ops`-level module for that reason.

pub mod attention;
#[cfg(feature = "cuda")]
pub mod audit;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod filter_design;
pub mod filtered_lrelu;
#[cfg(feature = "cuda")]
pub(crate) mod gpu;
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
