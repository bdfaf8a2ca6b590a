//! Evaluation: Dice per tumour class and BraTS region, per subject in 3D, and summaries; the
//! memorisation audit; measures of synthetic sets beyond the paper (label consistency, label
//! statistics, a Fréchet distance in the real-trained U-Net's feature space).

pub mod consistency;
pub mod dice;
pub mod frechet;
pub mod label_stats;
pub mod memorisation;
