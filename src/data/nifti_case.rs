//! Reading BraTS cases: one folder per subject with four MR sequences and a segmentation, each a
//! NIfTI file: NIfTI-1 or NIfTI-2, single-file (`.nii`, `.nii.gz`) or a `.hdr`/`.img` pair; the
//! extension is matched without regard to case (`.NII` is found).
//!
//! Both namings are understood (a folder holding both is an error):
//!
//! | sequence | BraTS 2020/2021       | BraTS 2023+          |
//! |----------|-----------------------|----------------------|
//! | T1       | `<id>_t1.nii[.gz]`    | `<id>-t1n.nii[.gz]`  |
//! | T1ce     | `<id>_t1ce.nii[.gz]`  | `<id>-t1c.nii[.gz]`  |
//! | T2       | `<id>_t2.nii[.gz]`    | `<id>-t2w.nii[.gz]`  |
//! | FLAIR    | `<id>_flair.nii[.gz]` | `<id>-t2f.nii[.gz]`  |
//! | labels   | `<id>_seg.nii[.gz]`   | `<id>-seg.nii[.gz]`  |
//!
//! The five files of a case must share one prefix `<id>` (one subject). The only exception is a
//! known quirk of the official BraTS 2020 release: subject `BraTS20_Training_355`'s segmentation
//! is named `W39_1998.09.19_Segm.nii`; that exact name is accepted for that subject only.
//!
//! In 2023+ segmentations the enhancing tumour is label 3; it is mapped to 4 here so that every
//! case carries the 2020 labels 0, 1, 2, 4.
//!
//! Every volume is turned to the BraTS orientation (see [`crate::data::orient`]) using its sform
//! or qform, so the same anatomy stored RAS or LPS gives the same case.
//!
//! The reader never trusts a header. All five headers of a case are read and checked (shape,
//! orientation, datatype, size against the bytes present, and for gzip against the largest size
//! deflate can expand the file to) before any voxel is decoded; a case larger than
//! [`ReadLimits::max_voxels`] is refused from its header alone. Voxels are then streamed in small
//! chunks straight into the `f32` sequences and `u8` labels, so peak memory is the case itself
//! (17 bytes per voxel), never what a file claims. A hostile or damaged file yields an
//! [`Error::Format`] naming the file, not a panic or a huge allocation. Reading stops with
//! [`Error::Interrupted`] when SIGINT/SIGTERM arrive under a
//! [`SignalGuard`](crate::train::interrupt::SignalGuard).

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::data::annotation;
use crate::data::nifti_header::{self, Header};
use crate::data::orient::Reorient;
use crate::train::interrupt;
use crate::{Error, Result};

/// Default largest voxel count of a case's volumes (2^25 ≈ 33.5 million, e.g. 320³; a BraTS
/// volume is 240 × 240 × 155 ≈ 8.9 million). At the limit a case holds about 570 MB in memory.
pub const MAX_VOXELS: usize = 1 << 25;

/// deflate cannot expand data by more than about 1032:1; anything claiming more is not a
/// gzip-compressed NIfTI of this size.
const MAX_DEFLATE_RATIO: usize = 1100;

/// Bytes decoded per chunk while streaming voxels (a multiple of every voxel size).
const CHUNK: usize = 1 << 16;

/// Limits applied from the headers, before any voxel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest `nx · ny · nz` of a case's volumes (all five share one shape).
    pub max_voxels: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_voxels: MAX_VOXELS,
        }
    }
}

