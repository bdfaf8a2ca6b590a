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

use super::reference::ConvGeom;

/// Unfold one sample's group of input channels into columns [cig·kh·kw, oh·ow] (zero where the
/// window leaves the image).
fn im2col<T: StorageElem>(x: &[T], g: &ConvGeom, cols: &mut [T]) {
    let cig = g.cin / g.groups;
    let p = g.oh * g.ow;
    for c in 0..cig {
        let xc = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut cols[((c * g.kh + ky) * g.kw + kx) * p..][..p];
                for oy in 0..g.oh {
                    let y = (oy * g.stride.0 + ky * g.dil.0) as isize - g.pad.0 as isize;
                    let dst = &mut row[oy * g.ow..(oy + 1) * g.ow];
                    if y < 0 || y as usize >= g.h {
                        dst.iter_mut().for_each(|v| *v = T::zero());
                        continue;
                    }
                    let src = &xc[y as usize * g.w..(y as usize + 1) * g.w];
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let xx = (ox * g.stride.1 + kx * g.dil.1) as isize - g.pad.1 as isize;
                        *d = if xx < 0 || xx as usize >= g.w {
                            T::zero()
                        } else {
                            src[xx as usize]
                        };
                    }
                }
            }
        }
    }
}

/// The adjoint of `im2col`: add columns back into the image.
fn col2im<T: StorageElem>(cols: &[T], g: &ConvGeom, x: &mut [T]) {
    let cig = g.cin / g.groups;
    let p = g.oh * g.ow;
    for c in 0..cig {
        let xc = &mut x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &cols[((c * g.kh + ky) * g.kw + kx) * p..][..p];
                for oy in 0..g.oh {
                    let y = (oy * g.stride.0 + ky * g.dil.0) as isize - g.pad.0 as isize;
                    if y < 0 || y as usize >= g.h {
                        continue;
                    }
                    let dst = &mut xc[y as usize * g.w..(y as usize + 1) * g.w];
                    for ox in 0..g.ow {
                        let xx = (ox * g.stride.1 + kx * g.dil.1) as isize - g.pad.1 as isize;
                        if xx >= 0 && (xx as usize) < g.w {
                            dst[xx as usize] += row[oy * g.ow + ox];
                        }
                    }
                }
            }
        }
    }
}

/// Split `out` into `n` equal per-sample blocks and run `f(sample, block)` over threads.
fn per_sample<T: Send>(out: &mut [T], n: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if n == 0 {
        return;
    }
    let per = out.len() / n;
    let threads = super::num_threads().min(n).max(1);
    let samples_per_thread = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, chunk) in out
            .chunks_mut((per * samples_per_thread).max(1))
            .enumerate()
        {
            let f = &f;
            s.spawn(move || {
                for (i, block) in chunk.chunks_mut(per.max(1)).enumerate() {
                    f(t * samples_per_thread + i, block);
                }
            });
        }
    });
}

/// conv2d forward by im2col + GEMM, samples over threads.
pub fn conv2d<T: StorageElem>(x: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let (cig, cog) = (g.cin / g.groups, g.cout / g.groups);
    let (k, p) = (cig * g.kh * g.kw, g.oh * g.ow);
    let mut y = vec![T::zero(); g.n * g.cout * p];
    per_sample(&mut y, g.n, |n, yn| {
        let mut cols = vec![T::zero(); k * p];
        for gi in 0..g.groups {
            let xg = &x[(n * g.cin + gi * cig) * g.h * g.w..][..cig * g.h * g.w];
            im2col(xg, g, &mut cols);
            let wg = &w[gi * cog * k..(gi + 1) * cog * k];
            gemm(
                cog,
                k,
                p,
                wg,
                (k as isize, 1),
                &cols,
                (p as isize, 1),
                &mut yn[gi * cog * p..(gi + 1) * cog * p],
                false,
            );
        }
    });
    y
}

/// conv2d backward-data: columns = Wᵀ·dy, then col2im.
pub fn conv2d_backward_data<T: StorageElem>(dy: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let (cig, cog) = (g.cin / g.groups, g.cout / g.groups);
    let (k, p) = (cig * g.kh * g.kw, g.oh * g.ow);
    let mut dx = vec![T::zero(); g.n * g.cin * g.h * g.w];
    per_sample(&mut dx, g.n, |n, dxn| {
        let mut cols = vec![T::zero(); k * p];
        for gi in 0..g.groups {
            let wg = &w[gi * cog * k..(gi + 1) * cog * k];
            let dyg = &dy[(n * g.cout + gi * cog) * p..][..cog * p];
            // Wᵀ: view W [cog, k] with strides (1, k)
            gemm(
                k,
                cog,
                p,
                wg,
                (1, k as isize),
                dyg,
                (p as isize, 1),
                &mut cols,
                false,
            );
            col2im(
                &cols,
                g,
                &mut dxn[gi * cig * g.h * g.w..(gi + 1) * cig * g.h * g.w],
            );
        }
    });
    dx
}

/// conv2d backward-weight: dW = Σ_n dy·colsᵀ, partial sums per thread then added.
pub fn conv2d_backward_weight<T: StorageElem>(x: &[T], dy: &[T], g: &ConvGeom) -> Vec<T> {
    let (cig, cog) = (g.cin / g.groups, g.cout / g.groups);
    let (k, p) = (cig * g.kh * g.kw, g.oh * g.ow);
    let wlen = g.cout * k;
    let threads = super::num_threads().min(g.n).max(1);
    let mut partial = vec![T::zero(); threads * wlen];
    let per_thread = g.n.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, dw) in partial.chunks_mut(wlen.max(1)).enumerate() {
            s.spawn(move || {
                let mut cols = vec![T::zero(); k * p];
                for n in t * per_thread..((t + 1) * per_thread).min(g.n) {
                    for gi in 0..g.groups {
                        let xg = &x[(n * g.cin + gi * cig) * g.h * g.w..][..cig * g.h * g.w];
                        im2col(xg, g, &mut cols);
                        let dyg = &dy[(n * g.cout + gi * cog) * p..][..cog * p];
                        // colsᵀ: view cols [k, p] with strides (1, p)
                        gemm(
                            cog,
                            p,
                            k,
                            dyg,
                            (p as isize, 1),
                            &cols,
                            (1, p as isize),
                            &mut dw[gi * cog * k..(gi + 1) * cog * k],
                            true,
                        );
                    }
                }
            });
        }
    });
    let mut dw = vec![T::zero(); wlen];
    for part in partial.chunks(wlen.max(1)) {
        for (d, &v) in dw.iter_mut().zip(part) {
            *d += v;
        }
    }
    dw
}
