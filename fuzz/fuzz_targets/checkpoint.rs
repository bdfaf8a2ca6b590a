#![no_main]
//! Arbitrary bytes into the checkpoint reader: it must return a value or an error, never panic,
//! and never allocate more than about the input's size. Whatever parses is also loaded into a
//! small model so the matching code runs on hostile names and shapes.

use brainsynth::io::checkpoint::load_from_bytes;
use brainsynth::nn::{Init, ParamStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ck) = load_from_bytes(data, "fuzz.safetensors") {
        let store = ParamStore::new(0);
        let vs = store.root().sub("enc");
        if vs.param("weight", &[2, 3], Init::Zeros).is_ok()
            && vs.param("bias", &[2], Init::Zeros).is_ok()
        {
            let _ = ck.load_store("", &store);
            let _ = ck.expect_metadata("model", "unet");
        }
        let _ = ck.section("optim");
        let _ = ck.step();
    }
});
