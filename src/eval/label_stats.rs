//! Per-class label statistics of a slice set (a measure beyond the paper): how much of the image
//! each tumour class covers and how large the lesions are, so a synthetic set's annotations can
//! be compared with the real ones. Labels are BraTS values (0, 1, 2, 4) as `Slice::labels` gives.

use crate::data::Slice;
use crate::data::annotation::{CORE, EDEMA, ENHANCING};

/// Label statistics of a set of slices.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelStats {
    pub slices: usize,
    /// Share of slices with any tumour label.
    pub tumour_slice_fraction: f64,
    /// Share of all pixels labelled necrotic core, edema, enhancing.
    pub core_fraction: f64,
    pub edema_fraction: f64,
    pub enhancing_fraction: f64,
    /// Mean tumour pixels of a slice that has tumour (NaN when none has).
    pub mean_lesion_pixels: f64,
}

/// The statistics of `slices` (NaN fractions for an empty set).
pub fn label_stats(slices: &[Slice]) -> LabelStats {
    let (mut core, mut edema, mut enh, mut pixels) = (0usize, 0usize, 0usize, 0usize);
    let (mut with_tumour, mut lesion) = (0usize, 0usize);
    for s in slices {
        let labels = s.labels();
        pixels += labels.len();
        let mut t = 0;
        for &l in &labels {
            match l {
                CORE => core += 1,
                EDEMA => edema += 1,
                ENHANCING => enh += 1,
                _ => continue,
            }
            t += 1;
        }
        if t > 0 {
            with_tumour += 1;
            lesion += t;
        }
    }
    let frac = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    LabelStats {
        slices: slices.len(),
        tumour_slice_fraction: frac(with_tumour, slices.len()),
        core_fraction: frac(core, pixels),
        edema_fraction: frac(edema, pixels),
        enhancing_fraction: frac(enh, pixels),
        mean_lesion_pixels: frac(lesion, with_tumour),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::annotation::encode_label;
    use crate::data::slices::ANNOTATION;

    #[test]
    fn counts_classes_and_lesions() {
        let mut a = Slice::zeros("a", 0, 2, 2);
        let hw = 4;
        for (i, l) in [CORE, EDEMA, EDEMA, 0].into_iter().enumerate() {
            a.data[ANNOTATION * hw + i] = encode_label(l);
        }
        let b = Slice::zeros("b", 0, 2, 2);
        let s = label_stats(&[a, b]);
        assert_eq!(s.slices, 2);
        assert_eq!(s.tumour_slice_fraction, 0.5);
        assert_eq!(s.core_fraction, 1.0 / 8.0);
        assert_eq!(s.edema_fraction, 2.0 / 8.0);
        assert_eq!(s.enhancing_fraction, 0.0);
        assert_eq!(s.mean_lesion_pixels, 3.0);
        assert!(label_stats(&[]).core_fraction.is_nan());
    }
}
