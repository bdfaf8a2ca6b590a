//! Training and sampling of the denoising diffusion generator, as guided-diffusion's
//! `image_train.py` / `image_sample.py` with the study's flags: batches of real slices with all
//! five channels in [−1, 1] (random left–right flips, `load_data`'s default), uniform t, the
//! ε-MSE loss, AdamW (lr 1e-4, no weight decay), optional gradient clipping, an EMA at 0.9999
//! and a faster one that means something after a short run.
//!
//! Checkpoint sections: `model`, `ema`, `ema_fast`, `opt` (AdamW state) and the batch stream
//! `rng.batch`; the network's and the process's sizes are in the metadata under `diffusion.*`,
//! so [`load_generator`] rebuilds the model from the file alone. Every step draws its t, ε,
//! flips and dropout from a generator seeded by the saved batch stream, so a run stopped at step
//! k and resumed is the same bits as one that never stopped.
//!
//! At every validation point the trainer writes `samples-<step>.png`: a grid drawn from fixed
//! seeds with the cheap respaced sampler, so grids of one run compare image for image.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::data::Slice;
use crate::data::batch::{Nchw, generator_batch, slices_from_generator};
use crate::data::slices::CHANNELS;
use crate::io::checkpoint::{Checkpoint, CheckpointWriter};
use crate::io::png::{MontageOptions, write_montage};
use crate::models::diffusion::train_step::STUDY_EMA_RATE;
use crate::models::diffusion::{
    BetaSchedule, Diffusion, DiffusionUNet, DiffusionUNetConfig, FixedVariance, Sampler, Schedule,
    draw_t_noise, study_optimizer_config, train_step,
};
use crate::nn::ParamStore;
use crate::optim::{Adam, Ema};
use crate::rng::SplitMix64;
use crate::tensor::{DType, Device, Tensor};
use crate::train::runner::{RunConfig, RunLength, RunOutcome, StepOutput, Trainer, run};
use crate::train::seg::check_device;
use crate::{Error, Result};

/// Model kind recorded in checkpoints.
pub const KIND: &str = "diffusion";
const OP: &str = "train-gen diffusion";
const MODEL: &str = "model";
const EMA_SLOW: &str = "ema";
const EMA_FAST: &str = "ema_fast";
const OPT: &str = "opt";
const BATCH_RNG: &str = "batch";
/// Seed of the sample grids (fixed, so every grid of a run shows the same noise).
const GRID_SEED: u64 = 0xD1FF;

/// Which weights to sample from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmaChoice {
    /// The study's EMA (rate 0.9999): the one to use after a long run.
    Slow,
    /// The faster EMA: after a few thousand steps the slow one is still mostly the initial
    /// weights.
    Fast,
    /// The live weights.
    Raw,
}

impl EmaChoice {
    pub fn name(self) -> &'static str {
        match self {
            EmaChoice::Slow => "ema",
            EmaChoice::Fast => "ema-fast",
            EmaChoice::Raw => "raw",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ema" | "slow" => Ok(EmaChoice::Slow),
            "ema-fast" | "fast" => Ok(EmaChoice::Fast),
            "raw" | "model" => Ok(EmaChoice::Raw),
            _ => Err(Error::invalid(
                "diffusion",
                format!("'{s}' names no weights; use ema, ema-fast or raw"),
            )),
        }
    }
    fn section(self) -> &'static str {
        match self {
            EmaChoice::Slow => EMA_SLOW,
            EmaChoice::Fast => EMA_FAST,
            EmaChoice::Raw => MODEL,
        }
    }
}

/// Everything a diffusion training run is decided by.
#[derive(Clone, Debug)]
pub struct DiffusionTrainConfig {
    /// Name of the size profile (recorded in checkpoints).
    pub profile: String,
    pub net: DiffusionUNetConfig,
    /// Steps T of the process (`--diffusion_steps`).
    pub diffusion_steps: usize,
    pub noise_schedule: BetaSchedule,
    pub batch: usize,
    /// AdamW learning rate (no weight decay).
    pub lr: f64,
    /// The study's EMA rate.
    pub ema_rate: f64,
    /// The faster EMA's rate.
    pub fast_ema_rate: f64,
    /// Bound on the gradient norm (None: no clipping, the study's setting).
    pub clip: Option<f64>,
    /// Random left–right flips of the training slices.
    pub random_flip: bool,
    /// Optimiser steps.
    pub steps: u64,
    /// Write `last` and a sample grid every this many steps.
    pub sample_every: u64,
    /// Images in each grid.
    pub grid_images: usize,
    /// The grids' sampler (respaced, so they are cheap).
    pub grid_sampler: Sampler,
    /// The weights the grids (and, by default, `generate`) sample from.
    pub sample_ema: EmaChoice,
    pub seed: u64,
    pub time_limit: Option<Duration>,
    pub device: Device,
}

