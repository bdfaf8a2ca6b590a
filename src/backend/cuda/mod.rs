//! The CUDA backend (feature `cuda`): one [`CudaBackend`] per device ordinal holding its
//! [`driver::Driver`] (the NVIDIA driver through cudarc, or with `cuda-emu` the CPU emulator that
//! runs the same `cuda/*.cu` sources), a function-handle cache and a caching allocator.
//!
//! No driver, no such device and out of memory are [`Error::Cuda`] values with a sentence.
//! Host↔device copies happen only in `Tensor::to_device` and where a caller hands host data
//! (`assign` from the CPU; index maps and filter taps, which are uploaded once per content and
//! then kept on the device, see `consts.rs`). [`CudaBackend::host_uploads`] counts the uploads.
//!
//! Layering: this module knows device memory, kernels by name and launches, and the launches of
//! the general-purpose kernels (`ops.rs`: elementwise by op code, reductions, gathers, strided
//! copies, GEMM) on raw storages. It imports no `Tensor` and nothing from `crate::ops`; of
//! `crate::tensor` it uses only the leaf types `DType`, `Device`, `Layout` and `StorageElem`.
//! The op families' launches of their own kernels (conv, modulated conv, norms, attention,
//! resampling) live with the ops, in `src/ops/<family>/cuda.rs`, and the kernel audit in
//! `crate::ops::audit`.
//!
//! `BRAINSYNTH_CUDA_SYNC=1` synchronises and checks after every launch, so that a fault is
//! reported under the op that caused it rather than at a later copy.

pub mod alloc;
pub(crate) mod consts;
pub mod driver;
#[cfg(not(feature = "cuda-emu"))]
mod driver_cudarc;
#[cfg(feature = "cuda-emu")]
mod driver_emu;
pub(crate) mod ops;

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use driver::{Driver, DriverFailure};
pub use driver::{KernelArg, LaunchConfig};

use crate::tensor::{DType, Device, StorageElem};
use crate::{Error, Result};

/// The driver this build talks to.
#[cfg(not(feature = "cuda-emu"))]
pub(crate) type ActiveDriver = driver_cudarc::CudarcDriver;
/// The driver this build talks to.
#[cfg(feature = "cuda-emu")]
pub(crate) type ActiveDriver = driver_emu::EmuDriver;

/// True when this build runs the kernels on the CPU emulator (feature `cuda-emu`).
pub const EMULATED: bool = cfg!(feature = "cuda-emu");

/// A kernel handle and its name (for error messages).
#[derive(Clone)]
pub(crate) struct Kernel {
    name: Arc<str>,
    f: <ActiveDriver as Driver>::Function,
}

/// A device, its kernels and memory.
pub struct CudaBackend {
    ordinal: usize,
    drv: Arc<ActiveDriver>,
    funcs: Mutex<HashMap<String, Kernel>>,
    pool: Arc<alloc::Pool>,
    sm_count: u32,
    max_smem_optin: Option<u32>,
    compute_capability: (i32, i32),
    sync_each_launch: bool,
    /// Index maps and filter taps already on the device.
    consts: consts::ConstCache,
    /// Host→device copies so far (tests check that cached metadata is not uploaded again).
    uploads: AtomicUsize,
}

/// Dynamic shared memory every block may use without the opt-in (all GPUs from sm_80 on).
pub(crate) const SMEM_WITHOUT_OPTIN: usize = 48 * 1024;

static BACKENDS: OnceLock<Mutex<HashMap<usize, Arc<CudaBackend>>>> = OnceLock::new();

/// The backend of device `ordinal`, created (context, modules) on first use.
pub fn backend(ordinal: usize) -> Result<Arc<CudaBackend>> {
    let map = BACKENDS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map
        .lock()
        .map_err(|_| Error::Cuda("the CUDA backend registry was poisoned by a panic".into()))?;
    if let Some(b) = map.get(&ordinal) {
        return Ok(b.clone());
    }
    let b = Arc::new(CudaBackend::new(ordinal)?);
    map.insert(ordinal, b.clone());
    Ok(b)
}

/// Ok when device `ordinal` can be used; otherwise the reason, as a sentence.
pub fn available(ordinal: usize) -> Result<()> {
    backend(ordinal).map(|_| ())
}

