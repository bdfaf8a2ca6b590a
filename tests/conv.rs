//! conv2d's three primitives: finite-difference gradients (first and second order), a known
//! value, shape errors, and transposed convolution. Fast vs reference kernels are compared in
//! `conv_parity.rs`, which calls both kernel sets directly instead of switching the process-wide
//! choice while other tests run.

use brainsynth::Tensor;
use brainsynth::ops::Conv2dParams;
use brainsynth::testing::{check_grad, check_grad2, rand_tensor};

fn params(stride: usize, pad: usize, dil: usize, groups: usize) -> Conv2dParams {
    Conv2dParams {
        stride: (stride, stride),
        padding: (pad, pad),
        dilation: (dil, dil),
        groups,
    }
}

#[test]
fn conv2d_first_and_second_order() {
    for (i, p) in [
        params(1, 1, 1, 1),
        params(2, 1, 1, 2),
        params(1, 2, 2, 1),
        params(2, 0, 1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let x = rand_tensor(&[2, 4, 6, 5], 10 + i as u64);
        let w = rand_tensor(&[6, 4 / p.groups, 3, 3], 20 + i as u64);
        let r = check_grad(|v| v[0].conv2d(&v[1], p), &[x.clone(), w.clone()], 1e-6).unwrap();
        assert!(r.max_err < 1e-6, "{p:?}: {r:?}");
        // second order: the product makes the gradient depend on both inputs
        let r = check_grad2(|v| v[0].conv2d(&v[1], p)?.sqr(), &[x, w], 1e-5).unwrap();
        assert!(r.max_err < 1e-5, "{p:?} second order: {r:?}");
    }
}

#[test]
fn backward_primitives_first_and_second_order() {
    // conv2d's adjoints as ops in their own right (each is the other's and conv2d's backward)
    let p = params(2, 1, 1, 2);
    let (xs, ws) = ([2, 4, 5, 5], [6, 2, 3, 3]);
    let x = rand_tensor(&xs, 30);
    let w = rand_tensor(&ws, 31);
    let dy = rand_tensor(&[2, 6, 3, 3], 32);
    let data = |v: &[Tensor]| v[0].conv2d_backward_data(&v[1], &xs, p);
    let weight = |v: &[Tensor]| v[0].conv2d_backward_weight(&v[1], &ws, p);
    let r = check_grad(data, &[dy.clone(), w.clone()], 1e-6).unwrap();
    assert!(r.max_err < 1e-6, "backward_data: {r:?}");
    let r = check_grad(weight, &[x.clone(), dy.clone()], 1e-6).unwrap();
    assert!(r.max_err < 1e-6, "backward_weight: {r:?}");
    let r = check_grad2(|v| data(v)?.sqr(), &[dy.clone(), w], 1e-5).unwrap();
    assert!(r.max_err < 1e-5, "backward_data second order: {r:?}");
    let r = check_grad2(|v| weight(v)?.sqr(), &[x, dy], 1e-5).unwrap();
    assert!(r.max_err < 1e-5, "backward_weight second order: {r:?}");
}

#[test]
fn transposed_conv_gradients_and_shape() {
    let p = params(2, 1, 1, 1);
    let x = rand_tensor(&[1, 3, 4, 4], 1);
    let w = rand_tensor(&[3, 2, 3, 3], 2);
    let y = x.conv_transpose2d(&w, p, (1, 1)).unwrap();
    assert_eq!(y.shape(), &[1, 2, 8, 8]);
    let r = check_grad(
        |v| v[0].conv_transpose2d(&v[1], p, (1, 1)),
        &[x.clone(), w.clone()],
        1e-6,
    )
    .unwrap();
    assert!(r.max_err < 1e-6, "{r:?}");
    let r = check_grad2(
        |v| v[0].conv_transpose2d(&v[1], p, (1, 1))?.sqr(),
        &[x, w],
        1e-5,
    )
    .unwrap();
    assert!(r.max_err < 1e-5, "{r:?}");
}

#[test]
fn conv2d_known_value() {
    // 3x3 ones kernel over a 3x3 image of 1..9 with padding 1: the centre sums everything.
    let x = Tensor::from_vec((1..=9).map(|v| v as f32).collect(), &[1, 1, 3, 3]).unwrap();
    let w = Tensor::ones(&[1, 1, 3, 3], brainsynth::DType::F32);
    let y = x
        .conv2d(&w, Conv2dParams::same(3))
        .unwrap()
        .to_vec_f32()
        .unwrap();
    assert_eq!(y, vec![12., 21., 16., 27., 45., 33., 24., 39., 28.]);
}

#[test]
fn bad_shapes_are_errors() {
    let x = Tensor::zeros(&[1, 3, 8, 8], brainsynth::DType::F32);
    let w = Tensor::zeros(&[4, 2, 3, 3], brainsynth::DType::F32);
    let e = x
        .conv2d(&w, Conv2dParams::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv2d") && e.contains("[1, 3, 8, 8]") && e.contains("[4, 2, 3, 3]"),
        "{e}"
    );
    let big = Tensor::zeros(&[4, 3, 9, 9], brainsynth::DType::F32);
    assert!(x.conv2d(&big, Conv2dParams::default()).is_err());
    assert!(
        x.conv2d(
            &w,
            Conv2dParams {
                groups: 0,
                ..Default::default()
            }
        )
        .is_err()
    );
}
