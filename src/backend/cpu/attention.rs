//! Fused multi-head attention on the CPU, one (batch, head) block at a time: forward
//! O = softmax(scale·Q·Kᵀ + bias + mask)·V and its backward, for any layout of the block's
//! operands (token-major [n, d] as Swin's windows, feature-major [d, n] as guided-diffusion's
//! `QKVAttentionLegacy`), so callers pass views instead of transposed copies.
//!
//! Every product is a small GEMM on a register-blocked micro-kernel (MR rows × NR columns of C
//! in registers, B read as contiguous rows, A broadcast one scalar at a time through any strides),
//! so Kᵀ, Vᵀ and the like are packed (O(n·d) per block) only when the view does not already lay
//! them out as rows. The score matrix of one block lives in a per-thread scratch buffer that stays
//! in cache; the softmax runs on it in place (max, exp and sum over lane arrays). The backward
//! recomputes P from q and k (PyTorch keeps P from the forward instead; recomputing costs one
//! small GEMM and saves the memory traffic of a [batch, n, n] tensor).
//!
//! Numbers: products accumulate in the element type with fused multiply-adds, each output in a
//! fixed order (k ascending), softmax sums over `LANES` fixed lanes: same inputs, same bits,
//! whatever the thread timing. Callers must run these functions inside
//! [`super::vectorized`] for them to be compiled for the CPU's vector width (they are all
//! `#[inline(always)]` for that reason).

use std::any::TypeId;

use crate::tensor::StorageElem;

/// A read-only view of one block's operand: element (token t, feature f) at `t·rs + f·cs`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

/// A writable view, laid out like [`Mat`].
#[derive(Debug)]
pub struct MatMut<'a, T> {
    pub data: &'a mut [T],
    pub rs: usize,
    pub cs: usize,
}

/// Sizes of one block: q [nq, d], k [nk, d], v [nk, dv]; scores [nq, nk].
#[derive(Clone, Copy, Debug)]
pub struct BlockDims {
    pub nq: usize,
    pub nk: usize,
    pub d: usize,
    pub dv: usize,
    pub scale: f64,
}

/// Per-thread scratch, reused across blocks (grown on first use).
#[derive(Default)]
pub struct Scratch<T> {
    p: Vec<T>,
    ds: Vec<T>,
    pack: [Vec<T>; 4],
    out: Vec<T>,
}

impl<T: StorageElem> Scratch<T> {
    pub fn new() -> Self {
        Scratch {
            p: Vec::new(),
            ds: Vec::new(),
            pack: Default::default(),
            out: Vec::new(),
        }
    }
}

/// Independent accumulators of the softmax reductions.
const LANES: usize = 16;

/// a·b + c in one rounding where T is f32 or f64 (a fused multiply-add instruction when the
/// caller is compiled with FMA); a·b + c otherwise.
#[inline(always)]
fn fma<T: StorageElem>(a: T, b: T, c: T) -> T {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32 (checked above), so the copies reinterpret a value as itself.
        unsafe {
            let r = f32::mul_add(
                std::mem::transmute_copy::<T, f32>(&a),
                std::mem::transmute_copy::<T, f32>(&b),
                std::mem::transmute_copy::<T, f32>(&c),
            );
            std::mem::transmute_copy::<f32, T>(&r)
        }
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        // SAFETY: T is f64, as above.
        unsafe {
            let r = f64::mul_add(
                std::mem::transmute_copy::<T, f64>(&a),
                std::mem::transmute_copy::<T, f64>(&b),
                std::mem::transmute_copy::<T, f64>(&c),
            );
            std::mem::transmute_copy::<f64, T>(&r)
        }
    } else {
        a * b + c
    }
}

/// What the GEMM does with alpha·A·B before storing it in C.
#[derive(Clone, Copy)]
enum Epi<'a, T> {
    /// C = alpha·A·B.
    Store,
    /// C = alpha·A·B + E with E row-major of leading dimension `.1`.
    Add(&'a [T], usize),
}