/// One 3-D NIfTI volume converted to `f32` with `scl_slope`/`scl_inter` applied, in the BraTS
/// orientation.
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

    fn describe(self) -> &'static str {
        match self {
            Naming::Brats2020 => "BraTS 2020/2021 naming",
            Naming::Brats2023 => "BraTS 2023 naming",
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

/// Voxel types read (NIfTI datatype codes 2, 256, 4, 512, 8, 768, 1024, 1280, 16, 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl DType {
    fn from_code(code: i16) -> std::result::Result<DType, Option<&'static str>> {
        Ok(match code {
            2 => DType::U8,
            256 => DType::I8,
            4 => DType::I16,
            512 => DType::U16,
            8 => DType::I32,
            768 => DType::U32,
            1024 => DType::I64,
            1280 => DType::U64,
            16 => DType::F32,
            64 => DType::F64,
            32 => return Err(Some("complex64")),
            128 => return Err(Some("RGB24")),
            1536 => return Err(Some("float128")),
            1792 => return Err(Some("complex128")),
            2048 => return Err(Some("complex256")),
            2304 => return Err(Some("RGBA32")),
            _ => return Err(None),
        })
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }
}

/// What a header promises, checked before any voxel is decoded ([`read_info`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeInfo {
    /// The file named (the header file of a pair).
    pub path: PathBuf,
    /// The file holding the voxels (`.img` of a pair, else `path`).
    pub data_path: PathBuf,
    pub header: Header,
    pub dtype: DType,
    /// Dimensions as stored.
    pub stored_dims: [usize; 3],
    /// Dimensions after reorientation to BraTS.
    pub dims: [usize; 3],
    pub reorient: Reorient,
    /// Byte offset of the first voxel in `data_path` (decompressed).
    pub offset: usize,
    /// Bytes of voxel data.
    pub nbytes: usize,
}

impl VolumeInfo {
    /// Number of voxels.
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

fn named_gz(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().to_ascii_lowercase().ends_with(".gz"))
}

/// A decompressing (or plain) reader over a source whose first bytes are `magic`.
fn stream<'a, R: Read + 'a>(r: R, gz: bool) -> Box<dyn Read + 'a> {
    if gz {
        Box::new(MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    }
}

/// Reads from `r` into `buf` until it holds `limit` bytes or the stream ends.
fn read_limited(r: &mut dyn Read, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<()> {
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

fn io_or_gz(path: &Path, gz: bool, e: std::io::Error) -> Error {
    if gz {
        gz_error(path, e)
    } else {
        Error::io(path, e)
    }
}

/// First bytes of a file: enough to tell gzip and hold any header.
fn head_of(r: &mut dyn Read, path: &Path, gz: bool) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(nifti_header::NIFTI2_LEN);
    read_limited(r, &mut head, nifti_header::NIFTI2_LEN).map_err(|e| io_or_gz(path, gz, e))?;
    Ok(head)
}

fn check_gz_name(path: &Path, first: &[u8]) -> Result<bool> {
    let gz = is_gzip(first);
    if !gz && named_gz(path) {
        return Err(Error::format(
            path,
            "named .gz but not gzip-compressed (no gzip magic bytes 1f 8b at the start)",
        ));
    }
    Ok(gz)
}

/// Read and check the header of a NIfTI file (only its first bytes are read or decompressed).
pub fn read_info(path: impl AsRef<Path>, limits: &ReadLimits) -> Result<VolumeInfo> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
    let mut r = std::io::BufReader::new(file);
    let mut first = [0u8; 2];
    let n = r.read(&mut first).map_err(|e| Error::io(path, e))?;
    let gz = check_gz_name(path, &first[..n])?;
    let mut s = stream(Cursor::new(first[..n].to_vec()).chain(r), gz);
    let head = head_of(&mut s, path, gz)?;
    let header = nifti_header::parse(&head, path)?;
    let data_path = if header.pair {
        pair_image(path)?
    } else {
        path.to_path_buf()
    };
    let info = layout(header, path, data_path, limits)?;
    let total = info.offset + info.nbytes;
    if info.header.pair {
        let dp = &info.data_path;
        let mut f = std::fs::File::open(dp).map_err(|e| Error::io(dp, e))?;
        let dlen = f.metadata().map_err(|e| Error::io(dp, e))?.len() as usize;
        let mut first = [0u8; 2];
        let n = f.read(&mut first).map_err(|e| Error::io(dp, e))?;
        let dgz = check_gz_name(dp, &first[..n])?;
        check_size(dp, dgz, dlen, total)?;
    } else {
        check_size(path, gz, len, total)?;
    }
    Ok(info)
}

