//! Every CUDA op against the CPU reference kernels on fresh random inputs, forward and backward
//! (autograd on the GPU vs on the CPU): relative error ‖gpu − cpu‖/‖cpu‖ under 1e-5 in f32 and
//! 1e-12 in f64. Each test prints its seed (set BRAINSYNTH_SEED to repeat one) and skips with a
//! printed reason when no GPU is present.
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu;
use gpu::*;

use std::sync::Arc;

use brainsynth::autograd::grad;
use brainsynth::backend::cpu::{self, CpuKernels};
use brainsynth::backend::fused::{self, GnAct};
use brainsynth::ops::{Binary, Conv2dParams, Unary};
use brainsynth::{DType, Device, Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Forward of `f` and the gradients of ⟨f(xs), w⟩ (w pseudo-random) for every input, on the GPU and
/// on the CPU, compared.
fn check(name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let cpu_vars: Vec<Tensor> = inputs.iter().map(|t| t.variable()).collect();
    let gpu_vars: Vec<Tensor> = on_gpu(inputs).iter().map(|t| t.variable()).collect();
    let y_cpu = f(&cpu_vars).unwrap_or_else(|e| panic!("{name} on cpu: {e}"));
    let y_gpu = f(&gpu_vars).unwrap_or_else(|e| panic!("{name} on gpu: {e}"));
    assert_close(&format!("{name} forward"), &y_gpu, &y_cpu);
    // a projection that differs per op (the inputs themselves are fresh each run)
    let mut wr = StdRng::seed_from_u64(
        name.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    );
    let w = Tensor::randn(y_cpu.shape(), y_cpu.dtype(), &mut wr);
    let l_cpu = y_cpu.mul(&w).unwrap().sum_all().unwrap();
    let l_gpu = y_gpu
        .mul(&w.to_device(GPU).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let g_cpu = grad(&[l_cpu], None, &cpu_vars, false).unwrap();
    let g_gpu = grad(&[l_gpu], None, &gpu_vars, false)
        .unwrap_or_else(|e| panic!("{name} backward on gpu: {e}"));
    for (i, (g, c)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        assert_close(&format!("{name} grad of input {i}"), g, c);
    }
}

fn randn(shape: &[usize], dt: DType, rng: &mut StdRng) -> Tensor {
    Tensor::randn(shape, dt, rng)
}

/// Values in [0.5, 2): the domain of log, sqrt, rsqrt, powf.
fn positive(shape: &[usize], dt: DType, rng: &mut StdRng) -> Tensor {
    Tensor::rand_uniform(shape, 0.5, 2.0, dt, rng)
}

#[test]
fn unary_ops_match_cpu() {
    let Some(_gpu) = gpu_or_skip("unary_ops_match_cpu") else {
        return;
    };
    let mut r = rng("unary");
    let all = [
        Unary::Neg,
        Unary::Exp,
        Unary::Log,
        Unary::Sqrt,
        Unary::Rsqrt,
        Unary::Recip,
        Unary::Sqr,
        Unary::Sin,
        Unary::Cos,
        Unary::Abs,
        Unary::Tanh,
        Unary::Sigmoid,
        Unary::Erf,
        Unary::Relu,
        Unary::Silu,
        Unary::Gelu,
        Unary::Softplus,
        Unary::Powf(1.7),
        Unary::LeakyRelu(0.2),
        Unary::Clamp(-0.5, 0.7),
        Unary::Affine(1.3, -0.4),
        Unary::StepPos,
        Unary::Sign,
        Unary::InRange(-0.3, 0.4),
        Unary::Ge(0.1),
        Unary::LeakyDeriv(0.2),
        Unary::GeluDeriv,
    ];
    for dt in [DType::F32, DType::F64] {
        for op in all {
            let pos = matches!(
                op,
                Unary::Log | Unary::Sqrt | Unary::Rsqrt | Unary::Recip | Unary::Powf(_)
            );
            let x = if pos {
                positive(&[3, 257], dt, &mut r)
            } else {
                randn(&[3, 257], dt, &mut r)
            };
            check(&format!("{op:?} {}", dt.name()), &[x], |v| v[0].unary(op));
        }
    }
}

#[test]
fn binary_ops_broadcast_like_cpu() {
    let Some(_gpu) = gpu_or_skip("binary_ops_broadcast_like_cpu") else {
        return;
    };
    let mut r = rng("binary");
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[4, 5, 6], &[4, 5, 6]),
        (&[4, 5, 6], &[6]),
        (&[4, 1, 6], &[1, 5, 1]),
        (&[2, 3, 4, 5], &[]),
        (&[3, 1], &[2, 1, 3, 4]),
    ];
    let ops = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Max,
        Binary::Min,
        Binary::GeMask,
    ];
    for dt in [DType::F32, DType::F64] {
        for (sa, sb) in shapes {
            for op in ops {
                let a = randn(sa, dt, &mut r);
                let b = if op == Binary::Div {
                    positive(sb, dt, &mut r)
                } else {
                    randn(sb, dt, &mut r)
                };
                check(
                    &format!("{op:?} {sa:?} {sb:?} {}", dt.name()),
                    &[a, b],
                    |v| v[0].binary(&v[1], op),
                );
            }
        }
    }
}

