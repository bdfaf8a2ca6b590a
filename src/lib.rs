//! brainsynth: synthetic brain-tumor MR images (Progressive GAN, StyleGAN 1/2/3, diffusion) and the
//! segmentation study that measures whether they can stand in for real patient scans.
//!
//! Built from scratch: a tensor and autograd core with gradients of gradients ([`tensor`],
//! [`autograd`], [`ops`]), a CPU reference path that is the ground truth of every numerical test,
//! a fast CPU path, and handwritten CUDA kernels behind the `cuda` feature.

pub mod autograd;
pub mod backend;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod io;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod profile;
pub mod study;
pub mod tensor;
pub mod testing;
pub mod train;

pub use error::{Error, Result};
pub use tensor::{DType, Device, Tensor};