/// The `.img` file of a `.hdr` (or `.hdr.gz`) header, keeping the extension's case.
fn pair_image(hdr: &Path) -> Result<PathBuf> {
    let name = hdr
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let mut candidates = Vec::new();
    for (ext, gz) in [(".hdr.gz", true), (".hdr", false)] {
        if lower.ends_with(ext) {
            let stem = &name[..name.len() - ext.len()];
            let img = &name[name.len() - ext.len() + 1..name.len() - ext.len() + 4];
            let img = if img == "HDR" { "IMG" } else { "img" };
            let gz_ext = &name[name.len() - ext.len() + 4..];
            if gz {
                candidates.push(format!("{stem}.{img}{gz_ext}"));
            }
            candidates.push(format!("{stem}.{img}"));
            break;
        }
    }
    if candidates.is_empty() {
        return Err(Error::format(
            hdr,
            "a NIfTI header of a .hdr/.img pair (magic \"ni1\"/\"ni2\") must be named .hdr",
        ));
    }
    let dir = hdr.parent().unwrap_or(Path::new(""));
    for c in &candidates {
        let p = dir.join(c);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::format(
        hdr,
        format!(
            "this .hdr/.img pair has no image file: expected {} beside it",
            candidates.join(" or ")
        ),
    ))
}

fn check_size(path: &Path, gz: bool, len: usize, total: usize) -> Result<()> {
    if gz {
        if total > len.saturating_mul(MAX_DEFLATE_RATIO) {
            return Err(Error::format(
                path,
                format!(
                    "header promises {total} bytes but a {len}-byte gzip file cannot hold that \
                     many (truncated or corrupt file)"
                ),
            ));
        }
    } else if len < total {
        return Err(Error::format(
            path,
            format!("truncated: header promises {total} bytes, the file holds {len}"),
        ));
    }
    Ok(())
}

fn layout(h: Header, path: &Path, data_path: PathBuf, limits: &ReadLimits) -> Result<VolumeInfo> {
    let fmt = |msg: String| Error::format(path, msg);
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(fmt(format!("invalid dim[0] = {ndim}")));
    }
    let d = &h.dim[1..=ndim as usize];
    if let Some(i) = d.iter().position(|&x| x < 0) {
        return Err(fmt(format!(
            "dimension {} is negative ({}): dimensions {d:?}",
            i + 1,
            d[i]
        )));
    }
    if d.contains(&0) {
        return Err(fmt(format!("a dimension is zero: {d:?}")));
    }
    if ndim < 3 || d[3..].iter().any(|&x| x != 1) {
        return Err(fmt(format!(
            "expected a 3-D volume, found dimensions {d:?}"
        )));
    }
    let stored = [d[0], d[1], d[2]];
    let nvox = stored
        .iter()
        .try_fold(1u128, |a, &x| a.checked_mul(x as u128))
        .unwrap_or(u128::MAX);
    if nvox > limits.max_voxels as u128 {
        return Err(fmt(format!(
            "volume of {}×{}×{} = {nvox} voxels exceeds the limit of {} voxels per case (a \
             BraTS volume has 8.9 million; raise the limit with --max-voxels if this is real data)",
            stored[0], stored[1], stored[2], limits.max_voxels
        )));
    }
    let stored = stored.map(|x| x as usize);
    let dtype = match DType::from_code(h.datatype) {
        Ok(t) => t,
        Err(Some(name)) => {
            return Err(fmt(format!(
                "unsupported datatype {name} (code {}); scalar integer or float voxels expected",
                h.datatype
            )));
        }
        Err(None) => {
            return Err(fmt(format!("unsupported datatype code {}", h.datatype)));
        }
    };
    if h.bitpix as i64 != 8 * dtype.size() as i64 {
        return Err(fmt(format!(
            "bitpix {} does not match datatype {dtype:?}",
            h.bitpix
        )));
    }
    let off = h.vox_offset;
    let min_off = if h.pair { 0.0 } else { h.len() as f64 };
    if !off.is_finite() || off < min_off || off.fract() != 0.0 || off > 1.0e9 {
        return Err(fmt(format!("invalid vox_offset {off}")));
    }
    if !h.scl_slope.is_finite() || !h.scl_inter.is_finite() {
        return Err(fmt(format!(
            "non-finite scaling (scl_slope {}, scl_inter {}) gives NaN/Inf voxels",
            h.scl_slope, h.scl_inter
        )));
    }
    let reorient = Reorient::from_affine(h.affine().as_ref(), path)?;
    Ok(VolumeInfo {
        path: path.to_path_buf(),
        data_path,
        dtype,
        stored_dims: stored,
        dims: reorient.out_dims(stored),
        reorient,
        offset: off as usize,
        nbytes: stored.iter().product::<usize>() * dtype.size(),
        header: h,
    })
}

