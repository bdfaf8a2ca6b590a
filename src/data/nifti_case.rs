//! Reading BraTS cases: one folder per subject with four MR sequences and a segmentation, each a
//! NIfTI-1 file (`.nii` or `.nii.gz`).
//!
//! Both namings are understood:
//!
//! | sequence | BraTS 2020/2021       | BraTS 2023+          |
//! |----------|-----------------------|----------------------|
//! | T1       | `<id>_t1.nii[.gz]`    | `<id>-t1n.nii[.gz]`  |
//! | T1ce     | `<id>_t1ce.nii[.gz]`  | `<id>-t1c.nii[.gz]`  |
//! | T2       | `<id>_t2.nii[.gz]`    | `<id>-t2w.nii[.gz]`  |
//! | FLAIR    | `<id>_flair.nii[.gz]` | `<id>-t2f.nii[.gz]`  |
//! | labels   | `<id>_seg.nii[.gz]`   | `<id>-seg.nii[.gz]`  |
//!
//! In 2023+ segmentations the enhancing tumour is label 3; it is mapped to 4 here so that every
//! case carries the 2020 labels 0, 1, 2, 4.
//!
//! The reader never trusts a header: the voxel count times the datatype size is checked against
//! the bytes actually present (and, for gzip, against the largest size deflate can expand the file
//! to) before anything is allocated, so a hostile or damaged file yields an [`Error::Format`] that
//! names the file, not a panic or a huge allocation.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nifti::{IntoNdArray, NiftiHeader, NiftiType, volume::InMemNiftiVolume};

use crate::data::annotation;
use crate::{Error, Result};

/// Largest voxel count accepted in one volume (2^28 ≈ 268 million voxels, 1 GiB as f32).
pub const MAX_VOXELS: usize = 1 << 28;

/// deflate cannot expand data by more than about 1032:1; anything claiming more is not a
/// gzip-compressed NIfTI of this size.
const MAX_DEFLATE_RATIO: usize = 1100;

/// One 3-D NIfTI volume converted to `f32` with `scl_slope`/`scl_inter` applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// `[nx, ny, nz]`: x (left–right), y (anterior–posterior), z (axial slice index).
    pub dims: [usize; 3],
    /// Voxels in NIfTI order: x fastest, then y, then z (`data[x + nx·(y + ny·z)]`).
    pub data: Vec<f32>,
}

impl Volume {
    /// Voxel at `(x, y, z)`.
    pub fn at(&self, x: usize, y: usize, z: usize) -> f32 {
        self.data[x + self.dims[0] * (y + self.dims[1] * z)]
    }
}

/// The file naming of a case folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `<id>_t1`, `_t1ce`, `_t2`, `_flair`, `_seg` (BraTS 2020 and 2021).
    Brats2020,
    /// `<id>-t1n`, `-t1c`, `-t2w`, `-t2f`, `-seg` (BraTS 2023 and later; enhancing = 3).
    Brats2023,
}

impl Naming {
    /// File-name suffixes (before `.nii[.gz]`) of T1, T1ce, T2, FLAIR and the segmentation.
    pub fn suffixes(self) -> [&'static str; 5] {
        match self {
            Naming::Brats2020 => ["_t1", "_t1ce", "_t2", "_flair", "_seg"],
            Naming::Brats2023 => ["-t1n", "-t1c", "-t2w", "-t2f", "-seg"],
        }
    }
}

/// Names of the four sequences in channel order.
pub const SEQUENCES: [&str; 4] = ["T1", "T1ce", "T2", "FLAIR"];

