//! The original StyleGAN's generator as NVlabs' TF1 `training/networks_stylegan.py` builds it
//! (`G_style` = `G_mapping` + `G_synthesis`), written on this crate's ops and growing
//! progressively as `training/training_loop.py` trains it.
//!
//! Conventions (all from the reference):
//! - equalised learning rate as its `get_weight`: weights stored N(0, 1/lrmul), scaled at run time
//!   by gain·lrmul/√fan_in, biases × lrmul; gain √2 before every leaky ReLU (slope 0.2, applied
//!   without a further gain), 1 for the style affines and toRGB;
//! - mapping: z pixel-normalised (ε 1e-8), `mapping_layers` dense layers (lr multiplier 0.01),
//!   w broadcast to 2·log2(R)−2 layers; `dlatent_avg` tracks the batch mean of w (β 0.995) during
//!   training; truncation lerp(w_avg, w, ψ) on the layers below `cutoff` (NVlabs: ψ 0.7, 8);
//! - synthesis: a learned constant [1, C, 4, 4] (initialised to ones), then per layer the
//!   reference's `layer_epilogue`: noise (one \[N,1,H,W\] map × a learned per-channel weight,
//!   zero-initialised) → bias → leaky ReLU → instance norm (ε 1e-8) → style modulation
//!   x·(1 + s) + b with [s, b] = dense(w) (bias 0: the scale's 1 is in the formula);
//! - up-sampling: nearest 2× then 3×3 conv, or (output ≥ `fused_from`, 128 as `fused_scale='auto'`)
//!   one stride-2 transposed conv whose 4×4 kernel is the 3×3 kernel padded and summed over its four
//!   shifts; either way followed by the normalised \[1,2,1\] blur;
//! - toRGB: 1×1 conv (gain 1) + bias per resolution; growing: at level L with fade weight α the
//!   image is lerp(up2(toRGB_{L−1}), toRGB_L, α) (the reference's `lerp(new, old, lod − ⌊lod⌋)`).
//!
//! The image comes out at the level's own resolution 4·2^L (the reference up-samples it by nearest
//! 2^lod to R and its discriminator averages it back down: the same numbers, less work).
//!
//! Parameter names are the reference's TF variable scopes with dots (`mapping.Dense0.weight`,
//! `synthesis.4x4.Const.const`, `synthesis.8x8.Conv0_up.StyleMod.weight`,
//! `synthesis.ToRGB_lod0.bias`, buffers `synthesis.noise3`, `dlatent_avg`); conv weights are
//! stored OIHW and dense weights [out, in] (the transposes of TF's layouts).

use std::f64::consts::SQRT_2;

use rand::{Rng, RngExt};

use super::GanConfig;
use super::growing::{
    EmaRule, GrowingGenerator, Growth, GrowthSchedule, ProgressiveConfig, Truncation, fade_rgb,
    top_level_for, upsample2x,
};
use super::layers::Noise;
use super::loss::GrowingLoss;
use crate::io::checkpoint::{Checkpoint, CheckpointWriter};
use crate::nn::{EqualizedConfig, EqualizedConv2d, EqualizedLinear, Init, ParamStore, Scope};
use crate::ops::Conv2dParams;
use crate::ops::norm::instance_norm;
use crate::ops::stylegan::pixel_norm;
use crate::ops::upfirdn::{filter2d, setup_filter};
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// Decay of the tracked mean w (`dlatent_avg_beta`).
pub const DLATENT_AVG_BETA: f64 = 0.995;
/// The mapping layers' learning-rate multiplier (`mapping_lrmul`).
pub const MAPPING_LR_MULTIPLIER: f64 = 0.01;
/// Probability of style mixing in training (`style_mixing_prob`).
pub const STYLE_MIXING_PROB: f64 = 0.9;
/// NVlabs' sampling truncation: ψ and the layer cutoff (`truncation_psi`, `truncation_cutoff`).
pub const TRUNCATION_PSI: f64 = 0.7;
pub const TRUNCATION_CUTOFF: usize = 8;
/// Smallest output resolution of a fused (transposed-conv) up-sampling (`fused_scale='auto'`).
pub const FUSED_SCALE_FROM: usize = 128;
/// The checkpoint's `model` value.
pub const MODEL_NAME: &str = "stylegan1";
/// R1 weight of `D_logistic_simplegp` in NVlabs' `train.py`.
pub const R1_GAMMA: f64 = 10.0;
/// Half-life of G_ema in thousands of images (`G_smoothing_kimg`).
pub const G_SMOOTHING_KIMG: f64 = 10.0;
/// ε of pixel norm and instance norm.
const NORM_EPS: f64 = 1e-8;
/// Negative slope of every leaky ReLU.
pub const LRELU_SLOPE: f64 = 0.2;

