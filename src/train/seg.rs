//! Training and testing of the segmenters: soft Dice + cross-entropy (with deep supervision for
//! the U-Net), the paper's optimisers, augmentation, validation on held-out slices with the best
//! checkpoint kept, resumable runs, and per-subject 3-D Dice on real test subjects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::autograd::no_grad;
use crate::data::Slice;
use crate::data::annotation::class_to_label;
use crate::data::augment::{AugmentConfig, AugmentParams, augment};
use crate::data::batch::segmenter_batch;
use crate::data::rng::SplitMix64;
use crate::eval::dice::{RegionCounts, SubjectDice};
use crate::io::checkpoint::{Checkpoint, CheckpointWriter};
use crate::models::swin::{SwinConfig, SwinSegmenter};
use crate::models::unet::{UNet, UNetConfig};
use crate::nn::ParamStore;
use crate::ops::loss::{DiceOptions, cross_entropy, one_hot, soft_dice_loss};
use crate::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig, clip_grad_norm};
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// Share of every training batch drawn from slices with tumour (nnU-Net's
/// `oversample_foreground_percent`).
pub const FOREGROUND_OVERSAMPLING: f64 = 0.33;

/// Which segmenter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegKind {
    UNet,
    Swin,
}

impl SegKind {
    pub fn name(self) -> &'static str {
        match self {
            SegKind::UNet => "unet",
            SegKind::Swin => "swin",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "unet" | "u-net" => Ok(SegKind::UNet),
            "swin" => Ok(SegKind::Swin),
            _ => Err(Error::invalid(
                "segmenter",
                format!("'{s}' is not a segmenter; use unet or swin"),
            )),
        }
    }
}

/// Everything a segmenter's training run is decided by.
#[derive(Clone, Debug)]
pub struct SegTrainConfig {
    pub kind: SegKind,
    /// Name of the size profile (recorded in checkpoints).
    pub profile: String,
    pub unet: UNetConfig,
    pub swin: SwinConfig,
    /// Optimiser steps.
    pub iterations: u64,
    pub batch: usize,
    /// Base learning rate (U-Net: SGD, Swin: AdamW).
    pub lr: f64,
    /// Swin: linear warm-up steps before the poly decay.
    pub warmup: u64,
    /// Validate (and keep the best checkpoint) every this many steps.
    pub val_every: u64,
    pub seed: u64,
    /// `None` disables augmentation.
    pub augment: Option<AugmentConfig>,
    /// Stop early (keeping the best so far) once this much time has passed.
    pub time_limit: Option<Duration>,
}

/// A segmenter of either kind, behind one interface.
pub enum Segmenter {
    UNet(UNet),
    Swin(Box<SwinSegmenter>),
}

impl Segmenter {
    pub fn new(kind: SegKind, cfg: &SegTrainConfig, store: &ParamStore) -> Result<Self> {
        let root = store.root();
        Ok(match kind {
            SegKind::UNet => Segmenter::UNet(UNet::new(&root, cfg.unet.clone())?),
            SegKind::Swin => {
                Segmenter::Swin(Box::new(SwinSegmenter::new(&root, cfg.swin.clone())?))
            }
        })
    }

    /// Logits; with deep supervision in training, one per resolution (full first).
    pub fn forward(&self, x: &Tensor, train: bool, rng: &mut SplitMix64) -> Result<Vec<Tensor>> {
        match self {
            Segmenter::UNet(m) => m.forward(x, train),
            Segmenter::Swin(m) => {
                let (y, aux) = m.forward_with_aux(x, train, rng)?;
                Ok(std::iter::once(y).chain(aux).collect())
            }
        }
    }

    pub fn supervision_weights(&self) -> Vec<f64> {
        match self {
            Segmenter::UNet(m) => m.config.supervision_weights(),
            // the UperNet head, then mmseg's auxiliary FCN head (both at full resolution)
            Segmenter::Swin(m) => match m.config.aux_channels {
                Some(_) => vec![1.0, m.config.aux_weight],
                None => vec![1.0],
            },
        }
    }
}

