//! The generators the study compares, as one list: each entry says how to describe, train and
//! sample one family: the study's five (ProGAN, StyleGAN 1, StyleGAN2, StyleGAN3-T, diffusion), in
//! the paper's table order.

use std::path::Path;
use std::time::Duration;

use crate::data::Slice;
use crate::io::checkpoint::Checkpoint;
use crate::io::json::Json;
use crate::models::gan::Arch;
use crate::models::gan::growing::Truncation;
use crate::tensor::Device;
use crate::train::diffusion::{DiffusionTrainConfig, load_generator, train_diffusion};
use crate::train::gan::progressive::config_json;
use crate::train::gan::{
    AnyGenerator, GanProfile, GanTrainer, GrowingArch, GrowingSampler, ProgressiveGanTrainer,
    ProgressiveProfile,
};
use crate::train::generate::{generate_diffusion, generate_growing, generate_stylegan};
use crate::train::runner::{RunConfig, RunLength, StopReason, run};
use crate::{Error, Result};

use super::config::StudyProfile;

/// One generator training or sampling job of the study.
pub struct GenJob<'a> {
    /// The stage folder (the training run's folder; sampling reads its `last.safetensors`).
    pub dir: &'a Path,
    pub profile: &'a StudyProfile,
    pub seed: u64,
    pub device: Device,
    /// Training length in images (the study's budget for this generator).
    pub images: u64,
    /// What is left of the optional wall-clock cap.
    pub time_limit: Option<Duration>,
}

/// What a training session did.
pub struct GenTrained {
    pub stopped: StopReason,
    /// Seconds of this session.
    pub seconds: f64,
}

/// How a generator family trains: the job, the training slices, the progress log.
pub type TrainFn = fn(&GenJob, &[Slice], &mut dyn FnMut(&str)) -> Result<GenTrained>;

/// One generator family of the study.
pub struct GeneratorSpec {
    /// Name in `--generators` and in folder names.
    pub name: &'static str,
    /// Name in tables and pictures.
    pub label: &'static str,
    /// The training settings that decide the result (part of the stage's configuration); must
    /// hold `kimg` (the training length) and `time_limit_s` (seconds or null, an optional cap
    /// the study resumes against).
    pub settings: fn(&StudyProfile) -> Result<Json>,
    /// Train on the training subjects' slices into `job.dir`, resuming from its `last`.
    pub train: TrainFn,
    /// Sample `n` images with seed `seed` from the run in `job.dir` into the store `out`.
    pub sample: fn(&GenJob, usize, u64, &Path) -> Result<()>,
}

impl std::fmt::Debug for GeneratorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeneratorSpec({})", self.name)
    }
}

/// Every generator the study knows, in table order.
pub static GENERATORS: [GeneratorSpec; 5] = [
    GeneratorSpec {
        name: "progan",
        label: "ProGAN",
        settings: |p| growing_settings(GrowingArch::ProGan, p),
        train: |j, r, l| train_growing(GrowingArch::ProGan, j, r, l),
        sample: |j, n, s, o| sample_growing(Truncation::NONE, j, n, s, o),
    },
    GeneratorSpec {
        name: "stylegan1",
        label: "StyleGAN 1",
        settings: |p| growing_settings(GrowingArch::StyleGan1, p),
        train: |j, r, l| train_growing(GrowingArch::StyleGan1, j, r, l),
        sample: |j, n, s, o| sample_growing(STYLEGAN1_TRUNCATION, j, n, s, o),
    },
    GeneratorSpec {
        name: "stylegan2",
        label: "StyleGAN2",
        settings: |p| gan_settings(Arch::StyleGan2, p),
        train: |j, r, l| train_gan(Arch::StyleGan2, j, r, l),
        sample: sample_gan,
    },
    GeneratorSpec {
        name: "stylegan3",
        label: "StyleGAN3-T",
        settings: |p| gan_settings(Arch::StyleGan3, p),
        train: |j, r, l| train_gan(Arch::StyleGan3, j, r, l),
        sample: sample_gan,
    },
    GeneratorSpec {
        name: "diffusion",
        label: "Diffusion",
        settings: diffusion_settings,
        train: train_diffusion_job,
        sample: sample_diffusion,
    },
];

