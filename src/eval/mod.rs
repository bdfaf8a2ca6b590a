//! Evaluation: Dice per tumour class and BraTS region, per subject in 3D, and summaries; the
//! memorisation audit; measures of synthetic sets beyond the paper (label consistency, label
//! statistics).

pub mod dice;
pub mod memorisation;
pub mod consistency;
pub mod label_stats;
