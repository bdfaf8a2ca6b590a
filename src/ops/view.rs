//! Shape ops: reshape, permute/transpose, narrow, broadcast, concat/stack, padding, and gathers
//! by an index map (with scatter-add as their adjoint) for flips, rolls, reflect padding and
//! index selection.

use std::sync::Arc;

use crate::autograd::{GradFn, record};
use crate::tensor::shape::{Layout, axis, contiguous_strides, elem_count};
use crate::tensor::{Kernel, StorageElem, Tensor};
use crate::{Error, Result};

/// Marks an output position of an index map that reads zero.
pub const ZERO: u32 = u32::MAX;

impl Tensor {
    /// Same elements, new shape (a view when contiguous, else a copy). One dimension may be
    /// `usize::MAX` to infer it.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let mut shape = shape.to_vec();
        if let Some(pos) = shape.iter().position(|&d| d == usize::MAX) {
            let rest: usize = shape
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != pos)
                .map(|(_, &d)| d)
                .product();
            if rest == 0 || !self.elem_count().is_multiple_of(rest) {
                return Err(Error::shape(
                    "reshape",
                    format!(
                        "cannot infer a dimension reshaping {:?} to {shape:?}",
                        self.shape()
                    ),
                ));
            }
            shape[pos] = self.elem_count() / rest;
        }
        if elem_count(&shape) != self.elem_count() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "{:?} ({} elements) to {shape:?}",
                    self.shape(),
                    self.elem_count()
                ),
            ));
        }
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let base = if self.is_contiguous() {
            self.detach()
        } else {
            self.contiguous_detached()
        };
        let out = base.view_of(Layout {
            shape: shape.clone(),
            strides: contiguous_strides(&shape),
            offset: base.layout().offset,
        });
        Ok(record(out, &[self], || {
            Arc::new(ReshapeBackward { x: self.clone() })
        }))
    }

    /// Insert a dimension of size 1 at `ax`.
    pub fn unsqueeze(&self, ax: usize) -> Result<Tensor> {
        if ax > self.rank() {
            return Err(Error::invalid(
                "unsqueeze",
                format!("axis {ax} for rank {}", self.rank()),
            ));
        }
        let mut s = self.shape().to_vec();
        s.insert(ax, 1);
        self.reshape(&s)
    }

    /// Merge dimensions `from..=to` into one.
    pub fn flatten(&self, from: usize, to: usize) -> Result<Tensor> {
        if from > to || to >= self.rank() {
            return Err(Error::invalid(
                "flatten",
                format!("dims {from}..={to} for rank {}", self.rank()),
            ));
        }
        let s = self.shape();
        let mut n = s[..from].to_vec();
        n.push(s[from..=to].iter().product());
        n.extend_from_slice(&s[to + 1..]);
        self.reshape(&n)
    }

    /// Reorder dimensions (a view).
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if dims.len() != r
            || dims
                .iter()
                .any(|&d| d >= r || std::mem::replace(&mut seen[d], true))
        {
            return Err(Error::invalid(
                "permute",
                format!("{dims:?} is not a permutation of {r} dims"),
            ));
        }
        let l = self.layout();
        let out = self.detach().view_of(Layout {
            shape: dims.iter().map(|&d| l.shape[d]).collect(),
            strides: dims.iter().map(|&d| l.strides[d]).collect(),
            offset: l.offset,
        });
        let mut inv = vec![0; r];
        for (i, &d) in dims.iter().enumerate() {
            inv[d] = i;
        }
        Ok(record(out, &[self], || {
            Arc::new(PermuteBackward {
                x: self.clone(),
                inv,
            })
        }))
    }

    /// Swap two dimensions (a view).
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let (a, b) = (
            axis("transpose", a, self.rank())?,
            axis("transpose", b, self.rank())?,
        );
        let mut d: Vec<usize> = (0..self.rank()).collect();
        d.swap(a, b);
        self.permute(&d)
    }

    /// `len` entries of dimension `ax` starting at `start` (a view).
    pub fn narrow(&self, ax: isize, start: usize, len: usize) -> Result<Tensor> {
        let a = axis("narrow", ax, self.rank())?;
        let size = self.shape()[a];
        if start + len > size {
            return Err(Error::shape(
                "narrow",
                format!("{start}..{} of axis {a} of {:?}", start + len, self.shape()),
            ));
        }
        let l = self.layout();
        let mut shape = l.shape.clone();
        shape[a] = len;
        let out = self.detach().view_of(Layout {
            shape,
            strides: l.strides.clone(),
            offset: l.offset + start * l.strides[a],
        });
        Ok(record(out, &[self], || {
            Arc::new(NarrowBackward {
                x: self.clone(),
                ax: a,
                start,
                len,
            })
        }))
    }

    /// Split along `ax` into pieces of the given sizes.
    pub fn split(&self, ax: isize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &s in sizes {
            out.push(self.narrow(ax, start, s)?);
            start += s;
        }
        Ok(out)
    }

    /// Split along `ax` into `n` equal pieces.
    pub fn chunk(&self, ax: isize, n: usize) -> Result<Vec<Tensor>> {
        let a = axis("chunk", ax, self.rank())?;
        let d = self.shape()[a];
        if n == 0 || !d.is_multiple_of(n) {
            return Err(Error::shape(
                "chunk",
                format!(
                    "axis {a} of {:?} does not split into {n} equal parts",
                    self.shape()
                ),
            ));
        }
        self.split(ax, &vec![d / n; n])
    }

    /// View with size-1 (or missing leading) dimensions repeated to `shape`, without copying.
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let r = self.rank();
        if shape.len() < r {
            return Err(Error::shape(
                "broadcast",
                format!("{:?} to {shape:?}", self.shape()),
            ));
        }
        let off = shape.len() - r;
        let l = self.layout();
        let mut strides = vec![0; shape.len()];
        for i in 0..r {
            if l.shape[i] == shape[off + i] {
                strides[off + i] = l.strides[i];
            } else if l.shape[i] != 1 {
                return Err(Error::shape(
                    "broadcast",
                    format!("{:?} to {shape:?}", self.shape()),
                ));
            }
        }
        let out = self.detach().view_of(Layout {
            shape: shape.to_vec(),
            strides,
            offset: l.offset,
        });
        Ok(record(out, &[self], || {
            Arc::new(BroadcastBackward { x: self.clone() })
        }))
    }

    /// A contiguous copy (or self when already contiguous).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let out = self.contiguous_detached();
        Ok(record(out, &[self], || {
            Arc::new(IdentityBackward { x: self.clone() })
        }))
    }

    /// Join tensors along `ax`; all other dimensions must agree.
    pub fn cat(ts: &[Tensor], ax: isize) -> Result<Tensor> {
        let first = ts
            .first()
            .ok_or_else(|| Error::invalid("cat", "no tensors given"))?;
        let a = axis("cat", ax, first.rank())?;
        for t in ts {
            let ok = t.rank() == first.rank()
                && (0..t.rank()).all(|i| i == a || t.shape()[i] == first.shape()[i]);
            if !ok {
                let shapes: Vec<_> = ts.iter().map(|t| t.shape().to_vec()).collect();
                return Err(Error::shape("cat", format!("along axis {a}: {shapes:?}")));
            }
        }
        let sizes: Vec<usize> = ts.iter().map(|t| t.shape()[a]).collect();
        let mut shape = first.shape().to_vec();
        shape[a] = sizes.iter().sum();
        let outer: usize = shape[..a].iter().product();
        let inner: usize = shape[a + 1..].iter().product();
        let refs: Vec<&Tensor> = ts.iter().collect();
        let k = CatKernel {
            outer,
            inner,
            sizes: sizes.clone(),
        };
        let out = Tensor::run_kernel("cat", &refs, &shape, &k)?;
        Ok(record(out, &refs, || {
            Arc::new(CatBackward {
                xs: ts.to_vec(),
                ax: a,
                sizes,
            })
        }))
    }

    /// Stack equally shaped tensors along a new dimension `ax`.
    pub fn stack(ts: &[Tensor], ax: usize) -> Result<Tensor> {
        let us: Vec<Tensor> = ts.iter().map(|t| t.unsqueeze(ax)).collect::<Result<_>>()?;
        Tensor::cat(&us, ax as isize)
    }

    /// Zero padding of dimension `ax`: `before` zeros, the data, `after` zeros.
    pub fn pad_axis(&self, ax: isize, before: usize, after: usize) -> Result<Tensor> {
        let a = axis("pad", ax, self.rank())?;
        if before == 0 && after == 0 {
            return Ok(self.clone());
        }
        let mut shape = self.shape().to_vec();
        shape[a] += before + after;
        let outer: usize = shape[..a].iter().product();
        let inner: usize = shape[a + 1..].iter().product();
        let k = PadKernel {
            outer,
            inner,
            before,
            size: self.shape()[a],
            after,
        };
        let out = Tensor::run_kernel("pad", &[self], &shape, &k)?;
        Ok(record(out, &[self], || {
            Arc::new(PadBackward {
                x: self.clone(),
                ax: a,
                before,
            })
        }))
    }

    /// Output element i = input element `map[i]` (flat, row-major), or 0 where `map[i] == ZERO`.
    /// Linear; its adjoint is [`Tensor::scatter_add_map`].
    pub fn gather_map(&self, map: Arc<Vec<u32>>, out_shape: &[usize]) -> Result<Tensor> {
        if map.len() != elem_count(out_shape) {
            return Err(Error::shape(
                "gather",
                format!("map of {} entries for shape {out_shape:?}", map.len()),
            ));
        }
        let n = self.elem_count();
        if map.iter().any(|&i| i != ZERO && i as usize >= n) {
            return Err(Error::invalid(
                "gather",
                format!("an index is outside the {n} elements of {:?}", self.shape()),
            ));
        }
        let out = Tensor::run_kernel(
            "gather",
            &[self],
            out_shape,
            &GatherKernel { map: map.clone() },
        )?;
        Ok(record(out, &[self], || {
            Arc::new(GatherBackward {
                x: self.clone(),
                map,
            })
        }))
    }

    /// Adjoint of [`Tensor::gather_map`]: output of `out_shape` (the gather's input shape) where
    /// every element i of self is added at `map[i]`.
    pub fn scatter_add_map(&self, map: Arc<Vec<u32>>, out_shape: &[usize]) -> Result<Tensor> {
        if map.len() != self.elem_count() {
            return Err(Error::shape(
                "scatter_add",
                format!("map of {} entries for {:?}", map.len(), self.shape()),
            ));
        }
        let n = elem_count(out_shape);
        if map.iter().any(|&i| i != ZERO && i as usize >= n) {
            return Err(Error::invalid(
                "scatter_add",
                format!("an index is outside the {n} elements of {out_shape:?}"),
            ));
        }
        let out = Tensor::run_kernel(
            "scatter_add",
            &[self],
            out_shape,
            &ScatterKernel {
                map: map.clone(),
                n,
            },
        )?;
        Ok(record(out, &[self], || {
            Arc::new(ScatterBackward {
                x: self.clone(),
                map,
            })
        }))
    }

    /// Entries `idx` of dimension `ax`, in that order (repeats allowed).
    pub fn index_select(&self, ax: isize, idx: &[usize]) -> Result<Tensor> {
        let a = axis("index_select", ax, self.rank())?;
        let d = self.shape()[a];
        if let Some(&bad) = idx.iter().find(|&&i| i >= d) {
            return Err(Error::invalid(
                "index_select",
                format!("index {bad} for axis {a} of size {d}"),
            ));
        }
        self.map_axis(a, idx.len(), |i| Some(idx[i]))
    }

    /// Reverse the order along each of `axes`.
    pub fn flip(&self, axes: &[isize]) -> Result<Tensor> {
        let mut t = self.clone();
        for &ax in axes {
            let a = axis("flip", ax, self.rank())?;
            let d = self.shape()[a];
            t = t.map_axis(a, d, |i| Some(d - 1 - i))?;
        }
        Ok(t)
    }

    /// Cyclic shift by `shift` along `ax` (torch.roll): out\[i\] = in[(i − shift) mod n].
    pub fn roll(&self, shift: isize, ax: isize) -> Result<Tensor> {
        let a = axis("roll", ax, self.rank())?;
        let d = self.shape()[a] as isize;
        if d == 0 {
            return Ok(self.clone());
        }
        self.map_axis(a, d as usize, |i| {
            Some((i as isize - shift).rem_euclid(d) as usize)
        })
    }

    /// Reflect padding (no edge repeat, as torch's 'reflect') of dimension `ax`.
    pub fn pad_reflect_axis(&self, ax: isize, before: usize, after: usize) -> Result<Tensor> {
        let a = axis("pad_reflect", ax, self.rank())?;
        let d = self.shape()[a];
        if before >= d.max(1) || after >= d.max(1) {
            return Err(Error::invalid(
                "pad_reflect",
                format!(
                    "padding {before}/{after} needs an axis longer than that, axis {a} has {d}"
                ),
            ));
        }
        self.map_axis(a, d + before + after, |i| {
            let j = i as isize - before as isize;
            let n = d as isize;
            let r = if j < 0 {
                -j
            } else if j >= n {
                2 * (n - 1) - j
            } else {
                j
            };
            Some(r as usize)
        })
    }

    /// Zero (`reflect == false`) or reflect padding of the last two dims: (top, bottom, left, right).
    pub fn pad2d(&self, pads: (usize, usize, usize, usize), reflect: bool) -> Result<Tensor> {
        let (t, b, l, r) = pads;
        if reflect {
            self.pad_reflect_axis(-2, t, b)?.pad_reflect_axis(-1, l, r)
        } else {
            self.pad_axis(-2, t, b)?.pad_axis(-1, l, r)
        }
    }

    /// Gather along one axis: output index i of that axis reads input index `f(i)` (or zero).
    fn map_axis(
        &self,
        a: usize,
        out_len: usize,
        f: impl Fn(usize) -> Option<usize>,
    ) -> Result<Tensor> {
        let s = self.shape();
        let outer: usize = s[..a].iter().product();
        let inner: usize = s[a + 1..].iter().product();
        let d = s[a];
        let total = outer * out_len * inner;
        if self.elem_count() >= ZERO as usize || total >= ZERO as usize {
            return Err(Error::invalid(
                "gather",
                "tensor too large for 32-bit index maps",
            ));
        }
        let src: Vec<Option<usize>> = (0..out_len).map(f).collect();
        let mut map = Vec::with_capacity(total);
        for o in 0..outer {
            for s_i in &src {
                for k in 0..inner {
                    map.push(match s_i {
                        Some(j) => ((o * d + j) * inner + k) as u32,
                        None => ZERO,
                    });
                }
            }
        }
        let mut shape = s.to_vec();
        shape[a] = out_len;
        self.gather_map(Arc::new(map), &shape)
    }
}

