//! A caching device allocator: freed buffers go back to size-bucketed free lists and the next
//! request of that bucket reuses one, so a training step makes no driver allocation once warm.
//! Everything runs on one stream per device, so reuse is ordered after the last use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::ActiveDriver;
use super::driver::{Driver, DrvResult};

/// Free buffers (device addresses) by bucket size in bytes.
pub struct Pool {
    drv: Arc<ActiveDriver>,
    free: Mutex<HashMap<usize, Vec<u64>>>,
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
        match self.pool.free.lock() {
            Ok(mut free) => free.entry(self.bytes).or_default().push(self.ptr),
            Err(_) => self.pool.drv.free(self.ptr),
        }
    }
}

impl Pool {
    pub(crate) fn new(drv: Arc<ActiveDriver>) -> Self {
        Pool {
            drv,
            free: Mutex::new(HashMap::new()),
            driver_allocs: AtomicUsize::new(0),
        }
    }

    /// A buffer of at least `bytes` bytes (contents undefined). On out-of-memory the cached
    /// buffers are released to the driver and the allocation is tried once more.
    pub(crate) fn alloc(self: &Arc<Self>, bytes: usize) -> DrvResult<Buffer> {
        let size = bucket(bytes);
        let cached = self
            .free
            .lock()
            .ok()
            .and_then(|mut f| f.get_mut(&size).and_then(|v| v.pop()));
        let ptr = match cached {
            Some(p) => {
                self.drv.reuse(p, size);
                p
            }
            None => {
                self.driver_allocs.fetch_add(1, Ordering::Relaxed);
                match self.drv.alloc(size) {
                    Ok(p) => p,
                    Err(e) if e.out_of_memory => {
                        self.release();
                        self.drv.alloc(size)?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(Buffer {
            ptr,
            bytes: size,
            pool: self.clone(),
        })
    }

    /// Give every cached buffer back to the driver.
    pub fn release(&self) {
        let drained: Vec<u64> = match self.free.lock() {
            Ok(mut f) => f.drain().flat_map(|(_, v)| v).collect(),
            Err(_) => return,
        };
        for p in drained {
            self.drv.free(p);
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
