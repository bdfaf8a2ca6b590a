//! Diffusion training through the runner: a tiny model trains on phantom slices, writes sample
//! grids and a checkpoint `generate` can read; stopped at step k and resumed it ends with the same
//! bits as an uninterrupted run; bad inputs are clear errors.
//!
//! One worker thread (`BRAINSYNTH_THREADS=1`, read once per process): some parallel reductions
//! combine partial sums in the order threads finish (see tests/seg_resume.rs).

mod common;

use std::path::{Path, PathBuf};

use brainsynth::data::phantom::{PhantomConfig, phantom_case};
use brainsynth::data::{Slice, SliceConfig, slices_from_case};
use brainsynth::io::checkpoint::Checkpoint;
use brainsynth::models::diffusion::{BetaSchedule, Sampler};
use brainsynth::tensor::Device;
use brainsynth::train::diffusion::{
    DiffusionTrainConfig, EmaChoice, load_generator, to_slices, train_diffusion,
};
use brainsynth::train::interrupt::StopToken;
use brainsynth::train::runner::{RunConfig, RunLength, StopReason};

fn slices(size: usize) -> Vec<Slice> {
    let cfg = PhantomConfig {
        dims: [64, 64, 24],
        subjects: 2,
        ..PhantomConfig::default()
    };
    let sc = SliceConfig {
        out_size: Some(size),
        ..SliceConfig::default()
    };
    (0..2)
        .flat_map(|i| slices_from_case(&phantom_case(&cfg, i).unwrap(), &sc).unwrap())
        .collect()
}

fn tiny(steps: u64) -> DiffusionTrainConfig {
    DiffusionTrainConfig {
        profile: "test".into(),
        net: common::tiny_diffusion_unet(16, 5, 0.1),
        diffusion_steps: 20,
        noise_schedule: BetaSchedule::Linear,
        batch: 2,
        lr: 1e-3,
        ema_rate: 0.9999,
        fast_ema_rate: 0.9,
        clip: Some(1.0),
        random_flip: true,
        steps,
        sample_every: 3,
        grid_images: 2,
        grid_sampler: Sampler::Respaced(4),
        sample_ema: EmaChoice::Fast,
        seed: 3,
        time_limit: None,
        device: Device::Cpu,
    }
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brainsynth-diff-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn bits(path: &Path) -> Vec<(String, Vec<u64>)> {
    Checkpoint::open(path)
        .unwrap()
        .tensors()
        .iter()
        .map(|(n, t)| {
            let v = t.to_vec_f64().unwrap();
            (n.clone(), v.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

fn rc(dir: &Path, stop: &StopToken) -> RunConfig {
    let mut rc = RunConfig::new(dir, RunLength::Steps(6));
    rc.log_every = 1;
    rc.handle_signals = false;
    rc.stop = stop.clone();
    rc
}

#[test]
fn trains_samples_and_resumes_exactly() {
    // SAFETY: the only test of this binary that trains, before any kernel has started a thread
    unsafe { std::env::set_var("BRAINSYNTH_THREADS", "1") };
    let train = slices(16);
    let cfg = tiny(6);

    let whole = tmp("whole");
    let o = train_diffusion(
        &cfg,
        &train,
        &whole,
        Some(rc(&whole, &StopToken::new())),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((o.steps_done, o.stopped), (6, StopReason::Finished));
    assert!(whole.join("samples-00000003.png").is_file());
    assert!(whole.join("samples-00000006.png").is_file());
    let losses = &o.losses["loss"];
    assert_eq!(losses.len(), 6);
    assert!(losses.iter().all(|(_, l)| l.is_finite() && *l > 0.0));

    let split = tmp("split");
    let stop = StopToken::new();
    let o1 = train_diffusion(&cfg, &train, &split, Some(rc(&split, &stop)), &mut |l| {
        if l.contains("iter 3/6") {
            stop.stop();
        }
    })
    .unwrap();
    assert_eq!((o1.steps_done, o1.stopped), (3, StopReason::Interrupted));
    let mut lines = Vec::new();
    let o2 = train_diffusion(
        &cfg,
        &train,
        &split,
        Some(rc(&split, &StopToken::new())),
        &mut |l| lines.push(l.to_string()),
    )
    .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("resuming") && l.contains("iteration 3")),
        "{lines:?}"
    );
    assert_eq!(o2.steps_done, 6);
    assert_eq!(o2.losses["loss"], o.losses["loss"]);
    let (a, b) = (
        bits(&whole.join("last.safetensors")),
        bits(&split.join("last.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(va == vb, "{na} differs after resuming");
    }
    // the model, both EMAs and the optimiser are all in the state
    for section in ["model/", "ema/", "ema_fast/", "opt/"] {
        assert!(a.iter().any(|(n, _)| n.starts_with(section)), "{section}");
    }

    // the checkpoint rebuilds the generator; same seed, same images
    let g = load_generator(&whole.join("last.safetensors"), None, Device::Cpu).unwrap();
    assert_eq!(g.weights, EmaChoice::Fast);
    let x = g.sample(Sampler::Ddim(5), 3, 2, 9).unwrap();
    assert_eq!(x.shape, [3, 5, 16, 16]);
    assert!(x.data.iter().all(|v| v.is_finite()));
    assert_eq!(x, g.sample(Sampler::Ddim(5), 3, 2, 9).unwrap());
    let s = to_slices(&x, "synthetic").unwrap();
    assert_eq!(s.len(), 3);

    // K > T and K = 0 are errors that say why
    let e = g
        .sample(Sampler::Respaced(21), 1, 1, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("20-step"), "{e}");
    let e = g.sample(Sampler::Ddim(0), 1, 1, 0).unwrap_err().to_string();
    assert!(e.contains("1 to 20"), "{e}");
    assert!(Sampler::parse("ddim:0").is_err());

    // a checkpoint of another model is refused before anything is built
    let other = whole.join("other.safetensors");
    let mut w = brainsynth::io::checkpoint::CheckpointWriter::new();
    w.set_model_info("unet", "quick", 1);
    w.save(&other).unwrap();
    let e = load_generator(&other, None, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unet model, not a diffusion"), "{e}");
    // a store of the wrong size is refused with the size to use
    let e = train_diffusion(&cfg, &slices(32), &tmp("size"), None, &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("32×32") && e.contains("--size 16"), "{e}");
    for d in [whole, split] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn profiles_are_the_study_flags_and_a_small_quick_model() {
    let p = DiffusionTrainConfig::for_profile("paper", 0).unwrap();
    assert_eq!(
        (p.net.image_size, p.net.model_channels, p.net.num_res_blocks),
        (256, 64, 3)
    );
    assert_eq!(p.net.channel_mult, vec![1, 1, 2, 2, 4, 4]);
    assert_eq!(p.net.attention_ds, vec![16, 32]);
    assert_eq!((p.diffusion_steps, p.batch, p.lr), (4000, 32, 1e-4));
    assert_eq!((p.ema_rate, p.clip), (0.9999, None));
    assert_eq!(p.noise_schedule, BetaSchedule::Linear);
    let q = DiffusionTrainConfig::for_profile("quick", 0).unwrap();
    assert_eq!(q.net.image_size, 64);
    assert_eq!(q.net.attention_ds, vec![4, 8]);
    assert!(DiffusionTrainConfig::for_profile("huge", 0).is_err());
}
