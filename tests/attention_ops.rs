//! Swin window attention and plain attention: PyTorch fixtures (official Swin code paths for the
//! relative-position index, shift mask, partition and attention with bias and mask, with
//! gradients), fused kernel vs a composite formula on both CPU kernel sets, finite-difference
//! checks, embeddings, and shape errors.

#[allow(dead_code)]
#[path = "common/fixtures.rs"]
mod fixtures;

use brainsynth::autograd::grad;
use brainsynth::backend::cpu;
use brainsynth::models::diffusion::qkv_attention::qkv_attention_legacy;
use brainsynth::ops::attention::{
    attention, relative_position_index, shifted_window_mask, window_attention, window_partition,
    window_reverse,
};
use brainsynth::ops::embedding::{embedding, relative_position_bias, timestep_embedding};
use brainsynth::testing::{check_grad, check_grad2, rand_tensor};
use brainsynth::{DType, Error, Result, Tensor};

fn t(a: &fixtures::Array) -> Tensor {
    Tensor::from_f64s(&a.f64s(), &a.shape, DType::F64).unwrap()
}

/// max |a − b| / (1 + |b|)
fn close(name: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.shape(), b.shape(), "{name}: shapes");
    let err = a
        .to_vec_f64()
        .unwrap()
        .iter()
        .zip(b.to_vec_f64().unwrap())
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max);
    assert!(err < tol, "{name}: error {err:.3e}");
}

fn ok1(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let r = check_grad(f, inputs, 1e-6).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(r.compared > 0, "{name}: nothing compared");
    assert!(r.max_err < 1e-6, "{name}: max error {:.3e}", r.max_err);
}

#[test]
fn swin_index_mask_and_partition_match_official_code() {
    let fx = fixtures::load("attention.bin");
    let idx: Vec<f64> = relative_position_index(4)
        .iter()
        .map(|&i| i as f64)
        .collect();
    assert_eq!(idx, fixtures::get(&fx, "rel_index").f64s());

    // H = W = 8, ws = 4, shift = 2: the official img_mask / slices algorithm
    let m = shifted_window_mask(8, 8, 4, 2, DType::F64).unwrap();
    assert_eq!(m.shape(), [4, 16, 16]);
    assert_eq!(m.to_vec_f64().unwrap(), fixtures::get(&fx, "mask").f64s());
    // no shift: nothing masked
    let m0 = shifted_window_mask(8, 8, 4, 0, DType::F32).unwrap();
    assert!(m0.to_vec_f64().unwrap().iter().all(|&v| v == 0.0));

    // cyclic shift (roll by −shift on H and W) then partition
    let img = t(fixtures::get(&fx, "img"));
    let shifted = img.roll(-2, 1).unwrap().roll(-2, 2).unwrap();
    let parts = window_partition(&shifted, 4).unwrap();
    close(
        "partition",
        &parts,
        &t(fixtures::get(&fx, "partitioned")),
        0.0 + 1e-12,
    );
    let back = window_reverse(&parts, 4, 8, 8).unwrap();
    close("reverse", &back, &shifted, 1e-12);
}

/// A window smaller than the table's reads each offset's own entry of the full table.
#[test]
fn relative_position_bias_of_a_smaller_window_reads_the_full_tables_offsets() {
    let (w, ws, heads) = (4usize, 2usize, 3usize);
    let side = 2 * w - 1;
    let table = rand_tensor(&[side * side, heads], 5);
    let tv = table.to_vec_f64().unwrap();
    let b = relative_position_bias(&table, ws).unwrap();
    assert_eq!(b.shape(), &[heads, ws * ws, ws * ws]);
    let bv = b.to_vec_f64().unwrap();
    let n = ws * ws;
    for h in 0..heads {
        for i in 0..n {
            for j in 0..n {
                let dy = (i / ws) as isize - (j / ws) as isize;
                let dx = (i % ws) as isize - (j % ws) as isize;
                let row = (dy + w as isize - 1) as usize * side + (dx + w as isize - 1) as usize;
                assert_eq!(
                    bv[(h * n + i) * n + j],
                    tv[row * heads + h],
                    "h {h} i {i} j {j}"
                );
            }
        }
    }
    // a window larger than the table's is an error
    let e = relative_position_bias(&table, w + 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("relative_position_bias") && e.contains("W ≥ 5"),
        "{e}"
    );
}