/// Ok when device `ordinal` can be used, or when it may be skipped: no driver or no such device,
/// and no GPU is expected. An error when the device is there but unusable (its kernel modules do
/// not load), in the emulator build, or when `BRAINSYNTH_REQUIRE_GPU=1` (set by the GPU and
/// emulator CI runs) says a GPU is expected, so that no test run can pass by skipping everything.
/// `Ok(Some(reason))` means "skip, because reason".
pub fn available_or_skip(ordinal: usize) -> Result<Option<String>> {
    let e = match available(ordinal) {
        Ok(()) => return Ok(None),
        Err(e) => e,
    };
    let required = std::env::var("BRAINSYNTH_REQUIRE_GPU").is_ok_and(|v| v == "1");
    if EMULATED || required || ActiveDriver::device_present(ordinal) {
        return Err(Error::Cuda(format!(
            "cuda:{ordinal} was expected to work{}: {e}",
            if required {
                " (BRAINSYNTH_REQUIRE_GPU=1)"
            } else {
                ""
            }
        )));
    }
    Ok(Some(e.to_string()))
}

impl CudaBackend {
    fn new(ordinal: usize) -> Result<Self> {
        let drv = Arc::new(ActiveDriver::open(ordinal)?);
        let sync_each_launch = std::env::var("BRAINSYNTH_CUDA_SYNC").is_ok_and(|v| v == "1");
        Ok(CudaBackend {
            ordinal,
            sm_count: drv.sm_count().max(1),
            max_smem_optin: drv.max_smem_optin(),
            compute_capability: drv.compute_capability(),
            pool: Arc::new(alloc::Pool::new(drv.clone())),
            drv,
            funcs: Mutex::new(HashMap::new()),
            sync_each_launch,
            consts: consts::ConstCache::default(),
            uploads: AtomicUsize::new(0),
        })
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
    pub fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }
    /// Streaming multiprocessors (launch sizing).
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }
    /// Most dynamic shared memory per block after the opt-in, if the device said.
    pub fn max_shared_memory_optin(&self) -> Option<u32> {
        self.max_smem_optin
    }
    /// Wait for all queued work (benchmarks time with this).
    pub fn synchronize(&self) -> Result<()> {
        self.drv
            .synchronize()
            .map_err(|e| self.err("synchronize", e))
    }
    /// Return cached device memory (and the kept index maps and filters) to the driver.
    pub fn empty_cache(&self) {
        self.consts.clear();
        self.pool.release()
    }
    /// Host→device copies made so far.
    pub fn host_uploads(&self) -> usize {
        self.uploads.load(Ordering::Relaxed)
    }
    /// Allocations so far that the cache could not serve and the driver made.
    pub fn driver_allocations(&self) -> usize {
        self.pool.driver_allocs()
    }
    /// Bytes the allocator keeps for reuse.
    pub fn cached_bytes(&self) -> usize {
        self.pool.cached_bytes()
    }

    /// A driver failure as a sentence naming the op and the device.
    pub(crate) fn err(&self, op: &str, e: DriverFailure) -> Error {
        if e.out_of_memory {
            let mem = self
                .drv
                .mem_info()
                .map(|(free, total)| format!(" ({} MiB free of {} MiB)", free >> 20, total >> 20))
                .unwrap_or_default();
            return Error::Cuda(format!(
                "{op}: out of memory on cuda:{}{mem}; use a smaller batch or model",
                self.ordinal
            ));
        }
        Error::Cuda(format!("{op} on cuda:{}: {}", self.ordinal, e.msg))
    }

    /// A kernel by name, looked up once per process.
    pub(crate) fn func(&self, module: &str, name: &str) -> Result<Kernel> {
        let mut cache = self
            .funcs
            .lock()
            .map_err(|_| Error::Cuda("kernel cache poisoned by a panic".into()))?;
        if let Some(f) = cache.get(name) {
            return Ok(f.clone());
        }
        let f = self.drv.function(module, name).map_err(|e| {
            Error::Cuda(format!(
                "kernel {name} missing from module {module}: {}",
                e.msg
            ))
        })?;
        let k = Kernel {
            name: name.into(),
            f,
        };
        cache.insert(name.to_string(), k.clone());
        Ok(k)
    }

    /// Whether `f` may use `bytes` of dynamic shared memory, opting in above 48 KiB: false when
    /// the device's limit is smaller (callers with another kernel fall back to it). When the
    /// device did not report its limit, that is not taken as 0: the opt-in itself is tried and
    /// the driver's answer decides.
    pub(crate) fn try_allow_smem(&self, f: &Kernel, op: &str, bytes: usize) -> Result<bool> {
        if bytes <= SMEM_WITHOUT_OPTIN {
            return Ok(true);
        }
        match self.max_smem_optin {
            Some(limit) if bytes > limit as usize => Ok(false),
            Some(_) => self
                .drv
                .set_max_dynamic_smem(&f.f, bytes as u32)
                .map(|()| true)
                .map_err(|e| self.err(op, e)),
            None => Ok(self.drv.set_max_dynamic_smem(&f.f, bytes as u32).is_ok()),
        }
    }

    /// Queue `f` (see the [`launch!`] macro, which builds `params`); with
    /// `BRAINSYNTH_CUDA_SYNC=1` also wait for it and report its fault under `op`.
    ///
    /// # Safety
    /// `params` points at values of the kernel's parameter types, in order, and the device
    /// addresses among them are live buffers large enough for the launch.
    pub(crate) unsafe fn launch_raw(
        &self,
        f: &Kernel,
        op: &str,
        cfg: LaunchConfig,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        // SAFETY: forwarded from the caller.
        unsafe { self.drv.launch(&f.f, &cfg, params) }
            .map_err(|e| self.err(&format!("{op} ({})", f.name), e))?;
        if self.sync_each_launch {
            self.drv
                .synchronize()
                .map_err(|e| self.err(&format!("{op} ({}), checked after launch", f.name), e))?;
        }
        Ok(())
    }

    /// Row-major `C[i] = A[i]·B[i]` on the device (cuBLAS, or the CPU GEMM under the emulator).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm(
        &self,
        dt: DType,
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        a: &CudaStorage,
        b: &CudaStorage,
        c: &CudaStorage,
    ) -> Result<()> {
        if a.len < batch * m * k || b.len < batch * k * n || c.len < batch * m * n {
            return Err(Error::invalid(
                "matmul",
                "operands smaller than the product",
            ));
        }
        // SAFETY: the three storages hold at least the sizes checked above.
        unsafe { self.drv.gemm(dt, batch, m, k, n, a.ptr(), b.ptr(), c.ptr()) }
            .map_err(|e| self.err("matmul", e))?;
        if self.sync_each_launch {
            self.synchronize()?;
        }
        Ok(())
    }

    /// A 1-D launch for a grid-stride kernel over `n` items.
    pub(crate) fn grid(&self, n: usize, block: u32) -> LaunchConfig {
        let blocks = n
            .div_ceil(block as usize)
            .clamp(1, self.sm_count as usize * 32);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// One block per item (grid-stride over blocks when there are very many).
    pub(crate) fn blocks(&self, items: usize, block: u32, smem: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (items.clamp(1, i32::MAX as usize) as u32, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: smem as u32,
        }
    }

    /// `len` elements of `dtype`, contents undefined.
    pub(crate) fn alloc(self: &Arc<Self>, dtype: DType, len: usize) -> Result<CudaStorage> {
        let buf = self
            .pool
            .alloc(len * dtype.size_in_bytes())
            .map_err(|e| self.err("alloc", e))?;
        Ok(CudaStorage {
            buf,
            len,
            dtype,
            backend: self.clone(),
        })
    }

    /// `len` zeros of `dtype`.
    pub(crate) fn zeros(self: &Arc<Self>, dtype: DType, len: usize) -> Result<CudaStorage> {
        let s = self.alloc(dtype, len)?;
        self.memset_zero(s.ptr(), len * dtype.size_in_bytes())?;
        Ok(s)
    }

    pub(crate) fn memset_zero(&self, ptr: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.drv
            .memset_zero(ptr, bytes)
            .map_err(|e| self.err("memset", e))
    }

    /// Copy `bytes` between device addresses on the stream.
    pub(crate) fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.drv
            .copy_dtod(dst, src, bytes)
            .map_err(|e| self.err("copy", e))
    }

    /// Upload host values (a host→device transfer the caller asked for).
    pub(crate) fn htod<T: StorageElem>(self: &Arc<Self>, data: &[T]) -> Result<CudaStorage> {
        let s = self.alloc(T::DTYPE, data.len())?;
        self.upload(data, s.ptr())?;
        Ok(s)
    }

    /// Upload any plain values into device memory at `dst` and wait (the host buffer is freed
    /// when the caller returns).
    /// `T` is a number type (no padding bytes).
    pub(crate) fn upload<T: Copy>(&self, data: &[T], dst: u64) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: plain numbers, read as their bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data))
        };
        self.uploads.fetch_add(1, Ordering::Relaxed);
        self.drv.htod(bytes, dst).map_err(|e| self.err("upload", e))
    }

    /// `data` (host metadata of an op: an index map, filter taps) on the device, uploaded on
    /// first use and kept (see [`consts`]); `kind` names what it is, so equal bytes of different
    /// meaning stay apart. `T` is a number type (no padding bytes).
    pub(crate) fn upload_const<T: Copy>(
        &self,
        kind: &'static str,
        data: &[T],
    ) -> Result<Arc<alloc::Buffer>> {
        // SAFETY: plain numbers, read as their bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data))
        };
        if let Some(b) = self.consts.get(kind, bytes) {
            return Ok(b);
        }
        let buf = Arc::new(
            self.pool
                .alloc(bytes.len().max(8))
                .map_err(|e| self.err("alloc", e))?,
        );
        self.upload(data, buf.ptr())?;
        self.consts.insert(kind, bytes, buf.clone());
        Ok(buf)
    }

    /// Download into a host vector (a device→host transfer the caller asked for).
    pub(crate) fn dtoh<T: StorageElem>(&self, s: &CudaStorage) -> Result<Vec<T>> {
        if s.dtype != T::DTYPE {
            return Err(Error::DType {
                op: "to_device",
                msg: format!(
                    "device data is {}, read as {}",
                    s.dtype.name(),
                    T::DTYPE.name()
                ),
            });
        }
        let mut out = vec![T::zero(); s.len];
        if s.len > 0 {
            let bytes = s.len * std::mem::size_of::<T>();
            // SAFETY: f32/f64 (the only storage types) have no padding and any bytes are a value.
            let view =
                unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, bytes) };
            self.drv
                .dtoh(s.ptr(), view)
                .map_err(|e| self.err("download", e))?;
        } else {
            self.synchronize()?;
        }
        Ok(out)
    }
}

