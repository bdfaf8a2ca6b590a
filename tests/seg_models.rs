//! The segmenters: output shapes, deep-supervision weights, input errors, and finite-difference
//! gradients of whole (tiny) networks in f64.

use brainsynth::models::swin::{SwinConfig, SwinSegmenter};
use brainsynth::models::unet::{UNet, UNetConfig};
use brainsynth::nn::ParamStore;
use brainsynth::rng::SplitMix64;
use brainsynth::testing::{check_grad, rand_tensor};
use brainsynth::{DType, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn tiny_unet() -> UNetConfig {
    UNetConfig {
        in_channels: 4,
        classes: 4,
        base_width: 4,
        depth: 3,
        max_width: 8,
        deep_supervision: true,
    }
}

fn tiny_swin() -> SwinConfig {
    SwinConfig {
        in_channels: 4,
        classes: 4,
        patch_size: 2,
        embed_dim: 8,
        depths: vec![2, 2],
        heads: vec![1, 2],
        window: 2,
        mlp_ratio: 2,
        drop_path: 0.0,
        head_channels: 8,
        pool_scales: vec![1, 2],
        head_dropout: 0.1,
        aux_channels: Some(4),
        aux_weight: 0.4,
    }
}

#[test]
fn unet_outputs_and_supervision_weights() {
    let store = ParamStore::new(1);
    let net = UNet::new(&store.root(), tiny_unet()).unwrap();
    let x = Tensor::randn(&[2, 4, 16, 16], DType::F32, &mut StdRng::seed_from_u64(1));
    let outs = net.forward(&x, true).unwrap();
    let shapes: Vec<_> = outs.iter().map(|o| o.shape().to_vec()).collect();
    assert_eq!(shapes, vec![vec![2, 4, 16, 16], vec![2, 4, 8, 8]]);
    assert_eq!(net.forward(&x, false).unwrap().len(), 1);
    // depth 4: outputs at 1, 1/2, 1/4 weighted 1, 1/2, 0, normalised
    let w = UNetConfig::quick().supervision_weights();
    assert_eq!(w.len(), 3);
    assert!((w[0] - 2.0 / 3.0).abs() < 1e-12 && (w[1] - 1.0 / 3.0).abs() < 1e-12 && w[2] == 0.0);
    let e = net
        .forward(&Tensor::zeros(&[1, 4, 10, 10], DType::F32), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unet") && e.contains("divisible by 4"), "{e}");
    let e = net
        .forward(&Tensor::zeros(&[1, 3, 16, 16], DType::F32), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1, 3, 16, 16]"), "{e}");
}

#[test]
fn swin_outputs_full_resolution_even_when_windows_need_padding() {
    let store = ParamStore::new(2);
    let mut cfg = tiny_swin();
    cfg.window = 4;
    let net = SwinSegmenter::new(&store.root(), cfg).unwrap();
    let mut rng = SplitMix64::new(0);
    // 20×20 input: 10×10 tokens, not a multiple of the 4-token window
    let x = Tensor::randn(&[2, 4, 20, 20], DType::F32, &mut StdRng::seed_from_u64(2));
    let y = net.forward(&x, true, &mut rng).unwrap();
    assert_eq!(y.shape(), &[2, 4, 20, 20]);
    assert!(y.to_vec_f32().unwrap().iter().all(|v| v.is_finite()));
    let e = net
        .forward(&Tensor::zeros(&[1, 4, 7, 8], DType::F32), false, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(e.contains("swin"), "{e}");
    let bad = SwinConfig {
        heads: vec![3, 2],
        ..tiny_swin()
    };
    assert!(SwinSegmenter::new(&ParamStore::new(0).root(), bad).is_err());
}

/// A stage whose token map is smaller than the window attends over the whole map with the
/// window shrunk to it (as Swin), reading its biases from the middle of the full table.
#[test]
fn swin_trains_when_a_stage_map_is_smaller_than_the_window() {
    let store = ParamStore::new(3);
    let mut cfg = tiny_swin();
    cfg.window = 4;
    let net = SwinSegmenter::new(&store.root(), cfg).unwrap();
    let mut rng = SplitMix64::new(0);
    // 12×12 input: 6×6 tokens in stage 0, 3×3 (< the 4-token window) in stage 1
    let x = Tensor::randn(&[2, 4, 12, 12], DType::F32, &mut StdRng::seed_from_u64(4));
    let y = net.forward(&x, true, &mut rng).unwrap();
    assert_eq!(y.shape(), &[2, 4, 12, 12]);
    y.sqr().unwrap().mean_all().unwrap().backward().unwrap();
    let table = store
        .trainable()
        .into_iter()
        .find(|p| p.name.contains("stages.1") && p.name.ends_with("relative_position_bias_table"))
        .expect("stage 1's bias table");
    let g = table.tensor.grad().expect("gradient").to_vec_f64().unwrap();
    // a 3×3 window has offsets −2..=2: the 5×5 middle of the 7×7 table, nothing outside it
    let heads = table.tensor.shape()[1];
    for (row, chunk) in g.chunks(heads).enumerate() {
        let (dy, dx) = (row / 7, row % 7);
        let inside = (1..6).contains(&dy) && (1..6).contains(&dx);
        assert_eq!(
            chunk.iter().any(|&v| v != 0.0),
            inside,
            "table row {row} (offset {}, {})",
            dy as isize - 3,
            dx as isize - 3
        );
    }
}

#[test]
fn swin_auxiliary_head_supervises_in_training_only() {
    let store = ParamStore::new(7);
    let net = SwinSegmenter::new(&store.root(), tiny_swin()).unwrap();
    let mut rng = SplitMix64::new(0);
    let x = Tensor::randn(&[2, 4, 16, 16], DType::F32, &mut StdRng::seed_from_u64(3));
    let (y, aux) = net.forward_with_aux(&x, true, &mut rng).unwrap();
    assert_eq!(y.shape(), &[2, 4, 16, 16]);
    // the FCN head reads the penultimate stage (4×4 here) and is upsampled to the input
    assert_eq!(aux.unwrap().shape(), &[2, 4, 16, 16]);
    assert!(
        net.forward_with_aux(&x, false, &mut rng)
            .unwrap()
            .1
            .is_none()
    );
    let names =
        |s: &ParamStore| -> Vec<String> { s.named_tensors().into_iter().map(|(n, _)| n).collect() };
    assert!(
        names(&store)
            .iter()
            .any(|n| n.starts_with("auxiliary_head.conv_seg"))
    );
    // without it, no parameters of it and no second output
    let store = ParamStore::new(7);
    let cfg = SwinConfig {
        aux_channels: None,
        ..tiny_swin()
    };
    let net = SwinSegmenter::new(&store.root(), cfg).unwrap();
    assert!(
        net.forward_with_aux(&x, true, &mut rng)
            .unwrap()
            .1
            .is_none()
    );
    assert!(
        !names(&store)
            .iter()
            .any(|n| n.starts_with("auxiliary_head"))
    );
    // dropout is a probability below 1
    let bad = SwinConfig {
        head_dropout: 1.0,
        ..tiny_swin()
    };
    assert!(SwinSegmenter::new(&ParamStore::new(0).root(), bad).is_err());
}

#[test]
fn unet_input_gradient_matches_finite_differences() {
    let store = ParamStore::with_dtype(3, DType::F64);
    let net = UNet::new(&store.root(), tiny_unet()).unwrap();
    let x = rand_tensor(&[1, 4, 8, 8], 5);
    let r = check_grad(|v| Ok(net.forward(&v[0], true)?.remove(0)), &[x], 1e-6).unwrap();
    assert!(r.max_err < 1e-5, "{r:?}");
}

#[test]
fn swin_input_gradient_matches_finite_differences() {
    let store = ParamStore::with_dtype(4, DType::F64);
    let net = SwinSegmenter::new(&store.root(), tiny_swin()).unwrap();
    let x = rand_tensor(&[1, 4, 8, 8], 6);
    let r = check_grad(
        |v| net.forward(&v[0], false, &mut SplitMix64::new(0)),
        &[x],
        1e-6,
    )
    .unwrap();
    assert!(r.max_err < 1e-5, "{r:?}");
}
