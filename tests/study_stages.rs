//! The study's stage machine through the library API, with tiny networks and a stand-in
//! generator that copies its training slices (so the audit must find every image a copy): a
//! re-run skips complete stages, an interrupted stage resumes, a folder of another configuration
//! is refused without touching it, and bad synthetic sets are clear errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use brainsynth::Error;
use brainsynth::data::Slice;
use brainsynth::data::store::{SliceStore, StoreWriter, read_store, write_store};
use brainsynth::io::json::Json;
use brainsynth::study::stage::{StageDir, StageState};
use brainsynth::study::{
    AuditRecord, GenJob, GenTrained, GeneratorSpec, ResidualRecord, StudyData, StudyOptions,
    StudyProfile, Variant, load_synthetic, run_study,
};
use brainsynth::tensor::Device;
use brainsynth::train::runner::StopReason;
use brainsynth::train::seg::SegKind;

use common::TempDir;

/// Training calls of the copying generator, and whether the next one is "interrupted".
static COPY_TRAINS: AtomicUsize = AtomicUsize::new(0);
static COPY_INTERRUPT: AtomicBool = AtomicBool::new(false);

fn no_budget(_: &StudyProfile) -> brainsynth::Result<Json> {
    Ok(Json::obj(vec![
        ("kimg", Json::num(0.01)),
        ("time_limit_s", Json::Null),
    ]))
}

/// "Trains" by keeping the training slices; an interrupted session leaves a partial marker that
/// the resumed session must find.
fn copy_train(
    job: &GenJob,
    reals: &[Slice],
    _log: &mut dyn FnMut(&str),
) -> brainsynth::Result<GenTrained> {
    COPY_TRAINS.fetch_add(1, Ordering::SeqCst);
    let partial = job.dir.join("partial");
    if COPY_INTERRUPT.swap(false, Ordering::SeqCst) {
        std::fs::write(&partial, b"half").unwrap();
        return Ok(GenTrained {
            stopped: StopReason::Interrupted,
            seconds: 1.5,
        });
    }
    keep_copy(job, reals)
}

fn keep_copy(job: &GenJob, reals: &[Slice]) -> brainsynth::Result<GenTrained> {
    let mut s = SliceStore::new(reals[0].h, reals[0].w);
    s.slices = reals.to_vec();
    write_store(job.dir.join("copy.store"), &s)?;
    Ok(GenTrained {
        stopped: StopReason::Finished,
        seconds: 0.0,
    })
}

/// Samples by copying training slices in turn.
fn copy_sample(job: &GenJob, n: usize, _seed: u64, out: &Path) -> brainsynth::Result<()> {
    let s = read_store(job.dir.join("copy.store"))?;
    let mut w = StoreWriter::create(out, s.h, s.w)?;
    for i in 0..n {
        let mut x = s.slices[(i * 7) % s.slices.len()].clone();
        x.subject = format!("synthetic_{i:06}");
        x.index = 0;
        w.push(&x)?;
    }
    w.finish()
}

static COPY: GeneratorSpec = GeneratorSpec {
    name: "copy",
    label: "Copy",
    settings: no_budget,
    train: copy_train,
    sample: copy_sample,
};

/// The copying generator without the counter (for tests running beside the one that counts).
static COPY_QUIET: GeneratorSpec = GeneratorSpec {
    name: "copy",
    label: "Copy",
    settings: no_budget,
    train: |job, reals, _| keep_copy(job, reals),
    sample: copy_sample,
};

fn noop_train(
    job: &GenJob,
    _: &[Slice],
    _: &mut dyn FnMut(&str),
) -> brainsynth::Result<GenTrained> {
    std::fs::write(job.dir.join("trained"), b"").unwrap();
    Ok(GenTrained {
        stopped: StopReason::Finished,
        seconds: 0.0,
    })
}

/// A generator of 16×16 images, for a 32×32 study.
static SMALL: GeneratorSpec = GeneratorSpec {
    name: "small",
    label: "Small",
    settings: no_budget,
    train: noop_train,
    sample: |_, n, _, out| {
        let mut w = StoreWriter::create(out, 16, 16)?;
        for i in 0..n {
            w.push(&Slice::zeros(format!("synthetic_{i:06}"), 0, 16, 16))?;
        }
        w.finish()
    },
};

/// A generator that makes nothing.
static EMPTY: GeneratorSpec = GeneratorSpec {
    name: "empty",
    label: "Empty",
    settings: no_budget,
    train: noop_train,
    sample: |_, _, _, out| StoreWriter::create(out, 32, 32)?.finish(),
};

