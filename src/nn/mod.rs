//! Parameters, initialisers and layers the generators and segmenters are written with (the
//! normalisation layers in [`norm`]).

pub mod init;
pub mod layers;
pub mod norm;
pub mod params;

pub use init::{FanMode, Init};
pub use layers::{
    Conv2d, DropPath, Dropout, Embedding, EqualizedConfig, EqualizedConv2d, EqualizedLinear, Linear,
};
pub use norm::{BatchNorm2d, GroupNorm, InstanceNorm, LayerNorm};
pub use params::{Param, ParamAttrs, ParamStore, Scope};
