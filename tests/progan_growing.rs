//! Progressive growing of the Progressive GAN:
//! - the fade-in: at α = 0 G's output is the previous level's output nearest-upsampled and D's
//!   score is the previous level's score of the 2×2-pooled image; at α = 1 the previous level's
//!   toRGB / fromRGB no longer matter; in between, the blend is linear in α;
//! - WGAN-GP through the fading D: second-order gradient checks with `brainsynth::testing`
//!   (w.r.t. the input) and finite differences of the penalty w.r.t. weights of every layer;
//! - an interrupted run resumed mid-fade takes the same next steps, bit for bit;
//! - bad input: another architecture's or schedule's checkpoint, a store of another slice size.

mod common;

use brainsynth::autograd::{GradOptions, grad_with};
use brainsynth::data::Slice;
use brainsynth::io::checkpoint::{Checkpoint, CheckpointWriter};
use brainsynth::models::gan::growing::{Growth, GrowthSchedule, ProgressiveConfig, upsample2x};
use brainsynth::models::gan::progan::{ProGanConfig, ProGanDiscriminator, ProGanGenerator};
use brainsynth::nn::ParamStore;
use brainsynth::ops::loss::wgan_gp_penalty_with;
use brainsynth::optim::Optimizer;
use brainsynth::testing::{check_grad2, rand_tensor};
use brainsynth::train::gan::{GrowingNet, ProgressiveGanTrainer, ProgressiveTrainConfig};
use brainsynth::train::runner::Trainer;
use brainsynth::{DType, Device, Tensor};
use common::TempDir;

fn cfg() -> ProGanConfig {
    ProGanConfig {
        latent_size: 6,
        resolution: 16,
        channels: 5,
        fmap_base: 32,
        fmap_max: 8,
        mbstd_group: 2,
    }
}

