//! The networks: segmenters (U-Net, Swin + UperNet) and their shared layers.

pub mod common;
pub mod diffusion;
pub mod gan;
pub mod swin;
pub mod unet;
