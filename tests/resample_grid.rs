//! affine_grid and grid_sample: identities and hand values, first- and second-order gradient
//! checks with respect to the image and the grid (sample points kept away from integer pixel
//! positions, the border clamp and the reflection folds, where the op has kinks), errors.

use brainsynth::ops::grid_sample::{GridPadding, affine_grid, grid_sample};
use brainsynth::testing::{check_grad, check_grad2, rand_tensor, rand_vals};
use brainsynth::{DType, Error, Tensor};

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_f64s(v, shape, DType::F64).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "at {i}: {x} vs {y}");
    }
}

const MODES: [GridPadding; 3] = [
    GridPadding::Zeros,
    GridPadding::Border,
    GridPadding::Reflection,
];

/// A grid `[n, ho, wo, 2]` whose pixel positions are k + f with integer k in [lo, hi] and
/// fractional part f in [0.15, 0.4] ∪ [0.6, 0.85]: never near an integer (floor changes) or a
/// half-integer (reflection folds at −0.5 and size − 0.5 without align_corners).
fn safe_grid(
    n: usize,
    ho: usize,
    wo: usize,
    (h, w): (usize, usize),
    ac: bool,
    seed: u64,
) -> Tensor {
    let r = rand_vals(n * ho * wo * 4, seed);
    let mut g = Vec::new();
    for p in 0..n * ho * wo {
        for (axis, size) in [(0, w), (1, h)] {
            let (a, b) = (r[4 * p + 2 * axis], r[4 * p + 2 * axis + 1]);
            let k = ((a + 1.0) / 2.0 * (size as f64 + 3.0)).floor() - 2.0; // −2 ..= size
            let f = 0.15 + (b + 1.0) / 2.0 * 0.5;
            let f = if f > 0.4 { f + 0.2 } else { f };
            let pix = k + f;
            let s = size as f64;
            g.push(if ac {
                2.0 * pix / (s - 1.0) - 1.0
            } else {
                (2.0 * pix + 1.0) / s - 1.0
            });
        }
    }
    t(&g, &[n, ho, wo, 2])
}

#[test]
fn identity_grid_reproduces_the_image() {
    let x = rand_tensor(&[2, 3, 4, 5], 1);
    let theta = t(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0].repeat(2), &[2, 2, 3]);
    for ac in [false, true] {
        let g = affine_grid(&theta, (2, 3, 4, 5), ac).unwrap();
        for mode in MODES {
            let y = grid_sample(&x, &g, mode, ac).unwrap();
            close(&y.to_vec_f64().unwrap(), &x.to_vec_f64().unwrap(), 1e-12);
        }
    }
    // a translation by one pixel (2/W in normalised units) shifts the image
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 1, 4]);
    let theta = t(&[1.0, 0.0, 0.5, 0.0, 1.0, 0.0], &[1, 2, 3]);
    let g = affine_grid(&theta, (1, 1, 1, 4), false).unwrap();
    let z = grid_sample(&x, &g, GridPadding::Zeros, false).unwrap();
    close(&z.to_vec_f64().unwrap(), &[2.0, 3.0, 4.0, 0.0], 1e-12);
    let b = grid_sample(&x, &g, GridPadding::Border, false).unwrap();
    close(&b.to_vec_f64().unwrap(), &[2.0, 3.0, 4.0, 4.0], 1e-12);
}

