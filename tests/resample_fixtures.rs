//! The resampling ops against PyTorch (values from `tests/fixtures/make_resample.py`, stored in
//! `tests/fixtures/resample.bin`): upfirdn2d (up 2 / down 2 with [1,3,3,1], and an asymmetric
//! filter with mixed factors and a crop), bilinear and nearest resize, adaptive / average / max
//! pooling, affine_grid, and grid_sample with its gradients for every padding mode.

mod common;

use std::collections::HashMap;

use brainsynth::autograd::grad;
use brainsynth::ops::grid_sample::{GridPadding, affine_grid, grid_sample};
use brainsynth::ops::resize::{
    adaptive_avg_pool2d, avg_pool2d, max_pool2d, resize_bilinear, resize_nearest,
};
use brainsynth::ops::upfirdn::{downsample2d, setup_filter, upfirdn2d, upsample2d};
use brainsynth::{DType, Tensor};
use common::fixtures::{Array, get, load};

fn tensor(a: &Array) -> Tensor {
    Tensor::from_f64s(&a.f64s(), &a.shape, DType::F64).unwrap()
}

fn assert_matches(name: &str, got: &Tensor, want: &Array, tol: f64) {
    assert_eq!(got.shape(), &want.shape[..], "{name}: shape");
    let g = got.to_vec_f64().unwrap();
    let mut worst = 0.0f64;
    for (a, b) in g.iter().zip(want.f64s()) {
        worst = worst.max((a - b).abs() / b.abs().max(1.0));
    }
    assert!(worst <= tol, "{name}: max error {worst:.3e}");
}

fn fx() -> HashMap<String, Array> {
    load("resample.bin")
}

#[test]
fn upfirdn2d_matches_torch() {
    let m = fx();
    let x = tensor(get(&m, "upfirdn.x"));
    let f = setup_filter(
        &[1.0, 3.0, 3.0, 1.0],
        &[4],
        true,
        false,
        1.0,
        None,
        DType::F64,
    )
    .unwrap();
    assert_matches("filter", &f, get(&m, "upfirdn.f"), 1e-7);
    let up = upsample2d(&x, &f, 2, (0, 0, 0, 0), 1.0).unwrap();
    assert_matches("up2", &up, get(&m, "upfirdn.up2"), 1e-5);
    let dn = downsample2d(&x, &f, 2, (0, 0, 0, 0), 1.0).unwrap();
    assert_matches("down2", &dn, get(&m, "upfirdn.down2"), 1e-5);
    // the separable form of the same filter gives the same result
    let fs = setup_filter(
        &[1.0, 3.0, 3.0, 1.0],
        &[4],
        true,
        false,
        1.0,
        Some(true),
        DType::F64,
    )
    .unwrap();
    let up_s = upsample2d(&x, &fs, 2, (0, 0, 0, 0), 1.0).unwrap();
    assert_matches("up2 separable", &up_s, get(&m, "upfirdn.up2"), 1e-5);
    let fa = tensor(get(&m, "upfirdn.fa"));
    let mixed = upfirdn2d(&x, &fa, (3, 2), (2, 1), (2, -1, 0, 3), 1.0, false).unwrap();
    assert_matches("mixed", &mixed, get(&m, "upfirdn.mixed"), 1e-5);
}

#[test]
fn resize_matches_torch() {
    let m = fx();
    let x = tensor(get(&m, "resize.x"));
    for (key, size) in [("up", (8, 11)), ("down", (3, 4))] {
        let b = resize_bilinear(&x, size).unwrap();
        assert_matches(key, &b, get(&m, &format!("resize.bilinear_{key}")), 1e-5);
        let n = resize_nearest(&x, size).unwrap();
        assert_matches(key, &n, get(&m, &format!("resize.nearest_{key}")), 1e-6);
    }
}

#[test]
fn pooling_matches_torch() {
    let m = fx();
    let x = tensor(get(&m, "pool.x"));
    for (key, size) in [("3x4", (3, 4)), ("5x7", (5, 7))] {
        let y = adaptive_avg_pool2d(&x, size).unwrap();
        assert_matches(key, &y, get(&m, &format!("pool.adaptive_{key}")), 1e-5);
    }
    let y = avg_pool2d(&x, (3, 3), (2, 2), (1, 1)).unwrap();
    assert_matches("avg", &y, get(&m, "pool.avg_k3_s2_p1"), 1e-5);
    let y = max_pool2d(&x, (3, 3), (2, 2), (1, 1)).unwrap();
    assert_matches("max", &y, get(&m, "pool.max_k3_s2_p1"), 0.0);
}

#[test]
fn affine_grid_matches_torch() {
    let m = fx();
    let theta = tensor(get(&m, "grid.theta"));
    for ac in [false, true] {
        let g = affine_grid(&theta, (2, 3, 4, 7), ac).unwrap();
        assert_matches(
            "affine_grid",
            &g,
            get(&m, &format!("grid.affine_ac{}", ac as u8)),
            1e-6,
        );
    }
}

#[test]
fn grid_sample_and_gradients_match_torch() {
    let m = fx();
    let x = tensor(get(&m, "grid.x")).variable();
    let g = tensor(get(&m, "grid.grid")).variable();
    let wout = tensor(get(&m, "grid.wout"));
    for (mode, name) in [
        (GridPadding::Zeros, "zeros"),
        (GridPadding::Border, "border"),
        (GridPadding::Reflection, "reflection"),
    ] {
        for ac in [false, true] {
            let key = format!("grid.{name}_ac{}", ac as u8);
            let y = grid_sample(&x, &g, mode, ac).unwrap();
            assert_matches(&key, &y, get(&m, &key), 1e-5);
            let gs = grad(
                &[y],
                Some(std::slice::from_ref(&wout)),
                &[x.clone(), g.clone()],
                false,
            )
            .unwrap();
            assert_matches(
                &format!("{key}.dx"),
                &gs[0],
                get(&m, &format!("{key}.dx")),
                1e-5,
            );
            assert_matches(
                &format!("{key}.dgrid"),
                &gs[1],
                get(&m, &format!("{key}.dgrid")),
                1e-4,
            );
        }
    }
}
