//! Op-level CPU profile: wall time and call count per kernel name, for finding where a training
//! step spends its time. Off unless `BRAINSYNTH_PROFILE` is set (to anything but `0`) or
//! [`enable`] is called; when off, the cost is one relaxed atomic load per kernel call.
//!
//! Times are wall clock on the calling thread around each kernel (a kernel that splits its work
//! over worker threads is timed once, as a whole), so the table adds up to the step's time
//! spent inside kernels; what is left over is graph bookkeeping and allocation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// 0 = not decided yet, 1 = off, 2 = on.
static STATE: AtomicU8 = AtomicU8::new(0);
static TABLE: Mutex<Option<HashMap<&'static str, (u64, Duration)>>> = Mutex::new(None);

/// True when kernel times are being collected.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var("BRAINSYNTH_PROFILE").is_ok_and(|v| v != "0" && !v.is_empty());
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// Start collecting (whatever the environment says).
pub fn enable() {
    STATE.store(2, Ordering::Relaxed);
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

/// Add one call of `op` that took `d`.
pub fn record(op: &'static str, d: Duration) {
    if let Ok(mut t) = TABLE.lock() {
        let e = t.get_or_insert_with(HashMap::new).entry(op).or_default();
        e.0 += 1;
        e.1 += d;
    }
}

/// Time `f` under `op` when profiling is on.
pub fn timed<R>(op: &'static str, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let t0 = Instant::now();
    let r = f();
    record(op, t0.elapsed());
    r
}

/// Everything collected: `(op, calls, total time)`, longest total first.
pub fn entries() -> Vec<(&'static str, u64, Duration)> {
    let mut v: Vec<_> = TABLE
        .lock()
        .ok()
        .and_then(|t| {
            t.as_ref()
                .map(|m| m.iter().map(|(k, v)| (*k, v.0, v.1)).collect())
        })
        .unwrap_or_default();
    v.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    v
}

/// The table as text, per op: calls, total ms, share of the kernels' total; `per` divides the
/// totals (e.g. the number of training steps profiled) so they read as "per step".
pub fn report(per: u64) -> String {
    let e = entries();
    let total: Duration = e.iter().map(|x| x.2).sum();
    let per = per.max(1) as f64;
    let mut s = format!("{:<28} {:>9} {:>10} {:>6}\n", "op", "calls", "ms", "share");
    for (op, n, d) in &e {
        s += &format!(
            "{:<28} {:>9.1} {:>10.2} {:>5.1}%\n",
            op,
            *n as f64 / per,
            d.as_secs_f64() * 1e3 / per,
            100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-12)
        );
    }
    s += &format!(
        "{:<28} {:>9} {:>10.2}\n",
        "total in kernels",
        "",
        total.as_secs_f64() * 1e3 / per
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_reports_per_op() {
        reset();
        record("a", Duration::from_millis(3));
        record("a", Duration::from_millis(1));
        record("b", Duration::from_millis(10));
        let e = entries();
        assert_eq!(e[0].0, "b");
        assert_eq!((e[1].0, e[1].1, e[1].2), ("a", 2, Duration::from_millis(4)));
        let r = report(2);
        assert!(r.contains("total in kernels"), "{r}");
        assert!(
            r.lines().any(|l| l.starts_with('a') && l.contains("2.00")),
            "{r}"
        );
        reset();
        assert!(entries().is_empty());
    }
}
