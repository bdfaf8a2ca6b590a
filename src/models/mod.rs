//! The networks: segmenters (U-Net, Swin + UperNet), generators (StyleGAN2, StyleGAN3-T, the
//! diffusion U-Net); the layers they share are in `crate::nn`.

pub mod diffusion;
pub mod gan;
pub mod swin;
pub mod unet;
