//! StyleGAN layers: bias_act, minibatch stddev, noise, pixel norm, filtered leaky ReLU (the
//! sinusoidal embedding's tests are with `timestep_embedding` in `attention_ops.rs`). Hand values, first-order checks for each, second order for bias_act
//! (lrelu with gain and clamp) and minibatch stddev.

use brainsynth::ops::stylegan::{
    Act, add_noise, bias_act, filtered_lrelu, minibatch_stddev, pixel_norm,
};
use brainsynth::ops::upfirdn::setup_filter;
use brainsynth::testing::{check_grad, check_grad2, rand_tensor, rand_vals};
use brainsynth::{DType, Error, Result, Tensor};

const SQRT2: f64 = std::f64::consts::SQRT_2;

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_f64s(v, shape, DType::F64).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "at {i}: {x} vs {y}"
        );
    }
}

fn ok1(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, xs: &[Tensor]) {
    let r = check_grad(f, xs, 1e-6).unwrap();
    assert!(
        r.compared > 0 && r.max_err < 1e-6,
        "{name}: {:.3e}",
        r.max_err
    );
}

fn ok2(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, xs: &[Tensor]) {
    let r = check_grad2(f, xs, 1e-5).unwrap();
    assert!(
        r.compared > 0 && r.max_err < 1e-5,
        "{name}: {:.3e}",
        r.max_err
    );
}

/// Values in ±[lo, hi]: away from the kink at 0 and below a clamp above `hi`·gain.
fn away(shape: &[usize], seed: u64, lo: f64, hi: f64) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f64> = rand_vals(n, seed)
        .iter()
        .map(|&r| r.signum() * (lo + (hi - lo) * r.abs()))
        .collect();
    t(&v, shape)
}

#[test]
fn bias_act_by_hand() {
    let x = t(&[-1.0, 0.5, 2.0, -3.0], &[1, 2, 2]);
    let b = t(&[0.5, -1.0], &[2]);
    // x + b (along dim 1) = [-0.5, 1.0, 1.0, -4.0]; lrelu 0.2 → [-0.1, 1, 1, -0.8]; × √2;
    // clamp 1.2
    let y = bias_act(&x, Some(&b), 1, Act::Lrelu(0.2), None, Some(1.2)).unwrap();
    close(
        &y.to_vec_f64().unwrap(),
        &[-0.1 * SQRT2, 1.2, 1.2, -0.8 * SQRT2],
        1e-14,
    );
    // linear: gain 1 by default; explicit gain
    let y = bias_act(&x, Some(&b), 1, Act::Linear, None, None).unwrap();
    close(&y.to_vec_f64().unwrap(), &[-0.5, 1.0, 1.0, -4.0], 1e-15);
    let y = bias_act(&x, None, 1, Act::Relu, Some(3.0), None).unwrap();
    close(&y.to_vec_f64().unwrap(), &[0.0, 1.5, 6.0, 0.0], 1e-15);
    assert_eq!(Act::Silu.default_gain(), SQRT2);
    assert_eq!(Act::Tanh.default_gain(), 1.0);
    assert_eq!(Act::Sigmoid.default_gain(), 1.0);
    // bias along the last dim
    let y = bias_act(&x, Some(&b), 2, Act::Linear, None, None).unwrap();
    close(&y.to_vec_f64().unwrap(), &[-0.5, -0.5, 2.5, -4.0], 1e-15);
    let e = bias_act(&x, Some(&t(&[1.0; 3], &[3])), 1, Act::Linear, None, None).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "bias_act", .. }), "{e}");
    assert!(bias_act(&x, None, 1, Act::Linear, None, Some(-1.0)).is_err());
}

