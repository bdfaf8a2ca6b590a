//! StyleGAN 1 while it grows, on the fixture's randomised weights (`stylegan1.bin`) or a tiny f64
//! network: the fade-in (α = 0 is the previous level re-sampled, α = 1 the new level alone, for
//! G and D), the fused resampling against the separate ops, truncation (ψ = 1 none, ψ = 0 the
//! tracked mean), style mixing and the mean-w update, R1 through the fading discriminator by
//! finite differences (second order), and refused bad input.

mod common;

use std::collections::HashMap;

use brainsynth::autograd::{GradOptions, grad_with};
use brainsynth::models::gan::growing::{
    GrowingGenerator, Growth, Truncation, downsample2x, upsample2x,
};
use brainsynth::models::gan::layers::Noise;
use brainsynth::models::gan::{GanConfig, StyleGan1Discriminator, StyleGan1Generator, load_named};
use brainsynth::nn::ParamStore;
use brainsynth::ops::loss::r1_penalty_with;
use brainsynth::testing::{check_grad2, rand_tensor};
use brainsynth::{DType, Tensor};
use common::fixtures::{Array, get, load};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn tensor(a: &Array) -> Tensor {
    Tensor::from_slice(&a.data, &a.shape).unwrap()
}

fn section(m: &HashMap<String, Array>, prefix: &str) -> Vec<(String, Tensor)> {
    m.iter()
        .filter_map(|(k, a)| k.strip_prefix(prefix).map(|n| (n.to_string(), tensor(a))))
        .collect()
}

fn grow(level: usize, alpha: f64) -> Growth {
    Growth { level, alpha }
}

/// The fixture's configuration (see tests/stylegan1_parity.rs).
fn tiny_config() -> GanConfig {
    GanConfig {
        z_dim: 16,
        w_dim: 16,
        resolution: 16,
        channels: 5,
        channel_base: 64,
        channel_max: 16,
        mapping_layers: 8,
        conv_clamp: None,
        mbstd_group: 4,
    }
}

fn generator(m: &HashMap<String, Array>, fused_from: usize) -> StyleGan1Generator {
    let store = ParamStore::new(1);
    let g = StyleGan1Generator::with_fused_from(&store, &tiny_config(), fused_from).unwrap();
    load_named(&store, &section(m, "G.")).unwrap();
    g
}