#[test]
fn where_lerp_and_views_match_cpu() {
    let Some(_gpu) = gpu_or_skip("where_lerp_and_views_match_cpu") else {
        return;
    };
    let mut r = rng("where/views");
    let dt = DType::F32;
    let c = randn(&[4, 1, 6], dt, &mut r).unary(Unary::StepPos).unwrap();
    let cg = c.to_device(GPU).unwrap();
    let (a, b) = (randn(&[4, 5, 6], dt, &mut r), randn(&[5, 1], dt, &mut r));
    check("where (cpu cond)", &[a.clone(), b.clone()], |v| {
        let cond = if v[0].device() == GPU { &cg } else { &c };
        Tensor::where_cond(cond, &v[0], &v[1])
    });
    let t = randn(&[3, 4, 5], dt, &mut r);
    check(
        "lerp",
        &[
            t.clone(),
            randn(&[3, 4, 5], dt, &mut r),
            randn(&[5], dt, &mut r),
        ],
        |v| v[0].lerp(&v[1], &v[2]),
    );
    check("permute+contiguous", std::slice::from_ref(&t), |v| {
        v[0].permute(&[2, 0, 1])?.contiguous()?.exp()
    });
    check("narrow", std::slice::from_ref(&t), |v| {
        v[0].narrow(1, 1, 2)?.sqr()
    });
    check("transpose·matmul", std::slice::from_ref(&t), |v| {
        v[0].transpose(1, 2)?.matmul(&v[0])
    });
    check("broadcast_as", &[randn(&[4, 1], dt, &mut r)], |v| {
        v[0].broadcast_as(&[3, 4, 5])?.sin()
    });
    check("cat", &[t.clone(), randn(&[3, 2, 5], dt, &mut r)], |v| {
        Tensor::cat(v, 1)
    });
    check("stack", &[t.clone(), randn(&[3, 4, 5], dt, &mut r)], |v| {
        Tensor::stack(v, 0)
    });
    check("pad_axis", std::slice::from_ref(&t), |v| {
        v[0].pad_axis(2, 2, 1)
    });
    check("pad2d zero", std::slice::from_ref(&t), |v| {
        v[0].pad2d((1, 2, 0, 3), false)
    });
    check("pad2d reflect", std::slice::from_ref(&t), |v| {
        v[0].pad2d((2, 1, 3, 2), true)
    });
    check("flip", std::slice::from_ref(&t), |v| v[0].flip(&[0, 2]));
    check("roll", std::slice::from_ref(&t), |v| v[0].roll(-2, 2));
    check("index_select with repeats", std::slice::from_ref(&t), |v| {
        v[0].index_select(1, &[3, 0, 3, 1])
    });
    let map = Arc::new(vec![7u32, 0, brainsynth::ops::view::ZERO, 7, 59, 3]);
    check(
        "gather_map/scatter_add_map",
        std::slice::from_ref(&t),
        |v| {
            v[0].gather_map(map.clone(), &[2, 3])?
                .scatter_add_map(map.clone(), &[3, 4, 5])
        },
    );
}

