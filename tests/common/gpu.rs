//! Helpers shared by the CUDA parity tests: the GPU or a printed skip, a fresh printed seed,
//! tolerances and the relative error of a GPU result against its CPU reference.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use brainsynth::backend::cpu::{self, CpuKernels};
use brainsynth::backend::cuda;
use brainsynth::ops::audit;
use brainsynth::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub const GPU: Device = Device::Cuda(0);

/// A test's hold on the GPU: while it lives, the test's CPU side runs the reference kernels
/// (on this test's thread only; tests beside it keep their own choice).
pub struct Gpu {
    pub device: Device,
    _reference: cpu::KernelsGuard,
}

/// The GPU, or None after printing why the test is skipped. Keep the value for the whole test
/// (`let Some(_gpu) = ...`): the CPU side is on the reference kernels while it lives. Only "no
/// driver / no device" may skip, and not when a GPU is expected (`BRAINSYNTH_REQUIRE_GPU=1`, the
/// emulator build): then, and when the device is there but its kernels do not load, the test
/// fails.
pub fn gpu_or_skip(test: &str) -> Option<Gpu> {
    match cuda::available_or_skip(0) {
        Ok(None) => Some(Gpu {
            device: GPU,
            _reference: cpu::use_kernels(CpuKernels::Reference),
        }),
        Ok(Some(why)) => {
            println!("skipping {test}: {why}");
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

/// A fresh seed (printed), or BRAINSYNTH_SEED to reproduce a failure.
pub fn rng(test: &str) -> StdRng {
    StdRng::seed_from_u64(seed(test))
}

/// A fresh seed, printed (BRAINSYNTH_SEED repeats one).
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("BRAINSYNTH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("{test}: seed {seed}");
    seed
}

/// Runs the op group `group` of the kernel audit (`brainsynth::ops::audit`, the one
/// list of op cases that `brainsynth audit-kernels` runs too) and fails listing every row out
/// of tolerance.
pub fn audit_group(group: &str) {
    let Some(gpu) = gpu_or_skip(group) else {
        return;
    };
    let s = seed(group);
    let rows = audit::run_group(gpu.device, s, group).unwrap_or_else(|e| panic!("{e}"));
    assert!(!rows.is_empty(), "group {group} has no cases");
    println!("{}", audit::header());
    for r in &rows {
        println!("{r}");
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases of {group} failed (seed {s}):\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}

pub fn tol(dt: DType) -> f64 {
    match dt {
        DType::F32 => 1e-5,
        DType::F64 => 1e-12,
    }
}

/// ‖gpu − cpu‖ / ‖cpu‖ (absolute when the reference is zero).
pub fn rel_err(gpu: &Tensor, cpu: &Tensor) -> f64 {
    assert_eq!(gpu.device(), GPU, "result left the GPU");
    assert_eq!(gpu.shape(), cpu.shape());
    let g = gpu.to_device(Device::Cpu).unwrap().to_vec_f64().unwrap();
    let c = cpu.to_vec_f64().unwrap();
    let diff: f64 = g
        .iter()
        .zip(&c)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = c.iter().map(|b| b * b).sum::<f64>().sqrt();
    if norm == 0.0 { diff } else { diff / norm }
}

pub fn assert_close_tol(what: &str, gpu: &Tensor, cpu: &Tensor, t: f64) {
    let e = rel_err(gpu, cpu);
    assert!(e < t, "{what}: relative error {e:.3e} (limit {t:.0e})");
}

pub fn assert_close(what: &str, gpu: &Tensor, cpu: &Tensor) {
    assert_close_tol(what, gpu, cpu, tol(cpu.dtype()));
}

pub fn on_gpu(ts: &[Tensor]) -> Vec<Tensor> {
    ts.iter().map(|t| t.to_device(GPU).unwrap()).collect()
}
