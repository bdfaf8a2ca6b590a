//! The annotation channel: BraTS labels stored as grey values, exactly as the study did.
//!
//! Labels: 0 background, 1 necrotic / non-enhancing tumour core, 2 peritumoral edema,
//! 4 GD-enhancing tumour (BraTS 2023+ files call enhancing 3; the case reader maps it to 4).
//! Encoding: `value = label / 5 · 255`, so 0, 51, 102 and 204. A generated channel is decoded
//! with thresholds half-way between the codes (in units of label: 0.5, 1.5 and 3.0).

/// Background.
pub const BACKGROUND: u8 = 0;
/// Necrotic and non-enhancing tumour core (NCR/NET).
pub const CORE: u8 = 1;
/// Peritumoral edema (ED).
pub const EDEMA: u8 = 2;
/// GD-enhancing tumour (ET).
pub const ENHANCING: u8 = 4;

/// All labels in the order of their class index (see [`label_to_class`]).
pub const LABELS: [u8; 4] = [BACKGROUND, CORE, EDEMA, ENHANCING];

/// Grey value for a label: `label / 5 · 255` (0 → 0, 1 → 51, 2 → 102, 4 → 204).
/// Other labels are not BraTS labels; they are encoded with the same formula, saturating at 255.
pub fn encode_label(label: u8) -> u8 {
    (label as u32 * 51).min(255) as u8
}

/// Label for a (possibly generated, hence noisy) channel value `v` in 0–255:
/// `r = v · 5 / 255`; `r > 3.0` → 4, `r > 1.5` → 2, `r > 0.5` → 1, otherwise 0.
pub fn decode_value(v: f32) -> u8 {
    let r = v * 5.0 / 255.0;
    if r > 3.0 {
        ENHANCING
    } else if r > 1.5 {
        EDEMA
    } else if r > 0.5 {
        CORE
    } else {
        BACKGROUND
    }
}

/// Class index 0..4 used by segmenters: 0 background, 1 core, 2 edema, 3 enhancing.
/// Unknown labels map to background.
pub fn label_to_class(label: u8) -> u8 {
    match label {
        CORE => 1,
        EDEMA => 2,
        ENHANCING => 3,
        _ => 0,
    }
}

/// Inverse of [`label_to_class`] (classes above 3 map to background).
pub fn class_to_label(class: u8) -> u8 {
    LABELS.get(class as usize).copied().unwrap_or(BACKGROUND)
}

/// Whether `label` is one of the four BraTS labels 0, 1, 2, 4.
pub fn is_brats_label(label: u8) -> bool {
    LABELS.contains(&label)
}

/// Priority used when several labels compete for one pixel (downscaling ties): enhancing, core,
/// edema, background.
pub(crate) fn priority(label: u8) -> u8 {
    match label {
        ENHANCING => 3,
        CORE => 2,
        EDEMA => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_papers() {
        assert_eq!(LABELS.map(encode_label), [0, 51, 102, 204]);
    }

    #[test]
    fn decode_inverts_encode() {
        for l in LABELS {
            assert_eq!(decode_value(encode_label(l) as f32), l);
        }
    }

    #[test]
    fn decode_thresholds() {
        // r = 0.5 exactly is background, just above is core, and so on.
        assert_eq!(decode_value(25.5), BACKGROUND);
        assert_eq!(decode_value(25.6), CORE);
        assert_eq!(decode_value(76.5), CORE);
        assert_eq!(decode_value(76.6), EDEMA);
        assert_eq!(decode_value(153.0), EDEMA);
        assert_eq!(decode_value(153.1), ENHANCING);
        assert_eq!(decode_value(255.0), ENHANCING);
        assert_eq!(decode_value(-10.0), BACKGROUND);
    }

    #[test]
    fn class_round_trip() {
        for l in LABELS {
            assert_eq!(class_to_label(label_to_class(l)), l);
        }
        assert_eq!(label_to_class(3), 0);
    }
}
