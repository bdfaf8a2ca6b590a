//! Parameters, initialisers and layers the generators and segmenters are written with.

pub mod init;
pub mod layers;
pub mod params;

pub use init::{FanMode, Init};
pub use layers::{
    Conv2d, DropPath, Dropout, Embedding, EqualizedConfig, EqualizedConv2d, EqualizedLinear, Linear,
};
pub use params::{Param, ParamAttrs, ParamStore, Scope};
