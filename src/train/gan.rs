//! StyleGAN2 / StyleGAN3-T training as the runner drives it: NVlabs' `training_loop.py` around the
//! four-phase step of [`crate::models::gan::loss`].
//!
//! One runner step is one minibatch: `batch` real slices drawn uniformly (with replacement) from
//! the training slices, all five channels mapped to [−1, 1] (`v / 127.5 − 1`), mirrored inside the
//! core step; then G main, G reg, D main, D reg and the G EMA update.
//!
//! Checkpoint sections (all in `last.safetensors`, so a stopped run resumes to the bit):
//! `G`, `D`, `G_ema` (networks with NVlabs' names; StyleGAN3's `magnitude_ema` and `w_avg` are
//! buffers of `G`), `opt_G`, `opt_D` (Adam moments), numbers `gan.pl_mean`, `gan.batch_idx`,
//! `gan.cur_nimg`, and the random stream `gan.batch` (which slices, and the seed of each step's
//! latents/noise/mirror draws). Snapshots and `generate` need only `G_ema` and the size metadata
//! (the keys [`config_from_checkpoint`] reads).
//!
//! At every sample interval (and at the end) the trainer writes `samples-<kimg>.png`: G_ema on a
//! fixed set of latents (ψ = 1, constant noise as NVlabs' `generate.py`), one row per sample with
//! T1, T1ce, T2, FLAIR and T1ce with the decoded annotation in colour; and
//! `snapshot-<kimg>.safetensors` with the networks.

pub mod progressive;

pub use progressive::{
    GrowingArch, GrowingNet, GrowingSampler, ProgressiveGanTrainer, ProgressiveProfile,
    ProgressiveTrainConfig,
};

use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::autograd::no_grad;
use crate::data::Slice;
use crate::data::batch::{generator_batch, synthetic_slices};
use crate::data::slices::CHANNELS;
use crate::io::checkpoint::{Checkpoint, CheckpointWriter};
use crate::io::png::{MontageOptions, write_montage};
use crate::models::gan::loss::{GanTrainer as Core, StyleGenerator, TrainConfig};
use crate::models::gan::{
    Arch, Discriminator, GanConfig, Noise, Sg3Settings, StyleGan2Generator, StyleGan3Generator,
    config_from_checkpoint, load_named,
};
use crate::nn::ParamStore;
use crate::optim::Optimizer;
use crate::rng::SplitMix64;
use crate::tensor::{DType, Device, Tensor};
use crate::train::runner::{StepOutput, Trainer};
use crate::{Error, Result};

/// Everything a GAN training run is decided by.
#[derive(Clone, Debug, PartialEq)]
pub struct GanTrainConfig {
    pub arch: Arch,
    /// Size profile name (recorded in checkpoints).
    pub profile: String,
    /// Sizes of G and D.
    pub net: GanConfig,
    pub batch: usize,
    /// R1 weight γ.
    pub gamma: f64,
    /// Learning rates (None: the architecture's defaults, 0.002 / 0.0025 for G, 0.002 for D).
    pub g_lr: Option<f64>,
    pub d_lr: Option<f64>,
    pub seed: u64,
    /// Samples in the fixed-latent grid.
    pub grid: usize,
    pub device: Device,
}

impl GanTrainConfig {
    /// The loss core's settings for this configuration.
    pub fn train_config(&self) -> TrainConfig {
        let mut t = match self.arch {
            Arch::StyleGan2 => TrainConfig::stylegan2(self.batch, self.gamma),
            Arch::StyleGan3 => TrainConfig::stylegan3(self.batch, self.gamma),
        };
        if let Some(lr) = self.g_lr {
            t.g_lr = lr;
        }
        if let Some(lr) = self.d_lr {
            t.d_lr = lr;
        }
        t
    }

