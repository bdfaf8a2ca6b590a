//! The R1 penalty through a small StyleGAN-style discriminator, in f64:
//! D = conv3x3 → bias_act (leaky ReLU 0.2, gain √2) → downsample2d ([1,3,3,1]) →
//! minibatch stddev (group 2) → flatten → linear, and R1 = ½·mean_n ‖∂ΣD/∂x_n‖² (γ = 1) by
//! `ops::loss::r1_penalty_with`.
//!
//! (a) ∂R1/∂(every D weight) by double backward against central differences of R1 itself
//!     (R1 evaluated with `grad(create_graph = true)` at each perturbed weight), plus a generic
//!     `check_grad2` over the input and weights of D;
//! (b) the same D and weights in PyTorch (`tests/fixtures/make_r1.py` → `r1.bin`): logits, ∂ΣD/∂x,
//!     the R1 value and ∂R1/∂weights from torch's double backward, within 1e-6 relative.

mod common;

use brainsynth::autograd::{GradOptions, grad, grad_with};

/// R1 does not depend on the discriminator's last bias; its gradient there is zero (PyTorch's
/// `allow_unused=True`).
const ALLOW_UNUSED: GradOptions = GradOptions {
    create_graph: false,
    allow_unused: true,
};
use brainsynth::ops::Conv2dParams;
use brainsynth::ops::loss::r1_penalty_with;
use brainsynth::ops::stylegan::{Act, bias_act, minibatch_stddev};
use brainsynth::ops::upfirdn::{downsample2d, setup_filter};
use brainsynth::testing::{check_grad2, rand_tensor};
use brainsynth::{DType, Result, Tensor};
use common::fixtures::{Array, get, load};

/// Weights of D: conv [3, 2, 3, 3], conv bias [3], linear [1, 36], linear bias [1].
const SHAPES: [&[usize]; 4] = [&[3, 2, 3, 3], &[3], &[1, 36], &[1]];
/// Input [N, C, H, W].
const X: [usize; 4] = [4, 2, 6, 6];

fn filter() -> Tensor {
    setup_filter(
        &[1.0, 3.0, 3.0, 1.0],
        &[4],
        true,
        false,
        1.0,
        None,
        DType::F64,
    )
    .unwrap()
}

/// D(x) → logits [N, 1]; `p` = [conv w, conv b, linear w, linear b].
fn discriminator(x: &Tensor, p: &[Tensor]) -> Result<Tensor> {
    let y = x.conv2d(&p[0], Conv2dParams::same(3))?;
    let y = bias_act(&y, Some(&p[1]), 1, Act::Lrelu(0.2), None, None)?; // gain √2 by default
    let y = downsample2d(&y, &filter(), 2, (0, 0, 0, 0), 1.0)?;
    let y = minibatch_stddev(&y, 2, 1)?;
    let n = y.shape()[0];
    y.reshape(&[n, usize::MAX])?.linear(&p[2], Some(&p[3]))
}

/// R1 (γ = 1) through the crate's StyleGAN2 penalty, which builds ∂ΣD/∂x with `create_graph`
/// so the value can be differentiated again with respect to the weights.
fn r1(x: &Tensor, p: &[Tensor]) -> Result<Tensor> {
    r1_penalty_with(x, 1.0, |x| discriminator(x, p))
}

fn weights(seed: u64) -> Vec<Tensor> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| rand_tensor(s, seed + i as u64))
        .collect()
}