#[test]
fn window_attention_matches_pytorch_with_gradients() {
    let fx = fixtures::load("attention.bin");
    let get = |n: &str| t(fixtures::get(&fx, n)).variable();
    let (q, k, v, table) = (get("q"), get("k"), get("v"), get("table"));
    let mask = shifted_window_mask(8, 8, 4, 2, DType::F64).unwrap();
    let bias = relative_position_bias(&table, 4).unwrap();
    let out = window_attention(&q, &k, &v, &bias, Some(&mask), 0.5).unwrap();
    close("out", &out, &t(fixtures::get(&fx, "out")), 1e-5);
    let g = t(fixtures::get(&fx, "g"));
    let gs = grad(
        std::slice::from_ref(&out),
        Some(std::slice::from_ref(&g)),
        &[q, k, v, table],
        false,
    )
    .unwrap();
    for (name, gi) in ["gq", "gk", "gv", "gtable"].iter().zip(&gs) {
        close(name, gi, &t(fixtures::get(&fx, name)), 1e-5);
    }
}

/// The definition, with recorded primitive ops only.
fn composite(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Tensor {
    let (bw, h, n, _) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let nw = mask.shape()[0];
    let s = q
        .matmul(&k.transpose(-1, -2).unwrap())
        .unwrap()
        .affine(scale, 0.0)
        .unwrap()
        .add(bias)
        .unwrap()
        .reshape(&[bw / nw, nw, h, n, n])
        .unwrap()
        .add(&mask.reshape(&[nw, 1, n, n]).unwrap())
        .unwrap()
        .reshape(&[bw, h, n, n])
        .unwrap();
    s.softmax(-1).unwrap().matmul(v).unwrap()
}

#[test]
fn fused_kernel_matches_composite_on_both_cpu_kernel_sets() {
    let (q, k, v) = (
        rand_tensor(&[8, 3, 16, 5], 1),
        rand_tensor(&[8, 3, 16, 5], 2),
        rand_tensor(&[8, 3, 16, 5], 3),
    );
    let bias = rand_tensor(&[3, 16, 16], 4);
    let mask = shifted_window_mask(8, 8, 4, 2, DType::F64).unwrap();
    let want = composite(&q, &k, &v, &bias, &mask, 0.7);
    let fast = window_attention(&q, &k, &v, &bias, Some(&mask), 0.7).unwrap();
    close("fast", &fast, &want, 1e-12);
    let reference = cpu::with_reference(|| window_attention(&q, &k, &v, &bias, Some(&mask), 0.7));
    close("reference", &reference.unwrap(), &want, 1e-12);
    // f32 too
    let f =
        |x: &Tensor| Tensor::from_f64s(&x.to_vec_f64().unwrap(), x.shape(), DType::F32).unwrap();
    let o32 = window_attention(&f(&q), &f(&k), &f(&v), &f(&bias), Some(&f(&mask)), 0.7).unwrap();
    assert_eq!(o32.dtype(), DType::F32);
    close("f32", &o32, &want, 1e-5);
}

#[test]
fn plain_and_legacy_qkv_attention() {
    // attention over [B, T, d] with Tq != Tk and dv != d
    let q = rand_tensor(&[2, 3, 4], 10);
    let k = rand_tensor(&[2, 5, 4], 11);
    let v = rand_tensor(&[2, 5, 6], 12);
    let y = attention(&q, &k, &v, 0.5).unwrap();
    let want = q
        .matmul(&k.transpose(-1, -2).unwrap())
        .unwrap()
        .affine(0.5, 0.0)
        .unwrap()
        .softmax(-1)
        .unwrap()
        .matmul(&v)
        .unwrap();
    close("attention", &y, &want, 1e-12);

    // QKVAttentionLegacy: qkv [B, heads*3*C, T] → [B, heads*C, T]
    let (b, heads, c, tt) = (2, 2, 3, 5);
    let qkv = rand_tensor(&[b, heads * 3 * c, tt], 13);
    let y = qkv_attention_legacy(&qkv, heads).unwrap();
    assert_eq!(y.shape(), [b, heads * c, tt]);
    let v = qkv.to_vec_f64().unwrap();
    let yv = y.to_vec_f64().unwrap();
    let scale = 1.0 / (c as f64).sqrt();
    for bh in 0..b * heads {
        let at = |part: usize, ch: usize, ti: usize| v[(bh * 3 * c + part * c + ch) * tt + ti];
        for ti in 0..tt {
            let w: Vec<f64> = (0..tt)
                .map(|s| (0..c).map(|ch| at(0, ch, ti) * at(1, ch, s)).sum::<f64>() * scale)
                .collect();
            let mx = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = w.iter().map(|x| (x - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            for ch in 0..c {
                let want: f64 = (0..tt).map(|s| e[s] / z * at(2, ch, s)).sum();
                let got = yv[(bh * c + ch) * tt + ti];
                assert!(
                    (got - want).abs() < 1e-12,
                    "legacy attention ({bh},{ch},{ti})"
                );
            }
        }
    }
}

#[test]
fn first_order_gradients() {
    // B = 1, H = W = 4, ws = 2, shift 1: 4 windows of 4 positions, 2 heads of width 3
    let mask = shifted_window_mask(4, 4, 2, 1, DType::F64).unwrap();
    let sh = [4, 2, 4, 3];
    ok1(
        "window_attention",
        |x| {
            let bias = relative_position_bias(&x[3], 2)?;
            window_attention(&x[0], &x[1], &x[2], &bias, Some(&mask), 0.6)
        },
        &[
            rand_tensor(&sh, 20),
            rand_tensor(&sh, 21),
            rand_tensor(&sh, 22),
            rand_tensor(&[9, 2], 23),
        ],
    );
    ok1(
        "attention",
        |x| attention(&x[0], &x[1], &x[2], 0.8),
        &[
            rand_tensor(&[2, 3, 2], 24),
            rand_tensor(&[2, 4, 2], 25),
            rand_tensor(&[2, 4, 3], 26),
        ],
    );
    ok1(
        "qkv_attention_legacy",
        |x| qkv_attention_legacy(&x[0], 2),
        &[rand_tensor(&[1, 12, 3], 27)],
    );
    ok1(
        "window_partition",
        |x| window_partition(&x[0], 2),
        &[rand_tensor(&[1, 4, 4, 2], 28)],
    );
    ok1(
        "window_reverse",
        |x| window_reverse(&x[0], 2, 4, 2),
        &[rand_tensor(&[2, 4, 3], 29)],
    );
    ok1(
        "embedding",
        |x| embedding(&x[0], &[2, 0, 2]),
        &[rand_tensor(&[4, 3], 30)],
    );
    ok1(
        "timestep_embedding",
        |x| timestep_embedding(&x[0], 7, 10000.0),
        &[rand_tensor(&[3], 31).affine(5.0, 5.0).unwrap()],
    );
}

#[test]
fn attention_backward_differentiates_again() {
    let r = check_grad2(
        |x| attention(&x[0], &x[1], &x[2], 0.9),
        &[
            rand_tensor(&[1, 3, 2], 40),
            rand_tensor(&[1, 3, 2], 41),
            rand_tensor(&[1, 3, 2], 42),
        ],
        1e-5,
    )
    .unwrap();
    assert!(r.max_err < 1e-5, "second order {:.3e}", r.max_err);
}

#[test]
fn embeddings_values() {
    // bias[h, i, j] = table[index[i, j], h]
    let table = rand_tensor(&[9, 2], 50);
    let b = relative_position_bias(&table, 2).unwrap();
    assert_eq!(b.shape(), [2, 4, 4]);
    let (tv, bv) = (table.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    let idx = relative_position_index(2);
    for h in 0..2 {
        for p in 0..16 {
            assert_eq!(bv[h * 16 + p], tv[idx[p] * 2 + h]);
        }
    }
    // diagonal pairs all use the centre entry of the table
    assert!((0..4).all(|i| idx[i * 4 + i] == 4));

    // guided-diffusion timestep embedding for t = 0 and t = 1, dim 4
    let e = timestep_embedding(
        &Tensor::from_f64s(&[0.0, 1.0], &[2], DType::F64).unwrap(),
        4,
        10000.0,
    )
    .unwrap()
    .to_vec_f64()
    .unwrap();
    let f1 = (-(10000f64).ln() / 2.0).exp(); // 0.01
    let want = [
        1.0,
        1.0,
        0.0,
        0.0,
        1f64.cos(),
        f1.cos(),
        1f64.sin(),
        f1.sin(),
    ];
    for (a, b) in e.iter().zip(want) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn timestep_embedding_odd_dim_and_stylegan_alias() {
    let tt = Tensor::from_f64s(&[0.0, 1.0, 3.5], &[3], DType::F64).unwrap();
    // half = 2, freqs = [1, 10000^(−1/2) = 0.01]; cos first, then sin
    let e = timestep_embedding(&tt, 4, 10000.0)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let want = [3.5f64.cos(), 0.035f64.cos(), 3.5f64.sin(), 0.035f64.sin()];
    for (a, b) in e[8..].iter().zip(want) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }
    // odd dim: the same four columns, then a zero column
    let e5 = timestep_embedding(&tt, 5, 10000.0).unwrap();
    assert_eq!(e5.shape(), &[3, 5]);
    let v5 = e5.to_vec_f64().unwrap();
    for r in 0..3 {
        assert_eq!(&v5[r * 5..r * 5 + 4], &e[r * 4..r * 4 + 4]);
        assert_eq!(v5[r * 5 + 4], 0.0);
    }
    // the StyleGAN module re-exports this very function
    let alias = brainsynth::ops::stylegan::sinusoidal_embedding(&tt, 5, 10000.0).unwrap();
    assert_eq!(alias.to_vec_f64().unwrap(), v5);
    let r = check_grad(
        |v| timestep_embedding(&v[0], 6, 100.0),
        std::slice::from_ref(&tt),
        1e-6,
    )
    .unwrap();
    assert!(r.compared == 3 && r.max_err < 1e-6, "{:.3e}", r.max_err);
    for (dim, period) in [(1, 1e4), (0, 1e4), (4, 0.0), (4, f64::NAN)] {
        let e = timestep_embedding(&tt, dim, period).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Invalid {
                    op: "timestep_embedding",
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn shape_errors_name_the_op() {
    let expect = |r: Result<Tensor>, op: &str| match r {
        Err(e @ (Error::Shape { .. } | Error::Invalid { .. })) => {
            assert!(e.to_string().starts_with(op), "{e}")
        }
        other => panic!("{op}: expected an error, got {other:?}"),
    };
    let q = rand_tensor(&[4, 2, 4, 3], 1);
    let bias = rand_tensor(&[2, 4, 4], 2);
    expect(
        window_attention(&q, &rand_tensor(&[4, 2, 4, 2], 1), &q, &bias, None, 1.0),
        "window_attention",
    );
    expect(
        window_attention(&q, &q, &q, &rand_tensor(&[3, 4, 4], 1), None, 1.0),
        "window_attention",
    );
    expect(
        window_attention(&q, &q, &q, &bias, Some(&rand_tensor(&[3, 4, 4], 1)), 1.0),
        "window_attention",
    );
    expect(
        attention(&q, &q, &rand_tensor(&[4, 2, 5, 3], 1), 1.0),
        "attention",
    );
    expect(
        qkv_attention_legacy(&rand_tensor(&[1, 10, 3], 1), 2),
        "qkv_attention_legacy",
    );
    expect(
        window_partition(&rand_tensor(&[1, 5, 4, 2], 1), 2),
        "window_partition",
    );
    expect(
        window_reverse(&rand_tensor(&[3, 4, 2], 1), 2, 4, 4),
        "window_reverse",
    );
    expect(
        shifted_window_mask(8, 8, 4, 4, DType::F32),
        "shifted_window_mask",
    );
    expect(
        relative_position_bias(&rand_tensor(&[8, 2], 1), 2),
        "relative_position_bias",
    );
    expect(embedding(&rand_tensor(&[3, 2], 1), &[3]), "embedding");
    expect(
        timestep_embedding(&rand_tensor(&[2, 1], 1), 4, 1e4),
        "timestep_embedding",
    );
}
