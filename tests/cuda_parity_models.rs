//! The model-level CUDA ops against the CPU on fresh random inputs: normalisation (group,
//! instance, layer norm, fused SiLU; first order through the fused backward and second order
//! through the x̂/rstd primitives), attention (window kernel and general kernel), resampling
//! (resize, pools, upfirdn2d), the StyleGAN layers to second order (these cases live in
//! `brainsynth::backend::cuda::audit`), optimiser updates, and one SGD step of a tiny U-Net.
//! Relative error under 1e-5 in f32 and 1e-12 in f64 (1e-4 for the U-Net step). Each test
//! prints its seed (BRAINSYNTH_SEED repeats one) and skips with a printed reason when no GPU is
//! present.
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu;
use gpu::*;
#[path = "common/step_parity.rs"]
mod step_parity;
use step_parity::*;

use brainsynth::backend::cuda;
use brainsynth::models::swin::{SwinConfig, SwinSegmenter};
use brainsynth::models::unet::{UNet, UNetConfig};
use brainsynth::nn::{Init, ParamStore};
use brainsynth::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig, clip_grad_norm};
use brainsynth::rng::SplitMix64;
use brainsynth::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn norms_match_cpu_to_second_order() {
    audit_group("norms");
}

#[test]
fn attention_matches_cpu_on_both_kernels() {
    audit_group("attention");
}

#[test]
fn resampling_matches_cpu() {
    audit_group("resampling");
}

