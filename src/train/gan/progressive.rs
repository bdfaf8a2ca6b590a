//! Training of the progressively grown GANs (Progressive GAN; StyleGAN 1 plugs in through
//! [`GrowingNet`]) as the runner drives it: NVlabs' TensorFlow `train.py` loop around
//! [`ProgressiveCore`].
//!
//! One runner step is one minibatch of the size the schedule sets for the current resolution:
//! that many real slices drawn uniformly (with replacement) from the training slices at full
//! resolution (all five channels mapped to [−1, 1]); the core mirrors, pools them to the current
//! level and fades them, then runs one D and one G step and the G_ema update.
//!
//! Checkpoint sections (all in `last.safetensors`, so a run stopped mid-fade resumes to the
//! bit): `G`, `D`, `G_ema`, `opt_G`, `opt_D`, numbers `grow.cur_nimg`, `grow.batch_idx`,
//! `grow.lod`, `grow.level`, `grow.alpha`, `grow.batch`, `grow.prev_lod` (NaN before the first
//! schedule update), the random stream `gan.batch`, and metadata: the network sizes
//! ([`GrowingNet::write_metadata`]), `schedule` ([`GrowthSchedule::describe`]) and `loss`, both
//! checked on resume, and `growth_level` / `growth_alpha`, at which `generate` samples a snapshot.
//!
//! Sample grids (`samples-<kimg>.png`) show G_ema at the current level (nearest-upsampled to the
//! final size for display) on fixed latents. The progress line's first value is α under a name
//! that gives the resolution and phase (`16x16 fade-in α 0.4500`).

use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::autograd::no_grad;
use crate::data::Slice;
use crate::data::batch::{generator_batch, synthetic_slices};
use crate::data::slices::CHANNELS;
use crate::io::checkpoint::{Checkpoint, CheckpointWriter};
use crate::io::json::Json;
use crate::io::png::{MontageOptions, write_montage};
use crate::models::gan::growing::{
    EmaRule, GrowingDiscriminator, GrowingGenerator, Growth, GrowthSchedule, ProgressiveConfig,
    ProgressiveCore, ScheduleAt, Truncation, upsample2x,
};
use crate::models::gan::progan::{self, ProGanConfig, ProGanDiscriminator, ProGanGenerator};
use crate::models::gan::stylegan1;
use crate::models::gan::{GanConfig, StyleGan1Discriminator, StyleGan1Generator};
use crate::nn::ParamStore;
use crate::optim::Optimizer;
use crate::rng::SplitMix64;
use crate::tensor::{DType, Device, Tensor};
use crate::train::runner::{StepOutput, Trainer};
use crate::{Error, Result};

/// The progressively grown architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowingArch {
    ProGan,
    StyleGan1,
}

impl GrowingArch {
    /// The checkpoint's `model` value.
    pub fn name(self) -> &'static str {
        match self {
            GrowingArch::ProGan => progan::MODEL_NAME,
            GrowingArch::StyleGan1 => "stylegan1",
        }
    }
}

/// The sizes of G and D of one growing architecture. StyleGAN 1 adds its variant here and one
/// arm in each match of this impl (and of [`ProgressiveProfile`]).
#[derive(Clone, Debug, PartialEq)]
pub enum GrowingNet {
    ProGan(ProGanConfig),
    /// StyleGAN 1's sizes (`conv_clamp` None).
    StyleGan1(GanConfig),
}

impl GrowingNet {
    pub fn arch(&self) -> GrowingArch {
        match self {
            GrowingNet::ProGan(_) => GrowingArch::ProGan,
            GrowingNet::StyleGan1(_) => GrowingArch::StyleGan1,
        }
    }

    pub fn resolution(&self) -> usize {
        match self {
            GrowingNet::ProGan(c) => c.resolution,
            GrowingNet::StyleGan1(c) => c.resolution,
        }
    }

