//! `audit-kernels` and `bench-kernels`: check and time the CUDA kernels on a user's GPU, where no
//! Rust toolchain (and so no `cargo test`) may be installed.
//!
//! `audit-kernels` runs the op cases of `crate::ops::audit` (the ones the parity tests
//! run) on the device and on the CPU reference and prints one row per op. `bench-kernels` times
//! the four ops that the models run on the handwritten kernels (conv3x3, and through `ops::modconv`,
//! `ops::norm` and `ops::attention` the fused modulated conv, group norm + SiLU and window
//! attention; forward, and forward + first-order backward by autograd) on the shapes of the
//! project's H200 anchors and prints PyTorch's
//! figures beside them (table [`ANCHORS`]). Both work on the CPU emulator (`cuda-emu`) too, where
//! the bench runs tiny shapes once and its timings mean nothing. Without the `cuda` feature both
//! say so and fail.

use crate::Error;
use crate::cli::{Args, CliError, Command, usage};
use crate::tensor::Device;

/// `brainsynth audit-kernels`.
pub const AUDIT_KERNELS: Command = Command {
    name: "audit-kernels",
    summary: "check every GPU op against the CPU reference (forward, backward, second order)",
    help: "\
Usage: brainsynth audit-kernels [--device cuda:N] [--seed S] [--group NAME]

Runs every op of the CUDA backend on fresh random inputs on the GPU and on the CPU reference
kernels: the forward output, the gradients of every input and, where the GAN regularisers need
them (conv, modulated conv, upfirdn, bias + leaky ReLU, minibatch std, norms), the gradients of
a gradient. Prints one row per op: the largest relative error ||gpu - cpu|| / ||cpu|| over
everything compared, the tolerance (1e-5 in float32, 1e-12 in float64) and pass or FAIL. Exits
with status 1 when any op fails. Needs a build with the `cuda` feature.

Options:
  --device D     the GPU, cuda or cuda:N (default cuda:0)
  --seed S       seed of the random inputs (default: fresh, printed, so a failure can be
                 repeated)
  --group NAME   only this group of ops (unary, binary, views, reduce, matmul, conv,
                 conv_anchor, fused_group_norm, fused_window_attention, fused_modconv, norms,
                 attention, resampling, stylegan)
  -h, --help     this help
",
    run: cmd_audit_kernels,
};

/// `brainsynth bench-kernels`.
pub const BENCH_KERNELS: Command = Command {
    name: "bench-kernels",
    summary: "time the GPU kernels on the anchor shapes beside PyTorch's H200 figures",
    help: "\
Usage: brainsynth bench-kernels [--device cuda:N] [--iters N] [--op NAME]

Times the ops the models run on the handwritten CUDA kernels, called as the models call them
(forward, and forward + backward by autograd), in float32 on the shapes of the H200 anchors:
conv3x3 and modulated conv (N, Cin, Cout, H=W), group norm + SiLU (N, C, H=W, groups), window
attention (windows, heads, tokens, head dim; with a relative-position bias), forward and
forward+backward. Prints the median over the iterations beside PyTorch 2.11's figures on one
NVIDIA H200 (strict float32, TF32 off) and the ratio ours / PyTorch. Times are wall clock around
synchronised launches, as PyTorch's CUDA-event times include launch overhead. Compare on an
H200-class GPU; elsewhere only the ratios between rows say something.

On the CPU emulator (a build with `cuda-emu`) it runs tiny shapes once: its timings mean
nothing. Needs a build with the `cuda` feature.

Options:
  --device D     the GPU, cuda or cuda:N (default cuda:0)
  --iters N      timed runs per shape after two warm-up runs (default 10)
  --op NAME      only conv3x3, modconv, gn_silu or winattn
  -h, --help     this help
",
    run: cmd_bench_kernels,
};

/// One fp32 row of the anchors: PyTorch's median times in ms.
// Without the `cuda` feature only `op` is read (to validate `--op`); the table stays compiled so
// the option's names are checked the same way in every build.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub struct Anchor {
    /// conv3x3, modconv, gn_silu or winattn.
    pub op: &'static str,
    pub shape: [usize; 4],
    pub fwd_ms: f64,
    pub fwd_bwd_ms: f64,
    /// Window attention only: PyTorch's matmul-softmax-matmul form (the main figures are its
    /// fused scaled_dot_product_attention).
    pub mm_ms: Option<(f64, f64)>,
}

