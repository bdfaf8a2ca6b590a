//! The fast CPU norm kernels (forward, and the fused first-order backward that runs when no
//! `create_graph` is asked) against the plain f64 loops of `fused_reference`, on fresh random
//! inputs in f64 and f32: rows longer than one summation block, inputs big enough to be split
//! over threads, a large mean offset (the one-pass variance must not cancel), group / instance /
//! layer norm, with and without SiLU. The composite (create_graph) backward is compared too.

use brainsynth::autograd::grad;
use brainsynth::backend::cpu::fused_reference::{self as fref, GnDims};
use brainsynth::ops::norm::{group_norm, group_norm_silu, instance_norm, layer_norm};
use brainsynth::testing::rand_tensor;
use brainsynth::{DType, Result, Tensor};

/// Which op to run on x [n, c, ...] (layer norm normalises over the trailing [c] of x [n, c]).
#[derive(Clone, Copy, Debug)]
enum Op {
    Group(usize),
    GroupSilu(usize),
    Instance,
    Layer,
}

fn run(op: Op, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    match op {
        Op::Group(g) => group_norm(x, g, Some(w), Some(b), 1e-5),
        Op::GroupSilu(g) => group_norm_silu(x, g, Some(w), Some(b), 1e-5),
        Op::Instance => instance_norm(x, Some(w), Some(b), 1e-5),
        Op::Layer => layer_norm(x, &[x.shape()[1]], Some(w), Some(b), 1e-5),
    }
}

fn dims(op: Op, shape: &[usize]) -> GnDims {
    let (n, c) = (shape[0], shape[1]);
    let hw: usize = shape[2..].iter().product();
    match op {
        Op::Group(g) | Op::GroupSilu(g) => GnDims {
            n,
            c,
            hw,
            groups: g,
        },
        Op::Instance => GnDims {
            n,
            c,
            hw,
            groups: c,
        },
        Op::Layer => GnDims {
            n,
            c,
            hw: 1,
            groups: 1,
        },
    }
}

trait Cast {
    fn cast(&self, dtype: DType) -> Tensor;
}
impl Cast for Tensor {
    fn cast(&self, dtype: DType) -> Tensor {
        Tensor::from_f64s(&self.to_vec_f64().unwrap(), self.shape(), dtype).unwrap()
    }
}

/// max |a − b| / (1 + max |b|)
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = 1.0 + b.iter().fold(0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale
}

fn check(op: Op, shape: &[usize], offset: f64, dtype: DType, tol: f64, seed: u64) {
    let c = shape[1];
    let x = rand_tensor(shape, seed)
        .affine(2.0, offset)
        .unwrap()
        .cast(dtype);
    let w = rand_tensor(&[c], seed + 1)
        .add_scalar(1.0)
        .unwrap()
        .cast(dtype);
    let b = rand_tensor(&[c], seed + 2).cast(dtype);
    let dy = rand_tensor(shape, seed + 3).cast(dtype);
    let (xv, wv, bv, dyv) = (
        x.to_vec_f64().unwrap(),
        w.to_vec_f64().unwrap(),
        b.to_vec_f64().unwrap(),
        dy.to_vec_f64().unwrap(),
    );
    let d = dims(op, shape);
    let silu = matches!(op, Op::GroupSilu(_));
    let (y_ref, mean, rstd) = fref::group_norm(&xv, &wv, &bv, d, 1e-5, silu);
    let (dx_ref, dw_ref, db_ref) =
        fref::group_norm_backward(&dyv, &xv, &wv, &bv, &mean, &rstd, d, silu);

    let vars = [x.variable(), w.variable(), b.variable()];
    let y = run(op, &vars[0], &vars[1], &vars[2]).unwrap();
    let name = format!("{op:?} {shape:?} offset {offset} {dtype:?}");
    let e = rel_err(&y.to_vec_f64().unwrap(), &y_ref);
    assert!(e < tol, "{name}: forward error {e:.3e}");
    for create_graph in [false, true] {
        let g = grad(
            std::slice::from_ref(&y),
            Some(std::slice::from_ref(&dy)),
            &vars,
            create_graph,
        )
        .unwrap();
        for (what, got, want) in [
            ("dx", &g[0], &dx_ref),
            ("dw", &g[1], &dw_ref),
            ("db", &g[2], &db_ref),
        ] {
            let e = rel_err(&got.to_vec_f64().unwrap(), want);
            assert!(
                e < tol,
                "{name} create_graph {create_graph}: {what} error {e:.3e}"
            );
        }
    }
}

const CASES: [(Op, &[usize]); 7] = [
    // rows of 2·41·43 values (several summation blocks), 42k values (split over threads)
    (Op::Group(3), &[2, 6, 41, 43]),
    (Op::GroupSilu(2), &[3, 4, 29, 31]),
    (Op::Instance, &[2, 5, 67, 61]),
    (Op::Instance, &[3, 2, 5, 3]),
    (Op::Layer, &[700, 53]),
    (Op::Layer, &[5, 7]),
    (Op::GroupSilu(1), &[2, 3, 7]),
];

#[test]
fn fast_norm_kernels_match_the_f64_reference_in_f64() {
    for (i, (op, shape)) in CASES.into_iter().enumerate() {
        for offset in [0.0, 300.0] {
            check(op, shape, offset, DType::F64, 1e-9, 10 * i as u64);
        }
    }
}

#[test]
fn fast_norm_kernels_match_the_f64_reference_in_f32() {
    // f32 inputs are rounded before the reference sees them; what is left is f32 arithmetic
    // (the offset of 300 costs ~2 digits of x − mean)
    for (i, (op, shape)) in CASES.into_iter().enumerate() {
        for (offset, tol) in [(0.0, 2e-5), (300.0, 2e-3)] {
            check(op, shape, offset, DType::F32, tol, 100 + 10 * i as u64);
        }
    }
}
