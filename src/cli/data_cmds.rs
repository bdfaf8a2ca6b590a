//! Data subcommands: `phantom`, `prepare`, `show`, `split`.

use std::path::{Path, PathBuf};

use crate::cli::{Args, CliError, Command, usage};
use crate::data::nifti_case::{Naming, ReadLimits, list_case_dirs, read_case_with};
use crate::data::phantom::{PhantomConfig, write_phantom_case};
use crate::data::slices::{Slice, SliceConfig, slices_from_case};
use crate::data::split::{Split, SplitSpec, paper_split, split_subjects};
use crate::data::store::{StoreReader, StoreWriter};
use crate::io::png::{MontageOptions, Overlay, write_montage};
use crate::train::interrupt::{SignalGuard, signalled};
use crate::{Error, Result};

/// `brainsynth phantom`.
pub const PHANTOM: Command = Command {
    name: "phantom",
    summary: "write procedural BraTS-like cases (NIfTI .nii.gz) to a folder",
    help: "\
Usage: brainsynth phantom --out DIR [options]

Write procedural BraTS-like subjects (skull-stripped brain with a glioma: necrotic core,
enhancing rim, oedema) as real NIfTI-1 files in the BraTS layout: DIR/<id>/<id>_t1.nii.gz,
_t1ce, _t2, _flair, _seg. The same seed always gives the same files.

Options:
  --out DIR          folder to write the case folders into (created if needed; required)
  --subjects N       number of subjects (default 24)
  --dims XxYxZ       volume size (default 120x120x78: BraTS at half resolution; slices pad to
                     128 and `prepare --size 64` halves them exactly)
  --seed S           random seed, an unsigned integer (default 0)
  --naming N         file naming: 2020 (<id>_t1, _t1ce, _t2, _flair, _seg; labels 0,1,2,4) or
                     2023 (<id>-t1n, -t1c, -t2w, -t2f, -seg; enhancing = 3) (default 2020)
  --prefix P         subject ids are P_001, P_002, ... (default Phantom)
  -h, --help         this help
",
    run: cmd_phantom,
};

/// `brainsynth prepare`.
pub const PREPARE: Command = Command {
    name: "prepare",
    summary: "turn BraTS case folders into one slice store",
    help: "\
Usage: brainsynth prepare --cases DIR --out FILE [options]

Read every case folder under DIR (or DIR itself if it holds the NIfTI files), scale each
sequence by its own maximum to 0-255, pad/crop axial slices centrally to a square, keep the
slices where more than 15% of the padded slice has T1 > 50, add the annotation channel
(label/5*255), optionally downscale, and write all slices to FILE (written atomically: FILE
appears only when complete; Ctrl-C or SIGTERM stops it and leaves nothing behind). Progress goes
to stderr, one line per case.

Files: NIfTI-1 or NIfTI-2, .nii, .nii.gz or .hdr/.img pairs (any letter case), in the BraTS
2020/2021 naming (<id>_t1, _t1ce, _t2, _flair, _seg) or the 2023 naming (<id>-t1n, -t1c, -t2w,
-t2f, -seg); all five files of a case share one prefix. Each volume is turned to the BraTS
orientation (LPS) using its affine; oblique volumes are refused. Every header of a case is
checked before any voxel is decoded, so memory stays at about one case.

Options:
  --cases DIR        folder of case folders (required)
  --out FILE         slice store to write (required)
  --pad N|auto       side slices are padded/cropped to; auto = larger in-plane size rounded up
                     to a multiple of 32 (BraTS 240 -> 256) (default auto)
  --size N           downscale padded slices to N x N (area averaging for images, label majority
                     for the annotation) (default: no downscaling)
  --threshold T      T1 value (0-255) a pixel must exceed to count as brain (default 50)
  --coverage F       fraction of the padded slice that must exceed it (default 0.15)
  --skip-bad         skip unreadable or invalid cases and list them at the end (default: stop
                     at the first bad case without writing anything)
  --max-voxels N     largest volume (nx*ny*nz voxels) a case may have; larger headers are
                     refused before decoding (default 33554432 = 2^25; BraTS has 8.9 million)
  -h, --help         this help
",
    run: cmd_prepare,
};