fn nets() -> (ProGanGenerator, ProGanDiscriminator) {
    let g = ProGanGenerator::new(&ParamStore::with_dtype(3, DType::F64), &cfg()).unwrap();
    let d = ProGanDiscriminator::new(&ParamStore::with_dtype(4, DType::F64), &cfg()).unwrap();
    (g, d)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    a.iter().zip(&b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn scramble(t: &Tensor, seed: u64) {
    t.assign(&rand_tensor(t.shape(), seed)).unwrap();
}

#[test]
fn fade_in_at_alpha_0_is_the_previous_level_resampled_and_at_1_the_new_level_alone() {
    let (g, d) = nets();
    let z = rand_tensor(&[4, 6], 1);
    for level in 1..=2 {
        let prev = g.forward(&z, Growth::stable(level - 1)).unwrap();
        let at0 = g.forward(&z, Growth { level, alpha: 0.0 }).unwrap();
        assert!(
            max_diff(&at0, &upsample2x(&prev).unwrap()) < 1e-12,
            "G α 0, level {level}"
        );
        let new = g.forward(&z, Growth::stable(level)).unwrap();
        let at1 = g.forward(&z, Growth { level, alpha: 1.0 }).unwrap();
        assert_eq!(max_diff(&at1, &new), 0.0);
        // linear in α between the two
        let mid = g.forward(&z, Growth { level, alpha: 0.25 }).unwrap();
        let want = at0
            .mul_scalar(0.75)
            .unwrap()
            .add(&new.mul_scalar(0.25).unwrap())
            .unwrap();
        assert!(max_diff(&mid, &want) < 1e-12, "G α 0.25, level {level}");

        let r = 4usize << level;
        let img = rand_tensor(&[4, 5, r, r], 2);
        let pooled = brainsynth::models::gan::growing::downsample2x(&img).unwrap();
        let d_prev = d.forward(&pooled, Growth::stable(level - 1)).unwrap();
        let d0 = d.forward(&img, Growth { level, alpha: 0.0 }).unwrap();
        // the new block still runs at α 0 but is weighted 0: the previous level's score
        assert!(max_diff(&d0, &d_prev) < 1e-12, "D α 0, level {level}");
    }
    // at α = 1 the previous level's toRGB / fromRGB do not matter; at α < 1 they do
    let img = rand_tensor(&[4, 5, 16, 16], 5);
    let g1 = g.forward(&z, Growth::stable(2)).unwrap();
    let gf = g
        .forward(
            &z,
            Growth {
                level: 2,
                alpha: 0.5,
            },
        )
        .unwrap();
    let d1 = d.forward(&img, Growth::stable(2)).unwrap();
    let df = d
        .forward(
            &img,
            Growth {
                level: 2,
                alpha: 0.5,
            },
        )
        .unwrap();
    scramble(&g.torgb[1].conv.weight, 9);
    scramble(&d.fromrgb[1].conv.weight, 10);
    assert_eq!(
        max_diff(&g.forward(&z, Growth::stable(2)).unwrap(), &g1),
        0.0
    );
    assert_eq!(
        max_diff(&d.forward(&img, Growth::stable(2)).unwrap(), &d1),
        0.0
    );
    assert!(
        max_diff(
            &g.forward(
                &z,
                Growth {
                    level: 2,
                    alpha: 0.5
                }
            )
            .unwrap(),
            &gf
        ) > 1e-6
    );
    assert!(
        max_diff(
            &d.forward(
                &img,
                Growth {
                    level: 2,
                    alpha: 0.5
                }
            )
            .unwrap(),
            &df
        ) > 1e-6
    );
}

#[test]
fn wgan_gp_through_the_fading_discriminator_is_second_order_correct() {
    let (_, d) = nets();
    let gr = Growth {
        level: 1,
        alpha: 0.4,
    };
    // (a) second order w.r.t. the input: ⟨∇ₓD, v⟩ differentiated again, against differences
    let x = rand_tensor(&[2, 5, 8, 8], 11);
    let c = check_grad2(|xs| d.forward(&xs[0], gr), std::slice::from_ref(&x), 1e-5).unwrap();
    assert!(c.max_err < 1e-6, "second-order check through D: {c:?}");

    // (b) ∂GP/∂w by double backward against central differences of GP itself, a few elements
    //     of every weight of the fading path
    let gp = || wgan_gp_penalty_with(&x, 10.0, 1.0, |x| d.forward(x, gr)).unwrap();
    let named = d.store.named_tensors();
    let params: Vec<Tensor> = named.iter().map(|(_, p)| p.clone()).collect();
    let grads = grad_with(
        &[gp()],
        None,
        &params,
        GradOptions {
            create_graph: false,
            allow_unused: true,
        },
    )
    .unwrap();
    let eps = 1e-6;
    let mut compared = 0;
    for ((name, p), g) in named.iter().zip(&grads) {
        let gv = g.to_vec_f64().unwrap();
        let vals = p.to_vec_f64().unwrap();
        for j in [0, vals.len() / 2, vals.len() - 1] {
            let set = |v: f64| {
                let mut w = vals.clone();
                w[j] = v;
                p.assign(&Tensor::from_f64s(&w, p.shape(), DType::F64).unwrap())
                    .unwrap();
            };
            set(vals[j] + eps);
            let up = gp().item().unwrap();
            set(vals[j] - eps);
            let down = gp().item().unwrap();
            set(vals[j]);
            let num = (up - down) / (2.0 * eps);
            let err = (gv[j] - num).abs() / num.abs().max(1.0);
            assert!(err < 1e-5, "∂GP/∂{name}[{j}]: {} vs {num}", gv[j]);
            compared += 1;
        }
    }
    // fromRGB of levels 0 and 1, block 8, the 4×4 epilogue: every layer on the fading path
    assert!(compared >= 3 * 10, "{compared} derivatives compared");
}

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

/// 16×16, 4 images per step, schedule updated every step: 4×4 for 2 steps, 8×8 fades in over 4,
/// stable 2, 16×16 fades in over 4.
fn train_cfg(transition_kimg: f64) -> ProgressiveTrainConfig {
    let schedule = GrowthSchedule {
        final_resolution: 16,
        initial_resolution: 4,
        training_kimg: 0.008,
        transition_kimg,
        batch_base: 4,
        batch_per_resolution: vec![],
        lr_per_resolution: vec![(16, 0.002)],
        minibatch_repeats: 1,
    };
    ProgressiveTrainConfig {
        profile: "test".into(),
        net: GrowingNet::ProGan(ProGanConfig {
            mbstd_group: 4,
            ..cfg()
        }),
        train: ProgressiveConfig::progan(schedule),
        seed: 7,
        grid: 2,
        device: Device::Cpu,
    }
}

fn g_values(t: &ProgressiveGanTrainer) -> Vec<f32> {
    t.core
        .g
        .store()
        .named_tensors()
        .iter()
        .flat_map(|(_, p)| p.to_vec_f32().unwrap())
        .collect()
}

#[test]
fn a_run_resumed_mid_fade_takes_the_same_next_steps() {
    let reals = slices(16, 6);
    let dir = TempDir::new("progan-resume");
    let mut a = ProgressiveGanTrainer::new(train_cfg(0.016), &reals, None).unwrap();
    for s in 0..4 {
        a.step(s).unwrap();
    }
    let st = a.schedule_state();
    assert_eq!(st.growth.level, 1);
    assert!(st.growth.is_fading(), "stopped mid-fade: {st:?}");
    let path = dir.path().join("last.safetensors");
    let mut w = CheckpointWriter::new();
    a.save_state(&mut w).unwrap();
    w.save(&path).unwrap();
    let mut b = ProgressiveGanTrainer::new(train_cfg(0.016), &reals, None).unwrap();
    b.load_state(&Checkpoint::open(&path).unwrap()).unwrap();
    // on through the end of the fade (optimiser reset), the stable phase and into the next fade
    for s in 4..11 {
        let oa = a.step(s).unwrap();
        let ob = b.step(s).unwrap();
        assert_eq!(oa.losses, ob.losses, "step {s}");
    }
    assert_eq!(a.schedule_state(), b.schedule_state());
    assert_eq!(a.schedule_state().growth.level, 2);
    assert_eq!(g_values(&a), g_values(&b));
    assert!(
        a.core.g_opt.lr() == 0.002,
        "the 16×16 learning rate is in force"
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let reals = slices(16, 6);
    let dir = TempDir::new("progan-bad");
    let mut a = ProgressiveGanTrainer::new(train_cfg(0.016), &reals, None).unwrap();
    a.step(0).unwrap();
    let path = dir.path().join("last.safetensors");
    let mut w = CheckpointWriter::new();
    a.save_state(&mut w).unwrap();
    w.save(&path).unwrap();
    let ck = Checkpoint::open(&path).unwrap();

    // another schedule
    let mut b = ProgressiveGanTrainer::new(train_cfg(0.032), &reals, None).unwrap();
    let before = g_values(&b);
    let e = b.load_state(&ck).unwrap_err().to_string();
    assert!(e.contains("schedule"), "{e}");
    assert_eq!(g_values(&b), before, "nothing loaded");

    // another architecture's checkpoint
    let other = dir.path().join("other.safetensors");
    let mut w = CheckpointWriter::new();
    w.set_metadata("model", "stylegan2");
    w.save(&other).unwrap();
    let e = b
        .load_state(&Checkpoint::open(&other).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("stylegan2") && e.contains("progan"), "{e}");

    // a store of another slice size
    let small = slices(8, 3);
    let e = ProgressiveGanTrainer::new(train_cfg(0.016), &small, None)
        .err()
        .expect("8×8 slices for a 16×16 network")
        .to_string();
    assert!(e.contains("8×8") && e.contains("--size 16"), "{e}");

    // a ψ on a network without truncation, and a growth above the top level
    let s = a.g_ema().unwrap();
    let z = Tensor::zeros(&[1, 6], DType::F32);
    let trunc = brainsynth::models::gan::growing::Truncation {
        psi: 0.7,
        cutoff: None,
    };
    let e = s.sample(&z, trunc).unwrap_err().to_string();
    assert!(e.contains("truncation"), "{e}");
    let (g, _) = nets();
    assert!(
        g.forward(&rand_tensor(&[1, 6], 1), Growth::stable(3))
            .is_err()
    );
}
