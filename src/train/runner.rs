//! One training runner for every model: the loop around a [`Trainer`]'s steps.
//!
//! The runner owns what all trainings share: the run length (steps or images), the time limit,
//! a progress line with images/s and ETA, validation with the best checkpoint kept by a metric,
//! `curves.png`, periodic snapshots, exact resume and clean interruption. A trainer owns its
//! networks, optimisers, EMA copies and random streams, and says how to save and restore them.
//!
//! Files in the output folder:
//! - `last.safetensors`: the whole training state (the trainer's sections plus the runner's:
//!   `u64.run.step`, `u64.run.images`, the best metric, and the curves under `curve/`), written
//!   at every validation, at the end, and when the run is interrupted or out of time. A run
//!   started again in the same folder resumes from it and says from which step.
//! - `best.safetensors`: the trainer's weights at the best validation metric.
//! - `snapshot-<step>.safetensors`: the trainer's weights every `snapshot_every` steps.
//! - `curves.png`: the losses (running mean) and the metric over the whole run.
//!
//! Exact resume: a trainer saves every random stream it draws from (see
//! [`CheckpointWriter::set_rng`]), so a run stopped at step k and resumed continues with the same
//! batches, dropout masks and noise as a run that was never stopped; with deterministic kernels
//! the weights at the end are the same bits.
//!
//! Interruption: while the runner works, SIGINT and SIGTERM (or a [`StopToken`]) ask it to stop;
//! the step in flight finishes, `last` is written (atomically, so no temporary file stays
//! behind), and the run returns [`StopReason::Interrupted`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::interrupt::{SignalGuard, StopToken};
use crate::io::checkpoint::{Checkpoint, CheckpointWriter};
use crate::io::plot::{PALETTE, Series, write_line_plot};
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// How long a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunLength {
    /// Optimiser steps (the segmenters' iterations).
    Steps(u64),
    /// Training images shown (StyleGAN's kimg × 1000): the run ends at the first step that
    /// reaches this many.
    Images(u64),
}

/// A validation metric and which way is better.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// As it appears in the progress line and the curves ("val dice", "fid").
    pub name: String,
    pub higher_is_better: bool,
}

impl Metric {
    fn better(&self, a: f64, than: f64) -> bool {
        if self.higher_is_better {
            a > than
        } else {
            a < than
        }
    }
}

/// What one step reports to the runner.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    /// Named losses (the first is the one shown in the progress line); each must be finite.
    pub losses: Vec<(&'static str, f64)>,
    /// Training images this step consumed (counts towards [`RunLength::Images`] and images/s).
    pub images: u64,
    /// The learning rate used, for the progress line.
    pub lr: Option<f64>,
}

/// A model's training, as the runner drives it.
pub trait Trainer {
    /// Model kind, recorded in checkpoints and checked on resume ("unet", "stylegan2").
    fn kind(&self) -> &str;
    /// Size profile, recorded in checkpoints.
    fn profile(&self) -> &str;
    /// One optimisation step; `step` is the number of steps done before it (0-based).
    fn step(&mut self, step: u64) -> Result<StepOutput>;
    /// Everything needed to continue exactly: networks, optimisers, EMA copies, random streams.
    fn save_state(&self, w: &mut CheckpointWriter) -> Result<()>;
    /// Restore what [`Trainer::save_state`] wrote; check everything before changing anything.
    fn load_state(&mut self, ck: &Checkpoint) -> Result<()>;
    /// What `best` and snapshots hold: by default the whole state.
    fn save_weights(&self, w: &mut CheckpointWriter) -> Result<()> {
        self.save_state(w)
    }
    /// Messages for the user gathered while loading (shown after the "resuming" line).
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// The validation metric this trainer reports, if any.
    fn metric(&self) -> Option<Metric> {
        None
    }
    /// Measure the metric (called every `val_every` steps and at the end).
    fn validate(&mut self, _step: u64) -> Result<Option<f64>> {
        Ok(None)
    }
}

/// How the runner drives a trainer.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub out_dir: PathBuf,
    pub length: RunLength,
    /// Stop (validating and writing `last` first) once this session has run this long.
    pub time_limit: Option<Duration>,
    /// Validate, keep the best and write `last` every this many steps (0: only at the end).
    pub val_every: u64,
    /// A progress line every this many steps besides the validation lines (0: none).
    pub log_every: u64,
    /// Weights to `snapshot-<step>.safetensors` every this many steps.
    pub snapshot_every: Option<u64>,
    /// Write `curves.png` at every validation and at the end.
    pub curves: bool,
    /// Stops this run after its current step when raised (signals raise it for every run).
    pub stop: StopToken,
    /// Turn SIGINT/SIGTERM into a clean stop while the run works (off for library callers that
    /// manage signals themselves).
    pub handle_signals: bool,
}