/// One MR×NR tile of C = alpha·A·B (+ E): A(i, p) at `a[i·ars + p·acs]`, B(p, j) at
/// `b[p·ldb + j]`, C(i, j) at `c[i·ldc + j]`, all relative to the tile's corner.
///
/// # Safety
/// Every addressed element must be in bounds of its buffer.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<T: StorageElem, const MR: usize, const NR: usize>(
    k: usize,
    a: *const T,
    ars: usize,
    acs: usize,
    b: *const T,
    ldb: usize,
    c: *mut T,
    ldc: usize,
    alpha: T,
    e: Option<(*const T, usize)>,
) {
    let mut acc = [[T::zero(); NR]; MR];
    for p in 0..k {
        let mut bv = [T::zero(); NR];
        for (j, x) in bv.iter_mut().enumerate() {
            // SAFETY: caller's contract
            *x = unsafe { *b.add(p * ldb + j) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: caller's contract
            let ai = unsafe { *a.add(i * ars + p * acs) };
            for j in 0..NR {
                row[j] = fma(ai, bv[j], row[j]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            let v = match e {
                // SAFETY: caller's contract
                Some((ep, lde)) => fma(x, alpha, unsafe { *ep.add(i * lde + j) }),
                None => x * alpha,
            };
            // SAFETY: caller's contract
            unsafe { *c.add(i * ldc + j) = v };
        }
    }
}

/// Rows `MR` at a time over the columns in tiles of up to `NRMAX` (32, 16 or 8) columns, then 1.
///
/// # Safety
/// As [`tile`], for rows 0..MR and columns 0..n.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn row_panel<T: StorageElem, const MR: usize, const NRMAX: usize>(
    n: usize,
    k: usize,
    a: *const T,
    ars: usize,
    acs: usize,
    b: *const T,
    ldb: usize,
    c: *mut T,
    ldc: usize,
    alpha: T,
    e: Option<(*const T, usize)>,
) {
    let mut j = 0;
    let ej = |j: usize| e.map(|(p, l)| (p.wrapping_add(j), l));
    // SAFETY (all calls): columns j..j + NR lie in 0..n, rows in 0..MR (caller's contract)
    unsafe {
        if NRMAX >= 32 {
            while j + 32 <= n {
                tile::<T, MR, 32>(k, a, ars, acs, b.add(j), ldb, c.add(j), ldc, alpha, ej(j));
                j += 32;
            }
        }
        if NRMAX >= 16 {
            while j + 16 <= n {
                tile::<T, MR, 16>(k, a, ars, acs, b.add(j), ldb, c.add(j), ldc, alpha, ej(j));
                j += 16;
            }
        }
        while j + 8 <= n {
            tile::<T, MR, 8>(k, a, ars, acs, b.add(j), ldb, c.add(j), ldc, alpha, ej(j));
            j += 8;
        }
        while j < n {
            tile::<T, MR, 1>(k, a, ars, acs, b.add(j), ldb, c.add(j), ldc, alpha, ej(j));
            j += 1;
        }
    }
}

/// All rows: `MR` at a time, then one at a time.
///
/// # Safety
/// As [`tile`], for rows 0..m and columns 0..n.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn panels<T: StorageElem, const MR: usize, const NRMAX: usize>(
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    ars: usize,
    acs: usize,
    b: *const T,
    ldb: usize,
    c: *mut T,
    ldc: usize,
    alpha: T,
    e: Option<(*const T, usize)>,
) {
    let mut i = 0;
    let eat = |i: usize| e.map(|(p, l)| (p.wrapping_add(i * l), l));
    // SAFETY (all calls): rows i..i + MR lie in 0..m (caller's contract)
    unsafe {
        while i + MR <= m {
            let (ai, ci) = (a.add(i * ars), c.add(i * ldc));
            row_panel::<T, MR, NRMAX>(n, k, ai, ars, acs, b, ldb, ci, ldc, alpha, eat(i));
            i += MR;
        }
        while i < m {
            let (ai, ci) = (a.add(i * ars), c.add(i * ldc));
            row_panel::<T, 1, NRMAX>(n, k, ai, ars, acs, b, ldb, ci, ldc, alpha, eat(i));
            i += 1;
        }
    }
}

/// True when the vector registers are 512 bits wide (AVX-512): 32 of them, so bigger tiles fit.
fn wide_vectors() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::has_avx512()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Highest index + 1 that an (r × c) view with strides (rs, cs) touches.
fn extent(r: usize, c: usize, rs: usize, cs: usize) -> usize {
    if r == 0 || c == 0 {
        0
    } else {
        (r - 1) * rs + (c - 1) * cs + 1
    }
}

/// C (m×n, leading dimension ldc) = alpha·A·B (+ E), A (m×k) through strides (ars, acs), B (k×n)
/// row-major with leading dimension ldb, on register tiles sized for the vector width; each C
/// element sums its k products in order.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm<T: StorageElem>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    ars: usize,
    acs: usize,
    b: &[T],
    ldb: usize,
    c: &mut [T],
    ldc: usize,
    alpha: T,
    epi: Epi<'_, T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        extent(m, k, ars, acs) <= a.len()
            && extent(k, n, ldb, 1) <= b.len()
            && extent(m, n, ldc, 1) <= c.len(),
        "attention gemm: an operand is smaller than its view"
    );
    let e = match epi {
        Epi::Store => None,
        Epi::Add(e, lde) => {
            assert!(
                extent(m, n, lde, 1) <= e.len(),
                "attention gemm: addend too small"
            );
            Some((e.as_ptr(), lde))
        }
    };
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // Opaque strides: inlined where a stride is the constant 1 (Pᵀ·dO, dSᵀ·Q: a transposed
    // A), the compiler rewrote the tiles' A loads into code 19× slower than the same product
    // with A row-major (measured, 1 thread: dV 51.7 ms against 2.7 ms for dQ over the 64
    // blocks of mha (16, 4, 256, 24); 2.8 ms with this line). Same arithmetic, same order.
    let (ars, acs) = std::hint::black_box((ars, acs));
    // accumulator tiles that fit the register file (32 × 512-bit or 16 × 256-bit registers):
    // f32 8×32 or 4×16, f64 4×32 or 4×8
    let single = TypeId::of::<T>() == TypeId::of::<f32>();
    // SAFETY (all calls): extents checked above
    unsafe {
        match (single, wide_vectors()) {
            (true, true) => panels::<T, 8, 32>(m, n, k, ap, ars, acs, bp, ldb, cp, ldc, alpha, e),
            (true, false) => panels::<T, 4, 16>(m, n, k, ap, ars, acs, bp, ldb, cp, ldc, alpha, e),
            (false, true) => panels::<T, 4, 32>(m, n, k, ap, ars, acs, bp, ldb, cp, ldc, alpha, e),
            (false, false) => panels::<T, 4, 8>(m, n, k, ap, ars, acs, bp, ldb, cp, ldc, alpha, e),
        }
    }
}