/// A tensor's memory on a GPU: `len` contiguous values of `dtype`.
pub struct CudaStorage {
    buf: alloc::Buffer,
    len: usize,
    dtype: DType,
    backend: Arc<CudaBackend>,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage({} x {} on cuda:{})",
            self.len,
            self.dtype.name(),
            self.backend.ordinal
        )
    }
}

impl CudaStorage {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Device address of the first element.
    pub fn ptr(&self) -> u64 {
        self.buf.ptr()
    }
    pub fn backend(&self) -> &Arc<CudaBackend> {
        &self.backend
    }
    pub fn device(&self) -> Device {
        Device::Cuda(self.backend.ordinal)
    }
}

/// Kernel-name suffix of a dtype.
pub(crate) fn sfx(dt: DType) -> &'static str {
    match dt {
        DType::F32 => "f32",
        DType::F64 => "f64",
    }
}

/// Launch `func` with `cfg` and the listed arguments (each a reference to a [`KernelArg`]
/// value), as cuLaunchKernel's array of argument addresses. One expression, so the arguments
/// outlive the launch call.
macro_rules! launch {
    ($be:expr, $op:expr, $func:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        #[allow(unused_imports)]
        use $crate::backend::cuda::KernelArg as _;
        // SAFETY: each call site passes the kernel's parameters in order, with the types of its
        // `.cu` signature, and live device buffers.
        unsafe {
            $be.launch_raw(&$func, $op, $cfg, &mut [$( $crate::backend::cuda::KernelArg::as_param($arg) ),*])
        }
    }};
}
pub(crate) use launch;

