//! Fast kernels: real GEMM (`matrixmultiply`) and threads.

use crate::tensor::{DType, StorageElem};

/// C[b] = A[b] · B[b] for row-major A (m×k), B (k×n), on a blocked GEMM.
pub fn matmul<T: StorageElem>(
    a: &[T],
    b: &[T],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<T> {
    let mut c = vec![T::zero(); batch * m * n];
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
/// transposed operands need no copy. `accumulate` adds into C instead of overwriting.
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
    let beta = if accumulate { 1.0 } else { 0.0 };
    if k == 0 {
        if !accumulate {
            c.iter_mut().for_each(|v| *v = T::zero());
        }
        return;
    }
    // SAFETY: the slices cover the strided extents: callers pass full operand buffers whose
    // lengths match (m, k, n) and the strides; debug builds check the extents.
    debug_assert!(extent(m, k, sa) <= a.len() && extent(k, n, sb) <= b.len() && m * n <= c.len());
    unsafe {
        match T::DTYPE {
            DType::F32 => matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr() as *const f32,
                sa.0,
                sa.1,
                b.as_ptr() as *const f32,
                sb.0,
                sb.1,
                beta as f32,
                c.as_mut_ptr() as *mut f32,
                n as isize,
                1,
            ),
            DType::F64 => matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr() as *const f64,
                sa.0,
                sa.1,
                b.as_ptr() as *const f64,
                sb.0,
                sb.1,
                beta,
                c.as_mut_ptr() as *mut f64,
                n as isize,
                1,
            ),
        }
    }
}

fn extent(r: usize, c: usize, s: (isize, isize)) -> usize {
    (r - 1) * s.0 as usize + (c - 1) * s.1 as usize + 1
}
