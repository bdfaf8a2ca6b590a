//! Launches of the general-purpose kernels (cuda/elementwise.cu, reduce.cu, index.cu, and the
//! GEMM): elementwise maps by op code, reductions, gathers, copies of strided views, matrix
//! products. They work on device storages and plain sizes only; the ops in `crate::ops` that
//! call them (from their `Kernel::cuda`) and `tensor` (for views and fills) know what they
//! mean. Inputs arrive contiguous (offset 0); every function returns fresh storage.

use std::sync::Arc;

use super::{CudaBackend, CudaStorage, Dims, coalesce, launch, sfx};
use crate::tensor::shape::contiguous_strides;
use crate::tensor::{DType, Layout};
use crate::{Error, Result};

const BLOCK: u32 = 256;

fn same_dtype(op: &'static str, xs: &[&CudaStorage]) -> Result<DType> {
    let dt = xs.first().map(|s| s.dtype()).unwrap_or(DType::F32);
    if let Some(b) = xs.iter().find(|s| s.dtype() != dt) {
        return Err(Error::DType {
            op,
            msg: format!("{} and {}", dt.name(), b.dtype().name()),
        });
    }
    Ok(dt)
}

// `UnaryCode` and `BinaryCode`: the op table cuda/elementwise_ops.cuh as Rust enums (build.rs).
include!(concat!(env!("OUT_DIR"), "/elementwise_codes.rs"));

/// y = op(x; p, q) elementwise, `p` and `q` the parameters of the ops that take them.
pub(crate) fn unary(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    op: UnaryCode,
    p: f64,
    q: f64,
) -> Result<CudaStorage> {
    let dt = x.dtype();
    let n = x.len();
    let y = be.alloc(dt, n)?;
    if n == 0 {
        return Ok(y);
    }
    let code = op as i32;
    let f = be.func("elementwise", &format!("unary_{}", sfx(dt)))?;
    let (nn, xp, yp) = (n as i64, x.ptr(), y.ptr());
    launch!(be, "unary", f, be.grid(n, BLOCK); &nn, &code, &p, &q, &xp, &yp)?;
    Ok(y)
}

/// Merge output dimensions where both operands' strides allow it.
fn coalesce2(shape: &[usize], sa: &[usize], sb: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut s, mut a, mut b): (Vec<usize>, Vec<usize>, Vec<usize>) = (vec![], vec![], vec![]);
    for i in 0..shape.len() {
        let d = shape[i];
        if d == 1 {
            continue;
        }
        if let Some(last) = s.len().checked_sub(1)
            && a[last] == sa[i] * d
            && b[last] == sb[i] * d
        {
            s[last] *= d;
            a[last] = sa[i];
            b[last] = sb[i];
            continue;
        }
        s.push(d);
        a.push(sa[i]);
        b.push(sb[i]);
    }
    if s.is_empty() {
        s.push(1);
        a.push(0);
        b.push(0);
    }
    (s, a, b)
}

/// y = a op b over the output shape `out`, reading a and b through strides `sa`, `sb` (0 along
/// broadcast dims).
pub(crate) fn binary(
    be: &Arc<CudaBackend>,
    a: &CudaStorage,
    b: &CudaStorage,
    op: BinaryCode,
    out: &[usize],
    sa: &[usize],
    sb: &[usize],
) -> Result<CudaStorage> {
    let dt = same_dtype("binary", &[a, b])?;
    let n: usize = out.iter().product();
    let y = be.alloc(dt, n)?;
    if n == 0 {
        return Ok(y);
    }
    let (shape, sa, sb) = coalesce2(out, sa, sb);
    let (ds, da, db) = (Dims::from(&shape)?, Dims::from(&sa)?, Dims::from(&sb)?);
    let f = be.func("elementwise", &format!("binary_{}", sfx(dt)))?;
    let (nn, code, rank) = (n as i64, op as i32, shape.len() as i32);
    let (ap, bp, yp) = (a.ptr(), b.ptr(), y.ptr());
    launch!(be, "binary", f, be.grid(n, BLOCK); &nn, &code, &rank, &ds, &da, &db, &ap, &bp, &yp)?;
    Ok(y)
}

pub(crate) fn where_cond(
    be: &Arc<CudaBackend>,
    c: &CudaStorage,
    a: &CudaStorage,
    b: &CudaStorage,
) -> Result<CudaStorage> {
    let dt = same_dtype("where", &[c, a, b])?;
    let n = a.len();
    let y = be.alloc(dt, n)?;
    if n == 0 {
        return Ok(y);
    }
    let f = be.func("elementwise", &format!("where_{}", sfx(dt)))?;
    let (nn, cp, ap, bp, yp) = (n as i64, c.ptr(), a.ptr(), b.ptr(), y.ptr());
    launch!(be, "where", f, be.grid(n, BLOCK); &nn, &cp, &ap, &bp, &yp)?;
    Ok(y)
}

