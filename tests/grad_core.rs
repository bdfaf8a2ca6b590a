//! Finite-difference gradient checks (f64) for the core ops: elementwise, reductions, views,
//! matmul; second order where the GAN regularisers need it.

use std::sync::Arc;

use brainsynth::autograd::{GradOptions, grad, grad_with, no_grad};
use brainsynth::ops::Unary;
use brainsynth::testing::{check_grad, check_grad2, rand_tensor};
use brainsynth::{DType, Result, Tensor};

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn ok1(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let r = check_grad(f, inputs, EPS).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(r.compared > 0, "{name}: nothing compared");
    assert!(
        r.max_err < TOL,
        "{name}: max error {:.3e} over {} derivatives",
        r.max_err,
        r.compared
    );
}

fn ok2(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let r = check_grad2(f, inputs, 1e-5).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(r.compared > 0, "{name}: nothing compared");
    assert!(
        r.max_err < 1e-5,
        "{name}: second-order max error {:.3e} over {}",
        r.max_err,
        r.compared
    );
}

/// Values away from 0 so kinks (relu, abs, leaky relu) are not straddled by the difference.
fn away_from_zero(shape: &[usize], seed: u64) -> Tensor {
    let v: Vec<f64> = rand_tensor(shape, seed)
        .to_vec_f64()
        .unwrap()
        .iter()
        .map(|&x| if x >= 0.0 { x + 0.1 } else { x - 0.1 })
        .collect();
    Tensor::from_f64s(&v, shape, DType::F64).unwrap()
}

#[test]
fn unary_ops_first_order() {
    let x = away_from_zero(&[3, 4], 1);
    let pos = rand_tensor(&[3, 4], 2).affine(0.5, 1.6).unwrap(); // in (1.1, 2.1)
    let ops = [
        ("neg", Unary::Neg, &x),
        ("exp", Unary::Exp, &x),
        ("log", Unary::Log, &pos),
        ("sqrt", Unary::Sqrt, &pos),
        ("rsqrt", Unary::Rsqrt, &pos),
        ("recip", Unary::Recip, &pos),
        ("sqr", Unary::Sqr, &x),
        ("sin", Unary::Sin, &x),
        ("cos", Unary::Cos, &x),
        ("abs", Unary::Abs, &x),
        ("tanh", Unary::Tanh, &x),
        ("sigmoid", Unary::Sigmoid, &x),
        ("erf", Unary::Erf, &x),
        ("relu", Unary::Relu, &x),
        ("silu", Unary::Silu, &x),
        ("gelu", Unary::Gelu, &x),
        ("softplus", Unary::Softplus, &x),
        ("powf", Unary::Powf(2.5), &pos),
        ("leaky", Unary::LeakyRelu(0.2), &x),
        ("clamp", Unary::Clamp(-0.5, 0.5), &x),
        ("affine", Unary::Affine(3.0, -1.0), &x),
    ];
    for (name, op, input) in ops {
        ok1(name, |v| v[0].unary(op), std::slice::from_ref(input));
    }
}

#[test]
fn unary_ops_second_order() {
    let x = away_from_zero(&[2, 5], 3);
    for (name, op) in [
        ("exp", Unary::Exp),
        ("tanh", Unary::Tanh),
        ("sigmoid", Unary::Sigmoid),
        ("silu", Unary::Silu),
        ("gelu", Unary::Gelu),
        ("softplus", Unary::Softplus),
        ("erf", Unary::Erf),
        ("sqr", Unary::Sqr),
    ] {
        ok2(name, |v| v[0].unary(op), std::slice::from_ref(&x));
    }
    // leaky relu is piecewise linear: its second derivative through a product must re-apply the mask
    ok2(
        "leaky*x",
        |v| v[0].leaky_relu(0.2)?.mul(&v[0].sqr()?),
        std::slice::from_ref(&x),
    );
}

#[test]
fn binary_broadcasting_first_and_second_order() {
    let a = rand_tensor(&[2, 3, 4], 4);
    let b = rand_tensor(&[3, 1], 5).affine(0.3, 1.5).unwrap();
    ok1("add", |v| v[0].add(&v[1]), &[a.clone(), b.clone()]);
    ok1("sub", |v| v[0].sub(&v[1]), &[a.clone(), b.clone()]);
    ok1("mul", |v| v[0].mul(&v[1]), &[a.clone(), b.clone()]);
    ok1("div", |v| v[0].div(&v[1]), &[a.clone(), b.clone()]);
    ok1(
        "maximum",
        |v| v[0].maximum(&v[1].affine(1.0, -1.5)?),
        &[a.clone(), b.clone()],
    );
    ok2("div", |v| v[0].div(&v[1]), &[a.clone(), b.clone()]);
    ok2("mul", |v| v[0].mul(&v[1])?.mul(&v[0]), &[a, b]);
}

