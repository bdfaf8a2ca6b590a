//! The register-tiled CPU attention kernels (`backend::cpu::attention`) on the shapes the models
//! use, fresh random inputs each run (the seed is printed; BRAINSYNTH_SEED repeats one): Swin
//! windows of 64 tokens × 32 features with a shift mask against the f64 loops of
//! `fused_reference`, forward and fused backward, in f64 and f32; guided-diffusion's legacy QKV
//! attention read straight from qkv (feature-major views, odd sizes that take every tile edge)
//! against the generic path on the reference kernels, forward, fused backward and the recorded
//! backward under `create_graph`; and the same bits from two runs.

use std::time::{SystemTime, UNIX_EPOCH};

use brainsynth::autograd::grad;
use brainsynth::backend::cpu::fused_reference::{self as fref, WaDims};
use brainsynth::backend::cpu::{self, CpuKernels};
use brainsynth::models::diffusion::qkv_attention::qkv_attention_legacy;
use brainsynth::ops::attention::{shifted_window_mask, window_attention};
use brainsynth::testing::rand_tensor;
use brainsynth::{DType, Tensor};

fn seed(test: &str) -> u64 {
    let s = std::env::var("BRAINSYNTH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 % 1_000_000_007)
                .unwrap_or(1)
        });
    println!("{test}: seed {s}");
    s
}

fn cast(t: &Tensor, dtype: DType) -> Tensor {
    Tensor::from_f64s(&t.to_vec_f64().unwrap(), t.shape(), dtype).unwrap()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
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

#[test]
fn window_attention_at_swin_shapes_matches_f64_loops() {
    let s0 = seed("window_attention_at_swin_shapes");
    // 4 windows of 8×8 (a shifted 16×16 image) × 2 images, 3 heads of width 32
    let (b, heads, ws, dim) = (8, 3, 8, 32);
    let n = ws * ws;
    let sh = [b, heads, n, dim];
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 2e-5)] {
        let q = cast(&rand_tensor(&sh, s0), dtype);
        let k = cast(&rand_tensor(&sh, s0 + 1), dtype);
        let v = cast(&rand_tensor(&sh, s0 + 2), dtype);
        let bias = cast(&rand_tensor(&[heads, n, n], s0 + 3), dtype);
        let dy = cast(&rand_tensor(&sh, s0 + 4), dtype);
        let mask = shifted_window_mask(2 * ws, 2 * ws, ws, ws / 2, dtype).unwrap();
        let d = WaDims {
            b,
            heads,
            n,
            dim,
            nw: 4,
        };
        let scale = (dim as f64).powf(-0.5);
        let m = f64s(&mask);
        let (o_ref, _) = fref::window_attention(
            &f64s(&q),
            &f64s(&k),
            &f64s(&v),
            Some(&f64s(&bias)),
            Some(&m),
            d,
            scale,
        );
        let (dq, dk, dv, db) = fref::window_attention_backward(
            &f64s(&dy),
            &f64s(&q),
            &f64s(&k),
            &f64s(&v),
            Some(&f64s(&bias)),
            Some(&m),
            d,
            scale,
        );
        let vars = [q.variable(), k.variable(), v.variable(), bias.variable()];
        let run = || {
            cpu::with_kernels(CpuKernels::Fast, || {
                let y =
                    window_attention(&vars[0], &vars[1], &vars[2], &vars[3], Some(&mask), scale)
                        .unwrap();
                let g = grad(
                    std::slice::from_ref(&y),
                    Some(std::slice::from_ref(&dy)),
                    &vars,
                    false,
                )
                .unwrap();
                let mut all = vec![f64s(&y)];
                all.extend(g.iter().map(f64s));
                all
            })
        };
        let got = run();
        for (i, want) in [o_ref, dq, dk, dv, db].iter().enumerate() {
            let e = rel_err(&got[i], want);
            assert!(
                e < tol,
                "{dtype:?} output {i} (0 = y, then dq, dk, dv, dbias): {e:.3e}"
            );
        }
        assert_eq!(got, run(), "{dtype:?}: two runs differ");
    }
}

/// y and d(qkv) of the legacy attention for output gradient `dy`.
fn legacy(qkv: &Tensor, heads: usize, dy: &Tensor, create_graph: bool) -> Vec<Vec<f64>> {
    let x = qkv.variable();
    let y = qkv_attention_legacy(&x, heads).unwrap();
    let g = grad(
        std::slice::from_ref(&y),
        Some(std::slice::from_ref(dy)),
        std::slice::from_ref(&x),
        create_graph,
    )
    .unwrap();
    vec![f64s(&y), f64s(&g[0])]
}

#[test]
fn legacy_qkv_attention_matches_generic_path() {
    let s0 = seed("legacy_qkv_attention");
    // (batch, heads, C, T): the diffusion U-Net's 8×8 attention of width 32 with 3 heads of 24,
    // and odd sizes that leave every row and column tile edge
    for (bs, heads, c, t) in [(2, 3, 24, 64), (3, 2, 5, 13), (1, 1, 40, 9)] {
        let qkv = rand_tensor(&[bs, heads * 3 * c, t], s0 + t as u64);
        let dy = rand_tensor(&[bs, heads * c, t], s0 + 100 + t as u64);
        let want = cpu::with_reference(|| legacy(&qkv, heads, &dy, false));
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 2e-5)] {
            let (q, g) = (cast(&qkv, dtype), cast(&dy, dtype));
            let fast = cpu::with_kernels(CpuKernels::Fast, || legacy(&q, heads, &g, false));
            let recorded = cpu::with_kernels(CpuKernels::Fast, || legacy(&q, heads, &g, true));
            for i in 0..2 {
                let e = rel_err(&fast[i], &want[i]);
                assert!(
                    e < tol,
                    "{:?} {dtype:?} fused {i}: {e:.3e}",
                    (bs, heads, c, t)
                );
                let e = rel_err(&recorded[i], &want[i]);
                assert!(
                    e < tol,
                    "{:?} {dtype:?} recorded {i}: {e:.3e}",
                    (bs, heads, c, t)
                );
            }
            let again = cpu::with_kernels(CpuKernels::Fast, || legacy(&q, heads, &g, false));
            assert_eq!(fast, again, "{dtype:?}: two runs differ");
        }
    }
}
