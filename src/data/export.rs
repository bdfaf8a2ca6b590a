//! Exporting a slice store (real or synthetic) for other tools: nnU-Net's raw-dataset layout,
//! plain NIfTI slices in the BraTS case layout, or 16-bit PNGs with a label PNG.
//!
//! Every slice becomes one case named `<subject>_z<index>` (characters other than letters,
//! digits, `-` and `_` become `_`; a repeated name gets `_2`, `_3`, …). Layouts:
//!
//! * `nnunet` (nnU-Net v2 raw dataset, as its `documentation/dataset_format.md` describes):
//!   `imagesTr/<case>_0000.nii.gz` … `_0003` (T1, T1ce, T2, FLAIR), `labelsTr/<case>.nii.gz`,
//!   and `dataset.json` with `channel_names`, `labels`, `numTraining` and `file_ending`. nnU-Net
//!   requires consecutive label values, so the BraTS labels 0, 1, 2, 4 are written as 0, 1, 2, 3
//!   (enhancing = 3), as nnU-Net's own BraTS conversion script does.
//! * `nifti`: `<case>/<case>_t1.nii.gz`, `_t1ce`, `_t2`, `_flair`, `_seg` (BraTS 2020 naming and
//!   labels 0, 1, 2, 4), one folder per slice.
//! * `png`: `<case>_0000.png` … `_0003.png` (16-bit grey, the store's 0–255 values times 257, so
//!   255 becomes 65535) and `<case>_seg.png` (8-bit grey, labels 0, 1, 2, 4).
//!
//! NIfTI files are NIfTI-1 `uint8` images of `w × h × 1` voxels of 1 mm, written with the BraTS
//! orientation (qform and sform both `diag(-1, -1, 1)`, "LPS"), so that row `r`, column `c` of a
//! slice is voxel `(c, r, 0)`, as in [`crate::data::slices`]. The whole output folder is written
//! under a temporary name and renamed when complete ([`AtomicDir`]): a failed or interrupted
//! export leaves no half-written folder.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use crate::data::annotation::{self, decode_value};
use crate::data::slices::{ANNOTATION, Slice};
use crate::data::store::StoreReader;
use crate::io::atomic::AtomicDir;
use crate::io::json::Json;
use crate::train::interrupt::signalled;
use crate::{Error, Result};

/// Output layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    NnUnet,
    Nifti,
    Png,
}

