//! The fused CPU backward of window attention (used when the gradient is not differentiated
//! again) against the plain f64 loops of `fused_reference::window_attention_backward` and
//! against the recorded composite rule (`create_graph`), in f64 and f32, on both CPU kernel
//! sets, with inputs big enough to be split over threads; plain attention with Tq ≠ Tk and
//! d ≠ dv; finite differences of first order through the fused path, and second order (which
//! takes the composite path) with bias and mask.

use brainsynth::autograd::grad;
use brainsynth::backend::cpu::fused_reference::{self as fref, WaDims};
use brainsynth::backend::cpu::{self, CpuKernels};
use brainsynth::ops::attention::{attention, shifted_window_mask, window_attention};
use brainsynth::testing::{check_grad, check_grad2, rand_tensor};
use brainsynth::{DType, Tensor};

fn cast(t: &Tensor, dtype: DType) -> Tensor {
    Tensor::from_f64s(&t.to_vec_f64().unwrap(), t.shape(), dtype).unwrap()
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

/// Gradients of q, k, v, bias for output gradient `dy`, fused (create_graph false) or composite.
fn grads(vars: &[Tensor], mask: Option<&Tensor>, dy: &Tensor, create_graph: bool) -> Vec<Vec<f64>> {
    let y = window_attention(&vars[0], &vars[1], &vars[2], &vars[3], mask, 0.37).unwrap();
    grad(&[y], Some(std::slice::from_ref(dy)), vars, create_graph)
        .unwrap()
        .iter()
        .map(|g| g.to_vec_f64().unwrap())
        .collect()
}

fn check(b: usize, heads: usize, ws: usize, dim: usize, masked: bool, dtype: DType, tol: f64) {
    let n = ws * ws;
    let sh = [b, heads, n, dim];
    let seed = (b * 1000 + heads * 100 + n + dim) as u64;
    let q = cast(&rand_tensor(&sh, seed), dtype);
    let k = cast(&rand_tensor(&sh, seed + 1), dtype);
    let v = cast(&rand_tensor(&sh, seed + 2), dtype);
    let bias = cast(&rand_tensor(&[heads, n, n], seed + 3), dtype);
    let dy = cast(&rand_tensor(&sh, seed + 4), dtype);
    // a real Swin shift mask over a (2·ws)² image: 4 windows (b must be a multiple)
    let mask = masked.then(|| shifted_window_mask(2 * ws, 2 * ws, ws, ws / 2, dtype).unwrap());
    let nw = if masked { 4 } else { 1 };
    let f64s = |t: &Tensor| t.to_vec_f64().unwrap();
    let d = WaDims {
        b,
        heads,
        n,
        dim,
        nw,
    };
    let m = mask.as_ref().map(f64s);
    let (dq, dk, dv, db) = fref::window_attention_backward(
        &f64s(&dy),
        &f64s(&q),
        &f64s(&k),
        &f64s(&v),
        Some(&f64s(&bias)),
        m.as_deref(),
        d,
        0.37,
    );
    let vars = [q.variable(), k.variable(), v.variable(), bias.variable()];
    let name = format!("{sh:?} masked {masked} {dtype:?}");
    for kernels in [CpuKernels::Fast, CpuKernels::Reference] {
        let (fused, composite) = cpu::with_kernels(kernels, || {
            (
                grads(&vars, mask.as_ref(), &dy, false),
                grads(&vars, mask.as_ref(), &dy, true),
            )
        });
        for (i, want) in [dq.clone(), dk.clone(), dv.clone(), db.clone()]
            .iter()
            .enumerate()
        {
            let e = rel_err(&fused[i], want);
            assert!(
                e < tol,
                "{name} {kernels:?}: fused gradient {i} error {e:.3e}"
            );
            let e = rel_err(&composite[i], want);
            assert!(
                e < tol,
                "{name} {kernels:?}: composite gradient {i} error {e:.3e}"
            );
        }
    }
}

#[test]
fn fused_window_attention_backward_matches_reference_and_composite() {
    // 16 windows · 3 heads · 49² scores: split over threads; and a small unmasked case
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 2e-5)] {
        check(16, 3, 7, 8, true, dtype, tol);
        check(2, 2, 2, 3, false, dtype, tol);
    }
}

#[test]
fn fused_plain_attention_backward_matches_composite() {
    // Tq = 5, Tk = 7, d = 3, dv = 4, no bias or mask
    let vars = [
        rand_tensor(&[2, 3, 5, 3], 1).variable(),
        rand_tensor(&[2, 3, 7, 3], 2).variable(),
        rand_tensor(&[2, 3, 7, 4], 3).variable(),
    ];
    let dy = rand_tensor(&[2, 3, 5, 4], 4);
    let run = |cg: bool| {
        let y = attention(&vars[0], &vars[1], &vars[2], 0.8).unwrap();
        grad(&[y], Some(std::slice::from_ref(&dy)), &vars, cg).unwrap()
    };
    let (fused, composite) = (run(false), run(true));
    for i in 0..3 {
        let e = rel_err(
            &fused[i].to_vec_f64().unwrap(),
            &composite[i].to_vec_f64().unwrap(),
        );
        assert!(e < 1e-12, "gradient {i}: {e:.3e}");
    }
}

#[test]
fn window_attention_finite_differences_first_and_second_order() {
    // 4 windows of 2×2 from a 4×4 image shifted by 1, 2 heads of width 3
    let mask = shifted_window_mask(4, 4, 2, 1, DType::F64).unwrap();
    let f = |x: &[Tensor]| window_attention(&x[0], &x[1], &x[2], &x[3], Some(&mask), 0.6);
    let sh = [4, 2, 4, 3];
    let inputs = [
        rand_tensor(&sh, 20),
        rand_tensor(&sh, 21),
        rand_tensor(&sh, 22),
        rand_tensor(&[2, 4, 4], 23),
    ];
    let r = check_grad(f, &inputs, 1e-6).unwrap();
    assert!(
        r.compared > 0 && r.max_err < 1e-6,
        "first order {:.3e}",
        r.max_err
    );
    let r = check_grad2(f, &inputs, 1e-5).unwrap();
    assert!(
        r.compared > 0 && r.max_err < 1e-5,
        "second order {:.3e}",
        r.max_err
    );
}