/// Labels at 1/f resolution by nearest sampling (nnU-Net's deep-supervision targets).
fn downsample_classes(classes: &[u8], n: usize, h: usize, w: usize, f: usize) -> Vec<u8> {
    let (oh, ow) = (h / f, w / f);
    let mut out = Vec::with_capacity(n * oh * ow);
    for i in 0..n {
        for y in 0..oh {
            for x in 0..ow {
                out.push(classes[(i * h + y * f) * w + x * f]);
            }
        }
    }
    out
}

/// Soft Dice (foreground classes, over the batch) + cross-entropy, weighted over outputs; each
/// output's targets are sampled at its resolution (1, 1/2, 1/4, … of the labels).
pub fn segmentation_loss(
    outputs: &[Tensor],
    weights: &[f64],
    classes: &[u8],
    n: usize,
    h: usize,
    w: usize,
) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (logits, &wt) in outputs.iter().zip(weights) {
        if wt == 0.0 {
            continue;
        }
        let lh = logits.shape().get(2).copied().unwrap_or(0);
        if lh == 0
            || !h.is_multiple_of(lh)
            || !(h / lh).is_power_of_two()
            || logits.shape()[3] * (h / lh) != w
        {
            return Err(Error::shape(
                "segmentation_loss",
                format!(
                    "logits {:?} are not at 1/2^k of the labels' {h}×{w}",
                    logits.shape()
                ),
            ));
        }
        let f = h / lh;
        let target: Vec<usize> = if f == 1 {
            classes.iter().map(|&c| c as usize).collect()
        } else {
            downsample_classes(classes, n, h, w, f)
                .iter()
                .map(|&c| c as usize)
                .collect()
        };
        let nc = logits.shape()[1];
        let ce = cross_entropy(logits, &target, None, None)?;
        let probs = logits.softmax(1)?;
        let ids: Vec<f64> = target.iter().map(|&c| c as f64).collect();
        let oh = one_hot(
            &Tensor::from_f64s(&ids, &[n, h / f, w / f], logits.dtype())?,
            nc,
        )?;
        // nnU-Net 2-D: batch Dice over the foreground classes
        let dice = soft_dice_loss(
            &probs,
            &oh,
            &DiceOptions {
                batch_dice: true,
                ..DiceOptions::default()
            },
        )?;
        let l = ce.add(&dice)?.mul_scalar(wt)?;
        total = Some(match total {
            Some(t) => t.add(&l)?,
            None => l,
        });
    }
    total.ok_or_else(|| Error::invalid("segmentation_loss", "no output has a non-zero weight"))
}

fn images_tensor(slices: &[&Slice]) -> Result<(Tensor, Vec<u8>, [usize; 4])> {
    let b = segmenter_batch(slices.iter().copied())?;
    let shape = b.images.shape;
    Ok((Tensor::from_vec(b.images.data, &shape)?, b.classes, shape))
}

