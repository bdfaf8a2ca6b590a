//! NIfTI headers parsed by hand: NIfTI-1 (348 bytes) and NIfTI-2 (540 bytes), single files
//! (`n+1`/`n+2` magic) and `.hdr`/`.img` pairs (`ni1`/`ni2`), either byte order.
//!
//! Field offsets and the orientation rules follow the NIfTI-1 and NIfTI-2 standard headers
//! (`nifti1.h`, `nifti2.h`): the sform (`srow_x/y/z`) is used when `sform_code > 0`, else the
//! qform (quaternion `b, c, d`, `qfac = pixdim[0]`) when `qform_code > 0`, else the file carries no
//! orientation and is taken as stored. Dimensions stay signed here so that a negative one is
//! reported as negative, not as a huge unsigned size.

use std::path::Path;

use crate::{Error, Result};

/// Bytes of a NIfTI-1 header.
pub const NIFTI1_LEN: usize = 348;
/// Bytes of a NIfTI-2 header.
pub const NIFTI2_LEN: usize = 540;

/// The fields of a NIfTI-1 or NIfTI-2 header that reading a 3-D scalar volume needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// Multi-byte values are big-endian.
    pub big_endian: bool,
    /// The voxels live in a separate `.img` file (magic `ni1`/`ni2`).
    pub pair: bool,
    /// `dim[0]` = number of dimensions, `dim[1..=7]` the sizes (signed, as stored).
    pub dim: [i64; 8],
    pub datatype: i16,
    pub bitpix: i16,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    /// Quaternion `b, c, d`.
    pub quatern: [f64; 3],
    /// `qoffset_x, y, z`.
    pub qoffset: [f64; 3],
    /// `srow_x`, `srow_y`, `srow_z`.
    pub srow: [[f64; 4]; 3],
}

/// Which header `first4` (the first four bytes of a file) starts, and its byte order:
/// `Some((len, big_endian))`, or `None` when `sizeof_hdr` is neither 348 nor 540.
pub fn sniff(first4: [u8; 4]) -> Option<(usize, bool)> {
    let le = i32::from_le_bytes(first4);
    let be = i32::from_be_bytes(first4);
    match (le, be) {
        (348, _) => Some((NIFTI1_LEN, false)),
        (_, 348) => Some((NIFTI1_LEN, true)),
        (540, _) => Some((NIFTI2_LEN, false)),
        (_, 540) => Some((NIFTI2_LEN, true)),
        _ => None,
    }
}

struct Fields<'a> {
    b: &'a [u8],
    be: bool,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[at..at + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.arr(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.arr(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.arr(at))
    }
    fn f32(&self, at: usize) -> f64 {
        f32::from_le_bytes(self.arr(at)) as f64
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.arr(at))
    }
}

/// Parse a header from the first bytes of a file (at least 348 or 540 of them, as [`sniff`] says).
pub fn parse(bytes: &[u8], path: &Path) -> Result<Header> {
    let fmt = |m: String| Error::format(path, m);
    if bytes.len() < 4 {
        return Err(fmt(format!(
            "not a NIfTI file: {} bytes, a header alone needs 348",
            bytes.len()
        )));
    }
    let first4 = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let Some((len, be)) = sniff(first4) else {
        return Err(fmt(format!(
            "not a NIfTI file (sizeof_hdr is {}, expected 348 for NIfTI-1 or 540 for NIfTI-2)",
            i32::from_le_bytes(first4)
        )));
    };
    if bytes.len() < len {
        return Err(fmt(format!(
            "truncated NIfTI-{} header: {} bytes of {len}",
            if len == NIFTI1_LEN { 1 } else { 2 },
            bytes.len()
        )));
    }
    let f = Fields { b: bytes, be };
    let h = if len == NIFTI1_LEN {
        let magic = &bytes[344..348];
        let pair = match magic {
            b"n+1\0" => false,
            b"ni1\0" => true,
            _ => {
                return Err(fmt(
                    "no NIfTI-1 magic (\"n+1\" or \"ni1\"): an Analyze 7.5 file or a damaged \
                     header; only NIfTI is supported"
                        .into(),
                ));
            }
        };
        Header {
            version: 1,
            big_endian: be,
            pair,
            dim: std::array::from_fn(|i| f.i16(40 + 2 * i) as i64),
            datatype: f.i16(70),
            bitpix: f.i16(72),
            pixdim: std::array::from_fn(|i| f.f32(76 + 4 * i)),
            vox_offset: f.f32(108),
            scl_slope: f.f32(112),
            scl_inter: f.f32(116),
            qform_code: f.i16(252) as i32,
            sform_code: f.i16(254) as i32,
            quatern: std::array::from_fn(|i| f.f32(256 + 4 * i)),
            qoffset: std::array::from_fn(|i| f.f32(268 + 4 * i)),
            srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f32(280 + 16 * r + 4 * c))),
        }
    } else {
        let magic = &bytes[4..8];
        let pair = match magic {
            b"n+2\0" => false,
            b"ni2\0" => true,
            _ => return Err(fmt("no NIfTI-2 magic (\"n+2\" or \"ni2\")".into())),
        };
        Header {
            version: 2,
            big_endian: be,
            pair,
            dim: std::array::from_fn(|i| f.i64(16 + 8 * i)),
            datatype: f.i16(12),
            bitpix: f.i16(14),
            pixdim: std::array::from_fn(|i| f.f64(104 + 8 * i)),
            vox_offset: f.i64(168) as f64,
            scl_slope: f.f64(176),
            scl_inter: f.f64(184),
            qform_code: f.i32(344),
            sform_code: f.i32(348),
            quatern: std::array::from_fn(|i| f.f64(352 + 8 * i)),
            qoffset: std::array::from_fn(|i| f.f64(376 + 8 * i)),
            srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f64(400 + 32 * r + 8 * c))),
        }
    };
    Ok(h)
}

impl Header {
    /// Bytes of this header's own fields (348 or 540).
    pub fn len(&self) -> usize {
        if self.version == 1 {
            NIFTI1_LEN
        } else {
            NIFTI2_LEN
        }
    }

    /// Always false (a header has a fixed length); present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The voxel-to-world matrix (3 × 4, world in RAS+ millimetres), or `None` when the file
    /// carries no orientation (both codes 0).
    pub fn affine(&self) -> Option<[[f64; 4]; 3]> {
        if self.sform_code > 0 {
            return Some(self.srow);
        }
        if self.qform_code <= 0 {
            return None;
        }
        let [b, c, d] = self.quatern;
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if self.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let s = [self.pixdim[1], self.pixdim[2], self.pixdim[3] * qfac];
        Some(std::array::from_fn(|row| {
            [
                r[row][0] * s[0],
                r[row][1] * s[1],
                r[row][2] * s[2],
                self.qoffset[row],
            ]
        }))
    }
}