struct CatKernel {
    outer: usize,
    inner: usize,
    sizes: Vec<usize>,
}
impl Kernel for CatKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let total: usize = self.sizes.iter().sum();
        let mut out = Vec::with_capacity(self.outer * total * self.inner);
        for o in 0..self.outer {
            for (x, &s) in xs.iter().zip(&self.sizes) {
                out.extend_from_slice(&x[o * s * self.inner..(o + 1) * s * self.inner]);
            }
        }
        Ok(out)
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        x: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        crate::backend::cuda::ops::cat(be, x, self.outer, self.inner, &self.sizes)
    }
}

struct PadKernel {
    outer: usize,
    inner: usize,
    before: usize,
    size: usize,
    after: usize,
}
impl Kernel for PadKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let x = xs[0];
        let n = self.inner;
        let mut out = Vec::with_capacity(self.outer * (self.before + self.size + self.after) * n);
        for o in 0..self.outer {
            out.extend(std::iter::repeat_n(T::zero(), self.before * n));
            out.extend_from_slice(&x[o * self.size * n..(o + 1) * self.size * n]);
            out.extend(std::iter::repeat_n(T::zero(), self.after * n));
        }
        Ok(out)
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        x: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        crate::backend::cuda::ops::pad(
            be,
            x[0],
            self.outer,
            self.inner,
            self.before,
            self.size,
            self.after,
        )
    }
}

