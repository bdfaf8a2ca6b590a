//! Our StyleGAN 1 against an independent PyTorch implementation of NVlabs' TF1
//! `networks_stylegan.py` (`tests/fixtures/make_stylegan1.py`: a tiny G and D with every parameter
//! and buffer randomised). Loaded by name into our networks: the mapping (pixel norm, equalised
//! dense layers with lr multiplier 0.01), truncation, synthesis (noise, AdaIN, blur, nearest and
//! fused up-sampling) at several levels and fade weights, D's logits (plain and fused
//! down-sampling, fading), the R1 value and its gradients with respect to D's parameters must
//! agree within 1e-4 relative (f32).

mod common;

use std::collections::HashMap;

use brainsynth::Tensor;
use brainsynth::autograd::{GradOptions, grad_with};
use brainsynth::models::gan::growing::Growth;
use brainsynth::models::gan::layers::Noise;
use brainsynth::models::gan::{GanConfig, StyleGan1Discriminator, StyleGan1Generator, load_named};
use brainsynth::nn::ParamStore;
use brainsynth::ops::loss::r1_penalty_with;
use common::fixtures::{Array, check_rel, get, load, rel_err, section, tensor};

const TOL: f64 = 1e-4;

fn check(what: &str, ours: &Tensor, reference: &Array) {
    check_rel(what, ours, reference, TOL);
}

/// The fixture's configuration: 16×16×5, z = w = 16, channels min(64 / r, 16), 8 mapping layers.
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

fn grow(level: usize, alpha: f64) -> Growth {
    Growth { level, alpha }
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

#[test]
fn generator_matches_the_pytorch_reference() {
    let m = load("stylegan1.bin");
    let z = tensor(get(&m, "z"));
    let noise: Vec<Tensor> = (0..6)
        .map(|i| tensor(get(&m, &format!("noise{i}"))))
        .collect();
    let plain = generator(&m, 128);
    let fused = generator(&m, 16);
    assert_eq!(plain.num_layers, 6);
    check("ws", &plain.map(&z, 1.0, None).unwrap(), get(&m, "ws"));
    check(
        "ws ψ 0.7 cutoff 3",
        &plain.map(&z, 0.7, Some(3)).unwrap(),
        get(&m, "ws_trunc"),
    );
    // (fixture name, network, level, α, ψ, cutoff)
    let cases = [
        ("g_l2_a1", &plain, 2, 1.0, 1.0, None),
        ("g_l2_a03_fused", &fused, 2, 0.3, 1.0, None),
        ("g_l1_a06_trunc", &plain, 1, 0.6, 0.7, Some(3)),
        ("g_l0", &plain, 0, 1.0, 0.7, Some(3)),
    ];
    for (name, g, level, alpha, psi, cutoff) in cases {
        let img = g
            .forward(
                &z,
                grow(level, alpha),
                psi,
                cutoff,
                &mut Noise::Given(&noise),
            )
            .unwrap();
        check(name, &img, get(&m, name));
    }
    // the noise matters (its weights are non-zero in the fixture)
    let off = plain
        .forward(&z, grow(2, 1.0), 1.0, None, &mut Noise::Off)
        .unwrap();
    assert!(rel_err(&off, get(&m, "g_l2_a1")) > 1e-3);
}

#[test]
fn discriminator_and_r1_match_the_pytorch_reference() {
    let m = load("stylegan1.bin");
    let reals = tensor(get(&m, "reals"));
    let plain = discriminator(&m, 128);
    let fused = discriminator(&m, 16);
    check(
        "d_l2_a1",
        &plain.forward(&reals, grow(2, 1.0)).unwrap(),
        get(&m, "d_l2_a1"),
    );
    check(
        "d_l2_a04_fused",
        &fused.forward(&reals, grow(2, 0.4)).unwrap(),
        get(&m, "d_l2_a04_fused"),
    );
    check(
        "d_l1_a07",
        &plain
            .forward(&tensor(get(&m, "reals8")), grow(1, 0.7))
            .unwrap(),
        get(&m, "d_l1_a07"),
    );
    // D_logistic_simplegp's R1 (γ 10) and its gradients by double backward
    let r1 = r1_penalty_with(&reals, 10.0, |x| fused.forward(x, grow(2, 0.4))).unwrap();
    check("r1", &r1.reshape(&[1]).unwrap(), get(&m, "r1"));
    let params = fused.store.params();
    let tensors: Vec<Tensor> = params.iter().map(|p| p.tensor.clone()).collect();
    let opts = GradOptions {
        create_graph: false,
        allow_unused: true,
    };
    let grads = grad_with(&[r1], None, &tensors, opts).unwrap();
    let mut compared = 0;
    let mut zero = Vec::new();
    for (p, g) in params.iter().zip(&grads) {
        let r = get(&m, &format!("dr1.{}", p.name));
        if r.data.iter().all(|&v| v == 0.0) {
            // R1 reaches these only through leaky-ReLU masks (the biases after the minibatch
            // stddev) or not at all (the 4×4 FromRGB at level 2): zero in both
            assert!(
                g.to_vec_f64().unwrap().iter().all(|&v| v == 0.0),
                "{} has an R1 gradient here, none in the reference",
                p.name
            );
            zero.push(p.name.clone());
            continue;
        }
        check(&format!("dR1/d {}", p.name), g, r);
        compared += 1;
    }
    zero.sort();
    assert_eq!(
        zero,
        [
            "4x4.Conv.bias",
            "4x4.Dense0.bias",
            "4x4.Dense1.bias",
            "FromRGB_lod2.bias",
            "FromRGB_lod2.weight"
        ]
    );
    assert_eq!(compared, params.len() - zero.len());
}

#[test]
fn loading_refuses_the_other_network_and_other_sizes() {
    let m = load("stylegan1.bin");
    let store = ParamStore::new(1);
    StyleGan1Discriminator::new(&store, &tiny_config()).unwrap();
    let err = load_named(&store, &section(&m, "G.")).unwrap_err();
    assert!(
        err.to_string().contains("not part of this network"),
        "{err}"
    );
    let store = ParamStore::new(1);
    let cfg = GanConfig {
        channel_max: 8,
        ..tiny_config()
    };
    StyleGan1Generator::new(&store, &cfg).unwrap();
    let before = store
        .get("synthesis.4x4.Const.const")
        .unwrap()
        .to_vec_f64()
        .unwrap();
    assert!(load_named(&store, &section(&m, "G.")).is_err());
    assert_eq!(
        store
            .get("synthesis.4x4.Const.const")
            .unwrap()
            .to_vec_f64()
            .unwrap(),
        before
    );
}
