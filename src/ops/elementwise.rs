//! Elementwise math: unary functions, broadcasting binary arithmetic, where, clamp, lerp.
//! Backward rules are written with these same ops, so they differentiate again. The CUDA side
//! (`elementwise/cuda.rs`) maps each op to its code in the table cuda/elementwise_ops.cuh.

use std::sync::Arc;

#[cfg(feature = "cuda")]
mod cuda;

use crate::Result;
use crate::autograd::{GradFn, record};
use crate::tensor::shape::{broadcast_shape, contiguous_strides};
use crate::tensor::{Float, Kernel, StorageElem, Tensor};

/// Pointwise functions of one tensor (parameters fixed at construction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Recip,
    Sqr,
    Sin,
    Cos,
    Abs,
    Tanh,
    Sigmoid,
    Erf,
    Relu,
    Silu,
    Gelu,
    Softplus,
    /// x^p for a fixed exponent.
    Powf(f64),
    /// x for x > 0, slope·x otherwise.
    LeakyRelu(f64),
    /// min(max(x, lo), hi).
    Clamp(f64, f64),
    /// a·x + b.
    Affine(f64, f64),
    /// 1 where x > 0 else 0 (no gradient): masks for backward rules.
    StepPos,
    /// sign(x) in {-1, 0, 1} (no gradient).
    Sign,
    /// 1 where lo <= x <= hi else 0 (no gradient).
    InRange(f64, f64),
    /// 1 where x >= c else 0 (no gradient).
    Ge(f64),
    /// The derivative of `LeakyRelu(s)`: 1 where x > 0 else s (piecewise constant, so its own
    /// derivative is 0). One pass instead of a mask and an affine in the backward rule.
    LeakyDeriv(f64),
    /// The derivative of exact GELU, Φ(x) + x·φ(x), in one pass (the backward rule of `Gelu`).
    GeluDeriv,
}