/// One subject: four co-registered sequences and the tumour labels, all of one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Subject id: the folder name (e.g. `BraTS20_Training_001`).
    pub id: String,
    /// `[nx, ny, nz]` shared by all five volumes.
    pub dims: [usize; 3],
    /// T1, T1ce, T2, FLAIR as read (scaled by the file's slope/intercept), NIfTI voxel order.
    pub sequences: [Vec<f32>; 4],
    /// Labels 0, 1, 2, 4 (2023+ label 3 already mapped to 4), NIfTI voxel order.
    pub labels: Vec<u8>,
    /// Naming the folder used.
    pub naming: Naming,
    /// The five files read, in the order T1, T1ce, T2, FLAIR, segmentation.
    pub files: [PathBuf; 5],
}

/// Read a NIfTI-1 volume from a `.nii` or `.nii.gz` file (gzip is recognised by its magic bytes,
/// whatever the extension).
pub fn read_volume(path: impl AsRef<Path>) -> Result<Volume> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_volume_bytes(&bytes, path)
}

/// Read a NIfTI-1 volume from the bytes of a `.nii` or `.nii.gz` file; `path` only names the
/// source in errors.
pub fn read_volume_bytes(bytes: &[u8], path: &Path) -> Result<Volume> {
    let fmt = |msg: String| Error::format(path, msg);
    let gz = bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
    if gz {
        let mut dec = MultiGzDecoder::new(bytes);
        // The header first, to learn how much to expect.
        let mut head = Vec::with_capacity(352);
        read_limited(&mut dec, &mut head, 352).map_err(|e| gz_error(path, e))?;
        let header = parse_header(&head, path)?;
        let layout = layout(&header, path)?;
        let total = layout.offset + layout.nbytes;
        if total > bytes.len().saturating_mul(MAX_DEFLATE_RATIO) {
            return Err(fmt(format!(
                "header promises {total} bytes but a {}-byte gzip file cannot hold that many \
                 (truncated or corrupt file)",
                bytes.len()
            )));
        }
        let mut all = head;
        all.try_reserve_exact(total.saturating_sub(all.len()))
            .map_err(|_| fmt(format!("cannot allocate {total} bytes for the volume")))?;
        read_limited(&mut dec, &mut all, total).map_err(|e| gz_error(path, e))?;
        if all.len() < total {
            return Err(fmt(format!(
                "truncated: header promises {total} bytes, the gzip stream holds {}",
                all.len()
            )));
        }
        // Drain the rest so that gzip verifies its CRC and length trailer.
        std::io::copy(&mut dec, &mut std::io::sink()).map_err(|e| gz_error(path, e))?;
        decode(&header, &layout, &all, path)
    } else {
        let header = parse_header(bytes, path)?;
        let layout = layout(&header, path)?;
        let total = layout.offset + layout.nbytes;
        if bytes.len() < total {
            return Err(fmt(format!(
                "truncated: header promises {total} bytes, the file holds {}",
                bytes.len()
            )));
        }
        decode(&header, &layout, bytes, path)
    }
}

/// Reads from `r` into `buf` until it holds `limit` bytes or the stream ends.
fn read_limited(r: &mut impl Read, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<()> {
    let want = limit.saturating_sub(buf.len()) as u64;
    r.take(want).read_to_end(buf)?;
    Ok(())
}

fn gz_error(path: &Path, e: std::io::Error) -> Error {
    let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "truncated gzip stream".to_string()
    } else {
        format!("corrupt gzip data ({e})")
    };
    Error::format(path, what)
}

fn parse_header(bytes: &[u8], path: &Path) -> Result<NiftiHeader> {
    if bytes.len() < 348 {
        return Err(Error::format(
            path,
            format!(
                "not a NIfTI-1 file: {} bytes, a header alone needs 348",
                bytes.len()
            ),
        ));
    }
    let header = NiftiHeader::from_reader(&bytes[..348])
        .map_err(|e| Error::format(path, format!("unreadable NIfTI-1 header ({e})")))?;
    if header.sizeof_hdr != 348 {
        return Err(Error::format(
            path,
            format!(
                "not a NIfTI-1 file (sizeof_hdr is {}, expected 348)",
                header.sizeof_hdr
            ),
        ));
    }
    if &header.magic != b"n+1\0" {
        return Err(Error::format(
            path,
            "not a single-file NIfTI-1 image (magic is not \"n+1\"; .hdr/.img pairs are not supported)",
        ));
    }
    Ok(header)
}

