//! Train/test split by subject, never by slice (slices of one patient are strongly correlated).
//!
//! Reproducible everywhere: the subject ids are de-duplicated and sorted, shuffled with
//! [`SplitMix64`] from the seed (Fisher–Yates), the first `test` ids become the test set and the
//! next `train` ids (default: all the rest) the training set; both lists are returned sorted.
//! The study used 313 train / 56 test subjects for BraTS 2020 and 1195 / 56 for BraTS 2021; its
//! exact subject lists (from the authors' saved permutations) ship with the program
//! (`src/data/splits/`) and are used by [`paper_split`] (`--split paper`).

use std::path::Path;

use crate::io::atomic::write_atomic;
use crate::rng::SplitMix64;
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

/// The study's BraTS 2020 subject split (`[train]` then `[test]` sections, one id per line).
pub const PAPER_SPLIT_BRATS2020: &str = include_str!("splits/paper_split_brats2020.txt");
/// The study's BraTS 2021 subject split.
pub const PAPER_SPLIT_BRATS2021: &str = include_str!("splits/paper_split_brats2021.txt");

/// The study's own split for the case ids `subjects`, which must be exactly the BraTS 2020 (ids
/// `BraTS20_…`) or BraTS 2021 (`BraTS2021_…`) training subjects the study used. Errors name the
/// missing and the unexpected subjects.
pub fn paper_split<S: AsRef<str>>(subjects: &[S]) -> Result<Split> {
    let ids: std::collections::BTreeSet<&str> = subjects.iter().map(|s| s.as_ref()).collect();
    let (text, name) = if ids.iter().any(|i| i.starts_with("BraTS20_")) {
        (PAPER_SPLIT_BRATS2020, "BraTS 2020")
    } else if ids.iter().any(|i| i.starts_with("BraTS2021_")) {
        (PAPER_SPLIT_BRATS2021, "BraTS 2021")
    } else {
        let first = ids.iter().next().copied().unwrap_or("(none)");
        return Err(Error::Data(format!(
            "--split paper needs the BraTS 2020 or 2021 training cases (ids like \
             BraTS20_Training_001 or BraTS2021_00000); found ids like {first:?}"
        )));
    };
    let split = Split::from_text(text, Path::new(name))?;
    let wanted: std::collections::BTreeSet<&str> = split
        .train
        .iter()
        .chain(&split.test)
        .map(|s| s.as_str())
        .collect();
    let missing: Vec<&str> = wanted.difference(&ids).copied().collect();
    let extra: Vec<&str> = ids.difference(&wanted).copied().collect();
    if !missing.is_empty() || !extra.is_empty() {
        let list = |v: &[&str]| {
            let mut s = v.iter().take(8).copied().collect::<Vec<_>>().join(", ");
            if v.len() > 8 {
                s.push_str(&format!(", … ({} in all)", v.len()));
            }
            s
        };
        let mut msg = format!("the cases do not match the study's {name} split:");
        if !missing.is_empty() {
            msg.push_str(&format!(" missing subjects {}", list(&missing)));
        }
        if !extra.is_empty() {
            if !missing.is_empty() {
                msg.push(';');
            }
            msg.push_str(&format!(" subjects not in the study {}", list(&extra)));
        }
        return Err(Error::Data(msg));
    }
    Ok(split)
}

/// A split named on a command line: `paper` ([`paper_split`] of `subjects`) or a split file.
pub fn split_from_arg<S: AsRef<str>>(arg: &str, subjects: &[S]) -> Result<Split> {
    if arg == "paper" {
        paper_split(subjects)
    } else {
        Split::read(arg)
    }
}

/// Whether `subjects` are BraTS 2020 or 2021 training cases, the two datasets the study's own
/// split covers.
pub fn is_paper_dataset<S: AsRef<str>>(subjects: &[S]) -> bool {
    subjects.iter().any(|s| {
        let s = s.as_ref();
        s.starts_with("BraTS20_") || s.starts_with("BraTS2021_")
    })
}

