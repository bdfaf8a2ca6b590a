//! Damaged or mismatched checkpoints give typed errors with sentences, never panics.

use brainsynth::io::checkpoint::{CheckpointWriter, load_from_bytes};
use brainsynth::nn::{Init, ParamStore};
use brainsynth::{DType, Error};

/// A store with two parameters and a buffer.
fn store(dtype: DType) -> ParamStore {
    let s = ParamStore::with_dtype(1, dtype);
    let vs = s.root().sub("enc");
    vs.param("weight", &[2, 3], Init::normal(1.0)).unwrap();
    vs.param("bias", &[2], Init::Zeros).unwrap();
    vs.buffer_init("running_mean", &[2], Init::Zeros).unwrap();
    s
}

fn good_bytes() -> Vec<u8> {
    let mut w = CheckpointWriter::new();
    w.set_model_info("unet", "tiny", 7)
        .add_store("", &store(DType::F32));
    w.to_bytes().unwrap()
}

/// Bytes of a file with this header (padded) and `data_len` zero bytes of data.
fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend(std::iter::repeat_n(0u8, data_len));
    b
}

fn format_err(bytes: &[u8], needle: &str) {
    match load_from_bytes(bytes, "bad.safetensors") {
        Err(e @ Error::Format { .. }) => {
            let m = e.to_string();
            assert!(m.contains("bad.safetensors"), "{m}");
            assert!(m.contains(needle), "expected {needle:?} in: {m}");
        }
        other => panic!("expected a format error with {needle:?}, got {other:?}"),
    }
}

