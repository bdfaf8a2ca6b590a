//! The Progressive GAN (Karras et al. 2018) as NVlabs' TensorFlow `progressive_growing_of_gans`
//! builds it (`networks.py`: `G_paper`, `D_paper`, "recursive" structure, `fused_scale` off).
//!
//! Conventions (all from the reference):
//! - equalised learning rate: every weight stored N(0, 1) and multiplied at run time by
//!   he-std = gain/√fan_in (gain √2; the 4×4 dense layer √2/4, toRGB and D's last dense 1);
//!   biases start at 0 and are added per channel after the scaled conv / dense;
//! - leaky ReLU 0.2 without gain; in G pixel norm (x·rsqrt(mean over channels of x² + 1e-8))
//!   of the latent and after every layer but toRGB;
//! - widths nf(stage) = min(fmap_base / 2^stage, fmap_max); the block of side r = 2^k has
//!   nf(k − 1) channels (G) and maps nf(k − 1) → nf(k − 2) (D);
//! - G: `b4` = dense latent → nf(1)·16 reshaped to [nf(1), 4, 4] + conv 3×3; each later block
//!   nearest 2× up-sampling then `conv0`, `conv1` (3×3); a 1×1 `torgb` (linear) per level;
//! - D: a 1×1 `fromrgb` (leaky ReLU) per level; each block above 4×4 `conv0` (3×3), `conv1`
//!   (3×3) then 2×2 average pooling; `b4`: minibatch stddev (group min(4, N), one channel), conv
//!   3×3, `dense0` (leaky ReLU), `dense1` (one linear score);
//! - growing as [`super::growing`]: G blends its new toRGB with the previous level's
//!   (upsampled), D its new block's output with the previous fromRGB of the pooled image.
//!
//! Parameter names (TensorFlow scope in brackets), weights [out, in, k, k] / [out, in]:
//! G `b4.dense.weight` [nf(1)·16, latent], `b4.dense.bias` [nf(1)] (`4x4/Dense`),
//! `b4.conv.*` (`4x4/Conv`), `b{r}.conv0.*`, `b{r}.conv1.*` (`{r}x{r}/Conv0`, `Conv1`),
//! `b{r}.torgb.*` (`ToRGB_lod{top − level}`); D `b{r}.fromrgb.*` (`FromRGB_lod…`),
//! `b{r}.conv0.*`, `b{r}.conv1.*`, `b4.conv.*`, `b4.dense0.*`, `b4.dense1.*`.
//!
//! Images are [N, C, r, r] in [−1, 1] at the current level's side r.

use rand::Rng;

use super::growing::{
    GrowingDiscriminator, GrowingGenerator, Growth, Truncation, downsample2x, fade, fade_rgb,
    top_level_for, upsample2x,
};
use crate::io::checkpoint::{Checkpoint, CheckpointWriter};
use crate::nn::{EqualizedConfig, EqualizedConv2d, EqualizedLinear, Init, ParamStore, Scope};
use crate::ops::conv::Conv2dParams;
use crate::ops::stylegan::{Act, bias_act, minibatch_stddev, pixel_norm};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// ProGAN's leaky ReLU (no gain: equalised lr puts √2 into the weights instead).
const LRELU: Act = Act::Lrelu(0.2);

/// The checkpoint `model` value.
pub const MODEL_NAME: &str = "progan";

/// Sizes of G and D (`G_paper` / `D_paper` arguments; fmap_decay is 1).
#[derive(Clone, Debug, PartialEq)]
pub struct ProGanConfig {
    /// Latent size (512 in the paper).
    pub latent_size: usize,
    /// Final image side (a power of two ≥ 8).
    pub resolution: usize,
    /// Image channels.
    pub channels: usize,
    pub fmap_base: usize,
    pub fmap_max: usize,
    /// Minibatch-stddev group (4).
    pub mbstd_group: usize,
}

impl ProGanConfig {
    /// The paper's networks at 256×256×5: latent 512, fmap_base 8192, fmap_max 512.
    pub fn paper() -> ProGanConfig {
        ProGanConfig {
            latent_size: 512,
            resolution: 256,
            channels: 5,
            fmap_base: 8192,
            fmap_max: 512,
            mbstd_group: 4,
        }
    }

