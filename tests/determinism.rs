//! Same seed, same thread count → bit-identical training on the CPU.
//!
//! A few optimiser steps of each segmenter (U-Net with SGD, Swin with AdamW) run twice in this
//! process, the second time while a busy thread competes for the cores so the pool's workers
//! finish in another order; the parameters must agree to the last bit. The process uses four
//! CPU threads whatever the machine has, so the parallel kernels (GEMM splits, conv tiles,
//! attention and norm partial sums) really split their work even on a two-core runner.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use brainsynth::models::swin::{SwinConfig, SwinSegmenter};
use brainsynth::models::unet::{UNet, UNetConfig};
use brainsynth::nn::ParamStore;
use brainsynth::ops::loss::cross_entropy;
use brainsynth::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig, clip_grad_norm};
use brainsynth::rng::SplitMix64;
use brainsynth::testing::rand_vals;
use brainsynth::{DType, Tensor};

const THREADS: &str = "4";
const BATCH: usize = 2;
const SIDE: usize = 48;
const STEPS: usize = 3;

/// Fix the pool's size before any kernel runs (every test here calls this first).
fn four_threads() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        // SAFETY: runs once, before this process's tests start kernels or threads of their
        // own; other tests wait on the `Once` until it has returned.
        unsafe { std::env::set_var("BRAINSYNTH_THREADS", THREADS) };
    });
}

/// One batch per step: random images and labels drawn from a fixed seed.
fn batch(step: usize) -> (Tensor, Vec<usize>) {
    let x = rand_vals(BATCH * 4 * SIDE * SIDE, 100 + step as u64);
    let labels: Vec<usize> = rand_vals(BATCH * SIDE * SIDE, 200 + step as u64)
        .iter()
        .map(|v| ((v + 1.0) * 2.0).clamp(0.0, 3.0) as usize)
        .collect();
    let x = Tensor::from_f64s(&x, &[BATCH, 4, SIDE, SIDE], DType::F32).unwrap();
    (x, labels)
}

/// Cross-entropy of every output (deep supervision and auxiliary heads included) against the
/// labels, nearest-sampled to the output's resolution.
fn loss_of(outputs: &[Tensor], labels: &[usize]) -> Tensor {
    let mut total: Option<Tensor> = None;
    for o in outputs {
        let s = o.shape()[2];
        let f = SIDE / s;
        let target: Vec<usize> = (0..BATCH * s * s)
            .map(|i| {
                let (b, y, x) = (i / (s * s), i / s % s, i % s);
                labels[(b * SIDE + y * f) * SIDE + x * f]
            })
            .collect();
        let l = cross_entropy(o, &target, None, None).unwrap();
        total = Some(match total {
            Some(t) => t.add(&l).unwrap(),
            None => l,
        });
    }
    total.unwrap()
}

/// Every parameter's bits after `STEPS` steps, and the losses seen.
fn bits(store: &ParamStore) -> Vec<(String, Vec<u32>)> {
    store
        .named_tensors()
        .into_iter()
        .map(|(n, t)| {
            let v = t.to_vec_f64().unwrap();
            (n, v.iter().map(|&x| (x as f32).to_bits()).collect())
        })
        .collect()
}

fn train_unet() -> (Vec<(String, Vec<u32>)>, Vec<u64>) {
    let store = ParamStore::with_dtype(0, DType::F32);
    let net = UNet::new(
        &store.root(),
        UNetConfig {
            base_width: 16,
            depth: 3,
            max_width: 32,
            ..UNetConfig::quick()
        },
    )
    .unwrap();
    let mut opt = Sgd::new(
        &store,
        SgdConfig::new(0.01)
            .with_momentum(0.99)
            .with_nesterov(true)
            .with_weight_decay(3e-5),
    )
    .unwrap();
    let mut losses = Vec::new();
    for step in 0..STEPS {
        let (x, labels) = batch(step);
        let outs = net.forward(&x, true).unwrap();
        let loss = loss_of(&outs, &labels);
        store.zero_grad();
        loss.backward().unwrap();
        clip_grad_norm(&store.trainable_tensors(), 12.0).unwrap();
        opt.step().unwrap();
        losses.push(loss.item().unwrap().to_bits());
    }
    (bits(&store), losses)
}