    pub fn channels(&self) -> usize {
        match self {
            GrowingNet::ProGan(c) => c.channels,
            GrowingNet::StyleGan1(c) => c.channels,
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            GrowingNet::ProGan(c) => c.validate(),
            GrowingNet::StyleGan1(c) => stylegan1::check_config(c),
        }
    }

    /// A generator with its parameters in `store`.
    pub fn generator(&self, store: &ParamStore) -> Result<Box<dyn GrowingGenerator>> {
        Ok(match self {
            GrowingNet::ProGan(c) => Box::new(ProGanGenerator::new(store, c)?),
            GrowingNet::StyleGan1(c) => Box::new(StyleGan1Generator::new(store, c)?),
        })
    }

    /// A discriminator with its parameters in `store`.
    pub fn discriminator(&self, store: &ParamStore) -> Result<Box<dyn GrowingDiscriminator>> {
        Ok(match self {
            GrowingNet::ProGan(c) => Box::new(ProGanDiscriminator::new(store, c)?),
            GrowingNet::StyleGan1(c) => Box::new(StyleGan1Discriminator::new(store, c)?),
        })
    }

    /// The sizes as checkpoint metadata (`model` included).
    pub fn write_metadata(&self, w: &mut CheckpointWriter) {
        match self {
            GrowingNet::ProGan(c) => c.write_metadata(w),
            GrowingNet::StyleGan1(c) => stylegan1::write_metadata(c, w),
        }
    }

    /// The sizes of a growing GAN's checkpoint, by its `model`.
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<GrowingNet> {
        match ck.meta("model") {
            Some(progan::MODEL_NAME) => Ok(GrowingNet::ProGan(ProGanConfig::from_checkpoint(ck)?)),
            Some(stylegan1::MODEL_NAME) => Ok(GrowingNet::StyleGan1(
                stylegan1::config_from_checkpoint(ck)?,
            )),
            other => Err(Error::Checkpoint {
                path: ck.path().to_path_buf(),
                msg: format!(
                    "model {other:?} is not a progressively grown GAN this build knows (progan, stylegan1)"
                ),
            }),
        }
    }

    /// The sizes for `config.json`.
    pub fn json_fields(&self) -> Vec<(&'static str, Json)> {
        match self {
            GrowingNet::ProGan(c) => vec![
                ("latent_size", Json::num(c.latent_size as f64)),
                ("resolution", Json::num(c.resolution as f64)),
                ("channels", Json::num(c.channels as f64)),
                ("fmap_base", Json::num(c.fmap_base as f64)),
                ("fmap_max", Json::num(c.fmap_max as f64)),
                ("mbstd_group", Json::num(c.mbstd_group as f64)),
            ],
            GrowingNet::StyleGan1(c) => vec![
                ("z_dim", Json::num(c.z_dim as f64)),
                ("w_dim", Json::num(c.w_dim as f64)),
                ("resolution", Json::num(c.resolution as f64)),
                ("channels", Json::num(c.channels as f64)),
                ("channel_base", Json::num(c.channel_base as f64)),
                ("channel_max", Json::num(c.channel_max as f64)),
                ("mapping_layers", Json::num(c.mapping_layers as f64)),
                ("mbstd_group", Json::num(c.mbstd_group as f64)),
            ],
        }
    }
}

/// A growing G_ema for sampling: the network, the growth of the checkpoint and the final side
/// (images of a lower level are nearest-upsampled to it, as NVlabs' networks output them).
pub struct GrowingSampler {
    pub g: Box<dyn GrowingGenerator>,
    pub growth: Growth,
    pub resolution: usize,
}

impl GrowingSampler {
    /// z → images [N, C, R, R] with truncation, no gradients.
    pub fn sample(&self, z: &Tensor, trunc: Truncation) -> Result<Tensor> {
        no_grad(|| {
            let mut img = self.g.sample(z, self.growth, trunc)?;
            while img.shape()[2] < self.resolution {
                img = upsample2x(&img)?;
            }
            Ok(img)
        })
    }