/// `len` copies of `v`.
pub(crate) fn fill(be: &Arc<CudaBackend>, dt: DType, len: usize, v: f64) -> Result<CudaStorage> {
    let y = be.alloc(dt, len)?;
    if len == 0 {
        return Ok(y);
    }
    let f = be.func("elementwise", &format!("fill_{}", sfx(dt)))?;
    let (nn, yp) = (len as i64, y.ptr());
    launch!(be, "fill", f, be.grid(len, BLOCK); &nn, &v, &yp)?;
    Ok(y)
}

/// A contiguous copy of the view `l` of `x`.
pub(crate) fn strided_copy(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    l: &Layout,
) -> Result<CudaStorage> {
    let dt = x.dtype();
    let n = l.elem_count();
    let y = be.alloc(dt, n)?;
    if n == 0 {
        return Ok(y);
    }
    let (shape, strides) = coalesce(&l.shape, &l.strides);
    if shape.len() == 1 && strides[0] == 1 {
        let sz = dt.size_in_bytes();
        be.copy_dtod(y.ptr(), x.ptr() + (l.offset * sz) as u64, n * sz)?;
        return Ok(y);
    }
    let f = be.func("elementwise", &format!("strided_copy_{}", sfx(dt)))?;
    let (ds, dst) = (Dims::from(&shape)?, Dims::from(&strides)?);
    let (nn, rank, off, xp, yp) = (
        n as i64,
        shape.len() as i32,
        l.offset as i64,
        x.ptr(),
        y.ptr(),
    );
    launch!(be, "contiguous", f, be.grid(n, BLOCK); &nn, &rank, &ds, &dst, &off, &xp, &yp)?;
    Ok(y)
}

/// Write contiguous `src` into the view `l` of `dst`.
pub(crate) fn strided_assign(
    be: &Arc<CudaBackend>,
    dst: &CudaStorage,
    l: &Layout,
    src: &CudaStorage,
) -> Result<()> {
    let dt = same_dtype("assign", &[dst, src])?;
    let n = l.elem_count();
    if n == 0 {
        return Ok(());
    }
    let (shape, strides) = coalesce(&l.shape, &l.strides);
    if shape.len() == 1 && strides[0] == 1 {
        let sz = dt.size_in_bytes();
        return be.copy_dtod(dst.ptr() + (l.offset * sz) as u64, src.ptr(), n * sz);
    }
    let f = be.func("elementwise", &format!("strided_assign_{}", sfx(dt)))?;
    let (ds, dst_s) = (Dims::from(&shape)?, Dims::from(&strides)?);
    let (nn, rank, off, xp, yp) = (
        n as i64,
        shape.len() as i32,
        l.offset as i64,
        src.ptr(),
        dst.ptr(),
    );
    launch!(be, "assign", f, be.grid(n, BLOCK); &nn, &rank, &ds, &dst_s, &off, &xp, &yp)
}

/// Sum or max over the axes whose output stride is 0 (see `ReduceKernel`).
pub(crate) fn reduce(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    is_max: bool,
    in_shape: &[usize],
    out_strides: &[usize],
    out_len: usize,
) -> Result<CudaStorage> {
    let dt = x.dtype();
    let op = if is_max { "max" } else { "sum" };
    let y = be.alloc(dt, out_len)?;
    if out_len == 0 {
        return Ok(y);
    }
    let st = contiguous_strides(in_shape);
    let (mut ks, mut kst, mut rs, mut rst) = (vec![], vec![], vec![], vec![]);
    for i in 0..in_shape.len() {
        if out_strides[i] == 0 {
            rs.push(in_shape[i]);
            rst.push(st[i]);
        } else {
            ks.push(in_shape[i]);
            kst.push(st[i]);
        }
    }
    let red_len: usize = rs.iter().product();
    let (ks, kst) = coalesce(&ks, &kst);
    let (rs, rst) = coalesce(&rs, &rst);
    let threads = red_len.next_power_of_two().clamp(32, 256) as u32;
    let (dk, dkst, dr, drst) = (
        Dims::from(&ks)?,
        Dims::from(&kst)?,
        Dims::from(&rs)?,
        Dims::from(&rst)?,
    );
    let (ol, rl, kr, rr) = (
        out_len as i64,
        red_len as i64,
        ks.len() as i32,
        rs.len() as i32,
    );
    let (xp, yp) = (x.ptr(), y.ptr());
    let parts = reduce_parts(out_len, red_len, be.sm_count as usize);
    if parts == 1 {
        let f = be.func("reduce", &format!("{op}_{}", sfx(dt)))?;
        launch!(be, op, f, be.blocks(out_len, threads, 0);
            &ol, &rl, &kr, &dk, &dkst, &rr, &dr, &drst, &xp, &yp)?;
        return Ok(y);
    }
    // partials (double for sums), then a fixed-order combination per output
    let part = be.alloc(if is_max { dt } else { DType::F64 }, out_len * parts)?;
    let chunk = red_len.div_ceil(parts);
    let (pa, ch, pp) = (parts as i64, chunk as i64, part.ptr());
    let f = be.func("reduce", &format!("{op}_split_{}", sfx(dt)))?;
    launch!(be, op, f, be.blocks(out_len * parts, 256, 0);
        &ol, &rl, &pa, &ch, &kr, &dk, &dkst, &rr, &dr, &drst, &xp, &pp)?;
    let threads = parts.next_power_of_two().clamp(32, 256) as u32;
    let f = be.func("reduce", &format!("{op}_parts_{}", sfx(dt)))?;
    launch!(be, op, f, be.blocks(out_len, threads, 0); &ol, &pa, &pp, &yp)?;
    Ok(y)
}

