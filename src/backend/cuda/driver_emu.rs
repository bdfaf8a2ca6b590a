//! The CPU emulator as a [`Driver`] (feature `cuda-emu`): device memory is host memory from the
//! emulator's runtime (filled with NaN, a guard page after each buffer), kernels are looked up by
//! name in the registry build.rs compiled from `cuda/*.cu`, launches run to completion on the
//! calling thread, and matrix products go through the CPU GEMM. It presents itself as one H100:
//! 132 SMs, compute capability 9.0, 48 KiB of dynamic shared memory per block without the opt-in
//! and 227 KiB with it, so a launch that forgets the opt-in fails here as it would there.
//!
//! The emulator checks logic, not speed: its timings mean nothing. Thread and block orders are
//! picked by `BRAINSYNTH_EMU_ORDER` (forward, reverse, shuffle); see cuda/emu/runtime.cpp.

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_int, c_void};
use std::sync::Mutex;

use super::driver::{Driver, DriverFailure, DrvResult, LaunchConfig};
use crate::tensor::DType;
use crate::{Error, Result};

mod modules {
    include!(concat!(env!("OUT_DIR"), "/cuda_modules.rs"));
}

/// H100 SXM limits the emulator enforces.
const SM_COUNT: u32 = 132;
const SMEM_DEFAULT: u32 = 48 * 1024;
const SMEM_OPTIN: u32 = 227 * 1024;

/// Opaque entry of the runtime's kernel registry (`BsEmuKernel` in cuda/emu/cuda_emu.h).
#[repr(C)]
struct RawKernel {
    _private: [u8; 0],
}

