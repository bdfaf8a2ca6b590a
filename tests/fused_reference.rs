//! The f64 references of the fused kernels (the ground truth of the CUDA parity tests) against
//! compositions of ordinary tensor ops: forward values, and backward against autograd. Also the
//! shape errors of the fused API.

use brainsynth::autograd::grad;
use brainsynth::backend::fused::{self, GnAct, ModConvOut};
use brainsynth::ops::Conv2dParams;
use brainsynth::testing::rand_tensor;
use brainsynth::{Result, Tensor};

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn close(name: &str, a: &Tensor, b: &Tensor) {
    let d = max_diff(a, b);
    assert!(d < 1e-10, "{name}: max difference {d:.3e}");
}

/// Group norm from reductions: the composition every backward here is checked against.
fn group_norm_ops(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    silu: bool,
) -> Result<Tensor> {
    let s = x.shape().to_vec();
    let g = x.reshape(&[s[0], groups, usize::MAX])?;
    let mean = g.mean_axes(&[2], true)?;
    let var = g.var_axes(&[2], true, false)?;
    let xh = g
        .sub(&mean)?
        .div(&var.add_scalar(1e-5)?.sqrt()?)?
        .reshape(&s)?;
    let y = xh
        .mul(&gamma.reshape(&[1, s[1], 1, 1])?)?
        .add(&beta.reshape(&[1, s[1], 1, 1])?)?;
    if silu { y.silu() } else { Ok(y) }
}

#[test]
fn group_norm_reference_matches_composed_ops() {
    for (silu, seed) in [(false, 1), (true, 2)] {
        let (x, gamma, beta) = (
            rand_tensor(&[2, 6, 3, 4], seed),
            rand_tensor(&[6], seed + 10).add_scalar(1.0).unwrap(),
            rand_tensor(&[6], seed + 20),
        );
        let act = if silu { GnAct::Silu } else { GnAct::Identity };
        let out = fused::group_norm(&x, &gamma, &beta, 3, 1e-5, act).unwrap();
        let vars = [x.variable(), gamma.variable(), beta.variable()];
        let y = group_norm_ops(&vars[0], &vars[1], &vars[2], 3, silu).unwrap();
        close("group_norm forward", &out.y, &y);
        let dy = rand_tensor(x.shape(), seed + 30);
        let g = grad(&[y], Some(std::slice::from_ref(&dy)), &vars, false).unwrap();
        let b = fused::group_norm_backward(&dy, &x, &gamma, &beta, &out.mean, &out.rstd, 3, act)
            .unwrap();
        close("group_norm dx", &b.dx, &g[0]);
        close("group_norm dgamma", &b.dgamma, &g[1]);
        close("group_norm dbeta", &b.dbeta, &g[2]);
    }
}

/// Window attention from matmul and softmax, with the mask applied per window (b mod nW).
fn window_attention_ops(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (b, h, n) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let nw = mask.shape()[0];
    let s = q
        .matmul(&k.transpose(-1, -2)?)?
        .mul_scalar(scale)?
        .add(bias)?;
    let s = s
        .reshape(&[b / nw, nw, h, n, n])?
        .add(&mask.unsqueeze(1)?)?
        .reshape(&[b, h, n, n])?;
    s.softmax(-1)?.matmul(v)
}

#[test]
fn window_attention_reference_matches_composed_ops() {
    let (b, h, n, d, nw) = (4, 2, 5, 3, 2);
    let q = rand_tensor(&[b, h, n, d], 3);
    let k = rand_tensor(&[b, h, n, d], 4);
    let v = rand_tensor(&[b, h, n, d], 5);
    let bias = rand_tensor(&[h, n, n], 6);
    // a shift mask: 0 or −100, as Swin builds it
    let m: Vec<f64> = rand_tensor(&[nw, n, n], 7)
        .to_vec_f64()
        .unwrap()
        .iter()
        .map(|&x| if x > 0.3 { -100.0 } else { 0.0 })
        .collect();
    let mask = Tensor::from_f64s(&m, &[nw, n, n], brainsynth::DType::F64).unwrap();
    let scale = 0.57;
    let out = fused::window_attention(&q, &k, &v, Some(&bias), Some(&mask), scale).unwrap();
    let vars = [q.variable(), k.variable(), v.variable(), bias.variable()];
    let o = window_attention_ops(&vars[0], &vars[1], &vars[2], &vars[3], &mask, scale).unwrap();
    close("window_attention forward", &out.o, &o);
    let dout = rand_tensor(o.shape(), 8);
    let g = grad(&[o], Some(std::slice::from_ref(&dout)), &vars, false).unwrap();
    let b2 = fused::window_attention_backward(
        &dout,
        &q,
        &k,
        &v,
        Some(&bias),
        Some(&mask),
        scale,
        &out.o,
        &out.lse,
    )
    .unwrap();
    close("window_attention dq", &b2.dq, &g[0]);
    close("window_attention dk", &b2.dk, &g[1]);
    close("window_attention dv", &b2.dv, &g[2]);
    close("window_attention dbias", b2.dbias.as_ref().unwrap(), &g[3]);
}

