//! Data: BraTS cases, slices, the embedded phantom, slice stores, splits, augmentation.