struct GatherKernel {
    map: Arc<Vec<u32>>,
}
impl Kernel for GatherKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let x = xs[0];
        Ok(self
            .map
            .iter()
            .map(|&i| if i == ZERO { T::zero() } else { x[i as usize] })
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
        crate::backend::cuda::ops::gather(be, x[0], &self.map)
    }
}

struct ScatterKernel {
    map: Arc<Vec<u32>>,
    n: usize,
}
impl Kernel for ScatterKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let mut out = vec![T::zero(); self.n];
        for (&i, &v) in self.map.iter().zip(xs[0]) {
            if i != ZERO {
                out[i as usize] += v;
            }
        }
        Ok(out)
    }
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        _op: &'static str,
        x: &[&crate::backend::cuda::CudaStorage],
        _n: usize,
        be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        crate::backend::cuda::ops::scatter_add(be, x[0], &self.map, self.n)
    }
}

struct ReshapeBackward {
    x: Tensor,
}
impl GradFn for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.reshape(self.x.shape())?)])
    }
}

struct IdentityBackward {
    x: Tensor,
}
impl GradFn for IdentityBackward {
    fn name(&self) -> &'static str {
        "contiguous"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.clone())])
    }
}

struct PermuteBackward {
    x: Tensor,
    inv: Vec<usize>,
}
impl GradFn for PermuteBackward {
    fn name(&self) -> &'static str {
        "permute"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.permute(&self.inv)?)])
    }
}

