//! Optimiser trajectories, clipping and schedules against PyTorch (fixture made by
//! tests/fixtures/make_optim.py), in f64 (tight) and f32 (loose).

use brainsynth::io::checkpoint::Checkpoint;
use brainsynth::nn::{Init, ParamStore};
use brainsynth::optim::{
    Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig, clip_grad_norm, lazy_regularization,
};
use brainsynth::{DType, Tensor};

fn fixture() -> Checkpoint {
    Checkpoint::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/optim.safetensors"
    ))
    .expect("fixture readable")
}

fn vals(ck: &Checkpoint, name: &str) -> Vec<f64> {
    ck.get(name)
        .unwrap_or_else(|| panic!("fixture has {name}"))
        .to_vec_f64()
        .unwrap()
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs torch {w}"
        );
    }
}

/// Run three steps with the fixture's gradients and compare every step's parameters.
fn run(name: &str, dtype: DType, tol: f64, make: impl Fn(&ParamStore) -> Box<dyn Optimizer>) {
    let ck = fixture();
    let store = ParamStore::with_dtype(0, dtype);
    let p = store.root().param("p", &[6], Init::Zeros).unwrap();
    p.assign(&Tensor::from_f64s(&vals(&ck, "p0"), &[6], dtype).unwrap())
        .unwrap();
    let mut opt = make(&store);
    let grads = vals(&ck, "grads");
    let want = vals(&ck, name);
    for s in 0..3 {
        let g = Tensor::from_f64s(&grads[s * 6..(s + 1) * 6], &[6], dtype).unwrap();
        p.set_grad(Some(g));
        opt.step().unwrap();
        close(
            &p.to_vec_f64().unwrap(),
            &want[s * 6..(s + 1) * 6],
            tol,
            &format!("{name} ({}) step {}", dtype.name(), s + 1),
        );
    }
}

fn both(name: &str, make: impl Fn(&ParamStore) -> Box<dyn Optimizer>) {
    run(name, DType::F64, 1e-12, &make);
    run(name, DType::F32, 2e-6, &make);
}

#[test]
fn adam_matches_torch() {
    both("adam", |s| {
        Box::new(Adam::new(s, AdamConfig::adam(0.1)).unwrap())
    });
}

#[test]
fn adam_l2_matches_torch() {
    both("adam_l2", |s| {
        Box::new(Adam::new(s, AdamConfig::adam(0.1).with_weight_decay(0.1)).unwrap())
    });
}

#[test]
fn adamw_matches_torch() {
    both("adamw", |s| {
        Box::new(Adam::new(s, AdamConfig::adamw(0.1).with_weight_decay(0.1)).unwrap())
    });
}

#[test]
fn lazy_regularization_adam_matches_torch() {
    let (lr, (b1, b2)) = lazy_regularization(0.0025, (0.0, 0.99), Some(4));
    close(
        &[lr, b1, b2],
        &vals(&fixture(), "lazy4_hparams"),
        1e-15,
        "lazy hparams",
    );
    both("adam_lazy4", move |s| {
        Box::new(Adam::new(s, AdamConfig::adam(lr).with_betas(b1, b2)).unwrap())
    });
}

#[test]
fn sgd_matches_torch() {
    both("sgd", |s| {
        Box::new(Sgd::new(s, SgdConfig::new(0.1)).unwrap())
    });
    both("sgd_momentum", |s| {
        let c = SgdConfig::new(0.1)
            .with_momentum(0.9)
            .with_dampening(0.1)
            .with_weight_decay(0.01);
        Box::new(Sgd::new(s, c).unwrap())
    });
    both("sgd_nesterov", |s| {
        let c = SgdConfig::new(0.1)
            .with_momentum(0.9)
            .with_weight_decay(0.01)
            .with_nesterov(true);
        Box::new(Sgd::new(s, c).unwrap())
    });
}

#[test]
fn clip_grad_norm_matches_torch() {
    let ck = fixture();
    let a = Tensor::zeros(&[3], DType::F64).variable();
    let b = Tensor::zeros(&[2, 2], DType::F64).variable();
    let no_grad = Tensor::zeros(&[2], DType::F64).variable();
    a.set_grad(Some(
        Tensor::from_f64s(&vals(&ck, "clip_in_a"), &[3], DType::F64).unwrap(),
    ));
    b.set_grad(Some(
        Tensor::from_f64s(&vals(&ck, "clip_in_b"), &[2, 2], DType::F64).unwrap(),
    ));
    let total = clip_grad_norm(&[a.clone(), no_grad.clone(), b.clone()], 1.5).unwrap();
    close(&[total], &vals(&ck, "clip_total"), 1e-14, "total norm");
    close(
        &a.grad().unwrap().to_vec_f64().unwrap(),
        &vals(&ck, "clip_a"),
        1e-14,
        "a",
    );
    close(
        &b.grad().unwrap().to_vec_f64().unwrap(),
        &vals(&ck, "clip_b"),
        1e-14,
        "b",
    );
    assert!(no_grad.grad().is_none());
}

#[test]
fn schedules_match_torch() {
    let ck = fixture();
    let poly = LrSchedule::poly(0.01, 10, 0.9);
    let got: Vec<f64> = (0..12).map(|i| poly.lr_at(i)).collect();
    close(&got, &vals(&ck, "poly_lrs"), 1e-12, "poly");
    let cos = LrSchedule::cosine(0.01, 10, 0.1);
    let got: Vec<f64> = (0..11).map(|i| cos.lr_at(i)).collect();
    close(&got, &vals(&ck, "cosine_lrs"), 1e-12, "cosine");
}
