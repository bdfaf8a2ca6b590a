//! The four ops the models run on the handwritten CUDA kernels, on the H200 anchor shapes (fp32
//! rows of ../shared/anchors/h200-torch-*.json): conv3x3, and — through the models' own ops —
//! the fused modulated conv (`ops::modconv`), group norm + SiLU (`ops::norm`) and window
//! attention (`ops::attention`); forward, and forward + first-order backward by autograd (what a
//! training step runs). Run with `cargo bench --features cuda --bench cuda_kernels`; without a
//! GPU it prints why and exits. Times are wall clock around a synchronised batch of launches, so
//! they include launch overhead, as PyTorch's do.

use std::time::{Duration, Instant};

use brainsynth::autograd::{grad, no_grad};
use brainsynth::backend::cuda;
use brainsynth::ops::attention::window_attention;
use brainsynth::ops::norm::group_norm_silu;
use brainsynth::ops::{Conv2dParams, ModConvParams, modulated_conv2d};
use brainsynth::{DType, Device, Result, Tensor};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, measurement::WallTime};
use rand::SeedableRng;
use rand::rngs::StdRng;

const GPU: Device = Device::Cuda(0);

fn rand(shape: &[usize], rng: &mut StdRng) -> Tensor {
    Tensor::rand_uniform(shape, -1.0, 1.0, DType::F32, rng)
        .to_device(GPU)
        .expect("copy to the GPU")
}

/// Time `iters` runs of `f`, waiting for the GPU at the end.
fn timed(iters: u64, f: &mut impl FnMut()) -> Duration {
    let be = cuda::backend(0).expect("checked in main");
    be.synchronize().expect("synchronize");
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    be.synchronize().expect("synchronize");
    t.elapsed()
}

/// "fwd": `f` on `ins` without history; "fwd+bwd": `f` on variables and the gradients of every
/// input for the upstream gradient `dy`.
fn bench_op(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    ins: Vec<Tensor>,
    dy: Tensor,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    g.bench_function(BenchmarkId::new("fwd", id), |b| {
        b.iter_custom(|it| timed(it, &mut || drop(no_grad(|| f(&ins)).expect("forward"))))
    });
    let vars: Vec<Tensor> = ins.iter().map(|t| t.variable()).collect();
    g.bench_function(BenchmarkId::new("fwd+bwd", id), |b| {
        b.iter_custom(|it| {
            timed(it, &mut || {
                let y = f(&vars).expect("forward");
                let dy = std::slice::from_ref(&dy);
                drop(grad(&[y], Some(dy), &vars, false).expect("backward"))
            })
        })
    });
}

fn conv3x3(c: &mut Criterion, rng: &mut StdRng) {
    let mut g = c.benchmark_group("conv3x3");
    for (n, cin, cout, hw) in [
        (32, 512, 512, 32),
        (32, 256, 256, 64),
        (32, 128, 128, 128),
        (32, 64, 64, 256),
        (16, 32, 32, 256),
        (16, 5, 64, 256),
    ] {
        let ins = vec![rand(&[n, cin, hw, hw], rng), rand(&[cout, cin, 3, 3], rng)];
        let dy = rand(&[n, cout, hw, hw], rng);
        bench_op(&mut g, &format!("{n}x{cin}x{cout}x{hw}"), ins, dy, |v| {
            v[0].conv2d(&v[1], Conv2dParams::same(3))
        });
    }
}

fn modconv(c: &mut Criterion, rng: &mut StdRng) {
    let mut g = c.benchmark_group("modconv");
    for (n, cin, cout, hw) in [
        (32, 512, 512, 32),
        (32, 256, 256, 64),
        (32, 128, 128, 128),
        (32, 64, 64, 256),
    ] {
        let ins = vec![
            rand(&[n, cin, hw, hw], rng),
            rand(&[cout, cin, 3, 3], rng),
            rand(&[n, cin], rng),
        ];
        let dy = rand(&[n, cout, hw, hw], rng);
        bench_op(&mut g, &format!("{n}x{cin}x{cout}x{hw}"), ins, dy, |v| {
            modulated_conv2d(&v[0], &v[1], &v[2], None, None, ModConvParams::same(3))
        });
    }
}

fn gn_silu(c: &mut Criterion, rng: &mut StdRng) {
    let mut g = c.benchmark_group("gn_silu");
    for (n, ch, hw, groups) in [
        (16, 128, 128, 32),
        (16, 256, 64, 32),
        (16, 512, 32, 32),
        (64, 64, 64, 32),
    ] {
        let ins = vec![
            rand(&[n, ch, hw, hw], rng),
            rand(&[ch], rng),
            rand(&[ch], rng),
        ];
        let dy = rand(&[n, ch, hw, hw], rng);
        bench_op(&mut g, &format!("{n}x{ch}x{hw}x{groups}"), ins, dy, |v| {
            group_norm_silu(&v[0], groups, Some(&v[1]), Some(&v[2]), 1e-5)
        });
    }
}

fn winattn(c: &mut Criterion, rng: &mut StdRng) {
    let mut g = c.benchmark_group("winattn");
    for (b, h, n, d) in [
        (1024, 3, 64, 32),
        (256, 6, 64, 32),
        (64, 12, 64, 32),
        (1024, 3, 49, 32),
        (21904, 3, 49, 16),
    ] {
        let ins = vec![
            rand(&[b, h, n, d], rng),
            rand(&[b, h, n, d], rng),
            rand(&[b, h, n, d], rng),
            rand(&[h, n, n], rng),
        ];
        let dy = rand(&[b, h, n, d], rng);
        let scale = 1.0 / (d as f64).sqrt();
        bench_op(&mut g, &format!("{b}x{h}x{n}x{d}"), ins, dy, |v| {
            window_attention(&v[0], &v[1], &v[2], &v[3], None, scale)
        });
    }
}

fn main() {
    match cuda::available_or_skip(0) {
        Ok(None) => {}
        Ok(Some(why)) => {
            println!("skipping the CUDA benches: {why}");
            return;
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    if cuda::EMULATED {
        println!(
            "note: the kernels run on the CPU emulator (cuda-emu): these timings mean nothing"
        );
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(0x5eed);
    conv3x3(&mut c, &mut rng);
    modconv(&mut c, &mut rng);
    gn_silu(&mut c, &mut rng);
    winattn(&mut c, &mut rng);
    c.final_summary();
}