    /// The `G_ema` of a growing GAN's checkpoint at the growth it was saved at.
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<GrowingSampler> {
        let net = GrowingNet::from_checkpoint(ck)?;
        let bad = |msg: String| Error::Checkpoint {
            path: ck.path().to_path_buf(),
            msg,
        };
        if !ck.has_section(G_EMA) {
            return Err(bad(
                "has no G_ema network (is it a generator checkpoint?)".into()
            ));
        }
        let level = ck
            .meta("growth_level")
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| bad("metadata lacks a valid growth_level".into()))?;
        let alpha = ck
            .meta("growth_alpha")
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| bad("metadata lacks a valid growth_alpha".into()))?;
        let store = ParamStore::with_dtype(0, DType::F32);
        let g = net.generator(&store)?;
        let growth = Growth { level, alpha };
        growth
            .validate(g.top_level())
            .map_err(|e| bad(e.to_string()))?;
        crate::models::gan::load_named(&store, &ck.section(G_EMA)).map_err(|e| {
            bad(format!(
                "its G_ema does not fit a {} generator: {e}",
                net.arch().name()
            ))
        })?;
        Ok(GrowingSampler {
            g,
            growth,
            resolution: net.resolution(),
        })
    }
}

/// Everything a progressive training run is decided by.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressiveTrainConfig {
    /// Size profile name (recorded in checkpoints).
    pub profile: String,
    pub net: GrowingNet,
    pub train: ProgressiveConfig,
    pub seed: u64,
    /// Samples in the fixed-latent grid.
    pub grid: usize,
    pub device: Device,
}

impl ProgressiveTrainConfig {
    fn validate(&self) -> Result<()> {
        self.net.validate()?;
        self.train.validate()?;
        if self.net.channels() != CHANNELS {
            return Err(Error::invalid(
                "train-gen",
                format!(
                    "the generator must have {CHANNELS} channels (4 sequences + annotation), not {}",
                    self.net.channels()
                ),
            ));
        }
        if self.train.schedule.final_resolution != self.net.resolution() {
            return Err(Error::invalid(
                "train-gen",
                format!(
                    "the schedule grows to {} but the networks are {}×{}",
                    self.train.schedule.final_resolution,
                    self.net.resolution(),
                    self.net.resolution()
                ),
            ));
        }
        if self.grid == 0 {
            return Err(Error::invalid(
                "train-gen",
                "the sample grid needs at least 1 row",
            ));
        }
        Ok(())
    }

    fn loss_text(&self) -> String {
        format!("{:?}", self.train.loss)
    }
}

const G: &str = "G";
const D: &str = "D";
const G_EMA: &str = "G_ema";
const OPT_G: &str = "opt_G";
const OPT_D: &str = "opt_D";
const BATCH_RNG: &str = "gan.batch";

/// Names of the progress line's first value (the runner wants static names): the side and phase.
const STABLE: [&str; 9] = [
    "4x4 α",
    "8x8 α",
    "16x16 α",
    "32x32 α",
    "64x64 α",
    "128x128 α",
    "256x256 α",
    "512x512 α",
    "1024x1024 α",
];
const FADING: [&str; 9] = [
    "4x4 fade-in α",
    "8x8 fade-in α",
    "16x16 fade-in α",
    "32x32 fade-in α",
    "64x64 fade-in α",
    "128x128 fade-in α",
    "256x256 fade-in α",
    "512x512 fade-in α",
    "1024x1024 fade-in α",
];

fn growth_name(g: Growth) -> &'static str {
    let i = g.level.min(8);
    if g.is_fading() { FADING[i] } else { STABLE[i] }
}