impl ExportFormat {
    /// `nnunet`, `nifti` or `png`.
    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s {
            "nnunet" => Some(ExportFormat::NnUnet),
            "nifti" => Some(ExportFormat::Nifti),
            "png" => Some(ExportFormat::Png),
            _ => None,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Slices written (one case each).
    pub cases: usize,
    /// Files written.
    pub files: usize,
}

/// Channel names of the four sequences in nnU-Net's `dataset.json` and file suffixes.
const SEQ_SUFFIXES: [&str; 4] = ["_t1", "_t1ce", "_t2", "_flair"];

/// A file-name-safe, unique case name for a slice.
fn case_name(s: &Slice, seen: &mut HashSet<String>) -> String {
    let clean: String = s
        .subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = if clean.is_empty() {
        "case".to_string()
    } else {
        clean
    };
    let base = format!("{clean}_z{:03}", s.index);
    let mut name = base.clone();
    let mut k = 2;
    while !seen.insert(name.clone()) {
        name = format!("{base}_{k}");
        k += 1;
    }
    name
}

/// A single-file NIfTI-1 `uint8` image of `w × h × 1` voxels in BraTS orientation (row-major
/// `pixels`: column = x, row = y), gzip-compressed.
pub fn nifti_slice_gz(w: usize, h: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    if pixels.len() != w * h || w == 0 || h == 0 || w > i16::MAX as usize || h > i16::MAX as usize {
        return Err(Error::invalid(
            "export",
            format!("{} pixels for a {w}×{h} NIfTI slice", pixels.len()),
        ));
    }
    let mut b = vec![0u8; 352];
    let put =
        |b: &mut Vec<u8>, at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut b, 0, &348i32.to_le_bytes());
    for (i, d) in [3i16, w as i16, h as i16, 1, 1, 1, 1, 1].iter().enumerate() {
        put(&mut b, 40 + 2 * i, &d.to_le_bytes());
    }
    put(&mut b, 70, &2i16.to_le_bytes()); // uint8
    put(&mut b, 72, &8i16.to_le_bytes());
    for i in 0..8 {
        put(&mut b, 76 + 4 * i, &1f32.to_le_bytes()); // pixdim; pixdim[0] = qfac = 1
    }
    put(&mut b, 108, &352f32.to_le_bytes()); // vox_offset
    put(&mut b, 112, &1f32.to_le_bytes()); // scl_slope
    b[123] = 2; // xyzt_units: millimetres
    put(&mut b, 252, &1i16.to_le_bytes()); // qform_code: scanner
    put(&mut b, 254, &1i16.to_le_bytes()); // sform_code: scanner
    put(&mut b, 264, &1f32.to_le_bytes()); // quatern_d = 1: 180° about z, diag(-1, -1, 1)
    let srow: [[f32; 4]; 3] = [
        [-1.0, 0.0, 0.0, 0.0],
        [0.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    for (r, row) in srow.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(&mut b, 280 + 16 * r + 4 * c, &v.to_le_bytes());
        }
    }
    put(&mut b, 344, b"n+1\0");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let io = |e: std::io::Error| Error::invalid("export", e.to_string());
    e.write_all(&b).map_err(io)?;
    e.write_all(pixels).map_err(io)?;
    e.finish().map_err(io)
}

/// A 16-bit grey PNG of 8-bit values scaled by 257 (0 → 0, 255 → 65535).
pub fn png16_of_u8(w: usize, h: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    if pixels.len() != w * h || w == 0 || h == 0 || w > u32::MAX as usize || h > u32::MAX as usize {
        return Err(Error::invalid(
            "export",
            format!("{} pixels for a {w}×{h} PNG", pixels.len()),
        ));
    }
    let data: Vec<u8> = pixels
        .iter()
        .flat_map(|&v| (v as u16 * 257).to_be_bytes())
        .collect();
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Sixteen);
        let err = |e: png::EncodingError| Error::invalid("export", e.to_string());
        let mut wr = enc.write_header().map_err(err)?;
        wr.write_image_data(&data).map_err(err)?;
        wr.finish().map_err(err)?;
    }
    Ok(out)
}

/// The slice's BraTS labels (0, 1, 2, 4), row-major.
fn brats_labels(s: &Slice) -> Vec<u8> {
    s.channel(ANNOTATION)
        .iter()
        .map(|&v| decode_value(v as f32))
        .collect()
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))
}

/// nnU-Net's `dataset.json` for `n` training cases.
pub fn nnunet_dataset_json(n: usize, store: &Path) -> String {
    Json::obj(vec![
        (
            "channel_names",
            Json::obj(vec![
                ("0", Json::str("T1")),
                ("1", Json::str("T1ce")),
                ("2", Json::str("T2")),
                ("3", Json::str("FLAIR")),
            ]),
        ),
        (
            "labels",
            Json::obj(vec![
                ("background", Json::num(0.0)),
                ("necrotic_tumor_core", Json::num(1.0)),
                ("peritumoral_edema", Json::num(2.0)),
                ("enhancing_tumor", Json::num(3.0)),
            ]),
        ),
        ("numTraining", Json::num(n as f64)),
        ("file_ending", Json::str(".nii.gz")),
        ("name", Json::str("brainsynth")),
        (
            "description",
            Json::str(format!(
                "Axial slices exported by brainsynth from {} (labels: BraTS 4 written as 3)",
                store
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )),
        ),
    ])
    .to_pretty()
}

