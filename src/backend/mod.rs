//! Compute backends. The CPU reference kernels are the ground truth; the fast CPU kernels and the
//! CUDA kernels are tested against them.

pub mod cpu;

#[cfg(feature = "cuda")]
pub mod cuda;
