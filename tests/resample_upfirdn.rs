//! upfirdn2d and its helpers: hand-computed values, separable = outer product, the adjoint
//! identity (proptest over shapes), first- and second-order gradient checks, shape errors.

use brainsynth::ops::upfirdn::{downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d};
use brainsynth::testing::{check_grad, check_grad2, rand_tensor};
use brainsynth::{DType, Error, Tensor};
use proptest::prelude::*;

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_f64s(v, shape, DType::F64).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "lengths {} vs {}", a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "at {i}: {x} vs {y}\n{a:?}\n{b:?}");
    }
}

#[test]
fn convolution_and_correlation_by_hand() {
    let x = t(&[1.0, 2.0, 3.0], &[1, 1, 1, 3]);
    let f = t(&[1.0, 2.0], &[1, 2]);
    // true convolution: numpy.convolve([1,2,3], [1,2]) = [1, 4, 7, 6]
    let y = upfirdn2d(&x, &f, (1, 1), (1, 1), (1, 1, 0, 0), 1.0, false).unwrap();
    assert_eq!(y.shape(), &[1, 1, 1, 4]);
    close(&y.to_vec_f64().unwrap(), &[1.0, 4.0, 7.0, 6.0], 1e-12);
    // correlation: [2, 5, 8, 3]; gain scales
    let y = upfirdn2d(&x, &f, (1, 1), (1, 1), (1, 1, 0, 0), 2.0, true).unwrap();
    close(&y.to_vec_f64().unwrap(), &[4.0, 10.0, 16.0, 6.0], 1e-12);
}

#[test]
fn up_down_and_crop_by_hand() {
    // up 2 of [1, 2]: [1,0,2,0]; pad x0 = 1 → [0,1,0,2,0]; box [1,1] → [1,1,2,2]
    let x = t(&[1.0, 2.0], &[1, 1, 1, 2]);
    let f = t(&[1.0, 1.0], &[1, 2]);
    let y = upfirdn2d(&x, &f, (2, 1), (1, 1), (1, 0, 0, 0), 1.0, false).unwrap();
    close(&y.to_vec_f64().unwrap(), &[1.0, 1.0, 2.0, 2.0], 1e-12);
    // down 2 with a box of 2: pair sums
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 1, 1, 6]);
    let y = upfirdn2d(&x, &f, (1, 1), (2, 1), (0, 0, 0, 0), 1.0, false).unwrap();
    close(&y.to_vec_f64().unwrap(), &[3.0, 7.0, 11.0], 1e-12);
    // negative padding crops
    let one = t(&[1.0], &[1, 1]);
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 4, 1]);
    let y = upfirdn2d(&x, &one, (1, 1), (1, 1), (0, 0, -1, -2), 1.0, false).unwrap();
    assert_eq!(y.shape(), &[1, 1, 1, 1]);
    close(&y.to_vec_f64().unwrap(), &[2.0], 1e-12);
    // along y: up 2, nearest-like with a [2,1] box
    let x = t(&[1.0, 2.0], &[1, 1, 2, 1]);
    let fy = t(&[1.0, 1.0], &[2, 1]);
    let y = upfirdn2d(&x, &fy, (1, 2), (1, 1), (0, 0, 1, 0), 1.0, false).unwrap();
    close(&y.to_vec_f64().unwrap(), &[1.0, 1.0, 2.0, 2.0], 1e-12);
}

#[test]
fn separable_equals_outer_product() {
    let x = rand_tensor(&[2, 2, 5, 7], 1);
    let taps = [0.3, -1.2, 2.0, 0.7];
    let f1 = t(&taps, &[4]);
    let outer: Vec<f64> = (0..16).map(|i| taps[i / 4] * taps[i % 4]).collect();
    let f2 = t(&outer, &[4, 4]);
    for (up, down, pad, flip) in [
        ((2, 2), (1, 1), (2, 1, 2, 1), false),
        ((1, 1), (2, 2), (1, 1, 1, 1), true),
        ((3, 1), (2, 3), (0, -1, 4, 2), false),
    ] {
        let a = upfirdn2d(&x, &f1, up, down, pad, 1.7, flip).unwrap();
        let b = upfirdn2d(&x, &f2, up, down, pad, 1.7, flip).unwrap();
        assert_eq!(a.shape(), b.shape());
        close(&a.to_vec_f64().unwrap(), &b.to_vec_f64().unwrap(), 1e-12);
    }
}