#[test]
fn bias_act_gradients() {
    // |x + b| in [0.1, 0.9]: away from the kink; clamp 256 never reached, clamp 0.8 reached
    // only by values clearly above it (|x+b|·√2 in [0.14, 1.27], excluding a band around 0.8)
    let x = away(&[2, 3, 2, 2], 1, 0.2, 0.8);
    let b = t(&[0.05, -0.05, 0.0], &[3]);
    for act in [
        Act::Lrelu(0.2),
        Act::Relu,
        Act::Linear,
        Act::Tanh,
        Act::Sigmoid,
        Act::Silu,
        Act::Softplus,
    ] {
        ok1(
            "bias_act",
            |v| bias_act(&v[0], Some(&v[1]), 1, act, None, Some(256.0)),
            &[x.clone(), b.clone()],
        );
    }
    ok2(
        "bias_act lrelu gain clamp",
        |v| {
            bias_act(
                &v[0],
                Some(&v[1]),
                1,
                Act::Lrelu(0.2),
                Some(SQRT2),
                Some(256.0),
            )?
            .sqr()
        },
        &[x.clone(), b.clone()],
    );
    // clamp reached: values whose |x+b|·√2 sits clearly on one side of 0.8
    let xv: Vec<f64> = x
        .to_vec_f64()
        .unwrap()
        .iter()
        .map(|&v| {
            if (v.abs() * SQRT2 - 0.8).abs() < 0.1 {
                v * 1.5
            } else {
                v
            }
        })
        .collect();
    let xc = t(&xv, x.shape());
    ok2(
        "bias_act clamp active",
        |v| bias_act(&v[0], None, 1, Act::Lrelu(0.2), None, Some(0.8))?.sqr(),
        &[xc],
    );
    ok2(
        "tanh",
        |v| bias_act(&v[0], Some(&v[1]), 1, Act::Tanh, None, None),
        &[x, b],
    );
}

/// Straight loops over StyleGAN2's definition.
fn mbstd_reference(
    x: &[f64],
    (n, c, h, w): (usize, usize, usize, usize),
    g: usize,
    f: usize,
) -> Vec<f64> {
    let groups = n / g;
    let cf = c / f;
    let mut out = Vec::new();
    for s in 0..n {
        let j = s % groups;
        let mut ext = vec![0.0; f];
        for (fi, e) in ext.iter_mut().enumerate() {
            let mut acc = 0.0;
            for ch in fi * cf..(fi + 1) * cf {
                for p in 0..h * w {
                    let vals: Vec<f64> = (0..g)
                        .map(|k| x[((k * groups + j) * c + ch) * h * w + p])
                        .collect();
                    let m = vals.iter().sum::<f64>() / g as f64;
                    let var = vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / g as f64;
                    acc += (var + 1e-8).sqrt();
                }
            }
            *e = acc / (cf * h * w) as f64;
        }
        out.push(ext);
    }
    let mut res = Vec::new();
    for (s, ext) in out.iter().enumerate() {
        res.extend_from_slice(&x[s * c * h * w..(s + 1) * c * h * w]);
        for e in ext {
            res.extend(std::iter::repeat_n(*e, h * w));
        }
    }
    res
}

#[test]
fn minibatch_stddev_values() {
    let x = t(&[1.0, 3.0], &[2, 1, 1, 1]);
    let y = minibatch_stddev(&x, 4, 1).unwrap(); // G = min(4, 2)
    close(
        &y.to_vec_f64().unwrap(),
        &[1.0, (1.0f64 + 1e-8).sqrt(), 3.0, (1.0f64 + 1e-8).sqrt()],
        1e-15,
    );
    let shape = (6, 4, 2, 3);
    let x = rand_tensor(&[6, 4, 2, 3], 3);
    for (g, f) in [(2, 1), (3, 2), (6, 4), (1, 1)] {
        let y = minibatch_stddev(&x, g, f).unwrap();
        assert_eq!(y.shape(), &[6, 4 + f, 2, 3]);
        close(
            &y.to_vec_f64().unwrap(),
            &mbstd_reference(&x.to_vec_f64().unwrap(), shape, g, f),
            1e-13,
        );
    }
    let e = minibatch_stddev(&x, 4, 1).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                op: "minibatch_stddev",
                ..
            }
        ),
        "{e}"
    );
    assert!(minibatch_stddev(&x, 2, 3).is_err());
}

