//! The segmentation study: data (the embedded phantom, BraTS case folders, or a slice store) →
//! subject split → each segmenter trained on real slices for each seed → per-subject 3-D Dice on
//! held-out test subjects → results as JSON, a Markdown table, and pictures.

use std::path::PathBuf;

use crate::data::annotation::encode_label;
use crate::data::phantom::{PhantomConfig, write_phantom_cases};
use crate::data::slices::ANNOTATION;
use crate::data::split::{SplitSpec, split_subjects};
use crate::data::store::{SliceStore, read_store, write_store};
use crate::data::{Slice, SliceConfig, list_case_dirs, read_case, slices_from_case};
use crate::eval::dice::{MeanStd, Region, SubjectDice};
use crate::io::json::Json;
use crate::io::png::{MontageOptions, Overlay, write_montage};
use crate::tensor::Device;
use crate::train::profile::SegProfile;
use crate::train::runner::StopReason;
use crate::train::seg::{
    SegKind, TrainOutcome, evaluate, load_segmenter, predict_labels, train_segmenter,
};
use crate::{Error, Result};

/// Where the study's slices come from.
#[derive(Clone, Debug)]
pub enum StudyData {
    /// Generate the embedded phantom (this many subjects, this seed).
    Phantom { subjects: usize, seed: u64 },
    /// BraTS case folders under this directory.
    Cases(PathBuf),
    /// A slice store written by `prepare`.
    Store(PathBuf),
}

/// How to run the study.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    pub profile: SegProfile,
    pub data: StudyData,
    pub out: PathBuf,
    pub models: Vec<SegKind>,
    pub seeds: Vec<u64>,
    /// Seed of the subject split (fixed across training seeds, as in the paper).
    pub split_seed: u64,
    /// Where the models train and are tested.
    pub device: Device,
}

/// One segmenter's test result for one seed.
#[derive(Clone, Debug)]
pub struct SeedResult {
    pub kind: SegKind,
    pub seed: u64,
    pub dice: SubjectDice,
    pub train: TrainOutcome,
}

/// Everything the study measured.
#[derive(Clone, Debug)]
pub struct StudyResults {
    pub runs: Vec<SeedResult>,
    pub train_subjects: Vec<String>,
    pub val_subjects: Vec<String>,
    pub test_subjects: Vec<String>,
    pub results_json: PathBuf,
    pub results_md: PathBuf,
}