/// The (rows × cols) view `x` as a row-major buffer: `x` itself when its columns are contiguous,
/// else a packed copy in `buf`. Returns (data, leading dimension).
#[inline(always)]
fn as_rows<'a, T: StorageElem>(
    x: &'a [T],
    rs: usize,
    cs: usize,
    rows: usize,
    cols: usize,
    buf: &'a mut Vec<T>,
) -> (&'a [T], usize) {
    if cs == 1 || cols <= 1 {
        return (x, rs);
    }
    buf.clear();
    buf.reserve(rows * cols);
    for r in 0..rows {
        buf.extend((0..cols).map(|c| x[r * rs + c * cs]));
    }
    (&buf[..], cols)
}

/// Store the row-major (rows × cols) `src` into the view `dst`.
#[inline(always)]
fn store<T: StorageElem>(src: &[T], rows: usize, cols: usize, dst: &mut MatMut<'_, T>) {
    for r in 0..rows {
        for c in 0..cols {
            dst.data[r * dst.rs + c * dst.cs] = src[r * cols + c];
        }
    }
}

/// C = alpha·A·B (+ E) into the view `dst` (through scratch when its columns are not contiguous).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm_into<T: StorageElem>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    ars: usize,
    acs: usize,
    b: (&[T], usize),
    dst: &mut MatMut<'_, T>,
    alpha: T,
    tmp: &mut Vec<T>,
) {
    if dst.cs == 1 || n <= 1 {
        gemm(
            m,
            n,
            k,
            a,
            ars,
            acs,
            b.0,
            b.1,
            dst.data,
            dst.rs,
            alpha,
            Epi::Store,
        );
    } else {
        tmp.clear();
        tmp.resize(m * n, T::zero());
        gemm(m, n, k, a, ars, acs, b.0, b.1, tmp, n, alpha, Epi::Store);
        store(tmp, m, n, dst);
    }
}

