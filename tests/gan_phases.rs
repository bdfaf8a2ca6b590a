//! NVlabs' StyleGAN training phases, gradient for gradient: `tests/fixtures/make_stylegan.py`
//! ran `StyleGAN2Loss.accumulate_gradients` for 'Gmain', 'Greg' (StyleGAN2) and 'Dmain' on its
//! tiny random networks and stored every gradient; our `StyleGan2Loss` runs the same phases on
//! the same networks, inputs and path-length noise. G's gradients (through D, the synthesis
//! network and the mapping with its lr multiplier; for 'Greg' second order, through the
//! gradient w.r.t. ws and the differentiable running mean), D's gradients, the losses, the new
//! `pl_mean` and the buffers a D phase moves (w_avg, StyleGAN3's magnitude EMAs) must agree
//! within 1e-4 relative (f32). StyleGAN3's phases run with its discriminator blur (σ 4).
//! With `gan_parity.rs` (networks, R1 phase) this is NVlabs' whole loss, phase by phase.

mod common;

use std::collections::HashMap;

use brainsynth::Tensor;
use brainsynth::models::gan::loss::{LossConfig, Phase, StyleGan2Loss, StyleGenerator};
use brainsynth::models::gan::mapping::Mapping;
use brainsynth::models::gan::{
    Discriminator, GanConfig, Noise, Sg3Settings, StyleGan2Generator, StyleGan3Generator,
    load_named,
};
use brainsynth::nn::ParamStore;
use common::fixtures::{Array, check_rel, get, load, section, tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

const TOL: f64 = 1e-4;
const GAMMA: f64 = 8.0;

fn tiny_config() -> GanConfig {
    GanConfig {
        z_dim: 16,
        w_dim: 16,
        resolution: 16,
        channels: 5,
        channel_base: 128,
        channel_max: 16,
        mapping_layers: 2,
        conv_clamp: Some(256.0),
        mbstd_group: 4,
    }
}

/// StyleGAN2 with the noise constants instead of fresh noise (the fixture ran NVlabs' G with
/// `noise_mode='const'`), non-fused as NVlabs trains.
struct ConstNoise(StyleGan2Generator);

impl StyleGenerator for ConstNoise {
    fn store(&self) -> &ParamStore {
        &self.0.store
    }
    fn mapping(&self) -> &Mapping {
        &self.0.mapping
    }
    fn synthesize_train(
        &self,
        ws: &Tensor,
        _: bool,
        _: &mut dyn rand::Rng,
    ) -> brainsynth::Result<Tensor> {
        self.0.synthesis(ws, &mut Noise::Const, false)
    }
}

fn scalar(what: &str, ours: f64, reference: &Array) {
    let r = reference.data[0] as f64;
    let e = (ours - r).abs() / r.abs().max(1e-30);
    println!("{what}: {ours} vs {r} (relative {e:.1e})");
    assert!(e <= TOL, "{what}: {ours} vs NVlabs' {r}");
}

/// Every trainable parameter of `store` against the fixture's `<prefix><name>`: a parameter
/// the phase does not reach has no gradient in either (NVlabs' `.grad` stayed None: zeros).
fn check_grads(what: &str, store: &ParamStore, m: &HashMap<String, Array>, prefix: &str) {
    let params = store.trainable();
    assert_eq!(
        params.len(),
        m.keys().filter(|k| k.starts_with(prefix)).count(),
        "{what}: the fixture and our network have different parameter sets"
    );
    let mut reached = 0;
    for p in params {
        let r = get(m, &format!("{prefix}{}", p.name));
        let ours = p.tensor.grad();
        if r.data.iter().all(|&v| v == 0.0) {
            let zero = ours.is_none_or(|g| g.to_vec_f64().unwrap().iter().all(|&v| v == 0.0));
            assert!(
                zero,
                "{what} {}: NVlabs' phase does not reach it, ours does",
                p.name
            );
            continue;
        }
        let g = ours.unwrap_or_else(|| panic!("{what} {}: no gradient", p.name));
        // the fixture stores a 0-d tensor (noise_strength) as [1]
        let g = g.reshape(&r.shape).unwrap();
        check_rel(&format!("{what} {}", p.name), &g, r, TOL);
        reached += 1;
    }
    assert!(reached > 0, "{what}: no parameter was reached");
}

fn no_grads(what: &str, store: &ParamStore) {
    for p in store.trainable() {
        assert!(
            p.tensor.grad().is_none(),
            "{what}: {} got a gradient",
            p.name
        );
    }
}

fn buffers_after(store: &ParamStore, m: &HashMap<String, Array>) {
    let mut n = 0;
    for (name, reference) in m
        .iter()
        .filter_map(|(k, a)| k.strip_prefix("after.").map(|n| (n, a)))
    {
        let ours = store
            .get(name)
            .unwrap_or_else(|| panic!("no buffer {name}"))
            .reshape(&[reference.data.len()])
            .unwrap();
        check_rel(&format!("after D main: {name}"), &ours, reference, TOL);
        n += 1;
    }
    assert!(n > 0, "the fixture holds no buffers");
}

#[allow(clippy::too_many_arguments)]
fn phase(
    loss: &mut StyleGan2Loss,
    phase: Phase,
    g: &dyn StyleGenerator,
    d: &Discriminator,
    reals: &Tensor,
    z: &Tensor,
    gain: f64,
    cur_nimg: u64,
) -> brainsynth::models::gan::loss::PhaseStats {
    g.store().zero_grad();
    d.store.zero_grad();
    let mut rng = StdRng::seed_from_u64(0);
    loss.accumulate_gradients(phase, g, d, reals, z, gain, cur_nimg, &mut rng)
        .unwrap()
}

#[test]
fn stylegan2_phases_match_nvlabs() {
    let base = load("stylegan2.bin");
    let m = load("stylegan2_phases.bin");
    let cfg = tiny_config();
    let (gs, ds) = (ParamStore::new(1), ParamStore::new(2));
    let g = ConstNoise(StyleGan2Generator::new(&gs, &cfg).unwrap());
    let d = Discriminator::new(&ds, &cfg).unwrap();
    load_named(&gs, &section(&base, "G.")).unwrap();
    load_named(&ds, &section(&base, "D.")).unwrap();
    let z = tensor(get(&m, "gen_z"));
    let reals = tensor(get(&base, "reals"))
        .narrow(0, 0, z.shape()[0])
        .unwrap();
    let mut loss = StyleGan2Loss::new(LossConfig {
        style_mixing_prob: 0.0,
        ..LossConfig::stylegan2(GAMMA)
    });

    let st = phase(&mut loss, Phase::GMain, &g, &d, &reals, &z, 1.0, 0);
    scalar("G main loss", st.loss, get(&m, "gmain_loss"));
    check_grads("G main", &gs, &m, "gmain.");
    no_grads("G main, D", &ds);

    loss.pl_mean = 0.5;
    loss.pl_noise = Some(tensor(get(&m, "pl_noise")));
    phase(&mut loss, Phase::GReg, &g, &d, &reals, &z, 4.0, 0);
    scalar("G reg pl_mean", loss.pl_mean, get(&m, "greg_pl_mean"));
    check_grads("G reg", &gs, &m, "greg.");
    no_grads("G reg, D", &ds);

    let st = phase(&mut loss, Phase::DMain, &g, &d, &reals, &z, 1.0, 0);
    scalar("D main loss", st.loss, get(&m, "dmain_loss"));
    check_grads("D main", &ds, &m, "dmain.");
    no_grads("D main, G", &gs);
    buffers_after(&gs, &m);
}

#[test]
fn stylegan3_phases_with_the_blur_match_nvlabs() {
    let base = load("stylegan3.bin");
    let m = load("stylegan3_phases.bin");
    let gcfg = GanConfig {
        resolution: 32,
        channel_base: 256,
        channel_max: 8,
        ..tiny_config()
    };
    let dcfg = GanConfig {
        resolution: 32,
        ..tiny_config()
    };
    let (gs, ds) = (ParamStore::new(1), ParamStore::new(2));
    let g = StyleGan3Generator::new(&gs, &gcfg, &Sg3Settings::for_batch(32)).unwrap();
    let d = Discriminator::new(&ds, &dcfg).unwrap();
    load_named(&gs, &section(&base, "G.")).unwrap();
    load_named(&ds, &section(&base, "D.")).unwrap();
    let z = tensor(get(&m, "gen_z"));
    let reals = tensor(get(&base, "reals"))
        .narrow(0, 0, z.shape()[0])
        .unwrap();
    // batch 4: the blur fades over 25 kimg; at 15 kimg σ = 4
    let mut loss = StyleGan2Loss::new(LossConfig::stylegan3(GAMMA, 4));
    assert_eq!(loss.config.blur_fade_kimg, 25.0);
    let cur_nimg = 15_000;

    let st = phase(&mut loss, Phase::GMain, &g, &d, &reals, &z, 1.0, cur_nimg);
    scalar("G main loss", st.loss, get(&m, "gmain_loss"));
    check_grads("G main", &gs, &m, "gmain.");
    no_grads("G main, D", &ds);

    // no path-length phase for StyleGAN3: nothing happens
    let st = phase(&mut loss, Phase::GReg, &g, &d, &reals, &z, 4.0, cur_nimg);
    assert!(st.loss.is_nan());
    no_grads("G reg", &gs);

    let st = phase(&mut loss, Phase::DMain, &g, &d, &reals, &z, 1.0, cur_nimg);
    scalar("D main loss", st.loss, get(&m, "dmain_loss"));
    check_grads("D main", &ds, &m, "dmain.");
    no_grads("D main, G", &gs);
    buffers_after(&gs, &m);
}
