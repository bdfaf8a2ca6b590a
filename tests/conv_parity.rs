//! Fast conv kernels (tiled im2col + GEMM, flipped backward-data, col2im) against the reference
//! loops, over random geometries (proptest) and over fixed shapes that reach each code path:
//! tiles cut mid-row, blocks of whole samples, pointwise convs, stride > 1, padding past the
//! kernel's reach, thin inputs. The kernels are called directly, so no process-wide switch is involved.
//!
//! Tolerance: ‖fast − ref‖ / ‖ref‖ below 1e-5 in f32 and 1e-12 in f64.

use brainsynth::ops::Conv2dParams;
use brainsynth::ops::conv::conv_geom;
use brainsynth::ops::conv::fast as fast_conv;
use brainsynth::ops::conv::reference::{self, ConvGeom};
use brainsynth::tensor::StorageElem;
use brainsynth::testing::rand_vals;
use proptest::prelude::*;

fn rel_err<T: StorageElem>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_f64(), y.to_f64());
        num += (x - y) * (x - y);
        den += y * y;
    }
    (num / den.max(1e-300)).sqrt()
}

fn vals<T: StorageElem>(n: usize, seed: u64) -> Vec<T> {
    rand_vals(n, seed).into_iter().map(T::from_f64).collect()
}

/// Worst relative error of the three fast kernels against the reference on one geometry.
fn worst<T: StorageElem>(g: &ConvGeom, seed: u64) -> f64 {
    let x = vals::<T>(g.n * g.cin * g.h * g.w, seed);
    let w = vals::<T>(g.cout * (g.cin / g.groups) * g.kh * g.kw, seed + 1);
    let dy = vals::<T>(g.n * g.cout * g.oh * g.ow, seed + 2);
    [
        rel_err(&fast_conv::conv2d(&x, &w, g), &reference::conv2d(&x, &w, g)),
        rel_err(
            &fast_conv::conv2d_backward_data(&dy, &w, g),
            &reference::conv2d_backward_data(&dy, &w, g),
        ),
        rel_err(
            &fast_conv::conv2d_backward_weight(&x, &dy, g),
            &reference::conv2d_backward_weight(&x, &dy, g),
        ),
    ]
    .into_iter()
    .fold(0.0, f64::max)
}

fn check(g: &ConvGeom, seed: u64) {
    let e32 = worst::<f32>(g, seed);
    assert!(e32 < 1e-5, "f32 {g:?}: relative error {e32:e}");
    let e64 = worst::<f64>(g, seed);
    assert!(e64 < 1e-12, "f64 {g:?}: relative error {e64:e}");
}

#[allow(clippy::too_many_arguments)]
fn geom(
    n: usize,
    cin: usize,
    cout: usize,
    hw: (usize, usize),
    k: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    groups: usize,
) -> Option<ConvGeom> {
    conv_geom(
        "test",
        &[n, cin, hw.0, hw.1],
        &[cout, cin / groups, k.0, k.1],
        &Conv2dParams {
            stride,
            padding: pad,
            dilation: dil,
            groups,
        },
    )
    .ok()
}

#[test]
fn each_code_path_matches_reference() {
    let cases = [
        // 3×3 same conv, samples cut into pieces mid-row (stride-1 backward-data by flipping)
        geom(3, 5, 4, (23, 23), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // tiny images: tiles hold blocks of whole samples
        geom(20, 6, 8, (4, 4), (3, 3), (1, 1), (1, 1), (1, 1), 2),
        // pointwise: x is its own column matrix, in pieces and in blocks
        geom(2, 7, 5, (19, 17), (1, 1), (1, 1), (0, 0), (1, 1), 1),
        geom(30, 4, 6, (3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 2),
        // stride 2: backward-data through col2im
        geom(3, 4, 6, (17, 15), (3, 3), (2, 2), (1, 1), (1, 1), 2),
        // thin input (fewer than 16 channels, more outputs): col2im at stride 1
        geom(2, 3, 8, (9, 9), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // padding beyond the kernel's reach: col2im too
        geom(2, 3, 4, (6, 7), (3, 2), (1, 1), (3, 2), (1, 1), 1),
        // dilation and asymmetric everything
        geom(2, 4, 4, (13, 11), (3, 2), (1, 2), (2, 1), (2, 3), 4),
        // a 4×4 stride-2 kernel as in a down-sampling layer
        geom(2, 3, 5, (16, 16), (4, 4), (2, 2), (1, 1), (1, 1), 1),
        // backward-weight split into uneven blocks of input channels (7, 7, 6)
        geom(2, 20, 6, (11, 9), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // ... in each of two groups, on blocks of whole samples
        geom(12, 36, 8, (5, 5), (3, 3), (1, 1), (1, 1), (1, 1), 2),
        // pointwise with channel blocks: columns read from x at a channel offset
        geom(2, 150, 8, (13, 7), (1, 1), (1, 1), (0, 0), (1, 1), 1),
        geom(30, 140, 4, (3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 2),
    ];
    for (i, g) in cases.into_iter().enumerate() {
        let g = g.expect("valid test geometry");
        check(&g, 100 + i as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn fast_matches_reference_on_random_geometry(
        n in 1usize..4,
        cig in 1usize..4,
        cog in 1usize..4,
        groups in 1usize..4,
        h in 1usize..12,
        w in 1usize..12,
        kh in 1usize..5,
        kw in 1usize..5,
        sy in 1usize..4,
        sx in 1usize..4,
        py in 0usize..4,
        px in 0usize..4,
        dy in 1usize..4,
        dx in 1usize..4,
        seed in 0u64..1000,
    ) {
        let g = geom(n, cig * groups, cog * groups, (h, w), (kh, kw), (sy, sx), (py, px), (dy, dx), groups);
        prop_assume!(g.is_some());
        check(&g.expect("checked"), seed);
    }
}