/// `brainsynth show`.
pub const SHOW: Command = Command {
    name: "show",
    summary: "draw slices of a store as a PNG montage",
    help: "\
Usage: brainsynth show --store FILE --out PNG [options]

Draw slices as a PNG montage: one row per slice, T1, T1ce, T2 and FLAIR side by side, the
annotation in colour (core red, edema green, enhancing yellow). Slices are picked evenly
spaced from those selected.

Options:
  --store FILE       slice store to read (required)
  --out PNG          picture to write (required; written atomically)
  --count N          number of slices (rows) (default 8)
  --subject ID       only slices of this subject (default: all subjects)
  --tumour-only      only slices with tumour pixels
  --overlay MODE     extra (a fifth panel: T1ce with the annotation), all (annotation over each
                     sequence) or none (default extra)
  --alpha A          opacity of the annotation colours, 0-1 (default 0.45)
  --scale K          integer magnification; 0 = automatic, panels at least 128 pixels (default 0)
  -h, --help         this help
",
    run: cmd_show,
};

/// `brainsynth split`.
pub const SPLIT: Command = Command {
    name: "split",
    summary: "split subjects into train and test sets (reproducible from a seed)",
    help: "\
Usage: brainsynth split (--store FILE | --cases DIR) [options]
       brainsynth split (--store FILE | --cases DIR) --split paper [--out FILE]

Split the subjects of a slice store (or the case folders under DIR) into training and test
subjects. The ids are sorted, shuffled with SplitMix64 from the seed, and cut; the result is the
same on every machine. Prints `train <id>` / `test <id>` lines, or writes them to --out.
The study used --test 56 --train 313 (BraTS 2020) and --test 56 --train 1195 (BraTS 2021);
--split paper gives the study's own subject lists (shipped with the program) for the BraTS 2020
or 2021 training cases, after checking that the subjects are exactly the study's.

Options:
  --store FILE       take subject ids from this slice store
  --cases DIR        take subject ids from the case folder names under DIR
  --test N           number of test subjects
  --test-fraction F  fraction of subjects for testing, used when --test is absent (default 0.15)
  --train N          number of training subjects (default: all that are not test subjects)
  --seed S           random seed (default 0)
  --split paper      the study's own split instead of a seeded one (not with --test, --train,
                     --test-fraction or --seed)
  --out FILE         write the split here (atomically) instead of printing it
  -h, --help         this help
",
    run: cmd_split,
};

