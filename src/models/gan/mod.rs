//! The StyleGAN family as NVlabs' stylegan3 repository builds it (`training/networks_stylegan2.py`
//! for `--cfg=stylegan2` and the discriminator, `training/networks_stylegan3.py` for
//! `--cfg=stylegan3-t`), written on this crate's ops.
//!
//! Conventions (all from the reference):
//! - equalised learning rate: weights stored N(0,1) and scaled at run time (1/√fan_in), the
//!   mapping network's layers with lr multiplier 0.01; style affines start with bias 1;
//! - leaky ReLU 0.2 with gain √2 through `bias_act`, conv outputs clamped at ±256·gain where the
//!   configuration says so (`conv_clamp`);
//! - noise `noise_const · noise_strength` (or fresh \[N,1,H,W\] maps) added after the modulated
//!   conv, before bias and activation;
//! - parameter and buffer names are the reference's state-dict names (`mapping.fc0.weight`,
//!   `synthesis.b4.const`, `synthesis.b8.conv0.affine.weight`, `b64.fromrgb.weight`,
//!   `b4.out.bias`, …), so a network trained with NVlabs' code loads by name. The script
//!   `tests/fixtures/convert_nvlabs_pkl.py` turns an NVlabs snapshot `.pkl` into a safetensors
//!   file of `G_ema.*` / `D.*` tensors under exactly these names.
//!
//! Images are [N, C, R, R] in [−1, 1] (C = 5 here: four MR sequences and the annotation).

pub mod discriminator;
pub mod growing;
pub mod layers;
pub mod loss;
pub mod mapping;
pub mod progan;
pub mod stylegan1;
pub mod stylegan1_disc;
pub mod stylegan2;
pub mod stylegan3;

pub use discriminator::Discriminator;
pub use layers::Noise;
pub use stylegan1::StyleGan1Generator;
pub use stylegan1_disc::StyleGan1Discriminator;
pub use stylegan2::StyleGan2Generator;
pub use stylegan3::{Sg3Settings, StyleGan3Generator};

use crate::io::checkpoint::Checkpoint;
use crate::nn::ParamStore;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Sizes shared by the generators and the discriminator (NVlabs `train.py` knobs).
#[derive(Clone, Debug, PartialEq)]
pub struct GanConfig {
    pub z_dim: usize,
    pub w_dim: usize,
    /// Image side R (a power of two ≥ 8).
    pub resolution: usize,
    /// Image channels.
    pub channels: usize,
    /// Channels at resolution r: min(channel_base / r, channel_max) (`--cbase`, `--cmax`).
    pub channel_base: usize,
    pub channel_max: usize,
    /// Mapping network depth (`--map`: 8 for stylegan2, 2 for stylegan3).
    pub mapping_layers: usize,
    /// Clamp of the conv outputs (NVlabs: 256 whenever mixed precision is configured, which
    /// `train.py` does by default).
    pub conv_clamp: Option<f64>,
    /// Minibatch-stddev group size (`--mbstd-group`, 4).
    pub mbstd_group: usize,
}

impl GanConfig {
    /// The CPU benchmark configuration of the study's quick profile (64×64×5, z = w = 256,
    /// cbase 2048, cmax 128, mapping 8 layers, mbstd group 4).
    pub fn bench_stylegan2() -> GanConfig {
        GanConfig {
            z_dim: 256,
            w_dim: 256,
            resolution: 64,
            channels: 5,
            channel_base: 2048,
            channel_max: 128,
            mapping_layers: 8,
            conv_clamp: Some(256.0),
            mbstd_group: 4,
        }
    }

    /// The paper's `--cfg=stylegan2` at 256×256×5 (cbase 32768, cmax 512).
    pub fn paper_stylegan2() -> GanConfig {
        GanConfig {
            z_dim: 512,
            w_dim: 512,
            resolution: 256,
            channel_base: 32768,
            channel_max: 512,
            ..GanConfig::bench_stylegan2()
        }
    }

    /// Channels of the feature maps at resolution `res`.
    pub fn channels_at(&self, res: usize) -> usize {
        (self.channel_base / res.max(1)).min(self.channel_max)
    }

    /// 4, 8, …, resolution.
    pub fn block_resolutions(&self) -> Vec<usize> {
        let mut v = vec![4];
        while *v.last().unwrap_or(&4) < self.resolution {
            let r = v[v.len() - 1] * 2;
            v.push(r);
        }
        v
    }

