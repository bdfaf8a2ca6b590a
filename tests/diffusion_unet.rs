//! The guided-diffusion U-Net against the reference: a tiny randomly initialised `UNetModel`
//! exported by tests/fixtures/make_diffusion.py loads by state-dict name into ours and gives the
//! same output for the same x and t.

#[allow(dead_code)]
#[path = "common/fixtures.rs"]
mod fixtures;

use std::collections::HashMap;

use brainsynth::models::diffusion::{DiffusionUNet, DiffusionUNetConfig};
use brainsynth::nn::ParamStore;
use brainsynth::{DType, Tensor};

/// The fixture's model: 16×16×5, width 32, multipliers 1,1, one res block, attention at ds 2.
pub fn fixture_config() -> DiffusionUNetConfig {
    DiffusionUNetConfig {
        image_size: 16,
        in_channels: 5,
        model_channels: 32,
        out_channels: 5,
        num_res_blocks: 1,
        attention_ds: vec![2],
        channel_mult: vec![1, 1],
        num_heads: 4,
        num_head_channels: None,
        num_heads_upsample: None,
        use_scale_shift_norm: true,
        dropout: 0.0,
    }
}

fn tensor(fx: &HashMap<String, fixtures::Array>, name: &str) -> Tensor {
    let a = fixtures::get(fx, name);
    Tensor::from_f64s(&a.f64s(), &a.shape, DType::F32).unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn unet_matches_guided_diffusion_by_state_dict_name() {
    let fx = fixtures::load("diffusion.bin");
    let store = ParamStore::new(1);
    let model = DiffusionUNet::new(&store.root(), fixture_config()).unwrap();
    let ours: HashMap<String, Tensor> = store.named_tensors().into_iter().collect();
    let theirs: Vec<&String> = fx.keys().filter(|k| k.starts_with("p.")).collect();
    assert_eq!(ours.len(), theirs.len(), "parameter count differs");
    for k in theirs {
        let name = &k[2..];
        let p = ours
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name} in our model"));
        assert_eq!(p.shape(), fixtures::get(&fx, k).shape.as_slice(), "{name}");
        p.assign(&tensor(&fx, k)).unwrap();
    }
    let y = model
        .forward(&tensor(&fx, "unet.x"), &tensor(&fx, "unet.t"))
        .unwrap();
    let want = tensor(&fx, "unet.y");
    let e = rel_err(&y, &want);
    println!("U-Net output relative error {e:.3e}");
    assert!(e <= 1e-4, "relative error {e:.3e}");
}