struct NarrowBackward {
    x: Tensor,
    ax: usize,
    start: usize,
    len: usize,
}
impl GradFn for NarrowBackward {
    fn name(&self) -> &'static str {
        "narrow"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let after = self.x.shape()[self.ax] - self.start - self.len;
        Ok(vec![Some(g.pad_axis(
            self.ax as isize,
            self.start,
            after,
        )?)])
    }
}

struct PadBackward {
    x: Tensor,
    ax: usize,
    before: usize,
}
impl GradFn for PadBackward {
    fn name(&self) -> &'static str {
        "pad"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.narrow(
            self.ax as isize,
            self.before,
            self.x.shape()[self.ax],
        )?)])
    }
}

struct BroadcastBackward {
    x: Tensor,
}
impl GradFn for BroadcastBackward {
    fn name(&self) -> &'static str {
        "broadcast"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.sum_to(self.x.shape())?)])
    }
}

struct CatBackward {
    xs: Vec<Tensor>,
    ax: usize,
    sizes: Vec<usize>,
}
impl GradFn for CatBackward {
    fn name(&self) -> &'static str {
        "cat"
    }
    fn inputs(&self) -> Vec<Tensor> {
        self.xs.clone()
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let mut start = 0;
        let mut out = Vec::new();
        for (&s, &need) in self.sizes.iter().zip(needs) {
            out.push(if need {
                Some(g.narrow(self.ax as isize, start, s)?)
            } else {
                None
            });
            start += s;
        }
        Ok(out)
    }
}

struct GatherBackward {
    x: Tensor,
    map: Arc<Vec<u32>>,
}
impl GradFn for GatherBackward {
    fn name(&self) -> &'static str {
        "gather"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(
            g.scatter_add_map(self.map.clone(), self.x.shape())?,
        )])
    }
}

struct ScatterBackward {
    x: Tensor,
    map: Arc<Vec<u32>>,
}
impl GradFn for ScatterBackward {
    fn name(&self) -> &'static str {
        "scatter_add"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.gather_map(self.map.clone(), self.x.shape())?)])
    }
}
