//! The four handwritten CUDA kernels on the H200 anchor shapes (fp32 rows of
//! ../shared/anchors/h200-torch-*.json): conv3x3, modulated conv, group norm + SiLU, window
//! attention, forward and forward+backward. Run with `cargo bench --features cuda --bench
//! cuda_kernels`; without a GPU it prints why and exits. Times are wall clock around a
//! synchronised batch of launches, so they include launch overhead, as PyTorch's do.

use std::time::{Duration, Instant};

use brainsynth::autograd::no_grad;
use brainsynth::backend::cuda;
use brainsynth::backend::fused::{self, GnAct};
use brainsynth::ops::Conv2dParams;
use brainsynth::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion};
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

fn conv3x3(c: &mut Criterion, rng: &mut StdRng) {
    let mut g = c.benchmark_group("conv3x3");
    let p = Conv2dParams::same(3);
    for (n, cin, cout, hw) in [
        (32, 512, 512, 32),
        (32, 256, 256, 64),
        (32, 128, 128, 128),
        (32, 64, 64, 256),
        (16, 32, 32, 256),
        (16, 5, 64, 256),
    ] {
        let x = rand(&[n, cin, hw, hw], rng);
        let w = rand(&[cout, cin, 3, 3], rng);
        let dy = rand(&[n, cout, hw, hw], rng);
        let id = format!("{n}x{cin}x{cout}x{hw}");
        g.bench_function(BenchmarkId::new("fwd", &id), |b| {
            b.iter_custom(|it| timed(it, &mut || drop(x.conv2d(&w, p).expect("conv"))))
        });
        g.bench_function(BenchmarkId::new("fwd+bwd", &id), |b| {
            b.iter_custom(|it| {
                timed(it, &mut || {
                    drop(x.conv2d(&w, p).expect("conv"));
                    drop(dy.conv2d_backward_data(&w, x.shape(), p).expect("dgrad"));
                    drop(x.conv2d_backward_weight(&dy, w.shape(), p).expect("wgrad"));
                })
            })
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
        let x = rand(&[n, cin, hw, hw], rng);
        let w = rand(&[cout, cin, 3, 3], rng);
        let s = rand(&[n, cin], rng);
        let dy = rand(&[n, cout, hw, hw], rng);
        let id = format!("{n}x{cin}x{cout}x{hw}");
        g.bench_function(BenchmarkId::new("fwd", &id), |b| {
            b.iter_custom(|it| {
                timed(it, &mut || {
                    drop(fused::modulated_conv2d(&x, &w, &s, 1, true, 1e-8).expect("modconv"))
                })
            })
        });
        g.bench_function(BenchmarkId::new("fwd+bwd", &id), |b| {
            b.iter_custom(|it| {
                timed(it, &mut || {
                    let o = fused::modulated_conv2d(&x, &w, &s, 1, true, 1e-8).expect("modconv");
                    drop(
                        fused::modulated_conv2d_backward(&dy, &x, &w, &s, &o, 1, true, 1e-8)
                            .expect("modconv bwd"),
                    );
                })
            })
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
        let x = rand(&[n, ch, hw, hw], rng);
        let (gamma, beta) = (rand(&[ch], rng), rand(&[ch], rng));
        let dy = rand(&[n, ch, hw, hw], rng);
        let id = format!("{n}x{ch}x{hw}x{groups}");
        g.bench_function(BenchmarkId::new("fwd", &id), |b| {
            b.iter_custom(|it| {
                timed(it, &mut || {
                    drop(
                        fused::group_norm(&x, &gamma, &beta, groups, 1e-5, GnAct::Silu)
                            .expect("gn"),
                    )
                })
            })
        });
        g.bench_function(BenchmarkId::new("fwd+bwd", &id), |b| {
            b.iter_custom(|it| {
                timed(it, &mut || {
                    let o = fused::group_norm(&x, &gamma, &beta, groups, 1e-5, GnAct::Silu)
                        .expect("gn");
                    drop(
                        fused::group_norm_backward(
                            &dy,
                            &x,
                            &gamma,
                            &beta,
                            &o.mean,
                            &o.rstd,
                            groups,
                            GnAct::Silu,
                        )
                        .expect("gn bwd"),
                    );
                })
            })
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
        let (q, k, v) = (
            rand(&[b, h, n, d], rng),
            rand(&[b, h, n, d], rng),
            rand(&[b, h, n, d], rng),
        );
        let bias = rand(&[h, n, n], rng);
        let dout = rand(&[b, h, n, d], rng);
        let scale = 1.0 / (d as f64).sqrt();
        let id = format!("{b}x{h}x{n}x{d}");
        g.bench_function(BenchmarkId::new("fwd", &id), |bn| {
            bn.iter_custom(|it| {
                timed(it, &mut || {
                    drop(fused::window_attention(&q, &k, &v, Some(&bias), None, scale).expect("wa"))
                })
            })
        });
        g.bench_function(BenchmarkId::new("fwd+bwd", &id), |bn| {
            bn.iter_custom(|it| {
                timed(it, &mut || {
                    let o =
                        fused::window_attention(&q, &k, &v, Some(&bias), None, scale).expect("wa");
                    drop(
                        fused::window_attention_backward(
                            &dout,
                            &q,
                            &k,
                            &v,
                            Some(&bias),
                            None,
                            scale,
                            &o.o,
                            &o.lse,
                        )
                        .expect("wa bwd"),
                    );
                })
            })
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
    no_grad(|| {
        conv3x3(&mut c, &mut rng);
        modconv(&mut c, &mut rng);
        gn_silu(&mut c, &mut rng);
        winattn(&mut c, &mut rng);
    });
    c.final_summary();
}
