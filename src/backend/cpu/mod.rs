//! CPU kernels: `reference` (plain loops, obviously right, the ground truth of every test) and
//! `fast` (GEMM-based, all cores, used by default), plus the small threading helpers they share.

pub mod attention;
pub mod fast;
pub mod fused_reference;
pub mod pool;
pub mod reference;

use std::cell::Cell;

/// Which CPU kernels heavy ops (conv, matmul, attention) use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuKernels {
    /// Plain loops: slow, obviously right.
    Reference,
    /// im2col + GEMM over all cores (the default).
    Fast,
}

// The choice is a per-thread, scoped setting rather than a process-wide switch, so a test that
// asks for the reference loops cannot change the kernels of tests running beside it. The pool
// hands the caller's choice to the jobs it runs on its workers (see `pool::join_all`).
thread_local! {
    static KERNELS: Cell<CpuKernels> = const { Cell::new(CpuKernels::Fast) };
}

/// The kernels heavy CPU ops use on this thread: `Fast` unless a [`with_kernels`] call or a
/// [`KernelsGuard`] around the caller says otherwise.
pub fn kernels() -> CpuKernels {
    KERNELS.with(|k| k.get())
}

/// Restores the previous kernel choice of this thread when dropped.
#[must_use = "the choice holds only while the guard lives"]
pub struct KernelsGuard {
    previous: CpuKernels,
    // a guard restores the thread it was made on: keep it there
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for KernelsGuard {
    fn drop(&mut self) {
        KERNELS.with(|k| k.set(self.previous));
    }
}

/// Use `kernels` on this thread (and in the pool jobs it starts) until the guard is dropped.
pub fn use_kernels(kernels: CpuKernels) -> KernelsGuard {
    KernelsGuard {
        previous: KERNELS.with(|k| k.replace(kernels)),
        _not_send: std::marker::PhantomData,
    }
}

/// Run `f` with heavy ops on `kernels` (this thread and the pool jobs it starts); the previous
/// choice is back afterwards, also when `f` panics.
pub fn with_kernels<R>(kernels: CpuKernels, f: impl FnOnce() -> R) -> R {
    let _guard = use_kernels(kernels);
    f()
}

/// Run `f` on the reference kernels (see [`with_kernels`]).
pub fn with_reference<R>(f: impl FnOnce() -> R) -> R {
    with_kernels(CpuKernels::Reference, f)
}

/// Worker threads for CPU kernels: `BRAINSYNTH_THREADS` or all cores.
pub fn num_threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("BRAINSYNTH_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
    })
}

/// True when the CPU has the AVX-512 subsets the vectorized loops are compiled for
/// (F, BW, VL, DQ).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512dq")
}

