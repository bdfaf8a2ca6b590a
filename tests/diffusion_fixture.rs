//! The diffusion model against guided-diffusion, from tests/fixtures/diffusion.bin (made by
//! tests/fixtures/make_diffusion.py): a tiny randomly initialised `UNetModel` loads by state-dict
//! name into ours and gives the same output for the same x and t; the study's process (linear β,
//! 4000 steps, fixed-large variance) has the reference's coefficients and respacing, and with that
//! model the same training loss, reverse-step mean/variance, ancestral and DDIM steps.

mod common;

use common::fixtures;

use std::collections::HashMap;

use brainsynth::models::diffusion::{
    BetaSchedule, Diffusion, DiffusionUNet, DiffusionUNetConfig, Schedule, space_timesteps,
};
use brainsynth::nn::ParamStore;
use brainsynth::{DType, Tensor};

/// The fixture's model: 16×16×5, width 32, multipliers 1,1, one res block, attention at ds 2.
pub fn fixture_config() -> DiffusionUNetConfig {
    common::tiny_diffusion_unet(16, 5, 0.0)
}

fn tensor(fx: &HashMap<String, fixtures::Array>, name: &str) -> Tensor {
    let a = fixtures::get(fx, name);
    Tensor::from_f64s(&a.f64s(), &a.shape, DType::F32).unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// Our U-Net with the fixture's weights, loaded by name (every name and shape must match).
fn load_model(fx: &HashMap<String, fixtures::Array>) -> DiffusionUNet {
    let store = ParamStore::new(1);
    let model = DiffusionUNet::new(&store.root(), fixture_config()).unwrap();
    let ours: HashMap<String, Tensor> = store.named_tensors().into_iter().collect();
    let theirs: Vec<&String> = fx.keys().filter(|k| k.starts_with("p.")).collect();
    assert_eq!(ours.len(), theirs.len(), "parameter count differs");
    for k in theirs {
        let name = &k[2..];
        let p = ours
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name} in our model"));
        assert_eq!(p.shape(), fixtures::get(fx, k).shape.as_slice(), "{name}");
        p.assign(&tensor(fx, k)).unwrap();
    }
    model
}

#[test]
fn unet_matches_guided_diffusion_by_state_dict_name() {
    let fx = fixtures::load("diffusion.bin");
    let model = load_model(&fx);
    let y = model
        .forward(&tensor(&fx, "unet.x"), &tensor(&fx, "unet.t"))
        .unwrap();
    let want = tensor(&fx, "unet.y");
    let e = rel_err(&y, &want);
    println!("U-Net output relative error {e:.3e}");
    assert!(e <= 1e-4, "relative error {e:.3e}");
}

/// max |ours − theirs| / (|theirs| + 1e-30) over f64 values stored as f32 (relative 1e-6).
fn close_f64(name: &str, ours: &[f64], theirs: &fixtures::Array) {
    assert_eq!(ours.len(), theirs.data.len(), "{name}: length");
    for (i, (a, b)) in ours.iter().zip(theirs.f64s()).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs() + 1e-30,
            "{name}[{i}]: {a} vs {b}"
        );
    }
}

#[test]
fn schedule_and_respacing_match_guided_diffusion() {
    let fx = fixtures::load("diffusion.bin");
    let s = Schedule::study();
    for (k, v) in [
        ("betas", &s.betas),
        ("alphas_cumprod", &s.alphas_cumprod),
        ("alphas_cumprod_prev", &s.alphas_cumprod_prev),
        ("sqrt_recip_alphas_cumprod", &s.sqrt_recip_alphas_cumprod),
        (
            "sqrt_recipm1_alphas_cumprod",
            &s.sqrt_recipm1_alphas_cumprod,
        ),
        ("posterior_variance", &s.posterior_variance),
        (
            "posterior_log_variance_clipped",
            &s.posterior_log_variance_clipped,
        ),
        ("posterior_mean_coef1", &s.posterior_mean_coef1),
        ("posterior_mean_coef2", &s.posterior_mean_coef2),
    ] {
        close_f64(k, v, fixtures::get(&fx, &format!("sched.{k}")));
    }
    close_f64(
        "cosine betas",
        &BetaSchedule::Cosine.betas(1000).unwrap(),
        fixtures::get(&fx, "sched.cosine1000_betas"),
    );
    for (name, spec) in [
        ("k100", "100"),
        ("ddim50", "ddim50"),
        ("sections", "10,15,20"),
    ] {
        let ours: Vec<f64> = space_timesteps(4000, spec)
            .unwrap()
            .iter()
            .map(|&i| i as f64)
            .collect();
        assert_eq!(
            ours,
            fixtures::get(&fx, &format!("space.{name}")).f64s(),
            "{spec}"
        );
    }
    let r = s.respaced(&space_timesteps(4000, "100").unwrap()).unwrap();
    close_f64(
        "respaced betas",
        &r.betas,
        fixtures::get(&fx, "space.k100_betas"),
    );
}

fn check(name: &str, ours: &Tensor, fx: &HashMap<String, fixtures::Array>, key: &str) {
    let want = tensor(fx, key);
    let e = rel_err(&ours.contiguous().unwrap(), &want);
    println!("{name}: relative error {e:.3e}");
    assert!(e <= 1e-4, "{name}: relative error {e:.3e}");
}

#[test]
fn loss_and_sampler_steps_match_guided_diffusion() {
    let fx = fixtures::load("diffusion.bin");
    let model = load_model(&fx);
    let eps = |x: &Tensor, t: &Tensor| model.forward(x, t);
    let d = Diffusion::new(Schedule::study());
    let loss = d
        .training_loss(
            &eps,
            &tensor(&fx, "loss.x0"),
            &tensor(&fx, "loss.t"),
            &tensor(&fx, "loss.noise"),
        )
        .unwrap();
    check("loss", &loss.reshape(&[1]).unwrap(), &fx, "loss.value");

    let x = tensor(&fx, "pmv.x");
    let out = d.p_mean_variance(&eps, &x, &tensor(&fx, "pmv.t")).unwrap();
    check("mean", &out.mean, &fx, "pmv.mean");
    check("variance", &out.variance, &fx, "pmv.variance");
    check("log variance", &out.log_variance, &fx, "pmv.log_variance");
    check("pred x0", &out.pred_xstart, &fx, "pmv.pred_xstart");

    let noise = tensor(&fx, "psample.noise");
    let y = d
        .p_sample(&eps, &x, &tensor(&fx, "psample.t"), &noise)
        .unwrap();
    check("ancestral step", &y, &fx, "psample.sample");
    let y = d
        .ddim_sample(&eps, &x, &tensor(&fx, "psample.t"), 0.0, None)
        .unwrap();
    check("DDIM step", &y, &fx, "ddim.sample");

    let sp = d.respaced(&space_timesteps(4000, "100").unwrap()).unwrap();
    let y = sp
        .p_sample(&eps, &x, &tensor(&fx, "spsample.t"), &noise)
        .unwrap();
    check("respaced ancestral step", &y, &fx, "spsample.sample");
    let sd = d
        .respaced(&space_timesteps(4000, "ddim50").unwrap())
        .unwrap();
    let y = sd
        .ddim_sample(&eps, &x, &tensor(&fx, "spddim.t"), 0.0, None)
        .unwrap();
    check("respaced DDIM step", &y, &fx, "spddim.sample");
}
