//! Host metadata that ops hand to their kernels — the index maps of gather / scatter, the
//! sparse axis maps of resize and pooling, the FIR taps of upfirdn — kept on the device after
//! the first upload. Such data depends only on the op's shapes and options, so a training step
//! asks for the same few maps every time; uploading each call cost a host→device copy and a
//! synchronisation per op.
//!
//! Entries are found by content (a hash, then a full comparison with the kept host copy, so a
//! collision can never hand out the wrong map), live until [`ConstCache::clear`] (called by
//! `empty_cache`) or until the cache would exceed [`BUDGET`] bytes, when it starts afresh.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use super::alloc::Buffer;

/// Device bytes the cache may hold before it is emptied.
pub const BUDGET: usize = 64 << 20;

struct Entry {
    host: Vec<u8>,
    buf: Arc<Buffer>,
}

/// Uploaded metadata by (kind, content).
#[derive(Default)]
pub struct ConstCache {
    entries: Mutex<HashMap<(&'static str, u64), Vec<Entry>>>,
    bytes: Mutex<usize>,
}

fn digest(kind: &str, bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    kind.hash(&mut h);
    bytes.hash(&mut h);
    h.finish()
}

impl ConstCache {
    /// The device copy of `bytes` under `kind`, if kept.
    pub fn get(&self, kind: &'static str, bytes: &[u8]) -> Option<Arc<Buffer>> {
        let map = self.entries.lock().ok()?;
        map.get(&(kind, digest(kind, bytes)))?
            .iter()
            .find(|e| e.host == bytes)
            .map(|e| e.buf.clone())
    }

    /// Keep `buf` as the device copy of `bytes` under `kind`.
    pub fn insert(&self, kind: &'static str, bytes: &[u8], buf: Arc<Buffer>) {
        let (Ok(mut map), Ok(mut total)) = (self.entries.lock(), self.bytes.lock()) else {
            return;
        };
        if *total + buf.bytes() > BUDGET {
            map.clear();
            *total = 0;
        }
        *total += buf.bytes();
        map.entry((kind, digest(kind, bytes)))
            .or_default()
            .push(Entry {
                host: bytes.to_vec(),
                buf,
            });
    }

    /// Drop every entry (their buffers return to the allocator once no launch holds them).
    pub fn clear(&self) {
        if let (Ok(mut map), Ok(mut total)) = (self.entries.lock(), self.bytes.lock()) {
            map.clear();
            *total = 0;
        }
    }
}
