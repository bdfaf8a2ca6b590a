//! `train-seg` killed with SIGINT mid-run: it finishes the step, writes `last`, leaves no
//! temporary file, exits with status 130 and a message; the same command resumes from that
//! step and ends with the same weights, to the bit, as a run that was never interrupted.
//!
//! The processes run with `BRAINSYNTH_THREADS=1`: some parallel reductions still combine
//! partial sums in the order threads finish (issue 11), which changes low bits between any two
//! runs; the resume must not add to that.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brainsynth::io::checkpoint::Checkpoint;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brainsynth"));
    c.env("BRAINSYNTH_THREADS", "1");
    c
}

fn ok(c: &mut Command) -> String {
    let r = c.output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(r.status.success(), "{c:?} failed: {err}");
    err
}

fn bits(path: &Path) -> Vec<(String, Vec<u64>)> {
    Checkpoint::open(path)
        .unwrap()
        .tensors()
        .iter()
        .map(|(n, t)| {
            let v = t.to_vec_f64().unwrap();
            (n.clone(), v.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

fn train(store: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.args(["train-seg", "--model", "unet", "--iterations", "6"])
        .args(["--val-every", "2", "--time-limit", "0", "--store"])
        .arg(store)
        .arg("--out")
        .arg(out);
    c
}

#[test]
fn sigint_then_resume_matches_an_uninterrupted_run() {
    let root: PathBuf =
        std::env::temp_dir().join(format!("brainsynth-sigint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let cases = root.join("cases");
    let store = root.join("slices.store");
    ok(bin()
        .args(["phantom", "--subjects", "10", "--dims", "64x64x20", "--out"])
        .arg(&cases));
    ok(bin()
        .args(["prepare", "--size", "64", "--cases"])
        .arg(&cases)
        .arg("--out")
        .arg(&store));

    let whole = root.join("whole");
    ok(&mut train(&store, &whole));

    // interrupt once the progress line of iteration 2 appears
    let split = root.join("split");
    let mut child = train(&store, &split)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut signalled = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if !signalled && line.contains("iter 2/6") {
            let k = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(k.success());
            signalled = true;
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    assert!(signalled, "{lines:?}");
    assert_eq!(status.code(), Some(130), "{lines:?}");
    let text = lines.join("\n");
    assert!(
        text.contains("interrupted") && text.contains("resume"),
        "{text}"
    );
    let stopped_at = Checkpoint::open(split.join("last.safetensors"))
        .unwrap()
        .step()
        .unwrap();
    // iteration 2 if the signal came while its checkpoint was written, later otherwise
    assert!((2..6).contains(&stopped_at), "{text}");
    let names: Vec<String> = std::fs::read_dir(&split)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");

    let err = ok(&mut train(&store, &split));
    assert!(
        err.contains(&format!("resuming unet from iteration {stopped_at}")),
        "{err}"
    );
    assert_eq!(
        bits(&whole.join("last.safetensors")),
        bits(&split.join("last.safetensors"))
    );
    assert_eq!(
        bits(&whole.join("best.safetensors")),
        bits(&split.join("best.safetensors"))
    );
    let _ = std::fs::remove_dir_all(&root);
}
