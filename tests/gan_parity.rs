//! Our StyleGANs against NVlabs' own networks (`tests/fixtures/make_stylegan.py` builds tiny
//! random-initialised NVlabs G and D — every parameter and buffer randomised — and stores their
//! state dicts and outputs): loaded by name into our networks, G's images at ψ = 1 and ψ = 0.7,
//! D's logits, the R1 value and the gradients of D's parameters from NVlabs'
//! `StyleGAN2Loss.accumulate_gradients(phase='Dreg')` must agree within 1e-4 relative (f32).

mod common;

use std::collections::HashMap;

use brainsynth::Tensor;
use brainsynth::autograd::{GradOptions, grad_with};
use brainsynth::models::gan::{
    Discriminator, GanConfig, Noise, Sg3Settings, StyleGan2Generator, StyleGan3Generator,
    load_named,
};
use brainsynth::nn::ParamStore;
use brainsynth::ops::loss::r1_penalty_with;
use common::fixtures::{
    Array, check_rel, get, load, rel_err, section, stylegan_tiny_config, tensor,
};

const TOL: f64 = 1e-4;
const GAMMA: f64 = 8.0;

fn check(what: &str, ours: &Tensor, reference: &Array) {
    check_rel(what, ours, reference, TOL);
}

fn discriminator_checks(m: &HashMap<String, Array>, cfg: &GanConfig, tag: &str) {
    let store = ParamStore::new(1);
    let d = Discriminator::new(&store, cfg).unwrap();
    load_named(&store, &section(m, "D.")).unwrap();
    let reals = tensor(get(m, "reals"));
    check(
        &format!("{tag} D logits"),
        &d.forward(&reals).unwrap(),
        get(m, "logits"),
    );
    // R1 with γ = 2 is the plain mean of the squared input-gradient norms
    let r1 = r1_penalty_with(&reals, 2.0, |x| d.forward(x)).unwrap();
    check(
        &format!("{tag} R1"),
        &r1.reshape(&[1]).unwrap(),
        get(m, "r1"),
    );
    // NVlabs' Dreg phase: mean(R1 per sample · γ/2), backward into D's parameters
    let loss = r1_penalty_with(&reals, GAMMA, |x| d.forward(x)).unwrap();
    let params: Vec<_> = store.params();
    let tensors: Vec<Tensor> = params.iter().map(|p| p.tensor.clone()).collect();
    // the output bias does not reach dD/dx, so R1 has no gradient for it
    let opts = GradOptions {
        create_graph: false,
        allow_unused: true,
    };
    let grads = grad_with(&[loss], None, &tensors, opts).unwrap();
    for (p, g) in params.iter().zip(&grads) {
        let r = get(m, &format!("dreg.{}", p.name));
        if r.data.iter().all(|&v| v == 0.0) {
            // the output bias does not reach dD/dx
            assert!(
                g.to_vec_f64().unwrap().iter().all(|&v| v == 0.0),
                "{}",
                p.name
            );
            continue;
        }
        check(&format!("{tag} Dreg grad {}", p.name), g, r);
    }
}

#[test]
fn stylegan2_matches_nvlabs() {
    let m = load("stylegan2.bin");
    let cfg = stylegan_tiny_config();
    let store = ParamStore::new(1);
    let g = StyleGan2Generator::new(&store, &cfg).unwrap();
    load_named(&store, &section(&m, "G.")).unwrap();
    let z = tensor(get(&m, "z"));
    let ws = g.mapping.forward(&z, 1.0, None, false).unwrap();
    check("sg2 ws", &ws.contiguous().unwrap(), get(&m, "ws"));
    for fused in [true, false] {
        let img = g.forward(&z, 1.0, &mut Noise::Const, fused).unwrap();
        check(
            &format!("sg2 image ψ=1 fused={fused}"),
            &img,
            get(&m, "img_psi1"),
        );
        check(
            &format!("sg2 image unfused ref, fused={fused}"),
            &img,
            get(&m, "img_unfused"),
        );
    }
    let img = g.forward(&z, 0.7, &mut Noise::Const, true).unwrap();
    check("sg2 image ψ=0.7", &img, get(&m, "img_psi07"));
    // the noise constants given as explicit maps give the same images
    let maps: Vec<Tensor> = g
        .blocks
        .iter()
        .flat_map(|b| b.conv0.iter().chain([&b.conv1]))
        .map(|l| l.noise_const.clone())
        .collect();
    assert_eq!(maps.len(), g.num_noise_layers());
    let img = g.forward(&z, 1.0, &mut Noise::Given(&maps), true).unwrap();
    check("sg2 image, given noise", &img, get(&m, "img_psi1"));
    // and switching the noise off changes them (noise strengths are non-zero)
    let off = g.forward(&z, 1.0, &mut Noise::Off, true).unwrap();
    assert!(rel_err(&off, get(&m, "img_psi1")) > 1e-3);
    discriminator_checks(&m, &cfg, "sg2");
}

