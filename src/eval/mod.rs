//! Evaluation: Dice per tumour class and BraTS region, per subject in 3D, and summaries.

pub mod dice;
pub mod memorisation;
