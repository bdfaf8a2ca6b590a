//! The networks: segmenters (U-Net, Swin + UperNet), generators (StyleGAN2, StyleGAN3-T, the
//! diffusion U-Net) and their shared layers.

pub mod common;
pub mod diffusion;
pub mod gan;
pub mod swin;
pub mod unet;
