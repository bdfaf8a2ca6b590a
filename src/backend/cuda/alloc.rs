//! A caching device allocator: freed buffers go back to size-bucketed free lists and the next
//! request of that bucket reuses one, so a training step makes no driver allocation once warm.
//! Everything runs on one stream per device, so reuse is ordered after the last use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DriverError, sys};

/// Free buffers by bucket size in bytes.
#[derive(Default)]
pub struct Pool {
    free: Mutex<HashMap<usize, Vec<CudaSlice<u8>>>>,
    /// Allocations that went to the driver (cache misses).
    driver_allocs: AtomicUsize,
}

/// Round a request up to its bucket: a multiple of 256 bytes below 1 MiB, above that a multiple
/// of a quarter of the enclosing power of two (at most 25 % waste).
pub fn bucket(bytes: usize) -> usize {
    let b = bytes.max(1);
    if b <= 1 << 20 {
        return b.div_ceil(256) * 256;
    }
    let step = b.next_power_of_two() / 8;
    b.div_ceil(step) * step
}

/// Device memory on loan from a pool; returns there when dropped.
pub struct Buffer {
    slice: Option<CudaSlice<u8>>,
    ptr: u64,
    bytes: usize,
    pool: Arc<Pool>,
}

impl Buffer {
    /// Raw device address, for kernel arguments.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    /// Bucket size in bytes (at least what was asked).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(s) = self.slice.take()
            && let Ok(mut free) = self.pool.free.lock()
        {
            free.entry(self.bytes).or_default().push(s);
        }
    }
}

impl Pool {
    /// A buffer of at least `bytes` bytes (contents undefined). On out-of-memory the cached
    /// buffers are released to the driver and the allocation is tried once more.
    pub fn alloc(
        self: &Arc<Self>,
        stream: &Arc<CudaStream>,
        bytes: usize,
    ) -> Result<Buffer, DriverError> {
        let size = bucket(bytes);
        let cached = self
            .free
            .lock()
            .ok()
            .and_then(|mut f| f.get_mut(&size).and_then(|v| v.pop()));
        let slice = match cached {
            Some(s) => s,
            None => {
                self.driver_allocs.fetch_add(1, Ordering::Relaxed);
                match unsafe { stream.alloc::<u8>(size) } {
                    Ok(s) => s,
                    Err(e) if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                        self.release();
                        unsafe { stream.alloc::<u8>(size) }?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let ptr = {
            let (p, _sync) = slice.device_ptr(stream);
            p
        };
        Ok(Buffer {
            slice: Some(slice),
            ptr,
            bytes: size,
            pool: self.clone(),
        })
    }

    /// Give every cached buffer back to the driver.
    pub fn release(&self) {
        if let Ok(mut f) = self.free.lock() {
            f.clear();
        }
    }

    /// How many requests the free lists could not serve.
    pub fn driver_allocs(&self) -> usize {
        self.driver_allocs.load(Ordering::Relaxed)
    }

    /// Bytes held in free lists.
    pub fn cached_bytes(&self) -> usize {
        self.free
            .lock()
            .map(|f| f.iter().map(|(k, v)| k * v.len()).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn buckets_cover_the_request_with_bounded_waste() {
        for b in [
            1usize,
            255,
            256,
            257,
            4000,
            1 << 20,
            (1 << 20) + 1,
            3 << 22,
            123_456_789,
        ] {
            let k = bucket(b);
            assert!(k >= b, "{b} -> {k}");
            // at most 255 bytes or 25 % more than asked
            assert!(k - b < 256 || k as f64 <= b as f64 * 1.25, "{b} -> {k}");
        }
    }
}