const fn a(op: &'static str, shape: [usize; 4], fwd_ms: f64, fwd_bwd_ms: f64) -> Anchor {
    Anchor {
        op,
        shape,
        fwd_ms,
        fwd_bwd_ms,
        mm_ms: None,
    }
}

const fn w(shape: [usize; 4], sdpa: (f64, f64), mm: (f64, f64)) -> Anchor {
    Anchor {
        op: "winattn",
        shape,
        fwd_ms: sdpa.0,
        fwd_bwd_ms: sdpa.1,
        mm_ms: Some(mm),
    }
}

/// The fp32 rows of the anchors' `h200-torch-2026-11-28.json` (PyTorch 2.11 + cuDNN 9.19, one
/// NVIDIA H200, TF32 off, medians of CUDA-event times after warm-up; made by the anchors'
/// `torch_kernels.py`).
pub const ANCHORS: &[Anchor] = &[
    a("conv3x3", [32, 512, 512, 32], 3.6, 8.4437),
    a("conv3x3", [32, 256, 256, 64], 3.6866, 7.332),
    a("conv3x3", [32, 128, 128, 128], 3.7229, 8.0215),
    a("conv3x3", [32, 64, 64, 256], 3.7761, 12.4151),
    a("conv3x3", [16, 32, 32, 256], 0.7493, 2.9009),
    a("conv3x3", [16, 5, 64, 256], 0.2923, 1.3011),
    a("modconv", [32, 512, 512, 32], 4.3848, 12.3986),
    a("modconv", [32, 256, 256, 64], 3.8565, 13.4832),
    a("modconv", [32, 128, 128, 128], 3.8437, 15.042),
    a("modconv", [32, 64, 64, 256], 3.9888, 13.3343),
    a("gn_silu", [16, 128, 128, 32], 0.2575, 0.6851),
    a("gn_silu", [16, 256, 64, 32], 0.1496, 0.3903),
    a("gn_silu", [16, 512, 32, 32], 0.0904, 0.3288),
    a("gn_silu", [64, 64, 64, 32], 0.1579, 0.4108),
    w([1024, 3, 64, 32], (0.1527, 0.588), (0.2206, 0.7764)),
    w([256, 6, 64, 32], (0.0932, 0.3728), (0.1269, 0.7424)),
    w([64, 12, 64, 32], (0.053, 0.3713), (0.1331, 0.7636)),
    w([1024, 3, 49, 32], (0.1813, 0.6464), (0.1753, 0.7434)),
    w([21904, 3, 49, 16], (3.062, 9.9911), (2.3036, 6.3932)),
];

/// The GPU of `--device` (a usage error for the CPU).
fn gpu_ordinal(args: &mut Args) -> Result<usize, CliError> {
    let d: Device = args.parse_or("--device", Device::Cuda(0))?;
    match d {
        Device::Cuda(i) => Ok(i),
        Device::Cpu => Err(usage(
            "--device must be a GPU (cuda or cuda:N): the audit and the bench compare a GPU with the CPU",
        )),
    }
}

fn cmd_audit_kernels(mut args: Args) -> Result<(), CliError> {
    let ordinal = gpu_ordinal(&mut args)?;
    let seed: Option<u64> = args.parse("--seed")?;
    let group = args.value("--group")?;
    args.finish()?;
    imp::audit(ordinal, seed, group.as_deref())
}

fn cmd_bench_kernels(mut args: Args) -> Result<(), CliError> {
    let ordinal = gpu_ordinal(&mut args)?;
    let iters: usize = args.parse_or("--iters", 10)?;
    let op = args.value("--op")?;
    args.finish()?;
    if iters == 0 {
        return Err(usage("--iters must be at least 1"));
    }
    if let Some(o) = &op
        && !ANCHORS.iter().any(|a| a.op == o)
    {
        return Err(usage(format!(
            "--op {o:?}: the ops are conv3x3, modconv, gn_silu and winattn"
        )));
    }
    imp::bench(ordinal, iters, op.as_deref())
}

