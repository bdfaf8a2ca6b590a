//! The fused CPU filtered leaky ReLU against its reference composite (`filtered_lrelu_ref`):
//! forward, the input and bias gradients, and the recorded (create_graph) gradient, on fresh
//! random inputs in f64 (relative 1e-10) and f32 (relative 1e-5), for several up/down factors,
//! odd sizes, negative padding, clamp on and off, flipped filters, random filters and the
//! Kaiser filters of the NVlabs fixture's StyleGAN3-T layers.

mod common;

use brainsynth::autograd::grad;
use brainsynth::ops::stylegan::{filtered_lrelu, filtered_lrelu_ref};
use brainsynth::testing::rand_vals;
use brainsynth::{DType, Result, Tensor};
use common::fixtures::load;

type Pad = (isize, isize, isize, isize);

#[derive(Clone)]
struct Case {
    name: String,
    /// Filter taps (None = identity).
    fu: Option<Vec<f64>>,
    fd: Option<Vec<f64>>,
    up: usize,
    down: usize,
    pad: Pad,
    clamp: Option<f64>,
    flip: bool,
    /// [N, C, H, W]
    shape: [usize; 4],
    bias: bool,
}

fn tensor(v: &[f64], shape: &[usize], dt: DType) -> Tensor {
    Tensor::from_f64s(v, shape, dt).unwrap()
}

fn rand(shape: &[usize], seed: u64, scale: f64, dt: DType) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f64> = rand_vals(n, seed).iter().map(|r| r * scale).collect();
    tensor(&v, shape, dt)
}

/// max |a − b| / max |b|.
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let m = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    d / m.max(1e-300)
}

type Op = fn(
    &Tensor,
    Option<&Tensor>,
    Option<&Tensor>,
    Option<&Tensor>,
    usize,
    usize,
    Pad,
    f64,
    f64,
    Option<f64>,
    bool,
) -> Result<Tensor>;

/// y, and with `g` the gradients [gx, gb?] (recorded when `create`).
fn run(
    op: Op,
    c: &Case,
    x: &Tensor,
    b: Option<&Tensor>,
    g: Option<&Tensor>,
    create: bool,
) -> (Tensor, Vec<Tensor>) {
    let dt = x.dtype();
    let fu = c.fu.as_ref().map(|t| tensor(t, &[t.len()], dt));
    let fd = c.fd.as_ref().map(|t| tensor(t, &[t.len()], dt));
    let y = op(
        x,
        fu.as_ref(),
        fd.as_ref(),
        b,
        c.up,
        c.down,
        c.pad,
        std::f64::consts::SQRT_2,
        0.2,
        c.clamp,
        c.flip,
    )
    .unwrap();
    let Some(g) = g else { return (y, vec![]) };
    let mut wrt = vec![x.clone()];
    wrt.extend(b.cloned());
    let gs = grad(
        std::slice::from_ref(&y),
        Some(std::slice::from_ref(g)),
        &wrt,
        create,
    )
    .unwrap();
    (y, gs)
}

fn check_case(c: &Case, dt: DType, tol: f64, seed: u64) {
    // scaled so that a clamp of 1 bites on a good share of the samples
    let x = rand(&c.shape, seed, 3.0, dt).variable();
    let b = c
        .bias
        .then(|| rand(&[c.shape[1]], seed + 1, 0.5, dt).variable());
    let (y_ref, _) = run(filtered_lrelu_ref, c, &x, b.as_ref(), None, false);
    let g = rand(y_ref.shape(), seed + 2, 1.0, dt);
    let (y_ref, g_ref) = run(filtered_lrelu_ref, c, &x, b.as_ref(), Some(&g), false);
    let (y, gs) = run(filtered_lrelu, c, &x, b.as_ref(), Some(&g), false);
    assert_eq!(
        y.grad_fn().map(|f| f.name()),
        Some("filtered_lrelu"),
        "{}: the fused op did not run",
        c.name
    );
    let what = format!("{} {dt:?}", c.name);
    let e = rel(&y, &y_ref);
    assert!(e <= tol, "{what}: forward relative error {e:.3e} > {tol:e}");
    for (i, (a, r)) in gs.iter().zip(&g_ref).enumerate() {
        let e = rel(a, r);
        assert!(
            e <= tol,
            "{what}: gradient {i} relative error {e:.3e} > {tol:e}"
        );
    }
    // without history the forward gives the same bits
    let y_ng =
        brainsynth::autograd::no_grad(|| run(filtered_lrelu, c, &x, b.as_ref(), None, false).0);
    assert_eq!(
        y.to_vec_f64().unwrap(),
        y_ng.to_vec_f64().unwrap(),
        "{what}"
    );
}