/// The generator called `name`.
pub fn generator_by_name(name: &str) -> Result<&'static GeneratorSpec> {
    GENERATORS.iter().find(|g| g.name == name).ok_or_else(|| {
        let names: Vec<&str> = GENERATORS.iter().map(|g| g.name).collect();
        Error::invalid(
            "study",
            format!(
                "'{name}' is not a generator of the study; use {} (or none)",
                names.join(", ")
            ),
        )
    })
}

fn secs(t: Option<Duration>) -> Json {
    t.map_or(Json::Null, |t| Json::num(t.as_secs_f64()))
}

/// The study sampled StyleGAN 1 with ψ 0.7 (NVlabs' default cutoff of 8 style layers), every
/// other generator with ψ 1.
const STYLEGAN1_TRUNCATION: Truncation = Truncation {
    psi: 0.7,
    cutoff: None,
};

fn growing_settings(arch: GrowingArch, p: &StudyProfile) -> Result<Json> {
    let g = ProgressiveProfile::by_name(p.gen_profile, arch)?;
    let cfg = g.train_config(0, Device::Cpu);
    let mut fields = config_json(&cfg);
    fields.retain(|(k, _)| *k != "seed" && *k != "device");
    fields.extend([
        ("kimg", Json::num(p.gen_kimg(arch.name()).unwrap_or(g.kimg))),
        ("time_limit_s", secs(p.gen_time_limit)),
    ]);
    if arch == GrowingArch::StyleGan1 {
        fields.push(("psi", Json::num(STYLEGAN1_TRUNCATION.psi)));
    }
    Ok(Json::obj(fields))
}

fn train_growing(
    arch: GrowingArch,
    job: &GenJob,
    reals: &[Slice],
    log: &mut dyn FnMut(&str),
) -> Result<GenTrained> {
    let profile = ProgressiveProfile::by_name(job.profile.gen_profile, arch)?;
    let cfg = profile.train_config(job.seed, job.device);
    let first_batch = cfg.train.schedule.batch_at(4).max(1) as u64;
    let mut trainer = ProgressiveGanTrainer::new(cfg, reals, Some(job.dir.to_path_buf()))?;
    trainer.sample_every_images = (profile.sample_every_kimg * 1000.0).round() as u64;
    let mut rc = RunConfig::new(job.dir, RunLength::Images(job.images));
    rc.time_limit = job.time_limit;
    rc.log_every = 10;
    rc.val_every = (trainer.sample_every_images / first_batch).max(1);
    let o = run(&mut trainer, &rc, log)?;
    Ok(GenTrained {
        stopped: o.stopped,
        seconds: o.seconds,
    })
}

fn sample_growing(trunc: Truncation, job: &GenJob, n: usize, seed: u64, out: &Path) -> Result<()> {
    let ck = Checkpoint::open(job.dir.join("last.safetensors"))?;
    let g = GrowingSampler::from_checkpoint(&ck)?;
    generate_growing(
        &g,
        trunc,
        n,
        seed,
        job.profile.sample_batch,
        job.device,
        out,
    )?;
    Ok(())
}

fn gan_settings(arch: Arch, p: &StudyProfile) -> Result<Json> {
    let g = GanProfile::by_name(p.gen_profile, arch)?;
    Ok(Json::obj(vec![
        ("arch", Json::str(arch.name())),
        ("profile", Json::str(g.name)),
        ("resolution", Json::num(g.net.resolution as f64)),
        ("channel_base", Json::num(g.net.channel_base as f64)),
        ("channel_max", Json::num(g.net.channel_max as f64)),
        ("batch", Json::num(g.batch as f64)),
        ("gamma", Json::num(g.gamma)),
        ("kimg", Json::num(p.gen_kimg(arch.name()).unwrap_or(g.kimg))),
        ("time_limit_s", secs(p.gen_time_limit)),
        ("psi", Json::num(p.psi)),
    ]))
}

