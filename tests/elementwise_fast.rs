//! The fast paths of broadcasting binary ops, reductions and strided copies against plain
//! per-element loops written here, on random shapes (including size-1 and broadcast dimensions).

use brainsynth::ops::elementwise::Binary;
use brainsynth::testing::rand_tensor;
use brainsynth::{DType, Tensor};
use proptest::prelude::*;

/// Row-major multi-index of flat index `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// A shape and a second shape broadcastable against it (some dims set to 1, maybe fewer dims).
fn shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, bool)> {
    prop::collection::vec(1usize..6, 1..5).prop_flat_map(|a| {
        let r = a.len();
        (
            Just(a),
            prop::collection::vec(any::<bool>(), r),
            0..r,
            any::<bool>(),
        )
            .prop_map(|(a, ones, drop, swap)| {
                let b: Vec<usize> = a
                    .iter()
                    .zip(&ones)
                    .map(|(&d, &one)| if one { 1 } else { d })
                    .skip(drop)
                    .collect();
                (a, b, swap)
            })
    })
}

fn naive_binary(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize], op: Binary) -> Vec<f64> {
    let rank = sa.len().max(sb.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(sa), pad(sb));
    let out: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
    let n: usize = out.iter().product();
    (0..n)
        .map(|i| {
            let idx = unravel(i, &out);
            let ia: Vec<usize> = idx.iter().zip(&pa).map(|(&k, &d)| k % d).collect();
            let ib: Vec<usize> = idx.iter().zip(&pb).map(|(&k, &d)| k % d).collect();
            let (p, q) = (a[ravel(&ia, &pa)], b[ravel(&ib, &pb)]);
            match op {
                Binary::Add => p + q,
                Binary::Sub => p - q,
                Binary::Mul => p * q,
                Binary::Div => p / q,
                Binary::Max => p.max(q),
                Binary::Min => p.min(q),
                Binary::GeMask => f64::from(u8::from(p >= q)),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn broadcasting_binary_matches_per_element((sa, sb, swap) in shapes(), seed in 0u64..1000) {
        let (sa, sb) = if swap { (sb, sa) } else { (sa, sb) };
        let a = rand_tensor(&sa, seed);
        let b = rand_tensor(&sb, seed + 1).affine(1.0, 3.0).unwrap(); // away from 0 for div
        for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min,
                   Binary::GeMask] {
            let got = a.binary(&b, op).unwrap().to_vec_f64().unwrap();
            let want = naive_binary(&a.to_vec_f64().unwrap(), &sa, &b.to_vec_f64().unwrap(), &sb, op);
            prop_assert_eq!(got, want, "{:?} {:?} {:?}", op, sa, sb);
        }
    }

    #[test]
    fn sum_and_max_over_any_axes_match_per_element(
        shape in prop::collection::vec(1usize..6, 1..5),
        mask in prop::collection::vec(any::<bool>(), 4),
        seed in 0u64..1000,
    ) {
        let x = rand_tensor(&shape, seed);
        let xv = x.to_vec_f64().unwrap();
        let axes: Vec<isize> = (0..shape.len()).filter(|&d| mask[d]).map(|d| d as isize).collect();
        let keep: Vec<usize> = shape.iter().enumerate()
            .map(|(d, &n)| if mask[d] { 1 } else { n }).collect();
        let m: usize = keep.iter().product();
        let (mut sum, mut max) = (vec![0.0; m], vec![f64::NEG_INFINITY; m]);
        for (i, &v) in xv.iter().enumerate() {
            let idx: Vec<usize> = unravel(i, &shape).iter().zip(&keep).map(|(&k, &d)| k % d).collect();
            let o = ravel(&idx, &keep);
            sum[o] += v;
            max[o] = max[o].max(v);
        }
        let got = x.sum_axes(&axes, true).unwrap();
        prop_assert_eq!(got.shape(), &keep[..]);
        for (g, w) in got.to_vec_f64().unwrap().iter().zip(&sum) {
            prop_assert!((g - w).abs() < 1e-12, "{} vs {}", g, w);
        }
        prop_assert_eq!(x.max_axes(&axes, true).unwrap().to_vec_f64().unwrap(), max);
    }

    #[test]
    fn strided_views_copy_to_the_same_values(
        shape in prop::collection::vec(1usize..6, 2..5),
        seed in 0u64..1000,
        start in 0usize..3,
    ) {
        let x = rand_tensor(&shape, seed);
        let r = shape.len();
        // a transpose of the last two dims, then a narrow of the (new) first dim
        let t = x.transpose(r as isize - 2, r as isize - 1).unwrap();
        let d0 = t.shape()[0];
        let s0 = start.min(d0 - 1);
        let v = t.narrow(0, s0, d0 - s0).unwrap();
        let got = v.contiguous().unwrap().to_vec_f64().unwrap();
        let xv = x.to_vec_f64().unwrap();
        let vs = v.shape().to_vec();
        let want: Vec<f64> = (0..got.len()).map(|i| {
            let mut idx = unravel(i, &vs);
            idx[0] += s0;
            idx.swap(r - 2, r - 1);
            xv[ravel(&idx, &shape)]
        }).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn large_broadcasts_split_over_threads_match_per_element() {
    // big enough for the threaded paths: a bias [1, C, 1, 1] and a row vector [C] broadcast
    let f32s = |shape: &[usize], seed| {
        let v = rand_tensor(shape, seed).to_vec_f64().unwrap();
        Tensor::from_f64s(&v, shape, DType::F32).unwrap()
    };
    let x = f32s(&[4, 16, 32, 32], 1);
    let bias = f32s(&[1, 16, 1, 1], 2);
    let got = x.add(&bias).unwrap().to_vec_f32().unwrap();
    let (xv, bv) = (x.to_vec_f32().unwrap(), bias.to_vec_f32().unwrap());
    for (i, &g) in got.iter().enumerate() {
        assert_eq!(g, xv[i] + bv[(i / 1024) % 16]);
    }
    // StyleGAN's per-sample weights: w [1, O, I, 9] · s [N, O, I, 1], rows of 9 whose starts
    // step over two outer dimensions, threads starting mid-way
    let w = f32s(&[1, 24, 20, 9], 3);
    let st = f32s(&[16, 24, 20, 1], 4);
    let got = w.mul(&st).unwrap().to_vec_f32().unwrap();
    let (wv, sv) = (w.to_vec_f32().unwrap(), st.to_vec_f32().unwrap());
    assert_eq!(got.len(), 16 * 24 * 20 * 9);
    for (i, &g) in got.iter().enumerate() {
        assert_eq!(g, wv[i % (24 * 20 * 9)] * sv[i / 9]);
    }
    let s = x.sum_axes(&[0, 2, 3], false).unwrap().to_vec_f64().unwrap();
    for (c, &v) in s.iter().enumerate() {
        let want: f64 = (0..4)
            .flat_map(|n| (0..1024).map(move |p| (n * 16 + c) * 1024 + p))
            .map(|i| xv[i] as f64)
            .sum();
        assert!(
            (v - want).abs() < 1e-3 * want.abs().max(1.0),
            "{v} vs {want}"
        );
    }
    let y: Tensor = x.reshape(&[4 * 16, 1024]).unwrap();
    let m = y.max_axes(&[1], false).unwrap().to_vec_f32().unwrap();
    for (r, &v) in m.iter().enumerate() {
        let want = xv[r * 1024..(r + 1) * 1024]
            .iter()
            .cloned()
            .fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(v, want);
    }
}
