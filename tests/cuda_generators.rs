//! The five generators train and sample on the GPU: a tiny StyleGAN2, StyleGAN3-T, ProGAN,
//! StyleGAN 1 and diffusion model each take their first training steps (every phase that
//! runs at step 0: G main, G regulariser, D main, D regulariser) on the GPU and on the CPU from
//! the same seed. On both devices the same phases run with finite losses, the loss computed
//! before any update agrees (relative 1e-4, both in f32), and the steps update exactly the same
//! parameters (a step that reads its gradients on the host would skip them on the GPU; the
//! values themselves part after an update, see `compare`). Then each writes its sample grid
//! from the GPU (noise inputs, style mixing, the diffusion sampler). Skips with a printed
//! reason when no GPU is present.
#![cfg(feature = "cuda")]

mod common;
#[path = "common/gpu.rs"]
mod gpu;
use gpu::*;

use brainsynth::data::Slice;
use brainsynth::models::diffusion::{BetaSchedule, Sampler};
use brainsynth::models::gan::growing::{GrowthSchedule, ProgressiveConfig};
use brainsynth::models::gan::progan::ProGanConfig;
use brainsynth::models::gan::{Arch, GanConfig};
use brainsynth::nn::ParamStore;
use brainsynth::tensor::Device;
use brainsynth::train::diffusion::{DiffusionTrainConfig, DiffusionTrainer, EmaChoice};
use brainsynth::train::gan::{
    GanTrainConfig, GanTrainer, GrowingNet, ProgressiveGanTrainer, ProgressiveTrainConfig,
};
use brainsynth::train::runner::Trainer;
use common::TempDir;

fn slices(side: usize, n: usize) -> Vec<Slice> {
    (0..n)
        .map(|i| Slice {
            subject: format!("s{i}"),
            index: i as u32,
            h: side,
            w: side,
            data: (0..5 * side * side)
                .map(|k| ((k * 37 + i * 101) % 256) as u8)
                .collect(),
        })
        .collect()
}

/// Steps 0..steps of `t`: each step's losses.
fn losses(t: &mut dyn Trainer, steps: u64) -> Vec<Vec<(String, f64)>> {
    (0..steps)
        .map(|s| {
            let out = t.step(s).unwrap();
            out.losses
                .iter()
                .map(|(n, v)| (n.to_string(), *v))
                .collect()
        })
        .collect()
}

/// Every loss finite on the GPU, and `first` (the loss of the phase that runs before any
/// update) at step 0 equal to the CPU's: after an update the two runs part, since Adam's first
/// step is close to lr·sign(g) and rounding flips the sign of near-zero gradients.
fn compare(what: &str, first: &str, gpu: &[Vec<(String, f64)>], cpu: &[Vec<(String, f64)>]) {
    assert_eq!(gpu.len(), cpu.len());
    for (s, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        let names = |v: &[(String, f64)]| v.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(g), names(c), "{what} step {s}: other phases ran");
        for (name, a) in g {
            assert!(a.is_finite(), "{what} step {s}: {name} = {a} on the GPU");
        }
    }
    let find = |v: &[(String, f64)]| {
        v.iter()
            .find(|p| p.0 == first)
            .map(|p| p.1)
            .unwrap_or_else(|| panic!("{what}: no {first} loss at step 0"))
    };
    let (a, b) = (find(&gpu[0]), find(&cpu[0]));
    let rel = (a - b).abs() / b.abs().max(1e-3);
    assert!(
        rel < 1e-4,
        "{what} step 0: {first} {a} on the GPU vs {b} on the CPU (relative {rel:.2e})"
    );
}