/// A growing GAN's training as a [`Trainer`].
pub struct ProgressiveGanTrainer<'a> {
    cfg: ProgressiveTrainConfig,
    pub core: ProgressiveCore,
    /// Draws the slices of each batch and the seed of each step's latents and noise.
    rng: SplitMix64,
    reals: &'a [Slice],
    grid_z: Tensor,
    out_dir: Option<PathBuf>,
    /// Samples and a snapshot at most once per this many images (0: only at the end).
    pub sample_every_images: u64,
    last_sample_nimg: Option<u64>,
}

impl<'a> ProgressiveGanTrainer<'a> {
    pub fn new(
        cfg: ProgressiveTrainConfig,
        reals: &'a [Slice],
        out_dir: Option<PathBuf>,
    ) -> Result<Self> {
        cfg.validate()?;
        crate::train::seg::check_device(cfg.device)?;
        let r = cfg.net.resolution();
        if reals.is_empty() {
            return Err(Error::Data("the training set has no slices".into()));
        }
        if let Some(s) = reals.iter().find(|s| s.h != r || s.w != r) {
            return Err(Error::Data(format!(
                "slice {}#{} is {}×{}, but this generator grows to {r}×{r} images; prepare the \
                 store with --size {r} or pick a profile of that resolution",
                s.subject, s.index, s.h, s.w
            )));
        }
        let gs = ParamStore::with_dtype(cfg.seed, DType::F32);
        let ds = ParamStore::with_dtype(cfg.seed ^ 0xD15C, DType::F32);
        gs.set_device(cfg.device);
        ds.set_device(cfg.device);
        let g = cfg.net.generator(&gs)?;
        let d = cfg.net.discriminator(&ds)?;
        let core = ProgressiveCore::new(g, d, cfg.train.clone())?;
        let mut zrng = StdRng::seed_from_u64(SplitMix64::derive(cfg.seed, 0x6A1D).next_u64());
        let grid_z = Tensor::randn(&[cfg.grid, core.g.z_dim()], DType::F32, &mut zrng)
            .to_device(cfg.device)?;
        Ok(ProgressiveGanTrainer {
            rng: SplitMix64::derive(cfg.seed, 0x6A4),
            cfg,
            core,
            reals,
            grid_z,
            out_dir,
            sample_every_images: 0,
            last_sample_nimg: None,
        })
    }

    pub fn cur_nimg(&self) -> u64 {
        self.core.cur_nimg
    }

    /// The schedule in force.
    pub fn schedule_state(&self) -> ScheduleAt {
        self.core.sched
    }

    /// G_ema at the current growth.
    pub fn g_ema(&self) -> Result<GrowingSampler> {
        let store = ParamStore::with_dtype(self.cfg.seed, DType::F32);
        // on the training device, where the grid latents live
        store.set_device(self.cfg.device);
        let g = self.cfg.net.generator(&store)?;
        self.core.g_ema.copy_to(&store)?;
        Ok(GrowingSampler {
            g,
            growth: self.core.sched.growth,
            resolution: self.cfg.net.resolution(),
        })
    }

    /// G_ema's images of the fixed grid latents (upsampled to the final side), as slices.
    pub fn sample_grid(&self) -> Result<Vec<Slice>> {
        let img = self.g_ema()?.sample(&self.grid_z, Truncation::NONE)?;
        let s = img.shape();
        synthetic_slices(
            &img.to_device(Device::Cpu)?.to_vec_f32()?,
            [s[0], s[1], s[2], s[3]],
            0,
        )
    }

    fn write_samples(&mut self) -> Result<()> {
        let Some(dir) = self.out_dir.clone() else {
            return Ok(());
        };
        let nimg = self.cur_nimg();
        if self.last_sample_nimg == Some(nimg) {
            return Ok(());
        }
        let kimg = format!("{:06.1}", nimg as f64 / 1000.0);
        let slices = self.sample_grid()?;
        write_montage(
            dir.join(format!("samples-{kimg}.png")),
            &slices,
            &MontageOptions::default(),
        )?;
        let mut w = CheckpointWriter::new();
        w.set_model_info(
            self.cfg.net.arch().name(),
            &self.cfg.profile,
            self.core.batch_idx,
        );
        self.save_weights(&mut w)?;
        w.save(dir.join(format!("snapshot-{kimg}.safetensors")))?;
        self.last_sample_nimg = Some(nimg);
        Ok(())
    }
}

