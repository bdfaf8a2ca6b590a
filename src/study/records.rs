//! What each stage produced, as it is written to (and read back from) its `done.json`.

use crate::eval::consistency::Consistency;
use crate::eval::dice::{MeanStd, Region, SubjectDice};
use crate::eval::label_stats::LabelStats;
use crate::eval::memorisation::Audit;
use crate::io::json::Json;
use crate::train::seg::{SegKind, TrainOutcome};
use crate::{Error, Result};

use super::stage::{array, field, num, text};

/// Columns of a Dice record: the three classes, their mean, the two BraTS regions.
pub const COLUMNS: [&str; 6] = [
    "enhancing",
    "edema",
    "necrotic_core",
    "mean",
    "whole_tumor",
    "tumor_core",
];
/// Index of the mean class Dice in [`COLUMNS`].
pub const MEAN: usize = 3;

/// One segmenter training and its test on the real test subjects.
#[derive(Clone, Debug, PartialEq)]
pub struct SegRecord {
    pub kind: SegKind,
    pub seed: u64,
    /// Per test subject: Dice in [`COLUMNS`] order.
    pub subjects: Vec<(String, [f64; 6])>,
    pub best_val_dice: f64,
    pub best_iteration: u64,
    pub iterations: u64,
    /// Seconds of the last training session.
    pub seconds: f64,
    pub train_images: usize,
}

impl SegRecord {
    pub fn new(
        kind: SegKind,
        seed: u64,
        dice: &SubjectDice,
        o: &TrainOutcome,
        train_images: usize,
    ) -> Self {
        let subjects = dice
            .subjects()
            .map(|(id, c)| {
                (
                    id.clone(),
                    [
                        c.dice(Region::Enhancing),
                        c.dice(Region::Edema),
                        c.dice(Region::NecroticCore),
                        c.mean_class_dice(),
                        c.dice(Region::WholeTumor),
                        c.dice(Region::TumorCore),
                    ],
                )
            })
            .collect();
        SegRecord {
            kind,
            seed,
            subjects,
            best_val_dice: o.best_val_dice,
            best_iteration: o.best_iteration,
            iterations: o.iterations_done,
            seconds: o.seconds,
            train_images,
        }
    }

    /// Mean ± std over test subjects of column `col`.
    pub fn over_subjects(&self, col: usize) -> MeanStd {
        MeanStd::of(
            &self
                .subjects
                .iter()
                .map(|(_, d)| d[col])
                .collect::<Vec<_>>(),
        )
    }

    pub fn to_json(&self) -> Json {
        let subjects = self
            .subjects
            .iter()
            .map(|(id, d)| {
                let mut f = vec![("subject".to_string(), Json::str(id.clone()))];
                f.extend(
                    COLUMNS
                        .iter()
                        .zip(d)
                        .map(|(k, &v)| (k.to_string(), Json::num(v))),
                );
                Json::Object(f)
            })
            .collect();
        Json::obj(vec![
            ("segmenter", Json::str(self.kind.name())),
            ("seed", Json::num(self.seed as f64)),
            ("mean_class_dice", Json::num(self.over_subjects(MEAN).mean)),
            ("best_val_dice", Json::num(self.best_val_dice)),
            ("best_iteration", Json::num(self.best_iteration as f64)),
            ("iterations", Json::num(self.iterations as f64)),
            ("train_seconds", Json::num(self.seconds)),
            ("train_images", Json::num(self.train_images as f64)),
            ("subjects", Json::Array(subjects)),
        ])
    }

    pub fn from_json(j: &Json) -> Result<Self> {
        let mut subjects = Vec::new();
        for s in array(j, "subjects")? {
            let mut d = [0.0; 6];
            for (v, k) in d.iter_mut().zip(COLUMNS) {
                *v = num(s, k)?;
            }
            subjects.push((text(s, "subject")?, d));
        }
        Ok(SegRecord {
            kind: SegKind::parse(&text(j, "segmenter")?)?,
            seed: num(j, "seed")? as u64,
            subjects,
            best_val_dice: num(j, "best_val_dice")?,
            best_iteration: num(j, "best_iteration")? as u64,
            iterations: num(j, "iterations")? as u64,
            seconds: num(j, "train_seconds")?,
            train_images: num(j, "train_images")? as usize,
        })
    }
}