#[test]
fn reductions() {
    let x = rand_tensor(&[2, 3, 4], 6);
    ok1(
        "sum",
        |v| v[0].sum_axes(&[1], false),
        std::slice::from_ref(&x),
    );
    ok1(
        "sum2",
        |v| v[0].sum_axes(&[0, 2], true),
        std::slice::from_ref(&x),
    );
    ok1(
        "mean",
        |v| v[0].mean_axes(&[-1], false),
        std::slice::from_ref(&x),
    );
    ok1(
        "var",
        |v| v[0].var_axes(&[1, 2], true, false),
        std::slice::from_ref(&x),
    );
    ok1(
        "max",
        |v| v[0].max_axes(&[2], false),
        std::slice::from_ref(&x),
    );
    ok1(
        "logsumexp",
        |v| v[0].logsumexp(&[1], false),
        std::slice::from_ref(&x),
    );
    ok1("softmax", |v| v[0].softmax(-1), std::slice::from_ref(&x));
    ok1(
        "log_softmax",
        |v| v[0].log_softmax(1),
        std::slice::from_ref(&x),
    );
    ok2(
        "var",
        |v| v[0].var_axes(&[2], true, true),
        std::slice::from_ref(&x),
    );
    ok2("softmax", |v| v[0].softmax(-1), std::slice::from_ref(&x));
}

#[test]
fn reduction_values() {
    let x = Tensor::from_vec(vec![1.0f32, 5.0, 3.0, -2.0, 0.0, 4.0], &[2, 3]).unwrap();
    assert_eq!(
        x.sum_axes(&[1], false).unwrap().to_vec_f32().unwrap(),
        vec![9.0, 2.0]
    );
    assert_eq!(
        x.max_axes(&[0], false).unwrap().to_vec_f32().unwrap(),
        vec![1.0, 5.0, 4.0]
    );
    assert!((x.mean_all().unwrap().item().unwrap() - 11.0 / 6.0).abs() < 1e-6);
    let v = x.var_axes(&[1], false, true).unwrap().to_vec_f64().unwrap();
    assert!(
        (v[0] - 4.0).abs() < 1e-6 && (v[1] - 9.333333).abs() < 1e-5,
        "{v:?}"
    );
    let s = x
        .softmax(1)
        .unwrap()
        .sum_axes(&[1], false)
        .unwrap()
        .to_vec_f32()
        .unwrap();
    assert!(s.iter().all(|&t| (t - 1.0).abs() < 1e-6));
}

#[test]
fn views_and_gathers() {
    let x = rand_tensor(&[2, 3, 4], 7);
    ok1(
        "reshape",
        |v| v[0].reshape(&[4, 6])?.mul(&v[0].reshape(&[4, 6])?),
        std::slice::from_ref(&x),
    );
    ok1(
        "permute",
        |v| v[0].permute(&[2, 0, 1])?.sqr(),
        std::slice::from_ref(&x),
    );
    ok1(
        "narrow",
        |v| v[0].narrow(2, 1, 2)?.sqr(),
        std::slice::from_ref(&x),
    );
    ok1(
        "broadcast",
        |v| v[0].narrow(1, 0, 1)?.broadcast_as(&[2, 3, 4])?.mul(&v[0]),
        std::slice::from_ref(&x),
    );
    ok1(
        "cat",
        |v| Tensor::cat(&[v[0].clone(), v[0].sqr()?], 1),
        std::slice::from_ref(&x),
    );
    ok1(
        "pad",
        |v| v[0].pad_axis(-1, 2, 1)?.sqr(),
        std::slice::from_ref(&x),
    );
    ok1(
        "reflect",
        |v| v[0].pad2d((1, 2, 2, 1), true)?.sqr(),
        std::slice::from_ref(&x),
    );
    ok1(
        "roll",
        |v| v[0].roll(-2, 2)?.mul(&v[0]),
        std::slice::from_ref(&x),
    );
    ok1(
        "flip",
        |v| v[0].flip(&[1, 2])?.mul(&v[0]),
        std::slice::from_ref(&x),
    );
    ok1(
        "index_select",
        |v| v[0].index_select(1, &[2, 0, 2]),
        std::slice::from_ref(&x),
    );
    ok2(
        "gather",
        |v| v[0].roll(1, 1)?.mul(&v[0])?.pad2d((1, 1, 1, 1), true),
        std::slice::from_ref(&x),
    );
}

