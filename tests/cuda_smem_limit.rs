//! Window attention on devices with less shared memory than its kernels may want: the f64
//! backward at N = dim = 64 needs 138 KiB, over the 99 KiB opt-in limit of sm_86/sm_89, so it
//! must fall back to the general form; and a device that does not report its limit must not be
//! taken to have none (the opt-in is tried instead). Runs on the emulator, whose limit is set
//! when the device opens: each case re-runs this test binary with the emulator configured.
#![cfg(feature = "cuda-emu")]

#[path = "common/gpu.rs"]
mod gpu;
use gpu::*;

use brainsynth::backend::cuda;

/// The opt-in limit of sm_86 and sm_89 (99 KiB).
const SM86_OPTIN: &str = "101376";

/// Run `test` (an ignored test of this file) in a child process with `env`.
fn run_child(test: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", test, "--ignored", "--nocapture"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the test binary again");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{test} failed:\n{so}\n{se}");
    assert!(so.contains("1 passed"), "{test} did not run:\n{so}");
}

/// The limit the device reports, as `EXPECT_OPTIN` says ("none" when it does not report one),
/// then every window-attention case against the CPU.
#[test]
#[ignore = "run in a configured child process by the tests below"]
fn child_window_attention() {
    let want = std::env::var("EXPECT_OPTIN").expect("set by the parent test");
    let be = cuda::backend(0).unwrap();
    let got = be
        .max_shared_memory_optin()
        .map_or("none".to_string(), |b| b.to_string());
    assert_eq!(got, want);
    audit_group("fused_window_attention");
}

#[test]
fn a_99_kib_device_falls_back_to_the_general_form() {
    run_child(
        "child_window_attention",
        &[
            ("BRAINSYNTH_EMU_SMEM_OPTIN", SM86_OPTIN),
            ("EXPECT_OPTIN", SM86_OPTIN),
        ],
    );
}

#[test]
fn an_unreported_limit_is_not_taken_as_zero() {
    run_child(
        "child_window_attention",
        &[
            ("BRAINSYNTH_EMU_SMEM_OPTIN", SM86_OPTIN),
            ("BRAINSYNTH_EMU_SMEM_QUERY", "fail"),
            ("EXPECT_OPTIN", "none"),
        ],
    );
}