/// The memorisation audit of one synthetic set.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub n: usize,
    pub n_real: usize,
    pub threshold: f64,
    pub mean: f64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
    pub above_threshold: usize,
    pub distinct_real_above: usize,
    /// (bin centre, count) over [`HIST_LO`, 1].
    pub histogram: Vec<(f64, usize)>,
    /// The same synthetic images correlated after subtracting the training images' mean image
    /// (`memorization --residual`): an average head scores low there, a copy still scores ~1.
    /// None in records written before the study computed it.
    pub residual: Option<ResidualRecord>,
}

/// The residual correlation's summary of one audit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidualRecord {
    pub mean: f64,
    pub max: f64,
    pub above_threshold: usize,
}

/// Lower end of the study's audit histograms (one range for every generator, so they overlay).
pub const HIST_LO: f64 = 0.0;

impl AuditRecord {
    pub fn new(a: &Audit) -> Result<Self> {
        let s = a.summary().ok_or_else(|| {
            Error::Data("every synthetic image is constant; the audit has no correlation".into())
        })?;
        Ok(AuditRecord {
            n: s.n,
            n_real: a.n_real,
            threshold: a.threshold,
            mean: s.mean,
            median: s.median,
            p99: s.p99,
            max: s.max,
            above_threshold: s.above_threshold,
            distinct_real_above: s.distinct_real_above,
            histogram: a.histogram(HIST_LO, 50),
            residual: None,
        })
    }

    /// This record with the summary of `residual`, the residual audit of the same images.
    pub fn with_residual(mut self, residual: &Audit) -> Result<Self> {
        let s = residual.summary().ok_or_else(|| {
            Error::Data("every synthetic image equals the mean training image".into())
        })?;
        self.residual = Some(ResidualRecord {
            mean: s.mean,
            max: s.max,
            above_threshold: s.above_threshold,
        });
        Ok(self)
    }

    pub fn to_json(&self) -> Json {
        Json::obj(vec![
            ("n", Json::num(self.n as f64)),
            ("n_real", Json::num(self.n_real as f64)),
            ("threshold", Json::num(self.threshold)),
            ("mean", Json::num(self.mean)),
            ("median", Json::num(self.median)),
            ("p99", Json::num(self.p99)),
            ("max", Json::num(self.max)),
            ("above_threshold", Json::num(self.above_threshold as f64)),
            (
                "distinct_real_above",
                Json::num(self.distinct_real_above as f64),
            ),
            (
                "histogram",
                Json::Array(
                    self.histogram
                        .iter()
                        .map(|&(c, n)| Json::Array(vec![Json::num(c), Json::num(n as f64)]))
                        .collect(),
                ),
            ),
            (
                "residual",
                self.residual.map_or(Json::Null, |r| {
                    Json::obj(vec![
                        ("mean", Json::num(r.mean)),
                        ("max", Json::num(r.max)),
                        ("above_threshold", Json::num(r.above_threshold as f64)),
                    ])
                }),
            ),
        ])
    }