impl DiffusionTrainConfig {
    /// The process this run trains (fixed-large variance, as the study's flags imply), sampling
    /// on the run's device.
    pub fn diffusion(&self) -> Result<Diffusion> {
        let betas = self.noise_schedule.betas(self.diffusion_steps)?;
        Ok(Diffusion::new(Schedule::new(betas, FixedVariance::Large)?).on(self.device))
    }

    fn check(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::invalid(OP, "the batch size must be at least 1"));
        }
        if self.net.in_channels != CHANNELS || self.net.out_channels != CHANNELS {
            return Err(Error::invalid(
                OP,
                format!(
                    "the model must see and predict the slices' {CHANNELS} channels, not {} → {}",
                    self.net.in_channels, self.net.out_channels
                ),
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid(
                OP,
                format!("learning rate {} must be > 0", self.lr),
            ));
        }
        for r in [self.ema_rate, self.fast_ema_rate] {
            if !(0.0..1.0).contains(&r) {
                return Err(Error::invalid(
                    OP,
                    format!("EMA rate {r} must lie in [0, 1)"),
                ));
            }
        }
        if let Some(c) = self.clip
            && !(c > 0.0 && c.is_finite())
        {
            return Err(Error::invalid(OP, format!("gradient clip {c} must be > 0")));
        }
        check_sampler(self.grid_sampler, self.diffusion_steps)
    }
}

impl DiffusionTrainConfig {
    /// `quick`: 64×64 phantom slices on two CPU cores. A narrow U-Net (32 channels, multipliers
    /// 1,2,2,2, one res block per level, attention at 16 and 8 with 4 heads) over guided-diffusion's
    /// default 1000 linear steps, batch 8 and lr 2e-4, so the phantom's head shape appears within
    /// the ten-minute time limit; grids and `generate` use the fast EMA (rate 0.995).
    pub fn quick(seed: u64) -> Self {
        let mut net = DiffusionUNetConfig::guided_defaults(64, CHANNELS, 32, 1)
            .expect("64 is a supported size");
        net.channel_mult = vec![1, 2, 2, 2];
        DiffusionTrainConfig {
            profile: "quick".into(),
            net,
            diffusion_steps: 1000,
            noise_schedule: BetaSchedule::Linear,
            batch: 8,
            lr: 2e-4,
            ema_rate: STUDY_EMA_RATE,
            fast_ema_rate: 0.995,
            clip: Some(1.0),
            random_flip: true,
            steps: 20_000,
            sample_every: 100,
            grid_images: 8,
            grid_sampler: Sampler::Respaced(50),
            sample_ema: EmaChoice::Fast,
            seed,
            time_limit: Some(Duration::from_secs(600)),
            device: Device::Cpu,
        }
    }

    /// `paper`: the study's flags (`--image_size 256 --num_channels 64 --num_res_blocks 3
    /// --diffusion_steps 4000 --noise_schedule linear --lr 1e-4 --batch_size 32`, the rest at
    /// guided-diffusion's defaults: EMA 0.9999, no clipping, flips). The study does not state
    /// its training length; 200k steps is this profile's choice. Grids use respaced 100.
    pub fn paper(seed: u64) -> Self {
        DiffusionTrainConfig {
            profile: "paper".into(),
            net: DiffusionUNetConfig::paper(),
            diffusion_steps: 4000,
            noise_schedule: BetaSchedule::Linear,
            batch: 32,
            lr: 1e-4,
            ema_rate: STUDY_EMA_RATE,
            fast_ema_rate: 0.999,
            clip: None,
            random_flip: true,
            steps: 200_000,
            sample_every: 5000,
            grid_images: 8,
            grid_sampler: Sampler::Respaced(100),
            sample_ema: EmaChoice::Slow,
            seed,
            time_limit: None,
            device: Device::Cpu,
        }
    }