/// The normalised \[1,2,1\] ⊗ \[1,2,1\] blur of the resampling layers.
pub fn blur_filter(dtype: DType) -> Result<Tensor> {
    setup_filter(&[1.0, 2.0, 1.0], &[3], true, false, 1.0, Some(false), dtype)
}

/// 'SAME' blur of every channel with [`blur_filter`].
pub(crate) fn blur(x: &Tensor, f: &Tensor) -> Result<Tensor> {
    filter2d(x, f, (0, 0, 0, 0), 1.0)
}

/// The 3×3 kernel padded to 5×5 and summed over its four 1-pixel shifts: the 4×4 kernel that
/// does resampling and the conv in one stride-2 pass (`upscale2d_conv2d` / `conv2d_downscale2d`
/// with `fused_scale`). `w` is [A, B, 3, 3].
pub fn fused_kernel(w: &Tensor) -> Result<Tensor> {
    let p = w.pad2d((1, 1, 1, 1), false)?;
    let at = |y: usize, x: usize| p.narrow(2, y, 4)?.narrow(3, x, 4);
    at(1, 1)?.add(&at(0, 1)?)?.add(&at(1, 0)?)?.add(&at(0, 0)?)
}

/// Leaky ReLU 0.2 without gain (the gain is in the weights).
fn lrelu(x: &Tensor) -> Result<Tensor> {
    x.leaky_relu(LRELU_SLOPE)
}

/// Add a per-channel bias [C] to [N, C, H, W].
fn add_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.add(&b.reshape(&[1, b.elem_count(), 1, 1])?)
}

/// An equalised conv without bias (the bias comes later, in the epilogue or beside the act).
fn conv(vs: &Scope, cin: usize, cout: usize, k: usize, gain: f64) -> Result<EqualizedConv2d> {
    EqualizedConv2d::new(
        vs,
        cin,
        cout,
        k,
        Conv2dParams::same(k),
        EqualizedConfig::default().with_gain(gain).without_bias(),
    )
}

/// The sizes StyleGAN 1 uses of a [`GanConfig`], checked; it has no conv clamping.
pub fn check_config(config: &GanConfig) -> Result<()> {
    config.validate()?;
    if let Some(c) = config.conv_clamp {
        return Err(Error::invalid(
            "StyleGAN1",
            format!("StyleGAN 1 clamps no conv outputs; conv_clamp must be None, not {c}"),
        ));
    }
    Ok(())
}

/// The sizes as checkpoint metadata (`model` = [`MODEL_NAME`] included).
pub fn write_metadata(config: &GanConfig, w: &mut CheckpointWriter) {
    w.set_metadata("model", MODEL_NAME);
    for (k, v) in [
        ("z_dim", config.z_dim),
        ("w_dim", config.w_dim),
        ("resolution", config.resolution),
        ("channels", config.channels),
        ("channel_base", config.channel_base),
        ("channel_max", config.channel_max),
        ("mapping_layers", config.mapping_layers),
        ("mbstd_group", config.mbstd_group),
    ] {
        w.set_metadata(k, v.to_string());
    }
}

