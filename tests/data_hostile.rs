//! The reader against a hostile corpus: gzip bombs, orientation, cases of two subjects or two
//! namings, NIfTI-2, `.hdr`/`.img` pairs, upper-case extensions, negative dimensions, `.gz` files
//! that are not gzip.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use brainsynth::data::nifti_case::{
    ReadLimits, read_case, read_case_with, read_info, read_volume, read_volume_bytes,
};
use brainsynth::data::slices::{SliceConfig, slices_from_case};
use common::*;

fn err_of(dir: &Path) -> String {
    read_case(dir).unwrap_err().to_string()
}

/// A gzip stream of a NIfTI-1 f32 header declaring `dims` followed by `zeros` zero bytes,
/// compressed as hard as deflate allows (how a bomb is made).
fn bomb(dims: [u16; 3], datatype: i16, bitpix: i16, zeros: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&nifti_bytes(dims, datatype, bitpix, &[], 1.0, 0.0))
        .unwrap();
    let block = vec![0u8; 1 << 16];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(block.len());
        e.write_all(&block[..n]).unwrap();
        left -= n;
    }
    e.finish().unwrap()
}

#[test]
fn gzip_bombs_are_refused_from_their_headers() {
    let t = TempDir::new("bomb");
    let d = t.path().join("Bomb_001");
    std::fs::create_dir_all(&d).unwrap();
    // 1024×1024×256 float32 (1 GiB) and float64 (2 GiB) declared; 8 MB of zeros actually present
    // (a real bomb carries the whole GiB in about 1 MB; the header alone must refuse it).
    for (s, dt, bp) in [
        ("t1", 16, 32),
        ("t1ce", 16, 32),
        ("t2", 16, 32),
        ("flair", 64, 64),
        ("seg", 64, 64),
    ] {
        let b = bomb([1024, 1024, 256], dt, bp, 8 << 20);
        assert!(b.len() < 100_000);
        std::fs::write(d.join(format!("Bomb_001_{s}.nii.gz")), b).unwrap();
    }
    let start = std::time::Instant::now();
    let e = err_of(&d);
    assert!(
        e.contains("Bomb_001_t1.nii.gz") && e.contains("exceeds the limit"),
        "{e}"
    );
    assert!(
        start.elapsed().as_secs_f64() < 1.0,
        "refused from the header"
    );
    // Under a raised limit the size is checked against what deflate can expand the file to.
    let big = ReadLimits {
        max_voxels: 1 << 30,
    };
    let e = read_case_with(&d, &big).unwrap_err().to_string();
    assert!(e.contains("cannot hold that many"), "{e}");
    // A plausible size whose stream ends early: truncated, found while streaming.
    let b = bomb([200, 200, 100], 16, 32, 1 << 20);
    let e = read_volume_bytes(&b, Path::new("b.nii.gz"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn every_header_is_checked_before_any_voxel_is_decoded() {
    let t = TempDir::new("headers-first");
    let dims = [16u16, 16, 4];
    let (mut seqs, labels) = small_case_data(dims);
    seqs[0][3] = f32::NAN; // found only when T1's voxels are decoded
    let d = write_case(t.path(), "Case_1", NAMES_2020, ".nii", dims, &seqs, &labels);
    // The segmentation's header is bad: it must be reported, not T1's NaN.
    let seg = d.join("Case_1_seg.nii");
    let mut b = std::fs::read(&seg).unwrap();
    b[70..72].copy_from_slice(&32i16.to_le_bytes()); // complex64
    b[72..74].copy_from_slice(&64i16.to_le_bytes());
    std::fs::write(&seg, b).unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("Case_1_seg.nii") && e.contains("complex64"),
        "{e}"
    );
}

/// NIfTI-1 bytes with an sform (`cols` = world vector of each voxel axis, in RAS+).
fn with_sform(mut b: Vec<u8>, cols: [[f32; 3]; 3], offset: [f32; 3]) -> Vec<u8> {
    b[254..256].copy_from_slice(&1i16.to_le_bytes()); // sform_code
    for r in 0..3 {
        let row = [cols[0][r], cols[1][r], cols[2][r], offset[r]];
        for (c, v) in row.iter().enumerate() {
            let at = 280 + 16 * r + 4 * c;
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    b
}

const LPS: [[f32; 3]; 3] = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
const RAS: [[f32; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// An asymmetric case (so a mirror shows), stored LPS.
fn asymmetric(dims: [usize; 3]) -> ([Vec<f32>; 4], Vec<f32>) {
    let n = dims.iter().product::<usize>();
    let mut seq = vec![0f32; n];
    let mut lab = vec![0f32; n];
    for i in 0..n {
        let (x, y) = (i % dims[0], (i / dims[0]) % dims[1]);
        if x >= 2 && y >= 2 && x < dims[0] - 2 && y < dims[1] - 2 {
            seq[i] = 100.0 + (3 * x + y) as f32;
            if x < 6 && y < 5 {
                lab[i] = if x < 4 { 4.0 } else { 2.0 };
            }
        }
    }
    let s = [
        seq.clone(),
        seq.iter().map(|v| v * 2.0).collect(),
        seq.clone(),
        seq,
    ];
    (s, lab)
}

/// Write `vals` (LPS order) reordered for storage with voxel axes `(a0, a1, a2)` given as
/// closures from a stored index to the LPS index.
fn write_oriented(
    dir: &Path,
    id: &str,
    dims_lps: [usize; 3],
    stored_dims: [usize; 3],
    to_lps: impl Fn([usize; 3]) -> [usize; 3],
    cols: [[f32; 3]; 3],
    (seqs, labels): &([Vec<f32>; 4], Vec<f32>),
) -> PathBuf {
    let case = dir.join(id);
    std::fs::create_dir_all(&case).unwrap();
    let reorder = |v: &[f32]| -> Vec<f32> {
        let mut out = Vec::with_capacity(v.len());
        for z in 0..stored_dims[2] {
            for y in 0..stored_dims[1] {
                for x in 0..stored_dims[0] {
                    let [a, b, c] = to_lps([x, y, z]);
                    out.push(v[a + dims_lps[0] * (b + dims_lps[1] * c)]);
                }
            }
        }
        out
    };
    let sd = stored_dims.map(|v| v as u16);
    for (i, s) in NAMES_2020.iter().enumerate() {
        let vals = if i < 4 { &seqs[i][..] } else { labels };
        let b = with_sform(nifti_f32(sd, &reorder(vals)), cols, [0.0; 3]);
        std::fs::write(case.join(format!("{id}{s}.nii.gz")), gzip(&b)).unwrap();
    }
    case
}

#[test]
fn same_anatomy_in_two_orientations_gives_the_same_case_and_slices() {
    let t = TempDir::new("orient");
    let dims = [20usize, 14, 6];
    let data = asymmetric(dims);
    let seqs = &data.0;
    let lps = write_oriented(
        t.path().join("lps").as_path(),
        "C",
        dims,
        dims,
        |p| p,
        LPS,
        &data,
    );
    let ras = write_oriented(
        t.path().join("ras").as_path(),
        "C",
        dims,
        dims,
        |[x, y, z]| [dims[0] - 1 - x, dims[1] - 1 - y, z],
        RAS,
        &data,
    );
    // Stored with axes (S, L, P): a permutation as well.
    let slp = write_oriented(
        t.path().join("slp").as_path(),
        "C",
        dims,
        [dims[2], dims[0], dims[1]],
        |[a, b, c]| [b, c, a],
        [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]],
        &data,
    );
    let a = read_case(&lps).unwrap();
    assert_eq!(a.sequences[0], seqs[0], "LPS is BraTS: read as stored");
    let cfg = SliceConfig {
        min_coverage: 0.1,
        ..SliceConfig::default()
    };
    let sa = slices_from_case(&a, &cfg).unwrap();
    assert!(!sa.is_empty());
    for other in [&ras, &slp] {
        let b = read_case(other).unwrap();
        assert_eq!(b.dims, a.dims);
        assert_eq!(b.sequences, a.sequences);
        assert_eq!(b.labels, a.labels);
        assert_eq!(slices_from_case(&b, &cfg).unwrap(), sa);
    }
    // Read as stored (orientation codes cleared), the RAS file is the mirror image: the
    // comparison above can tell the two apart.
    let reoriented = read_volume(ras.join("C_t1.nii.gz")).unwrap();
    assert_eq!(reoriented.data, seqs[0]);
    let mut bytes = Vec::new();
    let gz = std::fs::read(ras.join("C_t1.nii.gz")).unwrap();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut bytes).unwrap();
    bytes[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code 0: no orientation
    let as_stored = read_volume_bytes(&bytes, Path::new("y.nii")).unwrap();
    assert_ne!(as_stored.data, seqs[0]);
}

#[test]
fn qform_orientation_and_oblique_affines() {
    let dims = [6u16, 5, 3];
    let vals: Vec<f32> = (0..90).map(|v| v as f32).collect();
    // qform with the identity quaternion and qfac 1 is RAS: x and y are reversed on reading.
    let mut b = nifti_f32(dims, &vals);
    b[252..254].copy_from_slice(&1i16.to_le_bytes()); // qform_code
    let v = read_volume_bytes(&b, Path::new("q.nii")).unwrap();
    assert_eq!(v.at(0, 0, 0), vals[5 + 6 * 4]);
    assert_eq!(v.at(5, 4, 2), vals[6 * 5 * 2]);
    // An sform rotated by 10° in-plane is oblique: refused with a sentence.
    let (c, s) = (10f32.to_radians().cos(), 10f32.to_radians().sin());
    let b = with_sform(
        nifti_f32(dims, &vals),
        [[-c, -s, 0.0], [s, -c, 0.0], [0.0, 0.0, 1.0]],
        [0.0; 3],
    );
    let e = read_volume_bytes(&b, Path::new("o.nii"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("o.nii") && e.contains("oblique") && e.contains("10.0°"),
        "{e}"
    );
}

#[test]
fn a_case_is_one_subject_and_one_naming() {
    let t = TempDir::new("subject");
    let dims = [16u16, 16, 4];
    let (seqs, labels) = small_case_data(dims);
    let d = write_case(
        t.path(),
        "BraTS20_Training_001",
        NAMES_2020,
        ".nii",
        dims,
        &seqs,
        &labels,
    );
    std::fs::rename(
        d.join("BraTS20_Training_001_seg.nii"),
        d.join("OTHER_999_seg.nii"),
    )
    .unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("OTHER_999_seg.nii") && e.contains("BraTS20_Training_001_t1.nii"),
        "{e}"
    );
    // Two naming sets in one folder.
    let d = write_case(t.path(), "Mixed", NAMES_2020, ".nii", dims, &seqs, &labels);
    write_case(t.path(), "Mixed", NAMES_2023, ".nii", dims, &seqs, &labels);
    let e = err_of(&d);
    assert!(
        e.contains("two naming sets") && e.contains("Mixed_t1.nii") && e.contains("Mixed-t1n.nii"),
        "{e}"
    );
    // BraTS 2020 case 355's differently named segmentation is accepted by its exact name only.
    let id = "BraTS20_Training_355";
    let d = write_case(t.path(), id, NAMES_2020, ".nii", dims, &seqs, &labels);
    std::fs::rename(
        d.join(format!("{id}_seg.nii")),
        d.join("W39_1998.09.19_Segm.nii"),
    )
    .unwrap();
    let c = read_case(&d).unwrap();
    assert!(c.files[4].ends_with("W39_1998.09.19_Segm.nii"));
    assert!(c.labels.contains(&4));
    let other = "BraTS20_Training_356";
    let d = write_case(t.path(), other, NAMES_2020, ".nii", dims, &seqs, &labels);
    std::fs::rename(
        d.join(format!("{other}_seg.nii")),
        d.join("W39_1998.09.19_Segm.nii"),
    )
    .unwrap();
    let e = err_of(&d);
    assert!(e.contains("missing segmentation"), "{e}");
}

/// The NIfTI-2 form of a little-endian f32 volume (540-byte header, data at 544).
fn nifti2_f32(dims: [i64; 3], vals: &[f32]) -> Vec<u8> {
    let mut b = vec![0u8; 544];
    b[0..4].copy_from_slice(&540i32.to_le_bytes());
    b[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
    b[12..14].copy_from_slice(&16i16.to_le_bytes());
    b[14..16].copy_from_slice(&32i16.to_le_bytes());
    let dim = [3, dims[0], dims[1], dims[2], 1, 1, 1, 1];
    for (i, d) in dim.iter().enumerate() {
        b[16 + 8 * i..24 + 8 * i].copy_from_slice(&d.to_le_bytes());
    }
    for i in 0..8 {
        b[104 + 8 * i..112 + 8 * i].copy_from_slice(&1f64.to_le_bytes());
    }
    b[168..176].copy_from_slice(&544i64.to_le_bytes());
    b[176..184].copy_from_slice(&1f64.to_le_bytes());
    for v in vals {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

#[test]
fn nifti2_pairs_and_upper_case_extensions_are_read() {
    let t = TempDir::new("storage");
    let dims = [16u16, 16, 4];
    let (seqs, labels) = small_case_data(dims);
    let reference = read_case(write_case(
        t.path(),
        "Ref",
        NAMES_2020,
        ".nii",
        dims,
        &seqs,
        &labels,
    ))
    .unwrap();
    // Upper-case extension.
    let d = write_case(
        t.path(),
        "Upper",
        NAMES_2020,
        ".NII.GZ",
        dims,
        &seqs,
        &labels,
    );
    for s in NAMES_2020 {
        // write_case gzips only for ".nii.gz": do it here.
        let p = d.join(format!("Upper{s}.NII.GZ"));
        let raw = std::fs::read(&p).unwrap();
        std::fs::write(&p, gzip(&raw)).unwrap();
    }
    let c = read_case(&d).unwrap();
    assert_eq!(
        (c.sequences.clone(), c.labels.clone()),
        (reference.sequences.clone(), reference.labels.clone())
    );
    // NIfTI-2.
    let d = t.path().join("Two");
    std::fs::create_dir_all(&d).unwrap();
    for (i, s) in NAMES_2020.iter().enumerate() {
        let v = if i < 4 { &seqs[i][..] } else { &labels[..] };
        std::fs::write(d.join(format!("Two{s}.nii")), nifti2_f32([16, 16, 4], v)).unwrap();
    }
    let c = read_case(&d).unwrap();
    assert_eq!(c.sequences, reference.sequences);
    assert_eq!(c.labels, reference.labels);
    // .hdr/.img pairs (NIfTI-1 magic "ni1", voxels at offset 0 of the .img).
    let d = t.path().join("Pair");
    std::fs::create_dir_all(&d).unwrap();
    for (i, s) in NAMES_2020.iter().enumerate() {
        let v = if i < 4 { &seqs[i][..] } else { &labels[..] };
        let mut b = nifti_f32(dims, v);
        b[344..348].copy_from_slice(b"ni1\0");
        b[108..112].copy_from_slice(&0f32.to_le_bytes());
        std::fs::write(d.join(format!("Pair{s}.hdr")), &b[..348]).unwrap();
        std::fs::write(d.join(format!("Pair{s}.img")), &b[352..]).unwrap();
    }
    let c = read_case(&d).unwrap();
    assert_eq!(c.sequences, reference.sequences);
    assert_eq!(c.labels, reference.labels);
    std::fs::remove_file(d.join("Pair_t2.img")).unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("Pair_t2.hdr") && e.contains("Pair_t2.img"),
        "{e}"
    );
}

#[test]
fn broken_files_say_what_is_wrong() {
    let t = TempDir::new("broken");
    // Negative dimension.
    let mut b = nifti_f32([4, 4, 2], &[0.0; 32]);
    b[44..46].copy_from_slice(&(-4i16).to_le_bytes());
    let e = read_volume_bytes(&b, Path::new("n.nii"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("negative") && e.contains("-4"), "{e}");
    // A .gz that is not gzip.
    let p = t.path().join("plain_t1.nii.gz");
    std::fs::write(&p, nifti_f32([1, 1, 1], &[1.0])).unwrap();
    let e = read_volume(&p).unwrap_err().to_string();
    assert!(
        e.contains("plain_t1.nii.gz") && e.contains("not gzip"),
        "{e}"
    );
    // Analyze 7.5 (no NIfTI magic) and a NIfTI-2 header cut short.
    let mut b = nifti_f32([1, 1, 1], &[1.0]);
    b[344..348].copy_from_slice(&[0; 4]);
    let e = read_volume_bytes(&b, Path::new("a.hdr"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("Analyze"), "{e}");
    let b = nifti2_f32([1, 1, 1], &[1.0]);
    let e = read_volume_bytes(&b[..300], Path::new("two.nii"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NIfTI-2") && e.contains("truncated"), "{e}");
    // Headers are read without the voxels: info of a valid file.
    let p = t.path().join("ok.nii");
    std::fs::write(&p, nifti_f32([3, 2, 1], &[0.0; 6])).unwrap();
    let i = read_info(&p, &ReadLimits::default()).unwrap();
    assert_eq!((i.dims, i.voxels()), ([3, 2, 1], 6));
}