/// Predicted BraTS labels (0, 1, 2, 4) for each slice, `batch` slices at a time.
pub fn predict_labels(model: &Segmenter, slices: &[Slice], batch: usize) -> Result<Vec<Vec<u8>>> {
    let mut rng = SplitMix64::new(0);
    let mut out = Vec::with_capacity(slices.len());
    no_grad(|| -> Result<()> {
        for chunk in slices.chunks(batch.max(1)) {
            let refs: Vec<&Slice> = chunk.iter().collect();
            let (x, _, shape) = images_tensor(&refs)?;
            let logits = model
                .forward(&x, false, &mut rng)?
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("predict", "model gave no output"))?;
            let v = logits.to_vec_f32()?;
            let (c, hw) = (logits.shape()[1], shape[2] * shape[3]);
            for i in 0..chunk.len() {
                let mut labels = vec![0u8; hw];
                for (p, l) in labels.iter_mut().enumerate() {
                    let mut best = 0;
                    for k in 1..c {
                        if v[(i * c + k) * hw + p] > v[(i * c + best) * hw + p] {
                            best = k;
                        }
                    }
                    *l = class_to_label(best as u8);
                }
                out.push(labels);
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Per-subject 3-D Dice of the model on `slices` (a subject's slices stacked into its volume).
pub fn evaluate(model: &Segmenter, slices: &[Slice], batch: usize) -> Result<SubjectDice> {
    if slices.is_empty() {
        return Err(Error::Data("the test set has no slices".into()));
    }
    if !slices.iter().any(|s| s.tumour_pixels() > 0) {
        return Err(Error::Data(
            "the test set has no slice with tumour, so its Dice would measure nothing".into(),
        ));
    }
    let preds = predict_labels(model, slices, batch)?;
    let mut d = SubjectDice::default();
    for (s, p) in slices.iter().zip(&preds) {
        d.add_slice(&s.subject, p, &s.labels())?;
    }
    Ok(d)
}

/// Mean class Dice over all validation slices pooled (a cheap model-selection score).
fn validation_dice(model: &Segmenter, slices: &[Slice], batch: usize) -> Result<f64> {
    let preds = predict_labels(model, slices, batch)?;
    let mut c = RegionCounts::default();
    for (s, p) in slices.iter().zip(&preds) {
        c.add(p, &s.labels())?;
    }
    Ok(c.mean_class_dice())
}

/// What a training run produced.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    pub best_checkpoint: PathBuf,
    pub best_val_dice: f64,
    pub best_iteration: u64,
    pub iterations_done: u64,
    pub seconds: f64,
    pub images_per_second: f64,
    /// (iteration, training loss) samples for a curve.
    pub loss_curve: Vec<(u64, f64)>,
    /// (iteration, validation Dice).
    pub val_curve: Vec<(u64, f64)>,
}

/// Train a segmenter on `train` slices, selecting the checkpoint by Dice on `val` slices.
/// Checkpoints go to `out_dir` (`last.safetensors` for resuming, `best.safetensors`); an
/// existing `last.safetensors` there is resumed from.
pub fn train_segmenter(
    cfg: &SegTrainConfig,
    train: &[Slice],
    val: &[Slice],
    out_dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<TrainOutcome> {
    if train.is_empty() {
        return Err(Error::Data("the training set has no slices".into()));
    }
    if val.is_empty() {
        return Err(Error::Data("the validation set has no slices".into()));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let store = ParamStore::with_dtype(cfg.seed, DType::F32);
    let model = Segmenter::new(cfg.kind, cfg, &store)?;
    // the paper's optimisers: nnU-Net's SGD (Nesterov 0.99, poly 0.9) and UperNet's AdamW
    // (warm-up, then poly 1.0)
    let (schedule, mut opt): (LrSchedule, Box<dyn Optimizer>) = match cfg.kind {
        SegKind::UNet => (
            LrSchedule::poly(cfg.lr, cfg.iterations, 0.9),
            Box::new(Sgd::new(
                &store,
                SgdConfig::new(cfg.lr)
                    .with_momentum(0.99)
                    .with_nesterov(true)
                    .with_weight_decay(3e-5),
            )?),
        ),
        SegKind::Swin => (
            LrSchedule::poly(cfg.lr, cfg.iterations, 1.0).with_warmup(cfg.warmup, 1e-6),
            Box::new(Adam::new(
                &store,
                AdamConfig::adamw(cfg.lr)
                    .with_betas(0.9, 0.999)
                    .with_weight_decay(0.01),
            )?),
        ),
    };
    let last = out_dir.join("last.safetensors");
    let best = out_dir.join("best.safetensors");
    let save = |path: &Path,
                it: u64,
                best_dice: f64,
                best_it: u64,
                opt: Option<&dyn Optimizer>|
     -> Result<()> {
        let mut w = CheckpointWriter::new();
        w.set_model_info(cfg.kind.name(), &cfg.profile, it)
            .set_metadata("best_val_dice", best_dice.to_string())
            .set_metadata("best_iteration", best_it.to_string())
            .add_store("", &store);
        if let Some(o) = opt {
            w.add_optimizer(o);
        }
        w.save(path)
    };
    let mut start = 0u64;
    let (mut best_dice, mut best_it) = (f64::NEG_INFINITY, 0u64);
    if last.exists() {
        let ck = Checkpoint::open(&last)?;
        ck.expect_metadata("model", cfg.kind.name())?;
        ck.load_store("", &store)?;
        ck.load_optimizer(opt.as_ref())?;
        start = ck.step().unwrap_or(0);
        best_dice = ck
            .meta("best_val_dice")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NEG_INFINITY);
        best_it = ck
            .meta("best_iteration")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        log(&format!(
            "resuming {} from iteration {start} ({})",
            cfg.kind.name(),
            last.display()
        ));
    }
    let mut rng = SplitMix64::derive(cfg.seed, 0x5E6 + start);
    let weights = model.supervision_weights();
    let all: Vec<&Slice> = train.iter().collect();
    let with_tumour: Vec<&Slice> = train.iter().filter(|s| s.tumour_pixels() > 0).collect();
    let t0 = Instant::now();
    let mut images = 0usize;
    let mut loss_curve = Vec::new();
    let mut val_curve = Vec::new();
    let mut ema_loss = None::<f64>;
    let mut it = start;
    while it < cfg.iterations {
        // a batch of randomly drawn, augmented training slices; as nnU-Net, a third of each
        // batch is drawn from slices that hold tumour so the rare classes are always seen
        let forced = (cfg.batch as f64 * FOREGROUND_OVERSAMPLING).round() as usize;
        let picked: Vec<Slice> = (0..cfg.batch)
            .map(|k| {
                let pool = if k >= cfg.batch - forced && !with_tumour.is_empty() {
                    &with_tumour
                } else {
                    &all
                };
                let s = pool[rng.below(pool.len() as u64) as usize];
                match &cfg.augment {
                    Some(a) => augment(s, &AugmentParams::sample(a, &mut rng)),
                    None => s.clone(),
                }
            })
            .collect();
        let refs: Vec<&Slice> = picked.iter().collect();
        let (x, classes, shape) = images_tensor(&refs)?;
        let outs = model.forward(&x, true, &mut rng)?;
        let loss = segmentation_loss(&outs, &weights, &classes, shape[0], shape[2], shape[3])?;
        store.zero_grad();
        loss.backward()?;
        let lr = schedule.lr_at(it);
        if cfg.kind == SegKind::UNet {
            // nnU-Net clips the gradient norm at 12
            clip_grad_norm(&store.trainable_tensors(), 12.0)?;
        }
        opt.set_lr(lr);
        opt.step()?;
        it += 1;
        images += cfg.batch;
        let l = loss.item()?;
        if !l.is_finite() {
            return Err(Error::Data(format!(
                "{}: the training loss became {l} at iteration {it}",
                cfg.kind.name()
            )));
        }
        ema_loss = Some(ema_loss.map_or(l, |e| 0.9 * e + 0.1 * l));
        loss_curve.push((it, l));
        let out_of_time = cfg.time_limit.is_some_and(|t| t0.elapsed() >= t);
        if it.is_multiple_of(cfg.val_every) || it == cfg.iterations || out_of_time {
            let d = validation_dice(&model, val, cfg.batch * 2)?;
            val_curve.push((it, d));
            let secs = t0.elapsed().as_secs_f64();
            log(&format!(
                "{} iter {it}/{} loss {:.4} val dice {d:.3} lr {lr:.2e} {:.1} img/s",
                cfg.kind.name(),
                cfg.iterations,
                ema_loss.unwrap_or(l),
                images as f64 / secs.max(1e-9)
            ));
            if d > best_dice {
                best_dice = d;
                best_it = it;
                save(&best, it, best_dice, best_it, None)?;
            }
            save(&last, it, best_dice, best_it, Some(opt.as_ref()))?;
        }
        if out_of_time {
            log(&format!(
                "{}: time limit reached after {it} iterations; keeping the best checkpoint",
                cfg.kind.name()
            ));
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(TrainOutcome {
        best_checkpoint: best,
        best_val_dice: best_dice,
        best_iteration: best_it,
        iterations_done: it,
        seconds: secs,
        images_per_second: images as f64 / secs.max(1e-9),
        loss_curve,
        val_curve,
    })
}

/// Rebuild a segmenter from a checkpoint written by [`train_segmenter`].
pub fn load_segmenter(cfg: &SegTrainConfig, path: &Path) -> Result<Segmenter> {
    let store = ParamStore::with_dtype(cfg.seed, DType::F32);
    let model = Segmenter::new(cfg.kind, cfg, &store)?;
    let ck = Checkpoint::open(path)?;
    ck.expect_metadata("model", cfg.kind.name())?;
    ck.load_store("", &store)?;
    Ok(model)
}