#[inline(always)]
fn apply_unary<T: Float>(op: Unary, x: T) -> T {
    let f = T::from_f64;
    match op {
        Unary::Neg => -x,
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Rsqrt => T::one() / x.sqrt(),
        Unary::Recip => T::one() / x,
        Unary::Sqr => x * x,
        Unary::Sin => x.sin(),
        Unary::Cos => x.cos(),
        Unary::Abs => x.abs(),
        Unary::Tanh => x.tanh(),
        Unary::Sigmoid => T::one() / (T::one() + (-x).exp()),
        Unary::Erf => x.erf(),
        Unary::Relu => {
            if x > T::zero() {
                x
            } else {
                T::zero()
            }
        }
        Unary::Silu => x / (T::one() + (-x).exp()),
        Unary::Gelu => f(0.5) * x * (T::one() + (x * f(std::f64::consts::FRAC_1_SQRT_2)).erf()),
        Unary::Softplus => {
            // log(1 + e^x) without overflow
            if x > f(20.0) {
                x
            } else {
                x.max(T::zero()) + (T::one() + (-(x.abs())).exp()).ln()
            }
        }
        Unary::Powf(p) => x.powf(f(p)),
        Unary::LeakyRelu(s) => {
            if x > T::zero() {
                x
            } else {
                x * f(s)
            }
        }
        Unary::Clamp(lo, hi) => x.max(f(lo)).min(f(hi)),
        Unary::Affine(a, b) => x * f(a) + f(b),
        Unary::StepPos => {
            if x > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
        Unary::Sign => {
            if x > T::zero() {
                T::one()
            } else if x < T::zero() {
                -T::one()
            } else {
                T::zero()
            }
        }
        Unary::InRange(lo, hi) => {
            if x >= f(lo) && x <= f(hi) {
                T::one()
            } else {
                T::zero()
            }
        }
        Unary::Ge(c) => {
            if x >= f(c) {
                T::one()
            } else {
                T::zero()
            }
        }
        Unary::LeakyDeriv(s) => {
            if x > T::zero() {
                T::one()
            } else {
                f(s)
            }
        }
        Unary::GeluDeriv => {
            let cdf = f(0.5) * (T::one() + (x * f(std::f64::consts::FRAC_1_SQRT_2)).erf());
            let pdf = (f(-0.5) * x * x).exp() * f(0.398_942_280_401_432_7);
            cdf + x * pdf
        }
    }
}

/// `apply_unary` over a slice, with the op fixed per loop: each arm is its own monomorphized
/// loop, so the per-element `match` folds away and simple ops vectorize.
fn map_unary<T: StorageElem>(op: Unary, x: &[T]) -> Vec<T> {
    use crate::backend::cpu::par_map;
    if T::DTYPE == crate::DType::F32 {
        // SAFETY: T is f32 (checked above); the result is a Vec<f32> handed back as Vec<T>.
        let x32 = unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) };
        if let Some(v) = f32_maps::map(op, x32) {
            let mut v = std::mem::ManuallyDrop::new(v);
            return unsafe {
                Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity())
            };
        }
    }
    macro_rules! arms {
        ($($plain:ident),* ; $($with:ident($($a:ident),*)),*) => {
            match op {
                $(Unary::$plain => par_map(x, #[inline(always)] |v| apply_unary(Unary::$plain, v)),)*
                $(Unary::$with($($a),*) => par_map(x, #[inline(always)] move |v| apply_unary(Unary::$with($($a),*), v)),)*
            }
        };
    }
    arms!(Neg, Exp, Log, Sqrt, Rsqrt, Recip, Sqr, Sin, Cos, Abs, Tanh, Sigmoid, Erf, Relu, Silu,
          Gelu, Softplus, StepPos, Sign, GeluDeriv;
          Powf(p), LeakyRelu(s), Clamp(lo, hi), Affine(a, b), InRange(lo, hi), Ge(c),
          LeakyDeriv(s))
}

/// The transcendental activations over f32 as concrete loops in functions compiled for
/// AVX-512 / AVX2 (chosen at run time): written this way the compiler vectorizes the whole
/// polynomial evaluation of `exp_f32` / `erf_f32`, which it does not do through the generic
/// `apply_unary` path. Same formulas as `apply_unary`, so the same values up to rounding.
mod f32_maps {
    use super::Unary;
    use crate::tensor::dtype::{erf_f32, exp_f32};
    use std::mem::MaybeUninit;

    macro_rules! kernel {
        ($x:expr, |$v:ident| $body:expr) => {{
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
            fn k512(x: &[f32], o: &mut [MaybeUninit<f32>]) {
                for (o, &$v) in o.iter_mut().zip(x) {
                    o.write($body);
                }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn k256(x: &[f32], o: &mut [MaybeUninit<f32>]) {
                for (o, &$v) in o.iter_mut().zip(x) {
                    o.write($body);
                }
            }
            fn k(x: &[f32], o: &mut [MaybeUninit<f32>]) {
                for (o, &$v) in o.iter_mut().zip(x) {
                    o.write($body);
                }
            }
            run($x, |x, o| {
                #[cfg(target_arch = "x86_64")]
                {
                    if crate::backend::cpu::has_avx512() {
                        // SAFETY: the CPU has the features k512 was compiled for.
                        return unsafe { k512(x, o) };
                    }
                    if crate::backend::cpu::has_avx2_fma() {
                        // SAFETY: as above.
                        return unsafe { k256(x, o) };
                    }
                }
                k(x, o)
            })
        }};
    }

    /// `kern` over chunks of `x` on the worker threads, into a new vector.
    fn run(x: &[f32], kern: impl Fn(&[f32], &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
        let n = x.len();
        let mut out: Vec<f32> = Vec::with_capacity(n);
        crate::backend::cpu::par_chunks_mut(&mut out.spare_capacity_mut()[..n], 1 << 15, |s, c| {
            kern(&x[s..s + c.len()], c)
        });
        // SAFETY: the chunks cover 0..n and each kernel writes all of its chunk.
        unsafe { out.set_len(n) };
        out
    }

    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const INV_SQRT_2PI: f32 = 0.398_942_3;

    /// `op` over `x`, or None for ops without a loop here.
    pub(super) fn map(op: Unary, x: &[f32]) -> Option<Vec<f32>> {
        Some(match op {
            Unary::Exp => kernel!(x, |v| exp_f32(v)),
            Unary::Erf => kernel!(x, |v| erf_f32(v)),
            Unary::Sigmoid => kernel!(x, |v| 1.0 / (1.0 + exp_f32(-v))),
            Unary::Silu => kernel!(x, |v| v / (1.0 + exp_f32(-v))),
            Unary::Gelu => kernel!(x, |v| 0.5 * v * (1.0 + erf_f32(v * FRAC_1_SQRT_2))),
            Unary::GeluDeriv => kernel!(x, |v| {
                0.5 * (1.0 + erf_f32(v * FRAC_1_SQRT_2)) + v * exp_f32(-0.5 * v * v) * INV_SQRT_2PI
            }),
            _ => return None,
        })
    }
}

struct UnaryKernel(Unary);
impl Kernel for UnaryKernel {
    fn run<T: StorageElem>(&self, x: &[&[T]]) -> Result<Vec<T>> {
        let op = self.0;
        Ok(map_unary(op, x[0]))
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        x: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        cuda::unary(be, x[0], self.0)
    }
}

struct UnaryBackward {
    op: Unary,
    x: Tensor,
}

impl GradFn for UnaryBackward {
    fn name(&self) -> &'static str {
        "unary"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, out: &Tensor, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let x = &self.x;
        let gx = match self.op {
            Unary::Neg => g.neg()?,
            Unary::Exp => g.mul(out)?,
            Unary::Log => g.div(x)?,
            Unary::Sqrt => g.div(out)?.affine(0.5, 0.0)?,
            Unary::Rsqrt => g.mul(&out.powf(3.0)?)?.affine(-0.5, 0.0)?,
            Unary::Recip => g.mul(&out.sqr()?)?.neg()?,
            Unary::Sqr => g.mul(x)?.affine(2.0, 0.0)?,
            Unary::Sin => g.mul(&x.cos()?)?,
            Unary::Cos => g.mul(&x.sin()?)?.neg()?,
            Unary::Abs => g.mul(&x.unary(Unary::Sign)?)?,
            Unary::Tanh => g.mul(&out.sqr()?.affine(-1.0, 1.0)?)?,
            Unary::Sigmoid => g.mul(&out.mul(&out.affine(-1.0, 1.0)?)?)?,
            Unary::Erf => g.mul(
                &x.sqr()?
                    .neg()?
                    .exp()?
                    .affine(std::f64::consts::FRAC_2_SQRT_PI, 0.0)?,
            )?,
            Unary::Relu => g.mul(&x.unary(Unary::StepPos)?)?,
            // the derivative is a constant mask, so the second derivative re-applies it
            Unary::LeakyRelu(s) => g.mul(&x.unary(Unary::LeakyDeriv(s))?)?,
            Unary::Silu => {
                // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
                let s = x.sigmoid()?;
                let d = s.mul(&x.mul(&s.affine(-1.0, 1.0)?)?.affine(1.0, 1.0)?)?;
                g.mul(&d)?
            }
            // Φ(x) + x·φ(x), one fused op (its own rule below gives the second derivative)
            Unary::Gelu => g.mul(&x.unary(Unary::GeluDeriv)?)?,
            Unary::GeluDeriv => {
                // d/dx [Φ(x) + x·φ(x)] = φ(x)·(2 − x²)
                let pdf = x
                    .sqr()?
                    .affine(-0.5, 0.0)?
                    .exp()?
                    .affine(1.0 / (2.0 * std::f64::consts::PI).sqrt(), 0.0)?;
                g.mul(&pdf.mul(&x.sqr()?.affine(-1.0, 2.0)?)?)?
            }
            Unary::Softplus => g.mul(&x.sigmoid()?)?,
            Unary::Powf(p) => g.mul(&x.powf(p - 1.0)?)?.affine(p, 0.0)?,
            Unary::Clamp(lo, hi) => g.mul(&x.unary(Unary::InRange(lo, hi))?)?,
            Unary::Affine(a, _) => g.affine(a, 0.0)?,
            Unary::StepPos
            | Unary::Sign
            | Unary::InRange(..)
            | Unary::Ge(_)
            | Unary::LeakyDeriv(_) => g.zeros_like(),
        };
        Ok(vec![Some(gx)])
    }
}

/// How two values combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// 1 where a >= b else 0 (no gradient).
    GeMask,
}

#[inline(always)]
fn apply_binary<T: Float>(op: Binary, a: T, b: T) -> T {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::Max => a.max(b),
        Binary::Min => a.min(b),
        Binary::GeMask => {
            if a >= b {
                T::one()
            } else {
                T::zero()
            }
        }
    }
}

/// Strides of `shape` viewed as broadcast to `out` (0 where broadcast).
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = contiguous_strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                st[i - off]
            }
        })
        .collect()
}

