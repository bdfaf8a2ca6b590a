//! Resize and pooling: hand-computed values, the axis-map adjoint pair, gradient checks, errors.

use std::sync::Arc;

use brainsynth::autograd::grad;
use brainsynth::ops::resize::{
    AxisMap, adaptive_avg_pool2d, avg_pool2d, max_pool2d, resize_bilinear, resize_nearest,
};
use brainsynth::testing::{check_grad, check_grad2, rand_tensor};
use brainsynth::{DType, Error, Result, Tensor};

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_f64s(v, shape, DType::F64).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "at {i}: {x} vs {y}\n{a:?}\n{b:?}");
    }
}

fn ok1(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, x: Tensor) {
    let r = check_grad(f, &[x], 1e-6).unwrap();
    assert!(
        r.compared > 0 && r.max_err < 1e-6,
        "{name}: {:.3e}",
        r.max_err
    );
}

#[test]
fn resize_by_hand() {
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let n = resize_nearest(&x, (4, 4)).unwrap();
    let row = |a: f64, b: f64| [a, a, b, b];
    let want: Vec<f64> = [row(1.0, 2.0), row(1.0, 2.0), row(3.0, 4.0), row(3.0, 4.0)].concat();
    close(&n.to_vec_f64().unwrap(), &want, 0.0);
    // bilinear, align_corners = False: sources −0.25 → 0, 0.25, 0.75, 1.25 → clamped to the edge
    let x = t(&[1.0, 2.0], &[1, 1, 1, 2]);
    let b = resize_bilinear(&x, (1, 4)).unwrap();
    close(&b.to_vec_f64().unwrap(), &[1.0, 1.25, 1.75, 2.0], 1e-15);
    // downscaling by 2 averages pairs
    let x = t(&[1.0, 3.0, 5.0, 9.0], &[1, 1, 1, 4]);
    let b = resize_bilinear(&x, (1, 2)).unwrap();
    close(&b.to_vec_f64().unwrap(), &[2.0, 7.0], 1e-15);
    let n = resize_nearest(&x, (1, 3)).unwrap(); // floor(i · 4/3) = 0, 1, 2
    close(&n.to_vec_f64().unwrap(), &[1.0, 3.0, 5.0], 0.0);
}

#[test]
fn pooling_by_hand() {
    let v: Vec<f64> = (0..16).map(|i| i as f64).collect();
    let x = t(&v, &[1, 1, 4, 4]);
    let a = avg_pool2d(&x, (2, 2), (2, 2), (0, 0)).unwrap();
    close(&a.to_vec_f64().unwrap(), &[2.5, 4.5, 10.5, 12.5], 1e-15);
    // padding counts towards the divisor: corner window sees only x[0] of its 9 cells
    let a = avg_pool2d(&x, (3, 3), (2, 2), (1, 1)).unwrap();
    assert_eq!(a.shape(), &[1, 1, 2, 2]);
    close(
        &a.to_vec_f64().unwrap()[..1],
        &[(0.0 + 1.0 + 4.0 + 5.0) / 9.0],
        1e-15,
    );
    let m = max_pool2d(&x, (2, 2), (2, 2), (0, 0)).unwrap();
    close(&m.to_vec_f64().unwrap(), &[5.0, 7.0, 13.0, 15.0], 0.0);
    // adaptive 5 → 3: bins [0,2), [1,4), [3,5)
    let x = t(&[1.0, 2.0, 4.0, 8.0, 16.0], &[1, 1, 1, 5]);
    let a = adaptive_avg_pool2d(&x, (1, 3)).unwrap();
    close(&a.to_vec_f64().unwrap(), &[1.5, 14.0 / 3.0, 12.0], 1e-14);
}

#[test]
fn max_pool_gradient_goes_to_the_argmax() {
    let x = t(
        &[1.0, 5.0, 2.0, 0.0, 3.0, 4.0, 9.0, 8.0, 7.0],
        &[1, 1, 3, 3],
    )
    .variable();
    let y = max_pool2d(&x, (2, 2), (1, 1), (0, 0)).unwrap();
    close(&y.to_vec_f64().unwrap(), &[5.0, 5.0, 9.0, 8.0], 0.0);
    let g = grad(
        &[y.sum_all().unwrap()],
        None,
        std::slice::from_ref(&x),
        false,
    )
    .unwrap();
    close(
        &g[0].to_vec_f64().unwrap(),
        &[0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0],
        0.0,
    );
    // a NaN wins its window, as in torch
    let x = t(&[1.0, f64::NAN, 2.0, 3.0], &[1, 1, 2, 2]);
    assert!(
        max_pool2d(&x, (2, 2), (2, 2), (0, 0))
            .unwrap()
            .item()
            .unwrap()
            .is_nan()
    );
}

