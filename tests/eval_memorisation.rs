//! `brainsynth memorization` end to end: a synthetic set made of copies of training images
//! (and some unrelated images) is audited against the training store.

mod common;

use brainsynth::data::slices::Slice;
use brainsynth::data::store::StoreWriter;
use common::TempDir;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brainsynth"))
        .args(args)
        .output()
        .expect("run brainsynth")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A smooth random image (a few random blobs), so unrelated images correlate weakly.
fn blobs(rng: &mut StdRng, subject: &str, index: u32, n: usize) -> Slice {
    let mut sl = Slice::zeros(subject, index, n, n);
    let centres: Vec<(f64, f64, f64)> = (0..4)
        .map(|_| {
            (
                rng.random::<f64>() * n as f64,
                rng.random::<f64>() * n as f64,
                rng.random::<f64>() * 200.0,
            )
        })
        .collect();
    for c in 0..5 {
        let ch = sl.channel_mut(c);
        for y in 0..n {
            for x in 0..n {
                let v: f64 = centres
                    .iter()
                    .map(|&(cx, cy, a)| {
                        let d2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
                        a * (-d2 / (2.0 * (n as f64 / 6.0).powi(2)) - c as f64 * 0.1).exp()
                    })
                    .sum();
                ch[y * n + x] = v.min(255.0) as u8;
            }
        }
    }
    sl
}

#[test]
fn copies_are_found_and_reported() {
    let dir = TempDir::new("memo_cli");
    let n = 16;
    let mut rng = StdRng::seed_from_u64(3);
    let real: Vec<Slice> = (0..12)
        .map(|i| blobs(&mut rng, &format!("R{}", i / 3), i % 3, n))
        .collect();
    let real_path = dir.path().join("real.store");
    let mut w = StoreWriter::create(&real_path, n, n).unwrap();
    for sl in &real {
        w.push(sl).unwrap();
    }
    w.finish().unwrap();
    // Synthetic: exact copies of real images 5 and 10, plus six unrelated images.
    let synth_path = dir.path().join("synth.store");
    let mut w = StoreWriter::create(&synth_path, n, n).unwrap();
    for i in 0..8 {
        let mut sl = match i {
            2 => real[5].clone(),
            6 => real[10].clone(),
            _ => blobs(&mut rng, "x", 0, n),
        };
        sl.subject = format!("synthetic_{i:05}");
        sl.index = 0;
        w.push(&sl).unwrap();
    }
    w.finish().unwrap();
    let out = dir.path().join("audit");
    let o = run(&[
        "memorization",
        "--synthetic",
        s(&synth_path),
        "--train",
        s(&real_path),
        "--out",
        s(&out),
        "--threshold",
        "0.999",
        "--pairs",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(out.join("memorisation.md")).unwrap();
    // Exactly the two copies exceed 0.999, each matched to its source.
    assert!(md.contains("| 2 (> 0.999) | 2 |"), "{md}");
    assert!(
        md.contains("#2 (synthetic_00002) | R1 z=2 | 1.0000"),
        "{md}"
    );
    assert!(
        md.contains("#6 (synthetic_00006) | R3 z=1 | 1.0000"),
        "{md}"
    );
    for f in ["memorisation.json", "histogram.png", "closest.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let json = std::fs::read_to_string(out.join("memorisation.json")).unwrap();
    assert!(json.contains("\"n_real\": 12"), "{json}");

    // A real store of another size is an error naming both sizes, and nothing is written.
    let small = dir.path().join("small.store");
    let mut w = StoreWriter::create(&small, 8, 8).unwrap();
    w.push(&Slice::zeros("a", 0, 8, 8)).unwrap();
    w.finish().unwrap();
    let out2 = dir.path().join("audit2");
    let o = run(&[
        "memorization",
        "--synthetic",
        s(&synth_path),
        "--train",
        s(&small),
        "--out",
        s(&out2),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("16×16") && err.contains("8×8"), "{err}");
    assert!(!out2.exists());
}