/// 8 phantom subjects of 32×32 slices in a store.
fn store(dir: &Path) -> PathBuf {
    let mut s = SliceStore::new(32, 32);
    s.slices = common::seg::slices(0..8);
    let p = dir.join("real.store");
    write_store(&p, &s).unwrap();
    p
}

fn tiny_profile() -> StudyProfile {
    let mut p = StudyProfile::quick();
    let t = common::seg::tiny(SegKind::UNet, 2);
    p.seg.slice_size = 32;
    p.seg.test_subjects = 2;
    p.seg.val_subjects = 1;
    p.seg.batch = 2;
    p.seg.unet.net = t.unet;
    p.seg.swin.net = t.swin;
    p.seg.set_iterations(2);
    p.seg.set_val_every(2);
    p.seg.time_limit = None;
    p.n_synthetic = 10;
    p.gen_time_limit = None;
    p
}

fn options(out: &Path, data: &Path, generators: Vec<&'static GeneratorSpec>) -> StudyOptions {
    StudyOptions {
        profile: tiny_profile(),
        data: StudyData::Store(data.to_path_buf()),
        out: out.to_path_buf(),
        generators,
        segmenters: vec![SegKind::UNet],
        variants: vec![Variant::SYNTHETIC, Variant::ALL[2]],
        seeds: vec![0],
        split_seed: 0,
        split: None,
        device: Device::Cpu,
        memorization_sizes: Vec::new(),
        memorization_generators: Vec::new(),
    }
}

fn run(opts: &StudyOptions) -> (brainsynth::Result<brainsynth::study::StudyResults>, String) {
    let mut log = String::new();
    let r = run_study(opts, &mut |s| {
        log.push_str(s);
        log.push('\n');
    });
    (r, log)
}

