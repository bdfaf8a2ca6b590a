//! The original StyleGAN's discriminator as NVlabs' TF1 `training/networks_stylegan.py` builds
//! it (`D_basic`), growing progressively as [`super::stylegan1`]'s generator.
//!
//! Per resolution r = R … 8 (in the reference's conventions: equalised lr with gain √2, leaky
//! ReLU 0.2 after bias): `FromRGB_lod{l}` (1×1 conv, bias, act) feeds block `{r}x{r}`: `Conv0`
//! (3×3), then the \[1,2,1\] blur and `Conv1_down` (3×3 conv + 2×2 average, or from r ≥
//! `fused_from` = 128 one stride-2 4×4 conv: the 3×3 kernel padded, summed over its four shifts,
//! × ¼ — the same numbers). The epilogue `4x4`: minibatch stddev (group `mbstd_group`, one
//! feature), `Conv` (3×3), `Dense0` (act) and `Dense1` (gain 1, one logit).
//!
//! Growing: at level L with fade weight α the input is an image at 4·2^L and the features entering
//! block L−1 are lerp(FromRGB_{L−1}(avg2×2(img)), block_L(FromRGB_L(img)), α) (the reference's
//! `lerp(x, fromrgb(downscale2d(img)), lod − ⌊lod⌋)`). Names are the reference's scopes with dots
//! (`FromRGB_lod0.weight`, `64x64.Conv1_down.bias`, `4x4.Dense1.weight`).

use std::f64::consts::SQRT_2;

use super::GanConfig;
use super::growing::{GrowingDiscriminator, Growth, downsample2x, fade, top_level_for};
use super::stylegan1::{FUSED_SCALE_FROM, LRELU_SLOPE, blur, blur_filter, fused_kernel};
use crate::nn::{EqualizedConfig, EqualizedConv2d, EqualizedLinear, ParamStore, Scope};
use crate::ops::Conv2dParams;
use crate::ops::stylegan::minibatch_stddev;
use crate::tensor::Tensor;
use crate::{Error, Result};

fn lrelu(x: &Tensor) -> Result<Tensor> {
    x.leaky_relu(LRELU_SLOPE)
}

fn conv(vs: &Scope, cin: usize, cout: usize, k: usize) -> Result<EqualizedConv2d> {
    EqualizedConv2d::new(
        vs,
        cin,
        cout,
        k,
        Conv2dParams::same(k),
        EqualizedConfig::default().with_gain(SQRT_2),
    )
}

/// Block `{r}x{r}` (r ≥ 8) with the `FromRGB` of its resolution.
#[derive(Clone, Debug)]
pub struct Sg1DiscriminatorBlock {
    pub resolution: usize,
    pub fromrgb: EqualizedConv2d,
    pub conv0: EqualizedConv2d,
    pub conv1_down: EqualizedConv2d,
    fused: bool,
}

impl Sg1DiscriminatorBlock {
    fn forward(&self, x: &Tensor, blur_f: &Tensor) -> Result<Tensor> {
        let x = lrelu(&self.conv0.forward(x)?)?;
        let x = blur(&x, blur_f)?;
        let y = if self.fused {
            let k = fused_kernel(&self.conv1_down.scaled_weight()?)?.mul_scalar(0.25)?;
            x.conv2d(&k, Conv2dParams::same(4).with_stride(2).with_padding(1))?
        } else {
            downsample2x(&self.conv1_down.forward_no_bias(&x)?)?
        };
        let b = self
            .conv1_down
            .scaled_bias()?
            .ok_or_else(|| Error::invalid("StyleGAN1 discriminator", "Conv1_down lacks a bias"))?;
        lrelu(&y.add(&b.reshape(&[1, b.elem_count(), 1, 1])?)?)
    }
}

/// NVlabs' `D_basic`.
#[derive(Clone, Debug)]
pub struct StyleGan1Discriminator {
    pub config: GanConfig,
    pub store: ParamStore,
    /// Blocks for levels 1 ..= top (index level − 1), i.e. resolutions 8 … R.
    pub blocks: Vec<Sg1DiscriminatorBlock>,
    /// `FromRGB_lod{top}`: the 4×4 input.
    pub fromrgb4: EqualizedConv2d,
    pub conv4: EqualizedConv2d,
    pub dense0: EqualizedLinear,
    pub dense1: EqualizedLinear,
    blur_f: Tensor,
}