    /// The profile called `name` ("quick" or "paper").
    pub fn for_profile(name: &str, seed: u64) -> Result<Self> {
        match name {
            "quick" => Ok(Self::quick(seed)),
            "paper" => Ok(Self::paper(seed)),
            _ => Err(Error::invalid(
                "profile",
                format!("'{name}' is not a diffusion profile; use quick or paper"),
            )),
        }
    }
}

/// A sampler's K must lie in 1..=T.
pub fn check_sampler(s: Sampler, steps: usize) -> Result<()> {
    match s {
        Sampler::Ancestral => Ok(()),
        Sampler::Respaced(k) | Sampler::Ddim(k) if k >= 1 && k <= steps => Ok(()),
        Sampler::Respaced(k) | Sampler::Ddim(k) => Err(Error::invalid(
            "sampler",
            format!("{k} sampling steps do not fit a {steps}-step process; use 1 to {steps}"),
        )),
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn schedule_name(s: BetaSchedule) -> &'static str {
    match s {
        BetaSchedule::Linear => "linear",
        BetaSchedule::Cosine => "cosine",
    }
}

/// The network's and the process's sizes, as checkpoint metadata.
fn write_meta(w: &mut CheckpointWriter, cfg: &DiffusionTrainConfig) {
    let n = &cfg.net;
    let opt = |v: Option<usize>| v.map_or("none".to_string(), |v| v.to_string());
    w.set_metadata("diffusion.image_size", n.image_size.to_string())
        .set_metadata("diffusion.in_channels", n.in_channels.to_string())
        .set_metadata("diffusion.model_channels", n.model_channels.to_string())
        .set_metadata("diffusion.out_channels", n.out_channels.to_string())
        .set_metadata("diffusion.num_res_blocks", n.num_res_blocks.to_string())
        .set_metadata("diffusion.attention_ds", join(&n.attention_ds))
        .set_metadata("diffusion.channel_mult", join(&n.channel_mult))
        .set_metadata("diffusion.num_heads", n.num_heads.to_string())
        .set_metadata("diffusion.num_head_channels", opt(n.num_head_channels))
        .set_metadata("diffusion.num_heads_upsample", opt(n.num_heads_upsample))
        .set_metadata("diffusion.scale_shift", n.use_scale_shift_norm.to_string())
        .set_metadata("diffusion.dropout", n.dropout.to_string())
        .set_metadata("diffusion.steps", cfg.diffusion_steps.to_string())
        .set_metadata(
            "diffusion.noise_schedule",
            schedule_name(cfg.noise_schedule),
        )
        .set_metadata("diffusion.sample_ema", cfg.sample_ema.name());
}

fn meta<T: std::str::FromStr>(ck: &Checkpoint, key: &str) -> Result<T> {
    let full = format!("diffusion.{key}");
    let v = ck.meta(&full).ok_or_else(|| Error::Checkpoint {
        path: ck.path().to_path_buf(),
        msg: format!("records no {full:?}, so it is not a diffusion model brainsynth wrote"),
    })?;
    v.parse().map_err(|_| Error::Checkpoint {
        path: ck.path().to_path_buf(),
        msg: format!("metadata {full:?} is {v:?}, which is not valid"),
    })
}

fn meta_list(ck: &Checkpoint, key: &str) -> Result<Vec<usize>> {
    let s: String = meta(ck, key)?;
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|v| {
            v.parse().map_err(|_| Error::Checkpoint {
                path: ck.path().to_path_buf(),
                msg: format!("metadata diffusion.{key} is {s:?}, not a list of sizes"),
            })
        })
        .collect()
}

fn meta_opt(ck: &Checkpoint, key: &str) -> Result<Option<usize>> {
    let s: String = meta(ck, key)?;
    if s == "none" {
        return Ok(None);
    }
    meta(ck, key).map(Some)
}

/// A diffusion generator read back from a checkpoint: the network with the chosen weights and
/// the process it was trained on.
pub struct DiffusionGenerator {
    pub net: DiffusionUNet,
    pub store: ParamStore,
    pub diffusion: Diffusion,
    /// Which weights were loaded.
    pub weights: EmaChoice,
}

