//! Files in and out: checkpoints (safetensors).

pub mod checkpoint;
pub(crate) mod json;