fn discriminator(m: &HashMap<String, Array>, fused_from: usize) -> StyleGan1Discriminator {
    let store = ParamStore::new(2);
    let d = StyleGan1Discriminator::with_fused_from(&store, &tiny_config(), fused_from).unwrap();
    load_named(&store, &section(m, "D.")).unwrap();
    d
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn max_abs(a: &Tensor) -> f64 {
    a.to_vec_f64()
        .unwrap()
        .iter()
        .fold(0.0, |m, v| m.max(v.abs()))
}

/// Overwrite a parameter with fresh random values.
fn scramble(store: &ParamStore, name: &str, seed: u64) {
    let p = store.get(name).unwrap();
    p.assign(&rand_tensor(p.shape(), seed).to_dtype_of(&p))
        .unwrap();
}

trait ToDtypeOf {
    fn to_dtype_of(&self, like: &Tensor) -> Tensor;
}
impl ToDtypeOf for Tensor {
    fn to_dtype_of(&self, like: &Tensor) -> Tensor {
        Tensor::from_f64s(&self.to_vec_f64().unwrap(), self.shape(), like.dtype()).unwrap()
    }
}

#[test]
fn generator_fades_from_the_previous_level_to_the_new_one() {
    let m = load("stylegan1.bin");
    let g = generator(&m, 128);
    let z = tensor(get(&m, "z"));
    let run = |level, alpha| {
        g.forward(&z, grow(level, alpha), 1.0, None, &mut Noise::Const)
            .unwrap()
    };
    for level in 1..=2 {
        let old = upsample2x(&run(level - 1, 1.0)).unwrap();
        let a0 = run(level, 0.0);
        let scale = max_abs(&old);
        let e = max_abs_diff(&a0, &old);
        println!("level {level}: α = 0 vs previous level up-sampled: {e:.2e} (scale {scale:.2})");
        assert!(e <= 1e-6 * scale, "α = 0 at level {level}: {e:.3e}");
        // α = 1 ignores the previous level's toRGB, α = 0 the new one's
        let a1 = run(level, 1.0);
        let half = run(level, 0.5);
        let lod_old = format!("synthesis.ToRGB_lod{}.weight", 2 - (level - 1));
        let lod_new = format!("synthesis.ToRGB_lod{}.weight", 2 - level);
        let kept = g.store.get(&lod_old).unwrap().to_vec_f64().unwrap();
        scramble(&g.store, &lod_old, 7);
        assert_eq!(max_abs_diff(&run(level, 1.0), &a1), 0.0);
        assert!(max_abs_diff(&run(level, 0.5), &half) > 1e-3);
        let w = g.store.get(&lod_old).unwrap();
        w.assign(&Tensor::from_f64s(&kept, w.shape(), DType::F32).unwrap())
            .unwrap();
        scramble(&g.store, &lod_new, 8);
        assert!(max_abs_diff(&run(level, 0.0), &a0) <= 1e-6 * scale);
        assert!(max_abs_diff(&run(level, 1.0), &a1) > 1e-3);
        load_named(&g.store, &section(&m, "G.")).unwrap();
        // in between: the linear blend
        let mid = a1
            .mul_scalar(0.5)
            .unwrap()
            .add(&a0.mul_scalar(0.5).unwrap())
            .unwrap();
        assert!(max_abs_diff(&half, &mid) <= 1e-5 * scale);
    }
}

#[test]
fn discriminator_fades_from_the_previous_level_to_the_new_one() {
    let m = load("stylegan1.bin");
    let d = discriminator(&m, 128);
    let reals = tensor(get(&m, "reals"));
    let down = downsample2x(&reals).unwrap();
    let a0 = d.forward(&reals, grow(2, 0.0)).unwrap();
    let prev = d.forward(&down, grow(1, 1.0)).unwrap();
    let e = max_abs_diff(&a0, &prev);
    println!("D α = 0 vs previous level on 2×2 means: {e:.2e}");
    assert!(e <= 1e-6 * max_abs(&prev).max(1.0));
    let a1 = d.forward(&reals, grow(2, 1.0)).unwrap();
    // α = 1 ignores the previous level's FromRGB, α = 0 the new level's
    scramble(&d.store, "FromRGB_lod1.weight", 9);
    assert_eq!(
        max_abs_diff(&d.forward(&reals, grow(2, 1.0)).unwrap(), &a1),
        0.0
    );
    assert!(max_abs_diff(&d.forward(&reals, grow(2, 0.0)).unwrap(), &a0) > 1e-4);
    load_named(&d.store, &section(&m, "D.")).unwrap();
    scramble(&d.store, "FromRGB_lod0.weight", 10);
    assert!(max_abs_diff(&d.forward(&reals, grow(2, 0.0)).unwrap(), &a0) <= 1e-6);
    assert!(max_abs_diff(&d.forward(&reals, grow(2, 1.0)).unwrap(), &a1) > 1e-4);
}

#[test]
fn fused_resampling_matches_the_separate_ops() {
    let m = load("stylegan1.bin");
    // D: the stride-2 4×4 kernel is exactly conv 3×3 then the 2×2 mean
    let plain = discriminator(&m, 128);
    let fused = discriminator(&m, 8);
    let x = rand_tensor(&[4, 5, 16, 16], 3).to_dtype_of(&tensor(get(&m, "reals")));
    let (a, b) = (
        plain.forward(&x, grow(2, 1.0)).unwrap(),
        fused.forward(&x, grow(2, 1.0)).unwrap(),
    );
    let e = max_abs_diff(&a, &b);
    println!("D fused vs separate: {e:.2e}");
    assert!(e <= 1e-5 * max_abs(&a).max(1.0));
    // G: NVlabs' fused transposed conv equals nearest up-sampling + the conv with the 3×3 kernel
    // flipped in both spatial axes (TF's conv2d_transpose is the adjoint of a correlation)
    let plain = generator(&m, 128);
    let fused = generator(&m, 8);
    for r in [8, 16] {
        let name = format!("synthesis.{r}x{r}.Conv0_up.weight");
        let w = plain.store.get(&name).unwrap();
        w.assign(&w.flip(&[2, 3]).unwrap().contiguous().unwrap())
            .unwrap();
    }
    let z = rand_tensor(&[3, 16], 4).to_dtype_of(&tensor(get(&m, "z")));
    let (a, b) = (
        plain
            .forward(&z, grow(2, 0.7), 1.0, None, &mut Noise::Const)
            .unwrap(),
        fused
            .forward(&z, grow(2, 0.7), 1.0, None, &mut Noise::Const)
            .unwrap(),
    );
    let e = max_abs_diff(&a, &b);
    println!("G fused vs separate (flipped kernel): {e:.2e}");
    assert!(e <= 1e-5 * max_abs(&a));
}

#[test]
fn truncation_psi_one_is_none_and_psi_zero_is_the_mean() {
    let m = load("stylegan1.bin");
    let g = generator(&m, 128);
    let z = tensor(get(&m, "z"));
    let ws = g.map(&z, 1.0, None).unwrap();
    let avg = tensor(get(&m, "G.dlatent_avg")).to_vec_f64().unwrap();
    assert_eq!(max_abs_diff(&g.map(&z, 1.0, Some(3)).unwrap(), &ws), 0.0);
    let t0 = g.map(&z, 0.0, Some(3)).unwrap();
    let (v0, vw) = (t0.to_vec_f64().unwrap(), ws.to_vec_f64().unwrap());
    for (i, (a, w)) in v0.iter().zip(&vw).enumerate() {
        let layer = (i / 16) % 6;
        if layer < 3 {
            assert!(
                (a - avg[i % 16]).abs() <= 1e-6,
                "layer {layer}: {a} vs w_avg"
            );
        } else {
            assert_eq!(a, w, "layer {layer} is past the cutoff");
        }
    }
    // sampling through the trait: ψ = 1 is the untruncated image, ψ = 0 with every layer the
    // same image for every z
    let full = Truncation {
        psi: 0.0,
        cutoff: Some(6),
    };
    let img1 = g.sample(&z, Growth::stable(2), Truncation::NONE).unwrap();
    let plain = g
        .forward(&z, Growth::stable(2), 1.0, None, &mut Noise::Const)
        .unwrap();
    assert_eq!(max_abs_diff(&img1, &plain), 0.0);
    let img0 = g.sample(&z, Growth::stable(2), full).unwrap();
    let first = img0.narrow(0, 0, 1).unwrap();
    for i in 1..4 {
        assert!(max_abs_diff(&img0.narrow(0, i, 1).unwrap(), &first) <= 1e-5);
    }
    assert!(
        max_abs_diff(
            &img1.narrow(0, 1, 1).unwrap(),
            &img1.narrow(0, 0, 1).unwrap()
        ) > 1e-2
    );
}

#[test]
fn style_mixing_and_the_mean_w_update() {
    let m = load("stylegan1.bin");
    let g = generator(&m, 128);
    let z = tensor(get(&m, "z"));
    let w = g.mapping.forward(&z).unwrap();
    let mut crossovers = std::collections::BTreeSet::new();
    for seed in 0..12 {
        let mut rng = StdRng::seed_from_u64(seed);
        let ws = g.map_train(&z, 2, 1.0, false, &mut rng).unwrap();
        let per_layer: Vec<f64> = (0..6)
            .map(|l| {
                let wl = ws.narrow(1, l, 1).unwrap().reshape(&[4, 16]).unwrap();
                max_abs_diff(&wl, &w)
            })
            .collect();
        // layers below the crossover are w(z), the others w(z2) ≠ w(z)
        let cut = per_layer.iter().position(|&d| d > 1e-3).unwrap();
        assert!((1..6).contains(&cut), "crossover {cut}");
        assert!(per_layer[..cut].iter().all(|&d| d == 0.0));
        assert!(per_layer[cut..].iter().all(|&d| d > 1e-3));
        crossovers.insert(cut);
        // the same seed gives the same ws
        let again = g
            .map_train(&z, 2, 1.0, false, &mut StdRng::seed_from_u64(seed))
            .unwrap();
        assert_eq!(max_abs_diff(&ws, &again), 0.0);
    }
    assert!(crossovers.len() >= 3, "crossovers {crossovers:?}");
    // at level 1 the crossover lies among its 4 layers
    for seed in 0..8 {
        let ws = g
            .map_train(&z, 1, 1.0, false, &mut StdRng::seed_from_u64(seed))
            .unwrap();
        let l3 = ws.narrow(1, 3, 1).unwrap().reshape(&[4, 16]).unwrap();
        assert!(max_abs_diff(&l3, &w) > 1e-3);
    }
    // no mixing: w everywhere; the update moves w_avg to lerp(mean w, w_avg, 0.995)
    let before = g.mapping.dlatent_avg.to_vec_f64().unwrap();
    let ws = g
        .map_train(&z, 2, 0.0, true, &mut StdRng::seed_from_u64(0))
        .unwrap();
    for l in 0..6 {
        let wl = ws.narrow(1, l, 1).unwrap().reshape(&[4, 16]).unwrap();
        assert_eq!(max_abs_diff(&wl, &w), 0.0);
    }
    let mean = w.mean_axes(&[0], false).unwrap().to_vec_f64().unwrap();
    let after = g.mapping.dlatent_avg.to_vec_f64().unwrap();
    for i in 0..16 {
        let want = mean[i] + (before[i] - mean[i]) * 0.995;
        assert!(
            (after[i] - want).abs() <= 1e-5,
            "{i}: {} vs {want}",
            after[i]
        );
    }
}

/// A tiny f64 discriminator for 8×8×2 images (widths 4 at 4×4, 2 at 8×8), fused down-sampling.
fn tiny_d() -> StyleGan1Discriminator {
    let cfg = GanConfig {
        z_dim: 4,
        w_dim: 4,
        resolution: 8,
        channels: 2,
        channel_base: 16,
        channel_max: 4,
        mapping_layers: 1,
        conv_clamp: None,
        mbstd_group: 2,
    };
    let store = ParamStore::with_dtype(5, DType::F64);
    StyleGan1Discriminator::with_fused_from(&store, &cfg, 8).unwrap()
}

#[test]
fn r1_through_the_fading_discriminator_matches_finite_differences() {
    let d = tiny_d();
    let growth = grow(1, 0.6);
    let x = rand_tensor(&[4, 2, 8, 8], 11);
    let r1 = || r1_penalty_with(&x, 10.0, |x| d.forward(x, growth)).unwrap();
    let params = d.store.params();
    let tensors: Vec<Tensor> = params.iter().map(|p| p.tensor.clone()).collect();
    let opts = GradOptions {
        create_graph: false,
        allow_unused: true,
    };
    let analytic = grad_with(&[r1()], None, &tensors, opts).unwrap();
    let eps = 1e-5;
    let (mut worst, mut compared, mut moved) = (0.0f64, 0, 0);
    for (p, a) in params.iter().zip(&analytic) {
        let base = p.tensor.to_vec_f64().unwrap();
        for (j, aj) in a.to_vec_f64().unwrap().into_iter().enumerate() {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[j] += delta;
                p.tensor
                    .assign(&Tensor::from_f64s(&v, p.tensor.shape(), DType::F64).unwrap())
                    .unwrap();
                r1().item().unwrap()
            };
            let num = (at(eps) - at(-eps)) / (2.0 * eps);
            p.tensor
                .assign(&Tensor::from_f64s(&base, p.tensor.shape(), DType::F64).unwrap())
                .unwrap();
            worst = worst.max((aj - num).abs() / num.abs().max(1.0));
            compared += 1;
            moved += usize::from(num.abs() > 1e-6);
        }
    }
    println!("∂R1/∂θ vs central differences: worst {worst:.2e} over {compared}, {moved} non-zero");
    assert_eq!(compared, d.store.num_params());
    assert!(moved > compared / 2, "only {moved} of {compared} move R1");
    assert!(worst <= 1e-5, "∂R1/∂θ: {worst:.3e}");
    // and D's second derivative in its input, by check_grad2
    let r = check_grad2(|v| d.forward(&v[0], growth), std::slice::from_ref(&x), 1e-5).unwrap();
    assert_eq!(r.compared, x.elem_count());
    assert!(r.max_err <= 1e-5, "second order in x: {:.3e}", r.max_err);
}

