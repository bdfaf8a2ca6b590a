//! Reductions over axes (sum, mean, var, max, logsumexp) and softmax / log-softmax.

use std::sync::Arc;

use crate::autograd::{GradFn, record};
use crate::tensor::shape::{Layout, axis, contiguous_strides};
use crate::tensor::{Kernel, StorageElem, Tensor};
use crate::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Red {
    Sum,
    Max,
}

struct ReduceKernel {
    red: Red,
    in_shape: Vec<usize>,
    /// Strides into the output for each input dimension (0 on reduced axes).
    out_strides: Vec<usize>,
    out_len: usize,
}

impl Kernel for ReduceKernel {
    fn run<T: StorageElem>(&self, x: &[&[T]]) -> Result<Vec<T>> {
        let x = x[0];
        match self.red {
            Red::Sum => {
                // accumulate in f64 so long f32 sums stay accurate
                let mut acc = vec![0f64; self.out_len];
                self.walk(x, |o, row, into_one| {
                    if into_one {
                        acc[o] += sum_f64(row);
                    } else {
                        for (a, &v) in acc[o..o + row.len()].iter_mut().zip(row) {
                            *a += v.to_f64();
                        }
                    }
                });
                Ok(acc.into_iter().map(T::from_f64).collect())
            }
            Red::Max => {
                // NaN propagates: once the running max is NaN it stays NaN
                let keep = |m: T, v: T| if m.to_f64().is_nan() || v <= m { m } else { v };
                let mut acc = vec![T::from_f64(f64::NEG_INFINITY); self.out_len];
                self.walk(x, |o, row, into_one| {
                    if into_one {
                        acc[o] = row.iter().fold(acc[o], |m, &v| keep(m, v));
                    } else {
                        for (a, &v) in acc[o..o + row.len()].iter_mut().zip(row) {
                            *a = keep(*a, v);
                        }
                    }
                });
                Ok(acc)
            }
        }
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        x: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        crate::backend::cuda::ops::reduce(
            be,
            x[0],
            self.red == Red::Max,
            &self.in_shape,
            &self.out_strides,
            self.out_len,
        )
    }
}

impl ReduceKernel {
    /// Visit the (contiguous) input in rows of its innermost dimension after merging
    /// neighbouring dimensions that are both reduced or both kept (and adjacent in the output):
    /// `f(o, row, into_one)` where the row reduces into `out[o]` (`into_one`: the innermost
    /// dimension is reduced) or adds elementwise into `out[o..o + row.len()]`.
    fn walk<T: Copy>(&self, x: &[T], mut f: impl FnMut(usize, &[T], bool)) {
        // the output's strides merge exactly like a view's (the input is contiguous, so it
        // merges wherever the output does)
        let (shape, os) = Layout {
            shape: self.in_shape.clone(),
            strides: self.out_strides.clone(),
            offset: 0,
        }
        .collapsed();
        if x.is_empty() {
            return;
        }
        let Some(&inner) = shape.last() else {
            // every dimension has size 1: one element
            f(0, &x[..1], true);
            return;
        };
        let into_one = os[shape.len() - 1] == 0;
        let outer = &shape[..shape.len() - 1];
        let mut idx = vec![0usize; outer.len()];
        let mut o = 0usize;
        for row in x.chunks(inner) {
            f(o, row, into_one);
            // advance the outer multi-index and the output offset with it
            for d in (0..outer.len()).rev() {
                idx[d] += 1;
                o += os[d];
                if idx[d] < outer[d] {
                    break;
                }
                o -= os[d] * idx[d];
                idx[d] = 0;
            }
        }
    }
}

/// Sum in f64 with eight partial sums (independent chains the CPU can overlap).
fn sum_f64<T: StorageElem>(row: &[T]) -> f64 {
    let mut p = [0f64; 8];
    let mut it = row.chunks_exact(8);
    for c in &mut it {
        for (s, &v) in p.iter_mut().zip(c) {
            *s += v.to_f64();
        }
    }
    let tail: f64 = it.remainder().iter().map(|v| v.to_f64()).sum();
    p.iter().sum::<f64>() + tail
}

fn normalize_axes(op: &'static str, axes: &[isize], rank: usize) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for &a in axes {
        let a = axis(op, a, rank)?;
        if v.contains(&a) {
            return Err(Error::invalid(op, format!("axis {a} given twice")));
        }
        v.push(a);
    }
    v.sort();
    Ok(v)
}

fn reduced_shapes(shape: &[usize], axes: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let keep: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let squeezed: Vec<usize> = shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    (keep, squeezed)
}

impl Tensor {
    fn reduce(&self, op: &'static str, red: Red, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let (keep, squeezed) = reduced_shapes(self.shape(), axes);
        if red == Red::Max && axes.iter().any(|&a| self.shape()[a] == 0) {
            return Err(Error::shape(
                op,
                format!("max over an empty axis of {:?}", self.shape()),
            ));
        }
        let ks = contiguous_strides(&keep);
        let out_strides: Vec<usize> = (0..keep.len())
            .map(|i| if axes.contains(&i) { 0 } else { ks[i] })
            .collect();
        let k = ReduceKernel {
            red,
            in_shape: self.shape().to_vec(),
            out_strides,
            out_len: keep.iter().product(),
        };
        let out_shape = if keepdim { keep } else { squeezed };
        Tensor::run_kernel(op, &[self], &out_shape, &k)
    }