#[test]
fn stages_resume_skip_and_report() {
    let tmp = TempDir::new("study-stages");
    let data = store(tmp.path());
    let out = tmp.path().join("study");
    let opts = options(&out, &data, vec![&COPY]);

    // the generator's training is interrupted: an Interrupted error, its time recorded
    COPY_INTERRUPT.store(true, Ordering::SeqCst);
    let (r, _) = run(&opts);
    assert!(matches!(r, Err(Error::Interrupted(_))), "{r:?}");
    assert_eq!(COPY_TRAINS.load(Ordering::SeqCst), 1);
    assert!(out.join("copy/train/spent.json").is_file());
    assert!(out.join("real/unet/seed0/done.json").is_file());
    assert!(!out.join("copy/train/done.json").exists());

    // the same call resumes that stage in the same folder and finishes the study
    let (r, log) = run(&opts);
    let r = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(COPY_TRAINS.load(Ordering::SeqCst), 2);
    assert!(out.join("copy/train/partial").is_file());
    assert!(!out.join("copy/train/spent.json").exists());
    assert!(log.contains("real/unet/seed0] complete"), "{log}");
    // the copying generator is caught by the audit: every image is a training image
    let g = &r.generators[0];
    assert_eq!(g.audit.n, 10);
    assert_eq!(g.audit.above_threshold, 10);
    assert!((g.audit.max - 1.0).abs() < 1e-5);
    // and by the residual measure, which copies pass as well as the plain one
    let res = g
        .audit
        .residual
        .expect("the study's audit computes residuals");
    assert_eq!(res.above_threshold, 10);
    assert!((res.max - 1.0).abs() < 1e-5);
    assert_eq!(g.runs.len(), 2);
    // real + synthetic trains on 8 synthetic images and the real slices repeated once
    let mixed = &g.runs.iter().find(|(v, _)| v.with_real).unwrap().1;
    assert!(mixed.train_images > 8);
    let consistency = g.measures.consistency.as_ref().unwrap();
    assert_eq!(consistency.images, 10);
    assert!(
        g.measures
            .frechet
            .is_some_and(|f| f.is_finite() && f >= 0.0)
    );
    assert_eq!(r.real_measures.frechet, Some(0.0));
    for f in [
        "results.md",
        "results.json",
        "samples.png",
        "memorization.png",
        "predictions.png",
        "copy/audit/closest.png",
        "copy/sample/synthetic.store",
        "copy/synthetic/unet/seed0/curves.png",
        "copy/mixed/unet/seed0/best.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("| real |") && md.contains("| Copy |") && md.contains("ratio"),
        "{md}"
    );
    assert!(md.contains("10 (> 0.95)"), "{md}");
    assert!(
        md.contains("| 1.000 | 1.000 | 10 |"),
        "residual cells: {md}"
    );

    // a third run skips every stage: no training, the same numbers
    let before = std::fs::read(out.join("copy/synthetic/unet/seed0/done.json")).unwrap();
    let (r2, log) = run(&opts);
    let r2 = r2.unwrap();
    assert_eq!(COPY_TRAINS.load(Ordering::SeqCst), 2);
    assert!(!log.contains("training unet"), "{log}");
    assert_eq!(r2.real, r.real);
    assert_eq!(r2.generators[0].runs, r.generators[0].runs);
    assert_eq!(r2.generators[0].audit, r.generators[0].audit);
    assert_eq!(
        std::fs::read(out.join("copy/synthetic/unet/seed0/done.json")).unwrap(),
        before
    );

    // a stage without its done.json resumes from its last checkpoint (nothing left to train)
    std::fs::remove_file(out.join("copy/synthetic/unet/seed0/done.json")).unwrap();
    let (r3, log) = run(&opts);
    let r3 = r3.unwrap();
    assert!(log.contains("resuming unet from iteration 2"), "{log}");
    let dice = |r: &brainsynth::study::StudyResults| {
        r.generators[0]
            .runs
            .iter()
            .map(|(_, x)| x.subjects.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(dice(&r3), dice(&r));
}

/// The memorisation experiment trains on the first N training subjects only and audits the
/// samples against exactly their slices.
#[test]
fn the_memorisation_experiment_trains_on_the_first_subjects_and_audits_against_them() {
    let tmp = TempDir::new("study-memorization");
    let data = store(tmp.path());
    let out = tmp.path().join("study");
    let mut opts = options(&out, &data, Vec::new());
    opts.memorization_sizes = vec![1, 3];
    opts.memorization_generators = vec![&COPY_QUIET];
    let (r, log) = run(&opts);
    let r = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let all = read_store(&data).unwrap().slices;
    let gen_subjects: Vec<&String> = r.train_subjects.iter().chain(&r.val_subjects).collect();
    assert_eq!(r.memorization.len(), 2);
    for (m, n) in r.memorization.iter().zip([1, 3]) {
        assert_eq!(m.subjects, n);
        let slices = all
            .iter()
            .filter(|s| gen_subjects[..n].contains(&&s.subject))
            .count();
        assert_eq!(m.audit.n_real, slices, "{n} subjects");
        // every image is a copy of one of those slices
        assert_eq!(m.audit.above_threshold, 10);
        assert!(
            out.join(format!("memorization/{n}-subjects/copy/audit/closest.png"))
                .is_file()
        );
    }
    assert!(r.memorization[0].audit.n_real < r.memorization[1].audit.n_real);
    assert!(out.join("memorization_sizes.png").is_file());
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("## Memorisation and the size of the training set"),
        "{md}"
    );
    let json = std::fs::read_to_string(out.join("results.json")).unwrap();
    assert!(json.contains("memorisation_by_training_size"));

    // more subjects than the generators train on, or a repeated size: clear errors
    for (sizes, says) in [
        (vec![99], "--memorization-sizes 1..=6"),
        (vec![2, 2], "distinct"),
    ] {
        let mut o = options(&tmp.path().join("other"), &data, Vec::new());
        o.memorization_sizes = sizes;
        o.memorization_generators = vec![&COPY_QUIET];
        let e = run(&o).0.unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn another_configuration_is_refused_and_nothing_is_touched() {
    let tmp = TempDir::new("study-refuse");
    let data = store(tmp.path());
    let out = tmp.path().join("study");
    let opts = options(&out, &data, vec![&SMALL]);
    // the 16×16 generator fails at its sample stage, after the real baseline
    let (r, _) = run(&opts);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("16×16") && e.contains("32×32"), "{e}");
    let real_done = std::fs::read(out.join("real/unet/seed0/done.json")).unwrap();

    // other segmenter steps: the study folder is refused before anything runs
    let mut other = options(&out, &data, vec![&SMALL]);
    other.profile.seg.set_iterations(3);
    let (r, _) = run(&other);
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("another configuration") && e.contains("unet_training"),
        "{e}"
    );
    // another number of synthetic images
    let mut other = options(&out, &data, vec![&SMALL]);
    other.profile.n_synthetic = 12;
    let (r, _) = run(&other);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("another configuration"), "{e}");
    assert_eq!(
        std::fs::read(out.join("real/unet/seed0/done.json")).unwrap(),
        real_done
    );
    // a folder that is not a study's
    let stranger = tmp.path().join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    std::fs::write(stranger.join("notes.txt"), b"mine").unwrap();
    let (r, _) = run(&options(&stranger, &data, vec![]));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("not a study folder"), "{e}");
    assert_eq!(std::fs::read(stranger.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn empty_and_foreign_synthetic_sets_are_clear_errors() {
    let tmp = TempDir::new("study-bad-synth");
    let data = store(tmp.path());
    let out = tmp.path().join("study");
    let (r, _) = run(&options(&out, &data, vec![&EMPTY]));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("holds no images"), "{e}");

    // a store of another channel count (header patched, checksum kept valid)
    let mut s = SliceStore::new(32, 32);
    s.slices = vec![Slice::zeros("synthetic_000000", 0, 32, 32)];
    let p = tmp.path().join("four.store");
    write_store(&p, &s).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[20..24].copy_from_slice(&4u32.to_le_bytes());
    let crc = brainsynth::data::checksum::crc32(&bytes[..44]);
    bytes[44..48].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = load_synthetic(&p, 32, 32).unwrap_err().to_string();
    assert!(e.contains("4 channels") && e.contains("expected 5"), "{e}");
    // the right store of another size
    write_store(&p, &s).unwrap();
    assert_eq!(load_synthetic(&p, 32, 32).unwrap().len(), 1);
    let e = load_synthetic(&p, 64, 64).unwrap_err().to_string();
    assert!(e.contains("32×32") && e.contains("64×64"), "{e}");
}

#[test]
fn a_stage_folder_of_another_configuration_names_the_setting() {
    let tmp = TempDir::new("study-stage-dir");
    let cfg = |n: f64| {
        Json::obj(vec![
            ("generator", Json::str("stylegan2")),
            ("settings", Json::obj(vec![("gamma", Json::num(n))])),
        ])
    };
    let dir = tmp.path().join("stylegan2/train");
    let sd = StageDir::new(dir.clone(), cfg(0.1));
    assert!(matches!(sd.open().unwrap(), StageState::Run { spent_s } if spent_s == 0.0));
    sd.record_spent(12.5).unwrap();
    assert!(matches!(sd.open().unwrap(), StageState::Run { spent_s } if spent_s == 12.5));
    let e = StageDir::new(dir.clone(), cfg(0.2))
        .open()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("settings.gamma") && e.contains("0.1") && e.contains("0.2"),
        "{e}"
    );
    sd.finish(&Json::obj(vec![("seconds", Json::num(3.0))]))
        .unwrap();
    assert!(matches!(sd.open().unwrap(), StageState::Done(_)));
    // a folder with files but no configuration is not a stage
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("x"), b"").unwrap();
    let e = StageDir::new(other, cfg(0.1))
        .open()
        .unwrap_err()
        .to_string();
    assert!(e.contains("no config.json"), "{e}");
}