/// The sizes a StyleGAN 1 checkpoint records; another model is an error.
pub fn config_from_checkpoint(ck: &Checkpoint) -> Result<GanConfig> {
    let path = ck.path().display().to_string();
    let bad = |msg: String| Error::invalid("StyleGAN1", format!("{path}: {msg}"));
    if ck.meta("model") != Some(MODEL_NAME) {
        return Err(bad(format!(
            "model {:?} is not a StyleGAN 1 checkpoint",
            ck.meta("model")
        )));
    }
    let num = |key: &str| ck.meta_count(key, bad);
    let cfg = GanConfig {
        z_dim: num("z_dim")?,
        w_dim: num("w_dim")?,
        resolution: num("resolution")?,
        channels: num("channels")?,
        channel_base: num("channel_base")?,
        channel_max: num("channel_max")?,
        mapping_layers: num("mapping_layers")?,
        conv_clamp: None,
        mbstd_group: num("mbstd_group")?,
    };
    check_config(&cfg)?;
    Ok(cfg)
}

impl ProgressiveConfig {
    /// NVlabs' StyleGAN `train.py`: non-saturating logistic loss with R1 (γ 10) every step, base
    /// learning rate 0.001 (the schedule sets its per-resolution rates), Adam (0, 0.99, ε 1e-8),
    /// G_ema half-life 10 kimg, mirror augmentation, optimisers reset per level of detail.
    pub fn stylegan1(schedule: GrowthSchedule) -> ProgressiveConfig {
        ProgressiveConfig {
            schedule,
            loss: GrowingLoss::stylegan1(R1_GAMMA),
            g_lr: 0.001,
            d_lr: 0.001,
            betas: (0.0, 0.99),
            ema: EmaRule::HalfLifeKimg(G_SMOOTHING_KIMG),
            mirror: true,
            reset_opt_for_new_lod: true,
        }
    }
}

/// `G_mapping`: z → w [N, w_dim] (not broadcast), with the tracked mean `dlatent_avg`.
#[derive(Clone, Debug)]
pub struct Sg1Mapping {
    pub dense: Vec<EqualizedLinear>,
    pub dlatent_avg: Tensor,
    pub z_dim: usize,
    pub w_dim: usize,
}

impl Sg1Mapping {
    fn new(root: &Scope, z_dim: usize, w_dim: usize, layers: usize) -> Result<Sg1Mapping> {
        let vs = root.sub("mapping");
        let cfg = EqualizedConfig::default()
            .with_gain(SQRT_2)
            .with_lr_multiplier(MAPPING_LR_MULTIPLIER);
        let dense = (0..layers)
            .map(|i| {
                let fin = if i == 0 { z_dim } else { w_dim };
                EqualizedLinear::new(&vs.sub(format!("Dense{i}")), fin, w_dim, cfg)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sg1Mapping {
            dense,
            dlatent_avg: root.buffer_init("dlatent_avg", &[w_dim], Init::Constant(0.0))?,
            z_dim,
            w_dim,
        })
    }

    /// z [N, z_dim] → w [N, w_dim].
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        if z.rank() != 2 || z.shape()[1] != self.z_dim || z.shape()[0] == 0 {
            return Err(Error::shape(
                "StyleGAN1 mapping",
                format!("z must be [N ≥ 1, {}], got {:?}", self.z_dim, z.shape()),
            ));
        }
        let mut x = pixel_norm(z)?;
        for d in &self.dense {
            x = lrelu(&d.forward(&x)?)?;
        }
        Ok(x)
    }

    /// Move `dlatent_avg` towards the batch mean of `w`: lerp(mean, avg, β).
    pub fn update_avg(&self, w: &Tensor) -> Result<()> {
        let _g = crate::autograd::no_grad_guard();
        let mean = w.detach().mean_axes(&[0], false)?;
        let new = mean.add(&self.dlatent_avg.sub(&mean)?.mul_scalar(DLATENT_AVG_BETA)?)?;
        self.dlatent_avg.assign(&new)
    }
}

/// The reference's `layer_epilogue` parameters of one synthesis layer.
#[derive(Clone, Debug)]
pub struct Epilogue {
    /// Per-channel noise weight \[C\] (`Noise.weight`, zero-initialised).
    pub noise_weight: Tensor,
    pub bias: Tensor,
    /// w → [scale | bias] (2C), gain 1 (`StyleMod`).
    pub style: EqualizedLinear,
    /// Index of this layer (its w and its noise input).
    pub layer: usize,
    pub resolution: usize,
}

