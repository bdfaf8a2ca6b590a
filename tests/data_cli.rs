//! The `brainsynth` program end to end on a small phantom.

mod common;

use brainsynth::data::split::Split;
use brainsynth::data::store::read_store;
use common::TempDir;
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brainsynth"))
        .args(args)
        .output()
        .expect("run brainsynth")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_for_program_and_every_subcommand() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for c in ["phantom", "prepare", "show", "split"] {
        assert!(text.contains(c), "{text}");
        let o = run(&[c, "--help"]);
        assert!(o.status.success());
        let h = String::from_utf8_lossy(&o.stdout);
        assert!(
            h.contains("Usage: brainsynth") && h.contains("Options:") && h.contains("default"),
            "{h}"
        );
    }
}

#[test]
fn usage_errors_exit_2_without_panics() {
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["phantom"][..],
        &["phantom", "--out", "x", "--bogus"][..],
        &["phantom", "--out", "x", "--subjects", "many"][..],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(!e.contains("panicked"), "{e}");
        if !args.is_empty() {
            assert!(e.starts_with("error: "), "{e}");
        }
    }
    let o = run(&[
        "show",
        "--store",
        "/nonexistent/brainsynth.store",
        "--out",
        "x.png",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("error: ") && stderr(&o).contains("brainsynth.store"));
}

#[test]
fn phantom_prepare_show_split() {
    let t = TempDir::new("cli");
    let cases = t.path().join("cases");
    let o = run(&[
        "phantom",
        "--out",
        s(&cases),
        "--subjects",
        "3",
        "--dims",
        "48x48x30",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(cases.join("Phantom_002/Phantom_002_flair.nii.gz").exists());

    let store = t.path().join("s.store");
    let o = run(&[
        "prepare",
        "--cases",
        s(&cases),
        "--out",
        s(&store),
        "--size",
        "32",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("[1/3] Phantom_001") && e.contains("slices kept"),
        "{e}"
    );
    let st = read_store(&store).unwrap();
    assert_eq!((st.h, st.w), (32, 32));
    assert_eq!(st.subjects().len(), 3);
    assert!(st.len() >= 20, "{} slices", st.len());

    let png = t.path().join("m.png");
    let o = run(&[
        "show",
        "--store",
        s(&store),
        "--out",
        s(&png),
        "--count",
        "4",
        "--subject",
        "Phantom_003",
        "--tumour-only",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    let o = run(&[
        "show",
        "--store",
        s(&store),
        "--out",
        s(&png),
        "--subject",
        "nobody",
    ]);
    assert_eq!(o.status.code(), Some(1));

    let o = run(&["split", "--store", s(&store), "--test", "1", "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = Split::from_text(&String::from_utf8_lossy(&o.stdout), Path::new("-")).unwrap();
    assert_eq!((printed.train.len(), printed.test.len()), (2, 1));
    let out = t.path().join("split.txt");
    let o = run(&[
        "split",
        "--cases",
        s(&cases),
        "--test",
        "1",
        "--seed",
        "3",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(Split::read(&out).unwrap(), printed);
}

#[test]
fn prepare_stops_on_bad_case_or_skips_it() {
    let t = TempDir::new("cli-bad");
    let cases = t.path().join("cases");
    let o = run(&[
        "phantom",
        "--out",
        s(&cases),
        "--subjects",
        "2",
        "--dims",
        "32x32x20",
    ]);
    assert!(o.status.success());
    // A third case with a damaged FLAIR file.
    let bad = cases.join("Phantom_000");
    std::fs::create_dir_all(&bad).unwrap();
    for suffix in ["t1", "t1ce", "t2", "flair", "seg"] {
        let src = cases.join(format!("Phantom_001/Phantom_001_{suffix}.nii.gz"));
        std::fs::copy(src, bad.join(format!("Phantom_000_{suffix}.nii.gz"))).unwrap();
    }
    let flair = bad.join("Phantom_000_flair.nii.gz");
    let bytes = std::fs::read(&flair).unwrap();
    std::fs::write(&flair, &bytes[..bytes.len() / 3]).unwrap();

    let store = t.path().join("s.store");
    let o = run(&["prepare", "--cases", s(&cases), "--out", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("error: ") && e.contains("Phantom_000_flair.nii.gz"),
        "{e}"
    );
    assert!(!store.exists());
    assert_eq!(
        std::fs::read_dir(t.path()).unwrap().count(),
        1,
        "no temporary file left"
    );

    let o = run(&[
        "prepare",
        "--cases",
        s(&cases),
        "--out",
        s(&store),
        "--skip-bad",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("skipped 1 bad case") && e.contains("Phantom_000"),
        "{e}"
    );
    assert_eq!(
        read_store(&store).unwrap().subjects(),
        vec!["Phantom_001", "Phantom_002"]
    );
}

#[test]
fn interrupted_prepare_leaves_nothing_and_stale_temporaries_go() {
    use std::io::BufRead;
    let t = TempDir::new("cli-int");
    let cases = t.path().join("cases");
    let o = run(&[
        "phantom",
        "--out",
        s(&cases),
        "--subjects",
        "12",
        "--dims",
        "64x64x40",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let store = out.join("s.store");
    let mut child = Command::new(env!("CARGO_BIN_EXE_brainsynth"))
        .args(["prepare", "--cases", s(&cases), "--out", s(&store)])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once the first case is in the store's temporary file.
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("[1/12]"), "{first}");
    let k = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "no file left");

    // A temporary left by a killed process (whose id no longer exists) goes on the next run.
    let stale = out.join(".s.store.tmp-99999999-0");
    std::fs::write(&stale, b"half a store").unwrap();
    let o = run(&["prepare", "--cases", s(&cases), "--out", s(&store)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(store.exists());
    if Path::new("/proc/self").exists() {
        assert!(!stale.exists());
    }
}

#[test]
fn split_paper_checks_the_subjects() {
    let t = TempDir::new("cli-paper");
    let cases = t.path().join("cases");
    for i in 1..=369 {
        std::fs::create_dir_all(cases.join(format!("BraTS20_Training_{i:03}"))).unwrap();
    }
    let o = run(&["split", "--cases", s(&cases), "--split", "paper"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = Split::from_text(&String::from_utf8_lossy(&o.stdout), Path::new("-")).unwrap();
    assert_eq!((printed.train.len(), printed.test.len()), (313, 56));
    std::fs::remove_dir(cases.join("BraTS20_Training_042")).unwrap();
    let o = run(&["split", "--cases", s(&cases), "--split", "paper"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("missing subjects BraTS20_Training_042"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "split",
        "--cases",
        s(&cases),
        "--split",
        "paper",
        "--seed",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