unsafe extern "C" {
    fn bs_emu_alloc(bytes: usize) -> *mut c_void;
    fn bs_emu_free(p: *mut c_void);
    fn bs_emu_find(module: *const c_char, name: *const c_char) -> *const RawKernel;
    fn bs_emu_launch(
        k: *const RawKernel,
        grid: *const u32,
        block: *const u32,
        smem: u32,
        args: *mut *mut c_void,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
}

/// A kernel of the registry: static data of the linked runtime.
#[derive(Clone, Copy)]
pub struct EmuFunction {
    raw: *const RawKernel,
}
// The registry is immutable static data.
unsafe impl Send for EmuFunction {}
unsafe impl Sync for EmuFunction {}

pub struct EmuDriver {
    /// Dynamic shared memory each kernel was allowed (cuFuncSetAttribute's opt-in).
    smem_optin: Mutex<HashMap<usize, u32>>,
}

impl Driver for EmuDriver {
    type Function = EmuFunction;

    fn open(ordinal: usize) -> Result<Self> {
        if ordinal != 0 {
            return Err(Error::Cuda(format!(
                "cuda:{ordinal} does not exist: the CUDA emulator offers one device, cuda:0"
            )));
        }
        // Every module must be in the registry (as every module must load on a GPU).
        for m in modules::EMU_MODULES {
            if m.is_empty() {
                return Err(Error::Cuda("an unnamed kernel module was built".into()));
            }
        }
        Ok(EmuDriver {
            smem_optin: Mutex::new(HashMap::new()),
        })
    }
    fn sm_count(&self) -> u32 {
        SM_COUNT
    }
    fn max_smem_optin(&self) -> Option<u32> {
        Some(SMEM_OPTIN)
    }
    fn compute_capability(&self) -> (i32, i32) {
        (9, 0)
    }
    fn mem_info(&self) -> Option<(usize, usize)> {
        None
    }

    fn alloc(&self, bytes: usize) -> DrvResult<u64> {
        let p = unsafe { bs_emu_alloc(bytes) };
        if p.is_null() {
            return Err(DriverFailure {
                out_of_memory: true,
                msg: format!("the emulator could not map {bytes} bytes"),
            });
        }
        Ok(p as u64)
    }
    fn free(&self, ptr: u64) {
        unsafe { bs_emu_free(ptr as *mut c_void) }
    }
    fn reuse(&self, ptr: u64, bytes: usize) {
        // SAFETY: `ptr` is a live buffer of `bytes` bytes handed out by `alloc`.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0xff, bytes) }
    }
    fn memset_zero(&self, ptr: u64, bytes: usize) -> DrvResult<()> {
        // SAFETY: the backend passes live buffers and sizes within them.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0, bytes) };
        Ok(())
    }
    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> DrvResult<()> {
        // SAFETY: as memset; cudaMemcpy's ranges may not overlap either.
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }
    fn htod(&self, src: &[u8], dst: u64) -> DrvResult<()> {
        // SAFETY: as memset.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }
    fn dtoh(&self, src: u64, dst: &mut [u8]) -> DrvResult<()> {
        // SAFETY: as memset.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }
    fn synchronize(&self) -> DrvResult<()> {
        Ok(())
    }

    fn function(&self, module: &str, name: &str) -> DrvResult<EmuFunction> {
        let (m, n) = match (CString::new(module), CString::new(name)) {
            (Ok(m), Ok(n)) => (m, n),
            _ => return Err(DriverFailure::new("a kernel name with a NUL byte")),
        };
        let raw = unsafe { bs_emu_find(m.as_ptr(), n.as_ptr()) };
        if raw.is_null() {
            return Err(DriverFailure::new(format!(
                "no kernel {name} in cuda/{module}.cu"
            )));
        }
        Ok(EmuFunction { raw })
    }

    fn set_max_dynamic_smem(&self, f: &EmuFunction, bytes: u32) -> DrvResult<()> {
        if bytes > SMEM_OPTIN {
            return Err(DriverFailure::new(format!(
                "invalid value: {bytes} bytes of dynamic shared memory is over the device's {SMEM_OPTIN}"
            )));
        }
        self.smem_optin
            .lock()
            .map_err(|_| DriverFailure::new("emulator state poisoned by a panic"))?
            .insert(f.raw as usize, bytes);
        Ok(())
    }

    unsafe fn launch(
        &self,
        f: &EmuFunction,
        cfg: &LaunchConfig,
        params: &mut [*mut c_void],
    ) -> DrvResult<()> {
        let smem = cfg.shared_mem_bytes;
        if smem > SMEM_DEFAULT {
            let allowed = self
                .smem_optin
                .lock()
                .map_err(|_| DriverFailure::new("emulator state poisoned by a panic"))?
                .get(&(f.raw as usize))
                .copied()
                .unwrap_or(SMEM_DEFAULT);
            if smem > allowed {
                return Err(DriverFailure::new(format!(
                    "invalid value: the launch asks for {smem} bytes of dynamic shared memory; \
                     above {SMEM_DEFAULT} the kernel must first be allowed them \
                     (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, now {allowed})"
                )));
            }
        }
        let grid = [cfg.grid_dim.0, cfg.grid_dim.1, cfg.grid_dim.2];
        let block = [cfg.block_dim.0, cfg.block_dim.1, cfg.block_dim.2];
        let mut err = vec![0u8; 1024];
        // SAFETY: the caller guarantees the parameter array; the runtime copies each argument
        // out before the launch returns.
        let rc = unsafe {
            bs_emu_launch(
                f.raw,
                grid.as_ptr(),
                block.as_ptr(),
                smem,
                params.as_mut_ptr(),
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        if rc != 0 {
            let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
            return Err(DriverFailure::new(format!(
                "emulated kernel failed: {}",
                String::from_utf8_lossy(&err[..end])
            )));
        }
        Ok(())
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
        let (ks, ns) = (k as isize, n as isize);
        for i in 0..batch {
            // SAFETY: the caller guarantees batch × (m×k, k×n, m×n) values at a, b, c.
            unsafe {
                match dt {
                    DType::F32 => {
                        let (a, b, c) = (a as *const f32, b as *const f32, c as *mut f32);
                        matrixmultiply::sgemm(
                            m,
                            k,
                            n,
                            1.0,
                            a.add(i * m * k),
                            ks,
                            1,
                            b.add(i * k * n),
                            ns,
                            1,
                            0.0,
                            c.add(i * m * n),
                            ns,
                            1,
                        )
                    }
                    DType::F64 => {
                        let (a, b, c) = (a as *const f64, b as *const f64, c as *mut f64);
                        matrixmultiply::dgemm(
                            m,
                            k,
                            n,
                            1.0,
                            a.add(i * m * k),
                            ks,
                            1,
                            b.add(i * k * n),
                            ns,
                            1,
                            0.0,
                            c.add(i * m * n),
                            ns,
                            1,
                        )
                    }
                }
            }
        }
        Ok(())
    }
}
