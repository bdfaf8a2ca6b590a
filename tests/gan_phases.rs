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
use common::fixtures::{Array, check_rel, get, load, section, stylegan_tiny_config, tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

const TOL: f64 = 1e-4;
const GAMMA: f64 = 8.0;

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

/// The fixture's networks loaded into `gs` (G, built by the caller) and a new D in `ds`, the
/// phases' latents and the first N reals.
struct Inputs {
    m: HashMap<String, Array>,
    d: Discriminator,
    gs: ParamStore,
    ds: ParamStore,
    z: Tensor,
    reals: Tensor,
}

fn inputs(arch: &str, gs: ParamStore, dcfg: &GanConfig) -> Inputs {
    let base = load(&format!("{arch}.bin"));
    let m = load(&format!("{arch}_phases.bin"));
    let ds = ParamStore::new(2);
    let d = Discriminator::new(&ds, dcfg).unwrap();
    load_named(&gs, &section(&base, "G.")).unwrap();
    load_named(&ds, &section(&base, "D.")).unwrap();
    let z = tensor(get(&m, "gen_z"));
    let reals = tensor(get(&base, "reals"))
        .narrow(0, 0, z.shape()[0])
        .unwrap();
    Inputs {
        m,
        d,
        gs,
        ds,
        z,
        reals,
    }
}

/// G main or D main against the fixture: the loss, the phase's network's gradients, none for the
/// other network; after D main, the buffers it moved.
fn main_phase(
    loss: &mut StyleGan2Loss,
    which: Phase,
    g: &dyn StyleGenerator,
    x: &Inputs,
    cur_nimg: u64,
) {
    let st = phase(loss, which, g, &x.d, &x.reals, &x.z, 1.0, cur_nimg);
    let (tag, key, own, other) = match which {
        Phase::GMain => ("G main", "gmain", &x.gs, &x.ds),
        _ => ("D main", "dmain", &x.ds, &x.gs),
    };
    scalar(
        &format!("{tag} loss"),
        st.loss,
        get(&x.m, &format!("{key}_loss")),
    );
    check_grads(tag, own, &x.m, &format!("{key}."));
    no_grads(&format!("{tag}, the other network"), other);
    if which == Phase::DMain {
        buffers_after(&x.gs, &x.m);
    }
}

#[test]
fn stylegan2_phases_match_nvlabs() {
    let cfg = stylegan_tiny_config();
    let gs = ParamStore::new(1);
    let g = ConstNoise(StyleGan2Generator::new(&gs, &cfg).unwrap());
    let x = inputs("stylegan2", gs, &cfg);
    let mut loss = StyleGan2Loss::new(LossConfig {
        style_mixing_prob: 0.0,
        ..LossConfig::stylegan2(GAMMA)
    });
    main_phase(&mut loss, Phase::GMain, &g, &x, 0);

    loss.pl_mean = 0.5;
    loss.pl_noise = Some(tensor(get(&x.m, "pl_noise")));
    phase(&mut loss, Phase::GReg, &g, &x.d, &x.reals, &x.z, 4.0, 0);
    scalar("G reg pl_mean", loss.pl_mean, get(&x.m, "greg_pl_mean"));
    check_grads("G reg", &x.gs, &x.m, "greg.");
    no_grads("G reg, D", &x.ds);

    main_phase(&mut loss, Phase::DMain, &g, &x, 0);
}

#[test]
fn stylegan3_phases_with_the_blur_match_nvlabs() {
    let gcfg = GanConfig {
        resolution: 32,
        channel_base: 256,
        channel_max: 8,
        ..stylegan_tiny_config()
    };
    let dcfg = GanConfig {
        resolution: 32,
        ..stylegan_tiny_config()
    };
    let gs = ParamStore::new(1);
    let g = StyleGan3Generator::new(&gs, &gcfg, &Sg3Settings::for_batch(32)).unwrap();
    let x = inputs("stylegan3", gs, &dcfg);
    // batch 4: the blur fades over 25 kimg; at 15 kimg σ = 4
    let mut loss = StyleGan2Loss::new(LossConfig::stylegan3(GAMMA, 4));
    assert_eq!(loss.config.blur_fade_kimg, 25.0);
    let cur_nimg = 15_000;
    main_phase(&mut loss, Phase::GMain, &g, &x, cur_nimg);

    // no path-length phase for StyleGAN3: nothing happens
    let st = phase(
        &mut loss,
        Phase::GReg,
        &g,
        &x.d,
        &x.reals,
        &x.z,
        4.0,
        cur_nimg,
    );
    assert!(st.loss.is_nan());
    no_grads("G reg", &x.gs);

    main_phase(&mut loss, Phase::DMain, &g, &x, cur_nimg);
}
