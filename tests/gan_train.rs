//! GAN training through the runner: a tiny StyleGAN2 and StyleGAN3-T train a few steps with
//! finite losses and penalties, write their sample grid and snapshot, and a run stopped at step k
//! and resumed ends with the same bits in G, D, G_ema and the optimisers as an uninterrupted run.
//! `generate`, run as the binary, refuses bad input and writes nothing then.
//!
//! The kernels are pinned to one worker thread (`BRAINSYNTH_THREADS=1` below, read once per
//! process) as in `seg_resume.rs`: some parallel reductions combine partial sums in the order
//! threads finish.

use std::path::PathBuf;

use brainsynth::data::phantom::{PhantomConfig, phantom_case};
use brainsynth::data::store::read_store;
use brainsynth::data::{Slice, SliceConfig, slices_from_case};
use brainsynth::io::checkpoint::Checkpoint;
use brainsynth::models::gan::{Arch, GanConfig};
use brainsynth::tensor::Device;
use brainsynth::train::gan::{AnyGenerator, GanTrainConfig, GanTrainer};
use brainsynth::train::generate::generate_stylegan;
use brainsynth::train::runner::{RunConfig, RunLength, StopReason, run};

fn slices() -> Vec<Slice> {
    let cfg = PhantomConfig {
        dims: [48, 48, 16],
        subjects: 3,
        ..PhantomConfig::default()
    };
    let sc = SliceConfig {
        out_size: Some(16),
        ..SliceConfig::default()
    };
    (0..3)
        .flat_map(|i| slices_from_case(&phantom_case(&cfg, i).unwrap(), &sc).unwrap())
        .collect()
}

fn config(arch: Arch) -> GanTrainConfig {
    GanTrainConfig {
        arch,
        profile: "test".into(),
        net: GanConfig {
            z_dim: 8,
            w_dim: 8,
            resolution: 16,
            channels: 5,
            channel_base: 64,
            channel_max: 8,
            mapping_layers: 2,
            conv_clamp: Some(256.0),
            mbstd_group: 2,
        },
        batch: 2,
        gamma: 1.0,
        g_lr: None,
        d_lr: None,
        seed: 3,
        grid: 2,
        device: Device::Cpu,
    }
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brainsynth-gan-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn quiet() -> impl FnMut(&str) {
    |_: &str| {}
}

/// Train `steps` in `dir` (resuming from what is there), stopping after `stop_after` steps of
/// this session when given.
fn train(arch: Arch, dir: &std::path::Path, steps: u64, stop_after: Option<u64>) -> StopReason {
    let reals = slices();
    let mut t = GanTrainer::new(config(arch), &reals, Some(dir.to_path_buf())).unwrap();
    t.sample_every_images = 4;
    let mut rc = RunConfig::new(dir, RunLength::Steps(steps));
    rc.handle_signals = false;
    rc.val_every = 3;
    rc.curves = false;
    if let Some(k) = stop_after {
        // raise the stop token from the log callback once k steps are done
        let stop = rc.stop.clone();
        let mut seen = 0u64;
        rc.log_every = 1;
        let mut log = move |s: &str| {
            if s.contains(" iter ") {
                seen += 1;
                if seen >= k {
                    stop.stop();
                }
            }
        };
        let o = run(&mut t, &rc, &mut log).unwrap();
        return o.stopped;
    }
    let o = run(&mut t, &rc, &mut quiet()).unwrap();
    for (name, pts) in &o.losses {
        assert!(!pts.is_empty(), "{name} never reported");
        assert!(pts.iter().all(|p| p.1.is_finite()), "{name} not finite");
    }
    assert!(o.losses.contains_key("R1"), "R1 phase never ran");
    if arch == Arch::StyleGan2 {
        assert!(o.losses.contains_key("PL"), "path-length phase never ran");
    }
    o.stopped
}

fn state(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let ck = Checkpoint::open(dir.join("last.safetensors")).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = ck
        .tensors()
        .iter()
        .filter(|(n, _)| !n.starts_with("curve/"))
        .map(|(n, t)| {
            let bits = t
                .to_vec_f64()
                .unwrap()
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            (n.clone(), bits)
        })
        .collect();
    v.sort();
    for k in ["rng.gan.batch", "f64.gan.pl_mean", "u64.gan.cur_nimg"] {
        v.push((k.into(), ck.meta(k).unwrap().as_bytes().to_vec()));
    }
    v
}

fn resume_is_exact(arch: Arch) {
    unsafe { std::env::set_var("BRAINSYNTH_THREADS", "1") };
    let whole = tmp(&format!("{}-whole", arch.name()));
    let parts = tmp(&format!("{}-parts", arch.name()));
    assert_eq!(train(arch, &whole, 7, None), StopReason::Finished);
    assert_eq!(train(arch, &parts, 7, Some(2)), StopReason::Interrupted);
    assert_eq!(train(arch, &parts, 7, None), StopReason::Finished);
    let (a, b) = (state(&whole), state(&parts));
    assert_eq!(a.len(), b.len());
    for ((na, ba), (nb, bb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ba == bb, "{na} differs after resume");
    }
    // the sample grid and snapshots are there and the snapshot samples
    let names: Vec<String> = std::fs::read_dir(&whole)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("samples-") && n.ends_with(".png"))
    );
    let snap = names
        .iter()
        .find(|n| n.starts_with("snapshot-"))
        .expect("no snapshot");
    let ck = Checkpoint::open(whole.join(snap)).unwrap();
    let g = AnyGenerator::from_checkpoint(&ck).unwrap();
    let out = whole.join("synth.store");
    generate_stylegan(&g, 5, 1.0, 0, 2, Device::Cpu, &out).unwrap();
    let st = read_store(&out).unwrap();
    assert_eq!((st.len(), st.h), (5, 16));
    assert_eq!(st.slices[4].subject, "synthetic_000004");
    for s in &st.slices {
        assert!(
            s.channel(4).iter().all(|&v| [0, 51, 102, 204].contains(&v)),
            "annotation not decoded to label codes"
        );
    }
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&parts);
}

