//! Case reader: phantom files re-read, both namings, .nii and .nii.gz, and every bad input.

mod common;

use brainsynth::data::nifti_case::{Naming, read_case, read_volume, read_volume_bytes};
use brainsynth::data::phantom::{PhantomConfig, phantom_case, write_phantom_cases};
use brainsynth::data::slices::{SliceConfig, slices_from_case};
use common::*;
use std::path::Path;

fn small_phantom(subjects: usize) -> PhantomConfig {
    PhantomConfig {
        dims: [40, 40, 26],
        subjects,
        seed: 5,
        ..Default::default()
    }
}

fn err_of(dir: &Path) -> String {
    read_case(dir).unwrap_err().to_string()
}

#[test]
fn phantom_files_reread_through_case_reader() {
    let t = TempDir::new("phantom-reread");
    let cfg = small_phantom(2);
    let dirs = write_phantom_cases(t.path(), &cfg).unwrap();
    assert_eq!(dirs.len(), 2);
    for (i, d) in dirs.iter().enumerate() {
        let case = read_case(d).unwrap();
        let mem = phantom_case(&cfg, i).unwrap();
        assert_eq!(case.id, cfg.subject_id(i));
        assert_eq!(case.dims, [40, 40, 26]);
        assert_eq!(case.naming, Naming::Brats2020);
        assert_eq!(case.sequences, mem.sequences);
        assert_eq!(case.labels, mem.labels);
        assert!(case.labels.iter().all(|l| [0, 1, 2, 4].contains(l)));
        assert!(case.labels.contains(&2), "oedema present");
        assert!(case.files[0].to_string_lossy().ends_with("_t1.nii.gz"));
    }
}

#[test]
fn phantom_is_deterministic_on_disk() {
    let a = TempDir::new("phantom-det-a");
    let b = TempDir::new("phantom-det-b");
    let cfg = small_phantom(1);
    let da = write_phantom_cases(a.path(), &cfg).unwrap();
    let db = write_phantom_cases(b.path(), &cfg).unwrap();
    let name = "Phantom_001_flair.nii.gz";
    assert_eq!(
        std::fs::read(da[0].join(name)).unwrap(),
        std::fs::read(db[0].join(name)).unwrap()
    );
    let other = PhantomConfig { seed: 6, ..cfg };
    assert_ne!(
        phantom_case(&other, 0).unwrap().labels,
        phantom_case(&small_phantom(1), 0).unwrap().labels
    );
}

#[test]
fn phantom_slices_pass_coverage_and_hold_tumour() {
    let cfg = PhantomConfig {
        dims: [60, 60, 40],
        subjects: 3,
        seed: 1,
        ..Default::default()
    };
    let sc = SliceConfig {
        out_size: Some(32),
        ..Default::default()
    };
    for i in 0..3 {
        let case = phantom_case(&cfg, i).unwrap();
        let slices = slices_from_case(&case, &sc).unwrap();
        assert!(
            slices.len() >= 12,
            "subject {i}: only {} slices kept",
            slices.len()
        );
        assert!(slices.iter().all(|s| s.h == 32 && s.w == 32));
        let with_tumour = slices.iter().filter(|s| s.tumour_pixels() > 0).count();
        assert!(with_tumour >= 3, "subject {i}: {with_tumour} tumour slices");
    }
}

/// Test helper: rewrite a 2020-named case in 2023 naming (enhancing 4 → 3), uncompressed f32.
fn rewrite_as_2023(src: &Path, dst_root: &Path) -> std::path::PathBuf {
    let case = read_case(src).unwrap();
    let labels: Vec<f32> = case
        .labels
        .iter()
        .map(|&l| if l == 4 { 3.0 } else { l as f32 })
        .collect();
    let d = case.dims.map(|v| v as u16);
    write_case(
        dst_root,
        &case.id,
        NAMES_2023,
        ".nii",
        d,
        &case.sequences,
        &labels,
    )
}

#[test]
fn naming_2023_maps_enhancing_to_4() {
    let t = TempDir::new("n2023");
    let cfg = small_phantom(1);
    let dirs = write_phantom_cases(t.path().join("2020"), &cfg).unwrap();
    let dir23 = rewrite_as_2023(&dirs[0], &t.path().join("2023"));
    let a = read_case(&dirs[0]).unwrap();
    let b = read_case(&dir23).unwrap();
    assert_eq!(b.naming, Naming::Brats2023);
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.sequences, b.sequences);
    // The phantom can also write 2023 naming itself.
    let cfg23 = PhantomConfig {
        naming: Naming::Brats2023,
        ..small_phantom(1)
    };
    let d = write_phantom_cases(t.path().join("p2023"), &cfg23).unwrap();
    assert!(d[0].join("Phantom_001-t2f.nii.gz").exists());
    assert_eq!(read_case(&d[0]).unwrap().labels, a.labels);
}