#[test]
fn reductions_and_softmax_match_cpu() {
    let Some(_gpu) = gpu_or_skip("reductions_and_softmax_match_cpu") else {
        return;
    };
    let mut r = rng("reduce");
    for dt in [DType::F32, DType::F64] {
        let x = randn(&[5, 6, 7, 8], dt, &mut r);
        let axes: [&[isize]; 6] = [&[0], &[3], &[1, 2], &[0, 3], &[0, 1, 2, 3], &[-2]];
        for ax in axes {
            check(&format!("sum {ax:?}"), std::slice::from_ref(&x), |v| {
                v[0].sum_axes(ax, false)
            });
            check(&format!("max {ax:?}"), std::slice::from_ref(&x), |v| {
                v[0].max_axes(ax, true)
            });
        }
        check("mean", std::slice::from_ref(&x), |v| {
            v[0].mean_axes(&[1], true)
        });
        check("var", std::slice::from_ref(&x), |v| {
            v[0].var_axes(&[2, 3], false, true)
        });
        check("logsumexp", std::slice::from_ref(&x), |v| {
            v[0].logsumexp(&[3], false)
        });
        check("softmax", std::slice::from_ref(&x), |v| v[0].softmax(-1));
        check("log_softmax", std::slice::from_ref(&x), |v| {
            v[0].log_softmax(1)
        });
        let long = randn(&[3, 100_000], dt, &mut r);
        check("long sum", std::slice::from_ref(&long), |v| {
            v[0].sum_axes(&[1], false)
        });
    }
}

#[test]
fn matmul_and_linear_match_cpu() {
    let Some(_gpu) = gpu_or_skip("matmul_and_linear_match_cpu") else {
        return;
    };
    let mut r = rng("matmul");
    for dt in [DType::F32, DType::F64] {
        check(
            "matmul 2d",
            &[randn(&[37, 53], dt, &mut r), randn(&[53, 29], dt, &mut r)],
            |v| v[0].matmul(&v[1]),
        );
        check(
            "matmul batched",
            &[
                randn(&[3, 17, 20], dt, &mut r),
                randn(&[3, 20, 9], dt, &mut r),
            ],
            |v| v[0].matmul(&v[1]),
        );
        check(
            "matmul broadcast batch",
            &[
                randn(&[2, 1, 5, 6], dt, &mut r),
                randn(&[4, 6, 3], dt, &mut r),
            ],
            |v| v[0].matmul(&v[1]),
        );
        check(
            "linear",
            &[
                randn(&[4, 7, 12], dt, &mut r),
                randn(&[10, 12], dt, &mut r),
                randn(&[10], dt, &mut r),
            ],
            |v| v[0].linear(&v[1], Some(&v[2])),
        );
    }
}

