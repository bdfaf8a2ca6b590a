//! The training runner with a small GAN-shaped trainer of its own (two networks, two optimisers,
//! an EMA copy, a named tensor and a random stream): exact resume after a stop at any step,
//! best-by-metric, snapshots, images as the run length, multi-section checkpoints, and clean-up
//! of temporary files.

use std::path::{Path, PathBuf};

use brainsynth::io::checkpoint::{Checkpoint, CheckpointWriter};
use brainsynth::nn::{Linear, ParamStore};
use brainsynth::optim::{Adam, AdamConfig, Ema, Optimizer};
use brainsynth::rng::SplitMix64;
use brainsynth::train::interrupt::StopToken;
use brainsynth::train::runner::{
    Metric, RunConfig, RunLength, StepOutput, StopReason, Trainer, run,
};
use brainsynth::{DType, Result, Tensor};

/// Two small networks trained in turns ("G" then "D" each step), G's EMA, a running mean kept
/// as a named tensor, and noise from a seeded stream.
struct Toy {
    g_store: ParamStore,
    d_store: ParamStore,
    g: (Linear, Linear),
    d: Linear,
    opt_g: Adam,
    opt_d: Adam,
    g_ema: Ema,
    mean: Tensor,
    rng: SplitMix64,
    batch: usize,
    /// Raise `stop` after this step (0-based), to stop the run mid-way.
    stop_after: Option<(u64, StopToken)>,
}

fn toy(seed: u64) -> Toy {
    let g_store = ParamStore::with_dtype(seed, DType::F32);
    let vs = g_store.root();
    let g = (
        Linear::new(&vs.sub("fc0"), 3, 8, true).unwrap(),
        Linear::new(&vs.sub("fc1"), 8, 2, true).unwrap(),
    );
    let d_store = ParamStore::with_dtype(seed + 1, DType::F32);
    let d = Linear::new(&d_store.root().sub("fc"), 2, 1, true).unwrap();
    Toy {
        opt_g: Adam::new(&g_store, AdamConfig::adam(0.01)).unwrap(),
        opt_d: Adam::new(&d_store, AdamConfig::adam(0.005)).unwrap(),
        g_ema: Ema::with_beta(&g_store, 0.9).unwrap(),
        g_store,
        d_store,
        g,
        d,
        mean: Tensor::zeros(&[2], DType::F32),
        rng: SplitMix64::new(seed ^ 0xABCD),
        batch: 4,
        stop_after: None,
    }
}

impl Toy {
    fn noise(&mut self) -> Tensor {
        let v: Vec<f64> = (0..self.batch * 3).map(|_| self.rng.normal()).collect();
        Tensor::from_f64s(&v, &[self.batch, 3], DType::F32).unwrap()
    }
    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.g.1.forward(&self.g.0.forward(z)?.silu()?)
    }
}