impl DiffusionGenerator {
    pub fn image_size(&self) -> usize {
        self.net.config.image_size
    }

    /// `n` samples `[n, 5, s, s]` in [−1, 1], drawn `batch` at a time from `seed` (same seed,
    /// same sampler ⇒ same images).
    pub fn sample(&self, sampler: Sampler, n: usize, batch: usize, seed: u64) -> Result<Nchw> {
        check_sampler(sampler, self.diffusion.num_steps())?;
        if n == 0 || batch == 0 {
            return Err(Error::invalid(
                "generate",
                "the number of images and the batch size must be at least 1",
            ));
        }
        let s = self.image_size();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(n * CHANNELS * s * s);
        let eps = |x: &Tensor, t: &Tensor| self.net.forward(x, t);
        let mut done = 0;
        while done < n {
            let b = batch.min(n - done);
            let x =
                self.diffusion
                    .sample(&eps, sampler, &[b, CHANNELS, s, s], DType::F32, &mut rng)?;
            data.extend(x.to_device(Device::Cpu)?.to_vec_f32()?);
            done += b;
        }
        Ok(Nchw {
            data,
            shape: [n, CHANNELS, s, s],
        })
    }
}

/// Rebuild the generator in `path` (a `last`, `best` or snapshot file of a diffusion run) with
/// the weights `weights` (None: those the run sampled its grids from), on `device` (where it
/// samples, whichever device it was trained on).
pub fn load_generator(
    path: &Path,
    weights: Option<EmaChoice>,
    device: Device,
) -> Result<DiffusionGenerator> {
    crate::train::seg::check_device(device)?;
    let ck = Checkpoint::open(path)?;
    match ck.meta("model") {
        Some(KIND) => {}
        Some(other) => {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                msg: format!("holds a {other} model, not a diffusion model"),
            });
        }
        None => {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                msg: "records no model kind, so it is not a brainsynth training checkpoint".into(),
            });
        }
    }
    let net = DiffusionUNetConfig {
        image_size: meta(&ck, "image_size")?,
        in_channels: meta(&ck, "in_channels")?,
        model_channels: meta(&ck, "model_channels")?,
        out_channels: meta(&ck, "out_channels")?,
        num_res_blocks: meta(&ck, "num_res_blocks")?,
        attention_ds: meta_list(&ck, "attention_ds")?,
        channel_mult: meta_list(&ck, "channel_mult")?,
        num_heads: meta(&ck, "num_heads")?,
        num_head_channels: meta_opt(&ck, "num_head_channels")?,
        num_heads_upsample: meta_opt(&ck, "num_heads_upsample")?,
        use_scale_shift_norm: meta(&ck, "scale_shift")?,
        dropout: meta(&ck, "dropout")?,
    };
    let steps: usize = meta(&ck, "steps")?;
    let schedule = BetaSchedule::parse(&meta::<String>(&ck, "noise_schedule")?)?;
    let weights = match weights {
        Some(w) => w,
        None => EmaChoice::parse(&meta::<String>(&ck, "sample_ema")?)?,
    };
    let store = ParamStore::with_dtype(0, DType::F32);
    store.set_device(device);
    let model = DiffusionUNet::new(&store.root(), net)?;
    ck.load_network(weights.section(), &store)?;
    let diffusion =
        Diffusion::new(Schedule::new(schedule.betas(steps)?, FixedVariance::Large)?).on(device);
    Ok(DiffusionGenerator {
        net: model,
        store,
        diffusion,
        weights,
    })
}

/// Generated `[n, 5, s, s]` images as study slices named `subject` (annotation decoded with the
/// study's thresholds).
pub fn to_slices(images: &Nchw, subject: &str) -> Result<Vec<Slice>> {
    slices_from_generator(&images.data, images.shape, subject)
}

/// The diffusion model's training as a [`Trainer`].
pub struct DiffusionTrainer<'a> {
    cfg: &'a DiffusionTrainConfig,
    out_dir: PathBuf,
    net: DiffusionUNet,
    store: ParamStore,
    diffusion: Diffusion,
    opt: Adam,
    ema: Ema,
    ema_fast: Ema,
    /// Seeds each step's generator (t, ε, flips, dropout); saved in `last`.
    rng: SplitMix64,
    train: &'a [Slice],
}

