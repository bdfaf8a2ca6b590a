//! Training loops: segmentation (U-Net, Swin) with the size profiles.

pub mod profile;
pub mod seg;
