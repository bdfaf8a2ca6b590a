//! Memory behind tensors, and the generic-kernel mechanism: a kernel is written once over
//! `T: Float` and `dispatch` picks f32 or f64.

use super::dtype::{DType, Float};
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn zeros(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F64 => CpuStorage::F64(vec![0.0; n]),
        }
    }
}

/// Typed access to storage: implemented for f32 and f64 so generic code can borrow `&[T]`.
pub trait StorageElem: Float {
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    fn wrap(v: Vec<Self>) -> CpuStorage;
}

impl StorageElem for f32 {
    fn slice(s: &CpuStorage) -> Option<&[f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f32>) -> CpuStorage {
        CpuStorage::F32(v)
    }
}

impl StorageElem for f64 {
    fn slice(s: &CpuStorage) -> Option<&[f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f64>) -> CpuStorage {
        CpuStorage::F64(v)
    }
}

/// A CPU kernel over any number of contiguous inputs of one element type, producing one output.
pub trait Kernel {
    fn run<T: StorageElem>(&self, inputs: &[&[T]]) -> Result<Vec<T>>;

    /// The same op on a GPU: `inputs` are contiguous device storages of one dtype, the result
    /// holds `out_len` values. Ops without a CUDA kernel keep this default, an error value.
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        op: &'static str,
        inputs: &[&crate::backend::cuda::CudaStorage],
        out_len: usize,
        be: &std::sync::Arc<crate::backend::cuda::CudaBackend>,
    ) -> Result<crate::backend::cuda::CudaStorage> {
        let _ = (inputs, out_len, be);
        Err(Error::Device {
            op,
            msg: format!("{op} has no CUDA kernel yet; run it on the cpu"),
        })
    }
}

/// Any `Fn` that is generic enough cannot be a closure in Rust, so kernels are small structs;
/// this runs one over storages of matching dtype.
pub fn dispatch<K: Kernel>(op: &'static str, k: &K, inputs: &[&CpuStorage]) -> Result<CpuStorage> {
    let dtype = inputs.first().map(|s| s.dtype()).unwrap_or(DType::F32);
    if let Some(bad) = inputs.iter().find(|s| s.dtype() != dtype) {
        return Err(Error::DType {
            op,
            msg: format!("{} and {}", dtype.name(), bad.dtype().name()),
        });
    }
    match dtype {
        DType::F32 => {
            let xs: Vec<&[f32]> = inputs
                .iter()
                .map(|s| f32::slice(s).unwrap_or(&[]))
                .collect();
            Ok(CpuStorage::F32(k.run(&xs)?))
        }
        DType::F64 => {
            let xs: Vec<&[f64]> = inputs
                .iter()
                .map(|s| f64::slice(s).unwrap_or(&[]))
                .collect();
            Ok(CpuStorage::F64(k.run(&xs)?))
        }
    }
}
