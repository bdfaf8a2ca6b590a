//! The CUDA backend (feature `cuda`): one [`CudaBackend`] per device ordinal holding the context,
//! its default stream, the kernel modules compiled by build.rs from `cuda/*.cu` (loaded once, the
//! cubin when the device matches its architecture, else the PTX), a function-handle cache, a
//! caching allocator and, on first use, a cuBLAS handle.
//!
//! No driver, no such device and out of memory are [`Error::Cuda`] values with a sentence.
//! Host↔device copies happen only in `Tensor::to_device` and where a caller hands host data
//! (index maps, `assign` from the CPU).

pub mod alloc;
pub(crate) mod attention;
pub mod fused;
pub(crate) mod norm;
pub(crate) mod ops;
pub(crate) mod optim;
pub(crate) mod resample;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DeviceRepr, DriverError, LaunchConfig,
    result, sys,
};
use cudarc::nvrtc::Ptx;

use crate::tensor::{DType, Device, StorageElem};
use crate::{Error, Result};

mod modules {
    include!(concat!(env!("OUT_DIR"), "/cuda_modules.rs"));
}

/// A device, its stream, kernels and memory.
pub struct CudaBackend {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: HashMap<&'static str, Arc<CudaModule>>,
    funcs: Mutex<HashMap<String, CudaFunction>>,
    pool: Arc<alloc::Pool>,
    blas: Mutex<Option<CudaBlas>>,
    sm_count: u32,
    max_smem_optin: u32,
    compute_capability: (i32, i32),
}

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