/// Stream the voxels of `info` from `r` (positioned at byte 0 of the data file, decompressed),
/// converting each to `T` with `conv` (`None` = refused: `err(value, stored (x, y, z))` says why),
/// into BraTS orientation.
fn decode<T: Copy + Default>(
    r: &mut dyn Read,
    info: &VolumeInfo,
    gz: bool,
    conv: impl Fn(f32) -> Option<T>,
    err: impl Fn(f32, [usize; 3]) -> Error,
) -> Result<Vec<T>> {
    let path = &info.data_path;
    let n = info.voxels();
    let skip = info.offset as u64;
    let skipped = std::io::copy(&mut r.take(skip), &mut std::io::sink())
        .map_err(|e| io_or_gz(path, gz, e))?;
    let total = info.offset + info.nbytes;
    let truncated = |got: usize| {
        Error::format(
            path,
            format!(
                "truncated: header promises {total} bytes, the {} holds {got}",
                if gz { "gzip stream" } else { "file" }
            ),
        )
    };
    if skipped < skip {
        return Err(truncated(skipped as usize));
    }
    let mut out: Vec<T> = Vec::new();
    out.try_reserve_exact(n)
        .map_err(|_| Error::format(path, format!("cannot allocate memory for {n} voxels")))?;
    out.resize(n, T::default());
    let slope = info.header.scl_slope as f32;
    let inter = info.header.scl_inter as f32;
    let be = info.header.big_endian;
    let size = info.dtype.size();
    let mut place = info.reorient.placer(info.stored_dims);
    let [sx, sy, _] = info.stored_dims;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0usize; // voxels decoded
    let mut vals: Vec<f32> = Vec::with_capacity(CHUNK);
    while done < n {
        if interrupt::signalled() {
            return Err(Error::Interrupted(format!(
                "stopped while reading {}",
                path.display()
            )));
        }
        let bytes = ((n - done) * size).min(CHUNK);
        let chunk = &mut buf[..bytes];
        if let Err(e) = r.read_exact(chunk) {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                truncated(info.offset + done * size)
            } else {
                io_or_gz(path, gz, e)
            });
        }
        vals.clear();
        to_f32(info.dtype, be, chunk, &mut vals);
        for v in vals.iter_mut() {
            if slope != 0.0 {
                *v = *v * slope + inter;
            }
        }
        for &v in &vals {
            let Some(t) = conv(v) else {
                return Err(err(v, [done % sx, (done / sx) % sy, done / (sx * sy)]));
            };
            out[place.next_index()] = t;
            done += 1;
        }
    }
    if gz {
        // Drain the rest so that gzip verifies its CRC and length trailer.
        std::io::copy(r, &mut std::io::sink()).map_err(|e| gz_error(path, e))?;
    }
    Ok(out)
}