/// A fresh output folder for a trainer (the runner makes it in real runs).
fn out_dir(dir: &TempDir, sub: &str) -> std::path::PathBuf {
    let p = dir.path().join(sub);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The sample grid the trainer just wrote: one non-empty `samples-*.png` in `dir`.
fn grid_written(dir: &std::path::Path) {
    let grids: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("samples-") && n.ends_with(".png")
        })
        .collect();
    assert_eq!(
        grids.len(),
        1,
        "sample grids in {}: {grids:?}",
        dir.display()
    );
    assert!(std::fs::metadata(&grids[0]).unwrap().len() > 0);
}

fn style_config(arch: Arch, device: Device) -> GanTrainConfig {
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
        device,
    }
}

/// Each parameter's values, read through the host.
fn values(store: &ParamStore) -> Vec<(String, Vec<f64>)> {
    store
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.to_device(Device::Cpu).unwrap().to_vec_f64().unwrap()))
        .collect()
}

/// The names of the parameters whose values differ from `before`.
fn moved(before: &[(String, Vec<f64>)], store: &ParamStore) -> Vec<String> {
    before
        .iter()
        .zip(values(store))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((n, _), _)| n.clone())
        .collect()
}

fn style_gan(arch: Arch, tag: &str) {
    let Some(gpu) = gpu_or_skip(tag) else {
        return;
    };
    let reals = slices(16, 6);
    let dir = TempDir::new(tag);
    // losses, and which parameters of G and D the steps updated
    let run = |device: Device, sub: &str| {
        let mut t =
            GanTrainer::new(style_config(arch, device), &reals, Some(out_dir(&dir, sub))).unwrap();
        let (g0, d0) = (values(&t.g_store()), values(&t.d_store()));
        let l = losses(&mut t, 2);
        let updated = (moved(&g0, &t.g_store()), moved(&d0, &t.d_store()));
        (t, l, updated)
    };
    let (_, cpu, cpu_moved) = run(Device::Cpu, "cpu");
    let (mut t, on_gpu, gpu_moved) = run(gpu.device, "gpu");
    // every parameter the CPU's steps changed, the GPU's changed too (an update that reads its
    // gradients on the host would skip them all on the GPU)
    assert!(!cpu_moved.0.is_empty() && !cpu_moved.1.is_empty());
    assert_eq!(gpu_moved, cpu_moved, "{tag}: updated parameters (G, D)");
    compare(tag, "G", &on_gpu, &cpu);
    // the sample grid, sampled on the GPU
    t.validate(2).unwrap();
    grid_written(&dir.path().join("gpu"));
}

#[test]
fn stylegan2_trains_and_samples_on_the_gpu() {
    style_gan(Arch::StyleGan2, "stylegan2_gpu");
}

#[test]
fn stylegan3_trains_and_samples_on_the_gpu() {
    style_gan(Arch::StyleGan3, "stylegan3_gpu");
}

fn growing_config(
    net: GrowingNet,
    train: ProgressiveConfig,
    device: Device,
) -> ProgressiveTrainConfig {
    ProgressiveTrainConfig {
        profile: "test".into(),
        net,
        train,
        seed: 7,
        grid: 2,
        device,
    }
}

/// 16×16, 4 images per step: 4×4 for 2 steps, then 8×8 fading in, so the steps run the
/// fading path too.
fn schedule() -> GrowthSchedule {
    GrowthSchedule {
        final_resolution: 16,
        initial_resolution: 4,
        training_kimg: 0.008,
        transition_kimg: 0.016,
        batch_base: 4,
        batch_per_resolution: vec![],
        lr_per_resolution: vec![(16, 0.002)],
        minibatch_repeats: 1,
    }
}

