//! The StyleGAN training core: NVlabs' D-regulariser phase on the parity fixture (R1 value and
//! every D gradient), a full four-phase step of both StyleGANs on a tiny configuration (finite
//! losses, every network moved, same seed → same numbers), mirror augmentation.

mod common;

use brainsynth::models::gan::loss::{
    GanTrainer, LossConfig, Phase, StyleGan2Loss, TrainConfig, mirror,
};
use brainsynth::models::gan::{
    Discriminator, Sg3Settings, StyleGan2Generator, StyleGan3Generator, load_named,
};
use brainsynth::nn::ParamStore;
use brainsynth::testing::rand_tensor;
use brainsynth::{DType, Tensor};
use common::fixtures::{get, load, rel_err, section, stylegan_tiny_config, tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn dreg_phase_matches_nvlabs_accumulate_gradients() {
    let m = load("stylegan2.bin");
    let (gs, ds) = (ParamStore::new(1), ParamStore::new(2));
    let g = StyleGan2Generator::new(&gs, &stylegan_tiny_config()).unwrap();
    let d = Discriminator::new(&ds, &stylegan_tiny_config()).unwrap();
    load_named(&gs, &section(&m, "G.")).unwrap();
    load_named(&ds, &section(&m, "D.")).unwrap();
    let mut loss = StyleGan2Loss::new(LossConfig::stylegan2(8.0));
    let reals = tensor(get(&m, "reals"));
    let z = tensor(get(&m, "z"));
    let mut rng = StdRng::seed_from_u64(0);
    let st = loss
        .accumulate_gradients(Phase::DReg, &g, &d, &reals, &z, 1.0, 0, &mut rng)
        .unwrap();
    let r1 = get(&m, "r1").data[0] as f64;
    assert!(
        (st.r1_penalty - r1).abs() <= 1e-4 * r1.abs(),
        "{} vs {r1}",
        st.r1_penalty
    );
    for p in ds.params() {
        let r = get(&m, &format!("dreg.{}", p.name));
        let g = p.tensor.grad().unwrap_or_else(|| p.tensor.zeros_like());
        let e = rel_err(&g, r);
        assert!(
            e <= 1e-4 || r.data.iter().all(|&v| v == 0.0),
            "{}: {e:e}",
            p.name
        );
    }
    // G was not touched by a D phase
    assert!(gs.params().iter().all(|p| p.tensor.grad().is_none()));
}

fn run_steps(sg3: bool, seed: u64) -> Vec<f64> {
    let cfg = stylegan_tiny_config();
    let (gs, ds) = (ParamStore::new(seed), ParamStore::new(seed + 1));
    let d = Discriminator::new(&ds, &cfg).unwrap();
    let r = rand_tensor(&[4, 5, 16, 16], seed + 2)
        .clamp(-1.0, 1.0)
        .unwrap();
    let reals = Tensor::from_f64s(&r.to_vec_f64().unwrap(), r.shape(), DType::F32).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut record = |s: brainsynth::models::gan::loss::StepStats| {
        out.extend([s.g_loss, s.d_loss, s.pl_penalty, s.r1_penalty]);
    };
    let first_w = ds.params()[0].tensor.to_vec_f64().unwrap();
    if sg3 {
        let g = StyleGan3Generator::new(&gs, &cfg, &Sg3Settings::for_batch(4)).unwrap();
        let mut t = GanTrainer::new(g, d, TrainConfig::stylegan3(4, 8.0)).unwrap();
        let mag = gs
            .get("synthesis.L2_36_16.magnitude_ema")
            .unwrap()
            .item()
            .unwrap();
        for _ in 0..2 {
            record(t.step(&reals, &mut rng).unwrap());
        }
        // the D-main phase ran G in training mode: magnitude EMAs moved
        assert_ne!(
            gs.get("synthesis.L2_36_16.magnitude_ema")
                .unwrap()
                .item()
                .unwrap(),
            mag
        );
    } else {
        let g = StyleGan2Generator::new(&gs, &cfg).unwrap();
        let mut t = GanTrainer::new(g, d, TrainConfig::stylegan2(4, 8.0)).unwrap();
        for _ in 0..2 {
            record(t.step(&reals, &mut rng).unwrap());
        }
        assert!(t.loss.pl_mean > 0.0 && t.loss.pl_mean.is_finite());
        let w_avg = gs.get("mapping.w_avg").unwrap().to_vec_f64().unwrap();
        assert!(w_avg.iter().any(|&v| v != 0.0), "w_avg was not tracked");
    }
    assert_ne!(
        ds.params()[0].tensor.to_vec_f64().unwrap(),
        first_w,
        "D did not move"
    );
    out
}

/// The trainer tests run one at a time (they are the heavy ones).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_steps(sg3: bool) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let a = run_steps(sg3, 5);
    // step 1 runs every phase (batch 0 is a multiple of every interval), step 2 only the mains
    let (first, second) = a.split_at(4);
    assert!(
        first[0].is_finite() && first[1].is_finite() && first[3].is_finite(),
        "{a:?}"
    );
    assert_eq!(
        first[2].is_finite(),
        !sg3,
        "path length runs for StyleGAN2 only: {a:?}"
    );
    assert!(second[0].is_finite() && second[1].is_finite());
    assert!(second[2].is_nan() && second[3].is_nan(), "{a:?}");
    // same seed, same numbers: bit for bit, whatever runs beside it (the CPU kernels combine
    // partial sums in a fixed order).
    let b = run_steps(sg3, 5);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "{a:?} vs {b:?}");
}

#[test]
fn stylegan2_step_runs_all_phases_and_repeats() {
    check_steps(false);
}

#[test]
fn stylegan3_step_runs_and_repeats() {
    check_steps(true);
}

#[test]
fn mirror_flips_the_chosen_images_whole() {
    let x = rand_tensor(&[3, 5, 4, 6], 9);
    let y = mirror(&x, &[true, false, true]).unwrap();
    let (xv, yv) = (x.to_vec_f64().unwrap(), y.to_vec_f64().unwrap());
    let at = |n: usize, c: usize, h: usize, w: usize| ((n * 5 + c) * 4 + h) * 6 + w;
    for n in 0..3 {
        for c in 0..5 {
            for h in 0..4 {
                for w in 0..6 {
                    let src = if n != 1 {
                        at(n, c, h, 5 - w)
                    } else {
                        at(n, c, h, w)
                    };
                    assert_eq!(yv[at(n, c, h, w)], xv[src]);
                }
            }
        }
    }
    assert!(mirror(&x, &[true]).is_err());
}
