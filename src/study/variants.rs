//! The ways a segmenter is trained on a synthetic set (the paper's four variants) and how their
//! training and validation sets are built.
//!
//! As the authors' code: a synthetic set is split 80/20 by image into training and validation;
//! "real + synthetic" adds the real training slices, repeated so that real and synthetic images
//! weigh about the same in the batches; each variant runs with and without augmentation.

use crate::data::Slice;
use crate::{Error, Result};

/// One way of training on a synthetic set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Real training slices are added to the synthetic ones.
    pub with_real: bool,
    /// The profile's augmentation is applied (as the real baseline).
    pub augment: bool,
}

impl Variant {
    pub const SYNTHETIC: Variant = Variant {
        with_real: false,
        augment: true,
    };
    pub const ALL: [Variant; 4] = [
        Variant::SYNTHETIC,
        Variant {
            with_real: false,
            augment: false,
        },
        Variant {
            with_real: true,
            augment: true,
        },
        Variant {
            with_real: true,
            augment: false,
        },
    ];

    /// Name in `--variants`, folder names and tables.
    pub fn name(self) -> &'static str {
        match (self.with_real, self.augment) {
            (false, true) => "synthetic",
            (false, false) => "synthetic-noaug",
            (true, true) => "mixed",
            (true, false) => "mixed-noaug",
        }
    }

    /// Column heading.
    pub fn label(self) -> &'static str {
        match (self.with_real, self.augment) {
            (false, true) => "synthetic",
            (false, false) => "synthetic, no aug.",
            (true, true) => "real + synthetic",
            (true, false) => "real + synthetic, no aug.",
        }
    }

    pub fn parse(s: &str) -> Result<Variant> {
        if s == "all" {
            return Err(Error::invalid("study", "'all' is a list, not one variant"));
        }
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "study",
                    format!(
                        "'{s}' is not a variant; use synthetic, synthetic-noaug, mixed, \
                         mixed-noaug or all"
                    ),
                )
            })
    }

    /// A comma-separated list (`all`: the four).
    pub fn parse_list(s: &str) -> Result<Vec<Variant>> {
        if s.trim() == "all" {
            return Ok(Variant::ALL.to_vec());
        }
        let mut v = Vec::new();
        for part in s.split(',') {
            let x = Variant::parse(part.trim())?;
            if !v.contains(&x) {
                v.push(x);
            }
        }
        Ok(v)
    }
}

/// Split a synthetic set 80/20 by image: the first 80 % train, the rest validate. The images are
/// independent draws, so a contiguous split is a random one (and stays the same when the set is
/// read back).
pub fn split_synthetic(slices: &[Slice]) -> Result<(&[Slice], &[Slice])> {
    if slices.len() < 5 {
        return Err(Error::Data(format!(
            "a synthetic set of {} images cannot be split 80/20 into training and validation; \
             at least 5 are needed",
            slices.len()
        )));
    }
    let k = (slices.len() * 4).div_ceil(5).min(slices.len() - 1);
    Ok(slices.split_at(k))
}

/// How many times the real slices are repeated so that they weigh about as much as the
/// synthetic ones (at least once).
pub fn real_repeats(n_real: usize, n_synthetic: usize) -> usize {
    if n_real == 0 {
        return 0;
    }
    ((n_synthetic as f64 / n_real as f64).round() as usize).max(1)
}

/// The training and validation sets of `variant`.
pub fn variant_sets(
    variant: Variant,
    synthetic: &[Slice],
    real_train: &[Slice],
    real_val: &[Slice],
) -> Result<(Vec<Slice>, Vec<Slice>)> {
    let (st, sv) = split_synthetic(synthetic)?;
    let mut train = st.to_vec();
    let mut val = sv.to_vec();
    if variant.with_real {
        for _ in 0..real_repeats(real_train.len(), st.len()) {
            train.extend_from_slice(real_train);
        }
        val.extend_from_slice(real_val);
    }
    Ok((train, val))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_all_expands() {
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.name()).unwrap(), v);
        }
        assert_eq!(Variant::parse_list("all").unwrap().len(), 4);
        assert_eq!(
            Variant::parse_list("synthetic, mixed,synthetic").unwrap(),
            vec![Variant::SYNTHETIC, Variant::ALL[2]]
        );
        assert!(Variant::parse("both").is_err());
    }

    #[test]
    fn split_is_80_20_and_real_balances() {
        let s: Vec<Slice> = (0..10).map(|i| Slice::zeros("s", i, 2, 2)).collect();
        let (a, b) = split_synthetic(&s).unwrap();
        assert_eq!((a.len(), b.len()), (8, 2));
        assert!(split_synthetic(&s[..4]).is_err());
        assert_eq!(real_repeats(100, 320), 3);
        assert_eq!(real_repeats(700, 320), 1);
        let r: Vec<Slice> = (0..3).map(|i| Slice::zeros("r", i, 2, 2)).collect();
        let (t, v) = variant_sets(Variant::ALL[2], &s, &r, &r[..1]).unwrap();
        assert_eq!((t.len(), v.len()), (8 + 3 * 3, 3));
        let (t, v) = variant_sets(Variant::SYNTHETIC, &s, &r, &r[..1]).unwrap();
        assert_eq!((t.len(), v.len()), (8, 2));
    }
}