fn parse_dims(s: &str) -> Result<[usize; 3], CliError> {
    let parts: Vec<&str> = s.split(['x', 'X', ',']).collect();
    let bad = || {
        usage(format!(
            "--dims {s:?}: expected three sizes like 120x120x78"
        ))
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut d = [0usize; 3];
    for (o, p) in d.iter_mut().zip(parts) {
        *o = p.trim().parse().map_err(|_| bad())?;
    }
    Ok(d)
}

fn cmd_phantom(mut args: Args) -> Result<(), CliError> {
    let out = PathBuf::from(args.required("--out")?);
    let mut cfg = PhantomConfig::default();
    cfg.subjects = args.parse_or("--subjects", cfg.subjects)?;
    if let Some(d) = args.value("--dims")? {
        cfg.dims = parse_dims(&d)?;
    }
    cfg.seed = args.parse_or("--seed", cfg.seed)?;
    cfg.naming = match args.value("--naming")?.as_deref() {
        None | Some("2020") => Naming::Brats2020,
        Some("2023") => Naming::Brats2023,
        Some(o) => return Err(usage(format!("--naming {o:?}: expected 2020 or 2023"))),
    };
    if let Some(p) = args.value("--prefix")? {
        cfg.prefix = p;
    }
    args.finish()?;
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    for i in 0..cfg.subjects {
        let dir = write_phantom_case(&out, &cfg, i)?;
        eprintln!("[{}/{}] wrote {}", i + 1, cfg.subjects, dir.display());
    }
    Ok(())
}

fn cmd_prepare(mut args: Args) -> Result<(), CliError> {
    let cases = PathBuf::from(args.required("--cases")?);
    let out = PathBuf::from(args.required("--out")?);
    let mut cfg = SliceConfig::default();
    cfg.pad_to = match args.value("--pad")?.as_deref() {
        None | Some("auto") => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| usage(format!("--pad {v:?}: expected a size or auto")))?,
        ),
    };
    cfg.out_size = args.parse("--size")?;
    cfg.t1_threshold = args.parse_or("--threshold", cfg.t1_threshold)?;
    cfg.min_coverage = args.parse_or("--coverage", cfg.min_coverage)?;
    let skip_bad = args.flag("--skip-bad");
    let limits = ReadLimits {
        max_voxels: args.parse_or("--max-voxels", ReadLimits::default().max_voxels)?,
    };
    args.finish()?;
    if !(0.0..=1.0).contains(&cfg.min_coverage) {
        return Err(usage("--coverage must be between 0 and 1"));
    }
    if limits.max_voxels == 0 {
        return Err(usage("--max-voxels must be at least 1"));
    }
    let dirs = list_case_dirs(&cases)?;
    let n = dirs.len();
    // Ctrl-C / SIGTERM raise a flag instead of killing the process, so that the store's
    // temporary file is removed on the way out (the writer's Drop).
    let _guard = SignalGuard::install();
    let interrupted = || {
        Error::Interrupted(format!(
            "prepare stopped by a signal; {} was not written",
            out.display()
        ))
    };
    let mut writer: Option<StoreWriter> = None;
    let mut bad: Vec<(PathBuf, Error)> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        if signalled() {
            return Err(interrupted().into());
        }
        let res = read_case_with(dir, &limits).and_then(|case| {
            if cfg.pad_to.is_none() {
                // Fix the padded size from the first case so that every slice matches.
                cfg.pad_to = Some(cfg.padded_side(case.dims[0], case.dims[1]));
            }
            let slices = slices_from_case(&case, &cfg)?;
            Ok((case.id, slices))
        });
        let (id, slices) = match res {
            Ok(v) => v,
            Err(Error::Interrupted(_)) => return Err(interrupted().into()),
            Err(e) if skip_bad => {
                eprintln!("[{}/{n}] skipped {}: {e}", i + 1, dir.display());
                bad.push((dir.clone(), e));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if writer.is_none() {
            let side = cfg.out_size.or(cfg.pad_to).expect("set above");
            writer = Some(StoreWriter::create(&out, side, side)?);
        }
        let w = writer.as_mut().expect("created above");
        for s in &slices {
            w.push(s)?;
        }
        eprintln!("[{}/{n}] {id}: {} slices kept", i + 1, slices.len());
    }
    let Some(w) = writer else {
        return Err(Error::Data(format!("no readable case under {}", cases.display())).into());
    };
    if signalled() {
        return Err(interrupted().into());
    }
    let total = w.count();
    w.finish()?;
    eprintln!(
        "wrote {} ({total} slices from {} cases)",
        out.display(),
        n - bad.len()
    );
    if !bad.is_empty() {
        eprintln!("skipped {} bad case(s):", bad.len());
        for (d, e) in &bad {
            eprintln!("  {}: {e}", d.display());
        }
    }
    Ok(())
}

/// Pick `count` evenly spaced items of `n`.
fn evenly_spaced(n: usize, count: usize) -> Vec<usize> {
    if count >= n {
        return (0..n).collect();
    }
    (0..count)
        .map(|i| (i * n + n / 2) / count.max(1))
        .map(|i| i.min(n - 1))
        .collect()
}

