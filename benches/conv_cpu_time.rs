//! CPU time of the fast conv kernels (forward, backward-data, backward-weight) for a conv3x3
//! shape, measured as the process's user+system time over the iterations: on a shared machine
//! this tracks a kernel's efficiency (GFLOP per CPU-second) much better than wall time.
//! Linux only (reads /proc/self/stat). Pair with `benches/torch_conv_cpu_time.py`.
//!
//!     BRAINSYNTH_THREADS=1 cargo bench --bench conv_cpu_time -- N CIN COUT HW ITERS
//!
//! (A bench target that `cargo bench` alone skips: it needs a shape.)

use brainsynth::ops::conv::fast as fast_conv;
use brainsynth::ops::conv::reference::ConvGeom;

/// User + system CPU time of this process so far, in ms (10 ms ticks).
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 10.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let [n, ci, co, hw, iters] = args[..] else {
        eprintln!("usage: conv_cpu_time N CIN COUT HW ITERS");
        std::process::exit(2);
    };
    let g = ConvGeom {
        n,
        cin: ci,
        h: hw,
        w: hw,
        cout: co,
        kh: 3,
        kw: 3,
        oh: hw,
        ow: hw,
        stride: (1, 1),
        pad: (1, 1),
        dil: (1, 1),
        groups: 1,
    };
    let val = |i: usize, m: usize| ((i * 7919) % m) as f32 / m as f32 - 0.5;
    let x: Vec<f32> = (0..n * ci * hw * hw).map(|i| val(i, 1000)).collect();
    let w: Vec<f32> = (0..co * ci * 9).map(|i| val(i, 97)).collect();
    let dy: Vec<f32> = (0..n * co * hw * hw).map(|i| val(i, 101)).collect();
    let flops = 2.0 * (n * co * ci * 9 * hw * hw) as f64;
    let mut total = 0.0;
    let mut run = |name: &str, f: &dyn Fn() -> Vec<f32>| {
        std::hint::black_box(f());
        let (c0, t0) = (cpu_ms(), std::time::Instant::now());
        for _ in 0..iters {
            std::hint::black_box(f());
        }
        let wall = t0.elapsed().as_secs_f64() * 1e3 / iters as f64;
        match (c0, cpu_ms()) {
            (Some(a), Some(b)) => {
                let cpu = (b - a) / iters as f64;
                total += cpu;
                println!(
                    "{name:7} cpu {cpu:7.2} ms  wall {wall:7.2} ms  {:6.1} GFLOP/cpu-s",
                    flops / cpu / 1e6
                );
            }
            _ => println!("{name:7} wall {wall:7.2} ms (no /proc/self/stat: CPU time unknown)"),
        }
    };
    run("fwd", &|| fast_conv::conv2d(&x, &w, &g));
    run("data", &|| fast_conv::conv2d_backward_data(&dy, &w, &g));
    run("weight", &|| fast_conv::conv2d_backward_weight(&x, &dy, &g));
    println!("({n},{ci},{co},{hw}) fwd+bwd cpu {total:.2} ms");
}
