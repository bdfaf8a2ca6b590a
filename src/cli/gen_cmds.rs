//! Subcommands of the generators: `train-gen` (train one on the training subjects of a slice
//! store) and `generate` (a trained generator → a synthetic slice store that `train-seg` reads).
//!
//! Architectures are dispatched in one place each ([`GenArch`], `train_arch`, `generate_arch`), so
//! another family (diffusion) is one more variant and one more match arm.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Args, CliError, Command, usage};
use crate::data::Slice;
use crate::data::split::{SplitSpec, split_subjects};
use crate::data::store::read_store;
use crate::io::atomic::write_atomic;
use crate::io::checkpoint::Checkpoint;
use crate::io::json::Json;
use crate::models::diffusion::Sampler;
use crate::models::gan::Arch;
use crate::models::gan::growing::Truncation;
use crate::tensor::Device;
use crate::train::diffusion::{DiffusionTrainConfig, EmaChoice, load_generator, train_diffusion};
use crate::train::gan::progressive::config_json;
use crate::train::gan::{
    AnyGenerator, GanProfile, GanTrainer, GrowingArch, GrowingSampler, ProgressiveGanTrainer,
    ProgressiveProfile,
};
use crate::train::generate::{generate_diffusion, generate_growing, generate_stylegan};
use crate::train::profile::SegProfile;
use crate::train::runner::{RunConfig, RunLength, StopReason, run};
use crate::train::seg::check_device;
use crate::{Error, Result};

/// The generator families `train-gen` and `generate` know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenArch {
    StyleGan2,
    StyleGan3,
    Diffusion,
    /// The progressively grown GANs (ProGAN, StyleGAN 1).
    Growing(GrowingArch),
}

impl GenArch {
    pub fn parse(s: &str) -> Result<GenArch> {
        match s {
            "stylegan2" => Ok(GenArch::StyleGan2),
            "stylegan3" | "stylegan3-t" => Ok(GenArch::StyleGan3),
            "diffusion" => Ok(GenArch::Diffusion),
            "progan" => Ok(GenArch::Growing(GrowingArch::ProGan)),
            "stylegan1" => Ok(GenArch::Growing(GrowingArch::StyleGan1)),
            _ => Err(Error::invalid(
                "train-gen",
                format!(
                    "'{s}' is not a generator architecture; use stylegan2, stylegan3, progan, \
                     stylegan1 or diffusion"
                ),
            )),
        }
    }
}

pub const TRAIN_GEN: Command = Command {
    name: "train-gen",
    summary: "train a GAN (StyleGAN2, StyleGAN3-T, ProGAN) or a diffusion model on the training subjects of a slice store",
    help: "\
Usage: brainsynth train-gen --arch stylegan2|stylegan3|progan|stylegan1|diffusion --store FILE
       --out DIR [options]

Train a generator of 5-channel slices (T1, T1ce, T2, FLAIR, annotation) on the slices of the
training subjects of FILE (the test subjects of the subject split, the same split as train-seg,
are never shown to it). StyleGAN2 / StyleGAN3-T as NVlabs' train.py: non-saturating logistic
loss, lazy R1 (every 16 steps) and path length (StyleGAN2, every 4), Adam (0, 0.99), G EMA with
a half-life of batch*10/32 kimg, mirror augmentation of all five channels.

A progress line shows G and D losses, images/s and the time left. Every sample interval (and at
the end) DIR/samples-<kimg>.png shows G_ema on fixed latents (one row per sample: T1, T1ce, T2,
FLAIR, T1ce with the annotation in colour) and DIR/snapshot-<kimg>.safetensors holds G, D and
G_ema (generate reads it). DIR/last.safetensors holds the whole state (networks, optimisers,
EMA, path-length mean, random streams); the same command run again resumes from it exactly.
Ctrl-C finishes the current step, writes last.safetensors and exits with status 130.
DIR/config.json records the settings.

diffusion: guided-diffusion's training (uniform t, eps-MSE, AdamW without weight decay, EMA
0.9999 plus a faster EMA, random flips); --steps, --batch, --time-limit, --seed and --glr (its
learning rate) apply, --sample-every counts kimg as for the GANs; samples-<step>.png use the
respaced sampler. Its profiles: quick 64x64, 32 channels (1,2,2,2), 1 res block, attention at
16 and 8, 1000 linear steps, batch 8, lr 2e-4, 10 minutes; paper the study's flags (256x256, 64
channels, 3 res blocks, 4000 linear steps, batch 32, lr 1e-4).