/// True when the CPU has AVX2 and FMA (the second tier of the vectorized loops).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Run `f` — typically a loop over slices — compiled for AVX-512 or AVX2 + FMA when this CPU
/// has them. The crate is built for the baseline x86-64 (SSE2) so the binary runs anywhere;
/// `f` is inlined into a copy of this function compiled with the wider instruction set, so
/// its loop (and the math inlined into it, e.g. `exp_f32`) vectorizes 8 or 16 lanes wide.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi2")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma,bmi2")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if has_avx512() {
            // SAFETY: the CPU has the features the function was compiled for.
            return unsafe { avx512(f) };
        }
        if has_avx2_fma() {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Below this many elements, threads cost more than they save.
const PAR_MIN: usize = 1 << 15;

/// `out[i] = f(x[i])`, split over threads for large inputs.
pub fn par_map<T: Copy + Send + Sync, U: Copy + Send + Sync + Default>(
    x: &[T],
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let n = x.len();
    // written once, never zeroed first (a pass over memory saved on every elementwise op)
    let mut out: Vec<U> = Vec::with_capacity(n);
    par_chunks_mut(
        &mut out.spare_capacity_mut()[..n],
        PAR_MIN,
        |start, chunk| {
            vectorized(
                #[inline(always)]
                || {
                    for (o, &v) in chunk.iter_mut().zip(&x[start..]) {
                        o.write(f(v));
                    }
                },
            )
        },
    );
    // SAFETY: the chunks cover 0..n, and every element of every chunk was written above.
    unsafe { out.set_len(n) };
    out
}

/// `out[i] = f(a[i], b[i])`, split over threads for large inputs.
pub fn par_zip<T: Copy + Send + Sync, U: Copy + Send + Sync + Default>(
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> U + Sync,
) -> Vec<U> {
    let n = a.len().min(b.len());
    let mut out: Vec<U> = Vec::with_capacity(n);
    par_chunks_mut(
        &mut out.spare_capacity_mut()[..n],
        PAR_MIN,
        |start, chunk| {
            vectorized(
                #[inline(always)]
                || {
                    for ((o, &p), &q) in chunk.iter_mut().zip(&a[start..]).zip(&b[start..]) {
                        o.write(f(p, q));
                    }
                },
            )
        },
    );
    // SAFETY: as in `par_map`.
    unsafe { out.set_len(n) };
    out
}

/// Split `out` into contiguous chunks (at least `min_chunk` long) and run `f(start, chunk)` on
/// each, on the worker pool.
pub fn par_chunks_mut<U: Send>(
    out: &mut [U],
    min_chunk: usize,
    f: impl Fn(usize, &mut [U]) + Sync,
) {
    let n = out.len();
    let threads = worker_threads().min(n.div_ceil(min_chunk.max(1))).max(1);
    if threads == 1 {
        f(0, out);
        return;
    }
    let chunk = n.div_ceil(threads);
    let f = &f;
    pool::join_all(
        out.chunks_mut(chunk)
            .enumerate()
            .map(|(i, c)| Box::new(move || f(i * chunk, c)) as Box<dyn FnOnce() + Send + '_>)
            .collect(),
    );
}

/// Run `f(i)` for i in 0..n over threads, each thread taking a contiguous range. `f` must only
/// touch state it owns per index (callers pass disjoint output regions).
pub fn par_for(n: usize, f: impl Fn(usize) + Sync) {
    let threads = worker_threads().min(n).max(1);
    if threads == 1 {
        (0..n).for_each(f);
        return;
    }
    let per = n.div_ceil(threads);
    let f = &f;
    pool::join_all(
        (0..threads)
            .map(|t| {
                Box::new(move || (t * per..((t + 1) * per).min(n)).for_each(f))
                    as Box<dyn FnOnce() + Send + '_>
            })
            .collect(),
    );
}

// ---- block-parallel helper (added for norm / attention kernels) ------------------------------

/// Split `out` into consecutive blocks of `block_len` and hand each thread a run of whole blocks:
/// `f(first_block, run)` where `run.len()` is a multiple of `block_len`. Kernels that need
/// per-thread scratch (attention scores, ...) allocate it once per call of `f`. Runs on the calling
/// thread when `out` is small.
pub fn par_blocks_mut<U: Send>(
    out: &mut [U],
    block_len: usize,
    f: impl Fn(usize, &mut [U]) + Sync,
) {
    let block_len = block_len.max(1);
    let blocks = out.len() / block_len;
    let threads = if out.len() < PAR_MIN {
        1
    } else {
        worker_threads().min(blocks).max(1)
    };
    if threads == 1 {
        f(0, out);
        return;
    }
    let per = blocks.div_ceil(threads);
    let f = &f;
    pool::join_all(
        out.chunks_mut(per * block_len)
            .enumerate()
            .map(|(i, c)| Box::new(move || f(i * per, c)) as Box<dyn FnOnce() + Send + '_>)
            .collect(),
    );
}

// ---- one level of threads ----
// Kernels that split work over threads (these helpers, the GEMM, the conv tiles) run serially
// when called from inside a worker: nested pools would put several threads on each core.

thread_local! {
    static IN_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True on a thread that one of the parallel helpers started.
pub fn in_worker() -> bool {
    IN_WORKER.with(|w| w.get())
}

/// Run `f` marked as a worker, so parallel kernels it calls stay on this thread.
pub fn as_worker<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_WORKER.with(|w| w.set(self.0));
        }
    }
    let _restore = Restore(IN_WORKER.with(|w| w.replace(true)));
    f()
}

/// Threads a parallel kernel may use from here: `num_threads()`, or 1 inside a worker.
pub fn worker_threads() -> usize {
    if in_worker() { 1 } else { num_threads() }
}