impl Trainer for ProgressiveGanTrainer<'_> {
    fn kind(&self) -> &str {
        self.cfg.net.arch().name()
    }
    fn profile(&self) -> &str {
        &self.cfg.profile
    }

    fn step(&mut self, _step: u64) -> Result<StepOutput> {
        let reals = self.reals;
        let rng = &mut self.rng;
        let device = self.cfg.device;
        let mut draw = |n: usize| -> Result<Tensor> {
            let len = reals.len() as u64;
            let picked: Vec<&Slice> = (0..n).map(|_| &reals[rng.below(len) as usize]).collect();
            let b = generator_batch(picked)?;
            Tensor::from_vec(b.data, &b.shape)?.to_device(device)
        };
        // the schedule first: the batch size depends on it, and the draws come before the seed
        let growth_before = self.core.plan()?;
        let reals_t = draw(growth_before.batch)?;
        let mut step_rng = StdRng::seed_from_u64(self.rng.next_u64());
        let mut given = Some(reals_t);
        let st = self.core.step(
            &mut |n| {
                given.take().filter(|t| t.shape()[0] == n).ok_or_else(|| {
                    Error::invalid(
                        "ProgressiveGanTrainer",
                        "the schedule changed within a step",
                    )
                })
            },
            &mut step_rng,
        )?;
        let mut losses = vec![
            (growth_name(st.growth), st.growth.alpha),
            ("G", st.g_loss),
            ("D", st.d_loss),
        ];
        if st.penalty.is_finite() {
            losses.push(("GP", st.penalty));
        }
        let nimg = self.cur_nimg();
        if self.sample_every_images > 0 {
            let due = match self.last_sample_nimg {
                None => nimg >= self.sample_every_images,
                Some(last) => nimg - last >= self.sample_every_images,
            };
            if due {
                self.write_samples()?;
            }
        }
        Ok(StepOutput {
            losses,
            images: st.batch as u64,
            lr: Some(self.core.g_opt.lr()),
        })
    }

    fn save_state(&self, w: &mut CheckpointWriter) -> Result<()> {
        self.save_weights(w)?;
        let c = &self.core;
        w.add_optimizer_named(OPT_G, &c.g_opt)?;
        w.add_optimizer_named(OPT_D, &c.d_opt)?;
        w.set_u64("grow.cur_nimg", c.cur_nimg)
            .set_u64("grow.batch_idx", c.batch_idx)
            .set_f64("grow.lod", c.sched.lod)
            .set_u64("grow.level", c.sched.growth.level as u64)
            .set_f64("grow.alpha", c.sched.growth.alpha)
            .set_u64("grow.batch", c.sched.batch as u64)
            .set_f64("grow.prev_lod", c.prev_lod.unwrap_or(f64::NAN));
        w.set_rng(BATCH_RNG, &self.rng);
        Ok(())
    }

    fn load_state(&mut self, ck: &Checkpoint) -> Result<()> {
        let bad = |msg: String| Error::Checkpoint {
            path: ck.path().to_path_buf(),
            msg,
        };
        ck.expect_metadata("model", self.cfg.net.arch().name())?;
        let net = GrowingNet::from_checkpoint(ck)?;
        if net != self.cfg.net {
            return Err(bad(format!(
                "was written for other network sizes ({net:?}); this run uses {:?} — use \
                 another --out folder or the same profile",
                self.cfg.net
            )));
        }
        let sched = self.cfg.train.schedule.describe();
        if ck.meta("schedule") != Some(sched.as_str()) {
            return Err(bad(format!(
                "was trained with the growth schedule {:?}; this run's is {sched:?} — resume \
                 with the same profile and --batch, or use another --out folder",
                ck.meta("schedule").unwrap_or("(none)")
            )));
        }
        let loss = self.cfg.loss_text();
        if ck.meta("loss") != Some(loss.as_str()) {
            return Err(bad(format!(
                "was trained with the loss {:?}; this run's is {loss:?}",
                ck.meta("loss").unwrap_or("(none)")
            )));
        }
        let cur_nimg = ck.u64_value("grow.cur_nimg")?;
        let batch_idx = ck.u64_value("grow.batch_idx")?;
        let lod = ck.f64_value("grow.lod")?;
        let level = ck.u64_value("grow.level")? as usize;
        let alpha = ck.f64_value("grow.alpha")?;
        let batch = ck.u64_value("grow.batch")? as usize;
        let prev_lod = ck.f64_value("grow.prev_lod")?;
        let growth = Growth { level, alpha };
        growth
            .validate(self.core.g.top_level())
            .map_err(|e| bad(e.to_string()))?;
        let rng = ck.rng(BATCH_RNG)?;
        let c = &mut self.core;
        ck.load_network(G, c.g.store())?;
        ck.load_network(D, c.d.store())?;
        ck.load_ema_named(G_EMA, &c.g_ema)?;
        ck.load_optimizer_named(OPT_G, &c.g_opt as &dyn Optimizer)?;
        ck.load_optimizer_named(OPT_D, &c.d_opt as &dyn Optimizer)?;
        c.cur_nimg = cur_nimg;
        c.batch_idx = batch_idx;
        c.sched = ScheduleAt { lod, growth, batch };
        c.prev_lod = (!prev_lod.is_nan()).then_some(prev_lod);
        // the learning rates the schedule set for this resolution
        let r = growth.resolution();
        c.g_opt.set_lr(c.config.schedule.lr_at(r, c.config.g_lr));
        c.d_opt.set_lr(c.config.schedule.lr_at(r, c.config.d_lr));
        self.rng = rng;
        self.last_sample_nimg = Some(cur_nimg);
        Ok(())
    }

    fn save_weights(&self, w: &mut CheckpointWriter) -> Result<()> {
        self.cfg.net.write_metadata(w);
        w.set_metadata("schedule", self.cfg.train.schedule.describe());
        w.set_metadata("loss", self.cfg.loss_text());
        let g = self.core.sched.growth;
        w.set_metadata("growth_level", g.level.to_string());
        w.set_metadata("growth_alpha", format!("{}", g.alpha));
        w.add_network(G, self.core.g.store())?;
        w.add_network(D, self.core.d.store())?;
        w.add_ema_named(G_EMA, &self.core.g_ema)?;
        Ok(())
    }

    fn validate(&mut self, _step: u64) -> Result<Option<f64>> {
        self.write_samples()?;
        Ok(None)
    }
}

