//! Training and testing of the segmenters: soft Dice + cross-entropy (with deep supervision for
//! the U-Net), the paper's optimisers, augmentation, validation on held-out slices with the best
//! checkpoint kept, resumable runs, and per-subject 3-D Dice on real test subjects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::autograd::no_grad;
use crate::data::Slice;
use crate::data::annotation::class_to_label;
use crate::data::augment::{AugmentConfig, AugmentParams, augment};
use crate::data::batch::segmenter_batch;
use crate::eval::dice::{RegionCounts, SubjectDice};
use crate::io::checkpoint::{Checkpoint, CheckpointWriter, OPTIM_SECTION};
use crate::models::swin::{SwinConfig, SwinSegmenter};
use crate::models::unet::{UNet, UNetConfig};
use crate::nn::ParamStore;
use crate::ops::loss::{DiceOptions, cross_entropy, one_hot, soft_dice_loss};
use crate::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig, clip_grad_norm};
use crate::rng::SplitMix64;
use crate::tensor::{DType, Device, Tensor};
use crate::train::interrupt::StopToken;
use crate::train::runner::{Metric, RunConfig, RunLength, StepOutput, StopReason, Trainer, run};
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
    /// Where the model, its optimiser state and the batches live.
    pub device: Device,
}

enum SegNet {
    UNet(UNet),
    Swin(Box<SwinSegmenter>),
}

/// A segmenter of either kind, behind one interface, with the store that holds its weights.
pub struct Segmenter {
    net: SegNet,
    store: ParamStore,
}

impl Segmenter {
    /// Build the network in `store` (on the store's device).
    pub fn new(kind: SegKind, cfg: &SegTrainConfig, store: &ParamStore) -> Result<Self> {
        let root = store.root();
        let net = match kind {
            SegKind::UNet => SegNet::UNet(UNet::new(&root, cfg.unet.clone())?),
            SegKind::Swin => SegNet::Swin(Box::new(SwinSegmenter::new(&root, cfg.swin.clone())?)),
        };
        Ok(Segmenter {
            net,
            store: store.clone(),
        })
    }

    pub fn kind(&self) -> SegKind {
        match self.net {
            SegNet::UNet(_) => SegKind::UNet,
            SegNet::Swin(_) => SegKind::Swin,
        }
    }

    /// The parameters and buffers.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Where the weights live (inputs are moved there).
    pub fn device(&self) -> Device {
        self.store.device()
    }

    /// Logits; with deep supervision in training, one per resolution (full first).
    pub fn forward(&self, x: &Tensor, train: bool, rng: &mut SplitMix64) -> Result<Vec<Tensor>> {
        let x = x.to_device(self.device())?;
        match &self.net {
            SegNet::UNet(m) => m.forward(&x, train),
            SegNet::Swin(m) => {
                let (y, aux) = m.forward_with_aux(&x, train, rng)?;
                Ok(std::iter::once(y).chain(aux).collect())
            }
        }
    }

    /// The U-Net's bottleneck features of x (None for the Swin), for feature-space measures.
    pub fn unet_bottleneck(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match &self.net {
            SegNet::UNet(m) => m.bottleneck(&x.to_device(self.device())?).map(Some),
            SegNet::Swin(_) => Ok(None),
        }
    }

