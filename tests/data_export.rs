//! `export`: every format read back (NIfTI through the project's own reader, PNG through the png
//! crate), nnU-Net's layout and dataset.json checked, and failures leave no folder.

mod common;

use std::path::Path;
use std::process::Command;

use brainsynth::data::annotation::encode_label;
use brainsynth::data::export::{ExportFormat, export_store};
use brainsynth::data::nifti_case::{read_case, read_volume};
use brainsynth::data::slices::{ANNOTATION, Slice};
use brainsynth::data::store::{SliceStore, write_store};
use brainsynth::io::json::{Json, parse};
use common::TempDir;

/// Three 6×5 slices with distinct values and all four labels; two share a subject and index.
fn store(dir: &Path) -> (std::path::PathBuf, Vec<Slice>) {
    let (h, w) = (5, 6);
    let mut slices = Vec::new();
    for (k, (subj, idx)) in [("Synth A", 3u32), ("Synth A", 3), ("B", 40)]
        .iter()
        .enumerate()
    {
        let mut s = Slice::zeros(*subj, *idx, h, w);
        for c in 0..4 {
            for (p, v) in s.channel_mut(c).iter_mut().enumerate() {
                *v = ((p * 7 + c * 50 + k * 13) % 256) as u8;
            }
        }
        for (p, v) in s.channel_mut(ANNOTATION).iter_mut().enumerate() {
            *v = encode_label([0, 1, 2, 4][(p + k) % 4]);
        }
        s.channel_mut(0)[0] = 255;
        slices.push(s);
    }
    let path = dir.join("s.store");
    write_store(
        &path,
        &SliceStore {
            h,
            w,
            slices: slices.clone(),
        },
    )
    .unwrap();
    (path, slices)
}

fn as_f32(v: &[u8]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn nnunet_layout_reads_back() {
    let t = TempDir::new("export-nnunet");
    let (st, slices) = store(t.path());
    let out = t.path().join("Dataset500_Synth");
    let sum = export_store(&st, &out, ExportFormat::NnUnet).unwrap();
    assert_eq!((sum.cases, sum.files), (3, 16));
    let names = ["Synth_A_z003", "Synth_A_z003_2", "B_z040"];
    let mut listed: Vec<String> = std::fs::read_dir(out.join("imagesTr"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut want: Vec<String> = names
        .iter()
        .flat_map(|n| (0..4).map(move |c| format!("{n}_{c:04}.nii.gz")))
        .collect();
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(std::fs::read_dir(out.join("labelsTr")).unwrap().count(), 3);
    for (s, n) in slices.iter().zip(names) {
        for c in 0..4 {
            let v = read_volume(out.join(format!("imagesTr/{n}_{c:04}.nii.gz"))).unwrap();
            assert_eq!(v.dims, [6, 5, 1]);
            assert_eq!(v.data, as_f32(s.channel(c)), "{n} channel {c}");
        }
        let l = read_volume(out.join(format!("labelsTr/{n}.nii.gz"))).unwrap();
        let want: Vec<f32> = s
            .labels()
            .iter()
            .map(|&l| if l == 4 { 3.0 } else { l as f32 })
            .collect();
        assert_eq!(l.data, want);
    }
    let text = std::fs::read_to_string(out.join("dataset.json")).unwrap();
    let j = parse(&text).unwrap();
    let Json::Object(fields) = &j else {
        panic!("{text}")
    };
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("numTraining").and_then(|v| v.as_u64()), Some(3));
    assert_eq!(get("file_ending"), Some(Json::str(".nii.gz")));
    let Some(Json::Object(ch)) = get("channel_names") else {
        panic!("{text}")
    };
    let ch: Vec<(String, Json)> = ch.clone();
    assert_eq!(
        ch,
        vec![
            ("0".to_string(), Json::str("T1")),
            ("1".to_string(), Json::str("T1ce")),
            ("2".to_string(), Json::str("T2")),
            ("3".to_string(), Json::str("FLAIR")),
        ]
    );
    let Some(Json::Object(labels)) = get("labels") else {
        panic!("{text}")
    };
    let values: Vec<u64> = labels.iter().filter_map(|(_, v)| v.as_u64()).collect();
    assert_eq!(values, vec![0, 1, 2, 3], "consecutive, as nnU-Net requires");
}

#[test]
fn nifti_slices_are_brats_cases_and_png_reads_back() {
    let t = TempDir::new("export-nifti");
    let (st, slices) = store(t.path());
    let out = t.path().join("nifti");
    export_store(&st, &out, ExportFormat::Nifti).unwrap();
    // Each slice is a BraTS case folder the project's own case reader accepts.
    let c = read_case(out.join("B_z040")).unwrap();
    assert_eq!(c.dims, [6, 5, 1]);
    assert_eq!(c.sequences[2], as_f32(slices[2].channel(2)));
    assert_eq!(c.labels, slices[2].labels());

    let out = t.path().join("png");
    let sum = export_store(&st, &out, ExportFormat::Png).unwrap();
    assert_eq!(sum.files, 15);
    let read_png = |p: &Path| {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, info.bit_depth, buf)
    };
    let (w, h, depth, buf) = read_png(&out.join("Synth_A_z003_2_0001.png"));
    assert_eq!((w, h, depth), (6, 5, png::BitDepth::Sixteen));
    let vals: Vec<u16> = buf
        .chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect();
    let want: Vec<u16> = slices[1]
        .channel(1)
        .iter()
        .map(|&v| v as u16 * 257)
        .collect();
    assert_eq!(vals, want);
    let (_, _, depth, labs) = read_png(&out.join("Synth_A_z003_2_seg.png"));
    assert_eq!(depth, png::BitDepth::Eight);
    assert_eq!(labs, slices[1].labels());
}

#[test]
fn failed_exports_leave_no_folder_and_overwrite_nothing() {
    let t = TempDir::new("export-fail");
    let (st, _) = store(t.path());
    // A damaged record (the last slice's pixels): found after two cases were written.
    let mut bytes = std::fs::read(&st).unwrap();
    let rec = 8 + 5 * 6 * 5 + 4;
    bytes[48 + 2 * rec + 20] ^= 0xFF;
    let bad = t.path().join("bad.store");
    std::fs::write(&bad, &bytes).unwrap();
    let out = t.path().join("out");
    let e = export_store(&bad, &out, ExportFormat::NnUnet)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.store"), "{e}");
    let mut left: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["bad.store", "s.store"], "no half-written folder");
    // A folder that holds something is never written into.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("mine.txt"), b"keep").unwrap();
    let e = export_store(&st, &out, ExportFormat::Png)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an empty folder"), "{e}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    // An empty folder is fine.
    std::fs::remove_file(out.join("mine.txt")).unwrap();
    export_store(&st, &out, ExportFormat::Png).unwrap();
    // Through the program: a bad format is a usage error.
    let o = Command::new(env!("CARGO_BIN_EXE_brainsynth"))
        .args([
            "export",
            "--store",
            st.to_str().unwrap(),
            "--out",
            "x",
            "--format",
            "jpeg",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