fn growing(make: impl Fn(Device) -> ProgressiveTrainConfig, tag: &str) {
    let Some(gpu) = gpu_or_skip(tag) else {
        return;
    };
    let reals = slices(16, 6);
    let dir = TempDir::new(tag);
    let run = |device: Device, sub: &str| {
        let mut t =
            ProgressiveGanTrainer::new(make(device), &reals, Some(out_dir(&dir, sub))).unwrap();
        let (g0, d0) = (values(t.core.g.store()), values(t.core.d.store()));
        let l = losses(&mut t, 3);
        let updated = (moved(&g0, t.core.g.store()), moved(&d0, t.core.d.store()));
        (t, l, updated)
    };
    let (_, cpu, cpu_moved) = run(Device::Cpu, "cpu");
    let (mut t, on_gpu, gpu_moved) = run(gpu.device, "gpu");
    assert!(!cpu_moved.0.is_empty() && !cpu_moved.1.is_empty());
    assert_eq!(gpu_moved, cpu_moved, "{tag}: updated parameters (G, D)");
    compare(tag, "D", &on_gpu, &cpu);
    t.validate(3).unwrap();
    grid_written(&dir.path().join("gpu"));
}

#[test]
fn progan_trains_and_samples_on_the_gpu() {
    growing(
        |device| {
            growing_config(
                GrowingNet::ProGan(ProGanConfig {
                    latent_size: 6,
                    resolution: 16,
                    channels: 5,
                    fmap_base: 32,
                    fmap_max: 8,
                    mbstd_group: 4,
                }),
                ProgressiveConfig::progan(schedule()),
                device,
            )
        },
        "progan_gpu",
    );
}

#[test]
fn stylegan1_trains_and_samples_on_the_gpu() {
    growing(
        |device| {
            growing_config(
                GrowingNet::StyleGan1(GanConfig {
                    z_dim: 8,
                    w_dim: 8,
                    resolution: 16,
                    channels: 5,
                    channel_base: 64,
                    channel_max: 8,
                    mapping_layers: 2,
                    conv_clamp: None,
                    mbstd_group: 4,
                }),
                ProgressiveConfig::stylegan1(schedule()),
                device,
            )
        },
        "stylegan1_gpu",
    );
}

#[test]
fn diffusion_trains_and_samples_on_the_gpu() {
    let Some(gpu) = gpu_or_skip("diffusion_gpu") else {
        return;
    };
    let reals = slices(16, 6);
    let dir = TempDir::new("diffusion_gpu");
    let cfg = |device: Device| DiffusionTrainConfig {
        profile: "test".into(),
        net: common::tiny_diffusion_unet(16, 5, 0.0),
        diffusion_steps: 20,
        noise_schedule: BetaSchedule::Linear,
        batch: 2,
        lr: 1e-3,
        ema_rate: 0.9999,
        fast_ema_rate: 0.9,
        clip: Some(1.0),
        random_flip: true,
        steps: 2,
        sample_every: 3,
        grid_images: 2,
        grid_sampler: Sampler::Respaced(4),
        sample_ema: EmaChoice::Fast,
        seed: 3,
        time_limit: None,
        device,
    };
    let (cc, gc) = (cfg(Device::Cpu), cfg(gpu.device));
    let (cpu, cpu_moved) = {
        let mut t = DiffusionTrainer::new(&cc, &reals, &out_dir(&dir, "cpu")).unwrap();
        let w0 = values(t.store());
        (losses(&mut t, 2), moved(&w0, t.store()))
    };
    let mut t = DiffusionTrainer::new(&gc, &reals, &out_dir(&dir, "gpu")).unwrap();
    let w0 = values(t.store());
    let on_gpu = losses(&mut t, 2);
    compare("diffusion", "loss", &on_gpu, &cpu);
    assert!(!cpu_moved.is_empty());
    assert_eq!(
        moved(&w0, t.store()),
        cpu_moved,
        "diffusion: updated parameters"
    );
    // ancestral over 4 respaced steps, then DDIM
    t.write_grid(2).unwrap();
    grid_written(&dir.path().join("gpu"));
    let mut c2 = gc.clone();
    c2.grid_sampler = Sampler::Ddim(4);
    let mut t2 = DiffusionTrainer::new(&c2, &reals, &out_dir(&dir, "gpu2")).unwrap();
    t2.write_grid(0).unwrap();
    grid_written(&dir.path().join("gpu2"));
}
