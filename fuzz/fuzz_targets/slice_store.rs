//! Arbitrary bytes as a slice store: the reader must return a store or a typed error, never
//! panic or allocate more than the input justifies.
#![no_main]

use std::path::Path;

use brainsynth::data::store::{StoreReader, read_store_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.store");
    let _ = read_store_bytes(data, path);
    if let Ok(mut r) = StoreReader::from_bytes(data, path) {
        let n = r.len();
        for i in [0, n / 2, n.saturating_sub(1), n] {
            let _ = r.get(i);
        }
    }
});
