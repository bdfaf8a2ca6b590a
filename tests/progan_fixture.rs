//! The Progressive GAN against an independent PyTorch implementation of NVlabs' `G_paper` /
//! `D_paper` (`tests/fixtures/make_progan.py` → `progan.bin`; latent 8, 16×16×5, fmap_base 32,
//! fmap_max 16, batch 4), in f64 from f32-exact weights:
//! - pixel norm and one equalised-lr 3×3 conv alone;
//! - G and D at a fading top level (α 0.3), a stable middle level and a fading middle level;
//! - the WGAN-GP penalty (λ 10) on interpolates and its gradient w.r.t. every D weight (PyTorch's
//!   double backward).
//!
//! All within 1e-6 relative (of the largest magnitude).

mod common;

use brainsynth::autograd::{GradOptions, grad_with};
use brainsynth::models::gan::growing::Growth;
use brainsynth::models::gan::load_named;
use brainsynth::models::gan::progan::{ProGanConfig, ProGanDiscriminator, ProGanGenerator};
use brainsynth::nn::ParamStore;
use brainsynth::ops::loss::wgan_gp_penalty_with;
use brainsynth::ops::stylegan::pixel_norm;
use brainsynth::{DType, Tensor};
use common::fixtures::{Array, get, load};
use std::collections::HashMap;

fn cfg() -> ProGanConfig {
    ProGanConfig {
        latent_size: 8,
        resolution: 16,
        channels: 5,
        fmap_base: 32,
        fmap_max: 16,
        mbstd_group: 4,
    }
}

fn t(a: &Array) -> Tensor {
    Tensor::from_f64s(&a.f64s(), &a.shape, DType::F64).unwrap()
}

fn close(got: &Tensor, want: &Array, tol: f64, what: &str) {
    assert_eq!(got.shape(), &want.shape[..], "{what}: shape");
    let g = got.to_vec_f64().unwrap();
    let w = want.f64s();
    let scale = w.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    let err = g
        .iter()
        .zip(&w)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err / scale <= tol,
        "{what}: max error {err:e} vs scale {scale:e}"
    );
}

fn nets(m: &HashMap<String, Array>) -> (ProGanGenerator, ProGanDiscriminator) {
    let gs = ParamStore::with_dtype(1, DType::F64);
    let ds = ParamStore::with_dtype(2, DType::F64);
    let g = ProGanGenerator::new(&gs, &cfg()).unwrap();
    let d = ProGanDiscriminator::new(&ds, &cfg()).unwrap();
    let pick = |prefix: &str| -> Vec<(String, Tensor)> {
        m.iter()
            .filter_map(|(k, a)| k.strip_prefix(prefix).map(|n| (n.to_string(), t(a))))
            .collect()
    };
    load_named(&gs, &pick("G.")).unwrap();
    load_named(&ds, &pick("D.")).unwrap();
    (g, d)
}

fn growth(a: &Array) -> Growth {
    Growth {
        level: a.data[0] as usize,
        alpha: a.data[1] as f64,
    }
}

#[test]
fn pixel_norm_and_equalised_conv_match_pytorch() {
    let m = load("progan.bin");
    let (g, _) = nets(&m);
    let x = t(get(&m, "layers.x"));
    close(
        &pixel_norm(&x).unwrap(),
        get(&m, "layers.pixel_norm"),
        1e-6,
        "pixel norm",
    );
    // G's 4×4 conv is `PN(lrelu(eq_conv))`; the fixture holds eq_conv alone (bias, no act)
    let y = g.conv4.conv.forward(&x).unwrap();
    close(&y, get(&m, "layers.eq_conv"), 1e-6, "equalised conv");
}

#[test]
fn generator_and_discriminator_match_pytorch_while_growing() {
    let m = load("progan.bin");
    let (g, d) = nets(&m);
    let z = t(get(&m, "z"));
    for i in 0..3 {
        let gr = growth(get(&m, &format!("case{i}.growth")));
        let img = g.forward(&z, gr).unwrap();
        close(
            &img,
            get(&m, &format!("case{i}.g")),
            1e-6,
            &format!("G case {i}"),
        );
        let x = t(get(&m, &format!("case{i}.img")));
        let s = d.forward(&x, gr).unwrap();
        close(
            &s,
            get(&m, &format!("case{i}.d")),
            1e-6,
            &format!("D case {i}"),
        );
    }
}

#[test]
fn wgan_gp_and_its_weight_gradients_match_pytorch_double_backward() {
    let m = load("progan.bin");
    let (_, d) = nets(&m);
    let gr = growth(get(&m, "case0.growth"));
    let reals = t(get(&m, "gp.reals"));
    let fakes = t(get(&m, "gp.fakes"));
    let u = t(get(&m, "gp.u"));
    let mixed = reals.lerp(&fakes, &u).unwrap();
    let gp = wgan_gp_penalty_with(&mixed, 10.0, 1.0, |x| d.forward(x, gr)).unwrap();
    close(
        &gp.reshape(&[1]).unwrap(),
        get(&m, "gp.value"),
        1e-6,
        "GP value",
    );
    let named = d.store.named_tensors();
    let params: Vec<Tensor> = named.iter().map(|(_, p)| p.clone()).collect();
    let grads = grad_with(
        &[gp],
        None,
        &params,
        GradOptions {
            create_graph: false,
            allow_unused: true,
        },
    )
    .unwrap();
    for ((name, _), gk) in named.iter().zip(&grads) {
        close(
            gk,
            get(&m, &format!("gp.grad.D.{name}")),
            1e-6,
            &format!("∂GP/∂{name}"),
        );
    }
}