#[test]
fn remaining_views_and_reductions_first_order() {
    let x = rand_tensor(&[2, 3, 4], 70);
    let y = rand_tensor(&[2, 3, 4], 71);
    ok1(
        "minimum",
        |v| v[0].minimum(&v[1])?.mul(&v[0]),
        &[x.clone(), y.clone()],
    );
    ok1(
        "min_axes",
        |v| v[0].min_axes(&[1], false),
        std::slice::from_ref(&x),
    );
    ok1(
        "sum_to",
        |v| v[0].sqr()?.sum_to(&[2, 1, 4]),
        std::slice::from_ref(&x),
    );
    ok1(
        "unsqueeze+flatten",
        |v| v[0].unsqueeze(1)?.flatten(2, 3)?.sqr(),
        std::slice::from_ref(&x),
    );
    ok1(
        "split",
        |v| {
            let p = v[0].split(-1, &[1, 3])?;
            p[0].mul(&p[1].sum_axes(&[-1], true)?)
        },
        std::slice::from_ref(&x),
    );
    ok1(
        "chunk",
        |v| {
            let p = v[0].chunk(1, 3)?;
            p[0].mul(&p[2])?.add(&p[1])
        },
        std::slice::from_ref(&x),
    );
    ok1(
        "stack",
        |v| Tensor::stack(&[v[0].clone(), v[1].sqr()?], 1),
        &[x.clone(), y.clone()],
    );
    ok1(
        "contiguous",
        |v| {
            v[0].transpose(0, 2)?
                .contiguous()?
                .mul(&v[1].transpose(0, 2)?)
        },
        &[x.clone(), y],
    );
    // an index map with repeats and unused entries: gather, and its adjoint scatter-add
    let map: Arc<Vec<u32>> = Arc::new(vec![5, 0, 5, 23, 7, 7, 7, 1]);
    ok1(
        "gather_map",
        |v| v[0].gather_map(map.clone(), &[2, 4])?.sqr(),
        std::slice::from_ref(&x),
    );
    ok1(
        "scatter_add_map",
        |v| v[0].scatter_add_map(map.clone(), &[24])?.sqr(),
        &[rand_tensor(&[8], 72)],
    );
}

#[test]
fn view_values() {
    let x = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
    assert_eq!(
        x.transpose(0, 1).unwrap().to_vec_f32().unwrap(),
        vec![0., 3., 1., 4., 2., 5.]
    );
    assert_eq!(
        x.roll(1, 1).unwrap().to_vec_f32().unwrap(),
        vec![2., 0., 1., 5., 3., 4.]
    );
    assert_eq!(
        x.narrow(1, 1, 2).unwrap().to_vec_f32().unwrap(),
        vec![1., 2., 4., 5.]
    );
    assert_eq!(
        x.pad_reflect_axis(1, 2, 1).unwrap().to_vec_f32().unwrap(),
        vec![2., 1., 0., 1., 2., 1., 5., 4., 3., 4., 5., 4.]
    );
    assert_eq!(
        x.flip(&[0]).unwrap().to_vec_f32().unwrap(),
        vec![3., 4., 5., 0., 1., 2.]
    );
    let c = Tensor::cat(&[x.clone(), x.clone()], 0).unwrap();
    assert_eq!(c.shape(), &[4, 3]);
    assert!(x.reshape(&[4, 2]).is_err());
    assert!(Tensor::cat(&[x.clone(), x.transpose(0, 1).unwrap()], 0).is_err());
}

#[test]
fn matmul_grads_and_values() {
    let a = rand_tensor(&[2, 3, 4], 8);
    let b = rand_tensor(&[2, 4, 5], 9);
    let w = rand_tensor(&[4, 5], 10);
    ok1("bmm", |v| v[0].matmul(&v[1]), &[a.clone(), b.clone()]);
    ok1("mm2d", |v| v[0].matmul(&v[1]), &[a.clone(), w.clone()]);
    ok2(
        "bmm",
        |v| v[0].matmul(&v[1])?.sqr(),
        &[a.clone(), b.clone()],
    );
    let lw = rand_tensor(&[6, 4], 11);
    let lb = rand_tensor(&[6], 12);
    ok1(
        "linear",
        |v| v[0].linear(&v[1], Some(&v[2])),
        &[a.clone(), lw, lb],
    );
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let y = x.matmul(&x).unwrap().to_vec_f32().unwrap();
    assert_eq!(y, vec![7.0, 10.0, 15.0, 22.0]);
    assert!(a.matmul(&a).is_err());
}