/// Raw voxels of one type to `f32` (as `as f32`, the conversion the NIfTI crate applies).
fn to_f32(dtype: DType, be: bool, bytes: &[u8], out: &mut Vec<f32>) {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            out.extend(bytes.chunks_exact($n).map(|c| {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                (if be {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }) as f32
            }))
        };
    }
    match dtype {
        DType::U8 => out.extend(bytes.iter().map(|&b| b as f32)),
        DType::I8 => out.extend(bytes.iter().map(|&b| b as i8 as f32)),
        DType::I16 => conv!(i16, 2),
        DType::U16 => conv!(u16, 2),
        DType::I32 => conv!(i32, 4),
        DType::U32 => conv!(u32, 4),
        DType::I64 => conv!(i64, 8),
        DType::U64 => conv!(u64, 8),
        DType::F32 => conv!(f32, 4),
        DType::F64 => conv!(f64, 8),
    }
}

fn finite(v: f32) -> Option<f32> {
    v.is_finite().then_some(v)
}

fn not_finite(path: &Path) -> impl Fn(f32, [usize; 3]) -> Error + '_ {
    move |v, [x, y, z]| {
        Error::format(
            path,
            format!("voxel ({x}, {y}, {z}) is {v} (NaN/Inf voxels are not accepted)"),
        )
    }
}

fn allowed_labels(naming: Naming) -> [f32; 4] {
    match naming {
        Naming::Brats2020 => [0.0, 1.0, 2.0, 4.0],
        Naming::Brats2023 => [0.0, 1.0, 2.0, 3.0],
    }
}

fn label_of(naming: Naming) -> impl Fn(f32) -> Option<u8> {
    let allowed = allowed_labels(naming);
    move |v| {
        if !allowed.contains(&v) {
            return None;
        }
        let l = v as u8;
        Some(if naming == Naming::Brats2023 && l == 3 {
            annotation::ENHANCING
        } else {
            l
        })
    }
}

fn bad_label(naming: Naming, path: &Path) -> impl Fn(f32, [usize; 3]) -> Error + '_ {
    move |v, [x, y, z]| {
        let list: Vec<String> = allowed_labels(naming)
            .iter()
            .map(|a| a.to_string())
            .collect();
        Error::format(
            path,
            format!(
                "unknown label value {v} at voxel ({x}, {y}, {z}); expected one of {}",
                list.join(", ")
            ),
        )
    }
}

/// Open the data file of `info` as a (decompressing) stream at byte 0.
fn open_data(info: &VolumeInfo) -> Result<(Box<dyn Read>, bool)> {
    let p = &info.data_path;
    let file = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
    let mut r = std::io::BufReader::new(file);
    let mut first = [0u8; 2];
    let n = r.read(&mut first).map_err(|e| Error::io(p, e))?;
    let gz = check_gz_name(p, &first[..n])?;
    Ok((stream(Cursor::new(first[..n].to_vec()).chain(r), gz), gz))
}

/// Decode the voxels of a checked volume as `f32` (scaled, finite, BraTS orientation).
pub fn read_voxels(info: &VolumeInfo) -> Result<Volume> {
    let (mut r, gz) = open_data(info)?;
    let data = decode(&mut r, info, gz, finite, not_finite(&info.data_path))?;
    Ok(Volume {
        dims: info.dims,
        data,
    })
}

/// Decode the voxels of a checked segmentation as BraTS 2020 labels (0, 1, 2, 4).
pub fn read_labels(info: &VolumeInfo, naming: Naming) -> Result<Vec<u8>> {
    let (mut r, gz) = open_data(info)?;
    decode(
        &mut r,
        info,
        gz,
        label_of(naming),
        bad_label(naming, &info.data_path),
    )
}

/// Read a NIfTI volume (`.nii`, `.nii.gz`, `.hdr`/`.img`; gzip is recognised by its magic bytes)
/// with the default [`ReadLimits`].
pub fn read_volume(path: impl AsRef<Path>) -> Result<Volume> {
    read_voxels(&read_info(path, &ReadLimits::default())?)
}