struct Layout {
    dims: [usize; 3],
    offset: usize,
    nbytes: usize,
}

fn layout(h: &NiftiHeader, path: &Path) -> Result<Layout> {
    let fmt = |msg: String| Error::format(path, msg);
    let ndim = h.dim[0] as usize;
    if !(1..=7).contains(&ndim) {
        return Err(fmt(format!("invalid dim[0] = {}", h.dim[0])));
    }
    let d = &h.dim[1..=ndim];
    if d.contains(&0) {
        return Err(fmt(format!("a dimension is zero: {d:?}")));
    }
    if ndim < 3 || d[3..].iter().any(|&x| x != 1) {
        return Err(fmt(format!(
            "expected a 3-D volume, found dimensions {d:?}"
        )));
    }
    let dims = [d[0] as usize, d[1] as usize, d[2] as usize];
    let nvox = dims[0] * dims[1] * dims[2];
    if nvox > MAX_VOXELS {
        return Err(fmt(format!(
            "volume of {}×{}×{} voxels exceeds the limit of {MAX_VOXELS}",
            dims[0], dims[1], dims[2]
        )));
    }
    let datatype = match h.data_type() {
        Ok(
            t @ (NiftiType::Uint8
            | NiftiType::Int8
            | NiftiType::Int16
            | NiftiType::Uint16
            | NiftiType::Int32
            | NiftiType::Uint32
            | NiftiType::Int64
            | NiftiType::Uint64
            | NiftiType::Float32
            | NiftiType::Float64),
        ) => t,
        Ok(t) => {
            return Err(fmt(format!(
                "unsupported datatype {t:?} (code {}); scalar integer or float voxels expected",
                h.datatype
            )));
        }
        Err(_) => {
            return Err(fmt(format!("unsupported datatype code {}", h.datatype)));
        }
    };
    if h.bitpix as i64 != 8 * datatype.size_of() as i64 {
        return Err(fmt(format!(
            "bitpix {} does not match datatype {datatype:?}",
            h.bitpix
        )));
    }
    let off = h.vox_offset;
    if !off.is_finite() || off < 348.0 || off.fract() != 0.0 || off > 1.0e9 {
        return Err(fmt(format!("invalid vox_offset {off}")));
    }
    Ok(Layout {
        dims,
        offset: off as usize,
        nbytes: nvox * datatype.size_of(),
    })
}

fn decode(h: &NiftiHeader, l: &Layout, bytes: &[u8], path: &Path) -> Result<Volume> {
    let raw = bytes[l.offset..l.offset + l.nbytes].to_vec();
    let mut header = h.clone();
    // A 3-D volume even if the header declared trailing singleton dimensions.
    header.dim = [
        3,
        l.dims[0] as u16,
        l.dims[1] as u16,
        l.dims[2] as u16,
        1,
        1,
        1,
        1,
    ];
    if !header.scl_slope.is_finite() || !header.scl_inter.is_finite() {
        return Err(Error::format(
            path,
            format!(
                "non-finite scaling (scl_slope {}, scl_inter {}) gives NaN/Inf voxels",
                header.scl_slope, header.scl_inter
            ),
        ));
    }
    let vol = InMemNiftiVolume::from_raw_data(&header, raw)
        .map_err(|e| Error::format(path, format!("unreadable voxel data ({e})")))?;
    let arr = vol
        .into_ndarray::<f32>()
        .map_err(|e| Error::format(path, format!("unreadable voxel data ({e})")))?;
    // The array is in Fortran (NIfTI) order; reading it in memory order keeps x fastest.
    let data: Vec<f32> = match arr.as_slice_memory_order() {
        Some(s) if arr.t().is_standard_layout() => s.to_vec(),
        _ => arr.t().iter().copied().collect(),
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        let (x, y, z) = unravel(i, l.dims);
        return Err(Error::format(
            path,
            format!(
                "voxel ({x}, {y}, {z}) is {} (NaN/Inf voxels are not accepted)",
                data[i]
            ),
        ));
    }
    Ok(Volume { dims: l.dims, data })
}