struct BinaryKernel {
    op: Binary,
    a_shape: Vec<usize>,
    b_shape: Vec<usize>,
    out: Vec<usize>,
}

impl BinaryKernel {
    /// `f` over the broadcast of `a` and `b`. The output is walked in rows of the innermost
    /// dimension left after merging dimensions that step evenly in both inputs (a bias
    /// [1, C, 1, 1] against [N, C, H, W] becomes rows of H·W with a fixed b), rows split over
    /// threads.
    fn apply<T: StorageElem>(&self, a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
        use crate::backend::cpu::{par_blocks_mut, par_map, par_zip};
        if self.a_shape == self.b_shape {
            return par_zip(a, b, f);
        }
        if b.len() == 1 {
            let q = b[0];
            return par_map(a, |p| f(p, q));
        }
        if a.len() == 1 {
            let p = a[0];
            return par_map(b, |q| f(p, q));
        }
        let out = &self.out;
        let n: usize = out.iter().product();
        let (sa, sb) = (
            broadcast_strides(&self.a_shape, out),
            broadcast_strides(&self.b_shape, out),
        );
        // merge dimensions: d and d+1 merge when both inputs step over d+1 exactly
        let (mut shape, mut ka, mut kb) = (Vec::new(), Vec::new(), Vec::new());
        for d in 0..out.len() {
            if out[d] == 1 {
                continue;
            }
            match (shape.last_mut(), ka.last_mut(), kb.last_mut()) {
                (Some(pd), Some(pa), Some(pb))
                    if *pa == sa[d] * out[d] && *pb == sb[d] * out[d] =>
                {
                    *pd *= out[d];
                    *pa = sa[d];
                    *pb = sb[d];
                }
                _ => {
                    shape.push(out[d]);
                    ka.push(sa[d]);
                    kb.push(sb[d]);
                }
            }
        }
        let mut res = vec![T::zero(); n];
        if n == 0 {
            return res;
        }
        let inner = shape[shape.len() - 1];
        par_blocks_mut(&mut res, inner, |first_row, rows| {
            crate::backend::cpu::vectorized(|| {
                self.rows(a, b, &f, (&shape, &ka, &kb), first_row, rows)
            })
        });
        res
    }

