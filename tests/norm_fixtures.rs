//! Group norm (+SiLU) and layer norm against PyTorch (values and gradients for a random upstream
//! gradient), from tests/fixtures/norm.bin (made by tests/fixtures/make_norm.py).

#[allow(dead_code)]
#[path = "common/fixtures.rs"]
mod fixtures;

use brainsynth::autograd::grad;
use brainsynth::ops::norm::{NORM_EPS, group_norm, group_norm_silu, layer_norm};
use brainsynth::{DType, Result, Tensor};

fn close(name: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape(), b.shape(), "{name}: shapes");
    let err = a
        .to_vec_f64()
        .unwrap()
        .iter()
        .zip(b.to_vec_f64().unwrap())
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max);
    assert!(err < 1e-5, "{name}: error {err:.3e}");
}

/// Forward and input/weight/bias gradients of `f` against the fixture arrays `<p>_*`.
fn check(p: &str, f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>, pre: &str) {
    let fx = fixtures::load("norm.bin");
    let get = |n: &str| {
        let a = fixtures::get(&fx, n);
        Tensor::from_f64s(&a.f64s(), &a.shape, DType::F64).unwrap()
    };
    let (x, w, b) = (
        get(&format!("{pre}_x")).variable(),
        get(&format!("{pre}_w")).variable(),
        get(&format!("{pre}_b")).variable(),
    );
    let y = f(&x, &w, &b).unwrap();
    close(&format!("{p} y"), &y, &get(&format!("{p}_y")));
    let g = get(&format!("{pre}_g"));
    let gs = grad(&[y], Some(&[g]), &[x, w, b], false).unwrap();
    for (name, gi) in ["gx", "gw", "gb"].iter().zip(&gs) {
        close(&format!("{p} {name}"), gi, &get(&format!("{p}_{name}")));
    }
}

#[test]
fn group_norm_matches_pytorch() {
    check(
        "gn",
        |x, w, b| group_norm(x, 4, Some(w), Some(b), NORM_EPS),
        "gn",
    );
}

#[test]
fn group_norm_silu_matches_pytorch() {
    check(
        "gns",
        |x, w, b| group_norm_silu(x, 4, Some(w), Some(b), NORM_EPS),
        "gn",
    );
}

#[test]
fn layer_norm_matches_pytorch() {
    check(
        "ln",
        |x, w, b| layer_norm(x, &[6], Some(w), Some(b), NORM_EPS),
        "ln",
    );
}
