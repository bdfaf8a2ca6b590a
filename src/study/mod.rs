//! The comparison study of Akbar et al. 2024, end to end, as a list of resumable stages:
//!
//! 1. real baseline: each segmenter × seed trained on the real training subjects' slices and
//!    tested per subject in 3-D on the real test subjects;
//! 2. per generator: train on the training subjects' slices only → sample the synthetic set →
//!    memorisation audit against the generator's training slices → measures beyond the paper
//!    (label statistics, label consistency under the real-trained U-Net) → per variant ×
//!    segmenter × seed: train on the synthetic set (80/20 by image into training and validation,
//!    see [`variants`]) and test on the same real test subjects;
//! 3. the report: `results.md` (the paper's table shape with the synthetic/real ratio, per-class
//!    Dice, the memorisation summary, the measures), `results.json` (every number),
//!    `samples.png`, `memorization.png`, `predictions.png`.
//!
//! Folders under OUT: `real/<segmenter>/seed<k>`, `<generator>/train`, `<generator>/sample`
//! (`synthetic.store`), `<generator>/audit`, `<generator>/measures`,
//! `<generator>/<variant>/<segmenter>/seed<k>`. Each holds the configuration it ran with; see
//! [`stage`] for how re-running skips, resumes or refuses. `OUT/study.json` records the data,
//! the split and the profile; a folder from another configuration is refused.
//!
//! Protocol as the authors' code (generators see training subjects only; ψ = 1 for the
//! style-based GANs; real repeated to balance the real + synthetic mix; mean ± std over seeds).

mod config;
mod data;
mod generators;
mod pictures;
mod progress;
mod records;
mod report;
pub mod stage;
pub mod variants;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use config::{StudyData, StudyOptions, StudyProfile};
pub use generators::{GENERATORS, GenJob, GenTrained, GeneratorSpec, generator_by_name};
pub use records::{AuditRecord, COLUMNS, MEAN, MeasuresRecord, ResidualRecord, SegRecord};
pub use report::{dice_ratio, summarise};
pub use variants::Variant;

use crate::data::Slice;
use crate::data::store::read_store;
use crate::eval::consistency::{bottleneck_features, label_consistency};
use crate::eval::dice::Region;
use crate::eval::frechet::frechet_between;
use crate::eval::label_stats::label_stats;
use crate::eval::memorisation::{AuditConfig, audit};
use crate::io::atomic::write_atomic;
use crate::io::json::{Json, parse};
use crate::train::runner::StopReason;
use crate::train::seg::{SegKind, evaluate, load_segmenter, train_segmenter};
use crate::{Error, Result};

use data::RealData;
use progress::Progress;
use stage::{StageDir, StageState, first_difference, num};

/// One generator's results.
#[derive(Clone, Debug)]
pub struct GeneratorResults {
    pub spec: &'static GeneratorSpec,
    pub audit: AuditRecord,
    pub measures: MeasuresRecord,
    /// Per variant, segmenter and seed.
    pub runs: Vec<(Variant, SegRecord)>,
    /// Seconds of training (last session) and of sampling.
    pub train_seconds: f64,
    pub sample_seconds: f64,
    /// The synthetic set.
    pub store: PathBuf,
}

/// One run of the memorisation experiment: a generator trained on a few subjects, audited
/// against their slices.
#[derive(Clone, Debug)]
pub struct MemorizationRun {
    pub spec: &'static GeneratorSpec,
    /// Training subjects.
    pub subjects: usize,
    /// The audit against those subjects' slices (`n_real` of them).
    pub audit: AuditRecord,
}

/// Everything the study measured.
#[derive(Clone, Debug)]
pub struct StudyResults {
    /// The real baseline, per segmenter and seed.
    pub real: Vec<SegRecord>,
    /// The measures of the real training slices (label consistency on the real test slices).
    pub real_measures: MeasuresRecord,
    pub generators: Vec<GeneratorResults>,
    /// The memorisation experiment (`--memorization-sizes`), by size then generator.
    pub memorization: Vec<MemorizationRun>,
    pub train_subjects: Vec<String>,
    pub val_subjects: Vec<String>,
    pub test_subjects: Vec<String>,
    /// (stage, seconds) of the stages run in this session.
    pub stage_seconds: Vec<(String, f64)>,
    pub results_json: PathBuf,
    pub results_md: PathBuf,
}

