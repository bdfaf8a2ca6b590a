//! CPU time per call of the attention and norm ops (the `cpu_kernels` bench's shapes, plus the
//! diffusion U-Net's multi-head attention), forward and forward+backward through the public
//! ops and autograd, measured as the process's user+system time: on a shared machine this
//! tracks a kernel's efficiency much better than wall time. Linux only (reads /proc/self/stat).
//! Pair with `python benches/torch_attn_norm.py 1`.
//!
//!     BRAINSYNTH_THREADS=1 cargo bench --bench attn_norm_cpu_time -- [ITERS] [FILTER]
//!
//! (A bench target that `cargo bench` alone skips.)

use brainsynth::autograd::grad;
use brainsynth::models::diffusion::qkv_attention::qkv_attention_legacy;
use brainsynth::ops::attention::window_attention;
use brainsynth::ops::norm::{group_norm_silu, instance_norm};
use brainsynth::{DType, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// User + system CPU time of this process so far, in ms (10 ms ticks).
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 10.0)
}

/// (CPU ms, wall ms) per call of `f` over `iters` calls after one warm-up call.
fn measure(iters: usize, f: &dyn Fn()) -> (Option<f64>, f64) {
    f();
    let (c0, t0) = (cpu_ms(), std::time::Instant::now());
    for _ in 0..iters {
        f();
    }
    let wall = t0.elapsed().as_secs_f64() * 1e3 / iters as f64;
    let cpu = match (c0, cpu_ms()) {
        (Some(a), Some(b)) => Some((b - a) / iters as f64),
        _ => None,
    };
    (cpu, wall)
}

fn report(iters: usize, name: &str, shape: &str, fwd: &dyn Fn() -> Tensor, vars: &[Tensor]) {
    let g = {
        let y = fwd();
        Tensor::randn(y.shape(), DType::F32, &mut StdRng::seed_from_u64(99))
    };
    let fb = || {
        std::hint::black_box(
            grad(&[fwd()], Some(std::slice::from_ref(&g)), vars, false).expect("grad"),
        );
    };
    let (fc, fw) = measure(iters, &|| {
        std::hint::black_box(fwd());
    });
    let (bc, bw) = measure(iters, &fb);
    let c = |x: Option<f64>| x.map_or("?".to_string(), |v| format!("{v:8.3}"));
    println!(
        "{name:8} {shape:18} fwd wall {fw:8.3} ms cpu {} ms | fwd+bwd wall {bw:8.3} ms cpu {} ms",
        c(fc),
        c(bc)
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let iters: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(20);
    let filter = args.get(1).cloned().unwrap_or_default();
    let on = |name: &str| name.contains(&filter);
    let mut rng = StdRng::seed_from_u64(0);
    if on("winattn") {
        for (nw, h, t, hd) in [(128, 3, 64, 32), (32, 6, 64, 32)] {
            let mut r = || Tensor::randn(&[nw, h, t, hd], DType::F32, &mut rng).variable();
            let (q, k, v) = (r(), r(), r());
            let b = Tensor::randn(&[h, t, t], DType::F32, &mut rng).variable();
            let scale = (hd as f64).powf(-0.5);
            let f = || window_attention(&q, &k, &v, &b, None, scale).expect("window_attention");
            let vars = [q.clone(), k.clone(), v.clone(), b.clone()];
            report(
                iters,
                "winattn",
                &format!("{:?}", (nw, h, t, hd)),
                &f,
                &vars,
            );
        }
    }
    if on("mha") {
        for (bs, heads, t, ch) in [
            (16, 4, 256, 24),
            (16, 4, 64, 32),
            (16, 4, 256, 48),
            (16, 4, 64, 64),
        ] {
            let qkv = Tensor::randn(&[bs, heads * 3 * ch, t], DType::F32, &mut rng).variable();
            let f = || qkv_attention_legacy(&qkv, heads).expect("qkv_attention_legacy");
            report(
                iters,
                "mha",
                &format!("{:?}", (bs, heads, t, ch)),
                &f,
                &[qkv.clone()],
            );
        }
    }
    if on("gn_silu") {
        for (n, c, hw, g) in [(8, 128, 64, 32), (8, 256, 32, 32)] {
            let x = Tensor::randn(&[n, c, hw, hw], DType::F32, &mut rng).variable();
            let f = || group_norm_silu(&x, g, None, None, 1e-5).expect("group_norm_silu");
            report(
                iters,
                "gn_silu",
                &format!("{:?}", (n, c, hw, g)),
                &f,
                &[x.clone()],
            );
        }
    }
    if on("instnorm") {
        for (n, c, hw) in [(8, 32, 64), (8, 256, 8)] {
            let x = Tensor::randn(&[n, c, hw, hw], DType::F32, &mut rng).variable();
            let w = Tensor::randn(&[c], DType::F32, &mut rng).variable();
            let b = Tensor::randn(&[c], DType::F32, &mut rng).variable();
            let f = || instance_norm(&x, Some(&w), Some(&b), 1e-5).expect("instance_norm");
            let vars = [x.clone(), w.clone(), b.clone()];
            report(iters, "instnorm", &format!("{:?}", (n, c, hw)), &f, &vars);
        }
    }
}
