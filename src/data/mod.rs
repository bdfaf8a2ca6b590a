//! Data: BraTS cases, slices, the procedural phantom, slice stores, splits, augmentation.
//!
//! The pipeline: [`read_case`] (a folder of NIfTI files) → [`slices_from_case`] (kept axial
//! slices, five `u8` channels T1, T1ce, T2, FLAIR, annotation) → [`store::write_store`] (one
//! checksummed file) → [`split::split_subjects`] (train/test by subject) → [`batch`] (flat NCHW
//! `f32` for the models: [−1, 1] for generators, z-scored sequences and a class map for
//! segmenters), with [`augment`] in between for training. [`phantom`] writes BraTS-like cases
//! for tests and for machines without the real data.
//!
//! Modules: [`annotation`] (label codes), [`nifti_case`] (reader), [`slices`] (slicing rules),
//! [`store`] (binary slice store), [`split`], [`phantom`], [`augment`], [`batch`], [`checksum`]
//! (CRC-32); the seeded generators are in [`crate::rng`].

pub mod annotation;
pub mod augment;
pub mod batch;
pub mod checksum;
pub mod export;
pub mod nifti_case;
pub mod nifti_header;
pub mod orient;
pub mod phantom;
/// The seeded generators moved to the crate root ([`crate::rng`]); this path stays valid.
pub use crate::rng;
pub mod slices;
pub mod split;
pub mod store;

pub use nifti_case::{
    Case, Naming, Volume, list_case_dirs, read_case, read_volume, read_volume_bytes,
};
pub use phantom::{PhantomConfig, write_phantom_cases};
pub use slices::{Slice, SliceConfig, slices_from_case};
pub use split::{Split, SplitSpec, split_subjects};
pub use store::{SliceStore, read_store, write_store};
