//! Train/test split by subject, never by slice (slices of one patient are strongly correlated).
//!
//! Reproducible everywhere: the subject ids are de-duplicated and sorted, shuffled with
//! [`SplitMix64`] from the seed (Fisher–Yates), the first `test` ids become the test set and the
//! next `train` ids (default: all the rest) the training set; both lists are returned sorted.
//! The study used 313 train / 56 test subjects for BraTS 2020 and 1195 / 56 for BraTS 2021.

use std::path::Path;

use crate::data::rng::SplitMix64;
use crate::io::atomic::write_atomic;
use crate::{Error, Result};

/// How many subjects go where.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitSpec {
    /// `test` subjects for testing, `train` for training (`None` = all the others).
    Counts { train: Option<usize>, test: usize },
    /// This fraction of the subjects (rounded; at least one when positive, and never all) for
    /// testing, the rest for training.
    TestFraction(f64),
}

impl SplitSpec {
    /// The BraTS 2020 split of the study: 313 train, 56 test.
    pub const BRATS2020: SplitSpec = SplitSpec::Counts {
        train: Some(313),
        test: 56,
    };
    /// The BraTS 2021 split of the study: 1195 train, 56 test.
    pub const BRATS2021: SplitSpec = SplitSpec::Counts {
        train: Some(1195),
        test: 56,
    };
}

/// Subjects for training and for testing (each sorted, disjoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<String>,
    pub test: Vec<String>,
}

/// Split `subjects` (duplicates ignored, order irrelevant) according to `spec` with `seed`.
pub fn split_subjects<S: AsRef<str>>(subjects: &[S], spec: &SplitSpec, seed: u64) -> Result<Split> {
    let mut ids: Vec<String> = subjects.iter().map(|s| s.as_ref().to_string()).collect();
    ids.sort();
    ids.dedup();
    let n = ids.len();
    let (n_train, n_test) = match *spec {
        SplitSpec::Counts { train, test } => {
            let train = train.unwrap_or(n.saturating_sub(test));
            (train, test)
        }
        SplitSpec::TestFraction(f) => {
            if !(0.0..1.0).contains(&f) {
                return Err(Error::invalid(
                    "split",
                    format!("test fraction {f} must be in [0, 1)"),
                ));
            }
            let mut t = (f * n as f64).round() as usize;
            if f > 0.0 && t == 0 && n >= 2 {
                t = 1;
            }
            // A fraction never takes every subject: at least one remains for training.
            t = t.min(n.saturating_sub(1));
            (n - t, t)
        }
    };
    if n_train + n_test > n {
        return Err(Error::Data(format!(
            "cannot split {n} subjects into {n_train} train and {n_test} test"
        )));
    }
    if n_train == 0 {
        return Err(Error::Data(format!(
            "split of {n} subjects leaves no training subject"
        )));
    }
    let mut rng = SplitMix64::new(seed);
    rng.shuffle(&mut ids);
    let mut test: Vec<String> = ids[..n_test].to_vec();
    let mut train: Vec<String> = ids[n_test..n_test + n_train].to_vec();
    test.sort();
    train.sort();
    Ok(Split { train, test })
}

impl Split {
    /// Text form: one `train <id>` or `test <id>` line per subject.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for id in &self.train {
            s.push_str("train ");
            s.push_str(id);
            s.push('\n');
        }
        for id in &self.test {
            s.push_str("test ");
            s.push_str(id);
            s.push('\n');
        }
        s
    }

    /// Parse the text form (blank lines and `#` comments allowed); `path` names the source.
    pub fn from_text(text: &str, path: &Path) -> Result<Split> {
        let mut split = Split {
            train: Vec::new(),
            test: Vec::new(),
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(char::is_whitespace) {
                Some(("train", id)) => split.train.push(id.trim().to_string()),
                Some(("test", id)) => split.test.push(id.trim().to_string()),
                _ => {
                    return Err(Error::format(
                        path,
                        format!("line {}: expected `train <id>` or `test <id>`", i + 1),
                    ));
                }
            }
        }
        Ok(split)
    }

    /// Write the text form atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path, self.to_text().as_bytes())
    }

    /// Read a split written by [`Split::write`].
    pub fn read(path: impl AsRef<Path>) -> Result<Split> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Split::from_text(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_counts() {
        let ids: Vec<String> = (1..=369)
            .map(|i| format!("BraTS20_Training_{i:03}"))
            .collect();
        let s = split_subjects(&ids, &SplitSpec::BRATS2020, 0).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (313, 56));
    }

    #[test]
    fn text_round_trip() {
        let s = split_subjects(&["a", "b", "c", "d"], &SplitSpec::TestFraction(0.25), 1).unwrap();
        assert_eq!(Split::from_text(&s.to_text(), Path::new("x")).unwrap(), s);
    }
}
