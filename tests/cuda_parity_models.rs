//! The model-level CUDA ops against the CPU on fresh random inputs: normalisation (group,
//! instance, layer norm, fused SiLU; first order through the fused backward and second order
//! through the x̂/rstd primitives), attention (window kernel and general kernel), resampling
//! (resize, pools, upfirdn2d), optimiser updates, and one SGD step of a tiny U-Net. Relative
//! error under 1e-5 in f32 and 1e-12 in f64 (1e-4 for the U-Net step). Each test prints its seed
//! (BRAINSYNTH_SEED repeats one) and skips with a printed reason when no GPU is present.
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu;
use gpu::*;

use brainsynth::autograd::grad;
use brainsynth::backend::cuda;
use brainsynth::models::unet::{UNet, UNetConfig};
use brainsynth::nn::{Init, ParamStore};
use brainsynth::ops::attention::{attention, shifted_window_mask, window_attention};
use brainsynth::ops::norm::{group_norm, group_norm_silu, instance_norm, layer_norm};
use brainsynth::ops::resize::{adaptive_avg_pool2d, avg_pool2d, resize_bilinear, resize_nearest};
use brainsynth::ops::upfirdn::{setup_filter, upfirdn2d};
use brainsynth::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig, clip_grad_norm};
use brainsynth::{DType, Device, Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A fixed pseudo-random projection per op name.
fn projection(name: &str, like: &Tensor) -> Tensor {
    let mut wr = StdRng::seed_from_u64(
        name.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    );
    Tensor::randn(like.shape(), like.dtype(), &mut wr)
}

/// Forward of `f` and the gradients of ⟨f(xs), w⟩ for every input, GPU vs CPU. With `second`,
/// the gradients are taken with `create_graph` (the differentiable path) and differentiated
/// again: the gradient of ⟨∂L/∂x₀, u⟩ with respect to every input is compared too.
fn check_with(
    name: &str,
    inputs: &[Tensor],
    second: bool,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let cpu_vars: Vec<Tensor> = inputs.iter().map(|t| t.variable()).collect();
    let gpu_vars: Vec<Tensor> = on_gpu(inputs).iter().map(|t| t.variable()).collect();
    let y_cpu = f(&cpu_vars).unwrap_or_else(|e| panic!("{name} on cpu: {e}"));
    let y_gpu = f(&gpu_vars).unwrap_or_else(|e| panic!("{name} on gpu: {e}"));
    assert_close(&format!("{name} forward"), &y_gpu, &y_cpu);
    let w = projection(name, &y_cpu);
    let l_cpu = y_cpu.mul(&w).unwrap().sum_all().unwrap();
    let l_gpu = y_gpu
        .mul(&w.to_device(GPU).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let g_cpu = grad(&[l_cpu], None, &cpu_vars, second).unwrap();
    let g_gpu = grad(&[l_gpu], None, &gpu_vars, second)
        .unwrap_or_else(|e| panic!("{name} backward on gpu: {e}"));
    for (i, (g, c)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        assert_close(&format!("{name} grad of input {i}"), g, c);
    }
    if !second {
        return;
    }
    let u = projection(&format!("{name} second"), &g_cpu[0]);
    let s_cpu = g_cpu[0].mul(&u).unwrap().sum_all().unwrap();
    let s_gpu = g_gpu[0]
        .mul(&u.to_device(GPU).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let h_cpu = grad(&[s_cpu], None, &cpu_vars, false).unwrap();
    let h_gpu = grad(&[s_gpu], None, &gpu_vars, false)
        .unwrap_or_else(|e| panic!("{name} second order on gpu: {e}"));
    for (i, (g, c)) in h_gpu.iter().zip(&h_cpu).enumerate() {
        assert_close(&format!("{name} second-order grad of input {i}"), g, c);
    }
}

fn check(name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    check_with(name, inputs, false, f)
}

fn randn(shape: &[usize], dt: DType, rng: &mut StdRng) -> Tensor {
    Tensor::randn(shape, dt, rng)
}

#[test]
fn norms_match_cpu_to_second_order() {
    let Some(_gpu) = gpu_or_skip("norms_match_cpu_to_second_order") else {
        return;
    };
    let mut r = rng("norms");
    for dt in [DType::F32, DType::F64] {
        let n = dt.name();
        // an offset mean, so a naive one-pass variance would lose digits
        let x = randn(&[2, 6, 5, 7], dt, &mut r).add_scalar(3.0).unwrap();
        let w = randn(&[6], dt, &mut r);
        let b = randn(&[6], dt, &mut r);
        for second in [false, true] {
            let tag = if second { "2nd order" } else { "1st order" };
            check_with(
                &format!("group_norm affine {n} {tag}"),
                &[x.clone(), w.clone(), b.clone()],
                second,
                |v| group_norm(&v[0], 3, Some(&v[1]), Some(&v[2]), 1e-5),
            );
            check_with(
                &format!("group_norm plain {n} {tag}"),
                std::slice::from_ref(&x),
                second,
                |v| group_norm(&v[0], 2, None, None, 1e-5),
            );
            check_with(
                &format!("group_norm_silu {n} {tag}"),
                &[x.clone(), w.clone(), b.clone()],
                second,
                |v| group_norm_silu(&v[0], 3, Some(&v[1]), Some(&v[2]), 1e-5),
            );
            check_with(
                &format!("instance_norm affine {n} {tag}"),
                &[x.clone(), w.clone(), b.clone()],
                second,
                |v| instance_norm(&v[0], Some(&v[1]), Some(&v[2]), 1e-8),
            );
            check_with(
                &format!("instance_norm plain {n} {tag}"),
                std::slice::from_ref(&x),
                second,
                |v| instance_norm(&v[0], None, None, 1e-8),
            );
            // layer norm over the last dim (Swin) and over the last two
            let lw = randn(&[7], dt, &mut r);
            let lb = randn(&[7], dt, &mut r);
            check_with(
                &format!("layer_norm last dim {n} {tag}"),
                &[x.clone(), lw, lb],
                second,
                |v| layer_norm(&v[0], &[7], Some(&v[1]), Some(&v[2]), 1e-5),
            );
            check_with(
                &format!("layer_norm two dims {n} {tag}"),
                std::slice::from_ref(&x),
                second,
                |v| layer_norm(&v[0], &[5, 7], None, None, 1e-5),
            );
        }
    }
}

#[test]
fn attention_matches_cpu_on_both_kernels() {
    let Some(_gpu) = gpu_or_skip("attention_matches_cpu_on_both_kernels") else {
        return;
    };
    let mut r = rng("attention");
    for dt in [DType::F32, DType::F64] {
        let n = dt.name();
        // Swin windows: 2 images × 4 windows of 4×4 tokens, 3 heads, d 8 → the window kernel
        let (bw, heads, tok, d) = (8, 3, 16, 8);
        let q = randn(&[bw, heads, tok, d], dt, &mut r);
        let k = randn(&[bw, heads, tok, d], dt, &mut r);
        let v = randn(&[bw, heads, tok, d], dt, &mut r);
        let bias = randn(&[heads, tok, tok], dt, &mut r);
        let mask = shifted_window_mask(8, 8, 4, 2, dt).unwrap();
        let m_gpu = mask.to_device(GPU).unwrap();
        check(
            &format!("window_attention shifted {n}"),
            &[q.clone(), k.clone(), v.clone(), bias.clone()],
            |t| {
                let m = if t[0].device() == GPU { &m_gpu } else { &mask };
                window_attention(&t[0], &t[1], &t[2], &t[3], Some(m), 0.35)
            },
        );
        check(
            &format!("window_attention plain {n}"),
            &[q, k, v, bias],
            |t| window_attention(&t[0], &t[1], &t[2], &t[3], None, 0.35),
        );
        // 70 queries, 66 keys, dv ≠ d: beyond the window kernel → the general kernel
        let q = randn(&[2, 3, 70, 12], dt, &mut r);
        let k = randn(&[2, 3, 66, 12], dt, &mut r);
        let v = randn(&[2, 3, 66, 5], dt, &mut r);
        check(&format!("attention general {n}"), &[q, k, v], |t| {
            attention(&t[0], &t[1], &t[2], 0.3)
        });
        // square but small: the window kernel through plain attention
        let q = randn(&[2, 20, 9], dt, &mut r);
        let k = randn(&[2, 20, 9], dt, &mut r);
        let v = randn(&[2, 20, 9], dt, &mut r);
        check(&format!("attention small {n}"), &[q, k, v], |t| {
            attention(&t[0], &t[1], &t[2], 0.3)
        });
    }
}

#[test]
fn resampling_matches_cpu() {
    let Some(_gpu) = gpu_or_skip("resampling_matches_cpu") else {
        return;
    };
    let mut r = rng("resampling");
    for dt in [DType::F32, DType::F64] {
        let n = dt.name();
        let x = randn(&[2, 3, 9, 12], dt, &mut r);
        let xs = [x];
        check(&format!("resize_nearest up {n}"), &xs, |v| {
            resize_nearest(&v[0], (17, 25))
        });
        check(&format!("resize_nearest down {n}"), &xs, |v| {
            resize_nearest(&v[0], (4, 5))
        });
        check(&format!("resize_bilinear up {n}"), &xs, |v| {
            resize_bilinear(&v[0], (20, 23))
        });
        check(&format!("resize_bilinear down {n}"), &xs, |v| {
            resize_bilinear(&v[0], (5, 7))
        });
        check(&format!("avg_pool2d {n}"), &xs, |v| {
            avg_pool2d(&v[0], (3, 2), (2, 2), (1, 0))
        });
        check(&format!("adaptive_avg_pool2d {n}"), &xs, |v| {
            adaptive_avg_pool2d(&v[0], (4, 5))
        });
        // StyleGAN-style FIR: a separable 8-tap filter and a 2-D 4×4 one, up and down
        let taps8 = [1.0, 3.0, 5.0, 7.0, 7.0, 5.0, 3.0, 1.0];
        let sep = setup_filter(&taps8, &[8], true, false, 1.0, Some(true), dt).unwrap();
        let taps4 = [1.0, 3.0, 3.0, 1.0];
        let f2 = setup_filter(&taps4, &[4], true, false, 1.0, Some(false), dt).unwrap();
        for (fname, f) in [("separable", &sep), ("2-D", &f2)] {
            let k = f.shape()[0] as isize;
            let fg = f.to_device(GPU).unwrap();
            let pick = |t: &Tensor| {
                if t.device() == GPU {
                    fg.clone()
                } else {
                    f.clone()
                }
            };
            check(&format!("upfirdn2d up 2 {fname} {n}"), &xs, |v| {
                let p = (k + 1) / 2 + 1;
                upfirdn2d(
                    &v[0],
                    &pick(&v[0]),
                    (2, 2),
                    (1, 1),
                    (p, p - 1, p, p - 1),
                    4.0,
                    false,
                )
            });
            check(&format!("upfirdn2d down 2 {fname} {n}"), &xs, |v| {
                let p = (k - 2) / 2;
                upfirdn2d(
                    &v[0],
                    &pick(&v[0]),
                    (1, 1),
                    (2, 2),
                    (p, p, p, p),
                    1.0,
                    false,
                )
            });
            check(&format!("upfirdn2d cropped {fname} {n}"), &xs, |v| {
                upfirdn2d(
                    &v[0],
                    &pick(&v[0]),
                    (2, 1),
                    (1, 2),
                    (-1, 3, 2, -1),
                    1.0,
                    true,
                )
            });
        }
    }
}

/// A few parameters with gradients from one backward pass, on `device`.
fn small_store(device: Device, dt: DType) -> (ParamStore, Vec<Tensor>) {
    let store = ParamStore::with_dtype(11, dt);
    store.set_device(device);
    let root = store.root();
    let a = root
        .param(
            "a",
            &[3, 7],
            Init::Normal {
                mean: 0.0,
                std: 1.0,
            },
        )
        .unwrap();
    let b = root
        .param("b", &[5], Init::Uniform { lo: -1.0, hi: 1.0 })
        .unwrap();
    (store, vec![a, b])
}

/// Loss of the step: Σ sin(p)·p² over the parameters (gradients that change with p).
fn set_grads(ps: &[Tensor]) {
    let mut l: Option<Tensor> = None;
    for p in ps {
        let t = p
            .sin()
            .unwrap()
            .mul(&p.sqr().unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        l = Some(match l {
            Some(s) => s.add(&t).unwrap(),
            None => t,
        });
    }
    l.expect("parameters").backward().unwrap();
}

#[test]
fn optimisers_match_cpu() {
    let Some(_gpu) = gpu_or_skip("optimisers_match_cpu") else {
        return;
    };
    type Make = fn(&ParamStore) -> Box<dyn Optimizer>;
    let makers: [(&str, Make); 5] = [
        ("sgd", |s| {
            Box::new(Sgd::new(s, SgdConfig::new(0.1)).unwrap())
        }),
        ("sgd momentum decay", |s| {
            let c = SgdConfig::new(0.05)
                .with_momentum(0.9)
                .with_dampening(0.1)
                .with_weight_decay(0.01);
            Box::new(Sgd::new(s, c).unwrap())
        }),
        ("sgd nesterov", |s| {
            let c = SgdConfig::new(0.05).with_momentum(0.8).with_nesterov(true);
            Box::new(Sgd::new(s, c).unwrap())
        }),
        ("adam l2", |s| {
            let c = AdamConfig::adam(0.01).with_weight_decay(0.1);
            Box::new(Adam::new(s, c).unwrap())
        }),
        ("adamw", |s| {
            Box::new(Adam::new(s, AdamConfig::adamw(0.01)).unwrap())
        }),
    ];
    for dt in [DType::F32, DType::F64] {
        for (name, make) in makers {
            let (cs, cp) = small_store(Device::Cpu, dt);
            let (gs, gp) = small_store(GPU, dt);
            let (mut co, mut go) = (make(&cs), make(&gs));
            for step in 0..3 {
                for (ps, o) in [(&cp, &mut co), (&gp, &mut go)] {
                    o.zero_grad();
                    set_grads(ps);
                    o.step()
                        .unwrap_or_else(|e| panic!("{name} step {step}: {e}"));
                }
                for (g, c) in gp.iter().zip(&cp) {
                    assert_close(&format!("{name} {} step {step}", dt.name()), g, c);
                }
            }
        }
        // clipping: the norm is computed on the device and the gradients scaled there
        let (_, cp) = small_store(Device::Cpu, dt);
        let (_, gp) = small_store(GPU, dt);
        set_grads(&cp);
        set_grads(&gp);
        let (nc, ng) = (
            clip_grad_norm(&cp, 0.5).unwrap(),
            clip_grad_norm(&gp, 0.5).unwrap(),
        );
        assert!((nc - ng).abs() <= tol(dt) * nc, "clip norm {ng} vs {nc}");
        for (g, c) in gp.iter().zip(&cp) {
            assert_close("clipped gradient", &g.grad().unwrap(), &c.grad().unwrap());
        }
    }
}

/// Parameters of a store placed on the GPU live there; without a GPU, making one is an error
/// value with the reason (no panic).
#[test]
fn param_store_places_parameters_on_its_device() {
    let store = ParamStore::new(3);
    store.set_device(GPU);
    let p = store.root().param(
        "w",
        &[4, 3],
        Init::Normal {
            mean: 0.0,
            std: 1.0,
        },
    );
    match cuda::available_or_skip(0).unwrap_or_else(|e| panic!("{e}")) {
        None => {
            let p = p.unwrap();
            assert_eq!(p.device(), GPU);
            // same initial values as on the CPU
            let cpu = ParamStore::new(3)
                .root()
                .param(
                    "w",
                    &[4, 3],
                    Init::Normal {
                        mean: 0.0,
                        std: 1.0,
                    },
                )
                .unwrap();
            assert_eq!(rel_err(&p, &cpu), 0.0);
        }
        Some(e) => {
            let err = p.expect_err("a GPU parameter without a GPU").to_string();
            println!("skipping the GPU half of param_store_places_parameters_on_its_device: {e}");
            assert!(err.contains("driver") || err.contains("cuda"), "{err}");
        }
    }
}

#[test]
fn unet_sgd_step_on_gpu_matches_cpu() {
    let Some(_gpu) = gpu_or_skip("unet_sgd_step_on_gpu_matches_cpu") else {
        return;
    };
    let mut r = rng("unet step");
    let cfg = UNetConfig {
        in_channels: 4,
        classes: 4,
        base_width: 4,
        depth: 3,
        max_width: 8,
        deep_supervision: true,
    };
    let x = randn(&[2, 4, 16, 16], DType::F32, &mut r);
    let target = randn(&[2, 4, 16, 16], DType::F32, &mut r);
    let mut params = Vec::new();
    for device in [Device::Cpu, GPU] {
        let store = ParamStore::new(5);
        store.set_device(device);
        let net = UNet::new(&store.root(), cfg.clone()).unwrap();
        let mut opt = Sgd::new(&store, SgdConfig::new(0.01).with_momentum(0.9)).unwrap();
        let (x, t) = (
            x.to_device(device).unwrap(),
            target.to_device(device).unwrap(),
        );
        let out = net.forward(&x, true).unwrap().remove(0);
        let loss = out.sub(&t).unwrap().sqr().unwrap().mean_all().unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
        params.push(store.trainable_tensors());
    }
    let (cpu_p, gpu_p) = (&params[0], &params[1]);
    assert_eq!(cpu_p.len(), gpu_p.len());
    for (i, (g, c)) in gpu_p.iter().zip(cpu_p).enumerate() {
        assert_close_tol(&format!("U-Net parameter {i} after one step"), g, c, 1e-4);
    }
}