#[test]
fn uncompressed_and_scaled_int16() {
    let t = TempDir::new("int16");
    let dims = [4u16, 4, 2];
    let raw: Vec<u8> = (0..32i16).flat_map(|v| v.to_le_bytes()).collect();
    let p = t.path().join("v.nii");
    std::fs::write(&p, nifti_bytes(dims, 4, 16, &raw, 0.5, 10.0)).unwrap();
    let v = read_volume(&p).unwrap();
    assert_eq!(v.data[3], 11.5);
    assert_eq!(v.at(1, 1, 1), 10.0 + 0.5 * 21.0);
    // Same bytes gzipped, with a misleading extension: gzip is found by its magic.
    let gz = gzip(&nifti_bytes(dims, 4, 16, &raw, 0.5, 10.0));
    assert_eq!(read_volume_bytes(&gz, Path::new("v.nii")).unwrap(), v);
}

#[test]
fn all_stored_datatypes_are_read() {
    let dims = [2u16, 1, 1];
    let cases: Vec<(i16, i16, Vec<u8>)> = vec![
        (2, 8, vec![7, 9]),
        (256, 8, vec![7, 9]),
        (
            512,
            16,
            [7u16, 9].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        (
            8,
            32,
            [7i32, 9].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        (
            768,
            32,
            [7u32, 9].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        (
            1024,
            64,
            [7i64, 9].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        (
            1280,
            64,
            [7u64, 9].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        (
            64,
            64,
            [7f64, 9.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    ];
    for (dt, bp, raw) in cases {
        let b = nifti_bytes(dims, dt, bp, &raw, 0.0, 0.0); // slope 0 = no scaling
        let v = read_volume_bytes(&b, Path::new("x.nii"))
            .unwrap_or_else(|e| panic!("datatype {dt}: {e}"));
        assert_eq!(v.data, vec![7.0, 9.0], "datatype {dt}");
    }
}

fn good_case(root: &Path, id: &str, ext: &str) -> std::path::PathBuf {
    let dims = [16u16, 16, 4];
    let (seqs, labels) = small_case_data(dims);
    write_case(root, id, NAMES_2020, ext, dims, &seqs, &labels)
}

#[test]
fn good_hand_made_cases_read_in_both_extensions() {
    let t = TempDir::new("good");
    for ext in [".nii", ".nii.gz"] {
        let d = good_case(t.path(), &format!("C{}", ext.len()), ext);
        let c = read_case(&d).unwrap();
        assert_eq!(c.dims, [16, 16, 4]);
        assert!(c.labels.contains(&4));
    }
}

#[test]
fn missing_sequence_names_the_file() {
    let t = TempDir::new("missing");
    let d = good_case(t.path(), "Case_1", ".nii.gz");
    std::fs::remove_file(d.join("Case_1_t1ce.nii.gz")).unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("Case_1_t1ce.nii.gz") && e.contains("missing"),
        "{e}"
    );
    std::fs::remove_file(d.join("Case_1_seg.nii.gz")).unwrap();
    std::fs::write(
        d.join("Case_1_t1ce.nii.gz"),
        gzip(&nifti_f32([1, 1, 1], &[0.0])),
    )
    .unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("Case_1_seg.nii.gz") && e.contains("segmentation"),
        "{e}"
    );
}

#[test]
fn different_shapes_name_the_file() {
    let t = TempDir::new("shapes");
    let d = good_case(t.path(), "Case_2", ".nii");
    std::fs::write(
        d.join("Case_2_t2.nii"),
        nifti_f32([8, 8, 4], &vec![1.0; 256]),
    )
    .unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("Case_2_t2.nii") && e.contains("different shapes"),
        "{e}"
    );
}

#[test]
fn unsupported_datatype_names_the_file() {
    let t = TempDir::new("dtype");
    let d = good_case(t.path(), "Case_3", ".nii");
    // complex64 (code 32, 64 bits per voxel)
    let b = nifti_bytes([16, 16, 4], 32, 64, &vec![0u8; 16 * 16 * 4 * 8], 1.0, 0.0);
    std::fs::write(d.join("Case_3_flair.nii"), b).unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("Case_3_flair.nii") && e.contains("unsupported datatype"),
        "{e}"
    );
    // An unknown code.
    let b = nifti_bytes([16, 16, 4], 77, 8, &vec![0u8; 1024], 1.0, 0.0);
    std::fs::write(d.join("Case_3_flair.nii"), b).unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("Case_3_flair.nii") && e.contains("datatype"),
        "{e}"
    );
}

#[test]
fn truncated_and_corrupt_gzip_name_the_file() {
    let t = TempDir::new("gz");
    let d = good_case(t.path(), "Case_4", ".nii.gz");
    let f = d.join("Case_4_t1.nii.gz");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("Case_4_t1.nii.gz") && e.contains("truncated"),
        "{e}"
    );
    // Damage inside the deflate stream (past the 10-byte gzip header).
    let mut bad = bytes.clone();
    for b in bad[12..bytes.len() - 8].iter_mut().step_by(7) {
        *b ^= 0x5A;
    }
    std::fs::write(&f, &bad).unwrap();
    let e = err_of(&d);
    assert!(e.contains("Case_4_t1.nii.gz"), "{e}");
    // Only the CRC trailer damaged.
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 6] ^= 0xFF;
    std::fs::write(&f, &bad).unwrap();
    let e = err_of(&d);
    assert!(
        e.contains("Case_4_t1.nii.gz") && e.contains("corrupt"),
        "{e}"
    );
}