    /// The rows of [`BinaryKernel::apply`]'s broadcast starting at row `first_row`.
    #[inline(always)]
    fn rows<T: StorageElem>(
        &self,
        a: &[T],
        b: &[T],
        f: &impl Fn(T, T) -> T,
        (shape, ka, kb): (&[usize], &[usize], &[usize]),
        first_row: usize,
        rows: &mut [T],
    ) {
        let rank = shape.len();
        let inner = shape[rank - 1];
        let (ia, ib) = (ka[rank - 1], kb[rank - 1]);
        // the first row's multi-index over the outer dimensions and its starts in a and b;
        // later rows step it like an odometer (a division per dimension and row cost more
        // than short rows themselves: StyleGAN's per-sample weights are rows of 9)
        let mut idx = vec![0usize; rank - 1];
        let (mut row, mut pa, mut pb) = (first_row, 0, 0);
        for d in (0..rank - 1).rev() {
            idx[d] = row % shape[d];
            row /= shape[d];
            pa += idx[d] * ka[d];
            pb += idx[d] * kb[d];
        }
        {
            for o in rows.chunks_mut(inner) {
                match (ia, ib) {
                    (1, 1) => {
                        for ((o, &p), &q) in o.iter_mut().zip(&a[pa..]).zip(&b[pb..]) {
                            *o = f(p, q);
                        }
                    }
                    (1, 0) => {
                        let q = b[pb];
                        for (o, &p) in o.iter_mut().zip(&a[pa..]) {
                            *o = f(p, q);
                        }
                    }
                    (0, 1) => {
                        let p = a[pa];
                        for (o, &q) in o.iter_mut().zip(&b[pb..]) {
                            *o = f(p, q);
                        }
                    }
                    _ => {
                        for (i, o) in o.iter_mut().enumerate() {
                            *o = f(a[pa + i * ia], b[pb + i * ib]);
                        }
                    }
                }
                for d in (0..rank - 1).rev() {
                    idx[d] += 1;
                    pa += ka[d];
                    pb += kb[d];
                    if idx[d] < shape[d] {
                        break;
                    }
                    pa -= ka[d] * shape[d];
                    pb -= kb[d] * shape[d];
                    idx[d] = 0;
                }
            }
        }
    }
}

