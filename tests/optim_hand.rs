//! Optimiser rules worked out by hand on tiny parameters: Adam's bias correction, per-parameter
//! lr multiplier / weight-decay switch / frozen, Nesterov, schedules, lazy regularisation, EMA.

use brainsynth::nn::{Init, ParamAttrs, ParamStore};
use brainsynth::optim::{
    Adam, AdamConfig, Ema, LrSchedule, Optimizer, Sgd, SgdConfig, lazy_regularization,
};
use brainsynth::{DType, Tensor};

fn t(v: &[f64]) -> Tensor {
    Tensor::from_f64s(v, &[v.len()], DType::F64).unwrap()
}
fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{a} vs {b}");
}

#[test]
fn adam_two_steps_with_constant_gradient() {
    // With a constant gradient the bias-corrected moments are exactly g and g², so each step
    // moves p by lr·g/(|g| + eps).
    let store = ParamStore::with_dtype(0, DType::F64);
    let p = store.root().param("p", &[2], Init::Zeros).unwrap();
    p.assign(&t(&[1.0, -2.0])).unwrap();
    let mut opt = Adam::new(&store, AdamConfig::adam(0.01)).unwrap();
    let g = [0.5, -0.1];
    let mut want = [1.0, -2.0];
    for _ in 0..2 {
        p.set_grad(Some(t(&g)));
        opt.step().unwrap();
        for i in 0..2 {
            want[i] -= 0.01 * g[i] / (g[i].abs() + 1e-8);
        }
        let got = p.to_vec_f64().unwrap();
        close(got[0], want[0], 1e-14);
        close(got[1], want[1], 1e-14);
    }
    // the state after two steps: m = 0.19·g, v = 0.001999·g², step 2
    let st = opt.state_tensors();
    let get = |n: &str| {
        st.iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .to_vec_f64()
            .unwrap()
    };
    assert_eq!(get("p.step"), [2.0]);
    close(get("p.exp_avg")[0], 0.19 * 0.5, 1e-14);
    close(get("p.exp_avg_sq")[1], 0.001999 * 0.01, 1e-12);
}

#[test]
fn per_parameter_attributes() {
    // SGD lr 0.1, weight decay 0.5, every p = 1 and g = 1.
    let store = ParamStore::with_dtype(0, DType::F64);
    let vs = store.root();
    let a = vs.with_lr_mult(0.01).param("a", &[1], Init::Ones).unwrap();
    let b = vs.no_weight_decay().param("b", &[1], Init::Ones).unwrap();
    let c = vs.frozen().param("c", &[1], Init::Ones).unwrap();
    let d = vs.param("d", &[1], Init::Ones).unwrap(); // no gradient: untouched
    let e = vs.param("e", &[1], Init::Ones).unwrap();
    for x in [&a, &b, &c, &e] {
        x.set_grad(Some(t(&[1.0])));
    }
    let mut opt = Sgd::new(&store, SgdConfig::new(0.1).with_weight_decay(0.5)).unwrap();
    opt.step().unwrap();
    close(a.item().unwrap(), 1.0 - 0.001 * 1.5, 1e-15);
    close(b.item().unwrap(), 0.9, 1e-15);
    assert_eq!(c.item().unwrap(), 1.0);
    assert_eq!(d.item().unwrap(), 1.0);
    close(e.item().unwrap(), 1.0 - 0.1 * 1.5, 1e-15);
    // unfreezing later takes effect at the next step
    store
        .set_attrs(
            "c",
            ParamAttrs {
                frozen: false,
                ..Default::default()
            },
        )
        .unwrap();
    opt.step().unwrap();
    close(c.item().unwrap(), 0.85, 1e-15);
    // AdamW's decoupled decay also uses lr·lr_mult: first step p·(1 − lr·m·wd) − lr·m·sign(g)
    let store = ParamStore::with_dtype(0, DType::F64);
    let w = store
        .root()
        .with_lr_mult(0.5)
        .param("w", &[1], Init::Ones)
        .unwrap();
    w.set_grad(Some(t(&[2.0])));
    let mut opt = Adam::new(&store, AdamConfig::adamw(0.1).with_weight_decay(0.2)).unwrap();
    opt.step().unwrap();
    close(
        w.item().unwrap(),
        (1.0 - 0.05 * 0.2) - 0.05 * 2.0 / (2.0 + 1e-8),
        1e-14,
    );
    assert_eq!(opt.kind(), "adamw");
}

#[test]
fn nesterov_by_hand() {
    // p = 1, g = 1, momentum 0.9, lr 0.1:
    // step 1: buf = 1,   g' = 1 + 0.9·1   = 1.9,  p = 0.81
    // step 2: buf = 1.9, g' = 1 + 0.9·1.9 = 2.71, p = 0.539
    let store = ParamStore::with_dtype(0, DType::F64);
    let p = store.root().param("p", &[1], Init::Ones).unwrap();
    let cfg = SgdConfig::new(0.1).with_momentum(0.9).with_nesterov(true);
    let mut opt = Sgd::new(&store, cfg).unwrap();
    for want in [0.81, 0.539] {
        p.set_grad(Some(t(&[1.0])));
        opt.step().unwrap();
        close(p.item().unwrap(), want, 1e-14);
    }
    assert!(Sgd::new(&store, SgdConfig::new(0.1).with_nesterov(true)).is_err());
}

