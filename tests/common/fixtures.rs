//! Reader for the small PyTorch fixture files in `tests/fixtures/` (written by the
//! `tests/fixtures/make_*.py` scripts). Format, all little-endian:
//! magic `BSFX1\n`, then records until end of file, each
//! `u32 name_len, name (UTF-8), u32 ndim, ndim × u32 dims, prod(dims) × f32 values`.

use std::collections::HashMap;
use std::path::PathBuf;

use brainsynth::Tensor;
use brainsynth::models::gan::GanConfig;

/// One stored array: its shape and values (row-major).
#[derive(Clone, Debug)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    pub fn f64s(&self) -> Vec<f64> {
        self.data.iter().map(|&v| v as f64).collect()
    }
}

fn take<'a>(buf: &mut &'a [u8], n: usize, file: &str) -> &'a [u8] {
    assert!(buf.len() >= n, "fixture {file}: truncated");
    let (a, b) = buf.split_at(n);
    *buf = b;
    a
}

fn u32_at(buf: &mut &[u8], file: &str) -> u32 {
    let b = take(buf, 4, file);
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// All arrays of `tests/fixtures/<file>`, by name.
pub fn load(file: &str) -> HashMap<String, Array> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf: &[u8] = &bytes;
    assert_eq!(
        take(&mut buf, 6, file),
        b"BSFX1\n",
        "fixture {file}: bad magic"
    );
    let mut out = HashMap::new();
    while !buf.is_empty() {
        let n = u32_at(&mut buf, file) as usize;
        let name = String::from_utf8(take(&mut buf, n, file).to_vec()).expect("utf-8 name");
        let nd = u32_at(&mut buf, file) as usize;
        let shape: Vec<usize> = (0..nd).map(|_| u32_at(&mut buf, file) as usize).collect();
        let count: usize = shape.iter().product();
        let data = take(&mut buf, 4 * count, file)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, Array { shape, data });
    }
    out
}

/// Fetch one array, naming the file and array when it is missing.
pub fn get<'a>(m: &'a HashMap<String, Array>, name: &str) -> &'a Array {
    m.get(name)
        .unwrap_or_else(|| panic!("fixture array {name} missing"))
}

/// A fixture array as a tensor.
pub fn tensor(a: &Array) -> Tensor {
    Tensor::from_slice(&a.data, &a.shape).unwrap()
}

/// ‖ours − ref‖ / ‖ref‖.
pub fn rel_err(ours: &Tensor, reference: &Array) -> f64 {
    assert_eq!(ours.shape(), reference.shape.as_slice(), "shapes differ");
    let o = ours.to_vec_f64().unwrap();
    let (mut num, mut den) = (0.0, 0.0);
    for (a, b) in o.iter().zip(reference.f64s()) {
        num += (a - b) * (a - b);
        den += b * b;
    }
    (num / den.max(1e-300)).sqrt()
}

/// Fails unless `ours` is within relative error `tol` of the fixture's `reference`.
pub fn check_rel(what: &str, ours: &Tensor, reference: &Array, tol: f64) {
    let e = rel_err(ours, reference);
    println!("{what}: relative error {e:.2e}");
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:e}");
}

/// The fixture's tensors whose names start with `prefix`, with the prefix removed, by name.
pub fn section(m: &HashMap<String, Array>, prefix: &str) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = m
        .iter()
        .filter_map(|(k, a)| k.strip_prefix(prefix).map(|n| (n.to_string(), tensor(a))))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The StyleGAN configuration of `make_stylegan.py`'s networks (StyleGAN2's G and both D's;
/// StyleGAN3's G differs in resolution and widths).
pub fn stylegan_tiny_config() -> GanConfig {
    GanConfig {
        z_dim: 16,
        w_dim: 16,
        resolution: 16,
        channels: 5,
        channel_base: 128,
        channel_max: 16,
        mapping_layers: 2,
        conv_clamp: Some(256.0),
        mbstd_group: 4,
    }
}