impl RunConfig {
    pub fn new(out_dir: impl Into<PathBuf>, length: RunLength) -> Self {
        RunConfig {
            out_dir: out_dir.into(),
            length,
            time_limit: None,
            val_every: 0,
            log_every: 0,
            snapshot_every: None,
            curves: true,
            stop: StopToken::new(),
            handle_signals: true,
        }
    }
}

/// Why the run returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The run length was reached.
    Finished,
    /// The time limit was reached (the best checkpoint so far is kept).
    TimeLimit,
    /// A signal or the stop token; `last` holds the state after the final step.
    Interrupted,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The step this session started from (0 unless resumed).
    pub start_step: u64,
    /// Steps done in total (including those before a resume).
    pub steps_done: u64,
    pub images_done: u64,
    pub stopped: StopReason,
    /// Seconds and images/s of this session.
    pub seconds: f64,
    pub images_per_second: f64,
    /// (step, metric) of the best validation, over the whole run.
    pub best: Option<(u64, f64)>,
    pub best_checkpoint: PathBuf,
    pub last_checkpoint: PathBuf,
    /// (step, value) of every loss at every step, over the whole run.
    pub losses: BTreeMap<String, Vec<(u64, f64)>>,
    /// (step, metric) of every validation, over the whole run.
    pub metric_curve: Vec<(u64, f64)>,
}

const LAST: &str = "last.safetensors";
const BEST: &str = "best.safetensors";
const CURVE_SECTION: &str = "curve";
const METRIC_CURVE: &str = "metric";

/// Curves as `[n, 2]` f64 tensors (step, value): exact, and a few MB even for long runs.
fn curve_tensor(points: &[(u64, f64)]) -> Result<Tensor> {
    let flat: Vec<f64> = points.iter().flat_map(|&(s, v)| [s as f64, v]).collect();
    Tensor::from_f64s(&flat, &[points.len(), 2], DType::F64)
}

fn curve_points(t: &Tensor) -> Result<Vec<(u64, f64)>> {
    let v = t.to_vec_f64()?;
    Ok(v.chunks_exact(2).map(|c| (c[0] as u64, c[1])).collect())
}

/// Remove temporary files of writes that never finished (a process killed mid-save); only names
/// of the atomic writer's form (`.<name>.tmp-<pid>-<n>`) are touched.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") && e.path().is_file() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

struct RunState {
    step: u64,
    images: u64,
    best: Option<(u64, f64)>,
    losses: BTreeMap<String, Vec<(u64, f64)>>,
    metric_curve: Vec<(u64, f64)>,
}

impl RunState {
    fn done(&self, length: RunLength) -> bool {
        match length {
            RunLength::Steps(n) => self.step >= n,
            RunLength::Images(n) => self.images >= n,
        }
    }

    fn write(&self, w: &mut CheckpointWriter, metric: Option<&Metric>) -> Result<()> {
        w.set_u64("run.step", self.step)
            .set_u64("run.images", self.images);
        if let Some((s, v)) = self.best {
            w.set_u64("run.best_step", s).set_f64("run.best_metric", v);
            if let Some(m) = metric {
                w.set_metadata("run.metric", m.name.clone());
            }
        }
        let mut curves = Vec::new();
        for (name, pts) in &self.losses {
            curves.push((format!("loss.{name}"), curve_tensor(pts)?));
        }
        if !self.metric_curve.is_empty() {
            curves.push((METRIC_CURVE.to_string(), curve_tensor(&self.metric_curve)?));
        }
        w.add_tensors(CURVE_SECTION, curves);
        Ok(())
    }

