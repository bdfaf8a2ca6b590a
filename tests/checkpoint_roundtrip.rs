//! Checkpoints: round trips (f32, f64, metadata, optimiser and EMA state, resumable training),
//! the safetensors layout, and atomic saving.

use std::path::PathBuf;

use brainsynth::io::atomic::AtomicFile;
use brainsynth::io::checkpoint::{Checkpoint, CheckpointWriter, read_tensors, save_tensors};
use brainsynth::nn::{Init, Linear, ParamStore};
use brainsynth::optim::{Adam, AdamConfig, Ema, Optimizer, Sgd, SgdConfig};
use brainsynth::testing::rand_tensor;
use brainsynth::{DType, Error, Tensor};

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brainsynth-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A two-layer model plus a buffer, in a store of `dtype`.
fn model(seed: u64, dtype: DType) -> (ParamStore, Linear, Linear) {
    let store = ParamStore::with_dtype(seed, dtype);
    let vs = store.root();
    let a = Linear::new(&vs.sub("net").sub("fc0"), 3, 4, true).unwrap();
    let b = Linear::new(&vs.sub("net").sub("fc1"), 4, 2, true).unwrap();
    vs.sub("net")
        .buffer_init("pl_mean", &[1], Init::Constant(0.25))
        .unwrap();
    (store, a, b)
}

/// The names in a folder, sorted.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn train_step(opt: &mut dyn Optimizer, a: &Linear, b: &Linear, x: &Tensor) {
    opt.zero_grad();
    let y = b.forward(&a.forward(x).unwrap().silu().unwrap()).unwrap();
    y.sqr().unwrap().mean_all().unwrap().backward().unwrap();
    opt.step().unwrap();
}

fn values(store: &ParamStore) -> Vec<(String, Vec<f64>)> {
    store
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec_f64().unwrap()))
        .collect()
}