impl Epilogue {
    fn new(vs: &Scope, channels: usize, w_dim: usize, layer: usize, res: usize) -> Result<Self> {
        Ok(Epilogue {
            noise_weight: vs
                .sub("Noise")
                .param("weight", &[channels], Init::Constant(0.0))?,
            bias: vs.param("bias", &[channels], Init::Constant(0.0))?,
            style: EqualizedLinear::new(
                &vs.sub("StyleMod"),
                w_dim,
                2 * channels,
                EqualizedConfig::default(),
            )?,
            layer,
            resolution: res,
        })
    }

    /// noise → bias → leaky ReLU → instance norm → style modulation by w [N, w_dim].
    fn forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        noise: &mut Noise,
        buffers: &[Tensor],
    ) -> Result<Tensor> {
        let (n, c, r) = (x.shape()[0], x.shape()[1], self.resolution);
        let map = match noise {
            Noise::Off => None,
            Noise::Const => Some(buffers[self.layer].clone()),
            Noise::Random(rng) => {
                Some(Tensor::randn(&[n, 1, r, r], x.dtype(), rng).to_device(x.device())?)
            }
            Noise::Given(maps) => {
                let m = maps.get(self.layer).ok_or_else(|| {
                    Error::invalid(
                        "StyleGAN1 synthesis",
                        format!(
                            "{} noise maps given, but layer {} needs one",
                            maps.len(),
                            self.layer
                        ),
                    )
                })?;
                if m.elem_count() != r * r && m.elem_count() != n * r * r {
                    return Err(Error::shape(
                        "StyleGAN1 synthesis",
                        format!(
                            "noise map {} has shape {:?}; layer {} needs [1 or {n}, 1, {r}, {r}]",
                            self.layer,
                            m.shape(),
                            self.layer
                        ),
                    ));
                }
                Some(m.reshape(&[m.elem_count() / (r * r), 1, r, r])?)
            }
        };
        let x = match map {
            Some(m) => x.add(&m.mul(&self.noise_weight.reshape(&[1, c, 1, 1])?)?)?,
            None => x.clone(),
        };
        let x = lrelu(&add_bias(&x, &self.bias)?)?;
        let x = instance_norm(&x, None, None, NORM_EPS)?;
        let s = self.style.forward(w)?; // [N, 2C]: scale then bias
        let scale = s.narrow(1, 0, c)?.add_scalar(1.0)?.reshape(&[n, c, 1, 1])?;
        let shift = s.narrow(1, c, c)?.reshape(&[n, c, 1, 1])?;
        x.mul(&scale)?.add(&shift)
    }
}

/// The two layers of one resolution (`synthesis.{r}x{r}`).
#[derive(Clone, Debug)]
pub struct Sg1SynthesisBlock {
    pub resolution: usize,
    /// 4×4: the learned constant [1, C, 4, 4]; others: `Conv0_up` (3×3, applied after nearest
    /// 2× up-sampling or fused as a transposed conv).
    pub constant: Option<Tensor>,
    pub conv0: Option<EqualizedConv2d>,
    pub epi0: Epilogue,
    /// `Conv` (4×4) / `Conv1`: 3×3.
    pub conv1: EqualizedConv2d,
    pub epi1: Epilogue,
    /// `ToRGB_lod{log2 R − log2 r}`: 1×1 with bias.
    pub torgb: EqualizedConv2d,
    fused: bool,
}