#[test]
fn values_by_hand() {
    // 2x2 image, sample at pixel position (0.25, 0.5): bilinear mix
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let (px, py) = (0.25, 0.5);
    let g = t(
        &[(2.0 * px + 1.0) / 2.0 - 1.0, (2.0 * py + 1.0) / 2.0 - 1.0],
        &[1, 1, 1, 2],
    );
    let y = grid_sample(&x, &g, GridPadding::Zeros, false).unwrap();
    let want = 0.75 * 0.5 * 1.0 + 0.25 * 0.5 * 2.0 + 0.75 * 0.5 * 3.0 + 0.25 * 0.5 * 4.0;
    close(&y.to_vec_f64().unwrap(), &[want], 1e-14);
    // pixel position −0.75 along x reflects (align_corners false, fold at −0.5) to −0.25, then
    // clamps to 0; position 2.25 reflects to 0.75 (fold at 1.5)
    let g = t(
        &[
            (2.0 * -0.75 + 1.0) / 2.0 - 1.0,
            -0.5,
            (2.0 * 2.25 + 1.0) / 2.0 - 1.0,
            -0.5,
        ],
        &[1, 1, 2, 2],
    );
    let y = grid_sample(&x, &g, GridPadding::Reflection, false).unwrap();
    close(&y.to_vec_f64().unwrap(), &[1.0, 1.75], 1e-14);
    // a far-away or non-finite position must not panic
    let g = t(&[1e30, -1e30, f64::NAN, 0.0], &[1, 1, 2, 2]);
    for mode in MODES {
        assert!(grid_sample(&x, &g, mode, false).is_ok());
    }
}

#[test]
fn gradients_first_order() {
    let x = rand_tensor(&[2, 2, 3, 4], 2);
    for ac in [false, true] {
        let g = safe_grid(2, 2, 3, (3, 4), ac, 7 + ac as u64);
        for mode in MODES {
            let r = check_grad(
                |v| grid_sample(&v[0], &v[1], mode, ac),
                &[x.clone(), g.clone()],
                1e-6,
            )
            .unwrap();
            assert!(r.max_err < 1e-6, "{mode:?} ac {ac}: {:.3e}", r.max_err);
        }
    }
    let theta = rand_tensor(&[2, 2, 3], 4);
    let r = check_grad(|v| affine_grid(&v[0], (2, 1, 3, 4), false), &[theta], 1e-6).unwrap();
    assert!(r.max_err < 1e-6, "affine_grid: {:.3e}", r.max_err);
}

#[test]
fn gradients_second_order() {
    let x = rand_tensor(&[1, 2, 3, 4], 5);
    for ac in [false, true] {
        let g = safe_grid(1, 2, 2, (3, 4), ac, 11 + ac as u64);
        for mode in MODES {
            let r = check_grad2(
                |v| grid_sample(&v[0], &v[1], mode, ac),
                &[x.clone(), g.clone()],
                1e-5,
            )
            .unwrap();
            assert!(r.max_err < 1e-5, "{mode:?} ac {ac}: {:.3e}", r.max_err);
        }
    }
    // through an augmentation-like chain: theta → grid → sample → square
    let theta = t(&[0.9, 0.1, 0.05, -0.2, 1.1, 0.02], &[1, 2, 3]);
    let r = check_grad2(
        |v| {
            grid_sample(
                &v[0],
                &affine_grid(&v[1], (1, 2, 3, 3), false)?,
                GridPadding::Zeros,
                false,
            )?
            .sqr()
        },
        &[x.clone(), theta],
        1e-5,
    )
    .unwrap();
    assert!(r.max_err < 1e-5, "theta chain: {:.3e}", r.max_err);
}

#[test]
fn errors_name_the_op() {
    let x = rand_tensor(&[2, 1, 3, 3], 1);
    let e = grid_sample(
        &x,
        &rand_tensor(&[1, 2, 2, 2], 2),
        GridPadding::Zeros,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                op: "grid_sample",
                ..
            }
        ),
        "{e}"
    );
    let e = grid_sample(
        &x,
        &rand_tensor(&[2, 2, 2, 3], 2),
        GridPadding::Zeros,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                op: "grid_sample",
                ..
            }
        ),
        "{e}"
    );
    let e = affine_grid(&rand_tensor(&[2, 3, 3], 1), (2, 1, 3, 3), false).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                op: "affine_grid",
                ..
            }
        ),
        "{e}"
    );
}