    pub fn supervision_weights(&self) -> Vec<f64> {
        match &self.net {
            SegNet::UNet(m) => m.config.supervision_weights(),
            // the UperNet head, then mmseg's auxiliary FCN head (both at full resolution)
            SegNet::Swin(m) => match m.config.aux_channels {
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
            &Tensor::from_f64s(&ids, &[n, h / f, w / f], logits.dtype())?
                .to_device(logits.device())?,
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
    /// Iterations done in total (including those before a resume).
    pub iterations_done: u64,
    /// Seconds and images/s of this session.
    pub seconds: f64,
    pub images_per_second: f64,
    /// (iteration, training loss) at every iteration of the whole run (resumes included).
    pub loss_curve: Vec<(u64, f64)>,
    /// (iteration, validation Dice).
    pub val_curve: Vec<(u64, f64)>,
    /// Why the run returned (finished, out of time, interrupted).
    pub stopped: StopReason,
}

/// Name of the batch-drawing random stream in checkpoints.
const BATCH_RNG: &str = "batch";

/// A segmenter's training as a [`Trainer`]: one SGD/AdamW step on a drawn, augmented batch.
pub struct SegTrainer<'a> {
    cfg: &'a SegTrainConfig,
    model: Segmenter,
    opt: Box<dyn Optimizer>,
    schedule: LrSchedule,
    /// Draws the batches, their augmentation and the Swin's dropout; saved in `last`.
    rng: SplitMix64,
    train_all: Vec<&'a Slice>,
    train_tumour: Vec<&'a Slice>,
    val: &'a [Slice],
    weights: Vec<f64>,
    /// Notes for the user from loading (a checkpoint without the batch stream).
    notes: Vec<String>,
}

impl<'a> SegTrainer<'a> {
    /// The model and its optimiser on `cfg.device`, initialised from `cfg.seed`.
    pub fn new(cfg: &'a SegTrainConfig, train: &'a [Slice], val: &'a [Slice]) -> Result<Self> {
        if train.is_empty() {
            return Err(Error::Data("the training set has no slices".into()));
        }
        if val.is_empty() {
            return Err(Error::Data("the validation set has no slices".into()));
        }
        if cfg.batch == 0 {
            return Err(Error::invalid(
                "train-seg",
                "the batch size must be at least 1",
            ));
        }
        check_device(cfg.device)?;
        let store = ParamStore::with_dtype(cfg.seed, DType::F32);
        store.set_device(cfg.device);
        let model = Segmenter::new(cfg.kind, cfg, &store)?;
        // the paper's optimisers: nnU-Net's SGD (Nesterov 0.99, poly 0.9) and UperNet's AdamW
        // (warm-up, then poly 1.0)
        let (schedule, opt): (LrSchedule, Box<dyn Optimizer>) = match cfg.kind {
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
        let weights = model.supervision_weights();
        Ok(SegTrainer {
            cfg,
            model,
            opt,
            schedule,
            rng: batch_rng(cfg.seed, 0),
            train_all: train.iter().collect(),
            train_tumour: train.iter().filter(|s| s.tumour_pixels() > 0).collect(),
            val,
            weights,
            notes: Vec::new(),
        })
    }

    pub fn model(&self) -> &Segmenter {
        &self.model
    }
}

/// The batch stream of a run that starts at `step` (only a fresh run, or a checkpoint written
/// before the stream was saved, starts from here).
fn batch_rng(seed: u64, step: u64) -> SplitMix64 {
    SplitMix64::derive(seed, 0x5E6 + step)
}

/// One clear error up front when the device cannot be used (no `cuda` feature, no driver, no
/// such GPU), instead of a failure deep inside the first layer.
pub fn check_device(device: Device) -> Result<()> {
    if device == Device::Cpu {
        return Ok(());
    }
    Tensor::zeros(&[1], DType::F32)
        .to_device(device)
        .map(|_| ())
        .map_err(|e| Error::Device {
            op: "device",
            msg: format!("cannot train or evaluate on {device}: {e}"),
        })
}

impl Trainer for SegTrainer<'_> {
    fn kind(&self) -> &str {
        self.cfg.kind.name()
    }
    fn profile(&self) -> &str {
        &self.cfg.profile
    }

    fn step(&mut self, step: u64) -> Result<StepOutput> {
        let cfg = self.cfg;
        // a batch of randomly drawn, augmented training slices; as nnU-Net, a third of each
        // batch is drawn from slices that hold tumour so the rare classes are always seen
        let forced = (cfg.batch as f64 * FOREGROUND_OVERSAMPLING).round() as usize;
        let rng = &mut self.rng;
        let picked: Vec<Slice> = (0..cfg.batch)
            .map(|k| {
                let pool = if k >= cfg.batch - forced && !self.train_tumour.is_empty() {
                    &self.train_tumour
                } else {
                    &self.train_all
                };
                let s = pool[rng.below(pool.len() as u64) as usize];
                match &cfg.augment {
                    Some(a) => augment(s, &AugmentParams::sample(a, rng)),
                    None => s.clone(),
                }
            })
            .collect();
        let refs: Vec<&Slice> = picked.iter().collect();
        let (x, classes, shape) = images_tensor(&refs)?;
        let outs = self.model.forward(&x, true, &mut self.rng)?;
        let loss = segmentation_loss(&outs, &self.weights, &classes, shape[0], shape[2], shape[3])?;
        let store = self.model.store();
        store.zero_grad();
        loss.backward()?;
        let lr = self.schedule.lr_at(step);
        if cfg.kind == SegKind::UNet {
            // nnU-Net clips the gradient norm at 12
            clip_grad_norm(&store.trainable_tensors(), 12.0)?;
        }
        self.opt.set_lr(lr);
        self.opt.step()?;
        Ok(StepOutput {
            losses: vec![("loss", loss.item()?)],
            images: cfg.batch as u64,
            lr: Some(lr),
        })
    }

    fn save_state(&self, w: &mut CheckpointWriter) -> Result<()> {
        w.add_store("", self.model.store())
            .add_optimizer(self.opt.as_ref())
            .set_rng(BATCH_RNG, &self.rng);
        Ok(())
    }

    fn load_state(&mut self, ck: &Checkpoint) -> Result<()> {
        ck.expect_metadata("model", self.cfg.kind.name())?;
        let store = self.model.store();
        ck.check_into("", &store.named_tensors(), "model")?;
        ck.expect_metadata("optimizer", self.opt.kind())?;
        ck.check_into(OPTIM_SECTION, &self.opt.state_tensors(), "optimizer")?;
        let rng = if ck.has_rng(BATCH_RNG) {
            ck.rng(BATCH_RNG)?
        } else {
            let step = ck.step().unwrap_or(0);
            self.notes.push(format!(
                "{} records no batch stream (written by an older version): batches after \
                 iteration {step} differ from an uninterrupted run",
                ck.path().display()
            ));
            batch_rng(self.cfg.seed, step)
        };
        ck.load_store("", store)?;
        ck.load_optimizer(self.opt.as_ref())?;
        self.rng = rng;
        Ok(())
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn save_weights(&self, w: &mut CheckpointWriter) -> Result<()> {
        w.add_store("", self.model.store());
        Ok(())
    }

    fn metric(&self) -> Option<Metric> {
        Some(Metric {
            name: "val dice".into(),
            higher_is_better: true,
        })
    }

    fn validate(&mut self, _step: u64) -> Result<Option<f64>> {
        validation_dice(&self.model, self.val, self.cfg.batch * 2).map(Some)
    }
}

/// Train a segmenter on `train` slices, selecting the checkpoint by Dice on `val` slices.
/// Checkpoints go to `out_dir` (`last.safetensors` for resuming, `best.safetensors`,
/// `curves.png`); an existing `last.safetensors` there is resumed from, exactly (see
/// [`crate::train::runner`]). SIGINT/SIGTERM stop it cleanly after the current step.
pub fn train_segmenter(
    cfg: &SegTrainConfig,
    train: &[Slice],
    val: &[Slice],
    out_dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<TrainOutcome> {
    train_segmenter_with(cfg, train, val, out_dir, &StopToken::new(), log)
}

/// [`train_segmenter`] that also stops when `stop` is raised.
pub fn train_segmenter_with(
    cfg: &SegTrainConfig,
    train: &[Slice],
    val: &[Slice],
    out_dir: &Path,
    stop: &StopToken,
    log: &mut dyn FnMut(&str),
) -> Result<TrainOutcome> {
    let mut trainer = SegTrainer::new(cfg, train, val)?;
    let mut rc = RunConfig::new(out_dir, RunLength::Steps(cfg.iterations));
    rc.time_limit = cfg.time_limit;
    rc.val_every = cfg.val_every.max(1);
    rc.stop = stop.clone();
    let o = run(&mut trainer, &rc, log)?;
    let (best_iteration, best_val_dice) = o.best.unwrap_or((0, f64::NEG_INFINITY));
    Ok(TrainOutcome {
        best_checkpoint: o.best_checkpoint,
        best_val_dice,
        best_iteration,
        iterations_done: o.steps_done,
        seconds: o.seconds,
        images_per_second: o.images_per_second,
        loss_curve: o.losses.get("loss").cloned().unwrap_or_default(),
        val_curve: o.metric_curve,
        stopped: o.stopped,
    })
}

/// Rebuild a segmenter from a checkpoint written by [`train_segmenter`].
pub fn load_segmenter(cfg: &SegTrainConfig, path: &Path) -> Result<Segmenter> {
    check_device(cfg.device)?;
    let store = ParamStore::with_dtype(cfg.seed, DType::F32);
    store.set_device(cfg.device);
    let model = Segmenter::new(cfg.kind, cfg, &store)?;
    let ck = Checkpoint::open(path)?;
    ck.expect_metadata("model", cfg.kind.name())?;
    ck.load_store("", &store)?;
    Ok(model)
}