/// An audit record written before the study computed residuals reads back without them (its
/// report shows "–"); one with them round-trips.
#[test]
fn audit_records_with_and_without_residuals_read_back() {
    let old = r#"{"n": 3, "n_real": 7, "threshold": 0.95, "mean": 0.9, "median": 0.9,
        "p99": 0.96, "max": 0.97, "above_threshold": 1, "distinct_real_above": 1,
        "histogram": [[0.5, 2], [0.97, 1]]}"#;
    let j = brainsynth::io::json::parse(old).unwrap();
    let r = AuditRecord::from_json(&j).unwrap();
    assert_eq!(r.residual, None);
    assert_eq!(r.above_threshold, 1);
    let with = AuditRecord {
        residual: Some(ResidualRecord {
            mean: 0.6,
            max: 0.8,
            above_threshold: 0,
        }),
        ..r.clone()
    };
    for rec in [r, with] {
        let text = rec.to_json().to_pretty();
        let back = AuditRecord::from_json(&brainsynth::io::json::parse(&text).unwrap()).unwrap();
        assert_eq!(back, rec);
    }
    // a residual entry that is not a summary is an error, not a silent None
    let bad = old.replace("\"n\": 3,", "\"n\": 3, \"residual\": {\"mean\": 0.5},");
    let e = AuditRecord::from_json(&brainsynth::io::json::parse(&bad).unwrap()).unwrap_err();
    assert!(e.to_string().contains("max"), "{e}");
}