const STUDY_JSON: &str = "study.json";
/// Seed of the latents every generator samples from.
const SAMPLE_SEED: u64 = 0;
/// Seed of the generators' training.
const GEN_SEED: u64 = 0;

/// The configuration every stage shares: data, split, profile.
fn study_config(opts: &StudyOptions) -> Json {
    Json::obj(vec![
        ("data", Json::str(opts.data.describe())),
        ("split_seed", Json::num(opts.split_seed as f64)),
        (
            "split",
            opts.split
                .as_ref()
                .map_or(Json::Null, |s| Json::str(s.clone())),
        ),
        (
            "profile",
            Json::Object(
                opts.profile
                    .describe()
                    .into_iter()
                    .map(|(k, v)| (k, Json::String(v)))
                    .collect(),
            ),
        ),
    ])
}

/// Refuse an OUT folder of another configuration (or one that is not a study's).
fn check_study_folder(opts: &StudyOptions) -> Result<()> {
    let path = opts.out.join(STUDY_JSON);
    let cfg = study_config(opts);
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let old = parse(&text).map_err(|e| Error::format(&path, e))?;
        if old != cfg {
            return Err(Error::Data(format!(
                "{} holds a study with another configuration ({}); nothing was overwritten: \
                 give another --out, or the same options as before",
                opts.out.display(),
                first_difference(&old, &cfg, "")
            )));
        }
        return Ok(());
    }
    if let Ok(entries) = std::fs::read_dir(&opts.out) {
        let names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        // an earlier study interrupted before study.json existed wrote at most these
        if names
            .iter()
            .any(|n| !matches!(n.as_str(), "phantom" | "slices.store"))
        {
            return Err(Error::Data(format!(
                "{} is not empty and holds no {STUDY_JSON}, so it is not a study folder; \
                 nothing was overwritten: give another --out",
                opts.out.display()
            )));
        }
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    write_atomic(&path, cfg.to_pretty().as_bytes())
}

/// A segmenter training's configuration (what decides its result).
fn seg_config(opts: &StudyOptions, kind: SegKind, seed: u64, augment: bool, data: Json) -> Json {
    let c = opts.profile.seg.train_config(kind, seed);
    let net = match kind {
        SegKind::UNet => format!("{:?}", c.unet),
        SegKind::Swin => format!("{:?}", c.swin),
    };
    Json::obj(vec![
        ("segmenter", Json::str(kind.name())),
        ("network", Json::str(net)),
        ("seed", Json::num(seed as f64)),
        ("iterations", Json::num(c.iterations as f64)),
        ("batch", Json::num(c.batch as f64)),
        ("lr", Json::num(c.lr)),
        ("warmup", Json::num(c.warmup as f64)),
        ("val_every", Json::num(c.val_every as f64)),
        ("augment", Json::Bool(augment)),
        (
            "time_limit_s",
            c.time_limit
                .map_or(Json::Null, |t| Json::num(t.as_secs_f64())),
        ),
        ("data", data),
    ])
}

/// What is left of `budget` after `spent_s` seconds (at least one second, so a stage at its
/// limit still runs a step and writes its outputs).
fn remaining(budget: Option<Duration>, spent_s: f64) -> Option<Duration> {
    budget.map(|b| Duration::from_secs_f64((b.as_secs_f64() - spent_s).max(1.0)))
}

/// A synthetic set as training data: it must hold images of the real slices' size.
pub fn load_synthetic(path: &Path, h: usize, w: usize) -> Result<Vec<Slice>> {
    let s = read_store(path)?;
    if s.slices.is_empty() {
        return Err(Error::Data(format!(
            "the synthetic set {} holds no images",
            path.display()
        )));
    }
    if (s.h, s.w) != (h, w) {
        return Err(Error::Data(format!(
            "the synthetic set {} holds {}×{} images but the real slices are {h}×{w}; the \
             generator must be trained at the study's slice size",
            path.display(),
            s.h,
            s.w
        )));
    }
    Ok(s.slices)
}

