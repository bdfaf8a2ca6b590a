//! One Adam training step of the plain U-Net of `shared/anchors/torch_cpu.py` (`unet_step`):
//! batch 8, 64×64, 4 → 4 channels, widths 32-64-128-256; per level conv3×3 + instance norm
//! (affine) + leaky ReLU 0.01 twice, max-pool down, 2×2 stride-2 transposed conv up, concatenated
//! skips, 1×1 head; cross-entropy; Adam lr 1e-3. Read beside that script's number measured in the
//! same sitting (see `benches/README.md`).

use std::time::Duration;

use brainsynth::nn::{Conv2d, Init, ParamStore, Scope};
use brainsynth::ops::Conv2dParams;
use brainsynth::ops::loss::cross_entropy;
use brainsynth::ops::norm::instance_norm;
use brainsynth::ops::resize::max_pool2d;
use brainsynth::optim::{Adam, AdamConfig, Optimizer};
use brainsynth::{DType, Result, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

struct Block {
    c1: Conv2d,
    n1: (Tensor, Tensor),
    c2: Conv2d,
    n2: (Tensor, Tensor),
}

fn norm_params(vs: &Scope, c: usize) -> Result<(Tensor, Tensor)> {
    Ok((
        vs.param("weight", &[c], Init::Ones)?,
        vs.param("bias", &[c], Init::Zeros)?,
    ))
}

impl Block {
    fn new(vs: &Scope, ci: usize, co: usize) -> Result<Self> {
        let p = Conv2dParams::same(3);
        Ok(Block {
            c1: Conv2d::new(&vs.sub("c1"), ci, co, 3, p, true)?,
            n1: norm_params(&vs.sub("n1"), co)?,
            c2: Conv2d::new(&vs.sub("c2"), co, co, 3, p, true)?,
            n2: norm_params(&vs.sub("n2"), co)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = instance_norm(
            &self.c1.forward(x)?,
            Some(&self.n1.0),
            Some(&self.n1.1),
            1e-5,
        )?
        .leaky_relu(0.01)?;
        instance_norm(
            &self.c2.forward(&h)?,
            Some(&self.n2.0),
            Some(&self.n2.1),
            1e-5,
        )?
        .leaky_relu(0.01)
    }
}

struct PlainUNet {
    down: Vec<Block>,
    upc: Vec<(Tensor, Tensor)>,
    up: Vec<Block>,
    head: Conv2d,
}

impl PlainUNet {
    fn new(vs: &Scope, widths: &[usize]) -> Result<Self> {
        let mut c = 4;
        let mut down = Vec::new();
        for (i, &f) in widths.iter().enumerate() {
            down.push(Block::new(&vs.sub(format!("down{i}")), c, f)?);
            c = f;
        }
        let (mut upc, mut up) = (Vec::new(), Vec::new());
        for (i, &f) in widths[..widths.len() - 1].iter().rev().enumerate() {
            let s = vs.sub(format!("upc{i}"));
            upc.push((
                s.param("weight", &[c, f, 2, 2], Init::torch_default_weight())?,
                s.param("bias", &[f], Init::Zeros)?,
            ));
            up.push(Block::new(&vs.sub(format!("up{i}")), 2 * f, f)?);
            c = f;
        }
        Ok(PlainUNet {
            down,
            upc,
            up,
            head: Conv2d::new(&vs.sub("head"), c, 4, 1, Conv2dParams::default(), true)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut sk = Vec::new();
        let mut h = x.clone();
        for (i, b) in self.down.iter().enumerate() {
            h = b.forward(&h)?;
            if i + 1 < self.down.len() {
                sk.push(h.clone());
                h = max_pool2d(&h, (2, 2), (2, 2), (0, 0))?;
            }
        }
        for ((w, bias), b) in self.upc.iter().zip(&self.up) {
            let u = h.conv_transpose2d(w, Conv2dParams::default().with_stride(2), (0, 0))?;
            let u = u.add(&bias.reshape(&[1, bias.elem_count(), 1, 1])?)?;
            let skip = sk.pop().expect("one skip per level");
            h = b.forward(&Tensor::cat(&[u, skip], 1)?)?;
        }
        self.head.forward(&h)
    }
}

fn unet_step(c: &mut Criterion) {
    let store = ParamStore::new(0);
    let net = PlainUNet::new(&store.root(), &[32, 64, 128, 256]).expect("network");
    let mut opt = Adam::new(&store, AdamConfig::adam(1e-3)).expect("optimiser");
    let mut rng = StdRng::seed_from_u64(0);
    let x = Tensor::randn(&[8, 4, 64, 64], DType::F32, &mut rng);
    let y: Vec<usize> = (0..8 * 64 * 64)
        .map(|_| rng.random_range(0..4usize))
        .collect();
    let mut step = || {
        let loss = cross_entropy(&net.forward(&x).expect("forward"), &y, None, None).expect("loss");
        store.zero_grad();
        loss.backward().expect("backward");
        opt.step().expect("step");
    };
    // BRAINSYNTH_PROFILE=1: print where one step's time goes, per kernel, before timing it.
    if brainsynth::profile::enabled() {
        brainsynth::profile::disable();
        for _ in 0..2 {
            step();
        }
        brainsynth::profile::reset();
        brainsynth::profile::enable();
        let t0 = std::time::Instant::now();
        for _ in 0..5 {
            step();
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3 / 5.0;
        brainsynth::profile::disable();
        eprintln!(
            "unet_step: {ms:.1} ms per step (5 steps, profiled)\n{}",
            brainsynth::profile::report(5)
        );
    }
    let mut group = c.benchmark_group("unet_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("b8 64x64 (32-64-128-256) Adam", |b| b.iter(&mut step));
    group.finish();
}

criterion_group!(benches, unet_step);
criterion_main!(benches);