#[test]
fn setup_filter_matches_nvlabs() {
    // [1,3,3,1] → 4x4 outer product / 64 (NVlabs setup_filter: separable only from 8 taps)
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
    assert_eq!(f.shape(), &[4, 4]);
    let v = f.to_vec_f64().unwrap();
    close(
        &v[..4],
        &[1.0 / 64.0, 3.0 / 64.0, 3.0 / 64.0, 1.0 / 64.0],
        1e-15,
    );
    close(&[v.iter().sum::<f64>()], &[1.0], 1e-15);
    // gain^(ndim/2): 2-D × 4, separable 1-D × 2
    let f = setup_filter(&[1.0, 2.0, 1.0], &[3], true, false, 4.0, None, DType::F64).unwrap();
    close(
        &[f.to_vec_f64().unwrap().iter().sum::<f64>()],
        &[4.0],
        1e-14,
    );
    let f = setup_filter(
        &[1.0, 2.0, 1.0],
        &[3],
        true,
        false,
        4.0,
        Some(true),
        DType::F64,
    )
    .unwrap();
    assert_eq!(f.shape(), &[3]);
    close(&f.to_vec_f64().unwrap(), &[0.5, 1.0, 0.5], 1e-15);
    // flip
    let f = setup_filter(&[1.0, 2.0], &[2], false, true, 1.0, Some(true), DType::F64).unwrap();
    close(&f.to_vec_f64().unwrap(), &[2.0, 1.0], 0.0);
    assert!(setup_filter(&[1.0, -1.0], &[2], true, false, 1.0, None, DType::F64).is_err());
    assert!(setup_filter(&[1.0, 2.0], &[3], true, false, 1.0, None, DType::F64).is_err());
}

#[test]
fn helpers_keep_dc_and_sizes() {
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
    let x = Tensor::full(2.5, &[1, 2, 8, 6], DType::F64);
    let up = upsample2d(&x, &f, 2, (0, 0, 0, 0), 1.0).unwrap();
    assert_eq!(up.shape(), &[1, 2, 16, 12]);
    let dn = downsample2d(&x, &f, 2, (0, 0, 0, 0), 1.0).unwrap();
    assert_eq!(dn.shape(), &[1, 2, 4, 3]);
    let fl = filter2d(&x, &f, (0, 0, 0, 0), 1.0).unwrap();
    assert_eq!(fl.shape(), &[1, 2, 8, 6]);
    // away from the zero-padded border a constant stays constant
    let at = |y: &Tensor, r: usize, c: usize| {
        let w = y.shape()[3];
        y.to_vec_f64().unwrap()[r * w + c]
    };
    close(
        &[at(&up, 7, 5), at(&dn, 2, 1), at(&fl, 4, 3)],
        &[2.5; 3],
        1e-12,
    );
    // a 1-tap filter with odd upsampling: the (fw - up) / 2 offset floors like Python
    let one = t(&[1.0], &[1, 1]);
    let x = rand_tensor(&[1, 1, 3, 3], 5);
    let u = upsample2d(&x, &one, 2, (0, 0, 0, 0), 1.0).unwrap();
    assert_eq!(u.shape(), &[1, 1, 6, 6]);
    let d = downsample2d(&x, &one, 3, (0, 0, 0, 0), 1.0).unwrap();
    assert_eq!(d.shape(), &[1, 1, 1, 1]);
}

#[test]
fn f32_matches_f64() {
    let x = rand_tensor(&[2, 3, 9, 7], 8);
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
    let x32 = Tensor::from_f64s(&x.to_vec_f64().unwrap(), x.shape(), DType::F32).unwrap();
    let f32_ = Tensor::from_f64s(&f.to_vec_f64().unwrap(), f.shape(), DType::F32).unwrap();
    let a = upsample2d(&x, &f, 2, (0, 0, 0, 0), 1.0).unwrap();
    let b = upsample2d(&x32, &f32_, 2, (0, 0, 0, 0), 1.0).unwrap();
    assert_eq!(b.dtype(), DType::F32);
    close(&a.to_vec_f64().unwrap(), &b.to_vec_f64().unwrap(), 1e-5);
}