impl Kernel for BinaryKernel {
    fn run<T: StorageElem>(&self, x: &[&[T]]) -> Result<Vec<T>> {
        let (a, b) = (x[0], x[1]);
        // one monomorphized loop per op, so the per-element `match` folds away
        Ok(match self.op {
            Binary::Add => self.apply(
                a,
                b,
                #[inline(always)]
                |p, q| p + q,
            ),
            Binary::Sub => self.apply(
                a,
                b,
                #[inline(always)]
                |p, q| p - q,
            ),
            Binary::Mul => self.apply(
                a,
                b,
                #[inline(always)]
                |p, q| p * q,
            ),
            Binary::Div => self.apply(
                a,
                b,
                #[inline(always)]
                |p, q| p / q,
            ),
            Binary::Max => self.apply(
                a,
                b,
                #[inline(always)]
                |p, q| apply_binary(Binary::Max, p, q),
            ),
            Binary::Min => self.apply(
                a,
                b,
                #[inline(always)]
                |p, q| apply_binary(Binary::Min, p, q),
            ),
            Binary::GeMask => self.apply(
                a,
                b,
                #[inline(always)]
                |p, q| apply_binary(Binary::GeMask, p, q),
            ),
        })
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        x: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        cuda::binary(
            be,
            x[0],
            x[1],
            self.op,
            &self.a_shape,
            &self.b_shape,
            &self.out,
        )
    }
}

struct BinaryBackward {
    op: Binary,
    a: Tensor,
    b: Tensor,
}

impl GradFn for BinaryBackward {
    fn name(&self) -> &'static str {
        match self.op {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
            Binary::Max => "maximum",
            Binary::Min => "minimum",
            Binary::GeMask => "ge",
        }
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.a.clone(), self.b.clone()]
    }
    fn backward(&self, _out: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (a, b) = (&self.a, &self.b);
        let (ga, gb) = match self.op {
            Binary::Add => (
                if needs[0] { Some(g.clone()) } else { None },
                if needs[1] { Some(g.clone()) } else { None },
            ),
            Binary::Sub => (
                if needs[0] { Some(g.clone()) } else { None },
                if needs[1] { Some(g.neg()?) } else { None },
            ),
            Binary::Mul => (
                if needs[0] { Some(g.mul(b)?) } else { None },
                if needs[1] { Some(g.mul(a)?) } else { None },
            ),
            Binary::Div => (
                if needs[0] { Some(g.div(b)?) } else { None },
                // d(a/b)/db = −a/b²
                if needs[1] {
                    Some(g.mul(a)?.div(&b.sqr()?)?.neg()?)
                } else {
                    None
                },
            ),
            Binary::Max | Binary::Min => {
                let m = if self.op == Binary::Max {
                    a.binary(b, Binary::GeMask)?
                } else {
                    b.binary(a, Binary::GeMask)?
                };
                (
                    if needs[0] { Some(g.mul(&m)?) } else { None },
                    if needs[1] {
                        Some(g.mul(&m.affine(-1.0, 1.0)?)?)
                    } else {
                        None
                    },
                )
            }
            Binary::GeMask => (None, None),
        };
        Ok(vec![
            match ga {
                Some(t) => Some(t.sum_to(a.shape())?),
                None => None,
            },
            match gb {
                Some(t) => Some(t.sum_to(b.shape())?),
                None => None,
            },
        ])
    }
}

struct WhereKernel;
impl Kernel for WhereKernel {
    fn run<T: StorageElem>(&self, x: &[&[T]]) -> Result<Vec<T>> {
        Ok(x[0]
            .iter()
            .zip(x[1])
            .zip(x[2])
            .map(|((&c, &a), &b)| if c != T::zero() { a } else { b })
            .collect())
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        x: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        crate::backend::cuda::ops::where_cond(be, x[0], x[1], x[2])
    }
}

impl Tensor {
    /// Apply a pointwise function (see [`Unary`]).
    pub fn unary(&self, op: Unary) -> Result<Tensor> {
        let out = Tensor::run_kernel("unary", &[self], self.shape(), &UnaryKernel(op))?;
        let differentiable = !matches!(
            op,
            Unary::StepPos | Unary::Sign | Unary::InRange(..) | Unary::Ge(_) | Unary::LeakyDeriv(_)
        );
        if !differentiable {
            return Ok(out);
        }
        Ok(record(out, &[self], || {
            Arc::new(UnaryBackward {
                op,
                x: self.clone(),
            })
        }))
    }

