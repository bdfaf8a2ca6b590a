//! StyleGAN2 and StyleGAN3-T at exactly the configuration of `shared/anchors/cpu_generators.py`
//! (64×64×5, z = w = 256, channel_base 2048, channel_max 128, mapping 8 / 2 layers, batch 32,
//! minibatch-stddev group 4): `generate` (one batch of G at ψ = 1, constant noise, no gradients)
//! and each training phase with its Adam step (G main, G reg with gain 4, D main, D reg with
//! gain 16), from which the amortised step = G main + D main + G reg/4 + D reg/16 is formed as
//! the anchor script forms it. Read beside that script's numbers (see `benches/README.md`).
//! `GAN_BENCH=sg2` or `sg3` runs one architecture only.

use std::time::Duration;

use brainsynth::models::gan::loss::{LossConfig, Phase, StyleGan2Loss, StyleGenerator};
use brainsynth::models::gan::{
    Discriminator, GanConfig, Noise, Sg3Settings, StyleGan2Generator, StyleGan3Generator,
};
use brainsynth::nn::ParamStore;
use brainsynth::optim::{Adam, AdamConfig, Optimizer, lazy_regularization};
use brainsynth::{DType, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const BATCH: usize = 32;

fn adam(store: &ParamStore, lr: f64, interval: Option<u32>) -> Adam {
    let (lr, (b1, b2)) = lazy_regularization(lr, (0.0, 0.99), interval);
    Adam::new(
        store,
        AdamConfig::adam(lr).with_betas(b1, b2).with_eps(1e-8),
    )
    .unwrap()
}

fn phases(c: &mut Criterion, tag: &str, g: &dyn StyleGenerator, loss_cfg: LossConfig, g_lr: f64) {
    let cfg = GanConfig::bench_stylegan2();
    let ds = ParamStore::new(2);
    let d = Discriminator::new(&ds, &cfg).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let reals = Tensor::rand_uniform(&[BATCH, 5, 64, 64], -1.0, 1.0, DType::F32, &mut rng);
    let mut loss = StyleGan2Loss::new(loss_cfg);
    let mut g_opt = adam(g.store(), g_lr, Some(4));
    let mut d_opt = adam(&ds, 0.002, Some(16));
    let mut group = c.benchmark_group(format!("gan/{tag}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let list: &[(Phase, f64, &str)] = if loss.config.pl_weight > 0.0 {
        &[
            (Phase::GMain, 1.0, "Gmain"),
            (Phase::GReg, 4.0, "Greg"),
            (Phase::DMain, 1.0, "Dmain"),
            (Phase::DReg, 16.0, "Dreg"),
        ]
    } else {
        &[
            (Phase::GMain, 1.0, "Gmain"),
            (Phase::DMain, 1.0, "Dmain"),
            (Phase::DReg, 16.0, "Dreg"),
        ]
    };
    for &(phase, gain, name) in list {
        group.bench_function(format!("{name} b{BATCH}"), |b| {
            b.iter(|| {
                let is_g = matches!(phase, Phase::GMain | Phase::GReg);
                let z = Tensor::randn(&[BATCH, 256], DType::F32, &mut rng);
                let (store, opt) = if is_g {
                    (g.store().clone(), &mut g_opt)
                } else {
                    (ds.clone(), &mut d_opt)
                };
                store.zero_grad();
                loss.accumulate_gradients(phase, g, &d, &reals, &z, gain, 1_000_000, &mut rng)
                    .unwrap();
                opt.step().unwrap();
            })
        });
    }
    group.finish();
}

fn gan_step(c: &mut Criterion) {
    let which = std::env::var("GAN_BENCH").unwrap_or_default();
    let mut rng = StdRng::seed_from_u64(1);
    let z = Tensor::randn(&[BATCH, 256], DType::F32, &mut rng);
    if which.is_empty() || which == "sg2" {
        let gs = ParamStore::new(1);
        let g = StyleGan2Generator::new(&gs, &GanConfig::bench_stylegan2()).unwrap();
        // `generate` on the CPU runs the non-fused modulated conv (`AnyGenerator::sample`);
        // NVlabs' (the anchor's) inference runs the fused form, the same product
        let fused = false;
        // BRAINSYNTH_PROFILE=1: print where one `generate` batch's time goes, per kernel
        if brainsynth::profile::enabled() {
            let _off = brainsynth::autograd::no_grad_guard();
            brainsynth::profile::disable();
            g.forward(&z, 1.0, &mut Noise::Const, fused).unwrap();
            brainsynth::profile::reset();
            brainsynth::profile::enable();
            for _ in 0..3 {
                g.forward(&z, 1.0, &mut Noise::Const, fused).unwrap();
            }
            brainsynth::profile::disable();
            eprintln!(
                "sg2 generate b{BATCH}, profiled:\n{}",
                brainsynth::profile::report(3)
            );
        }
        let mut group = c.benchmark_group("gan/sg2");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        group.bench_function(format!("generate b{BATCH}"), |b| {
            b.iter(|| {
                let _off = brainsynth::autograd::no_grad_guard();
                g.forward(&z, 1.0, &mut Noise::Const, fused).unwrap()
            })
        });
        group.finish();
        phases(c, "sg2", &g, LossConfig::stylegan2(1.0), 0.002);
    }
    if which.is_empty() || which == "sg3" {
        let cfg = GanConfig {
            mapping_layers: 2,
            ..GanConfig::bench_stylegan2()
        };
        let gs = ParamStore::new(1);
        let g = StyleGan3Generator::new(&gs, &cfg, &Sg3Settings::for_batch(BATCH)).unwrap();
        let mut group = c.benchmark_group("gan/sg3");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        group.bench_function(format!("generate b{BATCH}"), |b| {
            b.iter(|| {
                let _off = brainsynth::autograd::no_grad_guard();
                g.forward(&z, 1.0).unwrap()
            })
        });
        group.finish();
        // the anchor runs StyleGAN3 with the StyleGAN2 loss settings minus path length, no blur
        let loss = LossConfig {
            style_mixing_prob: 0.0,
            pl_weight: 0.0,
            ..LossConfig::stylegan2(1.0)
        };
        phases(c, "sg3", &g, loss, 0.0025);
    }
}

criterion_group!(benches, gan_step);
criterion_main!(benches);