/// Modulated conv sample by sample with conv2d, as StyleGAN2's reference writes it.
fn modconv_ops(x: &Tensor, w: &Tensor, s: &Tensor, pad: usize, demod: bool) -> Result<Tensor> {
    let n = x.shape()[0];
    let cin = x.shape()[1];
    let mut ys = Vec::new();
    for i in 0..n {
        let si = s.narrow(0, i, 1)?.reshape(&[1, cin, 1, 1])?;
        let mut wi = w.mul(&si)?;
        if demod {
            let d = wi
                .sqr()?
                .sum_axes(&[1, 2, 3], true)?
                .add_scalar(1e-8)?
                .rsqrt()?;
            wi = wi.mul(&d)?;
        }
        ys.push(
            x.narrow(0, i, 1)?
                .conv2d(&wi, Conv2dParams::same(1).with_padding(pad))?,
        );
    }
    Tensor::cat(&ys, 0)
}

#[test]
fn modulated_conv_reference_matches_composed_ops() {
    for (demod, pad, seed) in [(true, 1, 11), (false, 0, 12)] {
        let x = rand_tensor(&[2, 3, 5, 4], seed);
        let w = rand_tensor(&[4, 3, 3, 3], seed + 1);
        let s = rand_tensor(&[2, 3], seed + 2).add_scalar(1.5).unwrap();
        let out = fused::modulated_conv2d(&x, &w, &s, pad, demod, 1e-8).unwrap();
        let vars = [x.variable(), w.variable(), s.variable()];
        let y = modconv_ops(&vars[0], &vars[1], &vars[2], pad, demod).unwrap();
        close("modconv forward", &out.y, &y);
        let dy = rand_tensor(y.shape(), seed + 3);
        let g = grad(&[y], Some(std::slice::from_ref(&dy)), &vars, false).unwrap();
        let b = fused::modulated_conv2d_backward(&dy, &x, &w, &s, &out, pad, demod, 1e-8).unwrap();
        close("modconv dx", &b.dx, &g[0]);
        close("modconv dw", &b.dw, &g[1]);
        close("modconv ds", &b.ds, &g[2]);
    }
}

#[test]
fn fused_ops_reject_bad_shapes_with_a_sentence() {
    let x = rand_tensor(&[2, 6, 3, 3], 1);
    let e = fused::group_norm(
        &x,
        &rand_tensor(&[6], 2),
        &rand_tensor(&[6], 3),
        4,
        1e-5,
        GnAct::Identity,
    )
    .expect_err("6 channels do not split into 4 groups");
    assert!(e.to_string().contains("group_norm"), "{e}");
    let q = rand_tensor(&[3, 1, 4, 2], 1);
    let mask = rand_tensor(&[2, 4, 4], 2);
    let e = fused::window_attention(&q, &q, &q, None, Some(&mask), 1.0)
        .expect_err("2 mask windows do not divide 3 windows");
    assert!(e.to_string().contains("nW"), "{e}");
    let e = fused::modulated_conv2d(
        &x,
        &rand_tensor(&[4, 5, 3, 3], 2),
        &rand_tensor(&[2, 6], 3),
        1,
        true,
        1e-8,
    )
    .expect_err("channel mismatch");
    assert!(e.to_string().contains("modulated_conv2d"), "{e}");
    let out = ModConvOut {
        y: rand_tensor(&[1], 0),
        demod: rand_tensor(&[1], 0),
    };
    let e = fused::modulated_conv2d_backward(
        &rand_tensor(&[2, 4, 3, 3], 1),
        &x,
        &rand_tensor(&[4, 6, 3, 3], 2),
        &rand_tensor(&[2, 6], 3),
        &out,
        1,
        true,
        1e-8,
    )
    .expect_err("saved output of the wrong shape");
    assert!(e.to_string().contains("y has shape"), "{e}");
}