/// Up to 8 dimensions by value, as `Dims` in cuda/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Dims {
    pub d: [i64; 8],
}
unsafe impl KernelArg for Dims {}

impl Dims {
    pub(crate) fn from(v: &[usize]) -> Result<Dims> {
        if v.len() > 8 {
            return Err(Error::invalid(
                "cuda",
                format!(
                    "{} dimensions after merging; the GPU kernels take at most 8",
                    v.len()
                ),
            ));
        }
        let mut d = Dims::default();
        for (o, &x) in d.d.iter_mut().zip(v) {
            *o = x as i64;
        }
        Ok(d)
    }
}

/// Merge neighbouring dimensions that are contiguous with each other (and drop size-1 ones), so
/// index arithmetic in the kernels stays short. Returns (shape, strides), rank at least 1.
pub(crate) fn coalesce(shape: &[usize], strides: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut s: Vec<usize> = Vec::new();
    let mut t: Vec<usize> = Vec::new();
    for (&d, &st) in shape.iter().zip(strides) {
        if d == 1 {
            continue;
        }
        if let (Some(ld), Some(&lt)) = (s.last_mut(), t.last())
            && lt == st * d
        {
            *ld *= d;
            *t.last_mut().expect("same length as s") = st;
            continue;
        }
        s.push(d);
        t.push(st);
    }
    if s.is_empty() {
        s.push(1);
        t.push(0);
    }
    (s, t)
}