fn train_gan(
    arch: Arch,
    job: &GenJob,
    reals: &[Slice],
    log: &mut dyn FnMut(&str),
) -> Result<GenTrained> {
    let profile = GanProfile::by_name(job.profile.gen_profile, arch)?;
    let cfg = profile.train_config(arch, job.seed, job.device);
    let batch = cfg.batch as u64;
    let mut trainer = GanTrainer::new(cfg, reals, Some(job.dir.to_path_buf()))?;
    trainer.sample_every_images = (profile.sample_every_kimg * 1000.0).round() as u64;
    let mut rc = RunConfig::new(job.dir, RunLength::Images(job.images));
    rc.time_limit = job.time_limit;
    rc.log_every = 10;
    rc.val_every = (trainer.sample_every_images / batch).max(1);
    let o = run(&mut trainer, &rc, log)?;
    Ok(GenTrained {
        stopped: o.stopped,
        seconds: o.seconds,
    })
}

fn sample_gan(job: &GenJob, n: usize, seed: u64, out: &Path) -> Result<()> {
    let ck = Checkpoint::open(job.dir.join("last.safetensors"))?;
    let g = AnyGenerator::from_checkpoint(&ck)?;
    generate_stylegan(
        &g,
        n,
        job.profile.psi,
        seed,
        job.profile.sample_batch,
        job.device,
        out,
    )?;
    Ok(())
}

/// Optimiser steps of `kimg` thousand images in minibatches of `batch` (at least one).
fn diffusion_steps_for(kimg: f64, batch: usize) -> u64 {
    ((kimg * 1000.0 / batch.max(1) as f64).ceil() as u64).max(1)
}

fn diffusion_settings(p: &StudyProfile) -> Result<Json> {
    let c = DiffusionTrainConfig::for_profile(p.gen_profile, 0)?;
    let kimg = p
        .gen_kimg("diffusion")
        .unwrap_or(c.steps as f64 * c.batch as f64 / 1000.0);
    Ok(Json::obj(vec![
        ("profile", Json::str(c.profile.clone())),
        ("image_size", Json::num(c.net.image_size as f64)),
        ("model_channels", Json::num(c.net.model_channels as f64)),
        ("diffusion_steps", Json::num(c.diffusion_steps as f64)),
        ("batch", Json::num(c.batch as f64)),
        ("lr", Json::num(c.lr)),
        ("kimg", Json::num(kimg)),
        (
            "steps",
            Json::num(diffusion_steps_for(kimg, c.batch) as f64),
        ),
        ("time_limit_s", secs(p.gen_time_limit)),
        ("sampler", Json::str(format!("{:?}", p.diffusion_sampler))),
    ]))
}

fn train_diffusion_job(
    job: &GenJob,
    reals: &[Slice],
    log: &mut dyn FnMut(&str),
) -> Result<GenTrained> {
    let mut cfg = DiffusionTrainConfig::for_profile(job.profile.gen_profile, job.seed)?;
    cfg.device = job.device;
    cfg.time_limit = job.time_limit;
    cfg.steps = diffusion_steps_for(job.images as f64 / 1000.0, cfg.batch);
    let o = train_diffusion(&cfg, reals, job.dir, None, log)?;
    Ok(GenTrained {
        stopped: o.stopped,
        seconds: o.seconds,
    })
}

fn sample_diffusion(job: &GenJob, n: usize, seed: u64, out: &Path) -> Result<()> {
    let g = load_generator(&job.dir.join("last.safetensors"), None, job.device)?;
    generate_diffusion(
        &g,
        job.profile.diffusion_sampler,
        n,
        seed,
        job.profile.sample_batch,
        out,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::stage::num;

    /// Each generator's stage configuration carries the study's budget for it under its own name
    /// (a name mismatch would silently fall back to the profile's own, much longer, length).
    #[test]
    fn every_generator_trains_for_the_study_budget() {
        let p = StudyProfile::quick();
        for g in &GENERATORS {
            let s = (g.settings)(&p).unwrap();
            assert_eq!(
                Some(num(&s, "kimg").unwrap()),
                p.gen_kimg(g.name),
                "{}",
                g.name
            );
            assert!(num(&s, "time_limit_s").unwrap().is_nan(), "{}", g.name);
        }
        assert_eq!(diffusion_steps_for(1.6, 8), 200);
        assert_eq!(diffusion_steps_for(0.0001, 8), 1);
    }
}