fn round_trip(dtype: DType) {
    let dir = tmp_dir(dtype.name());
    let path = dir.join("model.safetensors");
    let x = rand_tensor(&[5, 3], 1).to_vec_f64().unwrap();
    let x = Tensor::from_f64s(&x, &[5, 3], dtype).unwrap();

    let (store, a, b) = model(1, dtype);
    let mut opt = Adam::new(&store, AdamConfig::adam(0.01)).unwrap();
    let mut ema = Ema::with_beta(&store, 0.9).unwrap();
    for _ in 0..3 {
        train_step(&mut opt, &a, &b, &x);
        ema.update_with_beta(&store, 0.9).unwrap();
    }
    store
        .buffer("net.pl_mean")
        .unwrap()
        .assign(&Tensor::full(0.75, &[1], dtype))
        .unwrap();
    let mut w = CheckpointWriter::new();
    w.set_model_info("unet", "small", 3)
        .add_store("", &store)
        .add_optimizer(&opt)
        .add_ema(&ema);
    w.save(&path).unwrap();
    assert_eq!(listing(&dir), ["model.safetensors"]);

    // a fresh model (another seed) resumes from the file
    let (store2, a2, b2) = model(99, dtype);
    let mut opt2 = Adam::new(&store2, AdamConfig::adam(0.01)).unwrap();
    let ema2 = Ema::with_beta(&store2, 0.9).unwrap();
    assert_ne!(values(&store), values(&store2));
    let ck = Checkpoint::open(&path).unwrap();
    ck.expect_metadata("model", "unet").unwrap();
    ck.expect_metadata("profile", "small").unwrap();
    assert_eq!(ck.step(), Some(3));
    assert_eq!(ck.meta("optimizer"), Some("adam"));
    ck.load_store("", &store2).unwrap();
    ck.load_optimizer(&opt2).unwrap();
    ck.load_ema(&ema2).unwrap();
    assert_eq!(values(&store), values(&store2));
    for ((n1, t1), (n2, t2)) in opt.state_tensors().iter().zip(opt2.state_tensors()) {
        assert_eq!(n1, &n2);
        assert_eq!(t1.to_vec_f64().unwrap(), t2.to_vec_f64().unwrap(), "{n1}");
    }
    for ((_, t1), (_, t2)) in ema.named_tensors().iter().zip(ema2.named_tensors()) {
        assert_eq!(t1.to_vec_f64().unwrap(), t2.to_vec_f64().unwrap());
    }
    // training continues identically from the restored state
    train_step(&mut opt, &a, &b, &x);
    train_step(&mut opt2, &a2, &b2, &x);
    assert_eq!(values(&store), values(&store2));

    // the wrong model is recognised with a sentence
    let e = ck.expect_metadata("model", "stylegan2").unwrap_err();
    assert!(matches!(e, Error::Checkpoint { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("unet") && msg.contains("stylegan2") && msg.contains("model.safetensors"),
        "{msg}"
    );
    assert!(
        ck.expect_metadata("dataset", "brats")
            .unwrap_err()
            .to_string()
            .contains("no \"dataset\"")
    );
    // an optimiser of another kind is refused
    let sgd = Sgd::new(&store2, SgdConfig::new(0.1)).unwrap();
    assert!(
        ck.load_optimizer(&sgd)
            .unwrap_err()
            .to_string()
            .contains("adam")
    );

    // inspection: every tensor with its section
    let all = read_tensors(&path).unwrap();
    assert!(all.iter().any(|(n, _)| n == "net.fc0.weight"));
    assert!(
        all.iter()
            .any(|(n, _)| n == "optim/net.fc0.weight.exp_avg_sq")
    );
    assert!(all.iter().any(|(n, _)| n == "optim/net.fc1.bias.step"));
    assert!(all.iter().any(|(n, _)| n == "ema/net.pl_mean"));
    assert!(
        all.iter()
            .all(|(n, t)| n.ends_with(".step") || t.dtype() == dtype)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn round_trip_f32() {
    round_trip(DType::F32);
}

#[test]
fn round_trip_f64() {
    round_trip(DType::F64);
}

#[test]
fn safetensors_layout() {
    let t = Tensor::from_f64s(&[1.5, -2.0], &[1, 2], DType::F32).unwrap();
    let mut w = CheckpointWriter::new();
    w.set_metadata("model", "x\"y")
        .add_tensors("", vec![("a.b".into(), t)]);
    let bytes = w.to_bytes().unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0, "data is 8-byte aligned");
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap().trim_end();
    assert_eq!(
        header,
        r#"{"__metadata__":{"model":"x\"y"},"a.b":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}"#
    );
    assert_eq!(&bytes[8 + n..8 + n + 4], &1.5f32.to_le_bytes());
    assert_eq!(bytes.len(), 8 + n + 8);
    // scalars, empty tensors and unusual names survive
    let dir = tmp_dir("layout");
    let p = dir.join("t.safetensors");
    let tensors = vec![
        ("s".to_string(), Tensor::scalar(3.0, DType::F64)),
        ("empty".to_string(), Tensor::zeros(&[0, 4], DType::F32)),
        (
            "ünï\\cöde\n\"x\"".to_string(),
            Tensor::ones(&[2], DType::F64),
        ),
    ];
    save_tensors(&p, &tensors, &Default::default()).unwrap();
    let back = read_tensors(&p).unwrap();
    assert_eq!(back.len(), 3);
    for ((n1, t1), (n2, t2)) in tensors.iter().zip(&back) {
        assert_eq!(n1, n2);
        assert_eq!(t1.shape(), t2.shape());
        assert_eq!(t1.to_vec_f64().unwrap(), t2.to_vec_f64().unwrap());
    }
    // duplicate names cannot be written
    let dup = vec![
        ("a".to_string(), Tensor::ones(&[1], DType::F32)),
        ("a".to_string(), Tensor::ones(&[1], DType::F32)),
    ];
    assert!(save_tensors(dir.join("d.safetensors"), &dup, &Default::default()).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn atomic_save_leaves_nothing_on_error() {
    let dir = tmp_dir("atomic");
    let (store, _, _) = model(1, DType::F32);
    let mut w = CheckpointWriter::new();
    w.add_store("", &store);
    // a directory that does not exist
    let missing = dir.join("no").join("such").join("m.safetensors");
    let e = w.save(&missing).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(!dir.join("no").exists());
    // the target is a directory: the rename fails, the temporary file is removed
    let target = dir.join("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    assert!(w.save(&target).is_err());
    assert_eq!(listing(&dir), ["taken"]);
    assert_eq!(listing(&target), ["keep"]);
    // overwriting a previous checkpoint replaces it whole
    let p = dir.join("m.safetensors");
    std::fs::write(&p, b"old").unwrap();
    w.save(&p).unwrap();
    assert!(Checkpoint::open(&p).is_ok());
    assert_eq!(listing(&dir), ["m.safetensors", "taken"]);
    // while a write is under way its bytes sit in `.<name>.tmp-<pid>-<n>` next to the
    // destination (the name the checks above would have seen left behind)
    let mut f = AtomicFile::create(dir.join("w.bin")).unwrap();
    f.write_all(b"partial").unwrap();
    let names = listing(&dir);
    let prefix = format!(".w.bin.tmp-{}-", std::process::id());
    assert!(
        names.iter().any(|n| n.starts_with(&prefix)),
        "{names:?} has no {prefix}*"
    );
    drop(f);
    assert_eq!(listing(&dir), ["m.safetensors", "taken"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn named_sections_round_trip_and_are_checked() {
    use brainsynth::rng::SplitMix64;
    let (g, ga, gb) = model(1, DType::F32);
    let (d, _, _) = model(2, DType::F32);
    let mut opt_g = Adam::new(&g, AdamConfig::adam(0.01)).unwrap();
    let opt_d = Sgd::new(&d, SgdConfig::new(0.1).with_momentum(0.9)).unwrap();
    let g_ema = Ema::with_beta(&g, 0.5).unwrap();
    let x = Tensor::from_f64s(
        &rand_tensor(&[5, 3], 2).to_vec_f64().unwrap(),
        &[5, 3],
        DType::F32,
    )
    .unwrap();
    train_step(&mut opt_g, &ga, &gb, &x);
    let pl_mean = Tensor::from_f64s(&[0.125, -3.5], &[2], DType::F32).unwrap();
    let mut rng = SplitMix64::new(77);
    rng.next_u64();
    let mut w = CheckpointWriter::new();
    w.set_model_info("stylegan2", "quick", 12)
        .add_network("G", &g)
        .unwrap()
        .add_network("D", &d)
        .unwrap()
        .add_ema_named("G_ema", &g_ema)
        .unwrap()
        .add_optimizer_named("opt_G", &opt_g)
        .unwrap()
        .add_optimizer_named("opt_D", &opt_d)
        .unwrap()
        .add_named_tensor("pl_mean", &pl_mean)
        .unwrap()
        .set_f64("kimg", 0.1 + 0.2)
        .set_u64("images", u64::MAX - 1)
        .set_rng("z", &rng);
    let ck = Checkpoint::from_bytes(&w.to_bytes().unwrap(), "gan.safetensors").unwrap();
    assert_eq!(
        ck.sections(),
        ["D", "G", "G_ema", "opt_D", "opt_G", "tensor"]
    );
    // into fresh networks of other seeds
    let (g2, _, _) = model(9, DType::F32);
    let (d2, _, _) = model(8, DType::F32);
    let opt_g2 = Adam::new(&g2, AdamConfig::adam(0.01)).unwrap();
    let opt_d2 = Sgd::new(&d2, SgdConfig::new(0.1).with_momentum(0.9)).unwrap();
    let ema2 = Ema::with_beta(&g2, 0.5).unwrap();
    let pl2 = Tensor::zeros(&[2], DType::F32);
    ck.load_network("G", &g2).unwrap();
    ck.load_network("D", &d2).unwrap();
    ck.load_ema_named("G_ema", &ema2).unwrap();
    ck.load_optimizer_named("opt_G", &opt_g2).unwrap();
    ck.load_optimizer_named("opt_D", &opt_d2).unwrap();
    ck.load_named_tensor("pl_mean", &pl2).unwrap();
    assert_eq!(values(&g), values(&g2));
    assert_eq!(values(&d), values(&d2));
    assert_eq!(pl2.to_vec_f64().unwrap(), vec![0.125, -3.5]);
    assert_eq!(ck.f64_value("kimg").unwrap(), 0.1 + 0.2);
    assert_eq!(ck.u64_value("images").unwrap(), u64::MAX - 1);
    assert_eq!(ck.rng("z").unwrap().next_u64(), rng.next_u64());
    // each part is checked, with a sentence naming it
    let msg = |e: Error| {
        assert!(matches!(e, Error::Checkpoint { .. }), "{e}");
        e.to_string()
    };
    let e = msg(ck.load_network("G_ema2", &g2).unwrap_err());
    assert!(e.contains("G_ema2") && e.contains("opt_G"), "{e}");
    let e = msg(ck.load_optimizer_named("opt_D", &opt_g2).unwrap_err());
    assert!(e.contains("sgd") && e.contains("adam"), "{e}");
    let (small, _, _) = model(3, DType::F64);
    let e = msg(ck.load_network("D", &small).unwrap_err());
    assert!(e.contains("network D") && e.contains("f64"), "{e}");
    let e = msg(ck
        .load_named_tensor("pl_mean", &Tensor::zeros(&[3], DType::F32))
        .unwrap_err());
    assert!(e.contains("pl_mean") && e.contains("[3]"), "{e}");
    let e = msg(ck.load_named_tensor("w_avg", &pl2).unwrap_err());
    assert!(e.contains("w_avg"), "{e}");
    let e = msg(ck.rng("noise").unwrap_err());
    assert!(e.contains("noise"), "{e}");
    let e = msg(ck.u64_value("kimg").unwrap_err());
    assert!(e.contains("kimg"), "{e}");
    // an unreadable number is an error, not a default
    let mut bad = CheckpointWriter::new();
    bad.set_metadata("rng.z", "-1");
    let bad = Checkpoint::from_bytes(&bad.to_bytes().unwrap(), "bad.safetensors").unwrap();
    let e = msg(bad.rng("z").unwrap_err());
    assert!(e.contains("\"-1\""), "{e}");
    // section names are checked when writing
    assert!(CheckpointWriter::new().add_network("a/b", &g).is_err());
    assert!(CheckpointWriter::new().add_network("", &g).is_err());
}
