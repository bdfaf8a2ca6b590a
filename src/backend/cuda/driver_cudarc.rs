//! The NVIDIA driver as a [`Driver`] (feature `cuda`), through cudarc: one context and its
//! default stream per device, the kernel modules build.rs compiled with nvcc (the cubin when the
//! device matches its architecture, else the PTX), raw launches with cuLaunchKernel, and cuBLAS
//! (loaded on first use) for matrix products.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError, result, sys};
use cudarc::nvrtc::Ptx;

use super::driver::{Driver, DriverFailure, DrvResult, LaunchConfig};
use crate::tensor::DType;
use crate::{Error, Result};

mod modules {
    include!(concat!(env!("OUT_DIR"), "/cuda_modules.rs"));
}

pub struct CudarcDriver {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: HashMap<&'static str, Arc<CudaModule>>,
    blas: Mutex<Option<CudaBlas>>,
    sm_count: u32,
    max_smem_optin: Option<u32>,
    cc: (i32, i32),
}

fn failure(e: DriverError) -> DriverFailure {
    DriverFailure {
        out_of_memory: e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY,
        msg: e.to_string(),
    }
}

impl CudarcDriver {
    fn bind(&self) -> DrvResult<()> {
        self.ctx.bind_to_thread().map_err(failure)
    }
}

impl Driver for CudarcDriver {
    type Function = CudaFunction;

    fn open(ordinal: usize) -> Result<Self> {
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
        let sm_count = ctx
            .attribute(sys::CUdevice_attribute_enum::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map(|v| v.max(1) as u32)
            .unwrap_or(1);
        let max_smem_optin = ctx
            .attribute(
                sys::CUdevice_attribute_enum::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .ok()
            .filter(|&v| v > 0)
            .map(|v| v as u32);
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
        Ok(CudarcDriver {
            ctx,
            stream,
            modules: mods,
            blas: Mutex::new(None),
            sm_count,
            max_smem_optin,
            cc,
        })
    }

    fn device_present(ordinal: usize) -> bool {
        let lib = unsafe { sys::is_culib_present() };
        lib && result::init().is_ok()
            && CudaContext::device_count().is_ok_and(|n| ordinal < n.max(0) as usize)
    }
    fn sm_count(&self) -> u32 {
        self.sm_count
    }
    fn max_smem_optin(&self) -> Option<u32> {
        self.max_smem_optin
    }
    fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }
    fn mem_info(&self) -> Option<(usize, usize)> {
        self.ctx.mem_get_info().ok()
    }

    fn alloc(&self, bytes: usize) -> DrvResult<u64> {
        self.bind()?;
        unsafe { result::malloc_async(self.stream.cu_stream(), bytes.max(1)) }.map_err(failure)
    }
    fn free(&self, ptr: u64) {
        if self.bind().is_ok() {
            let _ = unsafe { result::free_async(ptr, self.stream.cu_stream()) };
        }
    }
    fn memset_zero(&self, ptr: u64, bytes: usize) -> DrvResult<()> {
        self.bind()?;
        unsafe { result::memset_d8_async(ptr, 0, bytes, self.stream.cu_stream()) }.map_err(failure)
    }
    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> DrvResult<()> {
        self.bind()?;
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) }
            .map_err(failure)
    }
    fn htod(&self, src: &[u8], dst: u64) -> DrvResult<()> {
        self.bind()?;
        unsafe { result::memcpy_htod_async(dst, src, self.stream.cu_stream()) }.map_err(failure)?;
        self.synchronize()
    }
    fn dtoh(&self, src: u64, dst: &mut [u8]) -> DrvResult<()> {
        self.bind()?;
        unsafe { result::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }.map_err(failure)?;
        self.synchronize()
    }
    fn synchronize(&self) -> DrvResult<()> {
        self.stream.synchronize().map_err(failure)
    }

    fn function(&self, module: &str, name: &str) -> DrvResult<CudaFunction> {
        let m = self.modules.get(module).ok_or_else(|| {
            DriverFailure::new(format!(
                "no kernel module '{module}' was built into this binary"
            ))
        })?;
        m.load_function(name).map_err(failure)
    }
    fn set_max_dynamic_smem(&self, f: &CudaFunction, bytes: u32) -> DrvResult<()> {
        f.set_attribute(
            sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )
        .map_err(failure)
    }
    unsafe fn launch(
        &self,
        f: &CudaFunction,
        cfg: &LaunchConfig,
        params: &mut [*mut c_void],
    ) -> DrvResult<()> {
        self.bind()?;
        // SAFETY: forwarded from the caller (parameter array matches the kernel).
        unsafe {
            result::launch_kernel(
                f.cu_function(),
                cfg.grid_dim,
                cfg.block_dim,
                cfg.shared_mem_bytes,
                self.stream.cu_stream(),
                params,
            )
        }
        .map_err(failure)
    }

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
    ) -> DrvResult<()> {
        use cudarc::cublas::{result as cb, sys as cs};
        let int = |v: usize| {
            i32::try_from(v).map_err(|_| DriverFailure::new(format!("{v} is beyond cuBLAS's int")))
        };
        let (mi, ni, ki, bi) = (int(m)?, int(n)?, int(k)?, int(batch)?);
        let mut slot = self
            .blas
            .lock()
            .map_err(|_| DriverFailure::new("cuBLAS handle poisoned by a panic"))?;
        if slot.is_none() {
            if !unsafe { cudarc::cublas::sys::is_culib_present() } {
                return Err(DriverFailure::new(
                    "matmul on the GPU uses cuBLAS, and libcublas could not be loaded: install the CUDA toolkit's cuBLAS",
                ));
            }
            let h = CudaBlas::new(self.stream.clone())
                .map_err(|e| DriverFailure::new(format!("cannot start cuBLAS: {e}")))?;
            *slot = Some(h);
        }
        self.bind()?;
        let blas = slot
            .as_ref()
            .ok_or_else(|| DriverFailure::new("cuBLAS handle missing"))?;
        // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ, so B goes first.
        let (sa, sb, sc) = ((k * n) as i64, (m * k) as i64, (m * n) as i64);
        let nt = cs::cublasOperation_t::CUBLAS_OP_N;
        // SAFETY: sizes as the caller guarantees.
        let r = unsafe {
            match dt {
                DType::F32 => cb::sgemm_strided_batched(
                    *blas.handle(),
                    nt,
                    nt,
                    ni,
                    mi,
                    ki,
                    &1f32,
                    b as *const f32,
                    ni,
                    sa,
                    a as *const f32,
                    ki,
                    sb,
                    &0f32,
                    c as *mut f32,
                    ni,
                    sc,
                    bi,
                ),
                DType::F64 => cb::dgemm_strided_batched(
                    *blas.handle(),
                    nt,
                    nt,
                    ni,
                    mi,
                    ki,
                    &1f64,
                    b as *const f64,
                    ni,
                    sa,
                    a as *const f64,
                    ki,
                    sb,
                    &0f64,
                    c as *mut f64,
                    ni,
                    sc,
                    bi,
                ),
            }
        };
        r.map_err(|e| DriverFailure::new(format!("cuBLAS {e}")))
    }
}