    pub fn from_json(j: &Json) -> Result<Self> {
        let mut histogram = Vec::new();
        for b in array(j, "histogram")? {
            match b {
                Json::Array(v) if v.len() == 2 => {
                    let n = |x: &Json| match x {
                        Json::Number(s) => s.parse::<f64>().ok(),
                        _ => None,
                    };
                    match (n(&v[0]), n(&v[1])) {
                        (Some(c), Some(k)) => histogram.push((c, k as usize)),
                        _ => return Err(Error::Data("a histogram bin is not two numbers".into())),
                    }
                }
                _ => return Err(Error::Data("a histogram bin is not two numbers".into())),
            }
        }
        Ok(AuditRecord {
            n: num(j, "n")? as usize,
            n_real: num(j, "n_real")? as usize,
            threshold: num(j, "threshold")?,
            mean: num(j, "mean")?,
            median: num(j, "median")?,
            p99: num(j, "p99")?,
            max: num(j, "max")?,
            above_threshold: num(j, "above_threshold")? as usize,
            distinct_real_above: num(j, "distinct_real_above")? as usize,
            histogram,
            residual: match field(j, "residual") {
                None | Some(Json::Null) => None,
                Some(r) => Some(ResidualRecord {
                    mean: num(r, "mean")?,
                    max: num(r, "max")?,
                    above_threshold: num(r, "above_threshold")? as usize,
                }),
            },
        })
    }
}

fn stats_json(s: &LabelStats) -> Json {
    Json::obj(vec![
        ("slices", Json::num(s.slices as f64)),
        ("tumour_slice_fraction", Json::num(s.tumour_slice_fraction)),
        ("core_fraction", Json::num(s.core_fraction)),
        ("edema_fraction", Json::num(s.edema_fraction)),
        ("enhancing_fraction", Json::num(s.enhancing_fraction)),
        ("mean_lesion_pixels", Json::num(s.mean_lesion_pixels)),
    ])
}

fn stats_from(j: &Json) -> Result<LabelStats> {
    Ok(LabelStats {
        slices: num(j, "slices")? as usize,
        tumour_slice_fraction: num(j, "tumour_slice_fraction")?,
        core_fraction: num(j, "core_fraction")?,
        edema_fraction: num(j, "edema_fraction")?,
        enhancing_fraction: num(j, "enhancing_fraction")?,
        mean_lesion_pixels: num(j, "mean_lesion_pixels")?,
    })
}

/// The measures beyond the paper of one set of slices.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasuresRecord {
    pub labels: LabelStats,
    /// Label consistency under the real-trained U-Net (None when the study trains no U-Net).
    pub consistency: Option<Consistency>,
    /// Squared Fréchet distance to the real training slices in the real-trained U-Net's
    /// bottleneck features (None without a U-Net; 0 for the real row).
    pub frechet: Option<f64>,
}

impl MeasuresRecord {
    pub fn to_json(&self) -> Json {
        let cons = match &self.consistency {
            None => Json::Null,
            Some(c) => {
                let mut f = vec![("images".to_string(), Json::num(c.images as f64))];
                f.extend(
                    Region::ALL
                        .iter()
                        .zip(c.dice)
                        .map(|(r, d)| (r.name().to_string(), Json::num(d))),
                );
                f.push(("mean".into(), Json::num(c.mean_class_dice)));
                Json::Object(f)
            }
        };
        Json::obj(vec![
            ("labels", stats_json(&self.labels)),
            ("label_consistency", cons),
            ("frechet_unet", self.frechet.map_or(Json::Null, Json::num)),
        ])
    }

    pub fn from_json(j: &Json) -> Result<Self> {
        let labels = stats_from(
            field(j, "labels").ok_or_else(|| Error::Data("measures lack 'labels'".into()))?,
        )?;
        let consistency = match field(j, "label_consistency") {
            None | Some(Json::Null) => None,
            Some(c) => {
                let mut dice = [0.0; 5];
                for (d, r) in dice.iter_mut().zip(Region::ALL) {
                    *d = num(c, r.name())?;
                }
                Some(Consistency {
                    images: num(c, "images")? as usize,
                    dice,
                    mean_class_dice: num(c, "mean")?,
                })
            }
        };
        let frechet = match field(j, "frechet_unet") {
            None | Some(Json::Null) => None,
            Some(_) => Some(num(j, "frechet_unet")?),
        };
        Ok(MeasuresRecord {
            labels,
            consistency,
            frechet,
        })
    }
}