#[test]
fn fast_and_reference_matmul_agree() {
    use brainsynth::backend::cpu::{fast, reference};
    let a: Vec<f32> = brainsynth::testing::rand_vals(3 * 17 * 33, 1)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let b: Vec<f32> = brainsynth::testing::rand_vals(3 * 33 * 9, 2)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let r = reference::matmul(&a, &b, 3, 17, 33, 9);
    let f = fast::matmul(&a, &b, 3, 17, 33, 9);
    let num: f32 = r
        .iter()
        .zip(&f)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt();
    let den: f32 = r.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(num / den < 1e-6, "relative error {}", num / den);
}

#[test]
fn grad_skips_unneeded_inputs_and_backward_accumulates() {
    let x = rand_tensor(&[3], 13).variable();
    let w = rand_tensor(&[3], 14).variable();
    let y = x.mul(&w).unwrap().sum_all().unwrap();
    // asking for d/dx only: w's gradient is not part of the answer
    let g = grad(
        std::slice::from_ref(&y),
        None,
        std::slice::from_ref(&x),
        false,
    )
    .unwrap();
    assert_eq!(g[0].to_vec_f64().unwrap(), w.to_vec_f64().unwrap());
    y.backward().unwrap();
    y.backward().unwrap();
    let gw = w.grad().unwrap().to_vec_f64().unwrap();
    let want: Vec<f64> = x.to_vec_f64().unwrap().iter().map(|v| 2.0 * v).collect();
    assert_eq!(gw, want);
    // no history is recorded under no_grad
    let z = no_grad(|| x.mul(&w).unwrap());
    assert!(!z.requires_grad());
    // a non-scalar backward is an error, not a panic
    assert!(x.mul(&w).unwrap().backward().is_err());
}

#[test]
fn unused_inputs_and_empty_graphs_are_errors_unless_allowed() {
    let x = rand_tensor(&[3], 15).variable();
    let w = rand_tensor(&[3], 16).variable();
    let unused = rand_tensor(&[2], 17).variable();
    let plain = rand_tensor(&[3], 18); // forgot variable()
    let y = x.mul(&w).unwrap().add(&plain).unwrap().sum_all().unwrap();
    let e = grad(
        std::slice::from_ref(&y),
        None,
        &[x.clone(), unused.clone()],
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("input 1") && e.contains("[2]") && e.contains("allow_unused"),
        "{e}"
    );
    let e = grad(
        std::slice::from_ref(&y),
        None,
        std::slice::from_ref(&plain),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("variable()"), "{e}");
    // allowed: zeros for the unused input, the true gradient for the used one
    let g = grad_with(
        std::slice::from_ref(&y),
        None,
        &[x.clone(), unused.clone()],
        GradOptions {
            allow_unused: true,
            ..GradOptions::default()
        },
    )
    .unwrap();
    assert_eq!(g[0].to_vec_f64().unwrap(), w.to_vec_f64().unwrap());
    assert_eq!(g[1].to_vec_f64().unwrap(), vec![0.0, 0.0]);
    // a loss without any variable behind it has nothing to differentiate
    let c = plain.sum_all().unwrap();
    let e = c.backward().unwrap_err().to_string();
    assert!(e.contains("does not depend on any variable"), "{e}");
    let e = no_grad(|| x.mul(&w).unwrap().sum_all().unwrap())
        .backward()
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing to differentiate"), "{e}");
}

#[test]
fn where_and_lerp() {
    let c = Tensor::from_vec(vec![1.0f64, 0.0, 1.0], &[3]).unwrap();
    let a = rand_tensor(&[3], 15);
    let b = rand_tensor(&[3], 16);
    ok1(
        "where",
        |v| Tensor::where_cond(&c, &v[0], &v[1]),
        &[a.clone(), b.clone()],
    );
    let t = rand_tensor(&[3], 17);
    ok1("lerp", |v| v[0].lerp(&v[1], &v[2]), &[a, b, t]);
}

#[test]
fn dtype_mismatch_is_an_error() {
    let a = Tensor::zeros(&[2], DType::F32);
    let b = Tensor::zeros(&[2], DType::F64);
    let e = a.add(&b).unwrap_err().to_string();
    assert!(e.contains("f32") && e.contains("f64"), "{e}");
    let e = a
        .add(&Tensor::zeros(&[3], DType::F32))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2]") && e.contains("[3]"), "{e}");
}