impl Sg1SynthesisBlock {
    /// Features after this block, from the previous block's (none for 4×4).
    fn forward(
        &self,
        x: Option<&Tensor>,
        ws: &Tensor,
        noise: &mut Noise,
        buffers: &[Tensor],
        blur_f: &Tensor,
    ) -> Result<Tensor> {
        let n = ws.shape()[0];
        let w_at = |i: usize| -> Result<Tensor> {
            let w_dim = ws.shape()[2];
            ws.narrow(1, i, 1)?.reshape(&[n, w_dim])
        };
        let y = match (&self.constant, &self.conv0, x) {
            (Some(c), _, _) => {
                let s = c.shape();
                c.broadcast_as(&[n, s[1], s[2], s[3]])?
            }
            (None, Some(conv0), Some(x)) => {
                let y = if self.fused {
                    // transposed conv [Cin, Cout, 4, 4] with stride 2 and padding 1 (TF 'SAME')
                    let k = fused_kernel(&conv0.scaled_weight()?)?.permute(&[1, 0, 2, 3])?;
                    let p = Conv2dParams::same(4).with_stride(2).with_padding(1);
                    x.conv_transpose2d(&k, p, (0, 0))?
                } else {
                    conv0.forward_no_bias(&upsample2x(x)?)?
                };
                blur(&y, blur_f)?
            }
            _ => {
                return Err(Error::invalid(
                    "StyleGAN1 synthesis",
                    "a block after 4×4 needs the previous block's features",
                ));
            }
        };
        let y = self
            .epi0
            .forward(&y, &w_at(self.epi0.layer)?, noise, buffers)?;
        let y = self.conv1.forward_no_bias(&y)?;
        self.epi1
            .forward(&y, &w_at(self.epi1.layer)?, noise, buffers)
    }

    fn to_rgb(&self, x: &Tensor) -> Result<Tensor> {
        self.torgb.forward(x)
    }
}

/// NVlabs' `G_style`: `mapping.*`, `synthesis.*` and `dlatent_avg`.
#[derive(Clone, Debug)]
pub struct StyleGan1Generator {
    pub config: GanConfig,
    pub store: ParamStore,
    pub mapping: Sg1Mapping,
    pub blocks: Vec<Sg1SynthesisBlock>,
    /// The noise buffers `synthesis.noise{i}` [1, 1, r, r] (used by [`Noise::Const`]).
    pub noise: Vec<Tensor>,
    /// 2·log2(R) − 2: one w and one noise input per synthesis layer.
    pub num_layers: usize,
    blur_f: Tensor,
}

impl StyleGan1Generator {
    /// A new generator with parameters in `store`, initialised as the reference (weights
    /// N(0, 1/lrmul), biases and noise weights 0, constant 1, noise buffers N(0, 1)). Uses
    /// `z_dim`, `w_dim`, `resolution`, `channels`, `channel_base`, `channel_max` and
    /// `mapping_layers` of `config` (block r has min(channel_base / r, channel_max) channels:
    /// the reference's nf(log2 r − 1) with fmap_base = channel_base / 2).
    pub fn new(store: &ParamStore, config: &GanConfig) -> Result<StyleGan1Generator> {
        StyleGan1Generator::with_fused_from(store, config, FUSED_SCALE_FROM)
    }