/// A size profile of the growing GANs: networks, schedule and the run's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressiveProfile {
    pub name: &'static str,
    pub net: GrowingNet,
    pub train: ProgressiveConfig,
    /// Run length in thousands of training images.
    pub kimg: f64,
    pub time_limit: Option<Duration>,
    pub sample_every_kimg: f64,
    pub grid: usize,
}

impl ProgressiveProfile {
    /// 64×64 networks with a schedule meant to reach 64×64 within the ten-minute budget on a
    /// small, quiet CPU: latent 128, fmap_base 1024, fmap_max 64 (64 channels at 4…32, 32 at
    /// 64), 1 kimg stable + 1 kimg fade-in per level (8 kimg to 64×64), batch 16, and G_ema
    /// β 0.99 per step instead of NVlabs' 0.999 (whose half-life of ~700 steps is longer than
    /// the whole quick run: its samples would still show mostly the initial weights).
    pub fn quick(arch: GrowingArch) -> Result<ProgressiveProfile> {
        match arch {
            GrowingArch::ProGan => {
                let net = ProGanConfig {
                    latent_size: 128,
                    resolution: 64,
                    channels: CHANNELS,
                    fmap_base: 1024,
                    fmap_max: 64,
                    mbstd_group: 4,
                };
                let schedule = GrowthSchedule {
                    final_resolution: 64,
                    initial_resolution: 4,
                    training_kimg: 1.0,
                    transition_kimg: 1.0,
                    batch_base: 16,
                    batch_per_resolution: vec![],
                    lr_per_resolution: vec![],
                    minibatch_repeats: 4,
                };
                Ok(ProgressiveProfile {
                    name: "quick",
                    net: GrowingNet::ProGan(net),
                    train: ProgressiveConfig {
                        ema: EmaRule::Beta(0.99),
                        ..ProgressiveConfig::progan(schedule)
                    },
                    kimg: 20.0,
                    time_limit: Some(Duration::from_secs(10 * 60)),
                    sample_every_kimg: 1.0,
                    grid: 6,
                })
            }
            GrowingArch::StyleGan1 => Ok(stylegan1_quick()),
        }
    }

