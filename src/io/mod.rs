//! Files in and out beyond the data pipeline's own: checkpoints (safetensors), pictures, atomic
//! writes.

pub mod atomic;
pub mod checkpoint;
pub(crate) mod json;
pub mod png;
