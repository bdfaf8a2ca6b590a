//! `brainsynth audit-kernels` and `bench-kernels`: on the CPU emulator they run (the audit on
//! one group, the bench on one op) and say that the emulator's timings mean nothing; in a build
//! without CUDA they fail with a sentence saying so; a CPU device or an unknown group is a usage
//! error (exit status 2).

use std::process::{Command, Output};

fn brainsynth(args: &[&str]) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_brainsynth"))
        .args(args)
        .output()
        .expect("run brainsynth");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, so, se)
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["audit-kernels", "--device", "cpu"][..],
        &["bench-kernels", "--device", "cpu"],
        &["bench-kernels", "--op", "softmax"],
        &["bench-kernels", "--iters", "0"],
        &["audit-kernels", "--seed", "x"],
    ] {
        let (out, so, se) = brainsynth(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {so}{se}");
        assert!(se.starts_with("error: "), "{se}");
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_cuda_the_commands_say_so() {
    for cmd in ["audit-kernels", "bench-kernels"] {
        let (out, so, se) = brainsynth(&[cmd]);
        assert_eq!(out.status.code(), Some(1), "{so}{se}");
        assert!(se.contains("built without CUDA support"), "{se}");
        assert!(!se.contains("panicked"), "{se}");
    }
}

#[cfg(feature = "cuda-emu")]
#[test]
fn audit_runs_on_the_emulator() {
    let (out, so, se) = brainsynth(&["audit-kernels", "--group", "matmul", "--seed", "7"]);
    assert!(out.status.success(), "{so}{se}");
    assert!(so.contains("CPU emulator"), "{so}");
    assert!(so.contains("seed 7"), "{so}");
    assert!(so.contains("linear f64"), "{so}");
    assert!(so.contains("all 8 ops within tolerance"), "{so}");
    let (out, so, se) = brainsynth(&["audit-kernels", "--group", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{so}{se}");
    assert!(se.contains("matmul"), "the groups are listed: {se}");
}

#[cfg(feature = "cuda-emu")]
#[test]
fn bench_runs_on_the_emulator_and_says_its_timings_mean_nothing() {
    let (out, so, se) = brainsynth(&["bench-kernels", "--op", "gn_silu"]);
    assert!(out.status.success(), "{so}{se}");
    assert!(so.contains("timings mean nothing"), "{so}");
    // one row per anchor shape of the op, with PyTorch's figure beside it
    assert_eq!(
        so.lines().filter(|l| l.starts_with("gn_silu")).count(),
        4,
        "{so}"
    );
    assert!(so.contains("0.258"), "{so}");
}