    /// The study's runs at 256×256: NVlabs' paper networks (latent 512, fmap_base 8192,
    /// fmap_max 512), 600 kimg stable + 600 kimg fade-in per level, the single-GPU minibatches
    /// {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8} (ProGAN's `preset-v2-1gpu`),
    /// 12000 kimg in all.
    pub fn paper(arch: GrowingArch) -> Result<ProgressiveProfile> {
        match arch {
            GrowingArch::ProGan => {
                let net = ProGanConfig {
                    channels: CHANNELS,
                    ..ProGanConfig::paper()
                };
                let schedule = GrowthSchedule {
                    final_resolution: 256,
                    initial_resolution: 4,
                    training_kimg: 600.0,
                    transition_kimg: 600.0,
                    batch_base: 4,
                    batch_per_resolution: vec![
                        (4, 128),
                        (8, 128),
                        (16, 128),
                        (32, 64),
                        (64, 32),
                        (128, 16),
                        (256, 8),
                    ],
                    lr_per_resolution: vec![],
                    minibatch_repeats: 4,
                };
                Ok(ProgressiveProfile {
                    name: "paper",
                    net: GrowingNet::ProGan(net),
                    train: ProgressiveConfig::progan(schedule),
                    kimg: 12000.0,
                    time_limit: None,
                    sample_every_kimg: 200.0,
                    grid: 8,
                })
            }
            GrowingArch::StyleGan1 => Ok(stylegan1_paper()),
        }
    }

    pub fn by_name(name: &str, arch: GrowingArch) -> Result<ProgressiveProfile> {
        match name {
            "quick" => ProgressiveProfile::quick(arch),
            "paper" => ProgressiveProfile::paper(arch),
            _ => Err(Error::invalid(
                "profile",
                format!("'{name}' is not a profile; use quick or paper"),
            )),
        }
    }

    /// The training configuration under this profile.
    pub fn train_config(&self, seed: u64, device: Device) -> ProgressiveTrainConfig {
        ProgressiveTrainConfig {
            profile: self.name.to_string(),
            net: self.net.clone(),
            train: self.train.clone(),
            seed,
            grid: self.grid,
            device,
        }
    }
}

