//! The conv family against PyTorch (values from `tests/fixtures/make_conv.py`, stored in
//! `tests/fixtures/conv.bin`): conv2d with stride / padding / dilation / groups, conv_transpose2d
//! with output_padding, and the fused demodulated modulated conv (plain, 1×1, and up = 2) —
//! outputs and first-order gradients, in f32 with the default (fast) kernels.
//!
//! Tolerance: ‖ours − torch‖ / ‖torch‖ ≤ 1e-5.

mod common;

use std::collections::HashMap;

use brainsynth::autograd::grad;
use brainsynth::ops::upfirdn::setup_filter;
use brainsynth::ops::{Conv2dParams, ModConvParams, modulated_conv2d};
use brainsynth::{DType, Tensor};
use common::fixtures::{Array, get, load};

fn fx() -> HashMap<String, Array> {
    load("conv.bin")
}

fn t(m: &HashMap<String, Array>, name: &str) -> Tensor {
    let a = get(m, name);
    Tensor::from_vec(a.data.clone(), &a.shape).unwrap()
}

fn assert_close(name: &str, got: &Tensor, want: &Array) {
    assert_eq!(got.shape(), &want.shape[..], "{name}: shape");
    let g = got.to_vec_f64().unwrap();
    let (mut num, mut den) = (0.0, 0.0);
    for (a, b) in g.iter().zip(want.f64s()) {
        num += (a - b) * (a - b);
        den += b * b;
    }
    let rel = (num / den).sqrt();
    assert!(rel <= 1e-5, "{name}: relative error {rel:.3e}");
}

fn params(
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    groups: usize,
) -> Conv2dParams {
    Conv2dParams {
        stride,
        padding: pad,
        dilation: dil,
        groups,
    }
}

/// Output and gradients of x and w of `f(x, w)` against the fixture arrays under `prefix`.
fn check_with_grads(
    m: &HashMap<String, Array>,
    prefix: &str,
    f: impl Fn(&Tensor, &Tensor) -> brainsynth::Result<Tensor>,
) {
    let x = t(m, &format!("{prefix}.x")).variable();
    let w = t(m, &format!("{prefix}.w")).variable();
    let y = f(&x, &w).unwrap();
    assert_close(&format!("{prefix}.y"), &y, get(m, &format!("{prefix}.y")));
    let gy = t(m, &format!("{prefix}.gy"));
    let g = grad(&[y], Some(&[gy]), &[x, w], false).unwrap();
    assert_close(
        &format!("{prefix}.dx"),
        &g[0],
        get(m, &format!("{prefix}.dx")),
    );
    assert_close(
        &format!("{prefix}.dw"),
        &g[1],
        get(m, &format!("{prefix}.dw")),
    );
}

#[test]
fn conv2d_matches_torch() {
    let m = fx();
    for (name, p) in [
        ("plain", params((1, 1), (1, 1), (1, 1), 1)),
        ("stride2", params((2, 2), (1, 1), (1, 1), 1)),
        ("groups", params((1, 1), (1, 1), (1, 1), 2)),
        ("dilation", params((1, 1), (2, 2), (2, 2), 1)),
        ("mixed", params((2, 1), (1, 2), (2, 1), 3)),
        ("pointwise", params((1, 1), (0, 0), (1, 1), 1)),
    ] {
        check_with_grads(&m, &format!("conv2d.{name}"), |x, w| x.conv2d(w, p));
    }
}

#[test]
fn conv_transpose2d_matches_torch() {
    let m = fx();
    for (name, p, op) in [
        ("s2op1", params((2, 2), (1, 1), (1, 1), 1), (1, 1)),
        ("groups", params((2, 2), (1, 1), (1, 1), 2), (1, 1)),
        ("k2s2", params((2, 2), (0, 0), (1, 1), 1), (0, 0)),
        ("dilated", params((3, 3), (2, 2), (2, 2), 1), (1, 1)),
    ] {
        check_with_grads(&m, &format!("tconv.{name}"), |x, w| {
            x.conv_transpose2d(w, p, op)
        });
    }
}

#[test]
fn modulated_conv2d_matches_torch() {
    let m = fx();
    let fir = setup_filter(&[1., 3., 3., 1.], &[4], true, false, 1.0, None, DType::F32).unwrap();
    for (name, pad, up, flip) in [("k3", 1, 1, true), ("k1", 0, 1, true), ("up2", 1, 2, false)] {
        let pre = format!("modconv.{name}");
        let x = t(&m, &format!("{pre}.x")).variable();
        let w = t(&m, &format!("{pre}.weight")).variable();
        let s = t(&m, &format!("{pre}.styles")).variable();
        for fused in [true, false] {
            let p = ModConvParams {
                up,
                padding: pad,
                fused,
                flip_weight: flip,
                ..Default::default()
            };
            let y = modulated_conv2d(&x, &w, &s, None, Some(&fir), p).unwrap();
            let what = format!("{pre} (fused {fused})");
            assert_close(&format!("{what} y"), &y, get(&m, &format!("{pre}.y")));
            let gy = t(&m, &format!("{pre}.gy"));
            let g = grad(&[y], Some(&[gy]), &[x.clone(), w.clone(), s.clone()], false).unwrap();
            for (i, n) in ["dx", "dweight", "dstyles"].iter().enumerate() {
                assert_close(
                    &format!("{what} {n}"),
                    &g[i],
                    get(&m, &format!("{pre}.{n}")),
                );
            }
        }
    }
}
