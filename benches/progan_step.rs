//! One Progressive GAN training step at the quick profile's configuration, at its final level
//! (64×64×5, latent 128, fmap_base 1024, fmap_max 64, batch 16, WGAN-GP): D step (critic loss,
//! gradient penalty by double backward, drift; Adam) + G step (Adam) + G_ema update, as
//! `ProgressiveCore::step` runs it. Read beside `benches/progan_torch.py` (the same network and
//! step in PyTorch), run in the same sitting (see `benches/README.md`).

use std::time::Duration;

use brainsynth::models::gan::growing::{GrowthSchedule, ProgressiveCore};
use brainsynth::nn::ParamStore;
use brainsynth::train::gan::{GrowingArch, ProgressiveProfile};
use brainsynth::{DType, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const BATCH: usize = 16;

fn progan_step(c: &mut Criterion) {
    let profile = ProgressiveProfile::quick(GrowingArch::ProGan).unwrap();
    let mut train = profile.train.clone();
    // the final level from the first step: start at 64×64, no growing
    train.schedule = GrowthSchedule {
        initial_resolution: 64,
        training_kimg: 0.0,
        transition_kimg: 0.0,
        batch_base: BATCH,
        batch_per_resolution: vec![],
        ..train.schedule
    };
    let g = profile
        .net
        .generator(&ParamStore::with_dtype(1, DType::F32))
        .unwrap();
    let d = profile
        .net
        .discriminator(&ParamStore::with_dtype(2, DType::F32))
        .unwrap();
    let mut core = ProgressiveCore::new(g, d, train).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let reals = Tensor::rand_uniform(&[BATCH, 5, 64, 64], -1.0, 1.0, DType::F32, &mut rng);
    assert_eq!(core.plan().unwrap().growth.resolution(), 64);
    // BRAINSYNTH_PROFILE=1: print where one step's time goes, per kernel (3 steps after a warm-up)
    if brainsynth::profile::enabled() {
        brainsynth::profile::disable();
        core.step(&mut |_| Ok(reals.clone()), &mut rng).unwrap();
        brainsynth::profile::reset();
        brainsynth::profile::enable();
        for _ in 0..3 {
            core.step(&mut |_| Ok(reals.clone()), &mut rng).unwrap();
        }
        brainsynth::profile::disable();
        eprintln!(
            "progan step b{BATCH}, profiled:\n{}",
            brainsynth::profile::report(3)
        );
    }
    let mut group = c.benchmark_group("progan");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    group.bench_function(format!("step 64x64 b{BATCH}"), |b| {
        b.iter(|| {
            core.step(&mut |_| Ok(reals.clone()), &mut rng).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, progan_step);
criterion_main!(benches);
