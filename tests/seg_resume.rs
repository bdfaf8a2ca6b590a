//! Exact resume of segmenter training: a run stopped mid-way and resumed reaches the same
//! losses, weights and optimiser state, to the bit, as a run that was never stopped.
//!
//! The test pins the CPU kernels to four worker threads (`BRAINSYNTH_THREADS=4`, read once per
//! process, hence a test binary of its own): partial sums combine in a fixed order for a given
//! thread count, so the bits depend on the count but not on thread timing, and four workers
//! split the work on any machine.

use brainsynth::io::checkpoint::Checkpoint;
use brainsynth::train::interrupt::StopToken;
use brainsynth::train::runner::StopReason;
use brainsynth::train::seg::{SegKind, train_segmenter, train_segmenter_with};

mod common;
use common::seg::{slices, tiny, tmp};

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
    unsafe { std::env::set_var("BRAINSYNTH_THREADS", "4") };
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