fn unravel(i: usize, dims: [usize; 3]) -> (usize, usize, usize) {
    (
        i % dims[0],
        (i / dims[0]) % dims[1],
        i / (dims[0] * dims[1]),
    )
}

/// Strip `.nii.gz` or `.nii` from a file name.
fn nifti_stem(name: &str) -> Option<&str> {
    name.strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
}

/// Find the five files of a case folder. Errors name the folder or the missing file.
pub fn find_case_files(dir: &Path) -> Result<(String, Naming, [PathBuf; 5])> {
    let id = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if nifti_stem(&name).is_some() {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(Error::format(
            dir,
            "no NIfTI files (.nii or .nii.gz) in this case folder",
        ));
    }
    let mut found: [[Option<PathBuf>; 5]; 2] = Default::default();
    for (ni, naming) in [Naming::Brats2020, Naming::Brats2023]
        .into_iter()
        .enumerate()
    {
        for (si, suffix) in naming.suffixes().into_iter().enumerate() {
            for name in &names {
                let stem = nifti_stem(name).unwrap_or(name);
                if stem.ends_with(suffix) && stem.len() > suffix.len() {
                    if let Some(prev) = &found[ni][si] {
                        return Err(Error::format(
                            dir.join(name),
                            format!(
                                "two files for one sequence: {} and {name}",
                                prev.file_name().unwrap_or_default().to_string_lossy()
                            ),
                        ));
                    }
                    found[ni][si] = Some(dir.join(name));
                }
            }
        }
    }
    let count = |ni: usize| found[ni].iter().filter(|f| f.is_some()).count();
    let ni = if count(1) > count(0) { 1 } else { 0 };
    let naming = [Naming::Brats2020, Naming::Brats2023][ni];
    let ext = names
        .iter()
        .find(|n| n.ends_with(".nii"))
        .map(|_| ".nii")
        .unwrap_or(".nii.gz");
    let mut files: [PathBuf; 5] = Default::default();
    for (si, suffix) in naming.suffixes().into_iter().enumerate() {
        match found[ni][si].take() {
            Some(p) => files[si] = p,
            None => {
                let what = if si == 4 {
                    "segmentation".to_string()
                } else {
                    format!("{} sequence", SEQUENCES[si])
                };
                return Err(Error::format(
                    dir.join(format!("{id}{suffix}{ext}")),
                    format!("missing {what}: no such file in the case folder"),
                ));
            }
        }
    }
    Ok((id, naming, files))
}

/// The case folders under `root`, sorted by name: its subfolders, or `root` itself when it holds
/// NIfTI files directly. Hidden entries (starting with `.`) are ignored.
pub fn list_case_dirs(root: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let root = root.as_ref();
    let mut dirs = Vec::new();
    let mut has_nifti = false;
    for e in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let e = e.map_err(|e| Error::io(root, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            dirs.push(path);
        } else if nifti_stem(&name).is_some() {
            has_nifti = true;
        }
    }
    if has_nifti && dirs.is_empty() {
        return Ok(vec![root.to_path_buf()]);
    }
    dirs.sort();
    if dirs.is_empty() {
        return Err(Error::format(
            root,
            "no case folders (and no NIfTI files) here",
        ));
    }
    Ok(dirs)
}