#[test]
fn loading_refuses_other_shapes_and_names() {
    let m = load("stylegan2.bin");
    let mut cfg = stylegan_tiny_config();
    cfg.channel_max = 8;
    let store = ParamStore::new(1);
    StyleGan2Generator::new(&store, &cfg).unwrap();
    let before = store
        .get("mapping.fc0.weight")
        .unwrap()
        .to_vec_f64()
        .unwrap();
    assert!(load_named(&store, &section(&m, "G.")).is_err());
    // nothing was half-loaded
    assert_eq!(
        store
            .get("mapping.fc0.weight")
            .unwrap()
            .to_vec_f64()
            .unwrap(),
        before
    );
    let dstore = ParamStore::new(1);
    Discriminator::new(&dstore, &stylegan_tiny_config()).unwrap();
    assert!(load_named(&dstore, &section(&m, "G.")).is_err());
}

#[test]
fn stylegan3_t_matches_nvlabs() {
    let m = load("stylegan3.bin");
    let cfg = GanConfig {
        resolution: 32,
        channel_base: 256,
        channel_max: 8,
        ..stylegan_tiny_config()
    };
    let store = ParamStore::new(1);
    let g = StyleGan3Generator::new(&store, &cfg, &Sg3Settings::for_batch(32)).unwrap();
    // our f64 filter design against the reference's (scipy's firwin), before loading anything
    let mut filters = 0;
    for (name, t) in store.buffers() {
        if name.ends_with("_filter") {
            check(&format!("sg3 {name}"), &t, get(&m, &format!("G.{name}")));
            filters += 1;
        }
    }
    assert!(filters >= 2 * 12, "only {filters} filters");
    load_named(&store, &section(&m, "G.")).unwrap();
    let z = tensor(get(&m, "z"));
    let ws = g.mapping.forward(&z, 1.0, None, false).unwrap();
    check("sg3 ws", &ws.contiguous().unwrap(), get(&m, "ws"));
    check(
        "sg3 image ψ=1",
        &g.forward(&z, 1.0).unwrap(),
        get(&m, "img_psi1"),
    );
    check(
        "sg3 image ψ=0.7",
        &g.forward(&z, 0.7).unwrap(),
        get(&m, "img_psi07"),
    );
    // magnitude EMAs move only in training
    let name = format!("synthesis.{}.magnitude_ema", g.layers[3].name);
    let before = store.get(&name).unwrap().item().unwrap();
    g.synthesis(&ws, false).unwrap();
    assert_eq!(store.get(&name).unwrap().item().unwrap(), before);
    g.synthesis(&ws, true).unwrap();
    assert_ne!(store.get(&name).unwrap().item().unwrap(), before);
    let dcfg = GanConfig {
        resolution: 32,
        ..stylegan_tiny_config()
    };
    discriminator_checks(&m, &dcfg, "sg3");
}

/// The converted-checkpoint route: sections `G_ema/…` and `D/…` plus the size metadata that
/// `convert_nvlabs_pkl.py` writes, read back into networks that reproduce NVlabs' images.
#[test]
fn converted_checkpoint_loads_and_reproduces_images() {
    use brainsynth::io::checkpoint::{Checkpoint, CheckpointWriter};
    use brainsynth::models::gan::{Arch, config_from_checkpoint};
    let m = load("stylegan2.bin");
    let mut w = CheckpointWriter::new();
    w.add_tensors("G_ema", section(&m, "G."));
    w.add_tensors("D", section(&m, "D."));
    let meta = [
        ("model", "stylegan2"),
        ("z_dim", "16"),
        ("w_dim", "16"),
        ("resolution", "16"),
        ("channels", "5"),
        ("channel_base", "128"),
        ("channel_max", "16"),
        ("mapping_layers", "2"),
        ("conv_clamp", "256"),
        ("mbstd_group", "4"),
    ];
    for (k, v) in meta {
        w.set_metadata(k, v);
    }
    let ck = Checkpoint::from_bytes(&w.to_bytes().unwrap(), "converted.safetensors").unwrap();
    let (arch, gcfg, dcfg) = config_from_checkpoint(&ck).unwrap();
    assert_eq!(arch, Arch::StyleGan2);
    assert_eq!(gcfg, stylegan_tiny_config());
    assert_eq!(dcfg, stylegan_tiny_config());
    let store = ParamStore::new(7);
    let g = StyleGan2Generator::new(&store, &gcfg).unwrap();
    load_named(&store, &ck.section("G_ema")).unwrap();
    let img = g
        .forward(&tensor(get(&m, "z")), 1.0, &mut Noise::Const, true)
        .unwrap();
    check("converted sg2 image", &img, get(&m, "img_psi1"));
    let dstore = ParamStore::new(7);
    Discriminator::new(&dstore, &dcfg).unwrap();
    load_named(&dstore, &ck.section("D")).unwrap();

    // another model's checkpoint, or one without sizes, is refused with a sentence
    let mut w = CheckpointWriter::new();
    w.set_metadata("model", "unet");
    let ck = Checkpoint::from_bytes(&w.to_bytes().unwrap(), "unet.safetensors").unwrap();
    let e = config_from_checkpoint(&ck).unwrap_err().to_string();
    assert!(e.contains("unet"), "{e}");
    let mut w = CheckpointWriter::new();
    w.set_metadata("model", "stylegan3");
    let ck = Checkpoint::from_bytes(&w.to_bytes().unwrap(), "bare.safetensors").unwrap();
    let e = config_from_checkpoint(&ck).unwrap_err().to_string();
    assert!(e.contains("z_dim"), "{e}");
}
