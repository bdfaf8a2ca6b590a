//! Dice overlap of predicted and true label maps.
//!
//! Labels are BraTS labels: 0 background, 1 necrotic / non-enhancing core, 2 oedema, 4 enhancing.
//! A subject's Dice is computed in 3D: the voxels of all its evaluated slices are counted
//! together, not slice by slice. Dice of an empty prediction against an empty truth is defined
//! as 1 (nothing to find, nothing found), as in the BraTS evaluation.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// A tumour class, or a BraTS region made of several labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Region {
    /// label 4
    Enhancing,
    /// label 2
    Edema,
    /// label 1
    NecroticCore,
    /// whole tumour: labels 1, 2, 4
    WholeTumor,
    /// tumour core: labels 1, 4
    TumorCore,
}

impl Region {
    /// The three classes whose mean the paper reports.
    pub const CLASSES: [Region; 3] = [Region::Enhancing, Region::Edema, Region::NecroticCore];
    /// The BraTS challenge regions (enhancing tumour is `Enhancing`).
    pub const REGIONS: [Region; 3] = [Region::WholeTumor, Region::TumorCore, Region::Enhancing];
    pub const ALL: [Region; 5] = [
        Region::Enhancing,
        Region::Edema,
        Region::NecroticCore,
        Region::WholeTumor,
        Region::TumorCore,
    ];

    pub fn contains(self, label: u8) -> bool {
        match self {
            Region::Enhancing => label == 4,
            Region::Edema => label == 2,
            Region::NecroticCore => label == 1,
            Region::WholeTumor => matches!(label, 1 | 2 | 4),
            Region::TumorCore => matches!(label, 1 | 4),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Region::Enhancing => "enhancing",
            Region::Edema => "edema",
            Region::NecroticCore => "necrotic_core",
            Region::WholeTumor => "whole_tumor",
            Region::TumorCore => "tumor_core",
        }
    }
}

/// Overlap counts for one region, accumulated over any number of voxels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overlap {
    pub intersection: u64,
    pub predicted: u64,
    pub truth: u64,
}

impl Overlap {
    /// 2|P∩T| / (|P| + |T|); 1 when both are empty.
    pub fn dice(&self) -> f64 {
        let denom = self.predicted + self.truth;
        if denom == 0 {
            1.0
        } else {
            2.0 * self.intersection as f64 / denom as f64
        }
    }
}

/// Overlap of every region, accumulated slice by slice.
#[derive(Clone, Debug, Default)]
pub struct RegionCounts {
    counts: BTreeMap<Region, Overlap>,
}

impl RegionCounts {
    /// Add the voxels of one predicted / true label map pair (same length, BraTS labels).
    pub fn add(&mut self, pred: &[u8], truth: &[u8]) -> Result<()> {
        if pred.len() != truth.len() {
            return Err(Error::Data(format!(
                "prediction has {} voxels but the annotation has {}",
                pred.len(),
                truth.len()
            )));
        }
        for r in Region::ALL {
            let o = self.counts.entry(r).or_default();
            for (&p, &t) in pred.iter().zip(truth) {
                let (pi, ti) = (r.contains(p), r.contains(t));
                o.predicted += pi as u64;
                o.truth += ti as u64;
                o.intersection += (pi && ti) as u64;
            }
        }
        Ok(())
    }

    pub fn dice(&self, r: Region) -> f64 {
        self.counts.get(&r).copied().unwrap_or_default().dice()
    }

    /// Mean Dice of the three tumour classes (the paper's summary number).
    pub fn mean_class_dice(&self) -> f64 {
        Region::CLASSES.iter().map(|&r| self.dice(r)).sum::<f64>() / 3.0
    }
}

/// 3-D Dice per subject: each subject's slices are accumulated together.
#[derive(Clone, Debug, Default)]
pub struct SubjectDice {
    subjects: BTreeMap<String, RegionCounts>,
}

impl SubjectDice {
    pub fn add_slice(&mut self, subject: &str, pred: &[u8], truth: &[u8]) -> Result<()> {
        self.subjects
            .entry(subject.to_string())
            .or_default()
            .add(pred, truth)
    }

    pub fn subjects(&self) -> impl Iterator<Item = (&String, &RegionCounts)> {
        self.subjects.iter()
    }

    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// Mean and standard deviation over subjects of one region's Dice.
    pub fn summary(&self, r: Region) -> MeanStd {
        MeanStd::of(
            &self
                .subjects
                .values()
                .map(|c| c.dice(r))
                .collect::<Vec<_>>(),
        )
    }

    /// Mean and standard deviation over subjects of the mean class Dice.
    pub fn summary_mean(&self) -> MeanStd {
        MeanStd::of(
            &self
                .subjects
                .values()
                .map(|c| c.mean_class_dice())
                .collect::<Vec<_>>(),
        )
    }
}

/// Mean ± sample standard deviation (n − 1; 0 for a single value).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl MeanStd {
    pub fn of(v: &[f64]) -> Self {
        let n = v.len();
        if n == 0 {
            return MeanStd {
                mean: f64::NAN,
                std: f64::NAN,
                n,
            };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        MeanStd { mean, std, n }
    }
}

impl std::fmt::Display for MeanStd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} ± {:.3}", self.mean, self.std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_of_known_overlaps() {
        let mut c = RegionCounts::default();
        // truth: 2 enhancing, 2 edema; prediction: 1 enhancing right, 1 enhancing where edema is
        c.add(&[4, 4, 0, 2, 0], &[4, 0, 4, 2, 2]).unwrap();
        assert!((c.dice(Region::Enhancing) - 2.0 * 1.0 / (2.0 + 2.0)).abs() < 1e-12);
        assert!((c.dice(Region::Edema) - 2.0 * 1.0 / (1.0 + 2.0)).abs() < 1e-12);
        // no core in either: defined as 1
        assert_eq!(c.dice(Region::NecroticCore), 1.0);
        // whole tumour: predicted {0,1,3}, truth {0,2,3,4}: intersection {0,3}
        assert!((c.dice(Region::WholeTumor) - 4.0 / 7.0).abs() < 1e-12);
        assert!(c.add(&[0], &[0, 0]).is_err());
    }

    #[test]
    fn subject_dice_is_3d_not_mean_of_slices() {
        let mut s = SubjectDice::default();
        // slice 1: perfect single voxel; slice 2: three missed voxels
        s.add_slice("a", &[4], &[4]).unwrap();
        s.add_slice("a", &[0, 0, 0], &[4, 4, 4]).unwrap();
        let (_, c) = s.subjects().next().unwrap();
        // 3D: 2·1 / (1 + 4) = 0.4 (a per-slice mean would be 0.5)
        assert!((c.dice(Region::Enhancing) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn mean_std() {
        let m = MeanStd::of(&[1.0, 2.0, 3.0]);
        assert_eq!((m.mean, m.std, m.n), (2.0, 1.0, 3));
        assert_eq!(MeanStd::of(&[5.0]).std, 0.0);
    }
}
