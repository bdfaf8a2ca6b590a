//! The study's real slices and their subject split (test subjects held out of everything;
//! validation subjects held out of the segmenters' training; generators see the training and
//! validation subjects, as `train-gen --split train`).

use crate::data::Slice;
use crate::data::phantom::{PhantomConfig, write_phantom_cases};
use crate::data::split::{SplitSpec, split_subjects, test_split};
use crate::data::store::{SliceStore, read_store, write_store};
use crate::data::{SliceConfig, list_case_dirs, read_case, slices_from_case};
use crate::{Error, Result};

use super::config::{StudyData, StudyOptions};

/// The real slices by role.
pub struct RealData {
    pub h: usize,
    pub w: usize,
    pub train_subjects: Vec<String>,
    pub val_subjects: Vec<String>,
    pub test_subjects: Vec<String>,
    /// The segmenters' training slices.
    pub seg_train: Vec<Slice>,
    /// The segmenters' validation slices.
    pub seg_val: Vec<Slice>,
    /// Every slice of a non-test subject: what the generators train on (and the audit compares
    /// against).
    pub gen_train: Vec<Slice>,
    pub test: Vec<Slice>,
}

impl RealData {
    /// The first `n` of the generators' training subjects (training, then validation subjects)
    /// and their slices: the small training sets of the memorisation experiment.
    pub fn gen_subset(&self, n: usize) -> Result<(Vec<String>, Vec<Slice>)> {
        let all: Vec<&String> = self
            .train_subjects
            .iter()
            .chain(&self.val_subjects)
            .collect();
        if n == 0 || n > all.len() {
            return Err(Error::invalid(
                "study",
                format!(
                    "the memorisation experiment asks for {n} training subjects, but the \
                     generators train on {} (--memorization-sizes 1..={})",
                    all.len(),
                    all.len()
                ),
            ));
        }
        let keep: Vec<String> = all[..n].iter().map(|s| s.to_string()).collect();
        let slices = self
            .gen_train
            .iter()
            .filter(|s| keep.contains(&s.subject))
            .cloned()
            .collect();
        Ok((keep, slices))
    }
}

/// Read or make the slices of the study.
fn load_slices(opts: &StudyOptions, log: &mut dyn FnMut(&str)) -> Result<SliceStore> {
    let size = opts.profile.seg.slice_size;
    let cases_dir = match &opts.data {
        StudyData::Store(p) => {
            let s = read_store(p)?;
            if s.h != size || s.w != size {
                return Err(Error::Data(format!(
                    "{} holds {}×{} slices but the {} profile needs {size}×{size}; prepare it \
                     with --size {size}",
                    p.display(),
                    s.h,
                    s.w,
                    opts.profile.name()
                )));
            }
            return Ok(s);
        }
        StudyData::Cases(d) => d.clone(),
        StudyData::Phantom { subjects, seed } => {
            let dir = opts.out.join("phantom");
            let cfg = PhantomConfig {
                subjects: *subjects,
                seed: *seed,
                ..PhantomConfig::default()
            };
            log(&format!(
                "writing {subjects} phantom subjects to {}",
                dir.display()
            ));
            write_phantom_cases(&dir, &cfg)?;
            dir
        }
    };
    let dirs = list_case_dirs(&cases_dir)?;
    let mut cfg = SliceConfig {
        out_size: Some(size),
        ..SliceConfig::default()
    };
    let mut store = SliceStore::new(size, size);
    for (i, d) in dirs.iter().enumerate() {
        let case = read_case(d)?;
        if cfg.pad_to.is_none() {
            cfg.pad_to = Some(cfg.padded_side(case.dims[0], case.dims[1]).max(size));
        }
        let sl = slices_from_case(&case, &cfg)?;
        log(&format!(
            "[{}/{}] {}: {} slices",
            i + 1,
            dirs.len(),
            case.id,
            sl.len()
        ));
        store.slices.extend(sl);
    }
    write_store(opts.out.join("slices.store"), &store)?;
    Ok(store)
}

fn slices_of(store: &SliceStore, subjects: &[String]) -> Vec<Slice> {
    store
        .slices
        .iter()
        .filter(|s| subjects.contains(&s.subject))
        .cloned()
        .collect()
}

/// The study's real slices, split by subject. A slice store already in `OUT/slices.store` (from
/// an earlier run of the same configuration) is read instead of slicing the cases again.
pub fn real_data(opts: &StudyOptions, log: &mut dyn FnMut(&str)) -> Result<RealData> {
    let p = &opts.profile.seg;
    let cached = opts.out.join("slices.store");
    let store = if !matches!(opts.data, StudyData::Store(_)) && cached.is_file() {
        log(&format!("reading the slices of {}", cached.display()));
        read_store(&cached)?
    } else {
        load_slices(opts, log)?
    };
    let subjects = store.subjects();
    if subjects.len() < p.test_subjects + p.val_subjects + 1 {
        return Err(Error::Data(format!(
            "{} subjects are too few for {} test + {} validation subjects and at least one for \
             training",
            subjects.len(),
            p.test_subjects,
            p.val_subjects
        )));
    }
    let (split, how) = test_split(
        &subjects,
        opts.split.as_deref(),
        opts.profile.name() == "paper",
        p.test_subjects,
        opts.split_seed,
    )?;
    log(&format!("test subjects: {how}"));
    let tv = split_subjects(
        &split.train,
        &SplitSpec::Counts {
            train: None,
            test: p.val_subjects,
        },
        opts.split_seed + 1,
    )?;
    let test = slices_of(&store, &split.test);
    if !test.iter().any(|s| s.tumour_pixels() > 0) {
        return Err(Error::Data(
            "the test subjects have no slice with tumour; Dice would say nothing".into(),
        ));
    }
    let rd = RealData {
        h: store.h,
        w: store.w,
        seg_train: slices_of(&store, &tv.train),
        seg_val: slices_of(&store, &tv.test),
        gen_train: slices_of(&store, &split.train),
        test,
        train_subjects: tv.train,
        val_subjects: tv.test,
        test_subjects: split.test,
    };
    log(&format!(
        "subjects: {} train ({} slices), {} validation ({} slices), {} test ({} slices)",
        rd.train_subjects.len(),
        rd.seg_train.len(),
        rd.val_subjects.len(),
        rd.seg_val.len(),
        rd.test_subjects.len(),
        rd.test.len()
    ));
    Ok(rd)
}
