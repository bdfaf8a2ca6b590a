//! Shared by the CUDA launch sides of the op families (`ops/<family>/cuda.rs`): the contiguous
//! device storages of an op's tensor inputs, checked to share one GPU and one dtype, for the ops
//! whose fused kernels return more than the one output of `Tensor::run_kernel`.

use std::sync::Arc;

use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// The backend and the contiguous device storage of each of `ts` (all on one GPU, one dtype).
pub(crate) fn storages(
    op: &'static str,
    ts: &[&Tensor],
) -> Result<(Arc<CudaBackend>, Vec<Arc<CudaStorage>>)> {
    let first = ts.first().ok_or_else(|| Error::invalid(op, "no inputs"))?;
    let (dev, dt) = (first.device(), first.dtype());
    if !matches!(dev, Device::Cuda(_)) {
        return Err(Error::Device {
            op,
            msg: format!("expected GPU tensors, got one on {dev}"),
        });
    }
    let mut out = Vec::with_capacity(ts.len());
    for t in ts {
        if t.device() != dev {
            return Err(Error::Device {
                op,
                msg: format!(
                    "inputs are on {dev} and {}: move them to one device with to_device",
                    t.device()
                ),
            });
        }
        if t.dtype() != dt {
            return Err(Error::DType {
                op,
                msg: format!("{} and {}", dt.name(), t.dtype().name()),
            });
        }
        let c = t.contiguous_device()?;
        let s = c
            .cuda_storage()
            .cloned()
            .ok_or_else(|| Error::Cuda(format!("{op}: an input is not on the GPU")))?;
        out.push(s);
    }
    let be = out[0].backend().clone();
    Ok((be, out))
}

/// True for a tensor on a GPU.
pub(crate) fn on_gpu(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cuda(_))
}