    fn read(ck: &Checkpoint) -> Result<RunState> {
        // checkpoints from before the runner record the step and best Dice in plain metadata
        let step = match ck.u64_value("run.step") {
            Ok(s) => s,
            Err(_) => ck.step().ok_or_else(|| Error::Checkpoint {
                path: ck.path().to_path_buf(),
                msg: "records no training step, so the run cannot resume from it".into(),
            })?,
        };
        let images = ck.u64_value("run.images").unwrap_or(0);
        let best = match (
            ck.u64_value("run.best_step"),
            ck.f64_value("run.best_metric"),
        ) {
            (Ok(s), Ok(v)) => Some((s, v)),
            _ => {
                let v = ck.meta("best_val_dice").and_then(|v| v.parse::<f64>().ok());
                let s = ck
                    .meta("best_iteration")
                    .and_then(|v| v.parse::<u64>().ok());
                match (s, v) {
                    (Some(s), Some(v)) if v.is_finite() => Some((s, v)),
                    _ => None,
                }
            }
        };
        let mut losses = BTreeMap::new();
        let mut metric_curve = Vec::new();
        for (name, t) in ck.section(CURVE_SECTION) {
            if name == METRIC_CURVE {
                metric_curve = curve_points(&t)?;
            } else if let Some(l) = name.strip_prefix("loss.") {
                losses.insert(l.to_string(), curve_points(&t)?);
            }
        }
        Ok(RunState {
            step,
            images,
            best,
            losses,
            metric_curve,
        })
    }
}