/// StyleGAN 1's quick profile: 64×64 networks of the ProGAN quick widths (z = w = 128, 8
/// mapping layers, 64 channels at 4…32, 32 at 64), NVlabs' start at 8×8, 0.8 kimg stable +
/// 0.8 kimg fade-in per level (64×64 stable after 4.8 kimg), batch 16, ten minutes; G_ema
/// half-life 0.3 kimg (NVlabs' 10 kimg would leave a run of a few kimg mostly at its initial
/// weights).
fn stylegan1_quick() -> ProgressiveProfile {
    let net = GanConfig {
        z_dim: 128,
        w_dim: 128,
        resolution: 64,
        channels: CHANNELS,
        channel_base: 2048,
        channel_max: 64,
        mapping_layers: 8,
        conv_clamp: None,
        mbstd_group: 4,
    };
    let schedule = GrowthSchedule {
        final_resolution: 64,
        initial_resolution: 8,
        training_kimg: 0.8,
        transition_kimg: 0.8,
        batch_base: 16,
        batch_per_resolution: vec![],
        lr_per_resolution: vec![],
        minibatch_repeats: 4,
    };
    ProgressiveProfile {
        name: "quick",
        net: GrowingNet::StyleGan1(net),
        train: ProgressiveConfig {
            ema: EmaRule::HalfLifeKimg(0.3),
            ..ProgressiveConfig::stylegan1(schedule)
        },
        kimg: 20.0,
        time_limit: Some(Duration::from_secs(10 * 60)),
        sample_every_kimg: 0.8,
        grid: 6,
    }
}

/// StyleGAN 1 as NVlabs' `train.py` trains it, at 256×256: z = w = 512, 8 mapping layers,
/// fmap_base 8192 / fmap_max 512 (channel_base 16384 here), start at 8×8, 600 kimg stable +
/// 600 kimg fade-in per level, the single-GPU minibatches {4: 128, 8: 128, 16: 128, 32: 64,
/// 64: 32, 128: 16, 256: 8}, learning rates 0.001 ({128: 0.0015, 256: 0.002}), 25000 kimg.
fn stylegan1_paper() -> ProgressiveProfile {
    let net = GanConfig {
        z_dim: 512,
        w_dim: 512,
        resolution: 256,
        channels: CHANNELS,
        channel_base: 16384,
        channel_max: 512,
        mapping_layers: 8,
        conv_clamp: None,
        mbstd_group: 4,
    };
    let schedule = GrowthSchedule {
        final_resolution: 256,
        initial_resolution: 8,
        training_kimg: 600.0,
        transition_kimg: 600.0,
        batch_base: 4,
        batch_per_resolution: vec![
            (4, 128),
            (8, 128),
            (16, 128),
            (32, 64),
            (64, 32),
            (128, 16),
            (256, 8),
        ],
        lr_per_resolution: vec![(128, 0.0015), (256, 0.002)],
        minibatch_repeats: 4,
    };
    ProgressiveProfile {
        name: "paper",
        net: GrowingNet::StyleGan1(net),
        train: ProgressiveConfig::stylegan1(schedule),
        kimg: 25000.0,
        time_limit: None,
        sample_every_kimg: 200.0,
        grid: 8,
    }
}

/// The settings of a progressive run for `config.json`.
pub fn config_json(cfg: &ProgressiveTrainConfig) -> Vec<(&'static str, Json)> {
    let mut v = vec![
        ("arch", Json::str(cfg.net.arch().name())),
        ("profile", Json::str(cfg.profile.clone())),
    ];
    v.extend(cfg.net.json_fields());
    let t = &cfg.train;
    v.extend([
        ("schedule", Json::str(t.schedule.describe())),
        ("loss", Json::str(format!("{:?}", t.loss))),
        ("g_lr", Json::num(t.g_lr)),
        ("d_lr", Json::num(t.d_lr)),
        ("adam_betas", Json::str(format!("{:?}", t.betas))),
        (
            "ema",
            Json::str(match t.ema {
                EmaRule::Beta(b) => format!("beta {b}"),
                EmaRule::HalfLifeKimg(k) => format!("half-life {k} kimg"),
            }),
        ),
        ("mirror", Json::Bool(t.mirror)),
        ("reset_opt_for_new_lod", Json::Bool(t.reset_opt_for_new_lod)),
        ("kimg_to_top_level", Json::num(t.schedule.kimg_to_top())),
        ("seed", Json::num(cfg.seed as f64)),
        ("device", Json::str(cfg.device.to_string())),
    ]);
    v
}
