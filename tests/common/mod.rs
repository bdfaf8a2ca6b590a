//! Helpers shared by the integration tests (PyTorch fixture reader in `fixtures`), and for the data tests: unique temporary folders and hand-made NIfTI files.
#![allow(dead_code)]

pub mod fixtures;
pub mod seg;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static N: AtomicUsize = AtomicUsize::new(0);

/// A fresh empty folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "brainsynth-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A single-file NIfTI-1 image (little-endian) with the given raw voxel bytes.
pub fn nifti_bytes(
    dims: [u16; 3],
    datatype: i16,
    bitpix: i16,
    voxels: &[u8],
    slope: f32,
    inter: f32,
) -> Vec<u8> {
    let mut b = vec![0u8; 352];
    b[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dim: [i16; 8] = [
        3,
        dims[0] as i16,
        dims[1] as i16,
        dims[2] as i16,
        1,
        1,
        1,
        1,
    ];
    for (i, d) in dim.iter().enumerate() {
        b[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    b[70..72].copy_from_slice(&datatype.to_le_bytes());
    b[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for i in 0..8 {
        b[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    b[108..112].copy_from_slice(&352f32.to_le_bytes());
    b[112..116].copy_from_slice(&slope.to_le_bytes());
    b[116..120].copy_from_slice(&inter.to_le_bytes());
    b[344..348].copy_from_slice(b"n+1\0");
    b.extend_from_slice(voxels);
    b
}

/// f32 voxels as a NIfTI-1 image.
pub fn nifti_f32(dims: [u16; 3], values: &[f32]) -> Vec<u8> {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    nifti_bytes(dims, 16, 32, &raw, 1.0, 0.0)
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Write a case folder `<dir>/<id>/` with five f32 volumes; `suffixes` are the five name parts.
pub fn write_case(
    dir: &Path,
    id: &str,
    suffixes: [&str; 5],
    ext: &str,
    dims: [u16; 3],
    seqs: &[Vec<f32>; 4],
    labels: &[f32],
) -> PathBuf {
    let case = dir.join(id);
    std::fs::create_dir_all(&case).unwrap();
    for (i, s) in suffixes.iter().enumerate() {
        let vals = if i < 4 { &seqs[i][..] } else { labels };
        let mut bytes = nifti_f32(dims, vals);
        if ext == ".nii.gz" {
            bytes = gzip(&bytes);
        }
        std::fs::write(case.join(format!("{id}{s}{ext}")), bytes).unwrap();
    }
    case
}

pub const NAMES_2020: [&str; 5] = ["_t1", "_t1ce", "_t2", "_flair", "_seg"];
pub const NAMES_2023: [&str; 5] = ["-t1n", "-t1c", "-t2w", "-t2f", "-seg"];

/// A small valid synthetic case: a bright square "brain" with a labelled block.
pub fn small_case_data(dims: [u16; 3]) -> ([Vec<f32>; 4], Vec<f32>) {
    let n = dims.iter().map(|&d| d as usize).product::<usize>();
    let (nx, ny) = (dims[0] as usize, dims[1] as usize);
    let mut seq = vec![0f32; n];
    let mut lab = vec![0f32; n];
    for i in 0..n {
        let x = i % nx;
        let y = (i / nx) % ny;
        if x >= nx / 8 && x < nx - nx / 8 && y >= ny / 8 && y < ny - ny / 8 {
            seq[i] = 100.0 + (x + y) as f32;
            if x < nx / 3 && y < ny / 3 {
                lab[i] = [1.0, 2.0, 4.0][(x + y) % 3];
            }
        }
    }
    ([seq.clone(), seq.clone(), seq.clone(), seq], lab)
}

/// The tiny guided-diffusion U-Net the diffusion tests share (16×16 in the fixture): width 32,
/// multipliers 1,1, one res block, attention at 8×8 with 4 heads, scale-shift norm.
pub fn tiny_diffusion_unet(
    image_size: usize,
    channels: usize,
    dropout: f64,
) -> brainsynth::models::diffusion::DiffusionUNetConfig {
    brainsynth::models::diffusion::DiffusionUNetConfig {
        image_size,
        in_channels: channels,
        model_channels: 32,
        out_channels: channels,
        num_res_blocks: 1,
        attention_ds: vec![2],
        channel_mult: vec![1, 1],
        num_heads: 4,
        num_head_channels: None,
        num_heads_upsample: None,
        use_scale_shift_norm: true,
        dropout,
    }
}