fn random_taps(k: usize, seed: u64) -> Vec<f64> {
    // a positive-leaning low-pass-like shape plus noise, normalised to sum 1
    let r = rand_vals(k, seed);
    let v: Vec<f64> = (0..k)
        .map(|i| 1.0 + (i.min(k - 1 - i)) as f64 + 0.5 * r[i])
        .collect();
    let s: f64 = v.iter().sum();
    v.iter().map(|t| t / s).collect()
}

fn random_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let configs: [(usize, usize, usize, usize, Pad); 6] = [
        // (up, down, ku, kd, pad)
        (2, 2, 12, 12, (11, 10, 11, 10)),
        (1, 2, 6, 12, (5, 4, 3, 6)),
        (2, 1, 12, 6, (10, 11, 9, 12)),
        (4, 2, 24, 12, (20, 19, 21, 18)),
        (2, 4, 5, 9, (-2, 7, 3, -1)), // odd taps, crops
        (3, 2, 9, 4, (4, 4, 2, 6)),
    ];
    for (i, &(up, down, ku, kd, pad)) in configs.iter().enumerate() {
        for (j, clamp) in [None, Some(1.0)].into_iter().enumerate() {
            cases.push(Case {
                name: format!(
                    "random up {up} down {down} taps {ku}/{kd} pad {pad:?} clamp {clamp:?}"
                ),
                fu: Some(random_taps(ku, 10 + i as u64)),
                fd: Some(random_taps(kd, 20 + i as u64)),
                up,
                down,
                pad,
                clamp,
                flip: (i + j) % 2 == 1,
                shape: [2, 3, 7 + i, 9 + 2 * j],
                bias: (i + j) % 3 != 2,
            });
        }
    }
    // identity filters: the toRGB layer (elementwise) and a lone down filter
    cases.push(Case {
        name: "identity filters".into(),
        fu: None,
        fd: None,
        up: 1,
        down: 1,
        pad: (0, 0, 0, 0),
        clamp: Some(0.7),
        flip: false,
        shape: [2, 5, 5, 3],
        bias: true,
    });
    cases.push(Case {
        name: "no up filter".into(),
        fu: None,
        fd: Some(random_taps(8, 3)),
        up: 1,
        down: 2,
        pad: (3, 4, 4, 3),
        clamp: None,
        flip: false,
        shape: [1, 2, 11, 13],
        bias: true,
    });
    cases
}

#[test]
fn fused_matches_reference_on_random_filters() {
    for (k, c) in random_cases().iter().enumerate() {
        check_case(c, DType::F64, 1e-10, 100 + k as u64);
        check_case(c, DType::F32, 1e-5, 200 + k as u64);
    }
}

#[test]
fn fused_matches_reference_on_nvlabs_filters() {
    // the up/down filter pair of each StyleGAN3-T layer in the NVlabs fixture; NVlabs designs
    // 6 taps per resampling factor, so the factors are the lengths / 6
    let m = load("stylegan3.bin");
    let mut layers: Vec<String> = m
        .keys()
        .filter(|k| k.starts_with("G.") && k.ends_with("_filter"))
        .map(|k| {
            k.rsplit_once('.')
                .map(|(b, _)| b.to_string())
                .unwrap_or_default()
        })
        .collect();
    layers.sort();
    layers.dedup();
    let mut checked = 0;
    for (k, base) in layers.iter().enumerate() {
        let fu = m.get(&format!("{base}.up_filter")).map(|a| a.f64s());
        let fd = m.get(&format!("{base}.down_filter")).map(|a| a.f64s());
        let (ku, kd) = (
            fu.as_ref().map_or(1, Vec::len),
            fd.as_ref().map_or(1, Vec::len),
        );
        let (up, down) = ((ku / 6).max(1), (kd / 6).max(1));
        // NVlabs' padding for a layer whose output is `out` samples from `inp` (+2, 3×3 conv)
        let (inp, out) = (9 + k % 3, 8 + k % 4);
        let total = (out as isize - 1) * down as isize + 1 - (inp as isize + 2) * up as isize
            + ku as isize
            + kd as isize
            - 2;
        let lo = (total + up as isize).div_euclid(2);
        let hi = total - lo;
        let c = Case {
            name: format!("{base} up {up} down {down}"),
            fu,
            fd,
            up,
            down,
            pad: (lo, hi, lo, hi),
            clamp: if k % 2 == 0 {
                Some(256.0 / 200.0)
            } else {
                None
            },
            flip: false,
            shape: [2, 3, inp + 2, inp + 2],
            bias: true,
        };
        check_case(&c, DType::F64, 1e-10, 300 + k as u64);
        check_case(&c, DType::F32, 1e-5, 400 + k as u64);
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} fixture layers");
}

