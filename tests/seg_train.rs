//! Segmenter training and testing on a small in-memory phantom: training runs, checkpoints,
//! resumes, refuses the wrong model's checkpoint and unusable data, and evaluates per subject.

use brainsynth::data::Slice;
use brainsynth::eval::dice::Region;
use brainsynth::io::checkpoint::Checkpoint;
use brainsynth::models::unet::UNetConfig;
use brainsynth::train::seg::{SegKind, evaluate, load_segmenter, train_segmenter};

mod common;
use common::seg::{slices, tiny, tmp};

#[test]
fn trains_checkpoints_resumes_and_evaluates() {
    let (train, val) = (slices(0..3), slices(3..4));
    assert!(!train.is_empty() && !val.is_empty());
    for kind in [SegKind::UNet, SegKind::Swin] {
        let dir = tmp(kind.name());
        let mut lines = Vec::new();
        let o = train_segmenter(&tiny(kind, 4), &train, &val, &dir, &mut |s| {
            lines.push(s.to_string())
        })
        .unwrap();
        assert_eq!(o.iterations_done, 4);
        assert_eq!(o.loss_curve.len(), 4);
        assert!(o.loss_curve.iter().all(|(_, l)| l.is_finite()));
        assert!(o.best_checkpoint.exists() && dir.join("last.safetensors").exists());
        assert!(
            lines
                .iter()
                .any(|l| l.contains("val dice") && l.contains("img/s")),
            "{lines:?}"
        );
        // asking for more iterations continues from the last checkpoint
        let mut lines = Vec::new();
        let o = train_segmenter(&tiny(kind, 6), &train, &val, &dir, &mut |s| {
            lines.push(s.to_string())
        })
        .unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("resuming") && l.contains("iteration 4")),
            "{lines:?}"
        );
        // the curves cover the whole run, resumes included
        assert_eq!((o.iterations_done, o.loss_curve.len()), (6, 6));
        assert!(dir.join("curves.png").is_file());
        let model = load_segmenter(&tiny(kind, 6), &o.best_checkpoint).unwrap();
        let test = slices(4..6);
        let d = evaluate(&model, &test, 4).unwrap();
        assert_eq!(d.len(), 2);
        for (_, c) in d.subjects() {
            for r in Region::ALL {
                assert!((0.0..=1.0).contains(&c.dice(r)));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn wrong_checkpoint_and_unusable_data_are_errors() {
    let (train, val) = (slices(0..2), slices(2..3));
    let dir = tmp("wrong");
    let o = train_segmenter(&tiny(SegKind::UNet, 2), &train, &val, &dir, &mut |_| {}).unwrap();
    let e = load_segmenter(&tiny(SegKind::Swin, 2), &o.best_checkpoint)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unet") && e.contains("swin"), "{e}");
    // a U-Net of another size: the shapes differ
    let mut other = tiny(SegKind::UNet, 2);
    other.unet.base_width = 8;
    let e = load_segmenter(&other, &o.best_checkpoint)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("shape"), "{e}");
    let e = train_segmenter(
        &tiny(SegKind::UNet, 2),
        &[],
        &val,
        &tmp("empty"),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("training set has no slices"), "{e}");
    // a test set without any tumour says so rather than reporting Dice of nothing
    let model = load_segmenter(&tiny(SegKind::UNet, 2), &o.best_checkpoint).unwrap();
    let healthy: Vec<Slice> = train
        .iter()
        .filter(|s| s.tumour_pixels() == 0)
        .cloned()
        .collect();
    assert!(!healthy.is_empty());
    let e = evaluate(&model, &healthy, 4).unwrap_err().to_string();
    assert!(e.contains("no slice with tumour"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tests/fixtures/seg_unet_v1_last.safetensors` was written by `train_segmenter` before
/// checkpoints had named sections and random-stream states (a U-Net of base width 2, depth 2,
/// max width 4, trained 2 iterations with `tiny`'s other settings): such a file still evaluates
/// and resumes.
#[test]
fn checkpoint_of_the_previous_format_loads_and_resumes() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seg_unet_v1_last.safetensors");
    let mut cfg = tiny(SegKind::UNet, 3);
    cfg.unet = UNetConfig {
        base_width: 2,
        depth: 2,
        max_width: 4,
        ..UNetConfig::quick()
    };
    let ck = Checkpoint::open(&fixture).unwrap();
    assert_eq!(ck.step(), Some(2));
    assert!(!ck.has_rng("batch"));
    let model = load_segmenter(&cfg, &fixture).unwrap();
    let d = evaluate(&model, &slices(4..5), 4).unwrap();
    assert_eq!(d.len(), 1);
    // resuming continues from iteration 2 and says that batches differ from an unbroken run
    let dir = tmp("v1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&fixture, dir.join("last.safetensors")).unwrap();
    let mut lines = Vec::new();
    let o = train_segmenter(&cfg, &slices(0..2), &slices(2..3), &dir, &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap();
    assert_eq!(o.iterations_done, 3);
    assert!(
        lines.iter().any(|l| l.contains("iteration 2"))
            && lines.iter().any(|l| l.contains("records no batch stream")),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