#[test]
fn conv2d_family_matches_cpu() {
    let Some(_gpu) = gpu_or_skip("conv2d_family_matches_cpu") else {
        return;
    };
    let mut r = rng("conv");
    let cases: [(&[usize], &[usize], Conv2dParams); 6] = [
        (&[2, 5, 9, 8], &[7, 5, 3, 3], Conv2dParams::same(3)),
        (
            &[2, 4, 10, 11],
            &[6, 4, 3, 3],
            Conv2dParams::same(3).with_stride(2),
        ),
        (
            &[1, 6, 9, 9],
            &[6, 2, 3, 3],
            Conv2dParams::same(3).with_groups(3),
        ),
        (
            &[2, 3, 12, 10],
            &[4, 3, 5, 3],
            Conv2dParams {
                stride: (2, 1),
                padding: (2, 1),
                dilation: (1, 2),
                groups: 1,
            },
        ),
        (&[3, 70, 6, 6], &[66, 70, 1, 1], Conv2dParams::default()),
        (
            &[1, 8, 8, 8],
            &[8, 1, 3, 3],
            Conv2dParams::same(3).with_groups(8),
        ),
    ];
    for dt in [DType::F32, DType::F64] {
        for (xs, ws, p) in cases {
            let (x, w) = (randn(xs, dt, &mut r), randn(ws, dt, &mut r));
            check(&format!("conv2d {xs:?} {ws:?} {p:?}"), &[x, w], |v| {
                v[0].conv2d(&v[1], p)
            });
        }
        let (x, w) = (
            randn(&[2, 4, 5, 6], dt, &mut r),
            randn(&[4, 3, 4, 4], dt, &mut r),
        );
        check("conv_transpose2d", &[x, w], |v| {
            v[0].conv_transpose2d(&v[1], Conv2dParams::same(3).with_stride(2), (1, 1))
        });
    }
    // second order through the three primitives, as R1 needs: grad of ⟨d conv/dx, u⟩
    let (x, w) = (
        randn(&[2, 3, 7, 7], DType::F32, &mut r),
        randn(&[4, 3, 3, 3], DType::F32, &mut r),
    );
    check("conv2d double backward", &[x, w], |v| {
        let y = v[0]
            .conv2d(&v[1], Conv2dParams::same(3))?
            .sqr()?
            .sum_all()?;
        Ok(grad(&[y], None, &[v[0].clone()], true)?.remove(0))
    });
}

#[test]
fn conv2d_anchor_shape_matches_cpu() {
    let Some(_gpu) = gpu_or_skip("conv2d_anchor_shape_matches_cpu") else {
        return;
    };
    // the first layer of the anchors' smallest conv: 5 channels in, 64 out, 64x64
    let mut r = rng("conv anchor");
    let (x, w) = (
        randn(&[2, 5, 64, 64], DType::F32, &mut r),
        randn(&[64, 5, 3, 3], DType::F32, &mut r),
    );
    // the reference loops are slow at this size; fast is tested against them
    let _fast = cpu::use_kernels(CpuKernels::Fast);
    check("conv3x3 5->64 at 64x64", &[x, w], |v| {
        v[0].conv2d(&v[1], Conv2dParams::same(3))
    });
}

/// Fused op outputs on the GPU against the f64 CPU references.
fn close_all(name: &str, gpu: &[&Tensor], cpu: &[&Tensor]) {
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert_close(&format!("{name} output {i}"), g, c);
    }
}

#[test]
fn fused_group_norm_matches_reference() {
    let Some(_gpu) = gpu_or_skip("fused_group_norm_matches_reference") else {
        return;
    };
    let mut r = rng("group_norm");
    for dt in [DType::F32, DType::F64] {
        for (shape, groups, act) in [
            (vec![2, 8, 5, 7], 4, GnAct::Silu),
            (vec![3, 6, 33, 17], 3, GnAct::Identity),
            (vec![1, 32, 16, 16], 32, GnAct::Silu),
        ] {
            let x = randn(&shape, dt, &mut r).affine(2.0, 0.7).unwrap();
            let (gm, bt) = (
                randn(&[shape[1]], dt, &mut r),
                randn(&[shape[1]], dt, &mut r),
            );
            let dy = randn(&shape, dt, &mut r);
            let c = fused::group_norm(&x, &gm, &bt, groups, 1e-5, act).unwrap();
            let g_in = on_gpu(&[x.clone(), gm.clone(), bt.clone(), dy.clone()]);
            let g = fused::group_norm(&g_in[0], &g_in[1], &g_in[2], groups, 1e-5, act).unwrap();
            close_all(
                "group_norm",
                &[&g.y, &g.mean, &g.rstd],
                &[&c.y, &c.mean, &c.rstd],
            );
            let cb = fused::group_norm_backward(&dy, &x, &gm, &bt, &c.mean, &c.rstd, groups, act)
                .unwrap();
            let gb = fused::group_norm_backward(
                &g_in[3], &g_in[0], &g_in[1], &g_in[2], &g.mean, &g.rstd, groups, act,
            )
            .unwrap();
            close_all(
                "group_norm backward",
                &[&gb.dx, &gb.dgamma, &gb.dbeta],
                &[&cb.dx, &cb.dgamma, &cb.dbeta],
            );
        }
    }
}

