//! Throughput of the memorisation audit (issue: "CPU throughput ≥ 70 % of the GEMM library's
//! peak on this machine"). Three rows, one sitting, FLOPs as criterion's throughput elements, so
//! criterion prints GFLOP/s as "Gelem/s":
//! - `gemm/square_1024`: the library's f32 GEMM at 1024³ (our matmul at a shape where it is at
//!   its peak on this machine);
//! - `gemm/audit_shape`: the same GEMM at the audit's block shape (`S · Rᵀ`, d = 64·64·5), with
//!   Rᵀ a transposed view and laid out contiguously; `gemm/audit_r_st`: the product as the audit
//!   runs it (`R · Sᵀ`, Sᵀ contiguous);
//! - `audit/…`: the whole audit of random 64×64×5 slices (reading, centring and normalising every
//!   image, the blocked product, the maximum per synthetic image), counted as its product's
//!   2·Ns·Nr·d FLOPs.
//!
//! The ratio audit / square GEMM is the figure the issue asks for (`benches/README.md`).

use std::time::Duration;

use brainsynth::data::slices::{CHANNELS, Slice};
use brainsynth::data::store::SliceStore;
use brainsynth::eval::memorisation::{AuditConfig, audit};
use brainsynth::{DType, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const SIZE: usize = 64;
const N_SYNTH: usize = 256;
const N_REAL: usize = 1024;

fn store(n: usize, rng: &mut StdRng) -> SliceStore {
    let mut s = SliceStore::new(SIZE, SIZE);
    s.slices = (0..n)
        .map(|i| Slice {
            subject: format!("s{i:05}"),
            index: 0,
            h: SIZE,
            w: SIZE,
            data: (0..CHANNELS * SIZE * SIZE)
                .map(|_| rng.random_range(0..=255u8))
                .collect(),
        })
        .collect();
    s
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let d = CHANNELS * SIZE * SIZE;
    let mut g = c.benchmark_group("memorization");
    g.sample_size(10).measurement_time(Duration::from_secs(10));

    let n = 1024;
    let a = Tensor::randn(&[n, n], DType::F32, &mut rng);
    let b = Tensor::randn(&[n, n], DType::F32, &mut rng);
    g.throughput(Throughput::Elements((2 * n * n * n) as u64));
    g.bench_function("gemm/square_1024", |bn| {
        bn.iter(|| a.matmul(&b).unwrap().to_vec_f32().unwrap())
    });

    let s = Tensor::randn(&[N_SYNTH, d], DType::F32, &mut rng);
    let r = Tensor::randn(&[N_REAL, d], DType::F32, &mut rng);
    let flops = (2 * N_SYNTH * N_REAL * d) as u64;
    g.throughput(Throughput::Elements(flops));
    g.bench_function("gemm/audit_shape", |bn| {
        bn.iter(|| {
            s.matmul(&r.transpose(0, 1).unwrap())
                .unwrap()
                .to_vec_f32()
                .unwrap()
        })
    });

    let rt = r.transpose(0, 1).unwrap().contiguous().unwrap();
    g.bench_function("gemm/audit_shape_rt_contiguous", |bn| {
        bn.iter(|| s.matmul(&rt).unwrap().to_vec_f32().unwrap())
    });

    // the audit's own orientation: Cᵀ = R · Sᵀ with Sᵀ laid out once per synthetic block
    let st = s.transpose(0, 1).unwrap().contiguous().unwrap();
    g.bench_function("gemm/audit_r_st", |bn| {
        bn.iter(|| r.matmul(&st).unwrap().to_vec_f32().unwrap())
    });

    let mut synth = store(N_SYNTH, &mut rng);
    let mut real = store(N_REAL, &mut rng);
    let cfg = AuditConfig::default();
    g.bench_function(format!("audit/{N_SYNTH}x{N_REAL}"), |bn| {
        bn.iter(|| audit(&mut synth, &mut real, &cfg, &mut |_, _| {}).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