#[test]
fn shape_errors_name_the_op() {
    let f = t(&[1.0; 9], &[3, 3]);
    let e = upfirdn2d(
        &rand_tensor(&[2, 3, 4], 1),
        &f,
        (1, 1),
        (1, 1),
        (0, 0, 0, 0),
        1.0,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                op: "upfirdn2d",
                ..
            }
        ),
        "{e}"
    );
    // buffer smaller than the filter
    let e = upfirdn2d(
        &rand_tensor(&[1, 1, 2, 2], 1),
        &f,
        (1, 1),
        (1, 1),
        (0, 0, 0, 0),
        1.0,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("upfirdn2d"), "{e}");
    let bad = t(&[1.0; 8], &[2, 2, 2]);
    assert!(
        upfirdn2d(
            &rand_tensor(&[1, 1, 4, 4], 1),
            &bad,
            (1, 1),
            (1, 1),
            (0, 0, 0, 0),
            1.0,
            false
        )
        .is_err()
    );
    let e = upfirdn2d(
        &rand_tensor(&[1, 1, 4, 4], 1),
        &f,
        (0, 1),
        (1, 1),
        (0, 0, 0, 0),
        1.0,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Invalid {
                op: "upfirdn2d",
                ..
            }
        ),
        "{e}"
    );
    let e = upfirdn2d(
        &rand_tensor(&[1, 1, 4, 4], 1),
        &f.variable(),
        (1, 1),
        (1, 1),
        (0, 0, 0, 0),
        1.0,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("constant"), "{e}");
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.to_vec_f64()
        .unwrap()
        .iter()
        .zip(b.to_vec_f64().unwrap())
        .map(|(p, q)| p * q)
        .sum()
}