    /// Sum over `axes` (negative axes count from the end).
    pub fn sum_axes(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let ax = normalize_axes("sum", axes, self.rank())?;
        let out = self.reduce("sum", Red::Sum, &ax, keepdim)?;
        Ok(record(out, &[self], || {
            Arc::new(SumBackward {
                x: self.clone(),
                axes: ax,
            })
        }))
    }

    /// Sum of all elements, as a 0-d tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        let ax: Vec<isize> = (0..self.rank() as isize).collect();
        self.sum_axes(&ax, false)
    }

    pub fn mean_axes(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let ax = normalize_axes("mean", axes, self.rank())?;
        let n: usize = ax.iter().map(|&a| self.shape()[a]).product();
        self.sum_axes(axes, keepdim)?
            .affine(1.0 / n.max(1) as f64, 0.0)
    }

    pub fn mean_all(&self) -> Result<Tensor> {
        let ax: Vec<isize> = (0..self.rank() as isize).collect();
        self.mean_axes(&ax, false)
    }

    /// Variance over `axes`; `unbiased` divides by n − 1.
    pub fn var_axes(&self, axes: &[isize], keepdim: bool, unbiased: bool) -> Result<Tensor> {
        let ax = normalize_axes("var", axes, self.rank())?;
        let n: usize = ax.iter().map(|&a| self.shape()[a]).product();
        let mu = self.mean_axes(axes, true)?;
        let d = self.sub(&mu)?.sqr()?.sum_axes(axes, keepdim)?;
        let div = if unbiased {
            n.saturating_sub(1).max(1)
        } else {
            n.max(1)
        };
        d.affine(1.0 / div as f64, 0.0)
    }

    /// Maximum over `axes`. Ties share the gradient equally.
    pub fn max_axes(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let ax = normalize_axes("max", axes, self.rank())?;
        let out = self.reduce("max", Red::Max, &ax, keepdim)?;
        Ok(record(out, &[self], || {
            Arc::new(MaxBackward {
                x: self.clone(),
                axes: ax,
            })
        }))
    }

    pub fn min_axes(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.neg()?.max_axes(axes, keepdim)?.neg()
    }

    /// log Σ exp over `axes`, shifted by the (constant) maximum for stability.
    pub fn logsumexp(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let m = self.detach().max_axes(axes, true)?;
        let s = self.sub(&m)?.exp()?.sum_axes(axes, true)?.log()?.add(&m)?;
        if keepdim {
            Ok(s)
        } else {
            let ax = normalize_axes("logsumexp", axes, self.rank())?;
            s.reshape(&reduced_shapes(self.shape(), &ax).1)
        }
    }

    pub fn softmax(&self, ax: isize) -> Result<Tensor> {
        let m = self.detach().max_axes(&[ax], true)?;
        let e = self.sub(&m)?.exp()?;
        e.div(&e.sum_axes(&[ax], true)?)
    }

    pub fn log_softmax(&self, ax: isize) -> Result<Tensor> {
        self.sub(&self.logsumexp(&[ax], true)?)
    }

    /// Sum broadcast dimensions away so the result has `shape` (the adjoint of broadcasting).
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let rank = self.rank();
        if shape.len() > rank {
            return Err(Error::shape(
                "sum_to",
                format!("{:?} cannot be summed to {shape:?}", self.shape()),
            ));
        }
        let off = rank - shape.len();
        let mut axes = Vec::new();
        for i in 0..rank {
            if i < off || (shape[i - off] == 1 && self.shape()[i] != 1) {
                axes.push(i as isize);
            } else if shape[i - off] != self.shape()[i] {
                return Err(Error::shape(
                    "sum_to",
                    format!("{:?} cannot be summed to {shape:?}", self.shape()),
                ));
            }
        }
        self.sum_axes(&axes, true)?.reshape(shape)
    }
}

struct SumBackward {
    x: Tensor,
    axes: Vec<usize>,
}
impl GradFn for SumBackward {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _out: &Tensor, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let keep = reduced_shapes(self.x.shape(), &self.axes).0;
        Ok(vec![Some(g.reshape(&keep)?.broadcast_as(self.x.shape())?)])
    }
}

struct MaxBackward {
    x: Tensor,
    axes: Vec<usize>,
}
impl GradFn for MaxBackward {
    fn name(&self) -> &'static str {
        "max"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, out: &Tensor, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let keep = reduced_shapes(self.x.shape(), &self.axes).0;
        let m = out.detach().reshape(&keep)?;
        let mask = self.x.detach().ge_mask(&m)?;
        let ax: Vec<isize> = self.axes.iter().map(|&a| a as isize).collect();
        let count = mask.sum_axes(&ax, true)?;
        let w = mask.div(&count)?;
        Ok(vec![Some(g.reshape(&keep)?.mul(&w)?)])
    }
}