/// Read a single-file NIfTI volume from the bytes of a `.nii` or `.nii.gz` file; `path` only names
/// the source in errors (and a `.gz` name requires gzip bytes).
pub fn read_volume_bytes(bytes: &[u8], path: &Path) -> Result<Volume> {
    let gz = check_gz_name(path, bytes)?;
    let mut s = stream(bytes, gz);
    let head = head_of(&mut s, path, gz)?;
    let header = nifti_header::parse(&head, path)?;
    if header.pair {
        return Err(Error::format(
            path,
            "a .hdr/.img pair header: read it from its file so that the .img beside it is found",
        ));
    }
    let info = layout(header, path, path.to_path_buf(), &ReadLimits::default())?;
    check_size(path, gz, bytes.len(), info.offset + info.nbytes)?;
    let mut s = stream(bytes, gz);
    let data = decode(&mut s, &info, gz, finite, not_finite(path))?;
    Ok(Volume {
        dims: info.dims,
        data,
    })
}

/// Strip a NIfTI extension (`.nii.gz`, `.nii`, `.hdr.gz`, `.hdr`, in any letter case) from a file
/// name.
pub fn nifti_stem(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    [".nii.gz", ".nii", ".hdr.gz", ".hdr"]
        .into_iter()
        .find(|ext| lower.ends_with(ext))
        .map(|ext| &name[..name.len() - ext.len()])
}

/// BraTS 2020 subject whose segmentation the official release names differently.
const QUIRK_355_ID: &str = "BraTS20_Training_355";
/// Its segmentation's file stem.
const QUIRK_355_SEG: &str = "W39_1998.09.19_Segm";

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Find the five files of a case folder. Errors name the folder or the offending files: a missing
/// file, two files for one sequence, files of two naming sets, or files of different subjects
/// (prefixes).
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
        if !name.starts_with('.') && nifti_stem(&name).is_some() {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(Error::format(
            dir,
            "no NIfTI files (.nii, .nii.gz or .hdr/.img) in this case folder",
        ));
    }
    // found[naming][sequence] = (file name, prefix)
    let mut found: [[Option<(String, String)>; 5]; 2] = Default::default();
    let namings = [Naming::Brats2020, Naming::Brats2023];
    for (ni, naming) in namings.into_iter().enumerate() {
        for (si, suffix) in naming.suffixes().into_iter().enumerate() {
            for name in &names {
                let stem = nifti_stem(name).unwrap_or(name);
                if stem.to_ascii_lowercase().ends_with(suffix) && stem.len() > suffix.len() {
                    if let Some((prev, _)) = &found[ni][si] {
                        return Err(Error::format(
                            dir.join(name),
                            format!("two files for one sequence: {prev} and {name}"),
                        ));
                    }
                    let prefix = stem[..stem.len() - suffix.len()].to_string();
                    found[ni][si] = Some((name.clone(), prefix));
                }
            }
        }
    }
    let first = |ni: usize| found[ni].iter().flatten().next().map(|(n, _)| n.clone());
    if let (Some(a), Some(b)) = (first(0), first(1)) {
        return Err(Error::format(
            dir,
            format!(
                "two naming sets in one case folder: {a} ({}) and {b} ({}); keep one set per \
                 case folder",
                namings[0].describe(),
                namings[1].describe()
            ),
        ));
    }
    let ni = if first(1).is_some() { 1 } else { 0 };
    let naming = namings[ni];
    let ext = if names
        .iter()
        .any(|n| n.to_ascii_lowercase().ends_with(".nii"))
    {
        ".nii"
    } else {
        ".nii.gz"
    };
    // The prefix every file must share: the first sequence found.
    let (ref_name, ref_prefix) = found[ni]
        .iter()
        .flatten()
        .next()
        .cloned()
        .unwrap_or_else(|| (String::new(), id.clone()));
    // BraTS 2020 case 355: accept its differently named segmentation, by exact name only.
    if naming == Naming::Brats2020
        && found[ni][4].is_none()
        && ref_prefix == QUIRK_355_ID
        && let Some(name) = names.iter().find(|n| nifti_stem(n) == Some(QUIRK_355_SEG))
    {
        found[ni][4] = Some((name.clone(), ref_prefix.clone()));
    }
    let mut files: [PathBuf; 5] = Default::default();
    for (si, suffix) in naming.suffixes().into_iter().enumerate() {
        match found[ni][si].take() {
            Some((name, prefix)) => {
                if prefix != ref_prefix {
                    return Err(Error::format(
                        dir.join(&name),
                        format!(
                            "file prefix {prefix:?} differs from {ref_prefix:?} of {ref_name}: \
                             the files of a case must belong to one subject"
                        ),
                    ));
                }
                files[si] = dir.join(name);
            }
            None => {
                let what = if si == 4 {
                    "segmentation".to_string()
                } else {
                    format!("{} sequence", SEQUENCES[si])
                };
                return Err(Error::format(
                    dir.join(format!("{ref_prefix}{suffix}{ext}")),
                    format!("missing {what}: no such file in the case folder"),
                ));
            }
        }
    }
    Ok((id, naming, files))
}