#[test]
fn minibatch_stddev_gradients() {
    let x = rand_tensor(&[4, 2, 2, 2], 4);
    ok1(
        "mbstd",
        |v| minibatch_stddev(&v[0], 2, 2),
        std::slice::from_ref(&x),
    );
    ok2("mbstd", |v| minibatch_stddev(&v[0], 2, 1), &[x]);
}

#[test]
fn noise_and_pixel_norm() {
    let x = rand_tensor(&[2, 3, 2, 2], 5);
    let noise = rand_tensor(&[2, 1, 2, 2], 6);
    let s = t(&[0.5], &[]);
    let y = add_noise(&x, &noise, &s).unwrap();
    let (xv, nv) = (x.to_vec_f64().unwrap(), noise.to_vec_f64().unwrap());
    let want: Vec<f64> = (0..24)
        .map(|i| xv[i] + 0.5 * nv[(i / 12) * 4 + i % 4])
        .collect();
    close(&y.to_vec_f64().unwrap(), &want, 1e-15);
    let sc = t(&[0.1, -0.2, 0.3], &[3]);
    let y = add_noise(&x, &noise, &sc).unwrap();
    let want: Vec<f64> = (0..24)
        .map(|i| xv[i] + [0.1, -0.2, 0.3][(i / 4) % 3] * nv[(i / 12) * 4 + i % 4])
        .collect();
    close(&y.to_vec_f64().unwrap(), &want, 1e-15);
    ok1(
        "noise",
        |v| add_noise(&v[0], &v[1], &v[2]),
        &[x.clone(), noise.clone(), sc],
    );
    let e = add_noise(&x, &rand_tensor(&[2, 3, 2, 2], 1), &s).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                op: "add_noise",
                ..
            }
        ),
        "{e}"
    );
    assert!(add_noise(&x, &noise, &t(&[1.0, 2.0], &[2])).is_err());

    // pixel norm: each pixel's channel vector gets unit RMS
    let y = pixel_norm(&x).unwrap().to_vec_f64().unwrap();
    for b in 0..2 {
        for p in 0..4 {
            let ms: f64 = (0..3).map(|c| y[b * 12 + c * 4 + p].powi(2)).sum::<f64>() / 3.0;
            assert!((ms - 1.0).abs() < 1e-6, "{ms}");
        }
    }
    ok1(
        "pixel_norm",
        |v| pixel_norm(&v[0]),
        std::slice::from_ref(&x),
    );
    ok2("pixel_norm", |v| pixel_norm(&v[0]), &[x]);
}

