//! `train-gen --arch diffusion` and `generate` on a diffusion checkpoint through the binary: a
//! tiny run's checkpoint samples into a store and a montage with each sampler option; K > T,
//! K = 0, a store of the wrong size and a checkpoint of another model are clear errors that
//! leave nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use brainsynth::data::phantom::{PhantomConfig, phantom_case};
use brainsynth::data::store::read_store;
use brainsynth::data::{SliceConfig, SliceStore, slices_from_case, write_store};
use brainsynth::models::diffusion::{BetaSchedule, Sampler};
use brainsynth::tensor::Device;
use brainsynth::train::diffusion::{DiffusionTrainConfig, EmaChoice, train_diffusion};

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brainsynth"))
        .args(args)
        .output()
        .unwrap()
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brainsynth-dcli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn store(size: usize, path: &Path) -> SliceStore {
    let cfg = PhantomConfig {
        dims: [64, 64, 24],
        subjects: 1,
        ..PhantomConfig::default()
    };
    let sc = SliceConfig {
        out_size: Some(size),
        ..SliceConfig::default()
    };
    let mut st = SliceStore::new(size, size);
    st.slices = slices_from_case(&phantom_case(&cfg, 0).unwrap(), &sc).unwrap();
    write_store(path, &st).unwrap();
    st
}

/// A two-step run of a tiny model (the CLI's profiles are too big for a test).
fn checkpoint(dir: &Path) -> PathBuf {
    let st = store(16, &dir.join("real16.store"));
    let cfg = DiffusionTrainConfig {
        profile: "test".into(),
        net: common::tiny_diffusion_unet(16, 5, 0.0),
        diffusion_steps: 20,
        noise_schedule: BetaSchedule::Linear,
        batch: 2,
        lr: 1e-3,
        ema_rate: 0.9999,
        fast_ema_rate: 0.9,
        clip: None,
        random_flip: true,
        steps: 2,
        sample_every: 2,
        grid_images: 0,
        grid_sampler: Sampler::Respaced(2),
        sample_ema: EmaChoice::Fast,
        seed: 1,
        time_limit: None,
        device: Device::Cpu,
    };
    let run = dir.join("run");
    train_diffusion(&cfg, &st.slices, &run, None, &mut |_| {}).unwrap();
    run.join("last.safetensors")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn generate_samples_a_diffusion_checkpoint_and_refuses_bad_input() {
    let dir = tmp("gen");
    let ck = checkpoint(&dir);
    let ck = ck.to_str().unwrap();
    for (sampler, name) in [("ddim:3", "d"), ("respaced:4", "r"), ("ancestral", "a")] {
        let out = dir.join(format!("{name}.store"));
        let o = bin(&[
            "generate",
            "--checkpoint",
            ck,
            "--n",
            "3",
            "--batch",
            "2",
            "--sampler",
            sampler,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{sampler}: {}", stderr(&o));
        let st = read_store(&out).unwrap();
        assert_eq!((st.h, st.w, st.slices.len()), (16, 16, 3));
        assert_eq!(st.slices[2].subject, "synthetic_000002");
        assert!(out.with_extension("png").is_file());
    }
    for (sampler, says) in [
        ("respaced:21", "20-step"),
        ("ddim:0", "K ≥ 1"),
        ("ddim:x", "ddim:K"),
    ] {
        let out = dir.join("bad.store");
        let o = bin(&[
            "generate",
            "--checkpoint",
            ck,
            "--n",
            "2",
            "--sampler",
            sampler,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(says), "{sampler}: {}", stderr(&o));
        assert!(!out.exists() && !out.with_extension("png").exists());
    }
    // a checkpoint that is no generator, a GAN option on a diffusion model
    let other = dir.join("other.safetensors");
    let mut w = brainsynth::io::checkpoint::CheckpointWriter::new();
    w.set_model_info("unet", "quick", 1);
    w.save(&other).unwrap();
    let o = bin(&[
        "generate",
        "--checkpoint",
        other.to_str().unwrap(),
        "--n",
        "1",
        "--out",
        dir.join("x.store").to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("unet"),
        "{}",
        stderr(&o)
    );
    let o = bin(&[
        "generate",
        "--checkpoint",
        ck,
        "--n",
        "1",
        "--psi",
        "0.7",
        "--out",
        dir.join("x.store").to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--psi"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("x.store").exists());

    // the quick profile is 64×64: a 16×16 store is refused with the size to prepare
    let o = bin(&[
        "train-gen",
        "--arch",
        "diffusion",
        "--split",
        "all",
        "--store",
        dir.join("real16.store").to_str().unwrap(),
        "--out",
        dir.join("q").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--size 64"), "{}", stderr(&o));
    assert!(!dir.join("q/last.safetensors").exists());
    let _ = std::fs::remove_dir_all(dir);
}