#[test]
fn stylegan2_trains_and_resumes_exactly() {
    resume_is_exact(Arch::StyleGan2);
}

#[test]
fn stylegan3_trains_and_resumes_exactly() {
    resume_is_exact(Arch::StyleGan3);
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn generate_refuses_bad_input_and_writes_nothing() {
    use brainsynth::io::checkpoint::CheckpointWriter;
    let dir = tmp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let gen_args = |ck: &PathBuf, n: &str, out: &PathBuf| {
        let v = [
            "--checkpoint",
            ck.to_str().unwrap(),
            "--n",
            n,
            "--out",
            out.to_str().unwrap(),
        ];
        std::process::Command::new(env!("CARGO_BIN_EXE_brainsynth"))
            .arg("generate")
            .args(v)
            .output()
            .unwrap()
    };
    // a trained tiny generator's weights
    let reals = slices();
    let t = GanTrainer::new(config(Arch::StyleGan2), &reals, None).unwrap();
    let good = dir.join("g.safetensors");
    let mut w = CheckpointWriter::new();
    brainsynth::train::runner::Trainer::save_weights(&t, &mut w).unwrap();
    w.save(&good).unwrap();
    let out = dir.join("synth.store");

    // exit status 2: the command line is wrong; 1: the command ran and failed
    let o = gen_args(&good, "0", &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // another architecture's label on the same file, and another size
    for (key, val) in [
        ("model", "unet"),
        ("model", "stylegan3"),
        ("resolution", "32"),
    ] {
        let ck = Checkpoint::open(&good).unwrap();
        let mut w = CheckpointWriter::new();
        for (k, v) in ck.metadata() {
            w.set_metadata(k, v.clone());
        }
        w.set_metadata(key, val);
        w.add_tensors("", ck.tensors().to_vec());
        let bad = dir.join(format!("bad-{val}.safetensors"));
        w.save(&bad).unwrap();
        let o = gen_args(&bad, "3", &out);
        assert_eq!(o.status.code(), Some(1), "{key}={val}: {}", stderr(&o));
        assert!(!out.exists() && !dir.join("synth.png").exists());
    }

    // an output folder that does not exist
    let nowhere = dir.join("missing").join("synth.store");
    let o = gen_args(&good, "3", &nowhere);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!dir.join("missing").exists());

    let o = gen_args(&good, "3", &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_store(&out).unwrap().len(), 3);
    assert!(dir.join("synth.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