fn ckpt_err(r: brainsynth::Result<()>, needles: &[&str]) {
    match r {
        Err(e @ Error::Checkpoint { .. }) => {
            let m = e.to_string();
            for n in needles {
                assert!(m.contains(n), "expected {n:?} in: {m}");
            }
        }
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn good_bytes_load() {
    let ck = load_from_bytes(&good_bytes(), "ok.safetensors").unwrap();
    ck.load_store("", &store(DType::F32)).unwrap();
}

#[test]
fn truncated_and_short_files() {
    let b = good_bytes();
    format_err(&b[..5], "too short");
    format_err(&b[..b.len() - 1], "outside");
    // cut inside the header: the stated length exceeds what is left
    format_err(&b[..20], "larger than");
    let mut huge = b.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    format_err(&huge, "larger than");
}

#[test]
fn broken_headers() {
    format_err(&file("{\"a\": ", 0), "malformed JSON");
    format_err(&file("[1, 2]", 0), "must be a JSON object");
    format_err(&file("{} trailing", 0), "malformed JSON");
    format_err(&file(&"[".repeat(10_000), 0), "deeper");
    let mut b = file("{\"a\":{}}", 0);
    b[10] = 0xff;
    format_err(&b, "UTF-8");
    format_err(
        &file(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
        ),
        "twice",
    );
    format_err(
        &file(r#"{"__metadata__":{"step":7}}"#, 0),
        "must be a string",
    );
}

#[test]
fn bad_entries() {
    let e = |dtype: &str, shape: &str, offs: &str, n: usize, needle: &str| {
        let h = format!(r#"{{"w":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offs}}}}}"#);
        format_err(&file(&h, n), needle);
    };
    e("BF16", "[2]", "[0,4]", 4, "not supported");
    e("F32", "[2]", "[0,4]", 4, "needs 8 bytes");
    e("F32", "[2]", "[0,8]", 4, "outside");
    e("F32", "[2]", "[8,0]", 8, "outside");
    e("F32", "[-2]", "[0,8]", 8, "non-negative");
    e("F32", "[1.5]", "[0,8]", 8, "non-negative");
    e("F32", "[2]", "[0]", 8, "two non-negative");
    e(
        "F32",
        "[4294967296,4294967296,4294967296]",
        "[0,8]",
        8,
        "too many elements",
    );
    e("F64", "[99999999999999999999]", "[0,8]", 8, "non-negative");
    format_err(
        &file(r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, 4),
        "dtype",
    );
    format_err(&file(r#"{"w":[1]}"#, 4), "must be an object");
    // two tensors sharing bytes
    format_err(
        &file(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
        ),
        "overlap",
    );
}

#[test]
fn mismatched_models() {
    let ck = load_from_bytes(&good_bytes(), "m.safetensors").unwrap();
    // missing names, listed
    let bigger = store(DType::F32);
    bigger
        .root()
        .sub("dec")
        .param("weight", &[1], Init::Zeros)
        .unwrap();
    bigger
        .root()
        .sub("dec")
        .param("bias", &[1], Init::Zeros)
        .unwrap();
    ckpt_err(
        ck.load_store("", &bigger),
        &["2 model tensor(s) missing", "dec.weight", "dec.bias"],
    );
    // extra names
    let smaller = ParamStore::new(1);
    smaller
        .root()
        .sub("enc")
        .param("weight", &[2, 3], Init::Zeros)
        .unwrap();
    ckpt_err(
        ck.load_store("", &smaller),
        &["unexpected", "enc.bias", "enc.running_mean"],
    );
    // wrong shape: name, found, expected
    let wide = ParamStore::new(1);
    let vs = wide.root().sub("enc");
    vs.param("weight", &[2, 4], Init::Zeros).unwrap();
    vs.param("bias", &[2], Init::Zeros).unwrap();
    vs.buffer_init("running_mean", &[2], Init::Zeros).unwrap();
    ckpt_err(
        ck.load_store("", &wide),
        &["enc.weight", "[2, 3]", "[2, 4]"],
    );
    // wrong dtype
    ckpt_err(
        ck.load_store("", &store(DType::F64)),
        &["enc.weight", "f32", "f64"],
    );
    // a failed load changes nothing: the first two tensors fit (and hold other non-zero values
    // than the file), only the last one does not, so a loader that assigned as it checked
    // would have overwritten them
    let late = ParamStore::new(1);
    let vs = late.root().sub("enc");
    vs.param("weight", &[2, 3], Init::Constant(0.5)).unwrap();
    vs.param("bias", &[2], Init::Constant(-0.25)).unwrap();
    vs.buffer_init("running_mean", &[3], Init::Constant(2.0))
        .unwrap();
    let file_weight = ck.get("enc.weight").unwrap().to_vec_f64().unwrap();
    assert!(file_weight.iter().all(|&v| v != 0.5 && v != 0.0));
    ckpt_err(
        ck.load_store("", &late),
        &["enc.running_mean", "[2]", "[3]"],
    );
    assert_eq!(
        late.get("enc.weight").unwrap().to_vec_f64().unwrap(),
        vec![0.5; 6]
    );
    assert_eq!(
        late.get("enc.bias").unwrap().to_vec_f64().unwrap(),
        vec![-0.25; 2]
    );
    // a section the file does not have
    ckpt_err(
        ck.load_store("G_ema", &store(DType::F32)),
        &["missing", "G_ema"],
    );
}

#[test]
fn renamed_tensor_is_reported() {
    let mut b = good_bytes();
    let pos = b.windows(10).position(|w| w == b"enc.weight").unwrap();
    b[pos + 4] = b'W';
    let ck = load_from_bytes(&b, "r.safetensors").unwrap();
    ckpt_err(
        ck.load_store("", &store(DType::F32)),
        &["missing", "enc.weight"],
    );
}

#[test]
fn every_single_byte_flip_is_handled() {
    let b = good_bytes();
    let mut ok = 0;
    for i in 0..b.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut c = b.clone();
            c[i] ^= flip;
            if let Ok(ck) = load_from_bytes(&c, "f.safetensors") {
                ok += 1;
                let _ = ck.load_store("", &store(DType::F32));
            }
        }
    }
    // flips in the data section (and some in the header padding) still parse
    assert!(ok > 0);
}