impl CudaBackend {
    fn new(ordinal: usize) -> Result<Self> {
        // Probe before any driver call: without libcuda cudarc would panic.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::Cuda(
                "no NVIDIA driver found (libcuda could not be loaded): install the driver, or run on the cpu".into(),
            ));
        }
        result::init().map_err(|e| {
            Error::Cuda(format!(
                "the NVIDIA driver did not start ({e}); check that a GPU is visible (nvidia-smi)"
            ))
        })?;
        let count = CudaContext::device_count()
            .map_err(|e| Error::Cuda(format!("cannot count CUDA devices: {e}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Cuda(format!(
                "cuda:{ordinal} does not exist: this machine has {count} CUDA device(s)"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| Error::Cuda(format!("cannot create a context on cuda:{ordinal}: {e}")))?;
        // One stream per device orders every use of a buffer, so cudarc's per-allocation events
        // are not needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let attr = |a| ctx.attribute(a).unwrap_or(0).max(0) as u32;
        let sm_count = attr(sys::CUdevice_attribute_enum::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        let max_smem_optin = attr(
            sys::CUdevice_attribute_enum::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        );
        let cc = ctx
            .compute_capability()
            .map_err(|e| Error::Cuda(format!("cuda:{ordinal}: {e}")))?;
        if cc.0 < 8 {
            return Err(Error::Cuda(format!(
                "cuda:{ordinal} has compute capability {}.{}; the kernels need 8.0 (Ampere) or newer",
                cc.0, cc.1
            )));
        }
        let use_cubin = (cc.0 * 10 + cc.1) as u32 == modules::CUBIN_CC;
        let mut mods = HashMap::new();
        for &(name, ptx, cubin) in modules::MODULES {
            let loaded = if use_cubin {
                ctx.load_module(Ptx::from_binary(cubin.to_vec()))
                    .or_else(|_| ctx.load_module(Ptx::from_src(ptx)))
            } else {
                ctx.load_module(Ptx::from_src(ptx))
            };
            let m = loaded.map_err(|e| {
                Error::Cuda(format!(
                    "cuda:{ordinal}: cannot load the {name} kernels ({e}); the driver may be older than the CUDA 13 compiler that built them"
                ))
            })?;
            mods.insert(name, m);
        }
        Ok(CudaBackend {
            ordinal,
            ctx,
            stream,
            modules: mods,
            funcs: Mutex::new(HashMap::new()),
            pool: Arc::new(alloc::Pool::default()),
            blas: Mutex::new(None),
            sm_count: sm_count.max(1),
            max_smem_optin,
            compute_capability: cc,
        })
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
    pub fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    /// Wait for all queued work (benchmarks time with this).
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| self.err("synchronize", e))
    }
    /// Return cached device memory to the driver.
    pub fn empty_cache(&self) {
        self.pool.release()
    }
    /// Allocations so far that the cache could not serve and the driver made.
    pub fn driver_allocations(&self) -> usize {
        self.pool.driver_allocs()
    }
    /// Bytes the allocator keeps for reuse.
    pub fn cached_bytes(&self) -> usize {
        self.pool.cached_bytes()
    }

    /// A driver error as a sentence naming the op and the device.
    pub(crate) fn err(&self, op: &str, e: DriverError) -> Error {
        if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
            let mem = self
                .ctx
                .mem_get_info()
                .map(|(free, total)| format!(" ({} MiB free of {} MiB)", free >> 20, total >> 20))
                .unwrap_or_default();
            return Error::Cuda(format!(
                "{op}: out of memory on cuda:{}{mem}; use a smaller batch or model",
                self.ordinal
            ));
        }
        Error::Cuda(format!("{op} on cuda:{}: {e}", self.ordinal))
    }

    /// A kernel by name, looked up once per process.
    pub(crate) fn func(&self, module: &str, name: &str) -> Result<CudaFunction> {
        let mut cache = self
            .funcs
            .lock()
            .map_err(|_| Error::Cuda("kernel cache poisoned by a panic".into()))?;
        if let Some(f) = cache.get(name) {
            return Ok(f.clone());
        }
        let m = self.modules.get(module).ok_or_else(|| {
            Error::Cuda(format!(
                "no kernel module '{module}' was built into this binary"
            ))
        })?;
        let f = m
            .load_function(name)
            .map_err(|e| Error::Cuda(format!("kernel {name} missing from module {module}: {e}")))?;
        cache.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Allow `func` more than 48 KiB of dynamic shared memory (an error if the device has less).
    pub(crate) fn allow_smem(&self, f: &CudaFunction, op: &str, bytes: usize) -> Result<()> {
        if bytes > self.max_smem_optin as usize {
            return Err(Error::Cuda(format!(
                "{op} needs {bytes} bytes of shared memory per block; cuda:{} offers {}",
                self.ordinal, self.max_smem_optin
            )));
        }
        if bytes > 48 * 1024 {
            f.set_attribute(
                sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
            .map_err(|e| self.err(op, e))?;
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
            .alloc(&self.stream, len * dtype.size_in_bytes())
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
        self.ctx
            .bind_to_thread()
            .map_err(|e| self.err("memset", e))?;
        unsafe { result::memset_d8_async(ptr, 0, bytes, self.stream.cu_stream()) }
            .map_err(|e| self.err("memset", e))
    }

    /// Copy `bytes` between device addresses on the stream.
    pub(crate) fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(|e| self.err("copy", e))?;
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) }
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
    pub(crate) fn upload<T: Copy>(&self, data: &[T], dst: u64) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.ctx
            .bind_to_thread()
            .map_err(|e| self.err("upload", e))?;
        unsafe { result::memcpy_htod_async(dst, data, self.stream.cu_stream()) }
            .map_err(|e| self.err("upload", e))?;
        self.synchronize()
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
            self.ctx
                .bind_to_thread()
                .map_err(|e| self.err("download", e))?;
            unsafe { result::memcpy_dtoh_async(&mut out[..], s.ptr(), self.stream.cu_stream()) }
                .map_err(|e| self.err("download", e))?;
        }
        self.synchronize()?;
        Ok(out)
    }

    /// Run `f` with the cuBLAS handle (created on first use; cuBLAS is loaded at run time too).
    /// The handle is held locked for the call: one handle must not run two calls at once.
    pub(crate) fn with_blas<R>(&self, f: impl FnOnce(&CudaBlas) -> R) -> Result<R> {
        let mut slot = self
            .blas
            .lock()
            .map_err(|_| Error::Cuda("cuBLAS handle poisoned by a panic".into()))?;
        if slot.is_none() {
            if !unsafe { cudarc::cublas::sys::is_culib_present() } {
                return Err(Error::Cuda(
                    "matmul on the GPU uses cuBLAS, and libcublas could not be loaded: install the CUDA toolkit's cuBLAS".into(),
                ));
            }
            let b = CudaBlas::new(self.stream.clone()).map_err(|e| {
                Error::Cuda(format!("cannot start cuBLAS on cuda:{}: {e}", self.ordinal))
            })?;
            *slot = Some(b);
        }
        self.bind()?;
        let b = slot
            .as_ref()
            .ok_or_else(|| Error::Cuda("cuBLAS handle missing".into()))?;
        Ok(f(b))
    }

    pub(crate) fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| self.err("bind", e))
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

/// Launch `func` with `cfg` and the listed arguments (each a reference to a `DeviceRepr` value).
macro_rules! launch {
    ($be:expr, $op:expr, $func:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        use cudarc::driver::PushKernelArg;
        let f = &$func;
        let mut b = $be.stream().launch_builder(f);
        $( b.arg($arg); )*
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(|e| $be.err($op, e))
    }};
}
pub(crate) use launch;

/// Up to 8 dimensions by value, as `Dims` in cuda/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Dims {
    pub d: [i64; 8],
}
unsafe impl DeviceRepr for Dims {}

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