fn train_swin() -> (Vec<(String, Vec<u32>)>, Vec<u64>) {
    let store = ParamStore::with_dtype(0, DType::F32);
    let net = SwinSegmenter::new(
        &store.root(),
        SwinConfig {
            embed_dim: 16,
            depths: vec![2, 2],
            heads: vec![2, 4],
            head_channels: 16,
            pool_scales: vec![1, 2],
            aux_channels: Some(8),
            ..SwinConfig::quick()
        },
    )
    .unwrap();
    let mut opt = Adam::new(
        &store,
        AdamConfig::adamw(1e-3)
            .with_betas(0.9, 0.999)
            .with_weight_decay(0.01),
    )
    .unwrap();
    let mut rng = SplitMix64::new(0);
    let mut losses = Vec::new();
    for step in 0..STEPS {
        let (x, labels) = batch(step);
        let (y, aux) = net.forward_with_aux(&x, true, &mut rng).unwrap();
        let outs: Vec<Tensor> = std::iter::once(y).chain(aux).collect();
        let loss = loss_of(&outs, &labels);
        store.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
        losses.push(loss.item().unwrap().to_bits());
    }
    (bits(&store), losses)
}

/// Run `f` while another thread spins on the CPU, so the pool's workers are delayed at
/// random points and finish their tasks in another order than in an undisturbed run.
fn under_load<R>(f: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        let r = f();
        stop.store(true, Ordering::Relaxed);
        r
    })
}

/// FNV-1a over every parameter's bits: printed, so two processes can be compared by eye
/// (`cargo test --release --test determinism -- --nocapture`).
fn digest(a: &[(String, Vec<u32>)]) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for b in a.iter().flat_map(|(_, v)| v).flat_map(|x| x.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

fn assert_same(what: &str, a: &[(String, Vec<u32>)], b: &[(String, Vec<u32>)]) {
    println!(
        "{what}: parameter digest {:016x} (threads {THREADS})",
        digest(a)
    );
    assert_eq!(a.len(), b.len());
    let differing: Vec<&str> = a
        .iter()
        .zip(b)
        .filter(|(p, q)| p != q)
        .map(|(p, _)| p.0.as_str())
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: {} of {} tensors differ between two runs with the same seed, e.g. {:?}",
        differing.len(),
        a.len(),
        &differing[..differing.len().min(5)]
    );
}

#[test]
fn unet_training_is_bit_identical_run_to_run() {
    four_threads();
    let (w1, l1) = train_unet();
    let (w2, l2) = under_load(train_unet);
    assert_eq!(l1, l2, "U-Net losses differ between two runs");
    assert_same("U-Net", &w1, &w2);
}

#[test]
fn swin_training_is_bit_identical_run_to_run() {
    four_threads();
    let (w1, l1) = train_swin();
    let (w2, l2) = under_load(train_swin);
    assert_eq!(l1, l2, "Swin losses differ between two runs");
    assert_same("Swin", &w1, &w2);
}

/// Set in the child process of the test below.
const CHILD: &str = "BRAINSYNTH_DETERMINISM_CHILD";

#[test]
fn training_is_bit_identical_across_processes() {
    four_threads();
    let digests = || {
        format!(
            "digests {:016x} {:016x}",
            digest(&train_unet().0),
            digest(&train_swin().0)
        )
    };
    if std::env::var_os(CHILD).is_some() {
        println!("{}", digests());
        return;
    }
    // the same training in a fresh process (other addresses, other hash seeds)
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "training_is_bit_identical_across_processes",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "child failed: {out}");
    let theirs = out
        .lines()
        .find_map(|l| l.find("digests ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no digests in the child's output: {out}"));
    assert_eq!(
        digests(),
        theirs,
        "U-Net and Swin digests, this process vs another"
    );
}
