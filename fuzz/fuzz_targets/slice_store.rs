//! Arbitrary bytes as a slice store: the reader must return a store or a typed error, never
//! panic or allocate more than the input justifies. Each input is read twice: as given (the
//! checksums reject almost everything) and with its checksums repaired, so that the fuzzer also
//! explores the parsing behind them (subject table, subject indices, sizes).
#![no_main]

use std::path::Path;

use brainsynth::data::checksum::crc32;
use brainsynth::data::store::{StoreReader, read_store_bytes};
use libfuzzer_sys::fuzz_target;

fn read(data: &[u8]) {
    let path = Path::new("fuzz.store");
    let _ = read_store_bytes(data, path);
    if let Ok(mut r) = StoreReader::from_bytes(data, path) {
        let n = r.len();
        for i in [0, n / 2, n.saturating_sub(1), n] {
            let _ = r.get(i);
        }
    }
}

/// Recompute every checksum the layout in the header implies (where it fits in the input).
fn repair(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 48 {
        return None;
    }
    let mut b = data.to_vec();
    let c = crc32(&b[..44]);
    b[44..48].copy_from_slice(&c.to_le_bytes());
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64;
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let rec = u32_at(&b, 12)
        .checked_mul(u32_at(&b, 16))?
        .checked_mul(u32_at(&b, 20))?
        .checked_add(12)?;
    let count = u64_at(&b, 24);
    let table_len = u64_at(&b, 36);
    let records_end = count.checked_mul(rec)?.checked_add(48)?;
    if records_end > b.len() as u64 {
        return Some(b);
    }
    for i in 0..count {
        let s = (48 + i * rec) as usize;
        let e = s + rec as usize;
        let c = crc32(&b[s..e - 4]);
        b[e - 4..e].copy_from_slice(&c.to_le_bytes());
    }
    let t_end = records_end.checked_add(table_len)?.checked_add(4)?;
    if t_end <= b.len() as u64 {
        let (s, e) = (records_end as usize, t_end as usize);
        let c = crc32(&b[s..e - 4]);
        b[e - 4..e].copy_from_slice(&c.to_le_bytes());
    }
    Some(b)
}

fuzz_target!(|data: &[u8]| {
    read(data);
    if let Some(fixed) = repair(data) {
        read(&fixed);
    }
});