fn cmd_show(mut args: Args) -> Result<(), CliError> {
    let store = PathBuf::from(args.required("--store")?);
    let out = PathBuf::from(args.required("--out")?);
    let count: usize = args.parse_or("--count", 8)?;
    let subject = args.value("--subject")?;
    let tumour_only = args.flag("--tumour-only");
    let mut opts = MontageOptions::default();
    opts.overlay = match args.value("--overlay")?.as_deref() {
        None | Some("extra") => Overlay::ExtraPanel,
        Some("all") => Overlay::AllPanels,
        Some("none") => Overlay::None,
        Some(o) => {
            return Err(usage(format!(
                "--overlay {o:?}: expected extra, all or none"
            )));
        }
    };
    opts.alpha = args.parse_or("--alpha", opts.alpha)?;
    opts.scale = args.parse_or("--scale", opts.scale)?;
    args.finish()?;
    if count == 0 {
        return Err(usage("--count must be at least 1"));
    }
    let mut reader = StoreReader::open(&store)?;
    if let Some(s) = &subject
        && !reader.subjects().contains(s)
    {
        return Err(Error::Data(format!("subject {s:?} is not in {}", store.display())).into());
    }
    // Select by reading records one at a time (constant memory for large stores).
    let mut chosen: Vec<usize> = Vec::new();
    for i in 0..reader.len() {
        let s = reader.get(i)?;
        if subject.as_ref().is_some_and(|id| &s.subject != id) {
            continue;
        }
        if tumour_only && s.tumour_pixels() == 0 {
            continue;
        }
        chosen.push(i);
    }
    if chosen.is_empty() {
        return Err(Error::Data("no slice matches the selection".into()).into());
    }
    let picks = evenly_spaced(chosen.len(), count);
    let slices: Vec<Slice> = picks
        .iter()
        .map(|&k| reader.get(chosen[k]))
        .collect::<Result<_>>()?;
    write_montage(&out, &slices, &opts)?;
    eprintln!("wrote {} ({} slices)", out.display(), slices.len());
    Ok(())
}

fn subject_ids(store: Option<&Path>, cases: Option<&Path>) -> Result<Vec<String>, CliError> {
    match (store, cases) {
        (Some(s), None) => Ok(StoreReader::open(s)?.subjects().to_vec()),
        (None, Some(c)) => Ok(list_case_dirs(c)?
            .iter()
            .map(|d| {
                d.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect()),
        _ => Err(usage("give exactly one of --store and --cases")),
    }
}

fn cmd_split(mut args: Args) -> Result<(), CliError> {
    let store = args.value("--store")?.map(PathBuf::from);
    let cases = args.value("--cases")?.map(PathBuf::from);
    let test: Option<usize> = args.parse("--test")?;
    let fraction_arg: Option<f64> = args.parse("--test-fraction")?;
    let train: Option<usize> = args.parse("--train")?;
    let seed_arg: Option<u64> = args.parse("--seed")?;
    let out = args.value("--out")?.map(PathBuf::from);
    let named = args.value("--split")?;
    let seeded = test.is_some() || train.is_some() || seed_arg.is_some() || fraction_arg.is_some();
    let (fraction, seed) = (fraction_arg.unwrap_or(0.15), seed_arg.unwrap_or(0));
    args.finish()?;
    let ids = subject_ids(store.as_deref(), cases.as_deref())?;
    let split = match named.as_deref() {
        Some("paper") if seeded => {
            return Err(usage(
                "--split paper is the study's fixed split: leave out --test, --train, \
                 --test-fraction and --seed",
            ));
        }
        Some("paper") => paper_split(&ids)?,
        Some(o) => return Err(usage(format!("--split {o:?}: only `paper` is known"))),
        None => seeded_split(&ids, test, train, fraction, seed)?,
    };
    match out {
        Some(p) => {
            split.write(&p)?;
            eprintln!(
                "wrote {} ({} train, {} test subjects)",
                p.display(),
                split.train.len(),
                split.test.len()
            );
        }
        None => print!("{}", split.to_text()),
    }
    Ok(())
}

fn seeded_split(
    ids: &[String],
    test: Option<usize>,
    train: Option<usize>,
    fraction: f64,
    seed: u64,
) -> Result<Split> {
    let spec = match (test, train) {
        (Some(t), tr) => SplitSpec::Counts { train: tr, test: t },
        (None, None) => SplitSpec::TestFraction(fraction),
        (None, Some(tr)) => {
            let n = ids.len();
            let t = ((fraction * n as f64).round() as usize).min(n.saturating_sub(tr));
            SplitSpec::Counts {
                train: Some(tr),
                test: t,
            }
        }
    };
    split_subjects(ids, &spec, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_and_spacing() {
        assert_eq!(parse_dims("12x34x5").unwrap(), [12, 34, 5]);
        assert!(parse_dims("12x34").is_err());
        assert_eq!(evenly_spaced(10, 3), vec![1, 5, 8]);
        assert_eq!(evenly_spaced(2, 5), vec![0, 1]);
    }
}