/// The fast EMA's decay at optimiser step `step` (0-based): the usual warm-up
/// min(rate, (1 + step) / (10 + step)), so that a short run's average is not dominated by the
/// zero-initialised output layer it started from (at rate 0.995 and no warm-up, a third of the
/// weights after 200 steps would still be the initial ones). The slow EMA stays guided-diffusion's
/// plain 0.9999.
pub fn fast_ema_beta(rate: f64, step: u64) -> f64 {
    let s = step as f64;
    rate.min((1.0 + s) / (10.0 + s))
}

impl<'a> DiffusionTrainer<'a> {
    /// The model (initialised from `cfg.seed`), its optimiser and EMAs; `out_dir` receives the
    /// sample grids.
    pub fn new(cfg: &'a DiffusionTrainConfig, train: &'a [Slice], out_dir: &Path) -> Result<Self> {
        cfg.check()?;
        let s = cfg.net.image_size;
        if train.is_empty() {
            return Err(Error::Data("the training set has no slices".into()));
        }
        if let Some(bad) = train.iter().find(|x| x.h != s || x.w != s) {
            return Err(Error::Data(format!(
                "the training slices are {}×{}, but this diffusion model is built for {s}×{s}; \
                 prepare the store with --size {s} or choose a profile of that size",
                bad.h, bad.w
            )));
        }
        check_device(cfg.device)?;
        let store = ParamStore::with_dtype(cfg.seed, DType::F32);
        store.set_device(cfg.device);
        let net = DiffusionUNet::new(&store.root(), cfg.net.clone())?;
        let mut oc = study_optimizer_config();
        oc.lr = cfg.lr;
        let opt = Adam::new(&store, oc)?;
        let ema = Ema::with_beta(&store, cfg.ema_rate)?;
        let ema_fast = Ema::with_beta(&store, cfg.fast_ema_rate)?;
        Ok(DiffusionTrainer {
            cfg,
            out_dir: out_dir.to_path_buf(),
            net,
            store,
            diffusion: cfg.diffusion()?,
            opt,
            ema,
            ema_fast,
            rng: SplitMix64::derive(cfg.seed, 0xD1F),
            train,
        })
    }

    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    fn batch(&self, rng: &mut StdRng) -> Result<Tensor> {
        let picked: Vec<&Slice> = (0..self.cfg.batch)
            .map(|_| &self.train[rng.random_range(0..self.train.len())])
            .collect();
        let mut b = generator_batch(picked)?;
        if self.cfg.random_flip {
            let [n, c, h, w] = b.shape;
            let per = c * h * w;
            for i in 0..n {
                if rng.random_bool(0.5) {
                    for row in b.data[i * per..(i + 1) * per].chunks_exact_mut(w) {
                        row.reverse();
                    }
                }
            }
        }
        Tensor::from_vec(b.data, &b.shape)?.to_device(self.cfg.device)
    }

    /// A grid of `grid_images` samples from fixed seeds with the grid sampler, from the weights
    /// the config names, to `samples-<step>.png`.
    pub fn write_grid(&mut self, step: u64) -> Result<PathBuf> {
        let cfg = self.cfg;
        let s = cfg.net.image_size;
        let shape = [cfg.grid_images.max(1), CHANNELS, s, s];
        let (net, d) = (&self.net, &self.diffusion);
        let draw = || -> Result<Vec<f32>> {
            let eps = |x: &Tensor, t: &Tensor| net.forward(x, t);
            let mut rng = StdRng::seed_from_u64(GRID_SEED);
            d.sample(&eps, cfg.grid_sampler, &shape, DType::F32, &mut rng)?
                .to_device(Device::Cpu)?
                .to_vec_f32()
        };
        let data = match cfg.sample_ema {
            EmaChoice::Slow => self.ema.with_averaged(&self.store, draw)?,
            EmaChoice::Fast => self.ema_fast.with_averaged(&self.store, draw)?,
            EmaChoice::Raw => draw()?,
        };
        let slices = slices_from_generator(&data, shape, "sample")?;
        let path = self.out_dir.join(format!("samples-{step:08}.png"));
        write_montage(&path, &slices, &MontageOptions::default())?;
        Ok(path)
    }