#[test]
fn fused_window_attention_matches_reference() {
    let Some(_gpu) = gpu_or_skip("fused_window_attention_matches_reference") else {
        return;
    };
    let mut r = rng("window_attention");
    for dt in [DType::F32, DType::F64] {
        for (b, h, n, d, nw, with_mask) in [
            (4, 3, 49, 32, 2, true),
            (2, 2, 64, 64, 1, false),
            (3, 1, 7, 5, 3, true),
        ] {
            let (q, k, v) = (
                randn(&[b, h, n, d], dt, &mut r),
                randn(&[b, h, n, d], dt, &mut r),
                randn(&[b, h, n, d], dt, &mut r),
            );
            let bias = randn(&[h, n, n], dt, &mut r);
            let mask = randn(&[nw, n, n], dt, &mut r)
                .unary(Unary::StepPos)
                .unwrap()
                .affine(-100.0, 0.0)
                .unwrap();
            let mask = with_mask.then_some(mask);
            let scale = 1.0 / (d as f64).sqrt();
            let dout = randn(&[b, h, n, d], dt, &mut r);
            let c = fused::window_attention(&q, &k, &v, Some(&bias), mask.as_ref(), scale).unwrap();
            let gi = on_gpu(&[q.clone(), k.clone(), v.clone(), bias.clone(), dout.clone()]);
            let gm = mask.as_ref().map(|m| m.to_device(GPU).unwrap());
            let g =
                fused::window_attention(&gi[0], &gi[1], &gi[2], Some(&gi[3]), gm.as_ref(), scale)
                    .unwrap();
            close_all("window_attention", &[&g.o, &g.lse], &[&c.o, &c.lse]);
            let cb = fused::window_attention_backward(
                &dout,
                &q,
                &k,
                &v,
                Some(&bias),
                mask.as_ref(),
                scale,
                &c.o,
                &c.lse,
            )
            .unwrap();
            let gb = fused::window_attention_backward(
                &gi[4],
                &gi[0],
                &gi[1],
                &gi[2],
                Some(&gi[3]),
                gm.as_ref(),
                scale,
                &g.o,
                &g.lse,
            )
            .unwrap();
            close_all(
                "window_attention backward",
                &[&gb.dq, &gb.dk, &gb.dv, gb.dbias.as_ref().unwrap()],
                &[&cb.dq, &cb.dk, &cb.dv, cb.dbias.as_ref().unwrap()],
            );
        }
    }
}