/// The error of a build without the `cuda` feature.
#[cfg_attr(feature = "cuda", allow(dead_code))]
fn no_cuda(cmd: &str) -> CliError {
    CliError::Run(Error::Cuda(format!(
        "this brainsynth was built without CUDA support, so {cmd} has no GPU to check; rebuild \
         it with `cargo build --release --features cuda` (needs NVIDIA's nvcc)"
    )))
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::{CliError, no_cuda};

    pub(super) fn audit(_: usize, _: Option<u64>, _: Option<&str>) -> Result<(), CliError> {
        Err(no_cuda("audit-kernels"))
    }

    pub(super) fn bench(_: usize, _: usize, _: Option<&str>) -> Result<(), CliError> {
        Err(no_cuda("bench-kernels"))
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::{ANCHORS, Anchor, CliError, usage};
    use crate::autograd::{grad, no_grad};
    use crate::backend::cuda;
    use crate::ops::attention::window_attention;
    use crate::ops::audit;
    use crate::ops::norm::group_norm_silu;
    use crate::ops::{Conv2dParams, ModConvParams, modulated_conv2d};
    use crate::tensor::{DType, Device, Tensor};
    use crate::{Error, Result};

    const EMU_NOTE: &str = "note: the kernels run on the CPU emulator (a cuda-emu build): \
                            results check logic only, and timings mean nothing";

    pub(super) fn audit(
        ordinal: usize,
        seed: Option<u64>,
        group: Option<&str>,
    ) -> Result<(), CliError> {
        cuda::available(ordinal)?;
        let groups: Vec<&str> = match group {
            Some(g) => {
                if !audit::GROUPS.iter().any(|x| x.name == g) {
                    return Err(usage(format!(
                        "--group {g:?} is not a group; the groups are {}",
                        audit::GROUPS
                            .iter()
                            .map(|x| x.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                vec![g]
            }
            None => audit::GROUPS.iter().map(|x| x.name).collect(),
        };
        let seed = seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        if cuda::EMULATED {
            println!("{EMU_NOTE}");
        }
        let device = Device::Cuda(ordinal);
        println!("kernel audit on {device}, seed {seed}");
        println!("{}", audit::header());
        let (mut total, mut failed) = (0usize, 0usize);
        for g in groups {
            for row in audit::run_group(device, seed, g)? {
                total += 1;
                if !row.passed() {
                    failed += 1;
                }
                println!("{row}");
            }
        }
        if failed > 0 {
            return Err(CliError::Run(Error::Cuda(format!(
                "{failed} of {total} ops differ from the CPU reference beyond tolerance on \
                 {device} (repeat with --seed {seed})"
            ))));
        }
        println!("all {total} ops within tolerance");
        Ok(())
    }

    /// What runs on the emulator instead of an anchor shape: the same op, tiny.
    fn tiny(a: &Anchor) -> [usize; 4] {
        let s = a.shape;
        match a.op {
            "gn_silu" => [1, 8, 4, 4],
            "winattn" => [1, s[1].min(2), s[2], s[3]],
            _ => [1, s[1].min(4), s[2].min(4), 6],
        }
    }

    fn rand(shape: &[usize], rng: &mut StdRng, device: Device) -> Result<Tensor> {
        Tensor::rand_uniform(shape, -1.0, 1.0, DType::F32, rng).to_device(device)
    }

    /// A forward and a forward+backward pass of one op on one shape.
    type Pass = Box<dyn Fn() -> Result<()>>;

    /// The forward of `f` on `ins` (no history) and the forward with the gradients of every
    /// input for the upstream gradient `dy` (first order: what a training step runs).
    fn op_passes<F>(ins: Vec<Tensor>, dy: Tensor, f: F) -> (Pass, Pass)
    where
        F: Fn(&[Tensor]) -> Result<Tensor> + Clone + 'static,
    {
        let vars: Vec<Tensor> = ins.iter().map(|t| t.variable()).collect();
        let f2 = f.clone();
        (
            Box::new(move || no_grad(|| f2(&ins)).map(drop)),
            Box::new(move || {
                let y = f(&vars)?;
                grad(&[y], Some(std::slice::from_ref(&dy)), &vars, false).map(drop)
            }),
        )
    }

    /// The op of an anchor as the models call it (so the bench times what they run).
    fn passes(op: &str, s: [usize; 4], device: Device, rng: &mut StdRng) -> Result<(Pass, Pass)> {
        Ok(match op {
            "conv3x3" => {
                let (n, cin, cout, hw) = (s[0], s[1], s[2], s[3]);
                let ins = vec![
                    rand(&[n, cin, hw, hw], rng, device)?,
                    rand(&[cout, cin, 3, 3], rng, device)?,
                ];
                let dy = rand(&[n, cout, hw, hw], rng, device)?;
                op_passes(ins, dy, |v| v[0].conv2d(&v[1], Conv2dParams::same(3)))
            }
            "modconv" => {
                let (n, cin, cout, hw) = (s[0], s[1], s[2], s[3]);
                let ins = vec![
                    rand(&[n, cin, hw, hw], rng, device)?,
                    rand(&[cout, cin, 3, 3], rng, device)?,
                    rand(&[n, cin], rng, device)?,
                ];
                let dy = rand(&[n, cout, hw, hw], rng, device)?;
                op_passes(ins, dy, |v| {
                    modulated_conv2d(&v[0], &v[1], &v[2], None, None, ModConvParams::same(3))
                })
            }
            "gn_silu" => {
                let (n, c, hw, g) = (s[0], s[1], s[2], s[3]);
                let ins = vec![
                    rand(&[n, c, hw, hw], rng, device)?,
                    rand(&[c], rng, device)?,
                    rand(&[c], rng, device)?,
                ];
                let dy = rand(&[n, c, hw, hw], rng, device)?;
                op_passes(ins, dy, move |v| {
                    group_norm_silu(&v[0], g, Some(&v[1]), Some(&v[2]), 1e-5)
                })
            }
            _ => {
                let (b, h, n, d) = (s[0], s[1], s[2], s[3]);
                let ins = vec![
                    rand(&[b, h, n, d], rng, device)?,
                    rand(&[b, h, n, d], rng, device)?,
                    rand(&[b, h, n, d], rng, device)?,
                    rand(&[h, n, n], rng, device)?,
                ];
                let dy = rand(&[b, h, n, d], rng, device)?;
                op_passes(ins, dy, |v| {
                    let scale = 1.0 / (v[0].shape()[3] as f64).sqrt();
                    window_attention(&v[0], &v[1], &v[2], &v[3], None, scale)
                })
            }
        })
    }

    /// Median wall time of `iters` synchronised runs of `f`, in ms, after `warm` runs.
    fn median_ms(be: &cuda::CudaBackend, f: &Pass, warm: usize, iters: usize) -> Result<f64> {
        for _ in 0..warm {
            f()?;
        }
        be.synchronize()?;
        let mut t = Vec::with_capacity(iters);
        for _ in 0..iters {
            let start = Instant::now();
            f()?;
            be.synchronize()?;
            t.push(start.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        Ok(t[t.len() / 2])
    }

    fn shape_str(s: &[usize; 4]) -> String {
        format!("({}, {}, {}, {})", s[0], s[1], s[2], s[3])
    }

    pub(super) fn bench(ordinal: usize, iters: usize, only: Option<&str>) -> Result<(), CliError> {
        let be = cuda::backend(ordinal)?;
        let device = Device::Cuda(ordinal);
        let (warm, iters) = if cuda::EMULATED {
            println!("{EMU_NOTE}; tiny shapes, one run each");
            (0, 1)
        } else {
            (2, iters)
        };
        println!(
            "float32 kernels on {device}, median of {iters} run(s); PyTorch: the anchors' \
             h200-torch-2026-11-28.json (H200, fp32; window attention: scaled_dot_product_attention, \
             matmul form in brackets)"
        );
        println!(
            "{:<8} {:<20} {:>9} {:>15} {:>6}  {:>9} {:>15} {:>6}",
            "op",
            "anchor shape",
            "fwd ms",
            "torch fwd ms",
            "ratio",
            "f+b ms",
            "torch f+b ms",
            "ratio"
        );
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for a in ANCHORS.iter().filter(|a| only.is_none_or(|o| o == a.op)) {
            let shape = if cuda::EMULATED { tiny(a) } else { a.shape };
            let (f, fb) = passes(a.op, shape, device, &mut rng)?;
            let fwd = median_ms(&be, &f, warm, iters)?;
            let fwd_bwd = median_ms(&be, &fb, warm, iters)?;
            be.empty_cache();
            let torch = |ms: f64, mm: Option<f64>| match mm {
                Some(m) => format!("{ms:.3} [{m:.3}]"),
                None => format!("{ms:.3}"),
            };
            let ratio = |ours: f64, theirs: f64| {
                if cuda::EMULATED {
                    "-".to_string()
                } else {
                    format!("{:.2}", ours / theirs)
                }
            };
            let ran = if cuda::EMULATED {
                format!("  (ran {})", shape_str(&shape))
            } else {
                String::new()
            };
            println!(
                "{:<8} {:<20} {:>9.3} {:>15} {:>6}  {:>9.3} {:>15} {:>6}{ran}",
                a.op,
                shape_str(&a.shape),
                fwd,
                torch(a.fwd_ms, a.mm_ms.map(|m| m.0)),
                ratio(fwd, a.fwd_ms),
                fwd_bwd,
                torch(a.fwd_bwd_ms, a.mm_ms.map(|m| m.1)),
                ratio(fwd_bwd, a.fwd_bwd_ms),
            );
        }
        Ok(())
    }
}
