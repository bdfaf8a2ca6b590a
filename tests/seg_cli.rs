//! `brainsynth study` end to end on a small phantom, and the segmentation commands' help and
//! errors.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brainsynth"))
}

#[test]
fn study_runs_end_to_end_on_a_small_phantom() {
    let out = std::env::temp_dir().join(format!("brainsynth-study-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let r = bin()
        .args([
            "study",
            "--subjects",
            "10",
            "--iterations",
            "2",
            "--generators",
            "none",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "study failed: {err}");
    let table = String::from_utf8_lossy(&r.stdout);
    assert!(
        table.contains("| unet |") && table.contains("| swin |"),
        "{table}"
    );
    for f in [
        "results.json",
        "results.md",
        "predictions.png",
        "slices.store",
        "real/unet/seed0/curves.png",
        "real/swin/seed0/best.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let json = std::fs::read_to_string(out.join("results.json")).unwrap();
    assert!(json.contains("\"mean_class_dice\"") && json.contains("\"test_subjects\""));
    assert!(err.contains("img/s") && err.contains("test Dice"), "{err}");
    // checkpoints of the study evaluate through the CLI too
    let r = bin()
        .args(["eval-seg", "--model", "unet", "--store"])
        .arg(out.join("slices.store"))
        .arg("--checkpoint")
        .arg(out.join("real/unet/seed0/best.safetensors"))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stdout).contains("mean ± std"));
    // the Swin checkpoint is not a U-Net
    let r = bin()
        .args(["eval-seg", "--model", "unet", "--store"])
        .arg(out.join("slices.store"))
        .arg("--checkpoint")
        .arg(out.join("real/swin/seed0/best.safetensors"))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(
        e.lines()
            .any(|l| l.starts_with("error: ") && l.contains("swin"))
            && !e.contains("panicked"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn help_and_usage_errors() {
    let r = bin().args(["study", "--help"]).output().unwrap();
    let h = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success() && h.contains("quick") && h.contains("paper") && h.contains("Swin-B"),
        "{h}"
    );
    assert!(
        h.contains("--time-limit") && h.contains("--val-every"),
        "{h}"
    );
    for args in [
        vec!["study", "--profile", "huge"],
        vec!["study", "--seeds", "0"],
        vec!["train-seg", "--model", "vit", "--store", "x", "--out", "y"],
        vec!["study", "--time-limit", "-5"],
        vec![
            "train-seg",
            "--model",
            "swin",
            "--store",
            "x",
            "--out",
            "y",
            "--time-limit",
            "soon",
        ],
    ] {
        let r = bin().args(&args).output().unwrap();
        assert!(!r.status.success(), "{args:?} succeeded");
        let e = String::from_utf8_lossy(&r.stderr);
        assert!(
            e.starts_with("error: ") && !e.contains("panicked"),
            "{args:?}: {e}"
        );
    }
}

/// Without the `cuda` feature, asking for a GPU is one clear error before any work is done.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_the_feature_is_one_clear_error() {
    let missing = std::env::temp_dir().join("brainsynth-no-such.store");
    for cmd in [
        &[
            "train-seg",
            "--model",
            "unet",
            "--out",
            "x",
            "--device",
            "cuda",
        ][..],
        &[
            "eval-seg",
            "--model",
            "unet",
            "--checkpoint",
            "c",
            "--device",
            "cuda:1",
        ][..],
        &["study", "--device", "cuda"][..],
    ] {
        let r = bin()
            .args(cmd)
            .arg("--store")
            .arg(&missing)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{cmd:?}: {e}");
        assert!(
            e.starts_with("error: ") && e.contains("cuda") && e.contains("--features cuda"),
            "{cmd:?}: {e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    // a device that is not a device is a usage error
    let r = bin()
        .args([
            "train-seg",
            "--model",
            "unet",
            "--out",
            "x",
            "--device",
            "gpu",
            "--store",
        ])
        .arg(&missing)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{e}");
    assert!(e.contains("'gpu' is not a device"), "{e}");
}