#[test]
fn filtered_lrelu_matches_its_definition() {
    let x = away(&[1, 2, 5, 4], 7, 0.1, 0.9);
    let b = t(&[0.02, -0.03], &[2]);
    // identity filters: clamp(lrelu(x + b) · gain)
    let y = filtered_lrelu(
        &x,
        None,
        None,
        Some(&b),
        1,
        1,
        (0, 0, 0, 0),
        2.0,
        0.2,
        Some(1.5),
        false,
    )
    .unwrap();
    let xv = x.to_vec_f64().unwrap();
    let want: Vec<f64> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let z = v + [0.02, -0.03][i / 20];
            ((if z > 0.0 { z } else { 0.2 * z }) * 2.0).clamp(-1.5, 1.5)
        })
        .collect();
    close(&y.to_vec_f64().unwrap(), &want, 1e-14);
    // StyleGAN3's output size: (in·up + pads − (fu−1) − (fd−1) + down − 1) / down
    let fu = setup_filter(
        &[1.0, 3.0, 3.0, 1.0, 1.0, 3.0, 3.0, 1.0],
        &[8],
        true,
        false,
        1.0,
        None,
        DType::F64,
    )
    .unwrap();
    let fd = setup_filter(&[1.0, 2.0, 1.0], &[3], true, false, 1.0, None, DType::F64).unwrap();
    let (up, down, pad) = (2usize, 2usize, (5isize, 4isize, 5isize, 4isize));
    let y = filtered_lrelu(
        &x,
        Some(&fu),
        Some(&fd),
        Some(&b),
        up,
        down,
        pad,
        SQRT2,
        0.2,
        None,
        false,
    )
    .unwrap();
    let ow = (4 * up as isize + 9 - 7 - 2 + down as isize - 1) / down as isize;
    let oh = (5 * up as isize + 9 - 7 - 2 + down as isize - 1) / down as isize;
    assert_eq!(y.shape(), &[1, 2, oh as usize, ow as usize]);
    ok1(
        "filtered_lrelu",
        |v| {
            filtered_lrelu(
                &v[0],
                Some(&fu),
                Some(&fd),
                Some(&v[1]),
                up,
                down,
                pad,
                SQRT2,
                0.2,
                None,
                false,
            )
        },
        &[x.clone(), b.clone()],
    );
    assert!(
        filtered_lrelu(
            &x,
            None,
            None,
            None,
            1,
            1,
            (0, 0, 0, 0),
            0.0,
            0.2,
            None,
            false
        )
        .is_err()
    );
}

/// Without a recorded gradient, `bias_act` on the CPU takes its one-pass kernel; with one, the
/// composite (add, activation, gain, clamp). Both must give the same bits, on fresh random
/// inputs (seed printed; BRAINSYNTH_SEED repeats one), f32 and f64, every supported activation,
/// gains, clamps that are and are not reached, a bias along each dimension, and sizes that
/// split over the worker threads mid-row.
#[test]
fn bias_act_one_pass_equals_the_composite_bit_for_bit() {
    let seed = std::env::var("BRAINSYNTH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 % 1_000_000_007)
                .unwrap_or(1)
        });
    println!("bias_act one pass: seed {seed}");
    let cast = |t: &Tensor, dtype: DType| {
        Tensor::from_f64s(&t.to_vec_f64().unwrap(), t.shape(), dtype).unwrap()
    };
    let mut k = seed;
    for shape in [vec![3, 5, 7, 9], vec![4, 33, 31, 37], vec![2, 70_001]] {
        for dim in 0..shape.len() {
            for dtype in [DType::F32, DType::F64] {
                for (act, gain, clamp) in [
                    (Act::Lrelu(0.2), None, Some(256.0)),
                    (Act::Lrelu(0.2), Some(0.7), Some(0.5)),
                    (Act::Relu, Some(3.0), None),
                    (Act::Linear, None, Some(0.3)),
                    (Act::Linear, Some(1.0), None),
                ] {
                    k += 1;
                    let x = cast(&rand_tensor(&shape, k).mul_scalar(2.0).unwrap(), dtype);
                    let b = cast(&rand_tensor(&[shape[dim]], k ^ 0x5A5A), dtype);
                    let fused = bias_act(&x, Some(&b), dim, act, gain, clamp).unwrap();
                    let (xv, bv) = (x.variable(), b.variable());
                    let composite = bias_act(&xv, Some(&bv), dim, act, gain, clamp).unwrap();
                    assert!(composite.requires_grad() && !fused.requires_grad());
                    let (f, c) = (fused.to_vec_f64().unwrap(), composite.to_vec_f64().unwrap());
                    let diff = f
                        .iter()
                        .zip(&c)
                        .position(|(a, b)| a.to_bits() != b.to_bits());
                    assert!(
                        diff.is_none(),
                        "{shape:?} dim {dim} {dtype:?} {act:?} gain {gain:?} clamp {clamp:?}: \
                         element {diff:?} differs"
                    );
                }
            }
        }
    }
}
