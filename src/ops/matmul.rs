//! Matrix products: batched matmul with broadcast batch dimensions, and linear layers' x·Wᵀ + b.

use std::sync::Arc;

use crate::autograd::{GradFn, record};
use crate::backend::cpu::{self, CpuKernels};
use crate::tensor::shape::broadcast_shape;
use crate::tensor::{Kernel, StorageElem, Tensor};
use crate::{Error, Result};

struct MatmulKernel {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
}
impl Kernel for MatmulKernel {
    fn run<T: StorageElem>(&self, xs: &[&[T]]) -> Result<Vec<T>> {
        let (a, b) = (xs[0], xs[1]);
        Ok(match cpu::kernels() {
            CpuKernels::Reference => {
                cpu::reference::matmul(a, b, self.batch, self.m, self.k, self.n)
            }
            CpuKernels::Fast => cpu::fast::matmul(a, b, self.batch, self.m, self.k, self.n),
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
        crate::backend::cuda::ops::matmul(be, x[0], x[1], self.batch, self.m, self.k, self.n)
    }
}

impl Tensor {
    /// Matrix product over the last two dims: [..., m, k] · [..., k, n] → [..., m, n], batch dims
    /// broadcast. 1-D operands are not promoted: reshape them first.
    pub fn matmul(&self, b: &Tensor) -> Result<Tensor> {
        let a = self;
        let err = || Error::shape("matmul", format!("{:?} · {:?}", a.shape(), b.shape()));
        if a.rank() < 2 || b.rank() < 2 {
            return Err(err());
        }
        let (m, k) = (a.shape()[a.rank() - 2], a.shape()[a.rank() - 1]);
        let (k2, n) = (b.shape()[b.rank() - 2], b.shape()[b.rank() - 1]);
        if k != k2 {
            return Err(err());
        }
        let out = if b.rank() == 2 {
            // fold a's batch dims into m: one large GEMM
            let rows = a.elem_count() / k.max(1);
            let rows = if k == 0 {
                a.shape()[..a.rank() - 1].iter().product()
            } else {
                rows
            };
            let mut shape = a.shape()[..a.rank() - 1].to_vec();
            shape.push(n);
            Tensor::run_kernel(
                "matmul",
                &[a, b],
                &shape,
                &MatmulKernel {
                    batch: 1,
                    m: rows,
                    k,
                    n,
                },
            )?
        } else {
            let batch_shape = broadcast_shape(
                "matmul",
                &a.shape()[..a.rank() - 2],
                &b.shape()[..b.rank() - 2],
            )?;
            let batch: usize = batch_shape.iter().product();
            let mut sa = batch_shape.clone();
            sa.extend([m, k]);
            let mut sb = batch_shape.clone();
            sb.extend([k, n]);
            let mut so = batch_shape.clone();
            so.extend([m, n]);
            let (ab, bb) = (a.detach().broadcast_as(&sa)?, b.detach().broadcast_as(&sb)?);
            Tensor::run_kernel("matmul", &[&ab, &bb], &so, &MatmulKernel { batch, m, k, n })?
        };
        Ok(record(out, &[a, b], || {
            Arc::new(MatmulBackward {
                a: a.clone(),
                b: b.clone(),
            })
        }))
    }

    /// x · Wᵀ (+ b) with W of shape [out, in]: a linear layer.
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        if w.rank() != 2 || self.rank() == 0 || self.shape()[self.rank() - 1] != w.shape()[1] {
            return Err(Error::shape(
                "linear",
                format!(
                    "input {:?} with weight {:?} (out, in)",
                    self.shape(),
                    w.shape()
                ),
            ));
        }
        let y = self.matmul(&w.transpose(0, 1)?)?;
        match b {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}

struct MatmulBackward {
    a: Tensor,
    b: Tensor,
}
impl GradFn for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.a.clone(), self.b.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (a, b) = (&self.a, &self.b);
        let ga = if needs[0] {
            Some(g.matmul(&b.transpose(-1, -2)?)?.sum_to(a.shape())?)
        } else {
            None
        };
        let gb = if needs[1] {
            Some(if b.rank() == 2 {
                let k = a.shape()[a.rank() - 1];
                let n = b.shape()[1];
                let a2 = a
                    .reshape(&[usize::MAX, k])
                    .or_else(|_| a.contiguous()?.reshape(&[a.elem_count() / k.max(1), k]))?;
                a2.transpose(0, 1)?
                    .matmul(&g.reshape(&[a2.shape()[0], n])?)?
            } else {
                a.transpose(-1, -2)?.matmul(g)?.sum_to(b.shape())?
            })
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}