#[test]
fn fused_modulated_conv_matches_reference() {
    let Some(_gpu) = gpu_or_skip("fused_modulated_conv_matches_reference") else {
        return;
    };
    let mut r = rng("modconv");
    for dt in [DType::F32, DType::F64] {
        for (n, cin, cout, hw, k, demod) in [
            (2, 8, 12, 9, 3, true),
            (3, 5, 4, 6, 1, false),
            (1, 70, 66, 5, 3, true),
        ] {
            let x = randn(&[n, cin, hw, hw], dt, &mut r);
            let w = randn(&[cout, cin, k, k], dt, &mut r);
            let s = positive(&[n, cin], dt, &mut r);
            let pad = k / 2;
            let c = fused::modulated_conv2d(&x, &w, &s, pad, demod, 1e-8).unwrap();
            let dy = randn(c.y.shape(), dt, &mut r);
            let gi = on_gpu(&[x.clone(), w.clone(), s.clone(), dy.clone()]);
            let g = fused::modulated_conv2d(&gi[0], &gi[1], &gi[2], pad, demod, 1e-8).unwrap();
            close_all("modulated_conv2d", &[&g.y, &g.demod], &[&c.y, &c.demod]);
            let cb =
                fused::modulated_conv2d_backward(&dy, &x, &w, &s, &c, pad, demod, 1e-8).unwrap();
            let gb = fused::modulated_conv2d_backward(
                &gi[3], &gi[0], &gi[1], &gi[2], &g, pad, demod, 1e-8,
            )
            .unwrap();
            close_all(
                "modulated_conv2d backward",
                &[&gb.dx, &gb.dw, &gb.ds],
                &[&cb.dx, &cb.dw, &cb.ds],
            );
        }
    }
}

#[test]
fn device_handling_is_explicit() {
    let Some(_gpu) = gpu_or_skip("device_handling_is_explicit") else {
        return;
    };
    let mut r = rng("devices");
    let x = randn(&[3, 4], DType::F32, &mut r);
    let g = x.to_device(GPU).unwrap();
    assert_eq!(g.device(), GPU);
    assert_eq!(
        g.to_device(Device::Cpu).unwrap().to_vec_f32().unwrap(),
        x.to_vec_f32().unwrap()
    );
    // reading a GPU tensor needs an explicit copy
    assert!(g.to_vec_f32().is_err());
    // mixing devices is an error that names both
    let e = g.add(&x).expect_err("cpu + gpu");
    assert!(
        e.to_string().contains("cuda:0") && e.to_string().contains("cpu"),
        "{e}"
    );
    // zeros_like and friends stay on the device
    assert_eq!(g.zeros_like().device(), GPU);
    assert_eq!(
        g.full_like(2.5)
            .to_device(Device::Cpu)
            .unwrap()
            .to_vec_f32()
            .unwrap(),
        vec![2.5; 12]
    );
    // assign from the cpu and from the gpu, into a whole tensor and into a view
    let p = Tensor::zeros(&[3, 4], DType::F32).to_device(GPU).unwrap();
    p.assign(&x).unwrap();
    assert_eq!(rel_err(&p, &x), 0.0);
    p.assign(&g.mul_scalar(2.0).unwrap()).unwrap();
    assert_eq!(rel_err(&p, &x.mul_scalar(2.0).unwrap()), 0.0);
    let col = p.narrow(1, 1, 2).unwrap();
    col.assign(&Tensor::ones(&[3, 2], DType::F32)).unwrap();
    let back = p.to_device(Device::Cpu).unwrap().to_vec_f32().unwrap();
    assert_eq!(back[1], 1.0);
    assert_eq!(back[0], 2.0 * x.to_vec_f32().unwrap()[0]);
    // update_data is a CPU door
    assert!(p.update_data::<f32, _>(|_| ()).is_err());
    // a device that does not exist
    let e = x.to_device(Device::Cuda(4096)).expect_err("no such device");
    assert!(e.to_string().contains("does not exist"), "{e}");
    // gradients flow back across to_device
    let v = x.variable();
    let l = v.to_device(GPU).unwrap().sqr().unwrap().sum_all().unwrap();
    let gx = grad(&[l], None, std::slice::from_ref(&v), false).unwrap();
    assert_eq!(gx[0].device(), Device::Cpu);
    assert!(rel_err(&gx[0].to_device(GPU).unwrap(), &x.mul_scalar(2.0).unwrap()) < 1e-6);
}