impl StyleGan1Discriminator {
    /// A new discriminator with parameters in `store`. Uses `resolution`, `channels`,
    /// `channel_base`, `channel_max` and `mbstd_group` of `config` (features at resolution r:
    /// min(channel_base / r, channel_max), Dense0 min(channel_base / 2, channel_max)).
    pub fn new(store: &ParamStore, config: &GanConfig) -> Result<StyleGan1Discriminator> {
        StyleGan1Discriminator::with_fused_from(store, config, FUSED_SCALE_FROM)
    }

    /// As [`StyleGan1Discriminator::new`], fused down-sampling from block resolution
    /// `fused_from` on.
    pub fn with_fused_from(
        store: &ParamStore,
        config: &GanConfig,
        fused_from: usize,
    ) -> Result<StyleGan1Discriminator> {
        super::stylegan1::check_config(config)?;
        let root = store.root();
        let top = top_level_for(config.resolution)?;
        let fromrgb = |level: usize, c: usize| -> Result<EqualizedConv2d> {
            conv(
                &root.sub(format!("FromRGB_lod{}", top - level)),
                config.channels,
                c,
                1,
            )
        };
        let mut blocks = Vec::new();
        for level in 1..=top {
            let r = 4usize << level;
            let vs = root.sub(format!("{r}x{r}"));
            let (c, cout) = (config.channels_at(r), config.channels_at(r / 2));
            blocks.push(Sg1DiscriminatorBlock {
                resolution: r,
                fromrgb: fromrgb(level, c)?,
                conv0: conv(&vs.sub("Conv0"), c, c, 3)?,
                conv1_down: conv(&vs.sub("Conv1_down"), c, cout, 3)?,
                fused: r >= fused_from,
            });
        }
        let c4 = config.channels_at(4);
        let c2 = config.channels_at(2);
        let b4 = root.sub("4x4");
        let dense = |name: &str, fin: usize, fout: usize, gain: f64| {
            EqualizedLinear::new(
                &b4.sub(name),
                fin,
                fout,
                EqualizedConfig::default().with_gain(gain),
            )
        };
        Ok(StyleGan1Discriminator {
            config: config.clone(),
            store: store.clone(),
            blocks,
            fromrgb4: fromrgb(0, c4)?,
            conv4: conv(&b4.sub("Conv"), c4 + 1, c4, 3)?,
            dense0: dense("Dense0", c4 * 16, c2, SQRT_2)?,
            dense1: dense("Dense1", c2, 1, 1.0)?,
            blur_f: blur_filter(store.dtype())?,
        })
    }

    pub fn top_level(&self) -> usize {
        self.blocks.len()
    }

    fn fromrgb(&self, level: usize, img: &Tensor) -> Result<Tensor> {
        let f = if level == 0 {
            &self.fromrgb4
        } else {
            &self.blocks[level - 1].fromrgb
        };
        lrelu(&f.forward(img)?)
    }

    /// images [N, channels, r, r] at `growth` (r its resolution), the newest block faded in by
    /// its α → logits [N, 1]. N must be a multiple of the minibatch-stddev group (or smaller).
    pub fn forward(&self, img: &Tensor, growth: Growth) -> Result<Tensor> {
        const OP: &str = "StyleGAN1 discriminator";
        growth.validate(self.top_level())?;
        let level = growth.level;
        let c = &self.config;
        let r = 4usize << level;
        let want = [c.channels, r, r];
        if img.rank() != 4 || img.shape()[1..] != want || img.shape()[0] == 0 {
            return Err(Error::shape(
                OP,
                format!(
                    "images at level {level} must be [N ≥ 1, {}, {r}, {r}], got {:?}",
                    c.channels,
                    img.shape()
                ),
            ));
        }
        let mut x = self.fromrgb(level, img)?;
        for l in (1..=level).rev() {
            x = self.blocks[l - 1].forward(&x, &self.blur_f)?;
            if l == level && growth.is_fading() {
                let y = self.fromrgb(l - 1, &downsample2x(img)?)?;
                x = fade(&x, &y, growth.alpha)?;
            }
        }
        let n = x.shape()[0];
        let x = minibatch_stddev(&x, c.mbstd_group, 1)?;
        let x = lrelu(&self.conv4.forward(&x)?)?;
        let x = lrelu(&self.dense0.forward(&x.reshape(&[n, usize::MAX])?)?)?;
        self.dense1.forward(&x)
    }
}

impl GrowingDiscriminator for StyleGan1Discriminator {
    fn store(&self) -> &ParamStore {
        &self.store
    }
    fn top_level(&self) -> usize {
        StyleGan1Discriminator::top_level(self)
    }
    fn forward(&self, img: &Tensor, growth: Growth) -> Result<Tensor> {
        StyleGan1Discriminator::forward(self, img, growth)
    }
}
