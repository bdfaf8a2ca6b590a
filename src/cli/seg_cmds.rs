//! Subcommands of the segmentation study: `train-seg`, `eval-seg`, `study`.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Args, CliError, Command, usage};
use crate::data::split::{SplitSpec, split_subjects, test_split};
use crate::data::store::read_store;
use crate::eval::dice::Region;
use crate::study::{
    GENERATORS, StudyData, StudyOptions, StudyProfile, Variant, generator_by_name, run_study,
};
use crate::tensor::Device;
use crate::train::profile::SegProfile;
use crate::train::runner::StopReason;
use crate::train::seg::{SegKind, check_device, evaluate, load_segmenter, train_segmenter};

pub const TRAIN_SEG: Command = Command {
    name: "train-seg",
    summary: "train a U-Net or Swin segmenter on the training subjects of a slice store",
    help: "\
Usage: brainsynth train-seg --store FILE --model unet|swin --out DIR [options]

Train a segmenter on the slices of the training subjects of FILE (the test subjects of the
subject split are left out; some training subjects are held out for validation). Loss: soft
Dice + cross-entropy (U-Net: with deep supervision). Optimiser: U-Net SGD Nesterov 0.99 with
poly learning rate; Swin AdamW with warm-up + poly. The best checkpoint by validation Dice is
DIR/best.safetensors; DIR/last.safetensors holds the whole training state (weights, optimiser,
random streams) and the same command run again resumes from it exactly, saying from which
iteration. Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes DIR/last.safetensors
and exits with status 130. A progress line shows loss, validation Dice, images/s and the time
left; DIR/curves.png plots loss and validation Dice over the whole run.

Options:
  --store FILE       slice store written by `prepare` (required)
  --model M          unet or swin (required)
  --out DIR          folder for checkpoints and curves.png (required)
  --profile P        quick (64x64, small networks, CPU) or paper (256x256, the paper's
                     networks) (default quick); see `brainsynth study --help` for the values
  --iterations N     optimiser steps (default: the profile's)
  --time-limit S     stop after S seconds, keeping the best checkpoint; 0 = no limit
                     (default: the profile's)
  --val-every N      validate (and keep the best checkpoint) every N steps (default: the
                     profile's)
  --seed S           training seed (default 0)
  --split-seed S     seed of the subject split (default 0)
  --split S          test subjects from a split: paper (the study's own split of BraTS
                     2020/2021, the default under --profile paper on those cases) or a
                     file written by `brainsynth split`; --split-seed then only splits
                     validation off the training subjects
  --device D         cpu, cuda or cuda:N: where the model, its optimiser state and the
                     batches live (default cpu); checkpoints load onto any device
  -h, --help         this help",
    run: cmd_train_seg,
};

pub const EVAL_SEG: Command = Command {
    name: "eval-seg",
    summary: "test a trained segmenter on the test subjects of a slice store (3-D Dice)",
    help: "\
Usage: brainsynth eval-seg --store FILE --model unet|swin --checkpoint FILE [options]

Predict every slice of the test subjects of the subject split, stack each subject's slices into
a volume and print Dice per subject in 3-D: enhancing, edema, necrotic core, their mean, whole
tumour and tumour core, then the mean and standard deviation over subjects. Dice of an empty
prediction against an empty truth is 1.

Options:
  --store FILE       slice store written by `prepare` (required)
  --model M          unet or swin (required)
  --checkpoint FILE  best.safetensors written by train-seg (required)
  --profile P        the profile the model was trained with (default quick)
  --split-seed S     seed of the subject split (default 0)
  --split S          test subjects from a split: paper (the study's own split of BraTS
                     2020/2021, the default under --profile paper on those cases) or a
                     file written by `brainsynth split`; --split-seed then only splits
                     validation off the training subjects
  --device D         cpu, cuda or cuda:N: where the model, its optimiser state and the
                     batches live (default cpu); checkpoints load onto any device
  -h, --help         this help",
    run: cmd_eval_seg,
};

pub const STUDY: Command = Command {
    name: "study",
    summary: "the comparison study: real baseline, generators, synthetic-trained segmenters, report",
    help: "\
Usage: brainsynth study [options]

Run the paper's comparison end to end as resumable stages under OUT:
  real/<seg>/seed<k>          each segmenter trained on real slices (the baseline)
  <gen>/train                 each generator trained on the training subjects' slices only
  <gen>/sample                its synthetic set (synthetic.store, and a montage)
  <gen>/audit                 memorisation audit: every synthetic image's best Pearson
                              correlation with any training image (closest.png)
  <gen>/measures              label statistics and label consistency (the real-trained
                              U-Net on the synthetic images vs their labels)
  <gen>/<variant>/<seg>/seed<k>  each segmenter trained on the synthetic set (80/20 by image
                              for training/validation), tested on the real test subjects
Every test is Dice per real test subject in 3-D. Each stage folder holds its config.json;
the same command run again skips complete stages, resumes an interrupted one from its
last.safetensors (Ctrl-C stops cleanly), and refuses a folder made with other settings.
Writes OUT/results.md (the paper's table: rows real and each generator, columns segmenter x
variant, mean class Dice +- std and the synthetic/real ratio; per-class Dice; memorisation;
measures), OUT/results.json (every number), OUT/samples.png (a labelled row per generator,
real slices on top), OUT/memorization.png, OUT/predictions.png, and curves.png per stage.

Variants: synthetic (synthetic only, augmented as the real baseline), synthetic-noaug,
mixed (real + synthetic, real repeated to balance), mixed-noaug; or all.

Profiles:
  quick   64x64 slices of 24 phantom subjects (6 test, 3 validation), batch 8, CPU.
          Segmenters (the same budget for real and synthetic data, so the ratio is fair):
          U-Net base 16, depth 4, 1200 SGD steps (lr 0.01, validation every 150); Swin
          patch 2, embed 24, depths 2-2-2-2, window 4, UperNet 48 + auxiliary FCN head,
          600 AdamW steps (lr 1e-3, warm-up 50, validation every 50).
          Generators: the quick generator profiles for a fixed number of training images
          (ProGAN 8 kimg, StyleGAN 1 6, StyleGAN2 8, StyleGAN3-T 1.6, diffusion 2.4 = 300
          steps), each about 6 minutes on two quiet cores; 300 synthetic images each
          (diffusion: DDIM over 10 steps). Every budget counts steps or images, not
          seconds, so the same command gives the same numbers on a busy machine (slower).
          Estimate of the default study on 2 quiet CPU cores: 6 segmenter pairs (real + 5
          generators) x ~4 min = ~24 min; 5 generators x ~6 min = ~30 min; sampling ~5 min
          (most of it the diffusion model); audits, measures, slicing ~1 min: ~60 min.
  paper   256x256 slices (BraTS), batch 16; U-Net base 64, depth 6; Swin-B with UperNet
          512; the paper's full trainings, generators at their paper profiles (NVlabs
          defaults; diffusion 4000 steps, ancestral sampling), 100,000 synthetic images
          each; on BraTS 2020/2021 cases the study's own subject split (--split paper)
          unless --split says otherwise; for GPUs.

The paper's study on real BraTS data on a GPU:
  brainsynth prepare --cases BRATS_DIR --out brats.store --size 256
  brainsynth study --profile paper --store brats.store --device cuda --seeds 10 \\
      --variants all --out runs/paper

Options:
  --out DIR          output folder (default runs/study)
  --profile P        quick or paper (default quick)
  --cases DIR        BraTS case folders to use instead of the phantom
  --store FILE       a slice store (prepared at the profile's size) instead of the phantom
  --subjects N       phantom subjects (default: the profile's)
  --generators LIST  comma-separated, from progan,stylegan1,stylegan2,stylegan3,diffusion,
                     or all, or none (the real baseline alone) (default all)
  --segmenters LIST  comma-separated, from unet,swin (default unet,swin; --models is the
                     same)
  --variants LIST    comma-separated variants (above), or all (default synthetic)
  --seeds N          train each segmenter with seeds 0..N-1; the table gives mean +- std
                     over seeds (default 1: the std is over test subjects)
  --n-synthetic N    synthetic images per generator (default: the profile's)
  --gen-kimg K       train every generator on K thousand images (default: the
                     profile's budget per generator)
  --gen-time-limit S also stop each generator's training after S seconds (default: no
                     limit; a limit makes the result depend on the machine's load)
  --iterations N     optimiser steps per segmenter (default: the profile's)
  --time-limit S     seconds per segmenter before training stops, keeping the best
                     checkpoint; 0 = no limit (default: the profile's)
  --val-every N      validate (and keep the best checkpoint) every N steps (default: the
                     profile's)
  --split-seed S     seed of the subject split (default 0)
  --split S          test subjects from a split: paper (the study's own split of BraTS
                     2020/2021, the default under --profile paper on those cases) or a
                     file written by `brainsynth split`; --split-seed then only splits
                     validation off the training subjects
  --device D         cpu, cuda or cuda:N: where the models train, sample and are tested
                     (default cpu); checkpoints load onto any device
  --memorization-sizes LIST
                     the memorisation experiment: comma-separated numbers of training
                     subjects (e.g. 4,15); each generator of --memorization-generators is
                     also trained (same budget) on the first N training subjects only,
                     sampled, and audited against their slices: memorization/<N>-subjects/,
                     a table in results.md and memorization_sizes.png (default: not run)
  --memorization-generators LIST
                     generators of that experiment (default stylegan2,diffusion, as the
                     paper's finding is about them)
  -h, --help         this help",
    run: cmd_study,
};

fn profile_arg(args: &mut Args) -> Result<SegProfile, CliError> {
    let name = args.value("--profile")?.unwrap_or_else(|| "quick".into());
    Ok(SegProfile::by_name(&name)?)
}

fn model_arg(args: &mut Args) -> Result<SegKind, CliError> {
    Ok(SegKind::parse(&args.required("--model")?)?)
}

/// `--time-limit S`: `Some(None)` for 0 (no limit), `Some(Some(S s))` otherwise.
fn time_limit_arg(args: &mut Args) -> Result<Option<Option<Duration>>, CliError> {
    args.parse::<f64>("--time-limit")?
        .map(|s| {
            if !(s.is_finite() && s >= 0.0) {
                return Err(usage(format!(
                    "--time-limit must be a number of seconds >= 0, not {s}"
                )));
            }
            Ok((s > 0.0).then(|| Duration::from_secs_f64(s)))
        })
        .transpose()
}

/// `--device cpu|cuda|cuda:N` (default cpu), checked up front so a missing GPU is one clear error.
fn device_arg(args: &mut Args) -> Result<Device, CliError> {
    let d = match args.value("--device")? {
        Some(s) => s.parse::<Device>().map_err(|e| usage(e.to_string()))?,
        None => Device::Cpu,
    };
    check_device(d)?;
    Ok(d)
}

fn log_line(s: &str) {
    eprintln!("{s}");
}

fn cmd_train_seg(mut args: Args) -> Result<(), CliError> {
    let store_path = PathBuf::from(args.required("--store")?);
    let kind = model_arg(&mut args)?;
    let out = PathBuf::from(args.required("--out")?);
    let profile = profile_arg(&mut args)?;
    let iterations: Option<u64> = args.parse("--iterations")?;
    let time_limit = time_limit_arg(&mut args)?;
    let val_every: Option<u64> = args.parse("--val-every")?;
    let seed = args.parse_or("--seed", 0u64)?;
    let split_seed = args.parse_or("--split-seed", 0u64)?;
    let split_arg = args.value("--split")?;
    let device = device_arg(&mut args)?;
    args.finish()?;
    let store = read_store(&store_path)?;
    let subjects = store.subjects();
    let (split, how) = test_split(
        &subjects,
        split_arg.as_deref(),
        profile.name == "paper",
        profile.test_subjects,
        split_seed,
    )?;
    eprintln!("test subjects: {how}");
    let tv = split_subjects(
        &split.train,
        &SplitSpec::Counts {
            train: None,
            test: profile.val_subjects,
        },
        split_seed + 1,
    )?;
    let pick = |ids: &[String]| {
        store
            .slices
            .iter()
            .filter(|s| ids.contains(&s.subject))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut cfg = profile.train_config(kind, seed);
    if let Some(n) = iterations {
        cfg.iterations = n;
    }
    if let Some(t) = time_limit {
        cfg.time_limit = t;
    }
    if let Some(v) = val_every {
        cfg.val_every = v.max(1);
    }
    cfg.device = device;
    let o = train_segmenter(&cfg, &pick(&tv.train), &pick(&tv.test), &out, &mut log_line)?;
    if o.stopped == StopReason::Interrupted {
        return Err(CliError::Interrupted(format!(
            "stopped after iteration {}; run the same command again to resume",
            o.iterations_done
        )));
    }
    eprintln!(
        "best validation Dice {:.3} at iteration {} -> {} ({:.0} s, {:.1} images/s)",
        o.best_val_dice,
        o.best_iteration,
        o.best_checkpoint.display(),
        o.seconds,
        o.images_per_second
    );
    if crate::profile::enabled() {
        eprintln!(
            "kernel time per training step (BRAINSYNTH_PROFILE):\n{}",
            crate::profile::report(o.iterations_done.max(1))
        );
    }
    Ok(())
}

fn cmd_eval_seg(mut args: Args) -> Result<(), CliError> {
    let store_path = PathBuf::from(args.required("--store")?);
    let kind = model_arg(&mut args)?;
    let ckpt = PathBuf::from(args.required("--checkpoint")?);
    let profile = profile_arg(&mut args)?;
    let split_seed = args.parse_or("--split-seed", 0u64)?;
    let split_arg = args.value("--split")?;
    let device = device_arg(&mut args)?;
    args.finish()?;
    let store = read_store(&store_path)?;
    let (split, how) = test_split(
        &store.subjects(),
        split_arg.as_deref(),
        profile.name == "paper",
        profile.test_subjects,
        split_seed,
    )?;
    eprintln!("test subjects: {how}");
    let test: Vec<_> = store
        .slices
        .iter()
        .filter(|s| split.test.contains(&s.subject))
        .cloned()
        .collect();
    let mut cfg = profile.train_config(kind, 0);
    cfg.device = device;
    let model = load_segmenter(&cfg, &ckpt)?;
    let d = evaluate(&model, &test, profile.batch * 2)?;
    println!("subject\tenhancing\tedema\tnecrotic_core\tmean\twhole_tumor\ttumor_core");
    for (id, c) in d.subjects() {
        println!(
            "{id}\t{:.3}\t{:.3}\t{:.3}\t{:.3}\t{:.3}\t{:.3}",
            c.dice(Region::Enhancing),
            c.dice(Region::Edema),
            c.dice(Region::NecroticCore),
            c.mean_class_dice(),
            c.dice(Region::WholeTumor),
            c.dice(Region::TumorCore)
        );
    }
    println!(
        "mean ± std\t{}\t{}\t{}\t{}\t{}\t{}",
        d.summary(Region::Enhancing),
        d.summary(Region::Edema),
        d.summary(Region::NecroticCore),
        d.summary_mean(),
        d.summary(Region::WholeTumor),
        d.summary(Region::TumorCore)
    );
    Ok(())
}

fn cmd_study(mut args: Args) -> Result<(), CliError> {
    let out = PathBuf::from(args.value("--out")?.unwrap_or_else(|| "runs/study".into()));
    let profile_name = args.value("--profile")?.unwrap_or_else(|| "quick".into());
    let mut profile = StudyProfile::by_name(&profile_name)?;
    let cases = args.value("--cases")?;
    let store = args.value("--store")?;
    let subjects = args.parse_or("--subjects", profile.seg.phantom_subjects)?;
    let generators = args.value("--generators")?.unwrap_or_else(|| "all".into());
    let segmenters = match (args.value("--segmenters")?, args.value("--models")?) {
        (Some(_), Some(_)) => return Err(usage("give --segmenters or --models, not both")),
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => "unet,swin".into(),
    };
    let variants = args
        .value("--variants")?
        .unwrap_or_else(|| "synthetic".into());
    let seeds: u64 = args.parse_or("--seeds", 1)?;
    let n_synthetic: Option<usize> = args.parse("--n-synthetic")?;
    let gen_time_limit = args
        .parse::<f64>("--gen-time-limit")?
        .map(|s| {
            if !(s.is_finite() && s >= 0.0) {
                return Err(usage(format!(
                    "--gen-time-limit must be a number of seconds >= 0, not {s}"
                )));
            }
            Ok((s > 0.0).then(|| Duration::from_secs_f64(s)))
        })
        .transpose()?;
    let gen_kimg = args
        .parse::<f64>("--gen-kimg")?
        .map(|k| {
            if !(k.is_finite() && k > 0.0) {
                return Err(usage(format!(
                    "--gen-kimg must be a number of thousands of images > 0, not {k}"
                )));
            }
            Ok(k)
        })
        .transpose()?;
    let iterations: Option<u64> = args.parse("--iterations")?;
    let time_limit = time_limit_arg(&mut args)?;
    let val_every: Option<u64> = args.parse("--val-every")?;
    let split_seed = args.parse_or("--split-seed", 0u64)?;
    let split = args.value("--split")?;
    let device = device_arg(&mut args)?;
    let memorization_sizes = match args.value("--memorization-sizes")? {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|n| {
                n.trim().parse::<usize>().map_err(|_| {
                    usage(format!(
                        "--memorization-sizes takes numbers of subjects (e.g. 4,15), not '{list}'"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let memorization_generators = args
        .value("--memorization-generators")?
        .unwrap_or_else(|| "stylegan2,diffusion".into())
        .split(',')
        .map(|g| generator_by_name(g.trim()))
        .collect::<crate::Result<Vec<_>>>()?;
    args.finish()?;
    if seeds == 0 {
        return Err(usage("--seeds must be at least 1"));
    }
    let data = match (cases, store) {
        (Some(_), Some(_)) => return Err(usage("give --cases or --store, not both")),
        (Some(c), None) => StudyData::Cases(c.into()),
        (None, Some(s)) => StudyData::Store(s.into()),
        (None, None) => StudyData::Phantom { subjects, seed: 0 },
    };
    if let Some(n) = iterations {
        profile.seg.set_iterations(n);
    }
    if let Some(t) = time_limit {
        profile.seg.time_limit = t;
    }
    if let Some(v) = val_every {
        profile.seg.set_val_every(v);
    }
    if let Some(n) = n_synthetic {
        profile.n_synthetic = n;
    }
    if let Some(t) = gen_time_limit {
        profile.gen_time_limit = t;
    }
    if gen_kimg.is_some() {
        profile.gen_kimg_all = gen_kimg;
    }
    let segmenters = segmenters
        .split(',')
        .map(|m| SegKind::parse(m.trim()))
        .collect::<crate::Result<Vec<_>>>()?;
    let generators = match generators.trim() {
        "all" => GENERATORS.iter().collect(),
        "none" => Vec::new(),
        list => list
            .split(',')
            .map(|g| generator_by_name(g.trim()))
            .collect::<crate::Result<Vec<_>>>()?,
    };
    let opts = StudyOptions {
        profile,
        data,
        out,
        generators,
        segmenters,
        variants: Variant::parse_list(&variants)?,
        seeds: (0..seeds).collect(),
        split_seed,
        split,
        device,
        memorization_sizes,
        memorization_generators,
    };
    let r = run_study(&opts, &mut log_line)?;
    let table =
        std::fs::read_to_string(&r.results_md).map_err(|e| crate::Error::io(&r.results_md, e))?;
    println!("{table}");
    eprintln!(
        "wrote {} and {}",
        r.results_json.display(),
        r.results_md.display()
    );
    Ok(())
}