    fn validate(&self) -> Result<()> {
        self.net.validate()?;
        if self.net.channels != CHANNELS {
            return Err(Error::invalid(
                "train-gen",
                format!(
                    "the generator must have {CHANNELS} channels (4 sequences + annotation), not {}",
                    self.net.channels
                ),
            ));
        }
        if self.batch == 0 || self.grid == 0 {
            return Err(Error::invalid(
                "train-gen",
                "batch and sample-grid size must be at least 1",
            ));
        }
        for (name, v) in [
            ("gamma", Some(self.gamma)),
            ("G learning rate", self.g_lr),
            ("D learning rate", self.d_lr),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(Error::invalid(
                    "train-gen",
                    format!("{name} must be a finite number >= 0, not {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// Either generator, for sampling.
// one per process, never in a collection: the size difference costs nothing
pub enum AnyGenerator {
    StyleGan2(StyleGan2Generator),
    StyleGan3(Box<StyleGan3Generator>),
}

impl AnyGenerator {
    /// A generator of `arch` in a fresh store on the CPU (initialised from `seed`).
    pub fn new(arch: Arch, cfg: &GanConfig, batch: usize, seed: u64) -> Result<AnyGenerator> {
        Self::new_on(arch, cfg, batch, seed, Device::Cpu)
    }

    /// As [`AnyGenerator::new`], with the parameters and buffers on `device`.
    pub fn new_on(
        arch: Arch,
        cfg: &GanConfig,
        batch: usize,
        seed: u64,
        device: Device,
    ) -> Result<AnyGenerator> {
        let store = ParamStore::with_dtype(seed, DType::F32);
        store.set_device(device);
        Ok(match arch {
            Arch::StyleGan2 => AnyGenerator::StyleGan2(StyleGan2Generator::new(&store, cfg)?),
            Arch::StyleGan3 => AnyGenerator::StyleGan3(Box::new(StyleGan3Generator::new(
                &store,
                cfg,
                &Sg3Settings::for_batch(batch),
            )?)),
        })
    }

    pub fn store(&self) -> &ParamStore {
        match self {
            AnyGenerator::StyleGan2(g) => &g.store,
            AnyGenerator::StyleGan3(g) => &g.store,
        }
    }

    pub fn z_dim(&self) -> usize {
        match self {
            AnyGenerator::StyleGan2(g) => g.mapping.z_dim,
            AnyGenerator::StyleGan3(g) => g.mapping.z_dim,
        }
    }

    /// z [N, z_dim] → images [N, C, R, R] in about [−1, 1]: truncation ψ, constant noise (NVlabs'
    /// `generate.py` default), no gradients.
    pub fn sample(&self, z: &Tensor, psi: f64) -> Result<Tensor> {
        // NVlabs samples with the fused (grouped) modulated conv; on the CPU the non-fused form
        // is the same product, cheaper (StyleGAN2 `gan_step` generate b32: 233 against 277 ms),
        // and on a GPU the fused kernels run
        let fused = z.device() != Device::Cpu;
        no_grad(|| match self {
            AnyGenerator::StyleGan2(g) => g.forward(z, psi, &mut Noise::Const, fused),
            AnyGenerator::StyleGan3(g) => g.forward(z, psi),
        })
    }

    /// The `G_ema` network of a checkpoint written by `train-gen` (or converted from an NVlabs
    /// snapshot), checked against the size metadata: another architecture or size is an error.
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<AnyGenerator> {
        let (arch, cfg, _) = config_from_checkpoint(ck)?;
        if !ck.has_section(G_EMA) {
            return Err(Error::Checkpoint {
                path: ck.path().to_path_buf(),
                msg: "has no G_ema network (is it a generator checkpoint?)".into(),
            });
        }
        let g = AnyGenerator::new(arch, &cfg, 32, 0)?;
        load_named(g.store(), &ck.section(G_EMA)).map_err(|e| Error::Checkpoint {
            path: ck.path().to_path_buf(),
            msg: format!("its G_ema does not fit a {} generator: {e}", arch.name()),
        })?;
        Ok(g)
    }
}

enum CoreAny {
    StyleGan2(Box<Core<StyleGan2Generator>>),
    StyleGan3(Box<Core<StyleGan3Generator>>),
}

/// Run `$body` with `$c` bound to the core of either architecture.
macro_rules! with_core {
    ($self:expr, $c:ident => $body:expr) => {
        match $self {
            CoreAny::StyleGan2($c) => $body,
            CoreAny::StyleGan3($c) => $body,
        }
    };
}

const G: &str = "G";
const D: &str = "D";
const G_EMA: &str = "G_ema";
const OPT_G: &str = "opt_G";
const OPT_D: &str = "opt_D";
const BATCH_RNG: &str = "gan.batch";

/// Record the sizes as [`config_from_checkpoint`] reads them.
fn write_size_metadata(w: &mut CheckpointWriter, arch: Arch, cfg: &GanConfig) {
    w.set_metadata("model", arch.name());
    for (k, v) in [
        ("z_dim", cfg.z_dim),
        ("w_dim", cfg.w_dim),
        ("resolution", cfg.resolution),
        ("channels", cfg.channels),
        ("channel_base", cfg.channel_base),
        ("channel_max", cfg.channel_max),
        ("mapping_layers", cfg.mapping_layers),
        ("mbstd_group", cfg.mbstd_group),
    ] {
        w.set_metadata(k, v.to_string());
    }
    w.set_metadata(
        "conv_clamp",
        cfg.conv_clamp
            .map_or("None".to_string(), |c| format!("{c}")),
    );
}

fn load_core<Gen: StyleGenerator>(
    c: &mut Core<Gen>,
    ck: &Checkpoint,
    pl_mean: f64,
    batch_idx: u64,
    cur_nimg: u64,
) -> Result<()> {
    ck.load_network(G, c.g.store())?;
    ck.load_network(D, &c.d.store)?;
    ck.load_ema_named(G_EMA, &c.g_ema)?;
    ck.load_optimizer_named(OPT_G, &c.g_opt as &dyn Optimizer)?;
    ck.load_optimizer_named(OPT_D, &c.d_opt as &dyn Optimizer)?;
    c.loss.pl_mean = pl_mean;
    c.batch_idx = batch_idx;
    c.cur_nimg = cur_nimg;
    Ok(())
}

/// A StyleGAN's training as a [`Trainer`].
pub struct GanTrainer<'a> {
    cfg: GanTrainConfig,
    core: CoreAny,
    /// Draws the slices of each batch and the seed of each step's latents and noise.
    rng: SplitMix64,
    reals: &'a [Slice],
    /// The sample grid's latents [grid, z_dim], fixed by the seed.
    grid_z: Tensor,
    /// Where `samples-<kimg>.png` and `snapshot-<kimg>.safetensors` go (None: not written).
    out_dir: Option<PathBuf>,
    /// Write samples and a snapshot at most once per this many images (0: only at the end).
    pub sample_every_images: u64,
    last_sample_nimg: Option<u64>,
}

impl<'a> GanTrainer<'a> {
    /// G, D, their optimisers and G_ema initialised from `cfg.seed`; `reals` are the training
    /// slices (all of the configuration's resolution).
    pub fn new(cfg: GanTrainConfig, reals: &'a [Slice], out_dir: Option<PathBuf>) -> Result<Self> {
        cfg.validate()?;
        crate::train::seg::check_device(cfg.device)?;
        let r = cfg.net.resolution;
        if reals.is_empty() {
            return Err(Error::Data("the training set has no slices".into()));
        }
        if let Some(s) = reals.iter().find(|s| s.h != r || s.w != r) {
            return Err(Error::Data(format!(
                "slice {}#{} is {}×{}, but this generator makes {r}×{r} images; prepare the store \
                 with --size {r} or pick a profile of that resolution",
                s.subject, s.index, s.h, s.w
            )));
        }
        let gs = ParamStore::with_dtype(cfg.seed, DType::F32);
        let ds = ParamStore::with_dtype(cfg.seed ^ 0xD15C, DType::F32);
        gs.set_device(cfg.device);
        ds.set_device(cfg.device);
        let d = Discriminator::new(&ds, &cfg.net)?;
        let tc = cfg.train_config();
        let core = match cfg.arch {
            Arch::StyleGan2 => CoreAny::StyleGan2(Box::new(Core::new(
                StyleGan2Generator::new(&gs, &cfg.net)?,
                d,
                tc,
            )?)),
            Arch::StyleGan3 => CoreAny::StyleGan3(Box::new(Core::new(
                StyleGan3Generator::new(&gs, &cfg.net, &Sg3Settings::for_batch(cfg.batch))?,
                d,
                tc,
            )?)),
        };
        let mut zrng = StdRng::seed_from_u64(SplitMix64::derive(cfg.seed, 0x6A1D).next_u64());
        let grid_z = Tensor::randn(&[cfg.grid, cfg.net.z_dim], DType::F32, &mut zrng)
            .to_device(cfg.device)?;
        Ok(GanTrainer {
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

    /// Images shown so far.
    pub fn cur_nimg(&self) -> u64 {
        with_core!(&self.core, c => c.cur_nimg)
    }

    /// The running path-length mean (0 for StyleGAN3).
    pub fn pl_mean(&self) -> f64 {
        with_core!(&self.core, c => c.loss.pl_mean)
    }

    pub fn g_store(&self) -> ParamStore {
        with_core!(&self.core, c => c.g.store().clone())
    }

    pub fn d_store(&self) -> ParamStore {
        with_core!(&self.core, c => c.d.store.clone())
    }

    /// G_ema (a separate generator holding the averaged weights and G's buffers).
    pub fn g_ema(&self) -> Result<AnyGenerator> {
        // on the training device: the grid latents live there, and sampling is cheaper there
        let g = AnyGenerator::new_on(
            self.cfg.arch,
            &self.cfg.net,
            self.cfg.batch,
            self.cfg.seed,
            self.cfg.device,
        )?;
        with_core!(&self.core, c => c.g_ema.copy_to(g.store()))?;
        Ok(g)
    }

    /// G_ema's images of the fixed grid latents, as slices.
    pub fn sample_grid(&self) -> Result<Vec<Slice>> {
        let g = self.g_ema()?;
        let img = g.sample(&self.grid_z, 1.0)?;
        let shape = [
            img.shape()[0],
            img.shape()[1],
            img.shape()[2],
            img.shape()[3],
        ];
        synthetic_slices(&img.to_device(Device::Cpu)?.to_vec_f32()?, shape, 0)
    }

    fn batch(&mut self) -> Result<Tensor> {
        let n = self.reals.len() as u64;
        let picked: Vec<&Slice> = (0..self.cfg.batch)
            .map(|_| &self.reals[self.rng.below(n) as usize])
            .collect();
        let b = generator_batch(picked)?;
        Tensor::from_vec(b.data, &b.shape)?.to_device(self.cfg.device)
    }

    fn write_samples(&mut self) -> Result<()> {
        let Some(dir) = self.out_dir.clone() else {
            return Ok(());
        };
        let nimg = self.cur_nimg();
        if self.last_sample_nimg == Some(nimg) {
            return Ok(());
        }
        // kimg with one decimal: quick runs sample more often than once per kimg
        let kimg = format!("{:06.1}", nimg as f64 / 1000.0);
        let slices = self.sample_grid()?;
        write_montage(
            dir.join(format!("samples-{kimg}.png")),
            &slices,
            &MontageOptions::default(),
        )?;
        let mut w = CheckpointWriter::new();
        w.set_model_info(self.cfg.arch.name(), &self.cfg.profile, self.step_count());
        self.save_weights(&mut w)?;
        w.save(dir.join(format!("snapshot-{kimg}.safetensors")))?;
        self.last_sample_nimg = Some(nimg);
        Ok(())
    }

    fn step_count(&self) -> u64 {
        with_core!(&self.core, c => c.batch_idx)
    }
}

impl Trainer for GanTrainer<'_> {
    fn kind(&self) -> &str {
        self.cfg.arch.name()
    }
    fn profile(&self) -> &str {
        &self.cfg.profile
    }

    fn step(&mut self, _step: u64) -> Result<StepOutput> {
        let reals = self.batch()?;
        // each step's latents, noise and mirror flips from its own generator, seeded by the saved
        // stream: exact resume needs only that stream's state
        let mut step_rng = StdRng::seed_from_u64(self.rng.next_u64());
        let st = with_core!(&mut self.core, c => c.step(&reals, &mut step_rng))?;
        let mut losses = vec![("G", st.g_loss), ("D", st.d_loss)];
        if st.r1_penalty.is_finite() {
            losses.push(("R1", st.r1_penalty));
        }
        if st.pl_penalty.is_finite() {
            losses.push(("PL", st.pl_penalty));
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
            images: self.cfg.batch as u64,
            lr: None,
        })
    }

    fn save_state(&self, w: &mut CheckpointWriter) -> Result<()> {
        self.save_weights(w)?;
        with_core!(&self.core, c => {
            w.add_optimizer_named(OPT_G, &c.g_opt)?;
            w.add_optimizer_named(OPT_D, &c.d_opt)?;
            w.set_f64("gan.pl_mean", c.loss.pl_mean)
                .set_u64("gan.batch_idx", c.batch_idx)
                .set_u64("gan.cur_nimg", c.cur_nimg);
        });
        w.set_rng(BATCH_RNG, &self.rng);
        Ok(())
    }

    fn load_state(&mut self, ck: &Checkpoint) -> Result<()> {
        ck.expect_metadata("model", self.cfg.arch.name())?;
        let (arch, net, _) = config_from_checkpoint(ck)?;
        if arch != self.cfg.arch || net != self.cfg.net {
            return Err(Error::Checkpoint {
                path: ck.path().to_path_buf(),
                msg: format!(
                    "was written for other network sizes ({net:?}); this run uses {:?} — use \
                     another --out folder or the same profile",
                    self.cfg.net
                ),
            });
        }
        let pl_mean = ck.f64_value("gan.pl_mean")?;
        let batch_idx = ck.u64_value("gan.batch_idx")?;
        let cur_nimg = ck.u64_value("gan.cur_nimg")?;
        let rng = ck.rng(BATCH_RNG)?;
        // everything is checked by the loads below before anything else of ours changes; the
        // loads themselves check names and shapes first
        with_core!(&mut self.core, c => load_core(c, ck, pl_mean, batch_idx, cur_nimg))?;
        self.rng = rng;
        self.last_sample_nimg = Some(cur_nimg);
        Ok(())
    }

    fn save_weights(&self, w: &mut CheckpointWriter) -> Result<()> {
        write_size_metadata(w, self.cfg.arch, &self.cfg.net);
        with_core!(&self.core, c => {
            w.add_network(G, c.g.store())?;
            w.add_network(D, &c.d.store)?;
            w.add_ema_named(G_EMA, &c.g_ema)?;
        });
        Ok(())
    }

    fn validate(&mut self, _step: u64) -> Result<Option<f64>> {
        // the runner calls this at its intervals and at the end: the last grid is always written
        self.write_samples()?;
        Ok(None)
    }
}

/// A size profile of the generators: network sizes and the run's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct GanProfile {
    pub name: &'static str,
    pub net: GanConfig,
    pub batch: usize,
    pub gamma: f64,
    /// Run length in thousands of training images.
    pub kimg: f64,
    /// Wall-clock budget (`last` is kept; the same command resumes).
    pub time_limit: Option<Duration>,
    /// Samples and a snapshot every this many thousand images.
    pub sample_every_kimg: f64,
    /// Rows of the sample grid.
    pub grid: usize,
}

impl GanProfile {
    /// 64×64 networks narrow enough to learn the phantom in about ten minutes on a small CPU.
    pub fn quick(arch: Arch) -> GanProfile {
        GanProfile {
            name: "quick",
            net: GanConfig {
                z_dim: 128,
                w_dim: 128,
                resolution: 64,
                channels: CHANNELS,
                channel_base: 1024,
                channel_max: 64,
                mapping_layers: mapping_layers(arch),
                conv_clamp: Some(256.0),
                mbstd_group: 4,
            },
            batch: 8,
            // NVlabs' automatic rule 0.0002·R²/batch gives 0.1 here
            gamma: 0.1,
            kimg: 100.0,
            time_limit: Some(Duration::from_secs(10 * 60)),
            sample_every_kimg: 1.0,
            grid: 6,
        }
    }

    /// The study's `train.py --cfg=stylegan2|stylegan3-t` at 256×256: cbase 32768, cmax 512,
    /// z = w = 512, batch 32, γ 8, NVlabs' default length of 25000 kimg.
    pub fn paper(arch: Arch) -> GanProfile {
        GanProfile {
            name: "paper",
            net: GanConfig {
                mapping_layers: mapping_layers(arch),
                ..GanConfig::paper_stylegan2()
            },
            batch: 32,
            gamma: 8.0,
            kimg: 25000.0,
            time_limit: None,
            sample_every_kimg: 200.0,
            grid: 8,
        }
    }

    pub fn by_name(name: &str, arch: Arch) -> Result<GanProfile> {
        match name {
            "quick" => Ok(GanProfile::quick(arch)),
            "paper" => Ok(GanProfile::paper(arch)),
            _ => Err(Error::invalid(
                "profile",
                format!("'{name}' is not a profile; use quick or paper"),
            )),
        }
    }

    /// The training configuration under this profile.
    pub fn train_config(&self, arch: Arch, seed: u64, device: Device) -> GanTrainConfig {
        GanTrainConfig {
            arch,
            profile: self.name.to_string(),
            net: self.net.clone(),
            batch: self.batch,
            gamma: self.gamma,
            g_lr: None,
            d_lr: None,
            seed,
            grid: self.grid,
            device,
        }
    }
}

/// `--map`: 8 layers for StyleGAN2, 2 for StyleGAN3 (`train.py`).
fn mapping_layers(arch: Arch) -> usize {
    match arch {
        Arch::StyleGan2 => 8,
        Arch::StyleGan3 => 2,
    }
}
