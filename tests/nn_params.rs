//! Parameter store: hierarchical names, deterministic init, attributes, buffers, counting.

use brainsynth::DType;
use brainsynth::nn::{FanMode, Init, ParamAttrs, ParamStore};

#[test]
fn hierarchical_names_in_creation_order() {
    let store = ParamStore::new(1);
    let vs = store.root();
    let b = vs.sub("synthesis").sub("b64");
    b.sub("conv0")
        .param("weight", &[4, 3, 3, 3], Init::normal(1.0))
        .unwrap();
    b.sub("conv0").param("bias", &[4], Init::Zeros).unwrap();
    vs.sub("mapping")
        .sub("fc0")
        .param("weight", &[2, 2], Init::Ones)
        .unwrap();
    vs.sub("synthesis")
        .buffer("w_avg", &brainsynth::Tensor::zeros(&[2], DType::F32))
        .unwrap();
    let names: Vec<String> = store.params().into_iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "synthesis.b64.conv0.weight",
            "synthesis.b64.conv0.bias",
            "mapping.fc0.weight"
        ]
    );
    let all: Vec<String> = store.named_tensors().into_iter().map(|p| p.0).collect();
    assert_eq!(all.last().unwrap(), "synthesis.w_avg");
    assert_eq!(store.num_params(), 4 * 27 + 4 + 4);
    assert_eq!(store.len(), 3);
    assert!(store.get("synthesis.w_avg").is_some());
    assert!(store.param("synthesis.w_avg").is_none());
    assert!(store.buffer("synthesis.w_avg").is_some());
    // params are gradient leaves, buffers are not
    assert!(store.get("mapping.fc0.weight").unwrap().is_variable());
    assert!(!store.get("synthesis.w_avg").unwrap().requires_grad());
}

#[test]
fn duplicate_and_bad_names_are_errors() {
    let store = ParamStore::new(1);
    let vs = store.root().sub("a");
    vs.param("w", &[1], Init::Zeros).unwrap();
    assert!(vs.param("w", &[1], Init::Zeros).is_err());
    assert!(vs.param("x/y", &[1], Init::Zeros).is_err());
    assert!(vs.param("", &[1], Init::Zeros).is_err());
    assert!(store.root().sub("").param("w", &[1], Init::Zeros).is_err());
}

#[test]
fn init_depends_on_seed_and_name_only() {
    let mk = |seed: u64, extra_first: bool| {
        let s = ParamStore::new(seed);
        if extra_first {
            s.root().param("other", &[7], Init::normal(1.0)).unwrap();
        }
        s.root()
            .sub("l")
            .param("w", &[8], Init::normal(1.0))
            .unwrap()
            .to_vec_f64()
            .unwrap()
    };
    assert_eq!(mk(3, false), mk(3, true));
    assert_ne!(mk(3, false), mk(4, false));
}

#[test]
fn initialisers_have_the_right_spread() {
    let s = ParamStore::with_dtype(9, DType::F64);
    let vs = s.root();
    let stats = |v: Vec<f64>| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
        (
            m,
            var.sqrt(),
            v.iter().cloned().fold(0.0f64, |a, b| a.max(b.abs())),
        )
    };
    // kaiming normal, relu, fan_in = 50·3·3 = 450: std √(2/450)
    let w = vs
        .param(
            "kn",
            &[40, 50, 3, 3],
            Init::KaimingNormal {
                a: 0.0,
                mode: FanMode::FanIn,
            },
        )
        .unwrap();
    let (m, sd, _) = stats(w.to_vec_f64().unwrap());
    assert!(
        m.abs() < 0.01 && (sd / (2.0f64 / 450.0).sqrt() - 1.0).abs() < 0.05,
        "{m} {sd}"
    );
    // PyTorch default: bound 1/√fan_in
    let w = vs
        .param("ku", &[64, 100], Init::torch_default_weight())
        .unwrap();
    let (_, sd, mx) = stats(w.to_vec_f64().unwrap());
    assert!(mx <= 0.1 && mx > 0.095, "{mx}");
    assert!((sd / (0.1 / 3f64.sqrt()) - 1.0).abs() < 0.05);
    // xavier uniform bound √(6/(fan_in+fan_out))
    let w = vs
        .param("xu", &[30, 70], Init::XavierUniform { gain: 1.0 })
        .unwrap();
    let (_, _, mx) = stats(w.to_vec_f64().unwrap());
    let bound = (6.0f64 / 100.0).sqrt();
    assert!(mx <= bound && mx > 0.95 * bound);
    // truncated normal: std 0.02 inside ±2 — and a narrow window that really cuts
    let w = vs.param("tn", &[5000], Init::trunc_normal(0.02)).unwrap();
    let (_, sd, _) = stats(w.to_vec_f64().unwrap());
    assert!((sd / 0.02 - 1.0).abs() < 0.05);
    let w = vs
        .param(
            "tn2",
            &[2000],
            Init::TruncNormal {
                mean: 0.0,
                std: 1.0,
                a: -0.5,
                b: 0.5,
            },
        )
        .unwrap();
    let (_, _, mx) = stats(w.to_vec_f64().unwrap());
    assert!(mx <= 0.5);
    assert!(
        vs.param(
            "tn3",
            &[2],
            Init::TruncNormal {
                mean: 0.0,
                std: 1.0,
                a: 9.0,
                b: 10.0
            }
        )
        .is_err()
    );
    // fans need rank ≥ 2
    assert!(
        vs.param("bad", &[3], Init::XavierNormal { gain: 1.0 })
            .is_err()
    );
    let c = vs.param("c", &[3], Init::Constant(2.5)).unwrap();
    assert_eq!(c.to_vec_f64().unwrap(), [2.5; 3]);
}

#[test]
fn attributes_flow_from_scopes_and_can_change() {
    let store = ParamStore::new(0);
    let vs = store.root();
    vs.sub("mapping")
        .with_lr_mult(0.01)
        .param("w", &[2], Init::Zeros)
        .unwrap();
    vs.sub("norm")
        .no_weight_decay()
        .param("bias", &[2], Init::Zeros)
        .unwrap();
    vs.sub("enc")
        .frozen()
        .param("w", &[3], Init::Zeros)
        .unwrap();
    vs.sub("enc").param("v", &[5], Init::Zeros).unwrap();
    assert_eq!(store.param("mapping.w").unwrap().attrs.lr_mult, 0.01);
    assert!(!store.param("norm.bias").unwrap().attrs.weight_decay);
    assert!(store.param("enc.w").unwrap().attrs.frozen);
    assert_eq!(store.num_trainable(), 2 + 2 + 5);
    assert_eq!(store.trainable().len(), 3);
    assert_eq!(store.set_frozen("enc", true), 2);
    assert_eq!(store.num_trainable(), 4);
    // "en" is not a path prefix of "enc.*"
    assert_eq!(store.set_frozen("en", false), 0);
    store
        .set_attrs(
            "enc.v",
            ParamAttrs {
                frozen: false,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(store.num_trainable(), 9);
    assert!(store.set_attrs("nope", ParamAttrs::default()).is_err());
}

#[test]
fn zero_grad_clears_gradients() {
    let store = ParamStore::with_dtype(0, DType::F64);
    let w = store.root().param("w", &[3], Init::Ones).unwrap();
    w.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec_f64().unwrap(), [2.0; 3]);
    store.zero_grad();
    assert!(w.grad().is_none());
}