/// Read or make the slices of the study.
fn load_slices(opts: &StudyOptions, log: &mut dyn FnMut(&str)) -> Result<SliceStore> {
    let size = opts.profile.slice_size;
    let cases_dir = match &opts.data {
        StudyData::Store(p) => {
            let s = read_store(p)?;
            if s.h != size || s.w != size {
                return Err(Error::Data(format!(
                    "{} holds {}×{} slices but the {} profile needs {size}×{size}; prepare it with --size {size}",
                    p.display(),
                    s.h,
                    s.w,
                    opts.profile.name
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

/// Run the study; progress goes to `log`.
pub fn run_study(opts: &StudyOptions, log: &mut dyn FnMut(&str)) -> Result<StudyResults> {
    if opts.models.is_empty() || opts.seeds.is_empty() {
        return Err(Error::invalid(
            "study",
            "at least one model and one seed are needed",
        ));
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let p = &opts.profile;
    let store = load_slices(opts, log)?;
    let subjects = store.subjects();
    if subjects.len() < p.test_subjects + p.val_subjects + 1 {
        return Err(Error::Data(format!(
            "{} subjects are too few for {} test + {} validation subjects and at least one for training",
            subjects.len(),
            p.test_subjects,
            p.val_subjects
        )));
    }
    let split = split_subjects(
        &subjects,
        &SplitSpec::Counts {
            train: None,
            test: p.test_subjects,
        },
        opts.split_seed,
    )?;
    let tv = split_subjects(
        &split.train,
        &SplitSpec::Counts {
            train: None,
            test: p.val_subjects,
        },
        opts.split_seed + 1,
    )?;
    let (train, val, test) = (
        slices_of(&store, &tv.train),
        slices_of(&store, &tv.test),
        slices_of(&store, &split.test),
    );
    if !test.iter().any(|s| s.tumour_pixels() > 0) {
        return Err(Error::Data(
            "the test subjects have no slice with tumour; Dice would say nothing".into(),
        ));
    }
    log(&format!(
        "subjects: {} train ({} slices), {} validation ({} slices), {} test ({} slices)",
        tv.train.len(),
        train.len(),
        tv.test.len(),
        val.len(),
        split.test.len(),
        test.len()
    ));
    let mut runs = Vec::new();
    for &seed in &opts.seeds {
        for &kind in &opts.models {
            let mut cfg = p.train_config(kind, seed);
            cfg.device = opts.device;
            let dir = opts.out.join(kind.name()).join(format!("seed{seed}"));
            log(&format!(
                "training {} (seed {seed}) on {} real slices",
                kind.name(),
                train.len()
            ));
            let outcome = train_segmenter(&cfg, &train, &val, &dir, log)?;
            if outcome.stopped == StopReason::Interrupted {
                return Err(Error::Interrupted(format!(
                    "{} (seed {seed}) stopped after iteration {}; run the same command again \
                     to resume",
                    kind.name(),
                    outcome.iterations_done
                )));
            }
            let model = load_segmenter(&cfg, &outcome.best_checkpoint)?;
            let dice = evaluate(&model, &test, p.batch * 2)?;
            log(&format!(
                "{} seed {seed}: test Dice mean {:.3} (enhancing {:.3}, edema {:.3}, core {:.3}) over {} subjects",
                kind.name(),
                dice.summary_mean().mean,
                dice.summary(Region::Enhancing).mean,
                dice.summary(Region::Edema).mean,
                dice.summary(Region::NecroticCore).mean,
                dice.len()
            ));
            runs.push(SeedResult {
                kind,
                seed,
                dice,
                train: outcome,
            });
        }
    }
    write_predictions(opts, &test, log)?;
    let results = StudyResults {
        runs,
        train_subjects: tv.train,
        val_subjects: tv.test,
        test_subjects: split.test,
        results_json: opts.out.join("results.json"),
        results_md: opts.out.join("results.md"),
    };
    write_results(opts, &results)?;
    Ok(results)
}

/// A few test slices with tumour: rows of truth, then each model's prediction (first seed).
fn write_predictions(opts: &StudyOptions, test: &[Slice], log: &mut dyn FnMut(&str)) -> Result<()> {
    let with_tumour: Vec<&Slice> = test.iter().filter(|s| s.tumour_pixels() > 0).collect();
    let n = with_tumour.len().min(4);
    let picked: Vec<Slice> = (0..n)
        .map(|k| with_tumour[k * with_tumour.len() / n.max(1)].clone())
        .collect();
    let mut rows: Vec<Slice> = Vec::new();
    let mut preds = Vec::new();
    for &kind in &opts.models {
        let mut cfg = opts.profile.train_config(kind, opts.seeds[0]);
        cfg.device = opts.device;
        let dir = opts
            .out
            .join(kind.name())
            .join(format!("seed{}", opts.seeds[0]));
        let model = load_segmenter(&cfg, &dir.join("best.safetensors"))?;
        preds.push(predict_labels(&model, &picked, opts.profile.batch)?);
    }
    for (i, s) in picked.iter().enumerate() {
        rows.push(s.clone());
        for p in &preds {
            let mut r = s.clone();
            let hw = r.h * r.w;
            for (v, &l) in r.data[ANNOTATION * hw..(ANNOTATION + 1) * hw]
                .iter_mut()
                .zip(&p[i])
            {
                *v = encode_label(l);
            }
            rows.push(r);
        }
    }
    let path = opts.out.join("predictions.png");
    write_montage(
        &path,
        &rows,
        &MontageOptions {
            overlay: Overlay::ExtraPanel,
            ..MontageOptions::default()
        },
    )?;
    let names: Vec<&str> = opts.models.iter().map(|k| k.name()).collect();
    log(&format!(
        "wrote {} (per slice: truth, then {})",
        path.display(),
        names.join(", ")
    ));
    Ok(())
}

fn mean_std_json(m: MeanStd) -> Json {
    Json::obj(vec![
        ("mean", Json::num(m.mean)),
        ("std", Json::num(m.std)),
        ("n", Json::num(m.n as f64)),
    ])
}

/// Per model: each seed's mean over test subjects, then mean ± std over seeds (with one seed, the
/// std is over subjects).
fn summarise(results: &StudyResults, kind: SegKind, r: Option<Region>) -> MeanStd {
    let runs: Vec<&SeedResult> = results.runs.iter().filter(|x| x.kind == kind).collect();
    let per = |x: &SeedResult| match r {
        Some(r) => x.dice.summary(r),
        None => x.dice.summary_mean(),
    };
    if runs.len() == 1 {
        return per(runs[0]);
    }
    MeanStd::of(&runs.iter().map(|x| per(x).mean).collect::<Vec<_>>())
}

fn write_results(opts: &StudyOptions, results: &StudyResults) -> Result<()> {
    let regions = [
        Region::Enhancing,
        Region::Edema,
        Region::NecroticCore,
        Region::WholeTumor,
        Region::TumorCore,
    ];
    let profile = Json::Object(
        opts.profile
            .describe()
            .into_iter()
            .map(|(k, v)| (k, Json::String(v)))
            .collect(),
    );
    let mut models = Vec::new();
    for &kind in &opts.models {
        let mut fields = vec![("model".to_string(), Json::str(kind.name()))];
        fields.push((
            "mean_class_dice".into(),
            mean_std_json(summarise(results, kind, None)),
        ));
        for r in regions {
            fields.push((
                r.name().into(),
                mean_std_json(summarise(results, kind, Some(r))),
            ));
        }
        let seeds: Vec<Json> = results
            .runs
            .iter()
            .filter(|x| x.kind == kind)
            .map(|x| {
                let subjects: Vec<(String, Json)> = x
                    .dice
                    .subjects()
                    .map(|(id, c)| {
                        (
                            id.clone(),
                            Json::Object(
                                regions
                                    .iter()
                                    .map(|&r| (r.name().to_string(), Json::num(c.dice(r))))
                                    .collect(),
                            ),
                        )
                    })
                    .collect();
                Json::obj(vec![
                    ("seed", Json::num(x.seed as f64)),
                    ("mean_class_dice", Json::num(x.dice.summary_mean().mean)),
                    ("best_val_dice", Json::num(x.train.best_val_dice)),
                    ("best_iteration", Json::num(x.train.best_iteration as f64)),
                    ("iterations", Json::num(x.train.iterations_done as f64)),
                    ("train_seconds", Json::num(x.train.seconds)),
                    ("images_per_second", Json::num(x.train.images_per_second)),
                    ("subjects", Json::Object(subjects)),
                ])
            })
            .collect();
        fields.push(("seeds".into(), Json::Array(seeds)));
        models.push(Json::Object(fields));
    }
    let list = |v: &[String]| Json::Array(v.iter().map(|s| Json::str(s.clone())).collect());
    let doc = Json::obj(vec![
        (
            "study",
            Json::str("segmenters trained on real slices, tested per subject in 3-D"),
        ),
        ("profile", profile),
        ("train_subjects", list(&results.train_subjects)),
        ("validation_subjects", list(&results.val_subjects)),
        ("test_subjects", list(&results.test_subjects)),
        ("models", Json::Array(models)),
    ]);
    crate::io::atomic::write_atomic(&results.results_json, doc.to_pretty().as_bytes())?;

    let mut md = String::new();
    md.push_str(&format!(
        "# Segmentation study ({} profile)\n\nTrained on real slices of {} subjects ({} for validation), tested on {} held-out subjects; Dice per subject in 3-D, mean ± std ({}).\n\n",
        opts.profile.name,
        results.train_subjects.len(),
        results.val_subjects.len(),
        results.test_subjects.len(),
        if opts.seeds.len() > 1 { format!("over {} seeds", opts.seeds.len()) } else { "over test subjects, one seed".into() }
    ));
    md.push_str("| model | enhancing | edema | necrotic core | mean | whole tumour | tumour core |\n|---|---|---|---|---|---|---|\n");
    for &kind in &opts.models {
        let c = |r| summarise(results, kind, Some(r));
        md.push_str(&format!(
            "| {} | {} | {} | {} | **{}** | {} | {} |\n",
            kind.name(),
            c(Region::Enhancing),
            c(Region::Edema),
            c(Region::NecroticCore),
            summarise(results, kind, None),
            c(Region::WholeTumor),
            c(Region::TumorCore)
        ));
    }
    md.push_str("\nProfile:\n\n");
    for (k, v) in opts.profile.describe() {
        md.push_str(&format!("- {k}: {v}\n"));
    }
    crate::io::atomic::write_atomic(&results.results_md, md.as_bytes())
}