    /// nf(stage) = min(fmap_base / 2^stage, fmap_max).
    pub fn nf(&self, stage: usize) -> usize {
        (self.fmap_base >> stage.min(63)).min(self.fmap_max)
    }

    pub fn top_level(&self) -> usize {
        top_level_for(self.resolution).unwrap_or(0)
    }

    pub fn validate(&self) -> Result<()> {
        let r = self.resolution;
        if r < 8 || !r.is_power_of_two() {
            return Err(Error::invalid(
                "ProGanConfig",
                format!("resolution {r} must be a power of two ≥ 8"),
            ));
        }
        if self.latent_size == 0 || self.channels == 0 || self.mbstd_group == 0 {
            return Err(Error::invalid(
                "ProGanConfig",
                "latent size, channels and the minibatch-stddev group must be at least 1",
            ));
        }
        let last = r.trailing_zeros() as usize - 1;
        if self.nf(last) == 0 {
            return Err(Error::invalid(
                "ProGanConfig",
                format!(
                    "fmap_base {} leaves no feature maps at {r}×{r} (needs at least {})",
                    self.fmap_base,
                    1usize << last
                ),
            ));
        }
        Ok(())
    }

    /// Record the sizes in checkpoint metadata (read back by [`ProGanConfig::from_checkpoint`]).
    pub fn write_metadata(&self, w: &mut CheckpointWriter) {
        w.set_metadata("model", MODEL_NAME);
        for (k, v) in [
            ("latent_size", self.latent_size),
            ("resolution", self.resolution),
            ("channels", self.channels),
            ("fmap_base", self.fmap_base),
            ("fmap_max", self.fmap_max),
            ("mbstd_group", self.mbstd_group),
        ] {
            w.set_metadata(k, v.to_string());
        }
    }