progan: NVlabs' progressive_growing_of_gans (G_paper / D_paper): grows from 4x4, each level
trained stable then the next faded in (alpha 0 -> 1); WGAN-GP (lambda 10, drift 0.001), Adam
lr 0.001 (0, 0.99) reset at each fade-in start and end, G_ema, mirror augmentation. The progress
line's first value names the resolution and phase and gives alpha; samples show the current
level, upsampled; last.safetensors keeps level, alpha and the schedule, so a run resumes
mid-fade; generate samples a snapshot at its level. --batch sets one minibatch for every
resolution; --gamma does not apply (WGAN-GP). Its profiles: quick 64x64, latent 128, fmap_base
1024, fmap_max 64, 1 + 1 kimg per level, batch 16, G_ema beta 0.99, 20 kimg or 10 minutes,
samples every kimg; paper 256x256, latent 512, fmap_base 8192, fmap_max 512, 600 + 600 kimg
per level, batch {4-16: 128, 32: 64, 64: 32, 128: 16, 256: 8}, G_ema beta 0.999, 12000 kimg.
stylegan1: NVlabs' stylegan (G_style / D_basic): 8-layer mapping, AdaIN with noise inputs, grows
from 8x8 as progan does; non-saturating logistic loss with R1 (gamma 10) every step, Adam lr
0.001 (0, 0.99) reset at each fade-in start and end, style mixing 0.9, G_ema, mirror
augmentation; generate truncates with psi 0.7 on the first 8 layers unless told otherwise. Its
profiles: quick 64x64, z = w = 128, channels 64 (32 at 64x64), 0.8 + 0.8 kimg per level, batch
16, G_ema half-life 0.3 kimg, 20 kimg or 10 minutes; paper 256x256, z = w = 512, fmap_base
8192, fmap_max 512, 600 + 600 kimg per level, batch {4-16: 128, 32: 64, 64: 32, 128: 16,
256: 8}, lr {128: 0.0015, 256: 0.002}, G_ema half-life 10 kimg, 25000 kimg.

Profiles:
  quick   64x64, z = w = 128, cbase 1024, cmax 64 (channels 64 at 4..16, 32 at 32, 16 at 64),
          mapping 8 layers (stylegan3: 2), batch 8, gamma 0.1, 100 kimg or 10 minutes,
          samples every 1 kimg
  paper   256x256, NVlabs --cfg defaults: z = w = 512, cbase 32768, cmax 512, mapping 8
          (stylegan3: 2), batch 32, gamma 8, 25000 kimg, no time limit, samples every 200 kimg