#[test]
fn nan_and_inf_voxels_name_the_file() {
    let t = TempDir::new("nan");
    let d = good_case(t.path(), "Case_5", ".nii");
    let (mut seqs, _) = small_case_data([16, 16, 4]);
    seqs[1][37] = f32::NAN;
    std::fs::write(d.join("Case_5_t1ce.nii"), nifti_f32([16, 16, 4], &seqs[1])).unwrap();
    let e = err_of(&d);
    assert!(e.contains("Case_5_t1ce.nii") && e.contains("NaN"), "{e}");
    seqs[1][37] = f32::INFINITY;
    std::fs::write(d.join("Case_5_t1ce.nii"), nifti_f32([16, 16, 4], &seqs[1])).unwrap();
    let e = err_of(&d);
    assert!(e.contains("Case_5_t1ce.nii") && e.contains("inf"), "{e}");
}

#[test]
fn unknown_labels_name_the_file() {
    let t = TempDir::new("labels");
    let dims = [16u16, 16, 4];
    let (seqs, mut labels) = small_case_data(dims);
    labels[5] = 3.0; // not a 2020 label
    let d = write_case(t.path(), "Case_6", NAMES_2020, ".nii", dims, &seqs, &labels);
    let e = err_of(&d);
    assert!(
        e.contains("Case_6_seg.nii") && e.contains("unknown label value 3"),
        "{e}"
    );
    labels[5] = 1.5;
    let d = write_case(t.path(), "Case_7", NAMES_2020, ".nii", dims, &seqs, &labels);
    assert!(err_of(&d).contains("Case_7_seg.nii"));
    labels[5] = 4.0; // not a 2023 label
    let d = write_case(t.path(), "Case_8", NAMES_2023, ".nii", dims, &seqs, &labels);
    let e = err_of(&d);
    assert!(
        e.contains("Case_8-seg.nii") && e.contains("unknown label value 4"),
        "{e}"
    );
}

#[test]
fn empty_folder_is_named() {
    let t = TempDir::new("empty");
    let d = t.path().join("Case_9");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("notes.txt"), "x").unwrap();
    let e = err_of(&d);
    assert!(e.contains("Case_9") && e.contains("no NIfTI files"), "{e}");
}

#[test]
fn hostile_headers_are_errors() {
    // Huge dimensions in a tiny file, in plain and gzip form.
    let b = nifti_bytes([32767, 32767, 32767], 16, 32, &[], 1.0, 0.0);
    assert!(
        read_volume_bytes(&b, Path::new("h.nii"))
            .unwrap_err()
            .to_string()
            .contains("h.nii")
    );
    let b = nifti_bytes([4000, 4000, 10], 16, 32, &[], 1.0, 0.0);
    assert!(read_volume_bytes(&gzip(&b), Path::new("h.nii.gz")).is_err());
    // Short, empty, garbage.
    for bytes in [&b[..100], &[][..], &[0x1f, 0x8b][..], &[0xff; 400][..]] {
        assert!(read_volume_bytes(bytes, Path::new("g.nii")).is_err());
    }
    // Bad vox_offset and NaN slope.
    let mut b = nifti_f32([1, 1, 1], &[1.0]);
    b[108..112].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(read_volume_bytes(&b, Path::new("o.nii")).is_err());
    let mut b = nifti_f32([1, 1, 1], &[1.0]);
    b[112..116].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(read_volume_bytes(&b, Path::new("s.nii")).is_err());
    // 4-D with one frame is accepted; with two it is not.
    let mut b = nifti_f32([1, 1, 1], &[1.0, 2.0]);
    b[40..42].copy_from_slice(&4i16.to_le_bytes());
    b[48..50].copy_from_slice(&2i16.to_le_bytes());
    assert!(
        read_volume_bytes(&b, Path::new("t.nii"))
            .unwrap_err()
            .to_string()
            .contains("3-D")
    );
    b[48..50].copy_from_slice(&1i16.to_le_bytes());
    assert_eq!(
        read_volume_bytes(&b, Path::new("t.nii")).unwrap().data,
        vec![1.0]
    );
}
