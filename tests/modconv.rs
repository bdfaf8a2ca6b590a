//! Modulated convolution: fused == non-fused, an independent per-sample construction, first- and
//! second-order finite differences w.r.t. x, weight and styles, and argument errors.

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
            let a = modulated_conv2d(&x, &w, &s, z, p.fused(true)).unwrap();
            let b = modulated_conv2d(&x, &w, &s, z, p.fused(false)).unwrap();
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
    let y = modulated_conv2d(&x, &w, &s, None, ModConvParams::same(k)).unwrap();
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
            let f = |v: &[Tensor]| modulated_conv2d(&v[0], &v[1], &v[2], None, p);
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
    let with = modulated_conv2d(&x, &w, &s, Some(&z), p).unwrap();
    let without = modulated_conv2d(&x, &w, &s, None, p).unwrap();
    assert!(
        rel_err(
            &with.sub(&without).unwrap(),
            &z.broadcast_as(&[2, 2, 4, 4]).unwrap()
        ) < 1e-13
    );

    let e = modulated_conv2d(&x, &w, &rand_tensor(&[2, 4], 1), None, p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("modulated_conv2d") && e.contains("[2, 4]"),
        "{e}"
    );
    assert!(modulated_conv2d(&x, &rand_tensor(&[2, 4, 3, 3], 1), &s, None, p).is_err());
    assert!(modulated_conv2d(&x.reshape(&[2, 3, 16]).unwrap(), &w, &s, None, p).is_err());
    assert!(modulated_conv2d(&x, &w, &s, None, ModConvParams { up: 0, ..p }).is_err());
}

#[test]
fn resampling_without_upfirdn2d_is_a_clear_error() {
    let x = rand_tensor(&[1, 2, 4, 4], 41);
    let w = rand_tensor(&[2, 2, 3, 3], 42);
    let s = styles(1, 2, 43);
    for p in [
        ModConvParams {
            up: 2,
            ..ModConvParams::same(3)
        },
        ModConvParams {
            down: 2,
            ..ModConvParams::same(3)
        },
    ] {
        let e = modulated_conv2d(&x, &w, &s, None, p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("modulated_conv2d") && e.contains("upfirdn2d"),
            "{e}"
        );
    }
}