#[test]
fn bad_growth_and_shapes_are_refused() {
    let m = load("stylegan1.bin");
    let g = generator(&m, 128);
    let d = discriminator(&m, 128);
    let z = tensor(get(&m, "z"));
    let mut off = Noise::Off;
    for growth in [grow(3, 1.0), grow(1, 1.5), grow(1, -0.1), grow(1, f64::NAN)] {
        assert!(
            g.forward(&z, growth, 1.0, None, &mut off).is_err(),
            "{growth:?}"
        );
    }
    let err = g
        .forward(
            &z.narrow(1, 0, 8).unwrap(),
            Growth::stable(1),
            1.0,
            None,
            &mut off,
        )
        .unwrap_err();
    assert!(err.to_string().contains("z must be"), "{err}");
    assert!(g.map(&z, f64::NAN, None).is_err());
    let ws = g.map(&z, 1.0, None).unwrap();
    assert!(
        g.synthesis(&ws.narrow(1, 0, 4).unwrap(), Growth::stable(1), &mut off)
            .is_err()
    );
    let few = [Tensor::zeros(&[1, 1, 4, 4], DType::F32)];
    assert!(
        g.synthesis(&ws, Growth::stable(1), &mut Noise::Given(&few))
            .is_err()
    );
    let reals = tensor(get(&m, "reals"));
    let err = d.forward(&reals, Growth::stable(1)).unwrap_err();
    assert!(err.to_string().contains("8, 8"), "{err}");
    assert!(d.forward(&reals, grow(3, 1.0)).is_err());
    // a batch the minibatch-stddev group (4) does not divide
    let six = Tensor::cat(&[reals.clone(), reals.narrow(0, 0, 2).unwrap()], 0).unwrap();
    let err = d.forward(&six, Growth::stable(2)).unwrap_err();
    assert!(err.to_string().contains("groups of 4"), "{err}");
}