/// nnU-Net class value of a BraTS label (0, 1, 2, 4 → 0, 1, 2, 3).
pub fn nnunet_label(l: u8) -> u8 {
    annotation::label_to_class(l)
}

/// Export every slice of the store at `store` into the new folder `out` (see the module docs).
/// `out` must not exist or be empty. Stops with [`Error::Interrupted`] on SIGINT/SIGTERM (under a
/// [`SignalGuard`](crate::train::interrupt::SignalGuard)), leaving no folder.
pub fn export_store(store: &Path, out: &Path, format: ExportFormat) -> Result<ExportSummary> {
    let mut reader = StoreReader::open(store)?;
    if reader.is_empty() {
        return Err(Error::Data(format!(
            "{} holds no slice: nothing to export",
            store.display()
        )));
    }
    let dir = AtomicDir::create(out)?;
    let root = dir.path().to_path_buf();
    let (images, labels) = (root.join("imagesTr"), root.join("labelsTr"));
    if format == ExportFormat::NnUnet {
        mkdir(&images)?;
        mkdir(&labels)?;
    }
    let mut seen = HashSet::new();
    let mut files = 0usize;
    for i in 0..reader.len() {
        if signalled() {
            return Err(Error::Interrupted(format!(
                "export stopped by a signal; {} was not written",
                out.display()
            )));
        }
        let s = reader.get(i)?;
        let (w, h) = (s.w, s.h);
        let case = case_name(&s, &mut seen);
        let labs = brats_labels(&s);
        match format {
            ExportFormat::NnUnet => {
                for c in 0..4 {
                    let p = images.join(format!("{case}_{c:04}.nii.gz"));
                    write(&p, &nifti_slice_gz(w, h, s.channel(c))?)?;
                }
                let l: Vec<u8> = labs.iter().map(|&l| nnunet_label(l)).collect();
                write(
                    &labels.join(format!("{case}.nii.gz")),
                    &nifti_slice_gz(w, h, &l)?,
                )?;
            }
            ExportFormat::Nifti => {
                let d = root.join(&case);
                mkdir(&d)?;
                for (c, suffix) in SEQ_SUFFIXES.iter().enumerate() {
                    let p = d.join(format!("{case}{suffix}.nii.gz"));
                    write(&p, &nifti_slice_gz(w, h, s.channel(c))?)?;
                }
                write(
                    &d.join(format!("{case}_seg.nii.gz")),
                    &nifti_slice_gz(w, h, &labs)?,
                )?;
            }
            ExportFormat::Png => {
                for c in 0..4 {
                    let p = root.join(format!("{case}_{c:04}.png"));
                    write(&p, &png16_of_u8(w, h, s.channel(c))?)?;
                }
                write(
                    &root.join(format!("{case}_seg.png")),
                    &crate::io::png::encode_png(w, h, 1, &labs)?,
                )?;
            }
        }
        files += 5;
    }
    let n = reader.len();
    if format == ExportFormat::NnUnet {
        write(
            &root.join("dataset.json"),
            nnunet_dataset_json(n, store).as_bytes(),
        )?;
        files += 1;
    }
    dir.commit()?;
    Ok(ExportSummary { cases: n, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_are_safe_and_unique() {
        let mut seen = HashSet::new();
        let s = Slice::zeros("a b/c", 7, 1, 1);
        assert_eq!(case_name(&s, &mut seen), "a_b_c_z007");
        assert_eq!(case_name(&s, &mut seen), "a_b_c_z007_2");
        assert_eq!(
            case_name(&Slice::zeros("", 1, 1, 1), &mut seen),
            "case_z001"
        );
    }

    #[test]
    fn labels_map_to_consecutive_nnunet_values() {
        assert_eq!([0, 1, 2, 4].map(nnunet_label), [0, 1, 2, 3]);
    }
}