/// The test split of the segmentation commands and the study: `arg` (`paper` or a split file)
/// when given; else the study's own split when `paper_default` is set and the cases are BraTS
/// 2020/2021; else `test` subjects drawn with `seed`. Also says in words which one it is.
pub fn test_split<S: AsRef<str>>(
    subjects: &[S],
    arg: Option<&str>,
    paper_default: bool,
    test: usize,
    seed: u64,
) -> Result<(Split, String)> {
    match arg {
        Some(a) => Ok((
            split_from_arg(a, subjects)?,
            if a == "paper" {
                "the study's split".into()
            } else {
                format!("the split in {a}")
            },
        )),
        None if paper_default && is_paper_dataset(subjects) => {
            Ok((paper_split(subjects)?, "the study's split".into()))
        }
        None => Ok((
            split_subjects(subjects, &SplitSpec::Counts { train: None, test }, seed)?,
            format!("{test} test subjects drawn with split seed {seed}"),
        )),
    }
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

    /// Parse the text form (blank lines and `#` comments allowed); `path` names the source. Also
    /// accepted: `[train]` and `[test]` section lines followed by one bare id per line (the form
    /// of the study's split files). Both lists come back sorted; an id in both is an error.
    pub fn from_text(text: &str, path: &Path) -> Result<Split> {
        let mut split = Split {
            train: Vec::new(),
            test: Vec::new(),
        };
        let mut section: Option<bool> = None; // Some(true) = train
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match (line, line.split_once(char::is_whitespace), section) {
                ("[train]", _, _) => section = Some(true),
                ("[test]", _, _) => section = Some(false),
                (_, Some(("train", id)), _) => split.train.push(id.trim().to_string()),
                (_, Some(("test", id)), _) => split.test.push(id.trim().to_string()),
                (id, None, Some(train)) => {
                    if train {
                        split.train.push(id.to_string())
                    } else {
                        split.test.push(id.to_string())
                    }
                }
                _ => {
                    return Err(Error::format(
                        path,
                        format!(
                            "line {}: expected `train <id>`, `test <id>`, or an id under a \
                             [train] or [test] line",
                            i + 1
                        ),
                    ));
                }
            }
        }
        split.train.sort();
        split.test.sort();
        if let Some(both) = split
            .test
            .iter()
            .find(|t| split.train.binary_search(t).is_ok())
        {
            return Err(Error::format(
                path,
                format!("subject {both} is listed for both training and testing"),
            ));
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
    fn paper_splits_have_the_study_counts_and_check_the_cases() {
        let p20 = Split::from_text(PAPER_SPLIT_BRATS2020, Path::new("2020")).unwrap();
        assert_eq!((p20.train.len(), p20.test.len()), (313, 56));
        let p21 = Split::from_text(PAPER_SPLIT_BRATS2021, Path::new("2021")).unwrap();
        assert_eq!((p21.train.len(), p21.test.len()), (1195, 56));
        let ids: Vec<String> = (1..=369)
            .map(|i| format!("BraTS20_Training_{i:03}"))
            .collect();
        assert_eq!(paper_split(&ids).unwrap(), p20);
        let e = paper_split(&ids[..368]).unwrap_err().to_string();
        assert!(e.contains("missing subjects BraTS20_Training_369"), "{e}");
        let mut more = ids.clone();
        more.push("BraTS20_Training_999".into());
        let e = paper_split(&more).unwrap_err().to_string();
        assert!(e.contains("not in the study BraTS20_Training_999"), "{e}");
        let e = paper_split(&["Phantom_001"]).unwrap_err().to_string();
        assert!(e.contains("BraTS 2020 or 2021"), "{e}");
    }

    #[test]
    fn text_round_trip() {
        let s = split_subjects(&["a", "b", "c", "d"], &SplitSpec::TestFraction(0.25), 1).unwrap();
        assert_eq!(Split::from_text(&s.to_text(), Path::new("x")).unwrap(), s);
    }

    /// The paper profile on BraTS 2020 cases takes the study's split unless told otherwise; the
    /// phantom (or the quick profile) takes the seeded one; `paper` on the phantom is an error.
    #[test]
    fn test_split_defaults_to_the_studys_split_on_brats_under_the_paper_profile() {
        let brats: Vec<String> = (1..=369)
            .map(|i| format!("BraTS20_Training_{i:03}"))
            .collect();
        let (s, how) = test_split(&brats, None, true, 6, 0).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (313, 56));
        assert!(how.contains("study"), "{how}");
        let (s, how) = test_split(&brats, None, false, 6, 0).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (363, 6));
        assert!(how.contains("seed 0"), "{how}");
        let phantom: Vec<String> = (1..=24).map(|i| format!("Phantom_{i:03}")).collect();
        let (s, _) = test_split(&phantom, None, true, 6, 3).unwrap();
        assert_eq!(s.test.len(), 6);
        let e = test_split(&phantom, Some("paper"), false, 6, 0).unwrap_err();
        assert!(e.to_string().contains("BraTS 2020 or 2021"), "{e}");
    }
}
