//! The study's pictures: `samples.png` (a labelled row of images per generator, real slices on
//! top), `memorization.png` (every generator's audit histogram on one plot), each audit's
//! `closest.png`, and `predictions.png` (real test slices: truth, then each real-trained model,
//! each row labelled at its left and each column titled with its sequence).

use std::path::Path;

use crate::data::Slice;
use crate::data::annotation::encode_label;
use crate::data::slices::ANNOTATION;
use crate::eval::memorisation::Audit;
use crate::io::plot::{PALETTE, Series, draw_text, text_width, write_line_plot};
use crate::io::png::{MontageOptions, Overlay, panel_rgb, write_montage, write_png};
use crate::train::seg::{SegKind, load_segmenter, predict_labels};
use crate::{Error, Result};

use super::config::StudyOptions;
use super::records::AuditRecord;

/// T1ce (channel 1) with the annotation in colour: what each tile of `samples.png` shows.
const TILE_CHANNEL: usize = 1;
/// What the tiles of `samples.png` show, written above them.
const TILE_TITLE: &str = "T1ce with the annotation: core red, edema green, enhancing yellow";

/// `k` slices spread evenly over `slices`, preferring those with tumour.
pub fn spread(slices: &[Slice], k: usize) -> Vec<Slice> {
    let with: Vec<&Slice> = slices.iter().filter(|s| s.tumour_pixels() > 0).collect();
    let pool: Vec<&Slice> = if with.len() >= k {
        with
    } else {
        slices.iter().collect()
    };
    let n = pool.len().min(k);
    (0..n)
        .map(|i| pool[i * pool.len() / n.max(1)].clone())
        .collect()
}

/// Rows of tiles, each row labelled at its left: `(label, slices)`.
pub fn write_labelled_rows(path: &Path, rows: &[(String, Vec<Slice>)]) -> Result<()> {
    let first = rows
        .iter()
        .flat_map(|(_, s)| s.first())
        .next()
        .ok_or_else(|| Error::Data("a picture of no slices".into()))?;
    let (h, w) = (first.h, first.w);
    let scale = 128usize.div_ceil(w.max(1)).clamp(1, 8);
    let (th, tw) = (h * scale, w * scale);
    let gap = 4;
    let text_scale = 2;
    let label_w = rows
        .iter()
        .map(|(l, _)| text_width(l, text_scale))
        .max()
        .unwrap_or(0)
        + 2 * gap;
    let cols = rows.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let tiles_w = label_w + cols * (tw + gap) + gap;
    // one line above the tiles saying what they show, at twice the size when it fits (at size
    // 1 the font's "1" reads as an "I")
    let title_scale = if text_width(TILE_TITLE, 2) + 2 * gap <= tiles_w {
        2
    } else {
        1
    };
    let width = tiles_w.max(text_width(TILE_TITLE, title_scale) + 2 * gap);
    let head = 5 * title_scale + 2 * gap;
    let height = head + rows.len() * (th + gap) + gap;
    let mut img = vec![255u8; width * height * 3];
    draw_text(
        &mut img,
        width,
        height,
        (gap, gap),
        TILE_TITLE,
        title_scale,
        [0, 0, 0],
    );
    for (r, (label, slices)) in rows.iter().enumerate() {
        let y0 = head + gap + r * (th + gap);
        draw_text(
            &mut img,
            width,
            height,
            (gap, y0 + th / 2 - 5),
            label,
            text_scale,
            [0, 0, 0],
        );
        for (c, s) in slices.iter().enumerate() {
            if (s.h, s.w) != (h, w) {
                return Err(Error::invalid(
                    "samples",
                    format!("slices differ in size ({h}×{w} and {}×{})", s.h, s.w),
                ));
            }
            let tile = panel_rgb(s, TILE_CHANNEL, true, 0.45);
            let x0 = label_w + c * (tw + gap);
            for y in 0..th {
                for x in 0..tw {
                    let src = ((y / scale) * w + x / scale) * 3;
                    let dst = ((y0 + y) * width + x0 + x) * 3;
                    img[dst..dst + 3].copy_from_slice(&tile[src..src + 3]);
                }
            }
        }
    }
    write_png(path, width, height, 3, &img)
}

/// Every generator's histogram of best correlations, as shares of its synthetic images.
pub fn write_memorization(path: &Path, audits: &[(&str, &AuditRecord)]) -> Result<()> {
    let series: Vec<Series> = audits
        .iter()
        .enumerate()
        .map(|(i, (name, a))| {
            let total = a.histogram.iter().map(|b| b.1).sum::<usize>().max(1) as f64;
            Series {
                label: name.to_string(),
                rgb: PALETTE[i % PALETTE.len()],
                points: a
                    .histogram
                    .iter()
                    .map(|&(c, n)| (c, n as f64 / total))
                    .collect(),
            }
        })
        .collect();
    write_line_plot(
        path,
        "best correlation of each synthetic image with any training image (share per bin)",
        &series,
        720,
        400,
    )
}

/// The four closest pairs of an audit: synthetic image, its nearest training image, and their
/// difference, as rows of a montage.
pub fn write_closest(path: &Path, a: &Audit, synth: &[Slice], real: &[Slice]) -> Result<()> {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (i, n) in a.closest(4) {
        let (Some(s), Some(r)) = (synth.get(i), n.real.and_then(|j| real.get(j))) else {
            continue;
        };
        let mut d = s.clone();
        for (x, y) in d.data.iter_mut().zip(&r.data) {
            *x = x.abs_diff(*y);
        }
        rows.extend([s.clone(), r.clone(), d]);
        labels.extend(["synthetic", "nearest real", "difference"].map(String::from));
    }
    if rows.is_empty() {
        return Ok(());
    }
    let opts = MontageOptions {
        row_labels: labels,
        ..MontageOptions::default()
    };
    write_montage(path, &rows, &opts)
}

/// A few real test slices with tumour: rows of truth, then each real-trained model's prediction
/// (first seed).
pub fn write_predictions(path: &Path, opts: &StudyOptions, test: &[Slice]) -> Result<()> {
    let picked = spread(test, 4);
    let mut preds = Vec::new();
    for &kind in &opts.segmenters {
        let mut cfg = opts.profile.seg.train_config(kind, opts.seeds[0]);
        cfg.device = opts.device;
        let ck = opts
            .out
            .join("real")
            .join(kind.name())
            .join(format!("seed{}", opts.seeds[0]))
            .join("best.safetensors");
        let model = load_segmenter(&cfg, &ck)?;
        preds.push(predict_labels(&model, &picked, opts.profile.seg.batch)?);
    }
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (i, s) in picked.iter().enumerate() {
        rows.push(s.clone());
        labels.push("truth".to_string());
        labels.extend(opts.segmenters.iter().map(|k| k.name().to_string()));
        for p in &preds {
            let mut r = s.clone();
            let hw = r.h * r.w;
            for (v, &l) in r.data[ANNOTATION * hw..(ANNOTATION + 1) * hw]
                .iter_mut()
                .zip(&p[i])
            {
                *v = encode_label(l);
            }
            rows.push(r);
        }
    }
    write_montage(
        path,
        &rows,
        &MontageOptions {
            overlay: Overlay::ExtraPanel,
            row_labels: labels,
            ..MontageOptions::default()
        },
    )
}

/// Names of the segmenters in `predictions.png` row order.
pub fn prediction_rows(kinds: &[SegKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    format!("per slice: truth, then {}", names.join(", "))
}
