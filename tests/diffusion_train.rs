//! The diffusion training step: on a fixed batch the ε-MSE loss falls, the EMA moves toward the
//! weights, and the same seed gives bit-identical weights; dropout acts only in training; bad
//! configurations and inputs are errors.

mod common;

use brainsynth::models::diffusion::{
    Diffusion, DiffusionUNet, DiffusionUNetConfig, Schedule, draw_t_noise, train_step,
};
use brainsynth::nn::ParamStore;
use brainsynth::optim::{Adam, AdamConfig, Ema};
use brainsynth::{DType, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn tiny() -> DiffusionUNetConfig {
    common::tiny_diffusion_unet(8, 2, 0.0)
}

/// Losses of `steps` steps on one fixed batch, and the final weights.
fn run(seed: u64, steps: usize) -> (Vec<f64>, Vec<f32>, f64) {
    let store = ParamStore::new(seed);
    let model = DiffusionUNet::new(&store.root(), tiny()).unwrap();
    let d = Diffusion::new(Schedule::study());
    let mut opt = Adam::new(&store, AdamConfig::adamw(2e-3).with_weight_decay(0.0)).unwrap();
    let mut ema = Ema::with_beta(&store, 0.9).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let x0 = Tensor::rand_uniform(&[4, 2, 8, 8], -1.0, 1.0, DType::F32, &mut rng);
    let (t, noise) = draw_t_noise(&d, &x0, &mut rng).unwrap();
    let losses = (0..steps)
        .map(|_| {
            train_step(
                &model,
                &d,
                &store,
                &mut opt,
                &x0,
                &t,
                &noise,
                Some(10.0),
                Some(&mut ema),
                &mut rng,
            )
            .unwrap()
            .loss
        })
        .collect();
    let name = "out.2.weight";
    let w = store.get(name).unwrap().to_vec_f32().unwrap();
    let e = ema
        .named_tensors()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
        .to_vec_f64()
        .unwrap();
    // zero-initialised, so the EMA lies strictly between 0 and the weights
    let ratio =
        e.iter().map(|v| v.abs()).sum::<f64>() / w.iter().map(|v| v.abs() as f64).sum::<f64>();
    (losses, w, ratio)
}

#[test]
fn training_step_lowers_the_loss_and_is_reproducible() {
    let (losses, w, ratio) = run(5, 12);
    println!("losses {losses:?}, EMA/weights {ratio:.3}");
    assert!(
        losses[11] < 0.8 * losses[0],
        "loss did not fall: {losses:?}"
    );
    assert!(ratio > 0.05 && ratio < 0.99, "EMA ratio {ratio}");
    let (l2, w2, _) = run(5, 12);
    assert_eq!(losses, l2);
    assert_eq!(w, w2);
}

#[test]
fn dropout_acts_only_in_training_and_follows_the_seed() {
    let mut cfg = tiny();
    cfg.dropout = 0.3;
    let store = ParamStore::new(2);
    let model = DiffusionUNet::new(&store.root(), cfg).unwrap();
    // the zero-initialised last convs (res blocks, output) would hide dropout
    for p in store.params() {
        if p.name.ends_with("out_layers.3.weight") || p.name == "out.2.weight" {
            let n = p.tensor.elem_count();
            let v: Vec<f64> = (0..n)
                .map(|i| ((i * 7919) % 13) as f64 / 13.0 - 0.5)
                .collect();
            p.tensor
                .assign(&Tensor::from_f64s(&v, p.tensor.shape(), DType::F32).unwrap())
                .unwrap();
        }
    }
    let mut rng = StdRng::seed_from_u64(9);
    let x = Tensor::randn(&[2, 2, 8, 8], DType::F32, &mut rng);
    let t = Tensor::from_f64s(&[3.0, 300.0], &[2], DType::F32).unwrap();
    let eval = model.forward(&x, &t).unwrap().to_vec_f32().unwrap();
    let train = |seed| {
        let mut r = StdRng::seed_from_u64(seed);
        model
            .forward_with(&x, &t, Some(&mut r))
            .unwrap()
            .to_vec_f32()
            .unwrap()
    };
    assert_ne!(eval, train(1));
    assert_eq!(train(1), train(1));
    assert_ne!(train(1), train(2));
}

#[test]
fn bad_configurations_and_inputs_are_errors() {
    let build = |f: &dyn Fn(&mut DiffusionUNetConfig)| {
        let mut c = tiny();
        f(&mut c);
        DiffusionUNet::new(&ParamStore::new(0).root(), c).err()
    };
    for (what, e) in [
        ("width 48", build(&|c| c.model_channels = 48)),
        ("5 heads", build(&|c| c.num_heads = 5)),
        ("no levels", build(&|c| c.channel_mult.clear())),
        ("size 7 for 2 levels", build(&|c| c.image_size = 7)),
        ("dropout 2", build(&|c| c.dropout = 2.0)),
    ] {
        let e = e.unwrap_or_else(|| panic!("{what} accepted"));
        println!("{what}: {e}");
    }
    assert!(DiffusionUNetConfig::guided_defaults(100, 5, 64, 3).is_err());
    let store = ParamStore::new(0);
    let model = DiffusionUNet::new(&store.root(), tiny()).unwrap();
    let t = Tensor::zeros(&[2], DType::F32);
    for shape in [&[2, 3, 8, 8][..], &[2, 2, 7, 8], &[2, 2, 8]] {
        assert!(
            model
                .forward(&Tensor::zeros(shape, DType::F32), &t)
                .is_err(),
            "{shape:?}"
        );
    }
    let x = Tensor::zeros(&[2, 2, 8, 8], DType::F32);
    assert!(model.forward(&x, &Tensor::zeros(&[3], DType::F32)).is_err());
}