/// The definition, literally: zero-stuff, pad/crop, true convolution, keep every d-th sample.
#[allow(clippy::too_many_arguments)]
fn naive(
    x: &[f64],
    (h, w): (usize, usize),
    f: &[f64],
    (fh, fw): (usize, usize),
    (upx, upy): (usize, usize),
    (dx, dy): (usize, usize),
    (x0, x1, y0, y1): (isize, isize, isize, isize),
    gain: f64,
) -> Vec<f64> {
    let (bh, bw) = ((h * upy) as isize + y0 + y1, (w * upx) as isize + x0 + x1);
    let buf = |r: isize, c: isize| -> f64 {
        let (r, c) = (r - y0, c - x0); // position in the zero-stuffed image
        if r < 0 || c < 0 || r % upy as isize != 0 || c % upx as isize != 0 {
            return 0.0;
        }
        let (i, j) = (r as usize / upy, c as usize / upx);
        if i < h && j < w { x[i * w + j] } else { 0.0 }
    };
    let mut out = Vec::new();
    let mut r = 0;
    while r + fh as isize <= bh {
        let mut c = 0;
        while c + fw as isize <= bw {
            let mut acc = 0.0;
            for a in 0..fh {
                for b in 0..fw {
                    // convolution: the filter is flipped
                    acc +=
                        buf(r + a as isize, c + b as isize) * f[(fh - 1 - a) * fw + (fw - 1 - b)];
                }
            }
            out.push(acc * gain);
            c += dx as isize;
        }
        r += dy as isize;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// The kernel equals the literal definition, and ⟨upfirdn(x), y⟩ = ⟨x, upfirdnᵀ(y)⟩ with
    /// upfirdnᵀ taken from autograd (which runs the adjoint upfirdn2d: up/down swapped, filter
    /// flipped, padding adjusted).
    #[test]
    fn matches_definition_and_adjoint_identity(
        h in 1usize..7, w in 1usize..7, fh in 1usize..5, fw in 1usize..5,
        upx in 1usize..4, upy in 1usize..4, dx in 1usize..4, dy in 1usize..4,
        px0 in -2isize..4, px1 in -2isize..4, py0 in -2isize..4, py1 in -2isize..4,
        separable in any::<bool>(), flip in any::<bool>(), seed in 0u64..1000,
    ) {
        let fw = if separable { fh } else { fw };
        let bw = (w * upx) as isize + px0 + px1;
        let bh = (h * upy) as isize + py0 + py1;
        prop_assume!(bw >= fw as isize && bh >= fh as isize);
        let f = if separable {
            rand_tensor(&[fh], seed + 1)
        } else {
            rand_tensor(&[fh, fw], seed + 1)
        };
        let x = rand_tensor(&[2, 1, h, w], seed).variable();
        let y = upfirdn2d(&x, &f, (upx, upy), (dx, dy), (px0, px1, py0, py1), 1.3, flip).unwrap();
        let r = rand_tensor(y.shape(), seed + 2);
        let xt = brainsynth::autograd::grad(std::slice::from_ref(&y), Some(std::slice::from_ref(&r)), std::slice::from_ref(&x), false)
            .unwrap()
            .remove(0);
        prop_assert_eq!(xt.shape(), x.shape());
        // the kernel against the literal definition (2-D form of the filter)
        let fv = f.to_vec_f64().unwrap();
        let f2: Vec<f64> = if separable {
            (0..fh * fw).map(|i| fv[i / fw] * fv[i % fw]).collect()
        } else {
            fv
        };
        let f2 = if flip { f2.into_iter().rev().collect() } else { f2 };
        let xv = x.to_vec_f64().unwrap();
        let yv = y.to_vec_f64().unwrap();
        let plane = h * w;
        let mut want = naive(&xv[..plane], (h, w), &f2, (fh, fw), (upx, upy), (dx, dy), (px0, px1, py0, py1), 1.3);
        want.extend(naive(&xv[plane..], (h, w), &f2, (fh, fw), (upx, upy), (dx, dy), (px0, px1, py0, py1), 1.3));
        prop_assert_eq!(yv.len(), want.len());
        for (a, b) in yv.iter().zip(&want) {
            prop_assert!((a - b).abs() < 1e-12, "{} vs {}", a, b);
        }
        let (lhs, rhs) = (dot(&y, &r), dot(&x, &xt));
        prop_assert!((lhs - rhs).abs() <= 1e-10 * (1.0 + lhs.abs()), "{} vs {}", lhs, rhs);
    }
}

#[test]
fn gradients_first_order() {
    let f2 = rand_tensor(&[3, 2], 3);
    let f1 = rand_tensor(&[4], 4);
    for (f, up, down, pad) in [
        (&f2, (2, 1), (1, 2), (1, 0, 2, -1)),
        (&f1, (2, 2), (1, 1), (2, 1, 2, 1)),
        (&f1, (1, 1), (2, 2), (1, 1, 1, 1)),
    ] {
        let r = check_grad(
            |v| upfirdn2d(&v[0], f, up, down, pad, 1.5, false),
            &[rand_tensor(&[1, 2, 4, 3], 9)],
            1e-6,
        )
        .unwrap();
        assert!(r.max_err < 1e-6, "max err {:.3e}", r.max_err);
    }
}

#[test]
fn gradients_second_order() {
    // Linear in x, so the check is that the backward (itself an upfirdn2d) records history.
    // A nonlinearity after it makes the second derivative non-trivial.
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
    let r = check_grad2(
        |v| upsample2d(&v[0], &f, 2, (0, 0, 0, 0), 1.0)?.sqr(),
        &[rand_tensor(&[1, 2, 3, 3], 10)],
        1e-5,
    )
    .unwrap();
    assert!(r.max_err < 1e-5, "max err {:.3e}", r.max_err);
    let r = check_grad2(
        |v| downsample2d(&v[0].sin()?, &f, 2, (0, 0, 0, 0), 1.0)?.sqr(),
        &[rand_tensor(&[1, 1, 6, 4], 11)],
        1e-5,
    )
    .unwrap();
    assert!(r.max_err < 1e-5, "max err {:.3e}", r.max_err);
}

/// Rows wide enough for the kernel's whole-span path (the proptest's images are at most 6
/// wide): StyleGAN's 4×4 filter with the paddings of its up/down-sampling layers, in f64 against
/// the definition and in f32 against f64.
#[test]
fn wide_rows_match_definition() {
    let f = rand_tensor(&[4, 4], 7);
    let fv = f.to_vec_f64().unwrap();
    for &(h, w, up, down, pad) in &[
        (
            9usize,
            41usize,
            1usize,
            1usize,
            (1isize, 1isize, 1isize, 1isize),
        ),
        (8, 40, 1, 2, (1, 1, 1, 1)),
        (7, 33, 1, 1, (-1, 2, 0, 0)),
        (6, 35, 1, 3, (2, 0, 1, 2)),
        (5, 20, 2, 1, (2, 1, 2, 1)),
    ] {
        let x = rand_tensor(&[2, 3, h, w], (w + down) as u64);
        let p = (pad.0, pad.1, pad.2, pad.3);
        let y = upfirdn2d(&x, &f, (up, up), (down, down), p, 1.7, false).unwrap();
        let xv = x.to_vec_f64().unwrap();
        let mut want = Vec::new();
        for plane in xv.chunks(h * w) {
            want.extend(naive(
                plane,
                (h, w),
                &fv,
                (4, 4),
                (up, up),
                (down, down),
                p,
                1.7,
            ));
        }
        close(&y.to_vec_f64().unwrap(), &want, 1e-12);
        let f32 = |t: &Tensor| Tensor::from_f64s(&t.to_vec_f64().unwrap(), t.shape(), DType::F32);
        let y32 = upfirdn2d(
            &f32(&x).unwrap(),
            &f32(&f).unwrap(),
            (up, up),
            (down, down),
            p,
            1.7,
            false,
        )
        .unwrap();
        close(&y32.to_vec_f64().unwrap(), &want, 1e-5);
    }
}
