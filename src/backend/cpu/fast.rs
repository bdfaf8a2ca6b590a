//! Fast kernels: a real GEMM (`matrixmultiply`'s packed AVX-512 / FMA micro-kernels) and our
//! own threads. There is one level of threads: `matrixmultiply` is built without its thread
//! pool, and `gemm` splits a large product over our workers itself — unless it is called from
//! inside a worker (`super::in_worker`), where it stays serial.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::tensor::{DType, StorageElem};

/// Below this many multiply-adds a product is not worth another thread.
const GEMM_PAR_MIN: usize = 1 << 21;

/// C\[b\] = A\[b\] · B\[b\] for row-major A (m×k), B (k×n), on a blocked GEMM.
pub fn matmul<T: StorageElem>(
    a: &[T],
    b: &[T],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<T> {
    let mut c = vec![T::zero(); batch * m * n];
    if batch >= super::worker_threads() && batch > 1 {
        // many products: one per task, each serial
        let cp = SyncPtr(c.as_mut_ptr());
        par_tasks(
            batch,
            || (),
            |_, bi| {
                // SAFETY: task bi writes only C[bi]; A and B are read in bounds.
                unsafe {
                    gemm_raw(
                        m,
                        k,
                        n,
                        a[bi * m * k..].as_ptr(),
                        (k as isize, 1),
                        b[bi * k * n..].as_ptr(),
                        (n as isize, 1),
                        cp.get().add(bi * m * n),
                        (n as isize, 1),
                        false,
                    )
                }
            },
        );
        return c;
    }
    for bi in 0..batch {
        gemm(
            m,
            k,
            n,
            &a[bi * m * k..(bi + 1) * m * k],
            (k as isize, 1),
            &b[bi * k * n..(bi + 1) * k * n],
            (n as isize, 1),
            &mut c[bi * m * n..(bi + 1) * m * n],
            false,
        );
    }
    c
}

/// C (m×n, row-major) (+)= A (m×k) · B (k×n), A and B given with (row, col) strides so
/// transposed operands need no copy. `accumulate` adds into C instead of overwriting. Large
/// products are split over threads (by rows or columns of C, whichever is longer).
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: StorageElem>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    sa: (isize, isize),
    b: &[T],
    sb: (isize, isize),
    c: &mut [T],
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (k == 0 || (extent(m, k, sa) <= a.len() && extent(k, n, sb) <= b.len()))
            && m * n <= c.len(),
        "gemm: operands smaller than their strided extents"
    );
    let threads = super::worker_threads();
    let cp = SyncPtr(c.as_mut_ptr());
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    if threads < 2 || m * n * k < GEMM_PAR_MIN {
        // SAFETY: extents checked above.
        unsafe {
            gemm_raw(
                m,
                k,
                n,
                ap,
                sa,
                bp,
                sb,
                cp.get(),
                (n as isize, 1),
                accumulate,
            )
        };
        return;
    }
    let split_cols = n >= m;
    let len = if split_cols { n } else { m };
    // chunks a multiple of the micro-kernel width, so only the last one has a ragged edge
    let chunk = len.div_ceil(threads).next_multiple_of(16);
    let pieces = len.div_ceil(chunk);
    let (ap, bp) = (SyncConst(ap), SyncConst(bp));
    par_tasks(
        pieces,
        || (),
        |_, i| {
            let (lo, hi) = (i * chunk, ((i + 1) * chunk).min(len));
            // SAFETY: piece i writes rows (or columns) lo..hi of C only; reads stay within the
            // extents checked above.
            unsafe {
                if split_cols {
                    gemm_raw(
                        m,
                        k,
                        hi - lo,
                        ap.get(),
                        sa,
                        bp.get().offset(lo as isize * sb.1),
                        sb,
                        cp.get().add(lo),
                        (n as isize, 1),
                        accumulate,
                    )
                } else {
                    gemm_raw(
                        hi - lo,
                        k,
                        n,
                        ap.get().offset(lo as isize * sa.0),
                        sa,
                        bp.get(),
                        sb,
                        cp.get().add(lo * n),
                        (n as isize, 1),
                        accumulate,
                    )
                }
            }
        },
    );
}

/// Serial C (m×n, strides `sc`) (+)= A · B on raw pointers.
///
/// # Safety
/// Every element the strides address must be valid: A over m×k, B over k×n, C over m×n (C
/// written, and read when accumulating), and no other thread may touch the addressed C.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_raw<T: StorageElem>(
    m: usize,
    k: usize,
    n: usize,
    a: *const T,
    sa: (isize, isize),
    b: *const T,
    sb: (isize, isize),
    c: *mut T,
    sc: (isize, isize),
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: in C's extent (caller's contract)
                    unsafe { *c.offset(i as isize * sc.0 + j as isize * sc.1) = T::zero() };
                }
            }
        }
        return;
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: forwarded caller contract; T is f32 or f64 as DTYPE says.
    unsafe {
        match T::DTYPE {
            DType::F32 => matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a as *const f32,
                sa.0,
                sa.1,
                b as *const f32,
                sb.0,
                sb.1,
                beta as f32,
                c as *mut f32,
                sc.0,
                sc.1,
            ),
            DType::F64 => matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                a as *const f64,
                sa.0,
                sa.1,
                b as *const f64,
                sb.0,
                sb.1,
                beta,
                c as *mut f64,
                sc.0,
                sc.1,
            ),
        }
    }
}

fn extent(r: usize, c: usize, s: (isize, isize)) -> usize {
    (r - 1) * s.0 as usize + (c - 1) * s.1 as usize + 1
}

/// A pointer that tasks write disjoint parts of.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub(crate) *mut T);
// SAFETY: only used for disjoint writes, as each use site states.
unsafe impl<T: Send> Send for SyncPtr<T> {}
unsafe impl<T: Send> Sync for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    /// (A method, so closures capture the whole wrapper rather than the raw field.)
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

#[derive(Clone, Copy)]
pub(crate) struct SyncConst<T>(pub(crate) *const T);
// SAFETY: read-only access to data that outlives the tasks.
unsafe impl<T: Sync> Send for SyncConst<T> {}
unsafe impl<T: Sync> Sync for SyncConst<T> {}
impl<T> SyncConst<T> {
    pub(crate) fn get(self) -> *const T {
        self.0
    }
}

/// Run `f(state, task)` for task in 0..count over the workers, handing out tasks one at a time
/// (a shared machine slows threads unevenly, so static splits leave cores idle). Each worker
/// has its own `init()` state, as scratch space only: which worker runs which task depends on
/// thread timing, so tasks must write disjoint outputs and nothing may be summed across the
/// states (that would make results differ from run to run; see `conv2d_backward_weight` for
/// a sum split so that its order is fixed).
pub(crate) fn par_tasks<S: Send>(
    count: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) + Sync,
) {
    let threads = super::worker_threads().min(count).max(1);
    if threads == 1 {
        let mut s = init();
        (0..count).for_each(|t| f(&mut s, t));
        return;
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut s = init();
        loop {
            let t = next.fetch_add(1, Ordering::Relaxed);
            if t >= count {
                break;
            }
            f(&mut s, t);
        }
    };
    let work = &work;
    // the calling thread works too (the pool runs the first job on it)
    super::pool::join_all(
        (0..threads)
            .map(|_| Box::new(work) as Box<dyn FnOnce() + Send + '_>)
            .collect(),
    );
}
