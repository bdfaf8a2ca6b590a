//! Modulated convolution: fused == non-fused, an independent per-sample construction, first- and
//! second-order finite differences w.r.t. x, weight and styles, up/down-sampling against NVlabs'
//! generic composition, and argument errors.

use brainsynth::ops::upfirdn::{setup_filter, upfirdn2d};
use brainsynth::ops::{Conv2dParams, ModConvParams, modulated_conv2d};
use brainsynth::testing::{check_grad, check_grad2, rand_tensor};
use brainsynth::{DType, Tensor};

/// Styles as StyleGAN's affine layers produce them: around 1 (bias init 1).
fn styles(n: usize, c: usize, seed: u64) -> Tensor {
    rand_tensor(&[n, c], seed).affine(0.5, 1.0).unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn fused_equals_non_fused() {
    let x = rand_tensor(&[3, 4, 6, 5], 1);
    let w = rand_tensor(&[5, 4, 3, 3], 2);
    let s = styles(3, 4, 3);
    let noise = rand_tensor(&[3, 1, 6, 5], 4);
    for demod in [true, false] {
        for (pad, z) in [(1, Some(&noise)), (0, None)] {
            let p = ModConvParams {
                padding: pad,
                demodulate: demod,
                ..Default::default()
            };
            let a = modulated_conv2d(&x, &w, &s, z, None, p.fused(true)).unwrap();
            let b = modulated_conv2d(&x, &w, &s, z, None, p.fused(false)).unwrap();
            assert_eq!(a.shape(), b.shape());
            assert!(rel_err(&a, &b) < 1e-13, "{p:?}: {}", rel_err(&a, &b));
        }
    }
}

#[test]
fn matches_per_sample_construction() {
    // build each sample's demodulated weight by hand and run a plain conv on that sample alone
    let (n, ci, co, k) = (2, 3, 4, 3);
    let x = rand_tensor(&[n, ci, 5, 5], 11);
    let w = rand_tensor(&[co, ci, k, k], 12);
    let s = styles(n, ci, 13);
    let y = modulated_conv2d(&x, &w, &s, None, None, ModConvParams::same(k)).unwrap();
    let (wv, sv) = (w.to_vec_f64().unwrap(), s.to_vec_f64().unwrap());
    for b in 0..n {
        let mut wb = vec![0.0; wv.len()];
        for o in 0..co {
            let row = &mut wb[o * ci * k * k..(o + 1) * ci * k * k];
            for (j, v) in row.iter_mut().enumerate() {
                *v = wv[o * ci * k * k + j] * sv[b * ci + j / (k * k)];
            }
            let norm = (row.iter().map(|v| v * v).sum::<f64>() + 1e-8).sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let wb = Tensor::from_f64s(&wb, &[co, ci, k, k], DType::F64).unwrap();
        let want = x
            .narrow(0, b, 1)
            .unwrap()
            .conv2d(&wb, Conv2dParams::same(k))
            .unwrap();
        let got = y.narrow(0, b, 1).unwrap();
        assert!(rel_err(&got, &want) < 1e-13, "sample {b}");
    }
}

#[test]
fn gradients_first_and_second_order() {
    let x = rand_tensor(&[2, 3, 4, 4], 21);
    let w = rand_tensor(&[2, 3, 3, 3], 22);
    let s = styles(2, 3, 23);
    for fused in [true, false] {
        for demod in [true, false] {
            let p = ModConvParams::same(3).fused(fused).demodulate(demod);
            let f = |v: &[Tensor]| modulated_conv2d(&v[0], &v[1], &v[2], None, None, p);
            let r = check_grad(f, &[x.clone(), w.clone(), s.clone()], 1e-6).unwrap();
            assert!(r.max_err < 1e-6, "{p:?} first order: {r:?}");
            // second order through the squared output, as R1 / path length differentiate it
            let f2 = |v: &[Tensor]| f(v)?.sqr();
            let r = check_grad2(f2, &[x.clone(), w.clone(), s.clone()], 1e-5).unwrap();
            assert!(r.max_err < 1e-5, "{p:?} second order: {r:?}");
        }
    }
}

#[test]
fn noise_is_added_and_bad_arguments_are_errors() {
    let x = rand_tensor(&[2, 3, 4, 4], 31);
    let w = rand_tensor(&[2, 3, 3, 3], 32);
    let s = styles(2, 3, 33);
    let z = rand_tensor(&[2, 1, 4, 4], 34);
    let p = ModConvParams::same(3);
    let with = modulated_conv2d(&x, &w, &s, Some(&z), None, p).unwrap();
    let without = modulated_conv2d(&x, &w, &s, None, None, p).unwrap();
    assert!(
        rel_err(
            &with.sub(&without).unwrap(),
            &z.broadcast_as(&[2, 2, 4, 4]).unwrap()
        ) < 1e-13
    );

    let e = modulated_conv2d(&x, &w, &rand_tensor(&[2, 4], 1), None, None, p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("modulated_conv2d") && e.contains("[2, 4]"),
        "{e}"
    );
    assert!(modulated_conv2d(&x, &rand_tensor(&[2, 4, 3, 3], 1), &s, None, None, p).is_err());
    assert!(modulated_conv2d(&x.reshape(&[2, 3, 16]).unwrap(), &w, &s, None, None, p).is_err());
    assert!(modulated_conv2d(&x, &w, &s, None, None, ModConvParams { up: 0, ..p }).is_err());
}

/// NVlabs' [1,3,3,1] low-pass filter, as `setup_filter` prepares it.
fn fir() -> Tensor {
    setup_filter(&[1., 3., 3., 1.], &[4], true, false, 1.0, None, DType::F64).unwrap()
}

fn resampled(up: usize, down: usize, pad: usize) -> ModConvParams {
    ModConvParams {
        up,
        down,
        padding: pad,
        ..Default::default()
    }
}

#[test]
fn resampling_fused_equals_non_fused() {
    let f = fir();
    for (k, up, down, pad, hw) in [
        (3, 2, 1, 1, 4),
        (3, 1, 2, 1, 8),
        (1, 2, 1, 0, 4),
        (1, 1, 2, 0, 8),
        (3, 2, 2, 1, 4),
    ] {
        let x = rand_tensor(&[2, 3, hw, hw], 50 + k as u64);
        let w = rand_tensor(&[4, 3, k, k], 51);
        let s = styles(2, 3, 52);
        for flip in [true, false] {
            let p = ModConvParams {
                flip_weight: flip,
                ..resampled(up, down, pad)
            };
            let a = modulated_conv2d(&x, &w, &s, None, Some(&f), p.fused(true)).unwrap();
            let b = modulated_conv2d(&x, &w, &s, None, Some(&f), p.fused(false)).unwrap();
            assert_eq!(a.shape(), b.shape(), "{p:?}");
            assert!(rel_err(&a, &b) < 1e-13, "{p:?}: {}", rel_err(&a, &b));
        }
    }
}

#[test]
fn resampling_matches_the_generic_composition() {
    // NVlabs' generic path: upfirdn2d (zero insertion, padding, filter, gain up²), a plain conv,
    // then filter + decimate; the fast paths (transposed conv, strided conv) must agree with it.
    let f = fir();
    let x = rand_tensor(&[2, 3, 4, 4], 61);
    let w = rand_tensor(&[4, 3, 3, 3], 62);
    let s = styles(2, 3, 63);
    let xs = x.mul(&s.reshape(&[2, 3, 1, 1]).unwrap()).unwrap();
    for flip in [true, false] {
        let w_eff = if flip {
            w.clone()
        } else {
            w.flip(&[2, 3]).unwrap()
        };
        // up 2, padding 1: pads (1 + 5/2, 1 + 2/2) = (3, 2) on the up-sampled image
        let p = ModConvParams {
            demodulate: false,
            fused: false,
            flip_weight: flip,
            ..resampled(2, 1, 1)
        };
        let got = modulated_conv2d(&x, &w, &s, None, Some(&f), p).unwrap();
        let want = upfirdn2d(&xs, &f, (2, 2), (1, 1), (3, 2, 3, 2), 4.0, false)
            .unwrap()
            .conv2d(&w_eff, Conv2dParams::default())
            .unwrap();
        assert_eq!(got.shape(), &[2, 4, 8, 8]);
        assert!(rel_err(&got, &want) < 1e-13, "up, flip {flip}");
        // down 2 on an 8×8 input, padding 1: pads (1 + 3/2, 1 + 2/2) = (2, 2)
        let x8 = rand_tensor(&[2, 3, 8, 8], 64);
        let x8s = x8.mul(&s.reshape(&[2, 3, 1, 1]).unwrap()).unwrap();
        let p = ModConvParams {
            up: 1,
            down: 2,
            ..p
        };
        let got = modulated_conv2d(&x8, &w, &s, None, Some(&f), p).unwrap();
        let want = upfirdn2d(
            &x8s,
            &Tensor::ones(&[1, 1], DType::F64),
            (1, 1),
            (1, 1),
            (2, 2, 2, 2),
            1.0,
            false,
        )
        .unwrap()
        .conv2d(&w_eff, Conv2dParams::default())
        .unwrap();
        let want = upfirdn2d(&want, &f, (1, 1), (2, 2), (0, 0, 0, 0), 1.0, false).unwrap();
        assert_eq!(got.shape(), &[2, 4, 4, 4]);
        assert!(rel_err(&got, &want) < 1e-13, "down, flip {flip}");
    }
}

#[test]
fn resampling_gradients_first_and_second_order() {
    let f = fir();
    let w = rand_tensor(&[2, 2, 3, 3], 72);
    let s = styles(2, 2, 73);
    for (up, down, hw) in [(2, 1, 3), (1, 2, 6)] {
        let x = rand_tensor(&[2, 2, hw, hw], 71);
        for fused in [true, false] {
            let p = resampled(up, down, 1).fused(fused);
            let g = |v: &[Tensor]| modulated_conv2d(&v[0], &v[1], &v[2], None, Some(&f), p);
            let r = check_grad(g, &[x.clone(), w.clone(), s.clone()], 1e-6).unwrap();
            assert!(r.max_err < 1e-6, "{p:?} first order: {r:?}");
            let g2 = |v: &[Tensor]| g(v)?.sqr();
            let r = check_grad2(g2, &[x.clone(), w.clone(), s.clone()], 1e-5).unwrap();
            assert!(r.max_err < 1e-5, "{p:?} second order: {r:?}");
        }
    }
}
