//! Op-level CPU profile: wall time, CPU time and call count per kernel name, for finding where a
//! training step spends its time. Off unless `BRAINSYNTH_PROFILE` is set (to anything but `0`)
//! or [`enable`] is called; when off, the cost is one relaxed atomic load per kernel call.
//! `BRAINSYNTH_PROFILE=shapes` keys the table by kernel name and input shapes.
//!
//! Two times per kernel: wall clock on the calling thread around it (a kernel that splits its
//! work over worker threads is timed once, as a whole), so the wall column adds up to the
//! step's time spent inside kernels; and the process's CPU time over the same span (all our
//! threads, on Linux), which other processes on a shared machine hardly disturb.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// 0 = not decided yet, 1 = off, 2 = on, 3 = on, keyed by shapes too.
static STATE: AtomicU8 = AtomicU8::new(0);
static TABLE: Mutex<Option<HashMap<String, Entry>>> = Mutex::new(None);

#[derive(Clone, Copy, Default)]
struct Entry {
    calls: u64,
    wall: Duration,
    cpu: Duration,
}

/// CPU time used so far by this process, all threads (None where we cannot read it).
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        unsafe extern "C" {
            fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
        }
        const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
        let mut t = Timespec { sec: 0, nsec: 0 };
        // SAFETY: clock_gettime writes one Timespec (two 64-bit fields on 64-bit Linux).
        let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
        if rc == 0 && t.sec >= 0 && (0..1_000_000_000).contains(&t.nsec) {
            return Some(Duration::new(t.sec as u64, t.nsec as u32));
        }
    }
    None
}

/// True when kernel times are being collected.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 | 3 => true,
        _ => {
            let v = std::env::var("BRAINSYNTH_PROFILE").unwrap_or_default();
            let state = match v.as_str() {
                "" | "0" => 1,
                "shapes" => 3,
                _ => 2,
            };
            STATE.store(state, Ordering::Relaxed);
            state > 1
        }
    }
}

/// True when the table is keyed by input shapes as well (`BRAINSYNTH_PROFILE=shapes`).
pub fn by_shape() -> bool {
    enabled() && STATE.load(Ordering::Relaxed) == 3
}

/// Start collecting (keyed by name, or by name and shapes), whatever the environment says.
pub fn enable_with(shapes: bool) {
    STATE.store(if shapes { 3 } else { 2 }, Ordering::Relaxed);
}

/// Start collecting, keyed as the environment says (by name unless it says `shapes`).
pub fn enable() {
    let shapes = std::env::var("BRAINSYNTH_PROFILE").is_ok_and(|v| v == "shapes");
    enable_with(shapes);
}

/// Stop collecting; the table is kept until [`reset`].
pub fn disable() {
    STATE.store(1, Ordering::Relaxed);
}

/// Forget everything collected so far.
pub fn reset() {
    if let Ok(mut t) = TABLE.lock() {
        *t = None;
    }
}

/// Add one call of `op` that took `wall` (and `cpu` of process CPU time).
pub fn record(op: &str, wall: Duration, cpu: Duration) {
    if let Ok(mut t) = TABLE.lock() {
        let e = t
            .get_or_insert_with(HashMap::new)
            .entry(op.to_string())
            .or_default();
        e.calls += 1;
        e.wall += wall;
        e.cpu += cpu;
    }
}

/// Time `f` under `op` when profiling is on.
pub fn timed<R>(op: &str, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let (t0, c0) = (Instant::now(), process_cpu_time());
    let r = f();
    let cpu = match (c0, process_cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    record(op, t0.elapsed(), cpu);
    r
}

/// Everything collected: `(op, calls, wall time, CPU time)`, longest CPU time first.
pub fn entries() -> Vec<(String, u64, Duration, Duration)> {
    let mut v: Vec<_> = TABLE
        .lock()
        .ok()
        .and_then(|t| {
            t.as_ref().map(|m| {
                m.iter()
                    .map(|(k, e)| (k.clone(), e.calls, e.wall, e.cpu))
                    .collect()
            })
        })
        .unwrap_or_default();
    v.sort_by(|a, b| b.3.cmp(&a.3).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    v
}

/// The table as text, per op: calls, wall ms, CPU ms, share of the kernels' CPU time; `per`
/// divides the totals (e.g. the number of training steps profiled) so they read as "per step".
pub fn report(per: u64) -> String {
    let e = entries();
    let wall: Duration = e.iter().map(|x| x.2).sum();
    let cpu: Duration = e.iter().map(|x| x.3).sum();
    let per = per.max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / per;
    let mut s = format!(
        "{:<40} {:>9} {:>10} {:>10} {:>6}\n",
        "op", "calls", "wall ms", "cpu ms", "share"
    );
    for (op, n, w, c) in &e {
        s += &format!(
            "{:<40} {:>9.1} {:>10.2} {:>10.2} {:>5.1}%\n",
            op,
            *n as f64 / per,
            ms(*w),
            ms(*c),
            100.0 * c.as_secs_f64() / cpu.as_secs_f64().max(1e-12)
        );
    }
    s += &format!(
        "{:<40} {:>9} {:>10.2} {:>10.2}\n",
        "total in kernels",
        "",
        ms(wall),
        ms(cpu)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_reports_per_op() {
        reset();
        let ms = Duration::from_millis;
        record("a", ms(3), ms(6));
        record("a", ms(1), ms(2));
        record("b", ms(10), ms(20));
        let e = entries();
        assert_eq!(e[0].0, "b");
        assert_eq!(
            (e[1].0.as_str(), e[1].1, e[1].2, e[1].3),
            ("a", 2, ms(4), ms(8))
        );
        let r = report(2);
        assert!(r.contains("total in kernels"), "{r}");
        assert!(
            r.lines().any(|l| l.starts_with('a') && l.contains("2.00")),
            "{r}"
        );
        reset();
        assert!(entries().is_empty());
    }

    #[test]
    fn process_cpu_time_advances_with_work() {
        let Some(a) = process_cpu_time() else {
            return; // not available on this platform
        };
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = process_cpu_time().unwrap_or_default();
        assert!(b > a, "{a:?} then {b:?}");
    }
}