    pub fn validate(&self) -> Result<()> {
        let r = self.resolution;
        if r < 8 || !r.is_power_of_two() {
            return Err(Error::invalid(
                "GanConfig",
                format!("resolution {r} must be a power of two ≥ 8"),
            ));
        }
        if self.channels == 0 || self.z_dim == 0 || self.w_dim == 0 || self.mapping_layers == 0 {
            return Err(Error::invalid(
                "GanConfig",
                "channels, z_dim, w_dim and mapping layers must be at least 1",
            ));
        }
        if self.channels_at(r) == 0 || self.mbstd_group == 0 {
            return Err(Error::invalid(
                "GanConfig",
                format!(
                    "channel_base {} gives no channels at resolution {r} (or mbstd group is 0)",
                    self.channel_base
                ),
            ));
        }
        Ok(())
    }
}

/// Copy tensors into a store by name (e.g. converted NVlabs weights). Every parameter and buffer
/// of the store must be present with its shape; names the store lacks are an error too, so a
/// checkpoint of another architecture or size is refused rather than half-loaded.
pub fn load_named(store: &ParamStore, tensors: &[(String, Tensor)]) -> Result<()> {
    const OP: &str = "load_named";
    let mut staged = Vec::new();
    for (name, t) in tensors {
        let dst = store.get(name).ok_or_else(|| {
            Error::invalid(OP, format!("tensor {name:?} is not part of this network"))
        })?;
        // a scalar may arrive as [1] (formats that store at least one dimension)
        let scalar = t.elem_count() == 1 && dst.elem_count() == 1 && dst.rank() <= 1;
        if dst.shape() != t.shape() && !scalar {
            return Err(Error::shape(
                OP,
                format!(
                    "tensor {name:?} has shape {:?}, this network needs {:?}",
                    t.shape(),
                    dst.shape()
                ),
            ));
        }
        let t = t.reshape(dst.shape())?;
        staged.push((dst, t));
    }
    let given: std::collections::HashSet<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    if let Some((missing, _)) = store
        .named_tensors()
        .into_iter()
        .find(|(n, _)| !given.contains(n.as_str()))
    {
        return Err(Error::invalid(
            OP,
            format!("tensor {missing:?} of this network is missing"),
        ));
    }
    for (dst, t) in staged {
        let t = if t.dtype() == dst.dtype() {
            t
        } else {
            Tensor::from_f64s(&t.to_vec_f64()?, t.shape(), dst.dtype())?
        };
        dst.assign(&t)?;
    }
    Ok(())
}

/// The two generator architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    StyleGan2,
    StyleGan3,
}

impl Arch {
    /// The checkpoint's `model` metadata value.
    pub fn name(self) -> &'static str {
        match self {
            Arch::StyleGan2 => "stylegan2",
            Arch::StyleGan3 => "stylegan3",
        }
    }
}

/// The architecture and the sizes of G and of D recorded in a converted NVlabs checkpoint's
/// metadata (as `tests/fixtures/convert_nvlabs_pkl.py` writes them; `train.py` gives both networks
/// the same channel_base / channel_max, but the file records D's own).
pub fn config_from_checkpoint(ckpt: &Checkpoint) -> Result<(Arch, GanConfig, GanConfig)> {
    let path = ckpt.path().display().to_string();
    let bad = |msg: String| Error::invalid("config_from_checkpoint", format!("{path}: {msg}"));
    let arch = match ckpt.meta("model") {
        Some("stylegan2") => Arch::StyleGan2,
        Some("stylegan3") => Arch::StyleGan3,
        other => {
            return Err(bad(format!(
                "model {other:?} is not a StyleGAN2 or StyleGAN3 checkpoint"
            )));
        }
    };
    let num = |key: &str| ckpt.meta_count(key, bad);
    let conv_clamp = match ckpt.meta("conv_clamp") {
        None | Some("None") => None,
        Some(v) => Some(
            v.parse::<f64>()
                .map_err(|_| bad(format!("conv_clamp {v:?} is not a number")))?,
        ),
    };
    let cfg = GanConfig {
        z_dim: num("z_dim")?,
        w_dim: num("w_dim")?,
        resolution: num("resolution")?,
        channels: num("channels")?,
        channel_base: num("channel_base")?,
        channel_max: num("channel_max")?,
        mapping_layers: num("mapping_layers")?,
        conv_clamp,
        mbstd_group: num("mbstd_group")?,
    };
    cfg.validate()?;
    let mut dcfg = cfg.clone();
    if ckpt.meta("d_channel_base").is_some() {
        dcfg.channel_base = num("d_channel_base")?;
        dcfg.channel_max = num("d_channel_max")?;
    }
    dcfg.validate()?;
    Ok((arch, cfg, dcfg))
}
