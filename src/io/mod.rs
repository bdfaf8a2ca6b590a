//! Files other than the data pipeline's own: pictures, atomic writes.

pub mod atomic;
pub mod png;
