//! One training step (forward, backward, AdamW) and one denoising forward of the diffusion U-Net
//! at the CPU anchors' configurations (`shared/anchors/cpu_generators.py` `diff32`/`diff64`):
//! 64×64×5, widths 32 and 64, channel multipliers 1,2,3,4, 3 res blocks, attention at 16 and 8
//! with 4 heads, scale-shift norm, batch 16, t uniform over 4000 steps. Read beside that script's
//! numbers measured in the same sitting (see `benches/README.md`).
//!
//! `BENCH_WIDTHS=32` (or `64`, or `32,64`, the default) picks the configurations.

use std::time::Duration;

use brainsynth::autograd::no_grad;
use brainsynth::models::diffusion::{
    Diffusion, DiffusionUNet, DiffusionUNetConfig, Schedule, draw_t_noise, study_optimizer_config,
    train_step,
};
use brainsynth::nn::ParamStore;
use brainsynth::optim::Adam;
use brainsynth::{DType, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const BATCH: usize = 16;

fn bench(c: &mut Criterion) {
    let widths: Vec<usize> = std::env::var("BENCH_WIDTHS")
        .unwrap_or_else(|_| "32,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut g = c.benchmark_group("diffusion");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    for w in widths {
        let store = ParamStore::new(0);
        let model = DiffusionUNet::new(&store.root(), DiffusionUNetConfig::bench(w)).unwrap();
        let d = Diffusion::new(Schedule::study());
        let mut opt = Adam::new(&store, study_optimizer_config()).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let x0 = Tensor::randn(&[BATCH, 5, 64, 64], DType::F32, &mut rng);
        println!("diff{w}: {} parameters", store.num_params());
        // BRAINSYNTH_PROFILE=1: print where one training step's time goes, per kernel (3 steps
        // after a warm-up)
        if brainsynth::profile::enabled() {
            brainsynth::profile::disable();
            let mut step = || {
                let (t, noise) = draw_t_noise(&d, &x0, &mut rng).unwrap();
                train_step(
                    &model, &d, &store, &mut opt, &x0, &t, &noise, None, None, &mut rng,
                )
                .unwrap();
            };
            step();
            brainsynth::profile::reset();
            brainsynth::profile::enable();
            for _ in 0..3 {
                step();
            }
            brainsynth::profile::disable();
            eprintln!(
                "diff{w} train step b{BATCH}, profiled:\n{}",
                brainsynth::profile::report(3)
            );
        }
        g.bench_function(format!("train_step_w{w}_b{BATCH}"), |b| {
            b.iter(|| {
                let (t, noise) = draw_t_noise(&d, &x0, &mut rng).unwrap();
                train_step(
                    &model, &d, &store, &mut opt, &x0, &t, &noise, None, None, &mut rng,
                )
                .unwrap()
            })
        });
        let t = Tensor::full(10.0, &[BATCH], DType::F32);
        g.bench_function(format!("denoise_forward_w{w}_b{BATCH}"), |b| {
            b.iter(|| no_grad(|| model.forward(&x0, &t).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
