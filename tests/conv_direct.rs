//! The direct 3×3 conv kernel (AVX-512, f32; src/ops/conv/direct.rs) against the
//! reference loops, on shapes that reach every micro-kernel size (1–6 output channels of a
//! block, 1–4 vectors of a position block), images narrower than a vector, and one pixel.
//! Also the stride-1 backward-data, which runs the same kernel on the flipped weight, and the
//! direct backward-weight (images at least 16 wide; every block size of 1–3 output channels,
//! samples in more than one group).
//! Tolerance: ‖direct − ref‖ / ‖ref‖ < 1e-5 and every element within 1e-5·max|ref|.
//! On a CPU without AVX-512 the kernel declines: the test checks that it said so and left the
//! output alone, still compares the fast path (then im2col + GEMM) with the reference, and
//! prints how many shapes the direct kernel could not be compared on.

use brainsynth::ops::conv::reference::{self, ConvGeom};
use brainsynth::ops::conv::{direct as direct_conv, fast as fast_conv};
use brainsynth::testing::rand_vals;

fn geom(n: usize, cin: usize, cout: usize, h: usize, w: usize) -> ConvGeom {
    ConvGeom {
        n,
        cin,
        h,
        w,
        cout,
        kh: 3,
        kw: 3,
        oh: h,
        ow: w,
        stride: (1, 1),
        pad: (1, 1),
        dil: (1, 1),
        groups: 1,
    }
}

fn f32s(n: usize, seed: u64) -> Vec<f32> {
    rand_vals(n, seed).into_iter().map(|v| v as f32).collect()
}

fn check(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    let max = want.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let (mut num, mut den) = (0.0, 0.0);
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let d = (a as f64 - b as f64).abs();
        assert!(
            d <= 1e-5 * max.max(1e-30),
            "{what}: element {i}: {a} vs {b}"
        );
        num += d * d;
        den += (b as f64) * (b as f64);
    }
    let rel = (num / den.max(1e-300)).sqrt();
    assert!(rel < 1e-5, "{what}: relative error {rel}");
}

#[test]
fn direct_conv3x3_matches_the_reference() {
    let shapes = [
        (1, 1, 1, 1, 1),
        (2, 3, 5, 4, 7),
        (1, 7, 6, 8, 8),
        (3, 4, 13, 5, 3),
        (2, 16, 7, 17, 9),
        (1, 33, 12, 16, 16),
        (2, 8, 32, 64, 64),
        (1, 40, 20, 2, 30),
        // backward-weight: a last block of one output channel over several samples, and
        // dy past the kernel's 64 MiB, so the samples are taken in two groups
        (3, 5, 7, 9, 20),
        (5, 4, 64, 256, 256),
    ];
    let (mut declined, mut bw_direct) = (0, 0);
    for (k, &(n, cin, cout, h, w)) in shapes.iter().enumerate() {
        let g = geom(n, cin, cout, h, w);
        let seed = 100 * k as u64;
        let x = f32s(n * cin * h * w, seed);
        let wt = f32s(cout * cin * 9, seed + 1);
        let want = reference::conv2d(&x, &wt, &g);
        let mut got = vec![f32::NAN; want.len()];
        if direct_conv::conv3x3(&x, &wt, &g, &mut got) {
            check(&got, &want, &format!("forward {g:?}"));
        } else {
            assert!(!avx512(), "declined {g:?} on a CPU with AVX-512");
            assert!(
                got.iter().all(|v| v.is_nan()),
                "wrote output after declining"
            );
            declined += 1;
        }
        // the fast path (the direct kernel where it applies, else im2col + GEMM), and
        // backward-data (stride 1) through the flipped weight: on every CPU
        check(
            &fast_conv::conv2d(&x, &wt, &g),
            &want,
            &format!("fast forward {g:?}"),
        );
        let dy = f32s(n * cout * h * w, seed + 2);
        check(
            &fast_conv::conv2d_backward_data(&dy, &wt, &g),
            &reference::conv2d_backward_data(&dy, &wt, &g),
            &format!("backward-data {g:?}"),
        );
        // in f64: dW sums n·h·w products (327 680 in the largest shape), where the f32
        // reference's own running sum drifts past the tolerance
        let up = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let want_dw: Vec<f32> = reference::conv2d_backward_weight(&up(&x), &up(&dy), &g)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let mut dw = vec![f32::NAN; want_dw.len()];
        if direct_conv::conv3x3_backward_weight(&x, &dy, &g, &mut dw) {
            check(&dw, &want_dw, &format!("backward-weight {g:?}"));
            bw_direct += 1;
        } else {
            assert!(
                !avx512() || w < 16,
                "backward-weight declined {g:?} on a CPU with AVX-512"
            );
            assert!(dw.iter().all(|v| v.is_nan()), "wrote dW after declining");
        }
        check(
            &fast_conv::conv2d_backward_weight(&x, &dy, &g),
            &want_dw,
            &format!("fast backward-weight {g:?}"),
        );
    }
    if declined > 0 {
        println!(
            "direct_conv3x3_matches_the_reference: this CPU has no AVX-512, so the direct \
             kernel declined {declined} of {} shapes and only its fallback (im2col + GEMM) \
             was compared with the reference",
            shapes.len()
        );
    }
    // with AVX-512 every shape above runs on the direct kernel, without it none does; the
    // backward-weight takes the images at least 16 wide
    assert_eq!(declined, if avx512() { 0 } else { shapes.len() });
    let wide = shapes.iter().filter(|s| s.4 >= 16).count();
    assert_eq!(bw_direct, if avx512() { wide } else { 0 });
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn direct_conv3x3_declines_other_geometries() {
    let mut g = geom(1, 2, 2, 5, 5);
    g.stride = (2, 2);
    g.oh = 3;
    g.ow = 3;
    assert!(!direct_conv::applies(&g));
    let mut g = geom(1, 2, 2, 5, 5);
    g.pad = (0, 0);
    g.oh = 3;
    g.ow = 3;
    assert!(!direct_conv::applies(&g));
    let mut g = geom(1, 2, 2, 5, 5);
    g.groups = 2;
    assert!(!direct_conv::applies(&g));
    let x = vec![0f32; 50];
    let w = vec![0f32; 2 * 9];
    let mut y = vec![7f32; 50];
    assert!(!direct_conv::conv3x3(&x, &w, &g, &mut y));
    assert!(y.iter().all(|&v| v == 7.0));
    let mut dw = vec![7f32; 2 * 9];
    assert!(!direct_conv::conv3x3_backward_weight(&x, &x, &g, &mut dw));
    assert!(dw.iter().all(|&v| v == 7.0));
}
