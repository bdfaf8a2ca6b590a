//! The study's report: `results.md` in the paper's table shape (rows: real and each generator;
//! columns: segmenter × variant; mean class Dice ± std and the synthetic/real ratio), per-class
//! Dice, the memorisation summary and the measures beyond the paper; `results.json` with every
//! number; the pictures.
//!
//! Mean ± std: over seeds (each seed's mean over test subjects), as the paper's 10 seeds; with one
//! seed, over test subjects. The ratio is synthetic mean / real mean of the same segmenter, with
//! its std propagated to first order from both: σ_q = q·√((σ_s/μ_s)² + (σ_r/μ_r)²).

use crate::data::store::read_store;
use crate::eval::dice::MeanStd;
use crate::io::atomic::write_atomic;
use crate::io::json::Json;
use crate::train::seg::SegKind;
use crate::{Error, Result};

use super::config::StudyOptions;
use super::data::RealData;
use super::pictures;
use super::records::{AuditRecord, COLUMNS, MEAN, MeasuresRecord, SegRecord};
use super::variants::Variant;
use super::{GeneratorResults, StudyResults};

/// Mean ± std of column `col` over `runs` (seeds); a single run gives the std over subjects.
pub fn summarise(runs: &[&SegRecord], col: usize) -> MeanStd {
    match runs {
        [] => MeanStd::of(&[]),
        [one] => one.over_subjects(col),
        _ => MeanStd::of(
            &runs
                .iter()
                .map(|r| r.over_subjects(col).mean)
                .collect::<Vec<_>>(),
        ),
    }
}

/// Synthetic/real ratio with first-order propagated std (NaN when the real mean is not > 0).
pub fn dice_ratio(synthetic: MeanStd, real: MeanStd) -> MeanStd {
    if real.mean.is_nan() || real.mean <= 0.0 || !synthetic.mean.is_finite() {
        return MeanStd {
            mean: f64::NAN,
            std: f64::NAN,
            n: 0,
        };
    }
    let q = synthetic.mean / real.mean;
    let rel_s = if synthetic.mean != 0.0 {
        synthetic.std / synthetic.mean
    } else {
        0.0
    };
    let rel_r = real.std / real.mean;
    MeanStd {
        mean: q,
        std: q.abs() * (rel_s * rel_s + rel_r * rel_r).sqrt(),
        n: synthetic.n.min(real.n),
    }
}

fn real_runs(r: &StudyResults, kind: SegKind) -> Vec<&SegRecord> {
    r.real.iter().filter(|x| x.kind == kind).collect()
}

fn gen_runs(g: &GeneratorResults, kind: SegKind, v: Variant) -> Vec<&SegRecord> {
    g.runs
        .iter()
        .filter(|(vv, x)| *vv == v && x.kind == kind)
        .map(|(_, x)| x)
        .collect()
}

fn ms_json(m: MeanStd) -> Json {
    Json::obj(vec![
        ("mean", Json::num(m.mean)),
        ("std", Json::num(m.std)),
        ("n", Json::num(m.n as f64)),
    ])
}

fn columns_json(runs: &[&SegRecord]) -> Json {
    Json::Object(
        COLUMNS
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), ms_json(summarise(runs, i))))
            .collect(),
    )
}

fn fmt(m: MeanStd) -> String {
    if m.mean.is_finite() {
        format!("{m}")
    } else {
        "–".into()
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2} %", 100.0 * x)
    } else {
        "–".into()
    }
}

/// Ranking of generators by a score (higher first), as "A > B > C".
fn ranking(mut v: Vec<(&str, f64)>) -> String {
    v.retain(|x| x.1.is_finite());
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.iter().map(|x| x.0).collect::<Vec<_>>().join(" > ")
}

/// An audit's cells of the memorisation tables, from "synthetic images" to "distinct training
/// images above".
fn audit_cells(a: &AuditRecord) -> String {
    let residual = a.residual.map_or("– | – | –".into(), |r| {
        format!("{:.3} | {:.3} | {}", r.mean, r.max, r.above_threshold)
    });
    format!(
        "{} | {:.3} | {:.3} | {:.3} | {:.3} | {} (> {}) | {} | {residual}",
        a.n, a.mean, a.median, a.p99, a.max, a.above_threshold, a.threshold, a.distinct_real_above
    )
}

