//! CPU kernel timings on the shapes of `shared/anchors/torch_cpu.py` (quick profile), to be read
//! beside that script's PyTorch numbers measured in the same sitting: see `benches/README.md`.
//!
//! conv3x3 shapes are (N, Cin, Cout, H=W) as in the anchor script; "fwd+bwd" is a training step's
//! conv work: forward, then the gradients of x and of the weight for a given output gradient.
//! gn_silu is `silu(group_norm(x, G))` (no affine, eps 1e-5) on (N, C, H=W, G), fwd+bwd giving
//! x's gradient; winattn is `softmax(q·kᵀ/√d + bias)·v` on (windows, heads, tokens, head_dim)
//! with a [heads, tokens, tokens] bias and no mask, fwd+bwd giving q, k, v and bias gradients,
//! as the anchor script times them. mha is the diffusion U-Net's attention (PyTorch's side:
//! `benches/torch_attn_norm.py`).

use std::time::Duration;

use brainsynth::autograd::grad;
use brainsynth::models::diffusion::qkv_attention::qkv_attention_legacy;
use brainsynth::ops::attention::window_attention;
use brainsynth::ops::norm::{group_norm_silu, instance_norm, layer_norm};
use brainsynth::ops::{Conv2dParams, ModConvParams, modulated_conv2d};
use brainsynth::{DType, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const CONV_SHAPES: [(usize, usize, usize, usize); 5] = [
    (8, 64, 64, 64),
    (8, 128, 128, 32),
    (8, 32, 32, 128),
    (16, 256, 256, 16),
    (8, 5, 64, 64),
];

fn conv3x3(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut group = c.benchmark_group("conv3x3");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (n, ci, co, hw) in CONV_SHAPES {
        let x = Tensor::randn(&[n, ci, hw, hw], DType::F32, &mut rng).variable();
        let w = Tensor::randn(&[co, ci, 3, 3], DType::F32, &mut rng).variable();
        let g = Tensor::randn(&[n, co, hw, hw], DType::F32, &mut rng);
        let p = Conv2dParams::same(3);
        let id = format!("({n},{ci},{co},{hw})");
        group.bench_function(format!("fwd {id}"), |b| {
            b.iter(|| x.conv2d(&w, p).expect("conv2d"))
        });
        group.bench_function(format!("fwd+bwd {id}"), |b| {
            b.iter(|| {
                let y = x.conv2d(&w, p).expect("conv2d");
                grad(
                    &[y],
                    Some(std::slice::from_ref(&g)),
                    &[x.clone(), w.clone()],
                    false,
                )
                .expect("grad")
            })
        });
    }
    group.finish();
}

fn matmul(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let mut group = c.benchmark_group("matmul");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let a = Tensor::randn(&[512, 512], DType::F32, &mut rng);
    let b = Tensor::randn(&[512, 512], DType::F32, &mut rng);
    group.bench_function("512x512x512", |bn| {
        bn.iter(|| a.matmul(&b).expect("matmul"))
    });
    // a mapping-network layer over a batch: [256, 512] · [512, 512]ᵀ
    let x = Tensor::randn(&[256, 512], DType::F32, &mut rng);
    let w = Tensor::randn(&[512, 512], DType::F32, &mut rng);
    group.bench_function("linear 256x512->512", |bn| {
        bn.iter(|| x.linear(&w, None).expect("linear"))
    });
    group.finish();
}

fn modconv(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let mut group = c.benchmark_group("modconv3x3");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    // (N, Cin, Cout, H=W): a StyleGAN2 synthesis layer of the quick profile
    let (n, ci, co, hw) = (4, 64, 64, 32);
    let x = Tensor::randn(&[n, ci, hw, hw], DType::F32, &mut rng).variable();
    let w = Tensor::randn(&[co, ci, 3, 3], DType::F32, &mut rng).variable();
    let s = Tensor::randn(&[n, ci], DType::F32, &mut rng).variable();
    let g = Tensor::randn(&[n, co, hw, hw], DType::F32, &mut rng);
    for fused in [true, false] {
        let p = ModConvParams::same(3).fused(fused);
        let id = format!(
            "({n},{ci},{co},{hw}) {}",
            if fused { "fused" } else { "non-fused" }
        );
        group.bench_function(format!("fwd {id}"), |b| {
            b.iter(|| modulated_conv2d(&x, &w, &s, None, None, p).expect("modconv"))
        });
        group.bench_function(format!("fwd+bwd {id}"), |b| {
            b.iter(|| {
                let y = modulated_conv2d(&x, &w, &s, None, None, p).expect("modconv");
                grad(
                    &[y],
                    Some(std::slice::from_ref(&g)),
                    &[x.clone(), w.clone(), s.clone()],
                    false,
                )
                .expect("grad")
            })
        });
    }
    group.finish();
}

const GN_SHAPES: [(usize, usize, usize, usize); 2] = [(8, 128, 64, 32), (8, 256, 32, 32)];

fn gn_silu(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let mut group = c.benchmark_group("gn_silu");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (n, ch, hw, groups) in GN_SHAPES {
        let x = Tensor::randn(&[n, ch, hw, hw], DType::F32, &mut rng).variable();
        let g = Tensor::randn(&[n, ch, hw, hw], DType::F32, &mut rng);
        let id = format!("({n},{ch},{hw},{groups})");
        let f = || group_norm_silu(&x, groups, None, None, 1e-5).expect("group_norm_silu");
        group.bench_function(format!("fwd {id}"), |b| b.iter(f));
        group.bench_function(format!("fwd+bwd {id}"), |b| {
            b.iter(|| {
                grad(
                    &[f()],
                    Some(std::slice::from_ref(&g)),
                    std::slice::from_ref(&x),
                    false,
                )
                .expect("grad")
            })
        });
    }
    group.finish();
}

/// Affine instance norm (the U-Net step's norm) on (N, C, H=W) and affine layer norm (Swin's) on
/// (tokens, C): fwd, and fwd+bwd giving the x, weight and bias gradients.
const INST_NORM_SHAPES: [(usize, usize, usize); 2] = [(8, 32, 64), (8, 256, 8)];
const LAYER_NORM_SHAPES: [(usize, usize); 2] = [(32768, 48), (2048, 384)];

fn norms(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(5);
    let mut group = c.benchmark_group("norm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let mut run =
        |id: String, x: Tensor, g: Tensor, f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor| {
            let ch = *x.shape().last().expect("rank");
            let ch = if x.rank() == 4 { x.shape()[1] } else { ch };
            let w = Tensor::randn(&[ch], DType::F32, &mut rng).variable();
            let b = Tensor::randn(&[ch], DType::F32, &mut rng).variable();
            group.bench_function(format!("fwd {id}"), |bn| bn.iter(|| f(&x, &w, &b)));
            group.bench_function(format!("fwd+bwd {id}"), |bn| {
                bn.iter(|| {
                    grad(
                        &[f(&x, &w, &b)],
                        Some(std::slice::from_ref(&g)),
                        &[x.clone(), w.clone(), b.clone()],
                        false,
                    )
                    .expect("grad")
                })
            });
        };
    for (n, ch, hw) in INST_NORM_SHAPES {
        let x =
            Tensor::randn(&[n, ch, hw, hw], DType::F32, &mut StdRng::seed_from_u64(6)).variable();
        let g = Tensor::randn(&[n, ch, hw, hw], DType::F32, &mut StdRng::seed_from_u64(7));
        run(format!("instance ({n},{ch},{hw})"), x, g, &|x, w, b| {
            instance_norm(x, Some(w), Some(b), 1e-5).expect("instance_norm")
        });
    }
    for (t, ch) in LAYER_NORM_SHAPES {
        let x = Tensor::randn(&[t, ch], DType::F32, &mut StdRng::seed_from_u64(8)).variable();
        let g = Tensor::randn(&[t, ch], DType::F32, &mut StdRng::seed_from_u64(9));
        run(format!("layer ({t},{ch})"), x, g, &|x, w, b| {
            layer_norm(x, &[ch], Some(w), Some(b), 1e-5).expect("layer_norm")
        });
    }
    group.finish();
}

const WINATTN_SHAPES: [(usize, usize, usize, usize); 2] = [(128, 3, 64, 32), (32, 6, 64, 32)];

fn winattn(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(4);
    let mut group = c.benchmark_group("winattn");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (nw, heads, t, hd) in WINATTN_SHAPES {
        let mut qkv = || Tensor::randn(&[nw, heads, t, hd], DType::F32, &mut rng).variable();
        let (q, k, v) = (qkv(), qkv(), qkv());
        let bias = Tensor::randn(&[heads, t, t], DType::F32, &mut rng).variable();
        let g = Tensor::randn(&[nw, heads, t, hd], DType::F32, &mut rng);
        let scale = (hd as f64).powf(-0.5);
        let id = format!("({nw},{heads},{t},{hd})");
        let f = || window_attention(&q, &k, &v, &bias, None, scale).expect("window_attention");
        group.bench_function(format!("fwd {id}"), |b| b.iter(f));
        group.bench_function(format!("fwd+bwd {id}"), |b| {
            b.iter(|| {
                grad(
                    &[f()],
                    Some(std::slice::from_ref(&g)),
                    &[q.clone(), k.clone(), v.clone(), bias.clone()],
                    false,
                )
                .expect("grad")
            })
        });
    }
    group.finish();
}

/// The diffusion U-Net's multi-head attention (guided-diffusion `QKVAttentionLegacy`) on
/// (batch, heads, tokens, head channels) of the CPU anchors' diff32 / diff64 models at 64×64
/// (attention at 16×16 and 8×8, 4 heads): qkv [B, heads·3·C, T]; fwd+bwd gives qkv's gradient.
const MHA_SHAPES: [(usize, usize, usize, usize); 4] = [
    (16, 4, 256, 24),
    (16, 4, 64, 32),
    (16, 4, 256, 48),
    (16, 4, 64, 64),
];

fn mha(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(10);
    let mut group = c.benchmark_group("mha");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (bs, heads, t, ch) in MHA_SHAPES {
        let qkv = Tensor::randn(&[bs, heads * 3 * ch, t], DType::F32, &mut rng).variable();
        let g = Tensor::randn(&[bs, heads * ch, t], DType::F32, &mut rng);
        let id = format!("({bs},{heads},{t},{ch})");
        let f = || qkv_attention_legacy(&qkv, heads).expect("qkv_attention_legacy");
        group.bench_function(format!("fwd {id}"), |b| b.iter(f));
        group.bench_function(format!("fwd+bwd {id}"), |b| {
            b.iter(|| {
                grad(
                    &[f()],
                    Some(std::slice::from_ref(&g)),
                    std::slice::from_ref(&qkv),
                    false,
                )
                .expect("grad")
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches, conv3x3, matmul, modconv, gn_silu, norms, winattn, mha
);
criterion_main!(benches);