impl Trainer for Toy {
    fn kind(&self) -> &str {
        "toygan"
    }
    fn profile(&self) -> &str {
        "test"
    }
    fn step(&mut self, _step: u64) -> Result<StepOutput> {
        // G: move D's score of its samples towards 1
        let z = self.noise();
        let fake = self.generate(&z)?;
        let lg = self.d.forward(&fake)?.add_scalar(-1.0)?.sqr()?.mean_all()?;
        self.opt_g.zero_grad();
        lg.backward()?;
        self.opt_g.step()?;
        self.g_ema.update_with_beta(&self.g_store, 0.9)?;
        // D: score fresh samples (detached) towards 0
        let z = self.noise();
        let fake = self.generate(&z)?.detach();
        let ld = self.d.forward(&fake)?.sqr()?.mean_all()?;
        self.opt_d.zero_grad();
        ld.backward()?;
        self.opt_d.step()?;
        // a running mean of the samples, as StyleGAN's pl_mean
        let m = fake.mean_axes(&[0], false)?;
        self.mean
            .assign(&self.mean.mul_scalar(0.9)?.add(&m.mul_scalar(0.1)?)?)?;
        if let Some((k, t)) = &self.stop_after
            && *k == _step
        {
            t.stop();
        }
        Ok(StepOutput {
            losses: vec![("G", lg.item()?), ("D", ld.item()?)],
            images: self.batch as u64,
            lr: Some(self.opt_g.lr()),
        })
    }
    fn save_state(&self, w: &mut CheckpointWriter) -> Result<()> {
        w.add_network("G", &self.g_store)?
            .add_network("D", &self.d_store)?
            .add_optimizer_named("opt_G", &self.opt_g)?
            .add_optimizer_named("opt_D", &self.opt_d)?
            .add_ema_named("G_ema", &self.g_ema)?
            .add_named_tensor("pl_mean", &self.mean)?
            .set_rng("noise", &self.rng);
        Ok(())
    }
    fn load_state(&mut self, ck: &Checkpoint) -> Result<()> {
        ck.load_network("G", &self.g_store)?;
        ck.load_network("D", &self.d_store)?;
        ck.load_optimizer_named("opt_G", &self.opt_g)?;
        ck.load_optimizer_named("opt_D", &self.opt_d)?;
        ck.load_ema_named("G_ema", &self.g_ema)?;
        ck.load_named_tensor("pl_mean", &self.mean)?;
        self.rng = ck.rng("noise")?;
        Ok(())
    }
    fn save_weights(&self, w: &mut CheckpointWriter) -> Result<()> {
        w.add_network("G_ema", &self.g_store)?;
        Ok(())
    }
    fn metric(&self) -> Option<Metric> {
        Some(Metric {
            name: "spread".into(),
            higher_is_better: false,
        })
    }
    fn validate(&mut self, _step: u64) -> Result<Option<f64>> {
        // a deterministic score that goes up and down: the mean's distance from 0.1
        let v = self.mean.to_vec_f64()?;
        Ok(Some((v[0] - 0.1).abs() + (v[1] - 0.1).abs()))
    }
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brainsynth-runner-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn cfg(dir: &Path, steps: u64) -> RunConfig {
    let mut c = RunConfig::new(dir, RunLength::Steps(steps));
    c.val_every = 4;
    c.handle_signals = false;
    c
}

/// Every tensor of a checkpoint with its bits.
fn bits(path: &Path) -> Vec<(String, Vec<u64>)> {
    Checkpoint::open(path)
        .unwrap()
        .tensors()
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.to_vec_f64()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn stopped_and_resumed_run_matches_an_uninterrupted_one_bit_for_bit() {
    let n = 11;
    let whole = tmp("whole");
    let o = run(&mut toy(3), &cfg(&whole, n), &mut |_| {}).unwrap();
    assert_eq!((o.steps_done, o.stopped), (n, StopReason::Finished));
    assert_eq!(o.images_done, 4 * n);

    // stop after the 6th step (not a validation step), then resume in a fresh process state
    let split = tmp("split");
    let token = StopToken::new();
    let mut t = toy(3);
    t.stop_after = Some((5, token.clone()));
    let mut c = cfg(&split, n);
    c.stop = token;
    let mut lines = Vec::new();
    let o1 = run(&mut t, &c, &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!((o1.steps_done, o1.stopped), (6, StopReason::Interrupted));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("interrupted after iteration 6")),
        "{lines:?}"
    );
    assert_eq!(
        Checkpoint::open(split.join("last.safetensors"))
            .unwrap()
            .step(),
        Some(6)
    );
    let mut lines = Vec::new();
    let o2 = run(&mut toy(3), &cfg(&split, n), &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("resuming toygan from iteration 6")),
        "{lines:?}"
    );
    assert_eq!((o2.start_step, o2.steps_done), (6, n));
    // same weights, optimiser states, EMA, named tensor, curves; same best
    assert_eq!(
        bits(&whole.join("last.safetensors")),
        bits(&split.join("last.safetensors"))
    );
    assert_eq!(o.losses, o2.losses);
    assert_eq!(o.metric_curve, o2.metric_curve);
    assert_eq!(o.best, o2.best);
    assert_eq!(
        bits(&whole.join("best.safetensors")),
        bits(&split.join("best.safetensors"))
    );
    // the checkpoint holds every named part
    let ck = Checkpoint::open(whole.join("last.safetensors")).unwrap();
    for s in ["G", "D", "opt_G", "opt_D", "G_ema", "tensor", "curve"] {
        assert!(ck.has_section(s), "{s}: {:?}", ck.sections());
    }
    assert_eq!(ck.u64_value("run.images").unwrap(), 4 * n);
    assert!(ck.has_rng("noise"));
    for d in [whole, split] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn best_by_metric_snapshots_images_and_curves() {
    let dir = tmp("best");
    let mut c = RunConfig::new(&dir, RunLength::Images(30));
    c.val_every = 2;
    c.snapshot_every = Some(3);
    c.handle_signals = false;
    // a stale temporary file from a killed save is cleaned up
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".last.safetensors.tmp-1-0"), b"half").unwrap();
    let o = run(&mut toy(5), &c, &mut |_| {}).unwrap();
    // 30 images in batches of 4: the 8th step reaches them
    assert_eq!((o.steps_done, o.images_done), (8, 32));
    // validations at 2, 4, 6, 8; the best is the smallest value
    let steps: Vec<u64> = o.metric_curve.iter().map(|p| p.0).collect();
    assert_eq!(steps, vec![2, 4, 6, 8]);
    let min = o
        .metric_curve
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(o.best, Some(min));
    let best = Checkpoint::open(&o.best_checkpoint).unwrap();
    assert_eq!(best.step(), Some(min.0));
    assert_eq!(best.sections(), vec!["G_ema".to_string()]);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "best.safetensors",
            "curves.png",
            "last.safetensors",
            "snapshot-00000003.safetensors",
            "snapshot-00000006.safetensors",
        ]
    );
    assert_eq!(o.losses.keys().collect::<Vec<_>>(), ["D", "G"]);
    // asking again for what is done trains nothing and says so
    let mut lines = Vec::new();
    let o2 = run(&mut toy(5), &c, &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!((o2.start_step, o2.steps_done), (8, 8));
    assert!(
        lines.iter().any(|l| l.contains("already reached")),
        "{lines:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn progress_line_time_limit_and_wrong_model() {
    let dir = tmp("progress");
    let mut c = cfg(&dir, 6);
    c.log_every = 1;
    let mut lines = Vec::new();
    run(&mut toy(1), &c, &mut |l| lines.push(l.to_string())).unwrap();
    let l = &lines[0];
    assert!(
        l.starts_with("toygan iter 1/6 G ") && l.contains("img/s ETA "),
        "{l}"
    );
    assert!(lines[3].contains("spread"), "{lines:?}");
    // a zero time limit stops after one step, keeping what it has
    let d2 = tmp("limit");
    let mut c2 = cfg(&d2, 100);
    c2.time_limit = Some(std::time::Duration::ZERO);
    let o = run(&mut toy(1), &c2, &mut |_| {}).unwrap();
    assert_eq!((o.steps_done, o.stopped), (1, StopReason::TimeLimit));
    assert!(d2.join("last.safetensors").is_file() && d2.join("best.safetensors").is_file());
    // another model's folder is refused, naming both
    struct Other(Toy);
    impl Trainer for Other {
        fn kind(&self) -> &str {
            "other"
        }
        fn profile(&self) -> &str {
            "test"
        }
        fn step(&mut self, s: u64) -> Result<StepOutput> {
            self.0.step(s)
        }
        fn save_state(&self, w: &mut CheckpointWriter) -> Result<()> {
            self.0.save_state(w)
        }
        fn load_state(&mut self, ck: &Checkpoint) -> Result<()> {
            self.0.load_state(ck)
        }
    }
    let e = run(&mut Other(toy(1)), &cfg(&dir, 8), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("toygan") && e.contains("other"), "{e}");
    for d in [dir, d2] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