Options:
  --arch A           stylegan2, stylegan3 (stylegan3-t), progan, stylegan1 or diffusion
                     (required)
  --store FILE       slice store written by `prepare`, of the profile's size (required)
  --out DIR          run folder (required)
  --profile P        quick or paper (default quick)
  --batch N          minibatch (default: the profile's)
  --kimg K           run length in thousands of training images (default: the profile's)
  --steps N          run length in minibatches instead of --kimg
  --gamma G          R1 weight (default: the profile's)
  --glr LR           G learning rate (default 0.002, stylegan3 0.0025)
  --dlr LR           D learning rate (default 0.002)
  --sample-every K   samples and a snapshot every K kimg (default: the profile's)
  --time-limit S     stop after S seconds, keeping last.safetensors; 0 = no limit
                     (default: the profile's)
  --seed S           training seed (default 0)
  --split train|all  train on the training subjects of the split (default) or on all
  --split-seed S     seed of the subject split (default 0, as train-seg)
  --device D         cpu, cuda or cuda:N (default cpu)
  -h, --help         this help",
    run: cmd_train_gen,
};

pub const GENERATE: Command = Command {
    name: "generate",
    summary: "sample a trained generator into a synthetic slice store (and a montage PNG)",
    help: "\
Usage: brainsynth generate --checkpoint FILE --n N --out FILE.store [options]

Sample N images with the EMA generator of FILE (a snapshot-*.safetensors or last.safetensors of
train-gen, or an NVlabs snapshot converted with tests/fixtures/convert_nvlabs_pkl.py), map them
from [-1, 1] to 0-255, decode the annotation channel with the study's thresholds (label = 0, 1,
2, 4 where value*5/255 exceeds 0.5, 1.5, 3.0) and write a slice store that train-seg reads:
each image is its own pseudo-subject synthetic_000000, synthetic_000001, ... Also writes
FILE.png: a montage of the first 8 samples. Nothing is written unless all N are made.

Options:
  --checkpoint FILE  generator checkpoint (required)
  --n N              images to make, at least 1 (required)
  --out FILE         slice store to write (required)
  --psi P            truncation psi (default 1: none, as the study; StyleGAN 1: 0.7, NVlabs'
                     and the study's; the Progressive GAN has none)
  --cutoff L         StyleGAN 1 only: truncate the first L style layers (default 8, NVlabs')
  --seed S           latent seed (default 0)
  --batch B          images per forward pass (default 16)
  --sampler S        diffusion only: ancestral (every step, the study's; default),
                     respaced:K (ancestral over K evenly spaced steps) or ddim:K (DDIM, eta 0),
                     1 <= K <= the model's steps
  --weights W        diffusion only: ema (rate 0.9999), ema-fast or raw (default: the ones the
                     run's sample grids used)
  --device D         cpu, cuda or cuda:N (default cpu)
  -h, --help         this help",
    run: cmd_generate,
};

fn log_line(s: &str) {
    eprintln!("{s}");
}

fn positive(name: &str, v: Option<f64>) -> Result<Option<f64>, CliError> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0) => {
            Err(usage(format!("{name} must be a number > 0, not {x}")))
        }
        _ => Ok(v),
    }
}

fn device_arg(args: &mut Args) -> Result<Device, CliError> {
    let d = match args.value("--device")? {
        Some(s) => s.parse::<Device>().map_err(|e| usage(e.to_string()))?,
        None => Device::Cpu,
    };
    check_device(d)?;
    Ok(d)
}

/// What `train-gen` was asked for, architecture aside.
struct TrainRequest {
    out: PathBuf,
    profile_name: String,
    batch: Option<usize>,
    length: Option<RunLength>,
    gamma: Option<f64>,
    g_lr: Option<f64>,
    d_lr: Option<f64>,
    sample_every_kimg: Option<f64>,
    time_limit: Option<Option<Duration>>,
    seed: u64,
    device: Device,
}

fn cmd_train_gen(mut args: Args) -> Result<(), CliError> {
    let arch = GenArch::parse(&args.required("--arch")?)?;
    let store_path = PathBuf::from(args.required("--store")?);
    let out = PathBuf::from(args.required("--out")?);
    let profile_name = args.value("--profile")?.unwrap_or_else(|| "quick".into());
    let batch: Option<usize> = args.parse("--batch")?;
    if batch == Some(0) {
        return Err(usage("--batch must be at least 1"));
    }
    let kimg = positive("--kimg", args.parse("--kimg")?)?;
    let steps: Option<u64> = args.parse("--steps")?;
    let length = match (kimg, steps) {
        (Some(_), Some(_)) => return Err(usage("give --kimg or --steps, not both")),
        (Some(k), None) => Some(RunLength::Images((k * 1000.0).round().max(1.0) as u64)),
        (None, Some(0)) => return Err(usage("--steps must be at least 1")),
        (None, Some(n)) => Some(RunLength::Steps(n)),
        (None, None) => None,
    };
    let gamma: Option<f64> = args.parse("--gamma")?;
    if let Some(g) = gamma
        && !(g.is_finite() && g >= 0.0)
    {
        return Err(usage(format!("--gamma must be a number >= 0, not {g}")));
    }
    let g_lr = positive("--glr", args.parse("--glr")?)?;
    let d_lr = positive("--dlr", args.parse("--dlr")?)?;
    let sample_every_kimg = positive("--sample-every", args.parse("--sample-every")?)?;
    let time_limit = args
        .parse::<f64>("--time-limit")?
        .map(|s| {
            if !(s.is_finite() && s >= 0.0) {
                return Err(usage(format!(
                    "--time-limit must be a number of seconds >= 0, not {s}"
                )));
            }
            Ok((s > 0.0).then(|| Duration::from_secs_f64(s)))
        })
        .transpose()?;
    let seed = args.parse_or("--seed", 0u64)?;
    let split = args.value("--split")?.unwrap_or_else(|| "train".into());
    let split_seed = args.parse_or("--split-seed", 0u64)?;
    let device = device_arg(&mut args)?;
    args.finish()?;
    let seg_profile = SegProfile::by_name(&profile_name)?;

    let store = read_store(&store_path)?;
    let train_ids = match split.as_str() {
        "all" => store.subjects(),
        "train" => {
            split_subjects(
                &store.subjects(),
                &SplitSpec::Counts {
                    train: None,
                    test: seg_profile.test_subjects,
                },
                split_seed,
            )?
            .train
        }
        other => {
            return Err(usage(format!(
                "--split {other:?}: use train (the training subjects) or all"
            )));
        }
    };
    let reals: Vec<Slice> = store
        .slices
        .into_iter()
        .filter(|s| train_ids.contains(&s.subject))
        .collect();
    log_line(&format!(
        "{} training slices of {} subjects from {}",
        reals.len(),
        train_ids.len(),
        store_path.display()
    ));
    let req = TrainRequest {
        out,
        profile_name,
        batch,
        length,
        gamma,
        g_lr,
        d_lr,
        sample_every_kimg,
        time_limit,
        seed,
        device,
    };
    // the one architecture dispatch of train-gen
    match arch {
        GenArch::StyleGan2 => train_stylegan(Arch::StyleGan2, &req, &reals),
        GenArch::StyleGan3 => train_stylegan(Arch::StyleGan3, &req, &reals),
        GenArch::Diffusion => train_diffusion_arch(&req, &reals),
        GenArch::Growing(a) => train_growing(a, &req, &reals),
    }
}

fn train_stylegan(arch: Arch, req: &TrainRequest, reals: &[Slice]) -> Result<(), CliError> {
    let profile = GanProfile::by_name(&req.profile_name, arch)?;
    let mut cfg = profile.train_config(arch, req.seed, req.device);
    if let Some(b) = req.batch {
        cfg.batch = b;
    }
    if let Some(g) = req.gamma {
        cfg.gamma = g;
    }
    cfg.g_lr = req.g_lr;
    cfg.d_lr = req.d_lr;
    let tc = cfg.train_config();
    let length = req
        .length
        .unwrap_or(RunLength::Images((profile.kimg * 1000.0).round() as u64));
    let time_limit = req.time_limit.unwrap_or(profile.time_limit);
    let sample_kimg = req.sample_every_kimg.unwrap_or(profile.sample_every_kimg);
    std::fs::create_dir_all(&req.out).map_err(|e| Error::io(&req.out, e))?;
    let n = &cfg.net;
    let config = Json::obj(vec![
        ("arch", Json::str(arch.name())),
        ("profile", Json::str(profile.name)),
        ("resolution", Json::num(n.resolution as f64)),
        ("channels", Json::num(n.channels as f64)),
        ("z_dim", Json::num(n.z_dim as f64)),
        ("w_dim", Json::num(n.w_dim as f64)),
        ("channel_base", Json::num(n.channel_base as f64)),
        ("channel_max", Json::num(n.channel_max as f64)),
        ("mapping_layers", Json::num(n.mapping_layers as f64)),
        ("mbstd_group", Json::num(n.mbstd_group as f64)),
        ("conv_clamp", n.conv_clamp.map_or(Json::Null, Json::num)),
        ("batch", Json::num(cfg.batch as f64)),
        ("gamma", Json::num(cfg.gamma)),
        ("g_lr", Json::num(tc.g_lr)),
        ("d_lr", Json::num(tc.d_lr)),
        (
            "g_reg_interval",
            tc.g_reg_interval
                .map_or(Json::Null, |v| Json::num(v as f64)),
        ),
        (
            "d_reg_interval",
            tc.d_reg_interval
                .map_or(Json::Null, |v| Json::num(v as f64)),
        ),
        ("style_mixing_prob", Json::num(tc.loss.style_mixing_prob)),
        ("pl_weight", Json::num(tc.loss.pl_weight)),
        ("ema_kimg", Json::num(cfg.batch as f64 * 10.0 / 32.0)),
        ("mirror", Json::Bool(tc.mirror)),
        (
            "length",
            match length {
                RunLength::Images(i) => Json::str(format!("{} kimg", i as f64 / 1000.0)),
                RunLength::Steps(s) => Json::str(format!("{s} steps")),
            },
        ),
        (
            "time_limit_s",
            time_limit.map_or(Json::Null, |t| Json::num(t.as_secs_f64())),
        ),
        ("sample_every_kimg", Json::num(sample_kimg)),
        ("seed", Json::num(req.seed as f64)),
        ("device", Json::str(req.device.to_string())),
        ("training_slices", Json::num(reals.len() as f64)),
    ]);
    write_atomic(req.out.join("config.json"), config.to_pretty().as_bytes())?;

    let mut trainer = GanTrainer::new(cfg.clone(), reals, Some(req.out.clone()))?;
    trainer.sample_every_images = (sample_kimg * 1000.0).round() as u64;
    let mut rc = RunConfig::new(&req.out, length);
    rc.time_limit = time_limit;
    rc.log_every = 10;
    // `last` every ~sample interval too (the runner writes it at its validations)
    rc.val_every = (trainer.sample_every_images / cfg.batch as u64).max(1);
    let o = run(&mut trainer, &rc, &mut |s| log_line(s))?;
    log_line(&format!(
        "{}: {} steps, {:.2} kimg, {:.1} img/s this session; state in {}",
        arch.name(),
        o.steps_done,
        o.images_done as f64 / 1000.0,
        o.images_per_second,
        o.last_checkpoint.display()
    ));
    if crate::profile::enabled() {
        log_line(&format!(
            "kernel time per training step (BRAINSYNTH_PROFILE):\n{}",
            crate::profile::report(o.steps_done.max(1))
        ));
    }
    if o.stopped == StopReason::Interrupted {
        return Err(CliError::Interrupted(format!(
            "the training state is in {}",
            o.last_checkpoint.display()
        )));
    }
    Ok(())
}

fn cmd_generate(mut args: Args) -> Result<(), CliError> {
    let ckpt = PathBuf::from(args.required("--checkpoint")?);
    let n: usize = args
        .parse("--n")?
        .ok_or_else(|| usage("generate needs --n"))?;
    let out = PathBuf::from(args.required("--out")?);
    let psi_arg: Option<f64> = args.parse("--psi")?;
    let cutoff: Option<usize> = args.parse("--cutoff")?;
    let seed = args.parse_or("--seed", 0u64)?;
    let batch = args.parse_or("--batch", 16usize)?;
    let sampler = args
        .value("--sampler")?
        .map(|s| Sampler::parse(&s))
        .transpose()?;
    let weights = args
        .value("--weights")?
        .map(|s| EmaChoice::parse(&s))
        .transpose()?;
    let device = device_arg(&mut args)?;
    args.finish()?;
    if n == 0 {
        return Err(usage("--n must be at least 1"));
    }
    if batch == 0 {
        return Err(usage("--batch must be at least 1"));
    }
    if let Some(p) = psi_arg.filter(|p| !p.is_finite()) {
        return Err(usage(format!("--psi must be a finite number, not {p}")));
    }
    let ck = Checkpoint::open(&ckpt)?;
    let is_sg1 = ck.meta("model") == Some(crate::models::gan::stylegan1::MODEL_NAME);
    if cutoff.is_some() && !is_sg1 {
        return Err(usage("--cutoff applies to StyleGAN 1 checkpoints only"));
    }
    // the study sampled StyleGAN 1 with NVlabs' ψ 0.7 and the others untruncated
    let psi = psi_arg.unwrap_or(if is_sg1 {
        crate::models::gan::stylegan1::TRUNCATION_PSI
    } else {
        1.0
    });
    // the one architecture dispatch of generate
    let made = match ck.meta("model") {
        Some(crate::train::diffusion::KIND) => {
            if psi != 1.0 {
                return Err(usage("--psi applies to the GANs, not to a diffusion model"));
            }
            let g = load_generator(&ckpt, weights, device)?;
            let sampler = sampler.unwrap_or(Sampler::Ancestral);
            let t0 = std::time::Instant::now();
            let made = generate_diffusion(&g, sampler, n, seed, batch, &out)?;
            let secs = t0.elapsed().as_secs_f64();
            log_line(&format!(
                "{n} images with {sampler:?} in {secs:.1} s ({:.3} images/s)",
                n as f64 / secs
            ));
            made
        }
        Some("stylegan2") | Some("stylegan3") | Some("progan") | Some("stylegan1")
            if sampler.is_some() || weights.is_some() =>
        {
            return Err(usage(
                "--sampler and --weights apply to diffusion checkpoints only",
            ));
        }
        Some("stylegan2") | Some("stylegan3") => {
            let g = AnyGenerator::from_checkpoint(&ck)?;
            generate_stylegan(&g, n, psi, seed, batch, device, &out)?
        }
        Some("progan") | Some("stylegan1") => {
            let g = GrowingSampler::from_checkpoint(&ck)?;
            let trunc = Truncation { psi, cutoff };
            generate_growing(&g, trunc, n, seed, batch, device, &out)?
        }
        other => {
            return Err(CliError::Run(Error::Checkpoint {
                path: ckpt.clone(),
                msg: format!(
                    "is a {} checkpoint, not a generator (stylegan2, stylegan3, progan, \
                     stylegan1 or diffusion)",
                    other.unwrap_or("unlabelled")
                ),
            }));
        }
    };
    log_line(&format!(
        "{n} synthetic slices in {}, montage in {}",
        out.display(),
        made.display()
    ));
    Ok(())
}

/// `train-gen --arch progan|stylegan1`: the profile's [`ProgressiveTrainConfig`] with the
/// options given.
fn train_growing(arch: GrowingArch, req: &TrainRequest, reals: &[Slice]) -> Result<(), CliError> {
    let profile = ProgressiveProfile::by_name(&req.profile_name, arch)?;
    let mut cfg = profile.train_config(req.seed, req.device);
    if let Some(b) = req.batch {
        // one minibatch at every resolution
        cfg.train.schedule.batch_base = b;
        cfg.train.schedule.batch_per_resolution.clear();
    }
    if let Some(g) = req.gamma {
        match &mut cfg.train.loss {
            crate::models::gan::loss::GrowingLoss::LogisticR1 { gamma } => *gamma = g,
            crate::models::gan::loss::GrowingLoss::WganGp { .. } => {
                return Err(usage(
                    "--gamma is StyleGAN's R1 weight; the Progressive GAN uses WGAN-GP (lambda 10)",
                ));
            }
        }
    }
    if let Some(lr) = req.g_lr {
        cfg.train.g_lr = lr;
    }
    if let Some(lr) = req.d_lr {
        cfg.train.d_lr = lr;
    }
    let length = req
        .length
        .unwrap_or(RunLength::Images((profile.kimg * 1000.0).round() as u64));
    let time_limit = req.time_limit.unwrap_or(profile.time_limit);
    let sample_kimg = req.sample_every_kimg.unwrap_or(profile.sample_every_kimg);
    std::fs::create_dir_all(&req.out).map_err(|e| Error::io(&req.out, e))?;
    let mut fields = config_json(&cfg);
    fields.extend([
        (
            "length",
            match length {
                RunLength::Images(i) => Json::str(format!("{} kimg", i as f64 / 1000.0)),
                RunLength::Steps(s) => Json::str(format!("{s} steps")),
            },
        ),
        (
            "time_limit_s",
            time_limit.map_or(Json::Null, |t| Json::num(t.as_secs_f64())),
        ),
        ("sample_every_kimg", Json::num(sample_kimg)),
        ("training_slices", Json::num(reals.len() as f64)),
    ]);
    write_atomic(
        req.out.join("config.json"),
        Json::obj(fields).to_pretty().as_bytes(),
    )?;
    let first_batch = cfg.train.schedule.batch_at(4).max(1) as u64;
    let mut trainer = ProgressiveGanTrainer::new(cfg, reals, Some(req.out.clone()))?;
    trainer.sample_every_images = (sample_kimg * 1000.0).round() as u64;
    let mut rc = RunConfig::new(&req.out, length);
    rc.time_limit = time_limit;
    rc.log_every = 10;
    rc.val_every = (trainer.sample_every_images / first_batch).max(1);
    let o = run(&mut trainer, &rc, &mut |s| log_line(s))?;
    log_line(&format!(
        "{}: {} steps, {:.2} kimg, {:.1} img/s this session, now at {}x{} (alpha {:.3}); state \
         in {}",
        arch.name(),
        o.steps_done,
        o.images_done as f64 / 1000.0,
        o.images_per_second,
        trainer.schedule_state().growth.resolution(),
        trainer.schedule_state().growth.resolution(),
        trainer.schedule_state().growth.alpha,
        o.last_checkpoint.display()
    ));
    if o.stopped == StopReason::Interrupted {
        return Err(CliError::Interrupted(format!(
            "the training state is in {}",
            o.last_checkpoint.display()
        )));
    }
    Ok(())
}

/// `train-gen --arch diffusion`: the profile's [`DiffusionTrainConfig`] with the options given.
fn train_diffusion_arch(req: &TrainRequest, reals: &[Slice]) -> Result<(), CliError> {
    if req.gamma.is_some() || req.d_lr.is_some() {
        return Err(usage(
            "--gamma and --dlr are GAN options; a diffusion model has no discriminator",
        ));
    }
    let mut cfg = DiffusionTrainConfig::for_profile(&req.profile_name, req.seed)?;
    cfg.device = req.device;
    if let Some(b) = req.batch {
        cfg.batch = b;
    }
    if let Some(lr) = req.g_lr {
        cfg.lr = lr;
    }
    let per_step = cfg.batch as u64;
    match req.length {
        Some(RunLength::Steps(n)) => cfg.steps = n,
        Some(RunLength::Images(i)) => cfg.steps = i.div_ceil(per_step).max(1),
        None => {}
    }
    if let Some(k) = req.sample_every_kimg {
        cfg.sample_every = ((k * 1000.0 / per_step as f64).round() as u64).max(1);
    }
    if let Some(t) = req.time_limit {
        cfg.time_limit = t;
    }
    std::fs::create_dir_all(&req.out).map_err(|e| Error::io(&req.out, e))?;
    let n = &cfg.net;
    let list = |v: &[usize]| {
        Json::str(
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
    };
    let config = Json::obj(vec![
        ("arch", Json::str("diffusion")),
        ("profile", Json::str(cfg.profile.clone())),
        ("image_size", Json::num(n.image_size as f64)),
        ("model_channels", Json::num(n.model_channels as f64)),
        ("num_res_blocks", Json::num(n.num_res_blocks as f64)),
        ("channel_mult", list(&n.channel_mult)),
        ("attention_ds", list(&n.attention_ds)),
        ("num_heads", Json::num(n.num_heads as f64)),
        ("diffusion_steps", Json::num(cfg.diffusion_steps as f64)),
        ("batch", Json::num(cfg.batch as f64)),
        ("lr", Json::num(cfg.lr)),
        ("ema_rate", Json::num(cfg.ema_rate)),
        ("fast_ema_rate", Json::num(cfg.fast_ema_rate)),
        ("clip", cfg.clip.map_or(Json::Null, Json::num)),
        ("steps", Json::num(cfg.steps as f64)),
        ("sample_every_steps", Json::num(cfg.sample_every as f64)),
        (
            "time_limit_s",
            cfg.time_limit
                .map_or(Json::Null, |t| Json::num(t.as_secs_f64())),
        ),
        ("seed", Json::num(req.seed as f64)),
        ("device", Json::str(req.device.to_string())),
        ("training_slices", Json::num(reals.len() as f64)),
    ]);
    write_atomic(req.out.join("config.json"), config.to_pretty().as_bytes())?;
    let mut rc = RunConfig::new(&req.out, RunLength::Steps(cfg.steps));
    rc.log_every = 10;
    let o = train_diffusion(&cfg, reals, &req.out, Some(rc), &mut |s| log_line(s))?;
    if crate::profile::enabled() {
        log_line(&format!(
            "kernel time per training step (BRAINSYNTH_PROFILE):\n{}",
            crate::profile::report(o.steps_done.max(1))
        ));
    }
    log_line(&format!(
        "diffusion: {} steps, {:.1} img/s this session; state in {}",
        o.steps_done,
        o.images_per_second,
        o.last_checkpoint.display()
    ));
    if o.stopped == StopReason::Interrupted {
        return Err(CliError::Interrupted(format!(
            "the training state is in {}",
            o.last_checkpoint.display()
        )));
    }
    Ok(())
}