/// Drive `trainer` as `cfg` says; see the module docs for the files and the resume rules.
pub fn run(
    trainer: &mut dyn Trainer,
    cfg: &RunConfig,
    log: &mut dyn FnMut(&str),
) -> Result<RunOutcome> {
    let dir = cfg.out_dir.as_path();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    remove_stale_temp_files(dir);
    let last = dir.join(LAST);
    let best_path = dir.join(BEST);
    let kind = trainer.kind().to_string();
    let profile = trainer.profile().to_string();
    let metric = trainer.metric();

    let mut st = RunState {
        step: 0,
        images: 0,
        best: None,
        losses: BTreeMap::new(),
        metric_curve: Vec::new(),
    };
    if last.exists() {
        let ck = Checkpoint::open(&last)?;
        ck.expect_metadata("model", &kind)?;
        let resumed = RunState::read(&ck)?;
        trainer.load_state(&ck)?;
        st = resumed;
        log(&format!(
            "resuming {kind} from iteration {} ({})",
            st.step,
            last.display()
        ));
        for n in trainer.take_notes() {
            log(&n);
        }
    }
    let start_step = st.step;
    let start_images = st.images;
    let total_desc = match cfg.length {
        RunLength::Steps(n) => format!("{n}"),
        RunLength::Images(n) => format!("{n} images"),
    };

    let save_last = |st: &RunState, trainer: &dyn Trainer| -> Result<()> {
        let mut w = CheckpointWriter::new();
        w.set_model_info(&kind, &profile, st.step);
        trainer.save_state(&mut w)?;
        st.write(&mut w, metric.as_ref())?;
        w.save(&last)
    };
    let save_weights = |path: &Path, st: &RunState, trainer: &dyn Trainer| -> Result<()> {
        let mut w = CheckpointWriter::new();
        w.set_model_info(&kind, &profile, st.step);
        if let (Some((s, v)), Some(m)) = (st.best, metric.as_ref()) {
            w.set_u64("run.best_step", s)
                .set_f64("run.best_metric", v)
                .set_metadata("run.metric", m.name.clone());
        }
        trainer.save_weights(&mut w)?;
        w.save(path)
    };
    let write_curves = |st: &RunState| -> Result<()> {
        if !cfg.curves {
            return Ok(());
        }
        let mut series = Vec::new();
        for (i, (name, pts)) in st.losses.iter().enumerate() {
            // a running mean keeps a noisy loss readable
            let mut acc = None::<f64>;
            let smooth = pts
                .iter()
                .map(|&(s, l)| {
                    let a = acc.map_or(l, |a| 0.95 * a + 0.05 * l);
                    acc = Some(a);
                    (s as f64, a)
                })
                .collect();
            series.push(Series {
                label: name.clone(),
                rgb: PALETTE[i % PALETTE.len()],
                points: smooth,
            });
        }
        if let Some(m) = &metric
            && !st.metric_curve.is_empty()
        {
            series.push(Series {
                label: m.name.clone(),
                rgb: PALETTE[series.len() % PALETTE.len()],
                points: st
                    .metric_curve
                    .iter()
                    .map(|&(s, v)| (s as f64, v))
                    .collect(),
            });
        }
        if series.iter().all(|s| s.points.is_empty()) {
            return Ok(());
        }
        write_line_plot(
            dir.join("curves.png"),
            &format!("{kind} training"),
            &series,
            640,
            400,
        )
    };

    if st.done(cfg.length) {
        log(&format!(
            "{kind}: {} already reached ({} iterations); nothing to train",
            total_desc, st.step
        ));
    }
    let _signals = cfg.handle_signals.then(SignalGuard::install);
    let t0 = Instant::now();
    let mut stopped = StopReason::Finished;
    let mut shown_loss = None::<f64>;
    // the step whose state `last` holds (nothing new to save before the first step)
    let mut saved_step = st.step;
    while !st.done(cfg.length) {
        if cfg.stop.should_stop() {
            if st.step != saved_step {
                save_last(&st, trainer)?;
                write_curves(&st)?;
            }
            log(&format!(
                "{kind}: interrupted after iteration {}; the training state is in {} and the \
                 same command resumes from there",
                st.step,
                last.display()
            ));
            stopped = StopReason::Interrupted;
            break;
        }
        let out = trainer.step(st.step)?;
        st.step += 1;
        st.images += out.images;
        for &(name, l) in &out.losses {
            if !l.is_finite() {
                return Err(Error::Data(format!(
                    "{kind}: the training loss {name} became {l} at iteration {}",
                    st.step
                )));
            }
            st.losses
                .entry(name.to_string())
                .or_default()
                .push((st.step, l));
        }
        if let Some(&(_, l)) = out.losses.first() {
            shown_loss = Some(shown_loss.map_or(l, |e| 0.9 * e + 0.1 * l));
        }
        let finished = st.done(cfg.length);
        let elapsed = t0.elapsed();
        let out_of_time = !finished && cfg.time_limit.is_some_and(|t| elapsed >= t);
        if !finished && cfg.stop.should_stop() {
            // skip validation: the top of the loop writes `last` and returns
            continue;
        }
        let validate_now =
            finished || out_of_time || (cfg.val_every > 0 && st.step.is_multiple_of(cfg.val_every));
        let log_now = validate_now || (cfg.log_every > 0 && st.step.is_multiple_of(cfg.log_every));
        let mut metric_text = String::new();
        if validate_now && let Some(v) = trainer.validate(st.step)? {
            st.metric_curve.push((st.step, v));
            let name = metric.as_ref().map_or("metric", |m| m.name.as_str());
            metric_text = format!(" {name} {v:.3}");
            let better = match (&metric, st.best) {
                (_, None) => true,
                (Some(m), Some((_, b))) => m.better(v, b),
                (None, Some((_, b))) => v > b,
            };
            if better {
                st.best = Some((st.step, v));
                save_weights(&best_path, &st, trainer)?;
            }
        }
        if log_now {
            let secs = elapsed.as_secs_f64().max(1e-9);
            let done_here = (st.step - start_step) as f64;
            let left = match cfg.length {
                RunLength::Steps(n) => (n - st.step) as f64 * secs / done_here.max(1.0),
                RunLength::Images(n) => {
                    n.saturating_sub(st.images) as f64 * secs
                        / ((st.images - start_images) as f64).max(1.0)
                }
            };
            let left = match cfg.time_limit {
                Some(t) => left.min((t.as_secs_f64() - secs).max(0.0)),
                None => left,
            };
            let loss_text = match (out.losses.first(), shown_loss) {
                (Some((name, _)), Some(l)) => format!(" {name} {l:.4}"),
                _ => String::new(),
            };
            let lr_text = out.lr.map_or(String::new(), |lr| format!(" lr {lr:.2e}"));
            log(&format!(
                "{kind} iter {}/{total_desc}{loss_text}{metric_text}{lr_text} {:.1} img/s ETA {}",
                st.step,
                (st.images - start_images) as f64 / secs,
                fmt_duration(left)
            ));
        }
        if validate_now {
            save_last(&st, trainer)?;
            saved_step = st.step;
            write_curves(&st)?;
        }
        if let Some(k) = cfg.snapshot_every
            && k > 0
            && st.step.is_multiple_of(k)
        {
            save_weights(
                &dir.join(format!("snapshot-{:08}.safetensors", st.step)),
                &st,
                trainer,
            )?;
        }
        if out_of_time {
            log(&format!(
                "{kind}: time limit reached after {} iterations; keeping the best checkpoint",
                st.step
            ));
            stopped = StopReason::TimeLimit;
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(RunOutcome {
        start_step,
        steps_done: st.step,
        images_done: st.images,
        stopped,
        seconds: secs,
        images_per_second: (st.images - start_images) as f64 / secs.max(1e-9),
        best: st.best,
        best_checkpoint: best_path,
        last_checkpoint: last,
        losses: st.losses,
        metric_curve: st.metric_curve,
    })
}