    /// The sizes a ProGAN checkpoint records; another model is an error.
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<ProGanConfig> {
        let path = ck.path().display().to_string();
        let bad = |msg: String| Error::invalid("ProGanConfig", format!("{path}: {msg}"));
        if ck.meta("model") != Some(MODEL_NAME) {
            return Err(bad(format!(
                "model {:?} is not a Progressive GAN checkpoint",
                ck.meta("model")
            )));
        }
        let num = |key: &str| ck.meta_count(key, bad);
        let cfg = ProGanConfig {
            latent_size: num("latent_size")?,
            resolution: num("resolution")?,
            channels: num("channels")?,
            fmap_base: num("fmap_base")?,
            fmap_max: num("fmap_max")?,
            mbstd_group: num("mbstd_group")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// An equalised conv (stride 1, same padding) with bias and optional leaky ReLU.
#[derive(Clone, Debug)]
pub struct EqConv {
    pub conv: EqualizedConv2d,
    act: Act,
}

impl EqConv {
    fn new(vs: &Scope, cin: usize, cout: usize, k: usize, gain: f64, act: Act) -> Result<EqConv> {
        let cfg = EqualizedConfig::default().with_gain(gain);
        Ok(EqConv {
            conv: EqualizedConv2d::new(vs, cin, cout, k, Conv2dParams::same(k), cfg)?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward_no_bias(x)?;
        bias_act(&y, self.conv.bias.as_ref(), 1, self.act, Some(1.0), None)
    }
}

fn conv(vs: &Scope, cin: usize, cout: usize, k: usize) -> Result<EqConv> {
    EqConv::new(vs, cin, cout, k, std::f64::consts::SQRT_2, LRELU)
}

fn dense(vs: &Scope, fin: usize, fout: usize, gain: f64, bias: bool) -> Result<EqualizedLinear> {
    let mut cfg = EqualizedConfig::default().with_gain(gain);
    if !bias {
        cfg = cfg.without_bias();
    }
    EqualizedLinear::new(vs, fin, fout, cfg)
}

fn check_latents(op: &'static str, z: &Tensor, latent: usize) -> Result<()> {
    if z.rank() != 2 || z.shape()[1] != latent || z.shape()[0] == 0 {
        return Err(Error::shape(
            op,
            format!("latents must be [N ≥ 1, {latent}], got {:?}", z.shape()),
        ));
    }
    Ok(())
}

/// One generator block above 4×4 (`b{r}`): up-sample, conv0, conv1, and its toRGB.
#[derive(Clone, Debug)]
pub struct GBlock {
    pub conv0: EqConv,
    pub conv1: EqConv,
}

/// `G_paper`.
#[derive(Clone, Debug)]
pub struct ProGanGenerator {
    pub config: ProGanConfig,
    pub store: ParamStore,
    pub dense: EqualizedLinear,
    pub dense_bias: Tensor,
    pub conv4: EqConv,
    /// Blocks of levels 1 ..= top.
    pub blocks: Vec<GBlock>,
    /// toRGB of levels 0 ..= top.
    pub torgb: Vec<EqConv>,
}

impl ProGanGenerator {
    pub fn new(store: &ParamStore, config: &ProGanConfig) -> Result<ProGanGenerator> {
        config.validate()?;
        let root = store.root();
        let nf1 = config.nf(1);
        let b4 = root.sub("b4");
        let dense_vs = b4.sub("dense");
        // NVlabs overrides this gain "to match the original Theano implementation"
        let d = dense(
            &dense_vs,
            config.latent_size,
            nf1 * 16,
            std::f64::consts::SQRT_2 / 4.0,
            false,
        )?;
        let dense_bias = dense_vs.param("bias", &[nf1], Init::Constant(0.0))?;
        let conv4 = conv(&b4.sub("conv"), nf1, nf1, 3)?;
        let top = config.top_level();
        let mut blocks = Vec::new();
        let mut torgb = vec![EqConv::new(
            &b4.sub("torgb"),
            nf1,
            config.channels,
            1,
            1.0,
            Act::Linear,
        )?];
        for level in 1..=top {
            let res = 4usize << level;
            let vs = root.sub(format!("b{res}"));
            let cin = config.nf(level);
            let cout = config.nf(level + 1);
            blocks.push(GBlock {
                conv0: conv(&vs.sub("conv0"), cin, cout, 3)?,
                conv1: conv(&vs.sub("conv1"), cout, cout, 3)?,
            });
            torgb.push(EqConv::new(
                &vs.sub("torgb"),
                cout,
                config.channels,
                1,
                1.0,
                Act::Linear,
            )?);
        }
        Ok(ProGanGenerator {
            config: config.clone(),
            store: store.clone(),
            dense: d,
            dense_bias,
            conv4,
            blocks,
            torgb,
        })
    }

    /// z [N, latent] → images [N, C, r, r] at `growth`.
    pub fn forward(&self, z: &Tensor, growth: Growth) -> Result<Tensor> {
        check_latents("ProGanGenerator", z, self.config.latent_size)?;
        growth.validate(self.config.top_level())?;
        let n = z.shape()[0];
        let nf1 = self.config.nf(1);
        let x = self.dense.forward_no_bias(&pixel_norm(z)?)?;
        let x = x.reshape(&[n, nf1, 4, 4])?;
        let x = pixel_norm(&bias_act(
            &x,
            Some(&self.dense_bias),
            1,
            LRELU,
            Some(1.0),
            None,
        )?)?;
        let mut x = pixel_norm(&self.conv4.forward(&x)?)?;
        let mut prev = None;
        for b in &self.blocks[..growth.level] {
            let y = upsample2x(&x)?;
            let y = pixel_norm(&b.conv0.forward(&y)?)?;
            let y = pixel_norm(&b.conv1.forward(&y)?)?;
            prev = Some(std::mem::replace(&mut x, y));
        }
        let rgb = self.torgb[growth.level].forward(&x)?;
        match prev {
            Some(p) if growth.is_fading() => {
                let old = self.torgb[growth.level - 1].forward(&p)?;
                fade_rgb(&rgb, &old, growth.alpha)
            }
            _ => Ok(rgb),
        }
    }
}

impl GrowingGenerator for ProGanGenerator {
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn z_dim(&self) -> usize {
        self.config.latent_size
    }
    fn top_level(&self) -> usize {
        self.config.top_level()
    }
    fn forward_train(
        &self,
        z: &Tensor,
        growth: Growth,
        _: bool,
        _: &mut dyn Rng,
    ) -> Result<Tensor> {
        self.forward(z, growth)
    }
    fn sample(&self, z: &Tensor, growth: Growth, trunc: Truncation) -> Result<Tensor> {
        if !trunc.is_none() {
            return Err(Error::invalid(
                "ProGanGenerator",
                format!(
                    "the Progressive GAN has no truncation trick; ψ must be 1, not {}",
                    trunc.psi
                ),
            ));
        }
        self.forward(z, growth)
    }
}

/// One discriminator block above 4×4: conv0, conv1, 2×2 average pooling.
#[derive(Clone, Debug)]
pub struct DBlock {
    pub conv0: EqConv,
    pub conv1: EqConv,
}

/// `D_paper`.
#[derive(Clone, Debug)]
pub struct ProGanDiscriminator {
    pub config: ProGanConfig,
    pub store: ParamStore,
    /// fromRGB of levels 0 ..= top.
    pub fromrgb: Vec<EqConv>,
    /// Blocks of levels 1 ..= top.
    pub blocks: Vec<DBlock>,
    pub conv4: EqConv,
    pub dense0: EqualizedLinear,
    pub dense1: EqualizedLinear,
}

impl ProGanDiscriminator {
    pub fn new(store: &ParamStore, config: &ProGanConfig) -> Result<ProGanDiscriminator> {
        config.validate()?;
        let root = store.root();
        let top = config.top_level();
        let mut fromrgb = Vec::new();
        let mut blocks = Vec::new();
        for level in 0..=top {
            let res = 4usize << level;
            let vs = root.sub(format!("b{res}"));
            fromrgb.push(conv(
                &vs.sub("fromrgb"),
                config.channels,
                config.nf(level + 1),
                1,
            )?);
            if level > 0 {
                let c = config.nf(level + 1);
                blocks.push(DBlock {
                    conv0: conv(&vs.sub("conv0"), c, c, 3)?,
                    conv1: conv(&vs.sub("conv1"), c, config.nf(level), 3)?,
                });
            }
        }
        let b4 = root.sub("b4");
        let nf1 = config.nf(1);
        Ok(ProGanDiscriminator {
            conv4: conv(&b4.sub("conv"), nf1 + 1, nf1, 3)?,
            dense0: dense(
                &b4.sub("dense0"),
                nf1 * 16,
                config.nf(0),
                std::f64::consts::SQRT_2,
                true,
            )?,
            dense1: dense(&b4.sub("dense1"), config.nf(0), 1, 1.0, true)?,
            config: config.clone(),
            store: store.clone(),
            fromrgb,
            blocks,
        })
    }

    /// images [N, C, r, r] at `growth` → scores [N, 1]. N must be a multiple of the
    /// minibatch-stddev group, or smaller than it.
    pub fn forward(&self, img: &Tensor, growth: Growth) -> Result<Tensor> {
        let c = &self.config;
        growth.validate(c.top_level())?;
        let r = growth.resolution();
        if img.rank() != 4 || img.shape()[1..] != [c.channels, r, r] || img.shape()[0] == 0 {
            return Err(Error::shape(
                "ProGanDiscriminator",
                format!(
                    "images at level {} must be [N ≥ 1, {}, {r}, {r}], got {:?}",
                    growth.level,
                    c.channels,
                    img.shape()
                ),
            ));
        }
        let mut x = self.fromrgb[growth.level].forward(img)?;
        for level in (1..=growth.level).rev() {
            let b = &self.blocks[level - 1];
            x = downsample2x(&b.conv1.forward(&b.conv0.forward(&x)?)?)?;
            if level == growth.level && growth.is_fading() {
                let old = self.fromrgb[level - 1].forward(&downsample2x(img)?)?;
                x = fade(&x, &old, growth.alpha)?;
            }
        }
        let n = x.shape()[0];
        let x = minibatch_stddev(&x, c.mbstd_group, 1)?;
        let x = self.conv4.forward(&x)?;
        let x = self.dense0.forward_no_bias(&x.reshape(&[n, usize::MAX])?)?;
        let x = bias_act(&x, self.dense0.bias.as_ref(), 1, LRELU, Some(1.0), None)?;
        self.dense1.forward(&x)
    }
}

impl GrowingDiscriminator for ProGanDiscriminator {
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn top_level(&self) -> usize {
        self.config.top_level()
    }
    fn forward(&self, img: &Tensor, growth: Growth) -> Result<Tensor> {
        ProGanDiscriminator::forward(self, img, growth)
    }
}