/// The work of one stage.
#[derive(Clone, Copy)]
enum Job {
    Real {
        kind: SegKind,
        seed: u64,
    },
    Train(&'static GeneratorSpec),
    Sample(&'static GeneratorSpec),
    Audit(&'static GeneratorSpec),
    Measures(&'static GeneratorSpec),
    Synthetic {
        generator: &'static GeneratorSpec,
        variant: Variant,
        kind: SegKind,
        seed: u64,
    },
    /// The memorisation experiment: the generator trained on the first `subjects` training
    /// subjects, its samples, and their audit against those subjects' slices.
    Mem {
        g: &'static GeneratorSpec,
        subjects: usize,
        part: MemPart,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MemPart {
    Train,
    Sample,
    Audit,
}

impl MemPart {
    fn name(self) -> &'static str {
        match self {
            MemPart::Train => "train",
            MemPart::Sample => "sample",
            MemPart::Audit => "audit",
        }
    }
}

/// Folder of one memorisation-experiment stage under OUT.
fn mem_dir(g: &GeneratorSpec, subjects: usize, part: MemPart) -> PathBuf {
    PathBuf::from("memorization")
        .join(format!("{subjects}-subjects"))
        .join(g.name)
        .join(part.name())
}

impl Job {
    fn name(&self) -> String {
        match self {
            Job::Real { kind, seed } => format!("real/{}/seed{seed}", kind.name()),
            Job::Train(g) => format!("{}/train", g.name),
            Job::Sample(g) => format!("{}/sample", g.name),
            Job::Audit(g) => format!("{}/audit", g.name),
            Job::Measures(g) => format!("{}/measures", g.name),
            Job::Synthetic {
                generator,
                variant,
                kind,
                seed,
            } => format!(
                "{}/{}/{}/seed{seed}",
                generator.name,
                variant.name(),
                kind.name()
            ),
            Job::Mem { g, subjects, part } => mem_dir(g, *subjects, *part).display().to_string(),
        }
    }
}

/// Run (or resume) the study; progress goes to `log`.
pub fn run_study(opts: &StudyOptions, log: &mut dyn FnMut(&str)) -> Result<StudyResults> {
    opts.check()?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    check_study_folder(opts)?;
    let rd = data::real_data(opts, log)?;
    let p = &opts.profile;

    // the plan
    let mut jobs = Vec::new();
    for &seed in &opts.seeds {
        for &kind in &opts.segmenters {
            jobs.push(Job::Real { kind, seed });
        }
    }
    for &g in &opts.generators {
        jobs.extend([
            Job::Train(g),
            Job::Sample(g),
            Job::Audit(g),
            Job::Measures(g),
        ]);
        for &variant in &opts.variants {
            for &seed in &opts.seeds {
                for &kind in &opts.segmenters {
                    jobs.push(Job::Synthetic {
                        generator: g,
                        variant,
                        kind,
                        seed,
                    });
                }
            }
        }
    }
    for &n in &opts.memorization_sizes {
        rd.gen_subset(n)?;
        for &g in &opts.memorization_generators {
            for part in [MemPart::Train, MemPart::Sample, MemPart::Audit] {
                jobs.push(Job::Mem {
                    g,
                    subjects: n,
                    part,
                });
            }
        }
    }
    let mut pg = Progress::new();
    for j in &jobs {
        let (kind, budget) = match j {
            Job::Real { kind, .. } | Job::Synthetic { kind, .. } => {
                (format!("train {}", kind.name()), p.seg_estimate_s(*kind))
            }
            Job::Train(g) => (format!("train {}", g.name), p.gen_estimate_s(g.name)),
            Job::Sample(g) => (format!("sample {}", g.name), 120.0),
            Job::Audit(_) => ("audit".into(), 10.0),
            Job::Measures(_) => ("measures".into(), 10.0),
            Job::Mem { g, part, .. } => match part {
                MemPart::Train => (format!("train {}", g.name), p.gen_estimate_s(g.name)),
                MemPart::Sample => (format!("sample {}", g.name), 120.0),
                MemPart::Audit => ("audit".into(), 10.0),
            },
        };
        pg.plan(j.name(), kind, budget);
    }
    // stages complete in an earlier run are marked before the list is shown
    let stage_dirs: Vec<StageDir> = {
        let mut v = Vec::new();
        for j in &jobs {
            v.push(stage_dir(opts, &rd, j)?);
        }
        v
    };
    for (i, sd) in stage_dirs.iter().enumerate() {
        if sd.path.join("done.json").is_file() && sd.path.join("config.json").is_file() {
            pg.skip(i);
        }
    }
    log(pg.list().trim_end());

    let mut st = Collected::default();
    for (i, (job, sd)) in jobs.iter().zip(&stage_dirs).enumerate() {
        let state = sd.open()?;
        let record = match state {
            StageState::Done(r) => {
                pg.skip(i);
                log(&format!(
                    "{} complete in {}; skipped",
                    pg.prefix(i),
                    sd.path.display()
                ));
                r
            }
            StageState::Run { spent_s } => {
                log(&pg.start(i));
                let prefix = pg.prefix(i);
                let mut sub = |s: &str| log(&format!("{prefix} {s}"));
                let r = run_job(opts, &rd, job, sd, spent_s, &st, &mut sub)?;
                sd.finish(&r)?;
                let secs = pg.finish(i);
                st.stage_seconds.push((job.name(), secs));
                r
            }
        };
        st.collect(job, &record, sd)?;
    }
    if !pg.is_empty() {
        log(pg.list().trim_end());
    }
    let results = st.into_results(opts, &rd)?;
    report::write_report(opts, &rd, &results, log)?;
    Ok(results)
}

/// The folder and configuration of `job`.
fn stage_dir(opts: &StudyOptions, rd: &RealData, job: &Job) -> Result<StageDir> {
    let p = &opts.profile;
    let gen_cfg = |g: &GeneratorSpec| -> Result<Json> {
        Ok(Json::obj(vec![
            ("generator", Json::str(g.name)),
            ("settings", (g.settings)(p)?),
            ("seed", Json::num(GEN_SEED as f64)),
            ("training_slices", Json::num(rd.gen_train.len() as f64)),
        ]))
    };
    let sample_cfg = |g: &GeneratorSpec| -> Result<Json> {
        Ok(Json::obj(vec![
            ("trained", gen_cfg(g)?),
            ("n", Json::num(p.n_synthetic as f64)),
            ("seed", Json::num(SAMPLE_SEED as f64)),
        ]))
    };
    let mem_train_cfg = |g: &GeneratorSpec, n: usize| -> Result<Json> {
        let (subjects, slices) = rd.gen_subset(n)?;
        Ok(Json::obj(vec![
            ("generator", Json::str(g.name)),
            ("settings", (g.settings)(p)?),
            ("seed", Json::num(GEN_SEED as f64)),
            (
                "training_subjects",
                Json::Array(subjects.into_iter().map(Json::String).collect()),
            ),
            ("training_slices", Json::num(slices.len() as f64)),
        ]))
    };
    let mem_sample_cfg = |g: &GeneratorSpec, n: usize| -> Result<Json> {
        Ok(Json::obj(vec![
            ("trained", mem_train_cfg(g, n)?),
            ("n", Json::num(p.n_synthetic as f64)),
            ("seed", Json::num(SAMPLE_SEED as f64)),
        ]))
    };
    let config = match job {
        Job::Real { kind, seed } => seg_config(
            opts,
            *kind,
            *seed,
            true,
            Json::obj(vec![
                ("real_training_slices", Json::num(rd.seg_train.len() as f64)),
                ("real_validation_slices", Json::num(rd.seg_val.len() as f64)),
            ]),
        ),
        Job::Train(g) => gen_cfg(g)?,
        Job::Sample(g) => sample_cfg(g)?,
        Job::Audit(g) => Json::obj(vec![
            ("synthetic", sample_cfg(g)?),
            ("threshold", Json::num(AuditConfig::default().threshold)),
        ]),
        Job::Measures(g) => Json::obj(vec![
            ("synthetic", sample_cfg(g)?),
            (
                "label_consistency_model",
                if opts.segmenters.contains(&SegKind::UNet) {
                    seg_config(
                        opts,
                        SegKind::UNet,
                        opts.seeds[0],
                        true,
                        Json::str("real baseline"),
                    )
                } else {
                    Json::Null
                },
            ),
        ]),
        Job::Synthetic {
            generator,
            variant,
            kind,
            seed,
        } => seg_config(
            opts,
            *kind,
            *seed,
            variant.augment,
            Json::obj(vec![
                ("synthetic", sample_cfg(generator)?),
                ("with_real", Json::Bool(variant.with_real)),
            ]),
        ),
        Job::Mem { g, subjects, part } => match part {
            MemPart::Train => mem_train_cfg(g, *subjects)?,
            MemPart::Sample => mem_sample_cfg(g, *subjects)?,
            MemPart::Audit => Json::obj(vec![
                ("synthetic", mem_sample_cfg(g, *subjects)?),
                ("threshold", Json::num(AuditConfig::default().threshold)),
            ]),
        },
    };
    Ok(StageDir::new(opts.out.join(job.name()), config))
}

/// What the stages produced so far.
#[derive(Default)]
struct Collected {
    real: Vec<SegRecord>,
    real_measures: Option<MeasuresRecord>,
    audits: Vec<(&'static str, AuditRecord)>,
    measures: Vec<(&'static str, MeasuresRecord)>,
    runs: Vec<(&'static str, Variant, SegRecord)>,
    train_seconds: Vec<(&'static str, f64)>,
    sample_seconds: Vec<(&'static str, f64)>,
    stores: Vec<(&'static str, PathBuf)>,
    memorization: Vec<MemorizationRun>,
    stage_seconds: Vec<(String, f64)>,
}

impl Collected {
    fn collect(&mut self, job: &Job, r: &Json, sd: &StageDir) -> Result<()> {
        match job {
            Job::Real { .. } => self.real.push(SegRecord::from_json(r)?),
            Job::Train(g) => self.train_seconds.push((g.name, num(r, "seconds")?)),
            Job::Sample(g) => {
                self.sample_seconds.push((g.name, num(r, "seconds")?));
                self.stores.push((g.name, sd.path.join(SYNTHETIC_STORE)));
            }
            Job::Audit(g) => self.audits.push((g.name, AuditRecord::from_json(r)?)),
            Job::Measures(g) => {
                let f = |k: &str| {
                    stage::field(r, k).ok_or_else(|| Error::Data(format!("measures lack '{k}'")))
                };
                self.measures
                    .push((g.name, MeasuresRecord::from_json(f("synthetic")?)?));
                self.real_measures = Some(MeasuresRecord::from_json(f("real")?)?);
            }
            Job::Synthetic {
                generator, variant, ..
            } => self
                .runs
                .push((generator.name, *variant, SegRecord::from_json(r)?)),
            Job::Mem { g, subjects, part } => {
                if *part == MemPart::Audit {
                    self.memorization.push(MemorizationRun {
                        spec: g,
                        subjects: *subjects,
                        audit: AuditRecord::from_json(r)?,
                    });
                }
            }
        }
        Ok(())
    }

    fn into_results(self, opts: &StudyOptions, rd: &RealData) -> Result<StudyResults> {
        let pick = |v: &[(&'static str, f64)], name: &str| {
            v.iter().find(|(n, _)| *n == name).map_or(f64::NAN, |x| x.1)
        };
        let mut generators = Vec::new();
        for &g in &opts.generators {
            let missing = |what: &str| Error::Data(format!("{}: no {what} record", g.name));
            generators.push(GeneratorResults {
                spec: g,
                audit: self
                    .audits
                    .iter()
                    .find(|(n, _)| *n == g.name)
                    .ok_or_else(|| missing("audit"))?
                    .1
                    .clone(),
                measures: self
                    .measures
                    .iter()
                    .find(|(n, _)| *n == g.name)
                    .ok_or_else(|| missing("measures"))?
                    .1
                    .clone(),
                runs: self
                    .runs
                    .iter()
                    .filter(|(n, _, _)| *n == g.name)
                    .map(|(_, v, r)| (*v, r.clone()))
                    .collect(),
                train_seconds: pick(&self.train_seconds, g.name),
                sample_seconds: pick(&self.sample_seconds, g.name),
                store: self
                    .stores
                    .iter()
                    .find(|(n, _)| *n == g.name)
                    .ok_or_else(|| missing("synthetic set"))?
                    .1
                    .clone(),
            });
        }
        let real_measures = match self.real_measures {
            Some(m) => m,
            None => MeasuresRecord {
                labels: label_stats(&rd.gen_train),
                consistency: None,
                frechet: None,
            },
        };
        Ok(StudyResults {
            real: self.real,
            real_measures,
            generators,
            memorization: self.memorization,
            train_subjects: rd.train_subjects.clone(),
            val_subjects: rd.val_subjects.clone(),
            test_subjects: rd.test_subjects.clone(),
            stage_seconds: self.stage_seconds,
            results_json: opts.out.join("results.json"),
            results_md: opts.out.join("results.md"),
        })
    }
}

/// File name of a generator's synthetic set in its sample stage.
pub const SYNTHETIC_STORE: &str = "synthetic.store";

fn interrupted(sd: &StageDir, spent: f64, what: &str) -> Result<Json> {
    sd.record_spent(spent)?;
    Err(Error::Interrupted(format!(
        "{what} stopped; its state is in {}; run the same command again to resume",
        sd.path.display()
    )))
}

/// Train a segmenter into the stage folder and test it on the real test subjects.
#[allow(clippy::too_many_arguments)]
fn train_and_test(
    opts: &StudyOptions,
    rd: &RealData,
    kind: SegKind,
    seed: u64,
    augment: bool,
    train: &[Slice],
    val: &[Slice],
    sd: &StageDir,
    spent_s: f64,
    log: &mut dyn FnMut(&str),
) -> Result<Json> {
    let p = &opts.profile.seg;
    let mut cfg = p.train_config(kind, seed);
    cfg.device = opts.device;
    if !augment {
        cfg.augment = None;
    }
    cfg.time_limit = remaining(cfg.time_limit, spent_s);
    log(&format!(
        "training {} (seed {seed}) on {} slices, validating on {}",
        kind.name(),
        train.len(),
        val.len()
    ));
    let o = train_segmenter(&cfg, train, val, &sd.path, log)?;
    if o.stopped == StopReason::Interrupted {
        return interrupted(sd, spent_s + o.seconds, kind.name());
    }
    let model = load_segmenter(&cfg, &o.best_checkpoint)?;
    let dice = evaluate(&model, &rd.test, p.batch * 2)?;
    log(&format!(
        "{} seed {seed}: test Dice mean {:.3} (enhancing {:.3}, edema {:.3}, core {:.3}) over {} \
         subjects",
        kind.name(),
        dice.summary_mean().mean,
        dice.summary(Region::Enhancing).mean,
        dice.summary(Region::Edema).mean,
        dice.summary(Region::NecroticCore).mean,
        dice.len()
    ));
    Ok(SegRecord::new(kind, seed, &dice, &o, train.len()).to_json())
}

/// A generator job in `dir` with what is left of the generator's time budget.
fn gen_job<'a>(
    opts: &'a StudyOptions,
    g: &GeneratorSpec,
    dir: &'a Path,
    spent_s: f64,
) -> Result<GenJob<'a>> {
    let settings = (g.settings)(&opts.profile)?;
    let budget = num(&settings, "time_limit_s")?;
    let budget = budget.is_finite().then(|| Duration::from_secs_f64(budget));
    let kimg = num(&settings, "kimg")?;
    if !(kimg.is_finite() && kimg > 0.0) {
        return Err(Error::invalid(
            "study",
            format!("{}'s training length must be > 0 kimg, not {kimg}", g.name),
        ));
    }
    Ok(GenJob {
        dir,
        profile: &opts.profile,
        seed: GEN_SEED,
        device: opts.device,
        images: (kimg * 1000.0).round().max(1.0) as u64,
        time_limit: remaining(budget, spent_s),
    })
}

/// Train generator `g` on `slices` (of `subjects` subjects) into the stage folder.
fn train_generator(
    opts: &StudyOptions,
    g: &GeneratorSpec,
    slices: &[Slice],
    subjects: usize,
    sd: &StageDir,
    spent_s: f64,
    log: &mut dyn FnMut(&str),
) -> Result<Json> {
    let j = gen_job(opts, g, &sd.path, spent_s)?;
    log(&format!(
        "training {} on {} slices of {subjects} subjects{}",
        g.label,
        slices.len(),
        j.time_limit.map_or(String::new(), |t| format!(
            " for at most {}",
            progress::minutes(t.as_secs_f64())
        ))
    ));
    let t = (g.train)(&j, slices, log)?;
    if t.stopped == StopReason::Interrupted {
        return interrupted(sd, spent_s + t.seconds, g.name);
    }
    Ok(Json::obj(vec![
        ("seconds", Json::num(spent_s + t.seconds)),
        (
            "stopped",
            Json::str(format!("{:?}", t.stopped).to_lowercase()),
        ),
    ]))
}

/// Sample the study's synthetic set from the generator trained in `train_dir`.
fn sample_generator(
    opts: &StudyOptions,
    rd: &RealData,
    g: &GeneratorSpec,
    train_dir: &Path,
    sd: &StageDir,
    spent_s: f64,
    log: &mut dyn FnMut(&str),
) -> Result<Json> {
    let p = &opts.profile;
    let j = gen_job(opts, g, train_dir, spent_s)?;
    let out = sd.path.join(SYNTHETIC_STORE);
    let t0 = Instant::now();
    log(&format!(
        "sampling {} images from {}",
        p.n_synthetic, g.label
    ));
    (g.sample)(&j, p.n_synthetic, SAMPLE_SEED, &out)?;
    let secs = t0.elapsed().as_secs_f64();
    let n = load_synthetic(&out, rd.h, rd.w)?.len();
    log(&format!("{n} images in {secs:.1} s -> {}", out.display()));
    Ok(Json::obj(vec![
        ("images", Json::num(n as f64)),
        ("seconds", Json::num(secs)),
    ]))
}

/// Audit the synthetic set in `store` against the generator's training slices `train`.
fn audit_generator(
    opts: &StudyOptions,
    rd: &RealData,
    store: &Path,
    train: &[Slice],
    sd: &StageDir,
    log: &mut dyn FnMut(&str),
) -> Result<Json> {
    let mut synth = crate::data::store::SliceStore {
        h: rd.h,
        w: rd.w,
        slices: load_synthetic(store, rd.h, rd.w)?,
    };
    let mut real = crate::data::store::SliceStore {
        h: rd.h,
        w: rd.w,
        slices: train.to_vec(),
    };
    let cfg = AuditConfig {
        device: opts.device,
        ..AuditConfig::default()
    };
    let a = audit(&mut synth, &mut real, &cfg, &mut |_, _| {})?;
    // the paper's plain measure, and residuals, which tell an average head from a copy
    let residual = AuditConfig {
        residual: true,
        ..cfg
    };
    let r = AuditRecord::new(&a)?.with_residual(&audit(
        &mut synth,
        &mut real,
        &residual,
        &mut |_, _| {},
    )?)?;
    log(&format!(
        "best correlation with one of {} training images: mean {:.3}, max {:.3}; {} of {} above {}",
        real.slices.len(),
        r.mean,
        r.max,
        r.above_threshold,
        r.n,
        r.threshold
    ));
    if let Some(res) = r.residual {
        log(&format!(
            "residuals (minus the mean training image): mean {:.3}, max {:.3}; {} above {}",
            res.mean, res.max, res.above_threshold, r.threshold
        ));
    }
    pictures::write_closest(
        &sd.path.join("closest.png"),
        &a,
        &synth.slices,
        &real.slices,
    )?;
    Ok(r.to_json())
}

fn run_job(
    opts: &StudyOptions,
    rd: &RealData,
    job: &Job,
    sd: &StageDir,
    spent_s: f64,
    st: &Collected,
    log: &mut dyn FnMut(&str),
) -> Result<Json> {
    let p = &opts.profile;
    let train_dir = |g: &GeneratorSpec| opts.out.join(g.name).join("train");
    let store_of = |g: &GeneratorSpec| opts.out.join(g.name).join("sample").join(SYNTHETIC_STORE);
    match *job {
        Job::Real { kind, seed } => train_and_test(
            opts,
            rd,
            kind,
            seed,
            true,
            &rd.seg_train,
            &rd.seg_val,
            sd,
            spent_s,
            log,
        ),
        Job::Train(g) => train_generator(
            opts,
            g,
            &rd.gen_train,
            rd.train_subjects.len() + rd.val_subjects.len(),
            sd,
            spent_s,
            log,
        ),
        Job::Sample(g) => sample_generator(opts, rd, g, &train_dir(g), sd, spent_s, log),
        Job::Audit(g) => audit_generator(opts, rd, &store_of(g), &rd.gen_train, sd, log),
        Job::Mem { g, subjects, part } => {
            let (_, slices) = rd.gen_subset(subjects)?;
            let dir = |part| opts.out.join(mem_dir(g, subjects, part));
            match part {
                MemPart::Train => train_generator(opts, g, &slices, subjects, sd, spent_s, log),
                MemPart::Sample => {
                    sample_generator(opts, rd, g, &dir(MemPart::Train), sd, spent_s, log)
                }
                MemPart::Audit => {
                    let store = dir(MemPart::Sample).join(SYNTHETIC_STORE);
                    audit_generator(opts, rd, &store, &slices, sd, log)
                }
            }
        }
        Job::Measures(g) => {
            let synth = load_synthetic(&store_of(g), rd.h, rd.w)?;
            let model = match opts.segmenters.contains(&SegKind::UNet) {
                false => None,
                true => {
                    let mut cfg = p.seg.train_config(SegKind::UNet, opts.seeds[0]);
                    cfg.device = opts.device;
                    let ck = opts
                        .out
                        .join("real/unet")
                        .join(format!("seed{}", opts.seeds[0]))
                        .join("best.safetensors");
                    Some(load_segmenter(&cfg, &ck)?)
                }
            };
            let batch = p.seg.batch * 2;
            let frechet = match &model {
                None => None,
                Some(m) => {
                    let (a, c) = bottleneck_features(m, &rd.gen_train, batch)?;
                    let (b, _) = bottleneck_features(m, &synth, batch)?;
                    Some(frechet_between(&a, rd.gen_train.len(), &b, synth.len(), c)?)
                }
            };
            let synthetic = MeasuresRecord {
                labels: label_stats(&synth),
                consistency: model
                    .as_ref()
                    .map(|m| label_consistency(m, &synth, batch))
                    .transpose()?,
                frechet,
            };
            let real = match &st.real_measures {
                Some(r) => r.clone(),
                None => MeasuresRecord {
                    labels: label_stats(&rd.gen_train),
                    consistency: model
                        .as_ref()
                        .map(|m| label_consistency(m, &rd.test, batch))
                        .transpose()?,
                    frechet: model.as_ref().map(|_| 0.0),
                },
            };
            if let Some(f) = synthetic.frechet {
                log(&format!(
                    "Fréchet distance to the real training slices in the U-Net's bottleneck: {f:.4}"
                ));
            }
            if let Some(c) = &synthetic.consistency {
                log(&format!(
                    "label consistency (real-trained U-Net on the synthetic images vs their \
                     labels): mean class Dice {:.3}",
                    c.mean_class_dice
                ));
            }
            Ok(Json::obj(vec![
                ("synthetic", synthetic.to_json()),
                ("real", real.to_json()),
            ]))
        }
        Job::Synthetic {
            generator,
            variant,
            kind,
            seed,
        } => {
            let synth = load_synthetic(&store_of(generator), rd.h, rd.w)?;
            let (train, val) = variants::variant_sets(variant, &synth, &rd.seg_train, &rd.seg_val)?;
            train_and_test(
                opts,
                rd,
                kind,
                seed,
                variant.augment,
                &train,
                &val,
                sd,
                spent_s,
                log,
            )
        }
    }
}
