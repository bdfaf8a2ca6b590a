//! Exact resume of segmenter training: a run stopped mid-way and resumed reaches the same
//! losses, weights and optimiser state, to the bit, as a run that was never stopped.
//!
//! The test pins the CPU kernels to one worker thread (`BRAINSYNTH_THREADS=1`, read once per
//! process, hence a test binary of its own): some parallel reductions still combine partial
//! sums in the order threads finish, which changes low bits from run to run whether or not the
//! run was resumed (issue 11). Resume itself must not depend on that.

use std::path::PathBuf;

use brainsynth::data::phantom::{PhantomConfig, phantom_case};
use brainsynth::data::{Slice, SliceConfig, slices_from_case};
use brainsynth::io::checkpoint::Checkpoint;
use brainsynth::models::swin::SwinConfig;
use brainsynth::models::unet::UNetConfig;
use brainsynth::train::interrupt::StopToken;
use brainsynth::train::profile::SegProfile;
use brainsynth::train::runner::StopReason;
use brainsynth::train::seg::{SegKind, SegTrainConfig, train_segmenter, train_segmenter_with};

fn slices(subjects: std::ops::Range<usize>) -> Vec<Slice> {
    let cfg = PhantomConfig {
        dims: [64, 64, 24],
        subjects: 8,
        ..PhantomConfig::default()
    };
    let sc = SliceConfig {
        out_size: Some(32),
        ..SliceConfig::default()
    };
    subjects
        .flat_map(|i| slices_from_case(&phantom_case(&cfg, i).unwrap(), &sc).unwrap())
        .collect()
}

fn tiny(kind: SegKind, iterations: u64) -> SegTrainConfig {
    let mut c = SegProfile::quick().train_config(kind, 0);
    c.unet = UNetConfig {
        base_width: 4,
        depth: 3,
        max_width: 16,
        ..UNetConfig::quick()
    };
    c.swin = SwinConfig {
        embed_dim: 8,
        depths: vec![2, 2],
        heads: vec![1, 2],
        head_channels: 8,
        pool_scales: vec![1, 2],
        ..SwinConfig::quick()
    };
    c.iterations = iterations;
    c.val_every = 2;
    c.batch = 2;
    c
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brainsynth-seg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Every tensor of a checkpoint with its bits.
fn bits(path: &std::path::Path) -> Vec<(String, Vec<u64>)> {
    Checkpoint::open(path)
        .unwrap()
        .tensors()
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.to_vec_f64()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn stopped_and_resumed_training_matches_an_uninterrupted_one() {
    // SAFETY: the only test of this binary, before any kernel has started a thread
    unsafe { std::env::set_var("BRAINSYNTH_THREADS", "1") };
    let (train, val) = (slices(0..3), slices(3..4));
    for kind in [SegKind::UNet, SegKind::Swin] {
        let mut cfg = tiny(kind, 6);
        cfg.val_every = 3;
        let whole = tmp(&format!("whole-{}", kind.name()));
        let o = train_segmenter(&cfg, &train, &val, &whole, &mut |_| {}).unwrap();
        assert_eq!(o.stopped, StopReason::Finished);

        // stop when the progress line of iteration 3 appears; the next run resumes from there
        let split = tmp(&format!("split-{}", kind.name()));
        let stop = StopToken::new();
        let o1 = train_segmenter_with(&cfg, &train, &val, &split, &stop, &mut |l| {
            if l.contains("iter 3/6") {
                stop.stop();
            }
        })
        .unwrap();
        assert_eq!(
            (o1.iterations_done, o1.stopped),
            (3, StopReason::Interrupted)
        );
        let mut lines = Vec::new();
        let o2 = train_segmenter(&cfg, &train, &val, &split, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("resuming") && l.contains("iteration 3")),
            "{lines:?}"
        );
        assert_eq!(o2.iterations_done, 6);
        // the same batches were drawn: same losses at every step, same weights and optimiser
        // state to the bit
        assert_eq!(o.loss_curve, o2.loss_curve, "{}", kind.name());
        assert_eq!(o.val_curve, o2.val_curve);
        let (a, b) = (
            bits(&whole.join("last.safetensors")),
            bits(&split.join("last.safetensors")),
        );
        let differ: Vec<&String> = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x != y)
            .map(|(x, _)| &x.0)
            .collect();
        assert!(
            a.len() == b.len() && differ.is_empty(),
            "{}: {} of {} tensors differ: {differ:?}",
            kind.name(),
            differ.len(),
            a.len()
        );
        for d in [whole, split] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