/// P = softmax(scale·Q·Kᵀ + bias + mask) of one block into `s.p` ([nq, nk] row-major); `bias`
/// and `mask` are [nq, nk] row-major.
#[inline(always)]
fn probabilities<T: StorageElem>(
    s: &mut Scratch<T>,
    dm: BlockDims,
    q: Mat<'_, T>,
    k: Mat<'_, T>,
    bias: Option<&[T]>,
    mask: Option<&[T]>,
) {
    let BlockDims { nq, nk, d, .. } = dm;
    s.p.resize(nq * nk, T::zero());
    // Kᵀ as [d, nk] rows: feature-major k already is
    let kt = as_rows(k.data, k.cs, k.rs, d, nk, &mut s.pack[0]);
    let alpha = T::from_f64(dm.scale);
    let epi = match bias {
        Some(b) => Epi::Add(b, nk),
        None => Epi::Store,
    };
    gemm(
        nq, nk, d, q.data, q.rs, q.cs, kt.0, kt.1, &mut s.p, nk, alpha, epi,
    );
    if nk == 0 {
        return;
    }
    for (r, row) in s.p.chunks_exact_mut(nk).enumerate() {
        if let Some(m) = mask {
            for (x, &y) in row.iter_mut().zip(&m[r * nk..(r + 1) * nk]) {
                *x += y;
            }
        }
        softmax_row(row);
    }
}

/// In-place softmax of one row, reductions over `LANES` fixed lanes.
#[inline(always)]
fn softmax_row<T: StorageElem>(row: &mut [T]) {
    let neg = T::from_f64(f64::NEG_INFINITY);
    let mut mx = [neg; LANES];
    let chunks = row.chunks_exact(LANES);
    let mut mr = neg;
    for &x in chunks.remainder() {
        mr = if x > mr { x } else { mr };
    }
    for c in chunks {
        for l in 0..LANES {
            mx[l] = if c[l] > mx[l] { c[l] } else { mx[l] };
        }
    }
    let m = mx.iter().fold(mr, |a, &b| if b > a { b } else { a });
    let mut sum = [T::zero(); LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            c[l] = (c[l] - m).exp();
            sum[l] += c[l];
        }
    }
    let mut sr = T::zero();
    for x in chunks.into_remainder() {
        *x = (*x - m).exp();
        sr += *x;
    }
    let total = sum.iter().fold(sr, |a, &b| a + b);
    let inv = T::one() / total;
    for x in row.iter_mut() {
        *x = *x * inv;
    }
}