    /// As [`StyleGan1Generator::new`], with the fused up-sampling from output resolution
    /// `fused_from` on (the reference: 128; tests use smaller values to reach the fused path).
    pub fn with_fused_from(
        store: &ParamStore,
        config: &GanConfig,
        fused_from: usize,
    ) -> Result<StyleGan1Generator> {
        check_config(config)?;
        let root = store.root();
        let syn = root.sub("synthesis");
        let top = top_level_for(config.resolution)?;
        let num_layers = 2 * (top + 1);
        let w_dim = config.w_dim;
        let mut noise = Vec::new();
        for layer in 0..num_layers {
            let r = 4usize << (layer / 2);
            noise.push(syn.buffer_init(
                &format!("noise{layer}"),
                &[1, 1, r, r],
                Init::normal(1.0),
            )?);
        }
        let mut blocks = Vec::new();
        for level in 0..=top {
            let r = 4usize << level;
            let c = config.channels_at(r);
            let vs = syn.sub(format!("{r}x{r}"));
            let (constant, conv0, epi0, conv1, epi1) = if level == 0 {
                let cs = vs.sub("Const");
                let k = cs.param("const", &[1, c, 4, 4], Init::Constant(1.0))?;
                let e0 = Epilogue::new(&cs, c, w_dim, 0, r)?;
                let cv = vs.sub("Conv");
                let c1 = conv(&cv, c, c, 3, SQRT_2)?;
                let e1 = Epilogue::new(&cv, c, w_dim, 1, r)?;
                (Some(k), None, e0, c1, e1)
            } else {
                let cin = config.channels_at(r / 2);
                let up = vs.sub("Conv0_up");
                let c0 = conv(&up, cin, c, 3, SQRT_2)?;
                let e0 = Epilogue::new(&up, c, w_dim, 2 * level, r)?;
                let cv = vs.sub("Conv1");
                let c1 = conv(&cv, c, c, 3, SQRT_2)?;
                let e1 = Epilogue::new(&cv, c, w_dim, 2 * level + 1, r)?;
                (None, Some(c0), e0, c1, e1)
            };
            let torgb = EqualizedConv2d::new(
                &syn.sub(format!("ToRGB_lod{}", top - level)),
                c,
                config.channels,
                1,
                Conv2dParams::same(1),
                EqualizedConfig::default(),
            )?;
            blocks.push(Sg1SynthesisBlock {
                resolution: r,
                constant,
                conv0,
                epi0,
                conv1,
                epi1,
                torgb,
                fused: level > 0 && r >= fused_from,
            });
        }
        let mapping = Sg1Mapping::new(&root, config.z_dim, w_dim, config.mapping_layers)?;
        Ok(StyleGan1Generator {
            config: config.clone(),
            store: store.clone(),
            mapping,
            blocks,
            noise,
            num_layers,
            blur_f: blur_filter(store.dtype())?,
        })
    }

    /// The highest level: log2(R) − 2.
    pub fn top_level(&self) -> usize {
        self.blocks.len() - 1
    }

    /// Synthesis layers (ws, noise inputs) that level `level` uses: 2·(level + 1).
    pub fn layers_at(&self, level: usize) -> usize {
        (2 * (level + 1)).min(self.num_layers)
    }

    /// z [N, z_dim] → ws [N, num_layers, w_dim], truncated towards `dlatent_avg` with ψ on the
    /// layers below `cutoff` (`None`: all). ψ = 1 leaves w as it is.
    pub fn map(&self, z: &Tensor, psi: f64, cutoff: Option<usize>) -> Result<Tensor> {
        let w = self.mapping.forward(z)?;
        let ws = self.broadcast(&w)?;
        self.truncate(&ws, psi, cutoff)
    }

    fn broadcast(&self, w: &Tensor) -> Result<Tensor> {
        let (n, d) = (w.shape()[0], w.shape()[1]);
        w.reshape(&[n, 1, d])?
            .broadcast_as(&[n, self.num_layers, d])?
            .contiguous()
    }

    /// lerp(dlatent_avg, ws, ψ) on layers < `cutoff`, the others unchanged (`Truncation`).
    pub fn truncate(&self, ws: &Tensor, psi: f64, cutoff: Option<usize>) -> Result<Tensor> {
        if !psi.is_finite() {
            return Err(Error::invalid(
                "StyleGAN1 truncation",
                format!("ψ must be a finite number, got {psi}"),
            ));
        }
        let cut = cutoff.unwrap_or(self.num_layers).min(self.num_layers);
        if psi == 1.0 || cut == 0 {
            return Ok(ws.clone());
        }
        let d = self.config.w_dim;
        let avg = self.mapping.dlatent_avg.reshape(&[1, 1, d])?;
        let head = ws.narrow(1, 0, cut)?;
        let head = avg.add(&head.sub(&avg)?.mul_scalar(psi)?)?;
        if cut == self.num_layers {
            return Ok(head);
        }
        Tensor::cat(&[head, ws.narrow(1, cut, self.num_layers - cut)?], 1)
    }