#[test]
fn r1_weight_gradients_match_finite_differences_of_r1() {
    let x = rand_tensor(&X, 1);
    let p = weights(10);
    let vars: Vec<Tensor> = p.iter().map(|t| t.variable()).collect();
    let value = r1(&x, &vars).unwrap();
    // the last bias does not reach d logits / dx, so R1 does not depend on it: zeros allowed
    let analytic = grad_with(&[value], None, &vars, ALLOW_UNUSED).unwrap();
    // R1 itself needs a recorded graph (it is a gradient), so no `no_grad` here
    let r1_at = |q: &[Tensor]| r1(&x, q).and_then(|v| v.item());
    let eps = 1e-5;
    let (mut worst, mut compared, mut nonzero) = (0.0f64, 0, 0);
    for (i, a) in analytic.iter().enumerate() {
        assert_eq!(a.shape(), p[i].shape());
        let base = p[i].to_vec_f64().unwrap();
        for (j, aj) in a.to_vec_f64().unwrap().into_iter().enumerate() {
            let at = |d: f64| {
                let mut v = base.clone();
                v[j] += d;
                let mut q = p.clone();
                q[i] = Tensor::from_f64s(&v, p[i].shape(), DType::F64).unwrap();
                r1_at(&q).unwrap()
            };
            let num = (at(eps) - at(-eps)) / (2.0 * eps);
            worst = worst.max((aj - num).abs() / num.abs().max(1.0));
            compared += 1;
            nonzero += usize::from(num.abs() > 1e-3);
        }
    }
    assert_eq!(compared, 94);
    // the 54 conv and 36 linear weights move R1 clearly; the conv bias only slightly (through
    // the minibatch std of leaky-ReLU outputs; below 1e-3 here); ∂D/∂x does not involve the linear
    // bias at all, so its R1 gradient is exactly zero
    assert_eq!(nonzero, 90);
    assert_eq!(analytic[3].to_vec_f64().unwrap(), [0.0]);
    assert!(
        worst <= 1e-5,
        "∂R1/∂weights vs finite differences: {worst:.3e}"
    );
}

#[test]
fn discriminator_second_order_by_check_grad2() {
    // grad of ⟨∂L/∂(x, weights), v⟩ against finite differences of the first-order gradient
    let mut inputs = vec![rand_tensor(&X, 2)];
    inputs.extend(weights(20));
    let r = check_grad2(|v| discriminator(&v[0], &v[1..]), &inputs, 1e-5).unwrap();
    assert_eq!(r.compared, 288 + 94);
    assert!(r.max_err <= 1e-5, "second order {:.3e}", r.max_err);
}

fn tensor(a: &Array) -> Tensor {
    Tensor::from_f64s(&a.f64s(), &a.shape, DType::F64).unwrap()
}

/// |got − want| ≤ 1e-6·|want| + 1e-12 everywhere: the fixture holds the f64 results rounded to
/// f32 (≈ 6e-8 relative), the rest is f64 summation order.
fn assert_close(name: &str, got: &Tensor, want: &Array) {
    assert_eq!(got.shape(), &want.shape[..], "{name}: shape");
    for (k, (g, w)) in got
        .to_vec_f64()
        .unwrap()
        .into_iter()
        .zip(want.f64s())
        .enumerate()
    {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs() + 1e-12,
            "{name}[{k}]: {g} vs torch {w}"
        );
    }
}

#[test]
fn r1_and_its_weight_gradients_match_pytorch_double_backward() {
    let m = load("r1.bin");
    let x = tensor(get(&m, "x"));
    assert_eq!(x.shape(), X);
    let p: Vec<Tensor> = ["w", "b", "lw", "lb"]
        .iter()
        .map(|n| tensor(get(&m, n)).variable())
        .collect();
    // D's output and its input gradient first, to locate a mismatch
    let xv = x.variable();
    let logits = discriminator(&xv, &p).unwrap();
    let gx = grad(&[logits.sum_all().unwrap()], None, &[xv], false)
        .unwrap()
        .remove(0);
    let value = r1(&x, &p).unwrap();
    assert_close("logits", &logits, get(&m, "logits"));
    assert_close("grad_x", &gx, get(&m, "grad_x"));
    assert_close("r1", &value.reshape(&[1]).unwrap(), get(&m, "r1"));
    let dp = grad_with(&[value], None, &p, ALLOW_UNUSED).unwrap();
    for (name, g) in ["dr1_dw", "dr1_db", "dr1_dlw", "dr1_dlb"].iter().zip(&dp) {
        assert_close(name, g, get(&m, name));
    }
}
