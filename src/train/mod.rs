//! Training: one runner for every model ([`runner`]), clean interruption ([`interrupt`]), and
//! segmentation (U-Net, Swin) with its size profiles.

pub mod diffusion;
pub mod gan;
pub mod generate;
pub mod interrupt;
pub mod profile;
pub mod runner;
pub mod seg;
