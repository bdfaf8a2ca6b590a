//! The one interface through which the CUDA backend reaches a device: memory, copies, kernels,
//! launches, shared-memory limits and the batched GEMM. Two implementations: the NVIDIA driver
//! through cudarc (`driver_cudarc.rs`, feature `cuda`) and the CPU emulator that runs the same
//! `cuda/*.cu` sources (`driver_emu.rs`, feature `cuda-emu`). Everything above — ops, tensors on
//! `Device::Cuda`, the caching allocator, the parity tests — is the same for both.
//!
//! Device addresses are `u64` (`CUdeviceptr`); kernel arguments travel as cuLaunchKernel's array
//! of pointers to each argument value.

use std::ffi::c_void;

use crate::Result;
use crate::tensor::DType;

/// Grid, block and dynamic shared memory of a launch, as cuLaunchKernel takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid_dim: (u32, u32, u32),
    pub block_dim: (u32, u32, u32),
    pub shared_mem_bytes: u32,
}

/// A value a kernel takes by value: plain data laid out as its C counterpart (`#[repr(C)]`).
///
/// # Safety
/// The type must have the size, alignment and field layout of the kernel's parameter type.
pub unsafe trait KernelArg: Copy {
    /// The address of the value, as an entry of cuLaunchKernel's parameter array.
    fn as_param(&self) -> *mut c_void {
        self as *const Self as *mut c_void
    }
}
unsafe impl KernelArg for i32 {}
unsafe impl KernelArg for u32 {}
unsafe impl KernelArg for i64 {}
unsafe impl KernelArg for u64 {}
unsafe impl KernelArg for f32 {}
unsafe impl KernelArg for f64 {}

/// A failed driver call: whether it ran out of memory, and what the driver said.
#[derive(Debug)]
pub struct DriverFailure {
    pub out_of_memory: bool,
    pub msg: String,
}

impl DriverFailure {
    pub fn new(msg: impl Into<String>) -> Self {
        DriverFailure {
            out_of_memory: false,
            msg: msg.into(),
        }
    }
}

pub type DrvResult<T> = std::result::Result<T, DriverFailure>;

/// What the backend needs from a device.
pub trait Driver: Send + Sync + Sized + 'static {
    /// A loaded kernel.
    type Function: Clone + Send + Sync;

    /// Device `ordinal` with every kernel module loaded; "no driver / no device" and "a module
    /// did not load" are distinct sentences (see [`crate::Error::Cuda`]).
    fn open(ordinal: usize) -> Result<Self>;
    /// Whether a driver and device `ordinal` are there at all (without loading anything), so
    /// that "no GPU here" can be told from "a GPU whose kernels do not load".
    fn device_present(ordinal: usize) -> bool;
    /// Streaming multiprocessors (sizes grid-stride launches).
    fn sm_count(&self) -> u32;
    /// Most dynamic shared memory a block may use after opting in, or None if unknown.
    fn max_smem_optin(&self) -> Option<u32>;
    fn compute_capability(&self) -> (i32, i32);
    /// Free and total device memory, when the device can say.
    fn mem_info(&self) -> Option<(usize, usize)>;

    /// `bytes` of device memory (contents undefined).
    fn alloc(&self, bytes: usize) -> DrvResult<u64>;
    /// Give memory from [`Driver::alloc`] back (after the work queued on it).
    fn free(&self, ptr: u64);
    /// Called when the caching allocator hands out a cached buffer again (the emulator refills
    /// it with NaN so that reads of unwritten memory show).
    fn reuse(&self, _ptr: u64, _bytes: usize) {}
    fn memset_zero(&self, ptr: u64, bytes: usize) -> DrvResult<()>;
    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> DrvResult<()>;
    /// Host to device; returns once the host buffer may be freed.
    fn htod(&self, src: &[u8], dst: u64) -> DrvResult<()>;
    /// Device to host, after all queued work.
    fn dtoh(&self, src: u64, dst: &mut [u8]) -> DrvResult<()>;
    fn synchronize(&self) -> DrvResult<()>;

    /// Kernel `name` of module `module` (a `cuda/<module>.cu` file).
    fn function(&self, module: &str, name: &str) -> DrvResult<Self::Function>;
    /// Allow `f` up to `bytes` of dynamic shared memory (needed above 48 KiB).
    fn set_max_dynamic_smem(&self, f: &Self::Function, bytes: u32) -> DrvResult<()>;
    /// Queue `f` with cuLaunchKernel's parameter array.
    ///
    /// # Safety
    /// `params` must point at values of the kernel's parameter types, in order; device
    /// addresses among them must be live allocations large enough for what the kernel touches.
    unsafe fn launch(
        &self,
        f: &Self::Function,
        cfg: &LaunchConfig,
        params: &mut [*mut c_void],
    ) -> DrvResult<()>;

    /// Row-major `C[i] = A[i]·B[i]` for `i < batch`, A `m×k`, B `k×n`, C `m×n`, each batch
    /// contiguous after the previous one.
    ///
    /// # Safety
    /// The three addresses must hold the sizes above in `dt`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        &self,
        dt: DType,
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        a: u64,
        b: u64,
        c: u64,
    ) -> DrvResult<()>;
}