    fn write_weights(&self, w: &mut CheckpointWriter) -> Result<()> {
        write_meta(w, self.cfg);
        w.add_network(MODEL, &self.store)?
            .add_ema_named(EMA_SLOW, &self.ema)?
            .add_ema_named(EMA_FAST, &self.ema_fast)?;
        Ok(())
    }
}

impl Trainer for DiffusionTrainer<'_> {
    fn kind(&self) -> &str {
        KIND
    }
    fn profile(&self) -> &str {
        &self.cfg.profile
    }

    fn step(&mut self, step: u64) -> Result<StepOutput> {
        let mut rng = StdRng::seed_from_u64(self.rng.next_u64());
        let x0 = self.batch(&mut rng)?;
        let (t, noise) = draw_t_noise(&self.diffusion, &x0, &mut rng)?;
        let stats = train_step(
            &self.net,
            &self.diffusion,
            &self.store,
            &mut self.opt,
            &x0,
            &t,
            &noise,
            self.cfg.clip,
            Some(&mut self.ema),
            &mut rng,
        )?;
        self.ema_fast
            .update_with_beta(&self.store, fast_ema_beta(self.cfg.fast_ema_rate, step))?;
        let mut losses = vec![("loss", stats.loss)];
        if let Some(g) = stats.grad_norm {
            losses.push(("grad norm", g));
        }
        Ok(StepOutput {
            losses,
            images: self.cfg.batch as u64,
            lr: Some(self.cfg.lr),
        })
    }

    fn save_state(&self, w: &mut CheckpointWriter) -> Result<()> {
        self.write_weights(w)?;
        w.add_optimizer_named(OPT, &self.opt)?
            .set_rng(BATCH_RNG, &self.rng);
        Ok(())
    }

    fn load_state(&mut self, ck: &Checkpoint) -> Result<()> {
        ck.expect_metadata("model", KIND)?;
        // the run's sizes must be this config's before anything is loaded
        for (key, want) in [
            ("image_size", self.cfg.net.image_size.to_string()),
            ("model_channels", self.cfg.net.model_channels.to_string()),
            ("steps", self.cfg.diffusion_steps.to_string()),
            (
                "noise_schedule",
                schedule_name(self.cfg.noise_schedule).to_string(),
            ),
        ] {
            ck.expect_metadata(&format!("diffusion.{key}"), &want)?;
        }
        let rng = ck.rng(BATCH_RNG)?;
        ck.check_into(MODEL, &self.store.named_tensors(), "network model")?;
        ck.load_network(MODEL, &self.store)?;
        ck.load_ema_named(EMA_SLOW, &self.ema)?;
        ck.load_ema_named(EMA_FAST, &self.ema_fast)?;
        ck.load_optimizer_named(OPT, &self.opt)?;
        self.rng = rng;
        Ok(())
    }

    fn save_weights(&self, w: &mut CheckpointWriter) -> Result<()> {
        self.write_weights(w)
    }

    fn validate(&mut self, step: u64) -> Result<Option<f64>> {
        if self.cfg.grid_images > 0 {
            self.write_grid(step)?;
        }
        Ok(None)
    }
}

/// Train the diffusion generator on `train` slices into `out_dir` (resuming from its
/// `last.safetensors` when there is one); see [`crate::train::runner`] for the files.
pub fn train_diffusion(
    cfg: &DiffusionTrainConfig,
    train: &[Slice],
    out_dir: &Path,
    rc: Option<RunConfig>,
    log: &mut dyn FnMut(&str),
) -> Result<RunOutcome> {
    let mut trainer = DiffusionTrainer::new(cfg, train, out_dir)?;
    let mut rc = rc.unwrap_or_else(|| RunConfig::new(out_dir, RunLength::Steps(cfg.steps)));
    rc.out_dir = out_dir.to_path_buf();
    rc.length = RunLength::Steps(cfg.steps);
    rc.time_limit = rc.time_limit.or(cfg.time_limit);
    rc.val_every = cfg.sample_every;
    if rc.log_every == 0 {
        rc.log_every = 10;
    }
    run(&mut trainer, &rc, log)
}