#[test]
fn schedules_by_hand() {
    let s = LrSchedule::poly(0.01, 100, 0.9);
    close(s.lr_at(0), 0.01, 1e-15);
    close(s.lr_at(50), 0.01 * 0.5f64.powf(0.9), 1e-15);
    assert_eq!(s.lr_at(100), 0.0);
    assert_eq!(s.lr_at(150), 0.0);
    assert_eq!(LrSchedule::constant(0.3).lr_at(1_000_000), 0.3);
    // mmseg Swin/UperNet: linear warm-up (ratio 1e-6) over 10 iters, then poly power 1
    let w = LrSchedule::poly(6e-5, 100, 1.0).with_warmup(10, 1e-6);
    close(w.lr_at(0), 6e-5 * 1e-6, 1e-12);
    close(w.lr_at(5), 6e-5 * 0.95 * (1.0 - 0.5 * (1.0 - 1e-6)), 1e-12);
    close(w.lr_at(10), 6e-5 * 0.9, 1e-15);
    close(w.lr_at(40), 6e-5 * 0.6, 1e-15);
    let c = LrSchedule::cosine(1.0, 10, 0.0);
    close(c.lr_at(5), 0.5, 1e-15);
    assert!(c.lr_at(10).abs() < 1e-15);
}

#[test]
fn lazy_regularization_numbers() {
    // StyleGAN2: D regularised every 16 minibatches, G every 4, base lr 0.0025, betas (0, 0.99)
    let (lr, (b1, b2)) = lazy_regularization(0.0025, (0.0, 0.99), Some(16));
    close(lr, 0.0025 * 16.0 / 17.0, 1e-15);
    assert_eq!(b1, 0.0);
    close(b2, 0.99f64.powf(16.0 / 17.0), 1e-15);
    let (lr, (_, b2)) = lazy_regularization(0.002, (0.5, 0.99), Some(4));
    close(lr, 0.0016, 1e-15);
    close(b2, 0.99f64.powf(0.8), 1e-15);
    assert_eq!(
        lazy_regularization(0.1, (0.9, 0.9), None),
        (0.1, (0.9, 0.9))
    );
    assert_eq!(
        lazy_regularization(0.1, (0.9, 0.9), Some(0)),
        (0.1, (0.9, 0.9))
    );
}

#[test]
fn ema_of_weights() {
    let store = ParamStore::with_dtype(0, DType::F64);
    let p = store.root().param("p", &[2], Init::Zeros).unwrap();
    p.assign(&t(&[1.0, 2.0])).unwrap();
    let buf = store.root().buffer("w_avg", &t(&[7.0])).unwrap();
    let mut ema = Ema::half_life(&store, 10.0, Some(0.05)).unwrap();
    // β = 0.5^(batch / ema_nimg), ema_nimg = min(10 000, cur_nimg·0.05)
    close(ema.beta(1_000_000, 32), 0.5f64.powf(32.0 / 10_000.0), 1e-15);
    close(ema.beta(1000, 32), 0.5f64.powf(32.0 / 50.0), 1e-15);
    let no_ramp = Ema::half_life(&store, 10.0, None).unwrap();
    close(no_ramp.beta(0, 32), 0.5f64.powf(32.0 / 10_000.0), 1e-15);

    p.assign(&t(&[3.0, 4.0])).unwrap();
    buf.assign(&t(&[9.0])).unwrap();
    ema.update_with_beta(&store, 0.5).unwrap(); // ema = p + 0.5·(ema − p)
    let shadow = ema.named_tensors();
    assert_eq!(shadow[0].0, "p");
    assert_eq!(shadow[0].1.to_vec_f64().unwrap(), [2.0, 3.0]);
    assert_eq!(shadow[1].1.to_vec_f64().unwrap(), [9.0]); // buffers copied
    // sample with the averaged weights, then the live ones come back
    let seen = ema.with_averaged(&store, || p.to_vec_f64()).unwrap();
    assert_eq!(seen, [2.0, 3.0]);
    assert_eq!(p.to_vec_f64().unwrap(), [3.0, 4.0]);
    // or copy into a second instance of the model (G_ema)
    let g_ema = ParamStore::with_dtype(1, DType::F64);
    g_ema.root().param("p", &[2], Init::Zeros).unwrap();
    g_ema.root().buffer("w_avg", &t(&[0.0])).unwrap();
    ema.copy_to(&g_ema).unwrap();
    assert_eq!(g_ema.get("p").unwrap().to_vec_f64().unwrap(), [2.0, 3.0]);
    assert_eq!(g_ema.get("w_avg").unwrap().to_vec_f64().unwrap(), [9.0]);
    // a different store is refused
    let other = ParamStore::with_dtype(0, DType::F64);
    other.root().param("q", &[2], Init::Zeros).unwrap();
    assert!(ema.update_with_beta(&other, 0.5).is_err());
    // fixed-β constructor
    let mut fixed = Ema::with_beta(&store, 0.9).unwrap();
    p.assign(&t(&[13.0, 14.0])).unwrap();
    fixed.update(&store, 0, 4).unwrap();
    let s = fixed.named_tensors()[0].1.to_vec_f64().unwrap();
    close(s[0], 13.0 + 0.9 * (3.0 - 13.0), 1e-14);
}