/// Reduced elements per block above which a reduction is split across blocks.
const REDUCE_CHUNK: usize = 16 * 1024;

/// Blocks per output: 1 while the outputs alone keep the GPU busy or each is short; else enough
/// chunks of at least [`REDUCE_CHUNK`] elements to give every SM a few blocks.
fn reduce_parts(out_len: usize, red_len: usize, sm_count: usize) -> usize {
    let want = (4 * sm_count).div_ceil(out_len.max(1));
    want.min(red_len / REDUCE_CHUNK).clamp(1, 1024)
}

/// The index map on the device (host metadata the op was given; uploaded once per content).
fn upload_map(be: &Arc<CudaBackend>, map: &[u32]) -> Result<Arc<super::alloc::Buffer>> {
    be.upload_const("index map u32", map)
}

pub(crate) fn gather(be: &Arc<CudaBackend>, x: &CudaStorage, map: &[u32]) -> Result<CudaStorage> {
    let dt = x.dtype();
    let n = map.len();
    let y = be.alloc(dt, n)?;
    if n == 0 {
        return Ok(y);
    }
    let m = upload_map(be, map)?;
    let f = be.func("index", &format!("gather_{}", sfx(dt)))?;
    let (nn, mp, xp, yp) = (n as i64, m.ptr(), x.ptr(), y.ptr());
    launch!(be, "gather", f, be.grid(n, BLOCK); &nn, &mp, &xp, &yp)?;
    Ok(y)
}

pub(crate) fn scatter_add(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    map: &[u32],
    out_len: usize,
) -> Result<CudaStorage> {
    let dt = x.dtype();
    let y = be.zeros(dt, out_len)?;
    let n = map.len();
    if n == 0 || out_len == 0 {
        return Ok(y);
    }
    let m = upload_map(be, map)?;
    let f = be.func("index", &format!("scatter_add_{}", sfx(dt)))?;
    let (nn, mp, xp, yp) = (n as i64, m.ptr(), x.ptr(), y.ptr());
    launch!(be, "scatter_add", f, be.grid(n, BLOCK); &nn, &mp, &xp, &yp)?;
    Ok(y)
}

pub(crate) fn cat(
    be: &Arc<CudaBackend>,
    xs: &[&CudaStorage],
    outer: usize,
    inner: usize,
    sizes: &[usize],
) -> Result<CudaStorage> {
    let dt = same_dtype("cat", xs)?;
    let total: usize = sizes.iter().sum();
    let y = be.alloc(dt, outer * total * inner)?;
    let f = be.func("index", &format!("cat_copy_{}", sfx(dt)))?;
    let mut col = 0usize;
    for (x, &s) in xs.iter().zip(sizes) {
        let n = outer * s * inner;
        if n > 0 {
            let (o, ir, or, co) = (
                outer as i64,
                (s * inner) as i64,
                (total * inner) as i64,
                col as i64,
            );
            let (xp, yp) = (x.ptr(), y.ptr());
            launch!(be, "cat", f, be.grid(n, BLOCK); &o, &ir, &or, &co, &xp, &yp)?;
        }
        col += s * inner;
    }
    Ok(y)
}

pub(crate) fn pad(
    be: &Arc<CudaBackend>,
    x: &CudaStorage,
    outer: usize,
    inner: usize,
    before: usize,
    size: usize,
    after: usize,
) -> Result<CudaStorage> {
    let dt = x.dtype();
    let n = outer * (before + size + after) * inner;
    let y = be.alloc(dt, n)?;
    if n == 0 {
        return Ok(y);
    }
    let f = be.func("index", &format!("pad_axis_{}", sfx(dt)))?;
    let (o, b, s, a, i) = (
        outer as i64,
        before as i64,
        size as i64,
        after as i64,
        inner as i64,
    );
    let (xp, yp) = (x.ptr(), y.ptr());
    launch!(be, "pad", f, be.grid(n, BLOCK); &o, &b, &s, &a, &i, &xp, &yp)?;
    Ok(y)
}

/// C[b] = A[b] · B[b], row-major, through cuBLAS's strided-batched GEMM (near the device's
/// float32 peak; a hand kernel would not beat it). Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ,
/// so B goes first.
pub(crate) fn matmul(
    be: &Arc<CudaBackend>,
    a: &CudaStorage,
    b: &CudaStorage,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> Result<CudaStorage> {
    let dt = same_dtype("matmul", &[a, b])?;
    let len = batch * m * n;
    if len == 0 {
        return be.alloc(dt, 0);
    }
    if k == 0 {
        return be.zeros(dt, len);
    }
    let c = be.alloc(dt, len)?;
    be.gemm(dt, batch, m, k, n, a, b, &c)?;
    Ok(c)
}