    /// Combine with broadcasting (see [`Binary`]).
    pub fn binary(&self, other: &Tensor, op: Binary) -> Result<Tensor> {
        let name = BinaryBackward {
            op,
            a: self.clone(),
            b: other.clone(),
        }
        .name();
        let out_shape = broadcast_shape(name, self.shape(), other.shape())?;
        let k = BinaryKernel {
            op,
            a_shape: self.shape().to_vec(),
            b_shape: other.shape().to_vec(),
            out: out_shape.clone(),
        };
        let out = Tensor::run_kernel(name, &[self, other], &out_shape, &k)?;
        if op == Binary::GeMask {
            return Ok(out);
        }
        Ok(record(out, &[self, other], || {
            Arc::new(BinaryBackward {
                op,
                a: self.clone(),
                b: other.clone(),
            })
        }))
    }

    pub fn add(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, Binary::Add)
    }
    pub fn sub(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, Binary::Sub)
    }
    pub fn mul(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, Binary::Mul)
    }
    pub fn div(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, Binary::Div)
    }
    pub fn maximum(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, Binary::Max)
    }
    pub fn minimum(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, Binary::Min)
    }
    /// 1 where self >= other else 0 (a constant mask).
    pub fn ge_mask(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, Binary::GeMask)
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary(Unary::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(Unary::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary(Unary::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(Unary::Sqrt)
    }
    pub fn rsqrt(&self) -> Result<Tensor> {
        self.unary(Unary::Rsqrt)
    }
    pub fn recip(&self) -> Result<Tensor> {
        self.unary(Unary::Recip)
    }
    pub fn sqr(&self) -> Result<Tensor> {
        self.unary(Unary::Sqr)
    }
    pub fn sin(&self) -> Result<Tensor> {
        self.unary(Unary::Sin)
    }
    pub fn cos(&self) -> Result<Tensor> {
        self.unary(Unary::Cos)
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(Unary::Abs)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(Unary::Tanh)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(Unary::Sigmoid)
    }
    pub fn erf(&self) -> Result<Tensor> {
        self.unary(Unary::Erf)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(Unary::Relu)
    }
    pub fn leaky_relu(&self, slope: f64) -> Result<Tensor> {
        self.unary(Unary::LeakyRelu(slope))
    }
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(Unary::Silu)
    }
    /// Exact GELU: x·Φ(x) with the error function.
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(Unary::Gelu)
    }
    pub fn softplus(&self) -> Result<Tensor> {
        self.unary(Unary::Softplus)
    }
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        self.unary(Unary::Powf(p))
    }
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        self.unary(Unary::Clamp(lo, hi))
    }
    /// a·x + b.
    pub fn affine(&self, a: f64, b: f64) -> Result<Tensor> {
        self.unary(Unary::Affine(a, b))
    }
    pub fn add_scalar(&self, b: f64) -> Result<Tensor> {
        self.affine(1.0, b)
    }
    pub fn mul_scalar(&self, a: f64) -> Result<Tensor> {
        self.affine(a, 0.0)
    }

    /// `a` where `cond` is non-zero, else `b` (broadcasting all three). `cond` gets no gradient.
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let s = broadcast_shape("where", cond.shape(), a.shape())?;
        let s = broadcast_shape("where", &s, b.shape())?;
        let c = cond.detach().broadcast_as(&s)?;
        let (ab, bb) = (a.broadcast_as(&s)?, b.broadcast_as(&s)?);
        let out = Tensor::run_kernel("where", &[&c, &ab, &bb], &s, &WhereKernel)?;
        Ok(record(out, &[&ab, &bb], || {
            Arc::new(WhereBackward {
                c,
                a: ab.clone(),
                b: bb.clone(),
            })
        }))
    }

    /// a + (b − a)·t.
    pub fn lerp(&self, b: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.add(&b.sub(self)?.mul(t)?)
    }
}

struct WhereBackward {
    c: Tensor,
    a: Tensor,
    b: Tensor,
}
impl GradFn for WhereBackward {
    fn name(&self) -> &'static str {
        "where"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.a.clone(), self.b.clone()]
    }
    fn backward(&self, _out: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let z = g.zeros_like();
        Ok(vec![
            if needs[0] {
                Some(Tensor::where_cond(&self.c, g, &z)?)
            } else {
                None
            },
            if needs[1] {
                Some(Tensor::where_cond(&self.c, &z, g)?)
            } else {
                None
            },
        ])
    }
}
