//! StyleGAN 1 in the progressive training step ([`ProgressiveCore`] with
//! [`ProgressiveConfig::stylegan1`]): a tiny 16×16 network on a fast schedule grows through every
//! level with finite losses and R1 values, moves its tracked mean w, and two runs from one seed
//! end bit-identical.

use brainsynth::Tensor;
use brainsynth::models::gan::growing::{
    Growth, GrowthSchedule, ProgressiveConfig, ProgressiveCore,
};
use brainsynth::models::gan::loss::GrowingLoss;
use brainsynth::models::gan::{GanConfig, StyleGan1Discriminator, StyleGan1Generator};
use brainsynth::nn::ParamStore;
use brainsynth::testing::rand_tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn config() -> GanConfig {
    GanConfig {
        z_dim: 8,
        w_dim: 8,
        resolution: 16,
        channels: 5,
        channel_base: 64,
        channel_max: 8,
        mapping_layers: 8,
        conv_clamp: None,
        mbstd_group: 4,
    }
}

/// 8×8 first (as NVlabs' StyleGAN config), 8 images stable + 8 fading per level, batch 4.
fn schedule() -> GrowthSchedule {
    GrowthSchedule {
        final_resolution: 16,
        initial_resolution: 8,
        training_kimg: 0.008,
        transition_kimg: 0.008,
        batch_base: 4,
        batch_per_resolution: vec![],
        lr_per_resolution: vec![(16, 0.002)],
        minibatch_repeats: 1,
    }
}

fn core(seed: u64) -> ProgressiveCore {
    let gs = ParamStore::new(seed);
    let ds = ParamStore::new(seed ^ 0xD);
    let g = StyleGan1Generator::new(&gs, &config()).unwrap();
    let d = StyleGan1Discriminator::new(&ds, &config()).unwrap();
    ProgressiveCore::new(
        Box::new(g),
        Box::new(d),
        ProgressiveConfig::stylegan1(schedule()),
    )
    .unwrap()
}

/// Run `steps` minibatches of random reals; the growth of each step.
fn run(c: &mut ProgressiveCore, steps: usize, seed: u64) -> Vec<Growth> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut k = 0;
    (0..steps)
        .map(|_| {
            let st = c
                .step(
                    &mut |n| {
                        k += 1;
                        Ok(rand_tensor(&[n, 5, 16, 16], 100 + k)
                            .mul_scalar(0.5)?
                            .to_f32_like())
                    },
                    &mut rng,
                )
                .unwrap();
            assert!(st.g_loss.is_finite() && st.d_loss.is_finite(), "{st:?}");
            assert!(st.penalty.is_finite() && st.penalty >= 0.0, "R1 {st:?}");
            st.growth
        })
        .collect()
}

trait F32 {
    fn to_f32_like(&self) -> Tensor;
}
impl F32 for Tensor {
    fn to_f32_like(&self) -> Tensor {
        Tensor::from_f64s(
            &self.to_vec_f64().unwrap(),
            self.shape(),
            brainsynth::DType::F32,
        )
        .unwrap()
    }
}

#[test]
fn stylegan1_trains_through_every_level_deterministically() {
    let cfg = ProgressiveConfig::stylegan1(schedule());
    assert_eq!(cfg.loss, GrowingLoss::LogisticR1 { gamma: 10.0 });
    let mut a = core(3);
    let avg0 =
        a.g.store()
            .get("dlatent_avg")
            .unwrap()
            .to_vec_f64()
            .unwrap();
    let growths = run(&mut a, 8, 1);
    // 8×8 stable for 8 images (and α = 1 − 0 at the fade's first image), 16×16 half faded in
    // at 12 images, stable from 16
    for (i, g) in growths.iter().enumerate() {
        let (level, alpha) = match i {
            0..=2 => (1, 1.0),
            3 => (2, 0.5),
            _ => (2, 1.0),
        };
        assert!(
            g.level == level && (g.alpha - alpha).abs() < 1e-9,
            "step {i}: {growths:?}"
        );
    }
    assert_eq!(a.cur_nimg, 32);
    let avg1 =
        a.g.store()
            .get("dlatent_avg")
            .unwrap()
            .to_vec_f64()
            .unwrap();
    assert!(avg0.iter().zip(&avg1).any(|(x, y)| x != y));
    let mut b = core(3);
    run(&mut b, 8, 1);
    for (name, t) in a.g.store().named_tensors() {
        let u = b.g.store().get(&name).unwrap();
        assert_eq!(t.to_vec_f64().unwrap(), u.to_vec_f64().unwrap(), "{name}");
    }
}
