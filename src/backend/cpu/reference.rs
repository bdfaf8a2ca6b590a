//! Reference matrix product: straightforward loops, f64-capable, no cleverness. The fast GEMM is
//! tested against it. (Each op family keeps its own reference loops in `ops/<family>/reference.rs`.)

use crate::tensor::Float;

/// C\[b\] = A\[b\] · B\[b\] for row-major A (m×k), B (k×n).
pub fn matmul<T: Float>(a: &[T], b: &[T], batch: usize, m: usize, k: usize, n: usize) -> Vec<T> {
    let mut c = vec![T::zero(); batch * m * n];
    for bi in 0..batch {
        let (a, b) = (&a[bi * m * k..], &b[bi * k * n..]);
        let c = &mut c[bi * m * n..(bi + 1) * m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = T::zero();
                for p in 0..k {
                    s += a[i * k + p] * b[p * n + j];
                }
                c[i * n + j] = s;
            }
        }
    }
    c
}