fn measures_row(name: &str, m: &MeasuresRecord) -> String {
    let l = &m.labels;
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
        m.consistency
            .as_ref()
            .map_or("–".into(), |c| format!("{:.3}", c.mean_class_dice)),
        m.frechet.map_or("–".into(), |f| format!("{f:.4}")),
        l.slices,
        pct(l.tumour_slice_fraction),
        pct(l.core_fraction),
        pct(l.edema_fraction),
        pct(l.enhancing_fraction),
        l.mean_lesion_pixels
    )
}

/// Write results.json, results.md and the pictures.
pub fn write_report(
    opts: &StudyOptions,
    rd: &RealData,
    r: &StudyResults,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let segs = &opts.segmenters;
    let variants = &opts.variants;
    // ---- results.json
    let list = |v: &[String]| Json::Array(v.iter().map(|s| Json::str(s.clone())).collect());
    let real_json: Vec<Json> = segs
        .iter()
        .map(|&k| {
            let runs = real_runs(r, k);
            Json::obj(vec![
                ("segmenter", Json::str(k.name())),
                ("dice", columns_json(&runs)),
                (
                    "seeds",
                    Json::Array(runs.iter().map(|x| x.to_json()).collect()),
                ),
            ])
        })
        .collect();
    let gens_json: Vec<Json> = r
        .generators
        .iter()
        .map(|g| {
            let mut cells = Vec::new();
            for &k in segs {
                let real = summarise(&real_runs(r, k), MEAN);
                for &v in variants {
                    let runs = gen_runs(g, k, v);
                    cells.push(Json::obj(vec![
                        ("segmenter", Json::str(k.name())),
                        ("variant", Json::str(v.name())),
                        ("dice", columns_json(&runs)),
                        (
                            "ratio_to_real",
                            ms_json(dice_ratio(summarise(&runs, MEAN), real)),
                        ),
                        (
                            "seeds",
                            Json::Array(runs.iter().map(|x| x.to_json()).collect()),
                        ),
                    ]));
                }
            }
            Json::obj(vec![
                ("generator", Json::str(g.spec.name)),
                ("train_seconds", Json::num(g.train_seconds)),
                ("sample_seconds", Json::num(g.sample_seconds)),
                ("synthetic_set", Json::str(g.store.display().to_string())),
                ("memorisation", g.audit.to_json()),
                ("measures", g.measures.to_json()),
                ("segmenters", Json::Array(cells)),
            ])
        })
        .collect();
    let memorization: Vec<Json> = r
        .memorization
        .iter()
        .map(|m| {
            Json::obj(vec![
                ("generator", Json::str(m.spec.name)),
                ("training_subjects", Json::num(m.subjects as f64)),
                ("memorisation", m.audit.to_json()),
            ])
        })
        .collect();
    let doc = Json::obj(vec![
        (
            "study",
            Json::str(
                "segmenters trained on real and on synthetic slices, tested per subject in 3-D \
                 on real test subjects",
            ),
        ),
        ("data", Json::str(opts.data.describe())),
        (
            "profile",
            Json::Object(
                opts.profile
                    .describe()
                    .into_iter()
                    .map(|(k, v)| (k, Json::String(v)))
                    .collect(),
            ),
        ),
        ("train_subjects", list(&r.train_subjects)),
        ("validation_subjects", list(&r.val_subjects)),
        ("test_subjects", list(&r.test_subjects)),
        ("real", Json::Array(real_json)),
        ("real_measures", r.real_measures.to_json()),
        ("generators", Json::Array(gens_json)),
        ("memorisation_by_training_size", Json::Array(memorization)),
        (
            "stage_seconds",
            Json::Object(
                r.stage_seconds
                    .iter()
                    .map(|(k, s)| (k.clone(), Json::num(*s)))
                    .collect(),
            ),
        ),
    ]);
    write_atomic(&r.results_json, doc.to_pretty().as_bytes())?;

    // ---- results.md
    let mut md = format!(
        "# Synthetic vs real training data: segmentation study ({} profile)\n\n\
         Data: {}. Segmenters trained on {} subjects ({} slices; {} for validation), tested on {} \
         held-out real subjects; Dice per subject in 3-D, mean ± std ({}). Generators trained on \
         the {} non-test subjects' {} slices, {} synthetic images each, split 80/20 by image \
         into training and validation.\n\n",
        opts.profile.name(),
        opts.data.describe(),
        r.train_subjects.len(),
        rd.seg_train.len(),
        r.val_subjects.len(),
        r.test_subjects.len(),
        if opts.seeds.len() > 1 {
            format!("over {} seeds", opts.seeds.len())
        } else {
            "over test subjects, one seed".into()
        },
        r.train_subjects.len() + r.val_subjects.len(),
        rd.gen_train.len(),
        opts.profile.n_synthetic,
    );
    md.push_str("## Mean class Dice (the paper's table)\n\n");
    let mut head = "| training data |".to_string();
    let mut rule = "|---|".to_string();
    for &k in segs {
        for &v in variants {
            head.push_str(&format!(" {}: {} |", k.name(), v.label()));
            rule.push_str("---|");
        }
    }
    md.push_str(&format!("{head}\n{rule}\n"));
    let mut row = "| real |".to_string();
    for &k in segs {
        let m = summarise(&real_runs(r, k), MEAN);
        for _ in variants {
            row.push_str(&format!(" {} |", fmt(m)));
        }
    }
    md.push_str(&format!("{row}\n"));
    for g in &r.generators {
        let mut row = format!("| {} |", g.spec.label);
        for &k in segs {
            let real = summarise(&real_runs(r, k), MEAN);
            for &v in variants {
                let s = summarise(&gen_runs(g, k, v), MEAN);
                let q = dice_ratio(s, real);
                row.push_str(&format!(" {} (ratio {}) |", fmt(s), fmt(q)));
            }
        }
        md.push_str(&format!("{row}\n"));
    }
    md.push_str(
        "\nThe real row is the real baseline (trained with augmentation) in every column of its \
         segmenter; ratio = synthetic / real mean class Dice of the same segmenter, its std \
         propagated from both.\n\n",
    );
    md.push_str(
        "## Per-class Dice\n\n| training data | segmenter | variant | enhancing | edema | necrotic \
         core | mean | whole tumour | tumour core |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let cells = |runs: &[&SegRecord]| {
        (0..COLUMNS.len())
            .map(|i| {
                let s = fmt(summarise(runs, i));
                if i == MEAN { format!("**{s}**") } else { s }
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    for &k in segs {
        md.push_str(&format!(
            "| real | {} | real | {} |\n",
            k.name(),
            cells(&real_runs(r, k))
        ));
    }
    for g in &r.generators {
        for &k in segs {
            for &v in variants {
                md.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    g.spec.label,
                    k.name(),
                    v.name(),
                    cells(&gen_runs(g, k, v))
                ));
            }
        }
    }
    if !r.generators.is_empty() {
        md.push_str(&format!(
            "\n## Memorisation audit\n\nFor every synthetic image, its highest Pearson \
             correlation (all five channels) with any of the generator's {} training slices \
             (`memorization.png`; each audit's closest pairs in `<generator>/audit/closest.png`). \
             On brain slices this plain measure is dominated by the head's outline: a generator \
             that has learnt only an average head can score above the threshold without copying \
             anything. The residual columns correlate each image minus the training slices' mean \
             image instead, where an average head scores low and a copy still scores about 1; \
             read both with the pictures.\n\n\
             | generator | synthetic images | mean | median | 99th pct | max | above threshold | \
             distinct training images above | residual mean | residual max | residual above \
             |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
            rd.gen_train.len()
        ));
        for g in &r.generators {
            md.push_str(&format!(
                "| {} | {} |\n",
                g.spec.label,
                audit_cells(&g.audit)
            ));
        }
    }
    if !r.memorization.is_empty() {
        md.push_str(
            "\n## Memorisation and the size of the training set\n\nEach generator trained again \
             (same budget) on the slices of only the first few training subjects, its synthetic \
             images audited against those slices (`memorization_sizes.png`; closest pairs in \
             `memorization/<n>-subjects/<generator>/audit/closest.png`). The paper found that \
             generators trained on small sets copy training images more.\n\n| generator | \
             training subjects | training slices | synthetic images | mean | median | 99th pct \
             | max | above threshold | distinct training images above | residual mean | \
             residual max | residual above |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for m in &r.memorization {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                m.spec.label,
                m.subjects,
                m.audit.n_real,
                audit_cells(&m.audit)
            ));
        }
        for g in &r.generators {
            if r.memorization.iter().any(|m| m.spec.name == g.spec.name) {
                md.push_str(&format!(
                    "| {} (the study's run) | {} | {} | {} |\n",
                    g.spec.label,
                    r.train_subjects.len() + r.val_subjects.len(),
                    g.audit.n_real,
                    audit_cells(&g.audit)
                ));
            }
        }
    }
    if !r.generators.is_empty() {
        md.push_str(
            "\n## Beyond the paper\n\nLabel consistency: the real-trained U-Net (first seed) \
             applied to each set's images, its predictions against the set's own labels (pooled \
             mean class Dice; for real, on the real test slices). Fréchet distance: squared, between \
             the set's and the real training slices' bottleneck features of that U-Net (averaged \
             over positions). Label statistics: share of slices with tumour, share of pixels per \
             class, mean tumour pixels of a slice with tumour.\n\n| data | label consistency | \
             Fréchet (U-Net) | slices | slices with tumour | necrotic core | edema | enhancing | \
             mean lesion pixels |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        md.push_str(&measures_row("real (training slices)", &r.real_measures));
        for g in &r.generators {
            md.push_str(&measures_row(g.spec.label, &g.measures));
        }
        if segs.contains(&SegKind::UNet) && variants.contains(&Variant::SYNTHETIC) {
            let by_dice: Vec<(&str, f64)> = r
                .generators
                .iter()
                .map(|g| {
                    (
                        g.spec.label,
                        summarise(&gen_runs(g, SegKind::UNet, Variant::SYNTHETIC), MEAN).mean,
                    )
                })
                .collect();
            let by_cons: Vec<(&str, f64)> = r
                .generators
                .iter()
                .map(|g| {
                    (
                        g.spec.label,
                        g.measures
                            .consistency
                            .as_ref()
                            .map_or(f64::NAN, |c| c.mean_class_dice),
                    )
                })
                .collect();
            let by_fd: Vec<(&str, f64)> = r
                .generators
                .iter()
                .map(|g| (g.spec.label, -g.measures.frechet.unwrap_or(f64::NAN)))
                .collect();
            let (a, b, c) = (ranking(by_dice), ranking(by_cons), ranking(by_fd));
            let same = |x: &str| {
                if x == a {
                    "the same order"
                } else {
                    "a different order"
                }
            };
            md.push_str(&format!(
                "\nRanking by the synthetic-only U-Net's Dice: {a}; by label consistency: {b} \
                 ({}); by Fréchet distance, closest first: {c} ({}).\n",
                same(&b),
                same(&c)
            ));
        }
    }
    md.push_str("\n## Stages run in this session\n\n| stage | seconds |\n|---|---|\n");
    for (k, s) in &r.stage_seconds {
        md.push_str(&format!("| {k} | {s:.0} |\n"));
    }
    md.push_str(
        "\nTraining curves: `curves.png` in each training stage's folder (`real/<segmenter>/seed<k>`, \
         `<generator>/train`, `<generator>/<variant>/<segmenter>/seed<k>`).\n\n## Profile\n\n",
    );
    for (k, v) in opts.profile.describe() {
        md.push_str(&format!("- {k}: {v}\n"));
    }
    write_atomic(&r.results_md, md.as_bytes())?;

    // ---- pictures
    let pred = opts.out.join("predictions.png");
    pictures::write_predictions(&pred, opts, &rd.test)?;
    log(&format!(
        "wrote {} ({})",
        pred.display(),
        pictures::prediction_rows(segs)
    ));
    if !r.generators.is_empty() {
        let mut rows = vec![("REAL".to_string(), pictures::spread(&rd.gen_train, 6))];
        for g in &r.generators {
            let s = read_store(&g.store)?;
            if s.slices.is_empty() {
                return Err(Error::Data(format!(
                    "{} holds no images",
                    g.store.display()
                )));
            }
            let k = s.slices.len().min(6);
            rows.push((g.spec.label.to_string(), s.slices[..k].to_vec()));
        }
        let samples = opts.out.join("samples.png");
        pictures::write_labelled_rows(&samples, &rows)?;
        let audits: Vec<(&str, &AuditRecord)> = r
            .generators
            .iter()
            .map(|g| (g.spec.label, &g.audit))
            .collect();
        let mem = opts.out.join("memorization.png");
        pictures::write_memorization(&mem, &audits)?;
        log(&format!(
            "wrote {} and {}",
            samples.display(),
            mem.display()
        ));
    }
    if !r.memorization.is_empty() {
        let labels: Vec<String> = r
            .memorization
            .iter()
            .map(|m| format!("{}, {} subjects", m.spec.label, m.subjects))
            .collect();
        let audits: Vec<(&str, &AuditRecord)> = labels
            .iter()
            .zip(&r.memorization)
            .map(|(l, m)| (l.as_str(), &m.audit))
            .collect();
        let path = opts.out.join("memorization_sizes.png");
        pictures::write_memorization(&path, &audits)?;
        log(&format!("wrote {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(mean: f64, std: f64, n: usize) -> MeanStd {
        MeanStd { mean, std, n }
    }

    #[test]
    fn ratio_is_the_quotient_with_propagated_std() {
        let q = dice_ratio(ms(0.6, 0.06, 3), ms(0.8, 0.04, 3));
        assert!((q.mean - 0.75).abs() < 1e-12);
        // 0.75 · √(0.1² + 0.05²)
        assert!((q.std - 0.75 * (0.01f64 + 0.0025).sqrt()).abs() < 1e-12);
        assert_eq!(q.n, 3);
        assert!(dice_ratio(ms(0.5, 0.1, 1), ms(0.0, 0.0, 1)).mean.is_nan());
        let z = dice_ratio(ms(0.0, 0.0, 2), ms(0.5, 0.1, 2));
        assert_eq!((z.mean, z.std), (0.0, 0.0));
    }

    fn record(seed: u64, means: &[f64]) -> SegRecord {
        SegRecord {
            kind: SegKind::UNet,
            seed,
            subjects: means
                .iter()
                .enumerate()
                .map(|(i, &m)| (format!("s{i}"), [m; 6]))
                .collect(),
            best_val_dice: 0.0,
            best_iteration: 0,
            iterations: 0,
            seconds: 0.0,
            train_images: 0,
        }
    }

    #[test]
    fn one_seed_summarises_subjects_several_seeds_summarise_seeds() {
        let a = record(0, &[0.2, 0.4]);
        let one = summarise(&[&a], MEAN);
        assert!((one.mean - 0.3).abs() < 1e-12 && (one.std - 0.02f64.sqrt()).abs() < 1e-12);
        let b = record(1, &[0.6, 0.6]);
        let two = summarise(&[&a, &b], MEAN);
        // seed means 0.3 and 0.6
        assert!((two.mean - 0.45).abs() < 1e-12);
        assert!((two.std - (2.0 * 0.15f64 * 0.15 / 1.0).sqrt()).abs() < 1e-12);
        assert_eq!(two.n, 2);
        assert!(summarise(&[], MEAN).mean.is_nan());
    }

    #[test]
    fn ranking_orders_high_first_and_skips_missing() {
        assert_eq!(
            ranking(vec![("a", 0.1), ("b", 0.9), ("c", f64::NAN), ("d", 0.5)]),
            "b > d > a"
        );
    }
}
