//! Normalisation ops: values (per-group mean 0 / variance 1, agreement with a composite
//! formula), first-order finite-difference checks for every op and second order for the ones
//! regularisers differentiate through (group / instance norm, AdaIN, 2nd-moment norm), errors.

use brainsynth::ops::norm::{
    NORM_EPS, STYLEGAN_EPS, adain, group_norm, group_norm_silu, instance_norm, layer_norm,
    normalize_2nd_moment,
};
use brainsynth::testing::{check_grad, check_grad2, rand_tensor};
use brainsynth::{DType, Error, Result, Tensor};

fn ok1(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let r = check_grad(f, inputs, 1e-6).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(r.compared > 0, "{name}: nothing compared");
    assert!(
        r.max_err < 1e-6,
        "{name}: max error {:.3e} over {}",
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

/// The same normalisation written with reductions, as the definition to compare against.
fn composite_group_norm(x: &Tensor, groups: usize, eps: f64) -> Result<Tensor> {
    let s = x.shape().to_vec();
    let xg = x.reshape(&[s[0], groups, usize::MAX])?;
    let mu = xg.mean_axes(&[2], true)?;
    let var = xg.var_axes(&[2], true, false)?;
    xg.sub(&mu)?
        .mul(&var.add_scalar(eps)?.rsqrt()?)?
        .reshape(&s)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.to_vec_f64()
        .unwrap()
        .iter()
        .zip(b.to_vec_f64().unwrap())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn group_norm_groups_have_mean_zero_and_unit_variance() {
    let x = rand_tensor(&[2, 6, 3, 4], 1).affine(3.0, 5.0).unwrap();
    let y = group_norm(&x, 3, None, None, 0.0).unwrap();
    let v = y.to_vec_f64().unwrap();
    // each (sample, group) is 2 channels x 12 pixels = 24 contiguous values
    for chunk in v.chunks(24) {
        let m = chunk.iter().sum::<f64>() / 24.0;
        let var = chunk.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / 24.0;
        assert!(m.abs() < 1e-12, "group mean {m}");
        assert!((var - 1.0).abs() < 1e-10, "group variance {var}");
    }
}

#[test]
fn group_norm_matches_composite_definition_f32_and_f64() {
    let x = rand_tensor(&[2, 8, 5, 5], 2).affine(2.0, 100.0).unwrap();
    let w = rand_tensor(&[8], 3);
    let b = rand_tensor(&[8], 4);
    let y = group_norm(&x, 4, Some(&w), Some(&b), NORM_EPS).unwrap();
    let want = composite_group_norm(&x, 4, NORM_EPS)
        .unwrap()
        .mul(&w.reshape(&[1, 8, 1, 1]).unwrap())
        .unwrap()
        .add(&b.reshape(&[1, 8, 1, 1]).unwrap())
        .unwrap();
    assert!(max_abs_diff(&y, &want) < 1e-10);
    // f32: a large mean must not cancel the variance (one-pass stats are shifted)
    let x32 = Tensor::from_f64s(&x.to_vec_f64().unwrap(), x.shape(), DType::F32).unwrap();
    let w32 = Tensor::from_f64s(&w.to_vec_f64().unwrap(), &[8], DType::F32).unwrap();
    let b32 = Tensor::from_f64s(&b.to_vec_f64().unwrap(), &[8], DType::F32).unwrap();
    let y32 = group_norm(&x32, 4, Some(&w32), Some(&b32), NORM_EPS).unwrap();
    assert_eq!(y32.dtype(), DType::F32);
    assert!(max_abs_diff(&y32, &want) < 1e-4);
    // silu variant is silu of the plain one
    let ys = group_norm_silu(&x, 4, Some(&w), Some(&b), NORM_EPS).unwrap();
    assert!(max_abs_diff(&ys, &want.silu().unwrap()) < 1e-12);
}

#[test]
fn instance_and_layer_norm_match_definitions() {
    let x = rand_tensor(&[2, 3, 4, 4], 5);
    let y = instance_norm(&x, None, None, NORM_EPS).unwrap();
    let want = composite_group_norm(&x, 3, NORM_EPS).unwrap();
    assert!(max_abs_diff(&y, &want) < 1e-12);

    // layer norm over the last two dims of [2, 3, 4, 5]
    let x = rand_tensor(&[2, 3, 4, 5], 6);
    let w = rand_tensor(&[4, 5], 7);
    let b = rand_tensor(&[4, 5], 8);
    let y = layer_norm(&x, &[4, 5], Some(&w), Some(&b), NORM_EPS).unwrap();
    let xr = x.reshape(&[6, 20]).unwrap();
    let mu = xr.mean_axes(&[1], true).unwrap();
    let var = xr.var_axes(&[1], true, false).unwrap();
    let want = xr
        .sub(&mu)
        .unwrap()
        .mul(&var.add_scalar(NORM_EPS).unwrap().rsqrt().unwrap())
        .unwrap()
        .reshape(&[2, 3, 4, 5])
        .unwrap()
        .mul(&w)
        .unwrap()
        .add(&b)
        .unwrap();
    assert!(max_abs_diff(&y, &want) < 1e-12);
}

#[test]
fn adain_is_stylegan_style_mod_of_instance_norm() {
    let x = rand_tensor(&[2, 3, 2, 2], 9);
    let s = rand_tensor(&[2, 3], 10);
    let b = rand_tensor(&[2, 3], 11);
    let y = adain(&x, &s, &b, STYLEGAN_EPS).unwrap();
    let xn = instance_norm(&x, None, None, STYLEGAN_EPS)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let (yv, sv, bv) = (
        y.to_vec_f64().unwrap(),
        s.to_vec_f64().unwrap(),
        b.to_vec_f64().unwrap(),
    );
    for (i, (&yi, &xi)) in yv.iter().zip(&xn).enumerate() {
        let nc = i / 4; // index into [N, C]
        let want = xi * (sv[nc] + 1.0) + bv[nc];
        assert!((yi - want).abs() < 1e-12);
    }
}

#[test]
fn normalize_2nd_moment_gives_unit_mean_square() {
    let x = rand_tensor(&[3, 16], 12).affine(4.0, 1.0).unwrap();
    let y = normalize_2nd_moment(&x, 1, STYLEGAN_EPS).unwrap();
    for row in y.to_vec_f64().unwrap().chunks(16) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / 16.0;
        assert!((ms - 1.0).abs() < 1e-6, "mean square {ms}");
    }
}

#[test]
fn first_order_gradients() {
    let x = rand_tensor(&[2, 4, 2, 3], 20);
    let w = rand_tensor(&[4], 21).add_scalar(1.0).unwrap();
    let b = rand_tensor(&[4], 22);
    ok1(
        "group_norm plain",
        |v| group_norm(&v[0], 2, None, None, NORM_EPS),
        std::slice::from_ref(&x),
    );
    ok1(
        "group_norm affine",
        |v| group_norm(&v[0], 2, Some(&v[1]), Some(&v[2]), NORM_EPS),
        &[x.clone(), w.clone(), b.clone()],
    );
    ok1(
        "group_norm weight only",
        |v| group_norm(&v[0], 4, Some(&v[1]), None, NORM_EPS),
        &[x.clone(), w.clone()],
    );
    ok1(
        "group_norm_silu",
        |v| group_norm_silu(&v[0], 2, Some(&v[1]), Some(&v[2]), NORM_EPS),
        &[x.clone(), w.clone(), b.clone()],
    );
    ok1(
        "group_norm_silu no affine",
        |v| group_norm_silu(&v[0], 1, None, None, NORM_EPS),
        std::slice::from_ref(&x),
    );
    ok1(
        "instance_norm affine",
        |v| instance_norm(&v[0], Some(&v[1]), Some(&v[2]), NORM_EPS),
        &[x.clone(), w.clone(), b.clone()],
    );
    let xl = rand_tensor(&[3, 2, 5], 23);
    ok1(
        "layer_norm",
        |v| layer_norm(&v[0], &[5], Some(&v[1]), Some(&v[2]), NORM_EPS),
        &[xl, rand_tensor(&[5], 24), rand_tensor(&[5], 25)],
    );
    ok1(
        "adain",
        |v| adain(&v[0], &v[1], &v[2], STYLEGAN_EPS),
        &[
            x.clone(),
            rand_tensor(&[2, 4], 26),
            rand_tensor(&[2, 4], 27),
        ],
    );
    ok1(
        "normalize_2nd_moment",
        |v| normalize_2nd_moment(&v[0], 1, STYLEGAN_EPS),
        &[rand_tensor(&[2, 6], 28)],
    );
}

#[test]
fn second_order_gradients() {
    let x = rand_tensor(&[2, 4, 2, 2], 30);
    let w = rand_tensor(&[4], 31).add_scalar(1.0).unwrap();
    let b = rand_tensor(&[4], 32);
    ok2(
        "group_norm plain",
        |v| group_norm(&v[0], 2, None, None, NORM_EPS),
        std::slice::from_ref(&x),
    );
    ok2(
        "group_norm affine",
        |v| group_norm(&v[0], 2, Some(&v[1]), Some(&v[2]), NORM_EPS),
        &[x.clone(), w.clone(), b.clone()],
    );
    ok2(
        "group_norm_silu",
        |v| group_norm_silu(&v[0], 2, Some(&v[1]), Some(&v[2]), NORM_EPS),
        &[x.clone(), w.clone(), b.clone()],
    );
    ok2(
        "instance_norm",
        |v| instance_norm(&v[0], Some(&v[1]), Some(&v[2]), NORM_EPS),
        &[x.clone(), w, b],
    );
    ok2(
        "adain",
        |v| adain(&v[0], &v[1], &v[2], STYLEGAN_EPS),
        &[x, rand_tensor(&[2, 4], 33), rand_tensor(&[2, 4], 34)],
    );
    ok2(
        "normalize_2nd_moment",
        |v| normalize_2nd_moment(&v[0], 1, STYLEGAN_EPS),
        &[rand_tensor(&[2, 5], 35)],
    );
    ok2(
        "layer_norm",
        |v| layer_norm(&v[0], &[4], Some(&v[1]), None, NORM_EPS),
        &[rand_tensor(&[3, 4], 36), rand_tensor(&[4], 37)],
    );
}

#[test]
fn shape_errors_name_the_op() {
    let x = rand_tensor(&[2, 6, 3, 3], 40);
    let expect = |r: Result<Tensor>, op: &str| match r {
        Err(e @ (Error::Shape { .. } | Error::Invalid { .. })) => {
            assert!(e.to_string().starts_with(op), "{e}")
        }
        other => panic!("{op}: expected a shape error, got {other:?}"),
    };
    expect(group_norm(&x, 4, None, None, NORM_EPS), "group_norm");
    expect(group_norm(&x, 0, None, None, NORM_EPS), "group_norm");
    expect(
        group_norm(&x, 3, Some(&rand_tensor(&[5], 1)), None, NORM_EPS),
        "group_norm",
    );
    expect(
        group_norm_silu(&x, 3, None, Some(&rand_tensor(&[2, 3], 1)), NORM_EPS),
        "group_norm_silu",
    );
    expect(
        instance_norm(&rand_tensor(&[6], 1), None, None, NORM_EPS),
        "instance_norm",
    );
    expect(layer_norm(&x, &[4], None, None, NORM_EPS), "layer_norm");
    expect(
        layer_norm(&x, &[3], Some(&rand_tensor(&[4], 1)), None, NORM_EPS),
        "layer_norm",
    );
    expect(
        adain(
            &x,
            &rand_tensor(&[2, 5], 1),
            &rand_tensor(&[2, 6], 1),
            STYLEGAN_EPS,
        ),
        "adain",
    );
    expect(group_norm(&x, 3, None, None, f64::NAN), "group_norm");
}