    /// The training-time ws (`G_style` with `is_training`): the mapping of `z`, `dlatent_avg`
    /// moved towards its batch mean when `update_avg`, and with probability
    /// [`STYLE_MIXING_PROB`] the ws of a second latent from a crossover layer drawn uniformly in
    /// [1, layers of this level). The draws: crossover, coin, second z (always, as the reference).
    pub fn map_train(
        &self,
        z: &Tensor,
        level: usize,
        mixing_prob: f64,
        update_avg: bool,
        rng: &mut dyn Rng,
    ) -> Result<Tensor> {
        let w = self.mapping.forward(z)?;
        if update_avg {
            self.mapping.update_avg(&w)?;
        }
        let ws = self.broadcast(&w)?;
        let cur = self.layers_at(level);
        if mixing_prob <= 0.0 || cur < 2 {
            return Ok(ws);
        }
        let cutoff = rng.random_range(1..cur);
        let mix = rng.random::<f64>() < mixing_prob;
        let z2 = Tensor::randn(z.shape(), z.dtype(), &mut &mut *rng).to_device(z.device())?;
        if !mix {
            return Ok(ws);
        }
        let ws2 = self.broadcast(&self.mapping.forward(&z2)?)?;
        Tensor::cat(
            &[
                ws.narrow(1, 0, cutoff)?,
                ws2.narrow(1, cutoff, self.num_layers - cutoff)?,
            ],
            1,
        )
    }

    /// ws [N, num_layers, w_dim] → images [N, channels, r, r] at `growth` (r its resolution),
    /// the newest block faded in by its α.
    pub fn synthesis(&self, ws: &Tensor, growth: Growth, noise: &mut Noise) -> Result<Tensor> {
        const OP: &str = "StyleGAN1 synthesis";
        growth.validate(self.top_level())?;
        let level = growth.level;
        let want = [
            ws.shape().first().copied().unwrap_or(0),
            self.num_layers,
            self.config.w_dim,
        ];
        if ws.shape() != want || want[0] == 0 {
            return Err(Error::shape(
                OP,
                format!(
                    "ws must be [N ≥ 1, {}, {}], got {:?}",
                    want[1],
                    want[2],
                    ws.shape()
                ),
            ));
        }
        let mut x: Option<Tensor> = None;
        let mut prev: Option<Tensor> = None;
        for b in &self.blocks[..=level] {
            let nx = b.forward(x.as_ref(), ws, noise, &self.noise, &self.blur_f)?;
            prev = x.replace(nx);
        }
        let x = x.ok_or_else(|| Error::invalid(OP, "no synthesis blocks"))?;
        let img = self.blocks[level].to_rgb(&x)?;
        match prev {
            Some(p) if growth.is_fading() => {
                fade_rgb(&img, &self.blocks[level - 1].to_rgb(&p)?, growth.alpha)
            }
            _ => Ok(img),
        }
    }

    /// z → images at `growth`, truncated with ψ below `cutoff` (`None`: all layers).
    pub fn forward(
        &self,
        z: &Tensor,
        growth: Growth,
        psi: f64,
        cutoff: Option<usize>,
        noise: &mut Noise,
    ) -> Result<Tensor> {
        let ws = self.map(z, psi, cutoff)?;
        self.synthesis(&ws, growth, noise)
    }
}

impl GrowingGenerator for StyleGan1Generator {
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn z_dim(&self) -> usize {
        self.config.z_dim
    }
    fn top_level(&self) -> usize {
        StyleGan1Generator::top_level(self)
    }
    /// `G_style` with `is_training`: fresh noise, style mixing (0.9), `dlatent_avg` moved when
    /// `update_emas`, no truncation.
    fn forward_train(
        &self,
        z: &Tensor,
        growth: Growth,
        update_emas: bool,
        rng: &mut dyn Rng,
    ) -> Result<Tensor> {
        let ws = self.map_train(z, growth.level, STYLE_MIXING_PROB, update_emas, rng)?;
        self.synthesis(&ws, growth, &mut Noise::Random(rng))
    }
    /// The noise buffers, truncation with ψ below `cutoff` (default [`TRUNCATION_CUTOFF`]).
    fn sample(&self, z: &Tensor, growth: Growth, trunc: Truncation) -> Result<Tensor> {
        let cutoff = trunc.cutoff.unwrap_or(TRUNCATION_CUTOFF);
        self.forward(z, growth, trunc.psi, Some(cutoff), &mut Noise::Const)
    }
}
