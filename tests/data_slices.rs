//! Slicing rules and annotation codes, with property tests.

use brainsynth::data::annotation::{LABELS, decode_value, encode_label};
use brainsynth::data::nifti_case::{Case, Naming};
use brainsynth::data::slices::{
    SliceConfig, downscale_area, downscale_labels, pad_or_crop, passes_coverage, scale_to_u8,
    slices_from_case,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn encode_decode_round_trip(k in 0usize..4) {
        let l = LABELS[k];
        prop_assert_eq!(decode_value(encode_label(l) as f32), l);
    }

    /// Generated values within ±25 of a code decode to that code (the decision boundaries are
    /// 25.5, 76.5 and 153 grey levels).
    #[test]
    fn decode_tolerates_noise(k in 0usize..4, noise in -25.0f32..25.0) {
        let l = LABELS[k];
        let v = encode_label(l) as f32 + if l == 0 { noise.abs() } else { noise };
        prop_assert_eq!(decode_value(v), l);
    }

    #[test]
    fn decode_is_monotone(a in -50.0f32..300.0, b in -50.0f32..300.0) {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let rank = |l: u8| LABELS.iter().position(|&x| x == l).unwrap();
        prop_assert!(rank(decode_value(lo)) <= rank(decode_value(hi)));
    }

    #[test]
    fn pad_then_crop_is_identity(h in 1usize..20, w in 1usize..20, ph in 0usize..9, pw in 0usize..9, seed in any::<u64>()) {
        let src: Vec<u8> = (0..h * w).map(|i| (seed.wrapping_mul(i as u64 + 1) >> 7) as u8).collect();
        let padded = pad_or_crop(&src, h, w, h + ph, w + pw);
        prop_assert_eq!(padded.iter().map(|&v| v as u64).sum::<u64>(), src.iter().map(|&v| v as u64).sum::<u64>());
        prop_assert_eq!(pad_or_crop(&padded, h + ph, w + pw, h, w), src);
    }

    #[test]
    fn coverage_rule_counts_strictly(n_above in 0usize..=100) {
        // 100 pixels; the rule needs strictly more than 15 above the threshold.
        let t1: Vec<u8> = (0..100).map(|i| if i < n_above { 51 } else { 50 }).collect();
        prop_assert_eq!(passes_coverage(&t1, 50, 0.15), n_above > 15);
    }

    #[test]
    fn area_downscale_keeps_mean_and_range(h in 4usize..24, w in 4usize..24, oh in 1usize..4, ow in 1usize..4, v in any::<u8>()) {
        let flat = vec![v; h * w];
        prop_assert!(downscale_area(&flat, h, w, oh, ow).iter().all(|&x| x == v));
        let ramp: Vec<u8> = (0..h * w).map(|i| (i % 251) as u8).collect();
        let out = downscale_area(&ramp, h, w, oh, ow);
        let (mn, mx) = (*ramp.iter().min().unwrap(), *ramp.iter().max().unwrap());
        prop_assert!(out.iter().all(|&x| x >= mn && x <= mx));
    }

    #[test]
    fn label_downscale_only_uses_present_labels(h in 2usize..16, w in 2usize..16, seed in any::<u64>()) {
        let src: Vec<u8> = (0..h * w).map(|i| LABELS[((seed >> (i % 60)) & 3) as usize]).collect();
        let out = downscale_labels(&src, h, w, h / 2, w / 2);
        prop_assert!(out.iter().all(|l| src.contains(l)));
    }
}

#[test]
fn max_scaling_is_per_volume() {
    assert_eq!(scale_to_u8(&[0.0, 1000.0, 500.0]), vec![0, 255, 128]);
    assert_eq!(scale_to_u8(&[0.0, 2.0, 1.0]), vec![0, 255, 128]);
}

fn synthetic_case(nx: usize, ny: usize, nz: usize) -> Case {
    let n = nx * ny * nz;
    let mut t1 = vec![0f32; n];
    let mut labels = vec![0u8; n];
    for z in 0..nz {
        // Slice z has a brain square whose side grows with z.
        let side = (z * nx) / nz;
        for y in 0..side.min(ny) {
            for x in 0..side {
                let i = x + nx * (y + ny * z);
                t1[i] = 200.0;
                if x < 2 && y < 2 {
                    labels[i] = 4;
                }
            }
        }
    }
    t1[0] = 1000.0; // the maximum: 200 → 51 on the 0–255 scale (> 50)
    Case {
        id: "syn".into(),
        dims: [nx, ny, nz],
        sequences: [t1.clone(), t1.clone(), t1.clone(), t1],
        labels,
        naming: Naming::Brats2020,
        files: Default::default(),
    }
}

#[test]
fn slices_follow_the_coverage_rule_on_the_padded_slice() {
    let case = synthetic_case(30, 30, 10);
    // Auto padding: 30 → 32. Slice z has side 3z, kept if (3z)² > 0.15·32² = 153.6, i.e. z ≥ 5.
    let cfg = SliceConfig::default();
    let slices = slices_from_case(&case, &cfg).unwrap();
    let kept: Vec<u32> = slices.iter().map(|s| s.index).collect();
    assert_eq!(kept, vec![5, 6, 7, 8, 9]);
    let s = &slices[0];
    assert_eq!((s.h, s.w, s.subject.as_str()), (32, 32, "syn"));
    // Offset (32 - 30) / 2 = 1: voxel (0, 0) lands at row 1, column 1, and carries label 4.
    assert_eq!(s.channel(4)[32 + 1], 204);
    assert_eq!(s.channel(4)[0], 0);
    // Padding to 80 makes every slice fail (≤ 27² < 0.15 · 80²).
    let cfg = SliceConfig {
        pad_to: Some(80),
        ..Default::default()
    };
    assert!(slices_from_case(&case, &cfg).unwrap().is_empty());
    // Downscaled slices keep the same selection.
    let cfg = SliceConfig {
        out_size: Some(16),
        ..Default::default()
    };
    let small = slices_from_case(&case, &cfg).unwrap();
    assert_eq!(small.iter().map(|s| s.index).collect::<Vec<_>>(), kept);
    assert!(small.iter().all(|s| s.h == 16 && s.data.len() == 5 * 256));
    // Invalid configurations are errors, not panics.
    let bad = SliceConfig {
        out_size: Some(100),
        ..Default::default()
    };
    assert!(slices_from_case(&case, &bad).is_err());
}