/// Under create_graph the fused op's gradient is the reference's, and differentiating it again
/// (here with respect to the output gradient) gives the reference's second derivative.
#[test]
fn recorded_gradient_matches_reference() {
    let c = &random_cases()[1];
    let dt = DType::F64;
    let x = rand(&c.shape, 5, 3.0, dt).variable();
    let b = rand(&[c.shape[1]], 6, 0.5, dt).variable();
    let (y, _) = run(filtered_lrelu_ref, c, &x, Some(&b), None, false);
    let g = rand(y.shape(), 7, 1.0, dt).variable();
    let v = rand(&c.shape, 8, 1.0, dt);
    let second = |op: Op| {
        let (_, gs) = run(op, c, &x, Some(&b), Some(&g), true);
        let s = gs[0].mul(&v).unwrap().sum_all().unwrap();
        let gg = grad(&[s], None, std::slice::from_ref(&g), false).unwrap();
        (gs, gg)
    };
    let (g_ref, gg_ref) = second(filtered_lrelu_ref);
    let (g_f, gg_f) = second(filtered_lrelu);
    for (a, r) in g_f.iter().zip(&g_ref) {
        assert!(rel(a, r) <= 1e-10);
    }
    assert!(rel(&gg_f[0], &gg_ref[0]) <= 1e-10);
}

#[test]
fn fused_is_deterministic_and_refuses_bad_input() {
    let c = &random_cases()[0];
    let x = rand(&[4, 8, 21, 19], 9, 3.0, DType::F32).variable();
    let b = rand(&[8], 10, 0.5, DType::F32).variable();
    let (y, _) = run(filtered_lrelu, c, &x, Some(&b), None, false);
    let g = rand(y.shape(), 11, 1.0, DType::F32);
    let (y1, g1) = run(filtered_lrelu, c, &x, Some(&b), Some(&g), false);
    let (y2, g2) = run(filtered_lrelu, c, &x, Some(&b), Some(&g), false);
    assert_eq!(y1.to_vec_f64().unwrap(), y2.to_vec_f64().unwrap());
    for (a, b) in g1.iter().zip(&g2) {
        assert_eq!(a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    }
    let fu = tensor(&random_taps(12, 1), &[12], DType::F32);
    let call = |x: &Tensor, b: Option<&Tensor>, up: usize, pad: Pad, clamp: Option<f64>| {
        filtered_lrelu(
            x,
            Some(&fu),
            Some(&fu),
            b,
            up,
            2,
            pad,
            1.0,
            0.2,
            clamp,
            false,
        )
    };
    let p = (11, 10, 11, 10);
    let bad_bias = rand(&[7], 1, 1.0, DType::F32);
    assert!(call(&x, Some(&bad_bias), 2, p, None).is_err());
    assert!(call(&x, Some(&b), 0, p, None).is_err());
    assert!(call(&x, Some(&b), 2, p, Some(-1.0)).is_err());
    assert!(call(&x, Some(&b), 2, (-30, -30, 0, 0), None).is_err());
    assert!(call(&x.reshape(&[4, 8, 399]).unwrap(), Some(&b), 2, p, None).is_err());
    let b64 = rand(&[8], 10, 0.5, DType::F64);
    assert!(call(&x, Some(&b64), 2, p, None).is_err());
}