/// bias + leaky ReLU, minibatch std, upfirdn and modulated conv to second order (R1, path
/// length).
#[test]
fn stylegan_layers_match_cpu_to_second_order() {
    audit_group("stylegan");
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

/// Sizes of the U-Net step: the quick architecture's layout (three levels, deep supervision)
/// at widths 4–8 on 16×16, so one step takes well under a second on the emulator.
fn tiny_unet() -> UNetConfig {
    UNetConfig {
        in_channels: 4,
        classes: 4,
        base_width: 4,
        depth: 3,
        max_width: 8,
        deep_supervision: true,
    }
}

/// A batch [2, 4, 16, 16] and a target of the same shape, rounded to f32.
fn batch(seed: u64, shape: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let mut r = StdRng::seed_from_u64(seed);
    let x = Tensor::randn(shape, DType::F64, &mut r)
        .to_vec_f64()
        .unwrap();
    let t = Tensor::randn(shape, DType::F64, &mut r)
        .to_vec_f64()
        .unwrap();
    (round32(x), round32(t))
}

/// One SGD (momentum) step of the tiny U-Net on `device` in `dt`, from `start` when given.
fn unet_step(device: Device, dt: DType, seed: u64, start: Option<&[Vec<f64>]>) -> StepRun {
    let shape = [2, 4, 16, 16];
    let (x, t) = batch(seed, &shape);
    let store = ParamStore::with_dtype(5, dt);
    store.set_device(device);
    let net = UNet::new(&store.root(), tiny_unet()).unwrap();
    if let Some(s) = start {
        load_start(&store, s);
    }
    let mut opt = Sgd::new(&store, SgdConfig::new(0.01).with_momentum(0.9)).unwrap();
    let on = |v: &[f64]| {
        Tensor::from_f64s(v, &shape, dt)
            .unwrap()
            .to_device(device)
            .unwrap()
    };
    let (x, t) = (on(&x), on(&t));
    // every deep-supervision output in the loss, weighted as in training
    let outs = net.forward(&x, true).unwrap();
    let weights = tiny_unet().supervision_weights();
    let mut loss: Option<Tensor> = None;
    for (o, w) in outs.iter().zip(weights) {
        let size = (o.shape()[2], o.shape()[3]);
        let tt = brainsynth::ops::resize::resize_bilinear(&t, size).unwrap();
        let l = o
            .sub(&tt)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .mul_scalar(w)
            .unwrap();
        loss = Some(match loss {
            Some(s) => s.add(&l).unwrap(),
            None => l,
        });
    }
    finish(&store, &loss.expect("outputs"), &mut opt)
}

/// One SGD step of a tiny U-Net on the GPU is as accurate as on the CPU, both measured against
/// the f64 CPU step (the rule and why in tests/common/step_parity.rs).
#[test]
fn unet_sgd_step_on_gpu_matches_cpu() {
    let Some(_gpu) = gpu_or_skip("unet_sgd_step_on_gpu_matches_cpu") else {
        return;
    };
    check_step(
        "unet_sgd_step_on_gpu_matches_cpu",
        seed("unet_sgd_step_on_gpu_matches_cpu"),
        |s| {
            let c = CpuRuns::run(|start| unet_step(Device::Cpu, DType::F32, s, start));
            let r = unet_step(Device::Cpu, DType::F64, s, Some(c.start()));
            let g = unet_step(GPU, DType::F32, s, Some(c.start()));
            (r, c, g)
        },
    );
}

/// The quick Swin's layout (patch embedding, shifted windows, patch merging, UperNet head with
/// pyramid pooling, auxiliary head, dropout and stochastic depth) at embedding width 8 on
/// 16×16 in two stages (8×8 tokens: shifted windows in the first stage; a third stage of 2×2
/// tokens would be smaller than the window, which `SwinSegmenter` does not support yet). The size is set by
/// the emulator's cost: layer norm runs one 256-thread block per token, so the step's time
/// grows with the token count.
fn tiny_swin() -> SwinConfig {
    SwinConfig {
        embed_dim: 8,
        depths: vec![2, 2],
        heads: vec![1, 2],
        mlp_ratio: 2,
        head_channels: 8,
        pool_scales: vec![1, 2],
        aux_channels: Some(8),
        ..SwinConfig::quick()
    }
}

/// One AdamW step of the tiny Swin segmenter (with its auxiliary loss and the same dropout
/// draws on every device).
fn swin_step(device: Device, dt: DType, seed: u64, start: Option<&[Vec<f64>]>) -> StepRun {
    let shape = [2, 4, 16, 16];
    let (x, t) = batch(seed, &shape);
    let store = ParamStore::with_dtype(5, dt);
    store.set_device(device);
    let cfg = tiny_swin();
    let net = SwinSegmenter::new(&store.root(), cfg.clone()).unwrap();
    if let Some(s) = start {
        load_start(&store, s);
    }
    let mut opt = Adam::new(&store, AdamConfig::adamw(1e-3)).unwrap();
    let on = |v: &[f64]| {
        Tensor::from_f64s(v, &shape, dt)
            .unwrap()
            .to_device(device)
            .unwrap()
    };
    let (x, t) = (on(&x), on(&t));
    let mut rng = SplitMix64::new(seed);
    let (out, aux) = net.forward_with_aux(&x, true, &mut rng).unwrap();
    let mse = |o: &Tensor| o.sub(&t).unwrap().sqr().unwrap().mean_all().unwrap();
    let mut loss = mse(&out);
    if let Some(a) = aux {
        loss = loss
            .add(&mse(&a).mul_scalar(cfg.aux_weight).unwrap())
            .unwrap();
    }
    finish(&store, &loss, &mut opt)
}

/// One AdamW step of a tiny Swin segmenter on the GPU is as accurate as on the CPU (window
/// attention, layer norm, GELU, batch norm and ReLU on the device).
#[test]
fn swin_adamw_step_on_gpu_matches_cpu() {
    let Some(_gpu) = gpu_or_skip("swin_adamw_step_on_gpu_matches_cpu") else {
        return;
    };
    check_step(
        "swin_adamw_step_on_gpu_matches_cpu",
        seed("swin_adamw_step_on_gpu_matches_cpu"),
        |s| {
            let c = CpuRuns::run(|start| swin_step(Device::Cpu, DType::F32, s, start));
            let r = swin_step(Device::Cpu, DType::F64, s, Some(c.start()));
            let g = swin_step(GPU, DType::F32, s, Some(c.start()));
            (r, c, g)
        },
    );
}