/// The case folders under `root`, sorted by name: its subfolders, or `root` itself when it holds
/// NIfTI files directly. Hidden entries (starting with `.`, e.g. temporary files) are ignored.
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

/// Read one BraTS case folder with the default [`ReadLimits`].
pub fn read_case(dir: impl AsRef<Path>) -> Result<Case> {
    read_case_with(dir, &ReadLimits::default())
}

/// Read one BraTS case folder (either naming, any supported NIfTI storage).
///
/// All five headers are checked before any voxel is decoded. Errors ([`Error::Format`] naming the
/// offending file, or [`Error::Io`]): empty folder, missing sequence or segmentation, files of two
/// subjects or two naming sets, sequences of different shapes, a case over `limits`, unsupported
/// datatype or storage, oblique orientation, truncated or corrupt gzip, NaN/Inf voxels, label
/// values other than 0, 1, 2, 4 (0, 1, 2, 3 for 2023 naming).
pub fn read_case_with(dir: impl AsRef<Path>, limits: &ReadLimits) -> Result<Case> {
    let dir = dir.as_ref();
    let (id, naming, files) = find_case_files(dir)?;
    let mut infos: Vec<VolumeInfo> = Vec::with_capacity(5);
    for f in &files {
        let info = read_info(f, limits)?;
        if let Some(first) = infos.first()
            && info.dims != first.dims
        {
            let [a, b, c] = info.dims;
            let [x, y, z] = first.dims;
            return Err(Error::format(
                f,
                format!(
                    "sequences of different shapes: this file is {a}×{b}×{c} but {} is \
                     {x}×{y}×{z} (after orientation to BraTS, stored {} and {})",
                    file_name(&files[0]),
                    info.reorient.source_codes(),
                    first.reorient.source_codes()
                ),
            ));
        }
        infos.push(info);
    }
    let mut seqs: Vec<Vec<f32>> = Vec::with_capacity(4);
    for info in &infos[..4] {
        seqs.push(read_voxels(info)?.data);
    }
    let labels = read_labels(&infos[4], naming)?;
    let mut it = seqs.into_iter();
    let mut next = || it.next().unwrap_or_default();
    let sequences = [next(), next(), next(), next()];
    Ok(Case {
        id,
        dims: infos[4].dims,
        sequences,
        labels,
        naming,
        files,
    })
}

/// Convert a segmentation volume to BraTS 2020 labels (0, 1, 2, 4), mapping 2023's 3 to 4.
pub fn labels_from_volume(seg: &Volume, naming: Naming, path: &Path) -> Result<Vec<u8>> {
    let conv = label_of(naming);
    let err = bad_label(naming, path);
    let [nx, ny, _] = seg.dims;
    seg.data
        .iter()
        .enumerate()
        .map(|(i, &v)| conv(v).ok_or_else(|| err(v, [i % nx, (i / nx) % ny, i / (nx * ny)])))
        .collect()
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
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        let b = header_bytes([300, 300, 100], 16, 32);
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