/// Read one BraTS case folder (either naming, `.nii` or `.nii.gz`).
///
/// Errors ([`Error::Format`] naming the offending file, or [`Error::Io`]): empty folder, missing
/// sequence or segmentation, sequences of different shapes, unsupported datatype, truncated or
/// corrupt gzip, NaN/Inf voxels, label values other than 0, 1, 2, 4 (0, 1, 2, 3 for 2023 naming).
pub fn read_case(dir: impl AsRef<Path>) -> Result<Case> {
    let dir = dir.as_ref();
    let (id, naming, files) = find_case_files(dir)?;
    let mut vols: Vec<Volume> = Vec::with_capacity(5);
    for (i, f) in files.iter().enumerate() {
        let v = read_volume(f)?;
        if i > 0 && v.dims != vols[0].dims {
            let [a, b, c] = v.dims;
            let [x, y, z] = vols[0].dims;
            return Err(Error::format(
                f,
                format!(
                    "sequences of different shapes: this file is {a}×{b}×{c} but {} is {x}×{y}×{z}",
                    files[0].display()
                ),
            ));
        }
        vols.push(v);
    }
    let seg = vols.pop().expect("five volumes");
    let labels = labels_from_volume(&seg, naming, &files[4])?;
    let dims = seg.dims;
    let mut it = vols.into_iter().map(|v| v.data);
    let sequences = [
        it.next().expect("t1"),
        it.next().expect("t1ce"),
        it.next().expect("t2"),
        it.next().expect("flair"),
    ];
    Ok(Case {
        id,
        dims,
        sequences,
        labels,
        naming,
        files,
    })
}

/// Convert a segmentation volume to BraTS 2020 labels (0, 1, 2, 4), mapping 2023's 3 to 4.
pub fn labels_from_volume(seg: &Volume, naming: Naming, path: &Path) -> Result<Vec<u8>> {
    let allowed: &[f32] = match naming {
        Naming::Brats2020 => &[0.0, 1.0, 2.0, 4.0],
        Naming::Brats2023 => &[0.0, 1.0, 2.0, 3.0],
    };
    let mut out = Vec::with_capacity(seg.data.len());
    for (i, &v) in seg.data.iter().enumerate() {
        if !allowed.contains(&v) {
            let (x, y, z) = unravel(i, seg.dims);
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            return Err(Error::format(
                path,
                format!(
                    "unknown label value {v} at voxel ({x}, {y}, {z}); expected one of {}",
                    list.join(", ")
                ),
            ));
        }
        let l = v as u8;
        out.push(if naming == Naming::Brats2023 && l == 3 {
            annotation::ENHANCING
        } else {
            l
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(dims: [u16; 3], datatype: i16, bitpix: i16) -> Vec<u8> {
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
        b[112..116].copy_from_slice(&1f32.to_le_bytes());
        b[344..348].copy_from_slice(b"n+1\0");
        b
    }

    #[test]
    fn reads_int16_with_scaling() {
        let mut b = header_bytes([2, 2, 1], 4, 16);
        b[112..116].copy_from_slice(&2f32.to_le_bytes()); // slope
        b[116..120].copy_from_slice(&1f32.to_le_bytes()); // intercept
        for v in [1i16, 2, 3, -4] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let v = read_volume_bytes(&b, Path::new("x.nii")).unwrap();
        assert_eq!(v.dims, [2, 2, 1]);
        assert_eq!(v.data, vec![3.0, 5.0, 7.0, -7.0]);
        assert_eq!(v.at(1, 1, 0), -7.0);
    }

    #[test]
    fn huge_header_claim_is_an_error_not_an_allocation() {
        let b = header_bytes([30000, 30000, 30000], 16, 32);
        let e = read_volume_bytes(&b, Path::new("big.nii")).unwrap_err();
        assert!(e.to_string().contains("big.nii"), "{e}");
        let b = header_bytes([1000, 1000, 100], 16, 32);
        let e = read_volume_bytes(&b, Path::new("t.nii")).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn bitpix_mismatch_rejected() {
        let mut b = header_bytes([1, 1, 1], 16, 8);
        b.extend_from_slice(&[0; 4]);
        assert!(read_volume_bytes(&b, Path::new("b.nii")).is_err());
    }
}