/// Forward of one block: `out` [nq, dv] = softmax(scale·q·kᵀ + bias + mask)·v.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn forward_block<T: StorageElem>(
    s: &mut Scratch<T>,
    dm: BlockDims,
    q: Mat<'_, T>,
    k: Mat<'_, T>,
    v: Mat<'_, T>,
    bias: Option<&[T]>,
    mask: Option<&[T]>,
    mut out: MatMut<'_, T>,
) {
    let BlockDims { nq, nk, dv, .. } = dm;
    probabilities(s, dm, q, k, bias, mask);
    let vr = as_rows(v.data, v.rs, v.cs, nk, dv, &mut s.pack[1]);
    gemm_into(nq, dv, nk, &s.p, nk, 1, vr, &mut out, T::one(), &mut s.out);
}

/// Gradient views of one block's backward.
pub struct BlockGrads<'a, 'b, T> {
    pub dq: MatMut<'a, T>,
    pub dk: MatMut<'a, T>,
    pub dv: MatMut<'a, T>,
    /// [nq, nk] row-major; the block's dS is added to it (the bias gradient).
    pub dbias: Option<&'b mut [T]>,
}

/// Backward of one block for output gradient `go` [nq, dv]: dV = Pᵀ·dO, dP = dO·Vᵀ,
/// dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = scale·dS·K, dK = scale·dSᵀ·Q, dbias += dS.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn backward_block<T: StorageElem>(
    s: &mut Scratch<T>,
    dm: BlockDims,
    q: Mat<'_, T>,
    k: Mat<'_, T>,
    v: Mat<'_, T>,
    bias: Option<&[T]>,
    mask: Option<&[T]>,
    go: Mat<'_, T>,
    g: BlockGrads<'_, '_, T>,
) {
    let BlockDims { nq, nk, d, dv, .. } = dm;
    let BlockGrads {
        mut dq,
        mut dk,
        dv: mut gdv,
        dbias,
    } = g;
    probabilities(s, dm, q, k, bias, mask);
    let Scratch { p, ds, pack, out } = s;
    let [pk, pv, pg, pq] = pack;
    let scale = T::from_f64(dm.scale);
    // dV = Pᵀ·dO (Pᵀ read through strides)
    let gr = as_rows(go.data, go.rs, go.cs, nq, dv, pg);
    gemm_into(nk, dv, nq, p, 1, nk, gr, &mut gdv, T::one(), out);
    // dP = dO·Vᵀ: Vᵀ as [dv, nk] rows
    let vt = as_rows(v.data, v.cs, v.rs, dv, nk, pv);
    ds.resize(nq * nk, T::zero());
    gemm(
        nq,
        nk,
        dv,
        go.data,
        go.rs,
        go.cs,
        vt.0,
        vt.1,
        ds,
        nk,
        T::one(),
        Epi::Store,
    );
    if nk > 0 {
        for (pr, sr) in p.chunks_exact(nk).zip(ds.chunks_exact_mut(nk)) {
            let mut acc = [T::zero(); LANES];
            let (pc, sc) = (pr.chunks_exact(LANES), sr.chunks_exact(LANES));
            let mut rem = T::zero();
            for (&x, &y) in pc.remainder().iter().zip(sc.remainder()) {
                rem = fma(x, y, rem);
            }
            for (x, y) in pc.zip(sc) {
                for l in 0..LANES {
                    acc[l] = fma(x[l], y[l], acc[l]);
                }
            }
            let dot = acc.iter().fold(rem, |a, &b| a + b);
            for (y, &x) in sr.iter_mut().zip(pr) {
                *y = x * (*y - dot);
            }
        }
    }
    if let Some(db) = dbias {
        for (o, &x) in db.iter_mut().zip(ds.iter()) {
            *o += x;
        }
    }
    // dQ = scale·dS·K
    let kr = as_rows(k.data, k.rs, k.cs, nk, d, pk);
    gemm_into(nq, d, nk, ds, nk, 1, kr, &mut dq, scale, out);
    // dK = scale·dSᵀ·Q
    let qr = as_rows(q.data, q.rs, q.cs, nq, d, pq);
    gemm_into(nk, d, nq, ds, 1, nk, qr, &mut dk, scale, out);
}