#[test]
fn axis_map_pair_is_adjoint() {
    let m = Arc::new(AxisMap::from_rows(
        4,
        vec![
            vec![(0, 0.5), (3, -1.0)],
            vec![],
            vec![(1, 2.0), (1, 0.25), (2, 1.0)],
        ],
    ));
    let x = rand_tensor(&[2, 4, 3], 1);
    let y = rand_tensor(&[2, 3, 3], 2);
    let mx = x.resample_axis(1, m.clone()).unwrap();
    let mty = y.resample_axis_adjoint(1, m.clone()).unwrap();
    let dot = |a: &Tensor, b: &Tensor| -> f64 {
        a.to_vec_f64()
            .unwrap()
            .iter()
            .zip(b.to_vec_f64().unwrap())
            .map(|(p, q)| p * q)
            .sum()
    };
    assert!((dot(&mx, &y) - dot(&x, &mty)).abs() < 1e-12);
    // second order through both directions (the backward of each is the other)
    let r = check_grad2(
        |v| v[0].resample_axis(1, m.clone())?.sqr(),
        std::slice::from_ref(&x),
        1e-5,
    )
    .unwrap();
    assert!(r.max_err < 1e-5, "{:.3e}", r.max_err);
    let r = check_grad2(
        |v| v[0].resample_axis_adjoint(1, m.clone())?.sqr(),
        &[y],
        1e-5,
    )
    .unwrap();
    assert!(r.max_err < 1e-5, "{:.3e}", r.max_err);
    let bad = Arc::new(AxisMap::from_rows(2, vec![vec![(5, 1.0)]]));
    assert!(x.resample_axis(1, bad).is_err());
}

#[test]
fn gradients_first_order() {
    let x = rand_tensor(&[1, 2, 5, 4], 3);
    ok1("bilinear up", |v| resize_bilinear(&v[0], (7, 9)), x.clone());
    ok1(
        "bilinear down",
        |v| resize_bilinear(&v[0], (3, 2)),
        x.clone(),
    );
    ok1("nearest", |v| resize_nearest(&v[0], (7, 3)), x.clone());
    ok1(
        "avg",
        |v| avg_pool2d(&v[0], (3, 2), (2, 1), (1, 1)),
        x.clone(),
    );
    ok1(
        "adaptive",
        |v| adaptive_avg_pool2d(&v[0], (3, 3)),
        x.clone(),
    );
    // distinct values ≥ 2e-3 apart, so ±1e-6 never changes an arg-max
    let v: Vec<f64> = (0..40).map(|i| ((i * 17) % 40) as f64 * 0.01).collect();
    ok1(
        "max",
        |v| max_pool2d(&v[0], (2, 3), (2, 1), (1, 1)),
        t(&v, &[1, 2, 5, 4]),
    );
}

#[test]
fn errors_name_the_op() {
    let x = rand_tensor(&[2, 3, 4], 1);
    for e in [
        resize_bilinear(&x, (2, 2)).unwrap_err(),
        resize_nearest(&x, (2, 2)).unwrap_err(),
        avg_pool2d(&x, (2, 2), (1, 1), (0, 0)).unwrap_err(),
        max_pool2d(&x, (2, 2), (1, 1), (0, 0)).unwrap_err(),
        adaptive_avg_pool2d(&x, (2, 2)).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }
    let x = rand_tensor(&[1, 1, 4, 4], 1);
    let e = avg_pool2d(&x, (3, 3), (1, 1), (2, 2)).unwrap_err();
    assert!(e.to_string().starts_with("avg_pool2d"), "{e}");
    let e = max_pool2d(&x, (5, 5), (1, 1), (0, 0)).unwrap_err();
    assert!(e.to_string().starts_with("max_pool2d"), "{e}");
    let e = resize_bilinear(&x, (0, 3)).unwrap_err();
    assert!(e.to_string().starts_with("resize_bilinear"), "{e}");
    let e = avg_pool2d(&x, (2, 2), (0, 1), (0, 0)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Invalid {
                op: "avg_pool2d",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn max_pool_2x2_stride_2_matches_a_max_over_window_axes() {
    // odd sizes: the last row and column fall outside every window (floor mode)
    let x = brainsynth::testing::rand_tensor(&[3, 4, 9, 7], 11);
    let y = max_pool2d(&x, (2, 2), (2, 2), (0, 0)).unwrap();
    let want = x
        .narrow(2, 0, 8)
        .unwrap()
        .narrow(3, 0, 6)
        .unwrap()
        .reshape(&[3, 4, 4, 2, 3, 2])
        .unwrap()
        .max_axes(&[3, 5], false)
        .unwrap();
    assert_eq!(y.shape(), &[3, 4, 4, 3]);
    assert_eq!(y.to_vec_f64().unwrap(), want.to_vec_f64().unwrap());
    // ties go to the first element of the window in scan order
    let t = brainsynth::Tensor::from_f64s(&[1.0; 16], &[1, 1, 4, 4], brainsynth::DType::F64)
        .unwrap()
        .variable();
    max_pool2d(&t, (2, 2), (2, 2), (0, 0))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = t.grad().unwrap().to_vec_f64().unwrap();
    let mut want = vec![0.0; 16];
    for i in [0, 2, 8, 10] {
        want[i] = 1.0;
    }
    assert_eq!(g, want);
}
