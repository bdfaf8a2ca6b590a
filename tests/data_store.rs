//! Slice store: round trip, atomic writing, and every kind of damage.

mod common;

use brainsynth::data::slices::Slice;
use brainsynth::data::store::{
    SliceStore, StoreReader, StoreWriter, read_store, read_store_bytes, write_store,
};
use common::TempDir;
use proptest::prelude::*;
use std::path::Path;

fn store(n: usize, h: usize, w: usize, seed: u64) -> SliceStore {
    let mut st = SliceStore::new(h, w);
    for i in 0..n {
        let mut s = Slice::zeros(format!("subject-{}", i % 3), (i * 5) as u32, h, w);
        for (k, v) in s.data.iter_mut().enumerate() {
            *v = (seed.wrapping_mul(k as u64 + 31 * i as u64 + 1) >> 13) as u8;
        }
        st.slices.push(s);
    }
    st
}

#[test]
fn round_trip_and_random_access() {
    let t = TempDir::new("store-rt");
    let p = t.path().join("a.store");
    let st = store(7, 6, 5, 99);
    write_store(&p, &st).unwrap();
    assert_eq!(read_store(&p).unwrap(), st);
    let mut r = StoreReader::open(&p).unwrap();
    assert_eq!((r.h(), r.w(), r.len()), (6, 5, 7));
    assert_eq!(r.subjects(), ["subject-0", "subject-1", "subject-2"]);
    assert_eq!(r.get(4).unwrap(), st.slices[4]);
    assert!(r.get(7).is_err());
    // Only the store is left in the folder: no temporary files.
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    // Empty stores are fine too.
    let e = SliceStore::new(4, 4);
    write_store(&p, &e).unwrap();
    assert_eq!(read_store(&p).unwrap(), e);
}

#[test]
fn every_flipped_byte_is_detected() {
    let st = store(3, 4, 4, 5);
    let t = TempDir::new("store-flip");
    let p = t.path().join("a.store");
    write_store(&p, &st).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            let e = read_store_bytes(&b, Path::new("damaged.store"));
            assert!(e.is_err(), "flip of byte {i} (bit {bit:#x}) not detected");
            assert!(e.unwrap_err().to_string().contains("damaged.store"));
        }
    }
}

#[test]
fn every_truncation_is_detected() {
    let st = store(3, 4, 4, 6);
    let t = TempDir::new("store-trunc");
    let p = t.path().join("a.store");
    write_store(&p, &st).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    for n in 0..bytes.len() {
        assert!(
            read_store_bytes(&bytes[..n], Path::new("t.store")).is_err(),
            "length {n}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(read_store_bytes(&longer, Path::new("t.store")).is_err());
    // Truncated on disk: a typed error naming the file.
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let e = read_store(&p).unwrap_err().to_string();
    assert!(e.contains("a.store") && e.contains("truncated"), "{e}");
}

#[test]
fn hostile_counts_do_not_allocate() {
    let st = store(1, 2, 2, 1);
    let t = TempDir::new("store-count");
    let p = t.path().join("a.store");
    write_store(&p, &st).unwrap();
    let mut b = std::fs::read(&p).unwrap();
    // count = u64::MAX with a matching header checksum: the length check must refuse it.
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = brainsynth::data::checksum::crc32(&b[..44]);
    b[44..48].copy_from_slice(&crc.to_le_bytes());
    let e = read_store_bytes(&b, Path::new("h.store"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("h.store"), "{e}");
    // Missing file: an I/O error naming it.
    let e = read_store(t.path().join("nope.store"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.store"), "{e}");
}

#[test]
fn writer_rejects_mismatched_slices_and_leaves_nothing() {
    let t = TempDir::new("store-writer");
    let p = t.path().join("w.store");
    let mut w = StoreWriter::create(&p, 4, 4).unwrap();
    w.push(&Slice::zeros("a", 0, 4, 4)).unwrap();
    assert!(w.push(&Slice::zeros("a", 1, 3, 4)).is_err());
    drop(w); // abandoned: no store, no temp file
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    // An existing store is replaced only when the new one is complete.
    write_store(&p, &store(2, 4, 4, 1)).unwrap();
    let before = std::fs::read(&p).unwrap();
    let mut w = StoreWriter::create(&p, 4, 4).unwrap();
    w.push(&Slice::zeros("b", 0, 4, 4)).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), before);
    w.finish().unwrap();
    assert_eq!(read_store(&p).unwrap().len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn round_trip_any_shape(n in 0usize..6, h in 1usize..9, w in 1usize..9, seed in any::<u64>()) {
        let t = TempDir::new("store-prop");
        let p = t.path().join("p.store");
        let st = store(n, h, w, seed);
        write_store(&p, &st).unwrap();
        prop_assert_eq!(read_store(&p).unwrap(), st);
    }
}
