//! `memorization`: for every synthetic image, its most correlated training image.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::cli::{Args, CliError, Command, usage};
use crate::data::slices::Slice;
use crate::data::split::Split;
use crate::data::store::StoreReader;
use crate::eval::memorisation::{Audit, AuditConfig, DEFAULT_THRESHOLD, SliceSource, audit};
use crate::io::atomic::write_atomic;
use crate::io::json::Json;
use crate::io::plot::{PALETTE, Series, write_line_plot};
use crate::io::png::{MontageOptions, write_montage};
use crate::tensor::Device;
use crate::{Error, Result};

/// `brainsynth memorization`.
pub const MEMORIZATION: Command = Command {
    name: "memorization",
    summary: "find, for every synthetic image, its most correlated training image",
    help: "\
Usage: brainsynth memorization --synthetic FILE --train FILE--out DIR [options]

The study's memorisation audit: for every image of the synthetic store, the highest Pearson
correlation with any image of the real (training) store, and which image that is. A generator
that copies its training images shows correlations near 1. Runs as blocked, normalised matrix
products (bounded memory), on the CPU or a GPU.

Writes to DIR (each file atomically):
  memorisation.json  every synthetic image's best correlation and training image, the summary
  memorisation.md    the summary table
  histogram.png      distribution of the best correlations
  closest.png        the closest pairs, three rows each: the synthetic image, its nearest
                     training image, their absolute difference (highest correlation first;
                     memorisation.md lists them)

Options:
  --synthetic FILE   slice store of synthetic images (e.g. from `generate`) (required)
  --train FILE       slice store of real images (required)
  --split FILE       compare only with the training subjects of this split file (as written by
                     `split` or `study`) (default: every slice of --train)
  --out DIR          output folder (created if needed; required)
  --channels LIST    channels compared, comma-separated 0-4 = T1,T1ce,T2,FLAIR,annotation
                     (default 0,1,2,3,4)
  --threshold T      best correlation above which an image counts as a likely copy
                     (default 0.95)
  --residual         correlate residuals: every image minus the training images' mean image.
                     Whole-image correlation of brain slices is dominated by the head's
                     outline, so an average-looking head can score above 0.95 without
                     copying anything; a copy still scores 1 on residuals (default: plain
                     Pearson correlation, the study's measure)
  --pairs K          closest pairs drawn in closest.png (default 8)
  --device D         cpu, cuda or cuda:N (default cpu)
  --block-mb M       memory per block of normalised images, MiB (default 256)
  -h, --help         this help
",
    run: cmd_audit_memorisation,
};

/// The slices of a store whose subject is in a set, read record by record.
struct Subset<S> {
    inner: S,
    index: Vec<usize>,
}

impl<S: SliceSource> SliceSource for Subset<S> {
    fn len(&self) -> usize {
        self.index.len()
    }
    fn size(&self) -> (usize, usize) {
        self.inner.size()
    }
    fn slice(&mut self, i: usize) -> Result<Slice> {
        let j = *self.index.get(i).ok_or_else(|| {
            Error::invalid("store", format!("slice {i} out of range of the subset"))
        })?;
        self.inner.slice(j)
    }
}

fn parse_channels(s: &str) -> Result<Vec<usize>, CliError> {
    s.split(',')
        .map(|c| {
            c.trim().parse::<usize>().map_err(|_| {
                usage(format!(
                    "--channels {s:?}: expected numbers 0-4 like 0,1,2,3"
                ))
            })
        })
        .collect()
}

fn cmd_audit_memorisation(mut a: Args) -> Result<(), CliError> {
    let synth_path = PathBuf::from(a.required("--synthetic")?);
    let real_path = PathBuf::from(a.required("--train")?);
    let out = PathBuf::from(a.required("--out")?);
    let split = a.value("--split")?.map(PathBuf::from);
    let channels = match a.value("--channels")? {
        Some(s) => parse_channels(&s)?,
        None => AuditConfig::default().channels,
    };
    let threshold = a.parse_or("--threshold", DEFAULT_THRESHOLD)?;
    let residual = a.flag("--residual");
    let pairs = a.parse_or("--pairs", 8usize)?;
    let device: Device = a.parse_or("--device", Device::Cpu)?;
    let block_mb = a.parse_or("--block-mb", 256usize)?;
    a.finish()?;
    if block_mb == 0 {
        return Err(usage("--block-mb must be at least 1"));
    }
    let cfg = AuditConfig {
        channels,
        threshold,
        device,
        block_bytes: block_mb << 20,
        residual,
    };

    let mut synth = StoreReader::open(&synth_path)?;
    let real = StoreReader::open(&real_path)?;
    let keep: Option<HashSet<String>> = match &split {
        Some(p) => Some(Split::read(p)?.train.into_iter().collect()),
        None => None,
    };
    let mut index = Vec::new();
    let mut real = Subset {
        inner: real,
        index: Vec::new(),
    };
    for i in 0..SliceSource::len(&real.inner) {
        let keep_it = match &keep {
            Some(k) => k.contains(&real.inner.slice(i)?.subject),
            None => true,
        };
        if keep_it {
            index.push(i);
        }
    }
    real.index = index;
    if real.index.is_empty() {
        return Err(CliError::Run(Error::invalid(
            "memorisation audit",
            format!(
                "{} holds no slice of the split's training subjects",
                real_path.display()
            ),
        )));
    }
    eprintln!(
        "auditing {} synthetic images against {} training images on {}",
        SliceSource::len(&synth),
        real.len(),
        cfg.device
    );
    let start = std::time::Instant::now();
    let result = audit(&mut synth, &mut real, &cfg, &mut |done, total| {
        let el = start.elapsed().as_secs_f64();
        let eta = el / done as f64 * (total - done) as f64;
        eprintln!("  {done}/{total} synthetic images, {el:.1} s, about {eta:.0} s left");
    })?;
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let paths = (synth_path.as_path(), real_path.as_path());
    write_outputs(&out, &result, &mut synth, &mut real, pairs, paths)?;
    print!("{}", summary_markdown(&result, &synth_path, &real_path));
    Ok(())
}

/// Pixel-wise |a - b| of every channel, as a slice to draw (the annotation channel shows where
/// the labels differ).
fn abs_difference(a: &Slice, b: &Slice) -> Slice {
    let mut d = a.clone();
    d.subject = format!("|{} - {}|", a.subject, b.subject);
    for (x, y) in d.data.iter_mut().zip(&b.data) {
        *x = x.abs_diff(*y);
    }
    d
}

fn summary_markdown(a: &Audit, synth: &Path, real: &Path) -> String {
    let mut s = format!(
        "# Memorisation audit\n\nSynthetic: `{}`; training images: `{}` ({} compared, {} \
         constant and skipped); channels {:?}; {}.\n\n",
        synth.display(),
        real.display(),
        a.n_real,
        a.constant_real,
        a.channels,
        match a.residual {
            true => "residual correlation (each image minus the training images' mean image)",
            false => "Pearson correlation of whole images",
        }
    );
    match a.summary() {
        None => s.push_str("No synthetic image had a defined correlation (all constant).\n"),
        Some(m) => {
            s.push_str(
                "| synthetic images | mean | median | 95th pct | 99th pct | max | above threshold \
                 | distinct training images above |\n|---|---|---|---|---|---|---|---|\n",
            );
            s.push_str(&format!(
                "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} (> {}) | {} |\n",
                m.n,
                m.mean,
                m.median,
                m.p95,
                m.p99,
                m.max,
                m.above_threshold,
                a.threshold,
                m.distinct_real_above
            ));
        }
    }
    if a.constant_synthetic > 0 {
        s.push_str(&format!(
            "\n{} synthetic images were constant (no correlation defined).\n",
            a.constant_synthetic
        ));
    }
    s
}

fn write_outputs(
    out: &Path,
    a: &Audit,
    synth: &mut dyn SliceSource,
    real: &mut dyn SliceSource,
    pairs: usize,
    (synth_path, real_path): (&Path, &Path),
) -> Result<()> {
    let num = |v: f64| {
        if v.is_finite() {
            Json::num(v)
        } else {
            Json::Null
        }
    };
    let per_image: Vec<Json> = a
        .nearest
        .iter()
        .map(|n| match n.real {
            Some(j) => Json::Array(vec![num(n.correlation), Json::num(j as f64)]),
            None => Json::Null,
        })
        .collect();
    let summary = match a.summary() {
        None => Json::Null,
        Some(m) => Json::obj(vec![
            ("n", Json::num(m.n as f64)),
            ("mean", num(m.mean)),
            ("median", num(m.median)),
            ("p95", num(m.p95)),
            ("p99", num(m.p99)),
            ("max", num(m.max)),
            ("above_threshold", Json::num(m.above_threshold as f64)),
            (
                "distinct_real_above",
                Json::num(m.distinct_real_above as f64),
            ),
        ]),
    };
    let closest = a.closest(pairs);
    let json = Json::obj(vec![
        ("threshold", Json::num(a.threshold)),
        ("residual", Json::Bool(a.residual)),
        (
            "channels",
            Json::Array(a.channels.iter().map(|&c| Json::num(c as f64)).collect()),
        ),
        ("n_real", Json::num(a.n_real as f64)),
        ("constant_real", Json::num(a.constant_real as f64)),
        ("constant_synthetic", Json::num(a.constant_synthetic as f64)),
        ("summary", summary),
        ("nearest", Json::Array(per_image)),
    ]);
    write_atomic(out.join("memorisation.json"), json.to_pretty().as_bytes())?;

    let mut md = String::new();
    md.push_str(&format!(
        "{}\n## Closest pairs (closest.png, top to bottom)\n\n| rows | synthetic image | nearest \
         training image (subject, slice) | correlation |\n|---|---|---|---|\n",
        summary_markdown(a, synth_path, real_path)
    ));
    let mut rows = Vec::new();
    for (k, (i, n)) in closest.iter().enumerate() {
        let s = synth.slice(*i)?;
        let Some(j) = n.real else { continue };
        let r = real.slice(j)?;
        md.push_str(&format!(
            "| {}-{} | #{i} ({}) | {} z={} | {:.4} |\n",
            3 * k + 1,
            3 * k + 3,
            s.subject,
            r.subject,
            r.index,
            n.correlation
        ));
        let d = abs_difference(&s, &r);
        rows.extend([s, r, d]);
    }
    write_atomic(out.join("memorisation.md"), md.as_bytes())?;
    if !rows.is_empty() {
        write_montage(out.join("closest.png"), &rows, &MontageOptions::default())?;
    }
    let lo = a
        .correlations()
        .iter()
        .copied()
        .fold(1.0f64, f64::min)
        .clamp(-1.0, 0.9);
    let hist = a.histogram(lo, 50);
    if !a.correlations().is_empty() {
        write_line_plot(
            out.join("histogram.png"),
            "best correlation of each synthetic image with any training image (count per bin)",
            &[Series {
                label: "synthetic images".into(),
                rgb: PALETTE[0],
                points: hist.iter().map(|&(c, n)| (c, n as f64)).collect(),
            }],
            720,
            360,
        )?;
    }
    Ok(())
}
