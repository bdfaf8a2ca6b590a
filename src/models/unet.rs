//! The U-Net segmenter, nnU-Net style as in the paper: per level two conv3×3 → instance norm →
//! leaky ReLU 0.01 blocks (strided conv downsampling), a decoder of 1×1 conv + bilinear
//! upsampling, concatenated skips, and deep supervision heads whose losses are weighted 1/2^i with the
//! lowest resolution's weight zero, normalised.

use crate::nn::{Conv2d, InstanceNorm, Scope};
use crate::ops::Conv2dParams;
use crate::ops::resize::resize_bilinear;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Sizes of a U-Net.
#[derive(Clone, Debug, PartialEq)]
pub struct UNetConfig {
    /// Input channels (4: T1, T1ce, T2, FLAIR).
    pub in_channels: usize,
    /// Output classes (4: background, core, oedema, enhancing).
    pub classes: usize,
    /// Filters at full resolution; doubled per level.
    pub base_width: usize,
    /// Resolution levels (the input size must be divisible by 2^(depth−1)).
    pub depth: usize,
    /// Cap on filters per level (nnU-Net: 512 in 2-D).
    pub max_width: usize,
    /// Train with losses at every decoder resolution.
    pub deep_supervision: bool,
}

impl UNetConfig {
    /// Small enough to train on two CPU cores at 64×64.
    pub fn quick() -> Self {
        UNetConfig {
            in_channels: 4,
            classes: 4,
            base_width: 16,
            depth: 4,
            max_width: 128,
            deep_supervision: true,
        }
    }
    /// The paper's: 64 filters doubling per level, 6 levels, at 256×256.
    pub fn paper() -> Self {
        UNetConfig {
            in_channels: 4,
            classes: 4,
            base_width: 64,
            depth: 6,
            max_width: 512,
            deep_supervision: true,
        }
    }
    pub fn width(&self, level: usize) -> usize {
        (self.base_width << level).min(self.max_width)
    }
    /// Loss weights of the supervised outputs, full resolution first: 1/2^i, the lowest
    /// resolution zero, normalised to sum 1. One output (weight 1) without deep supervision.
    pub fn supervision_weights(&self) -> Vec<f64> {
        let n = if self.deep_supervision {
            self.depth - 1
        } else {
            1
        };
        let mut w: Vec<f64> = (0..n).map(|i| 0.5f64.powi(i as i32)).collect();
        if n > 1 {
            w[n - 1] = 0.0;
        }
        let s: f64 = w.iter().sum();
        w.iter().map(|v| v / s).collect()
    }
}

/// conv3×3 → instance norm (affine) → leaky ReLU 0.01.
struct ConvNormAct {
    conv: Conv2d,
    norm: InstanceNorm,
}

impl ConvNormAct {
    fn new(vs: &Scope, cin: usize, cout: usize, stride: usize) -> Result<Self> {
        let p = Conv2dParams::same(3).with_stride(stride);
        // He initialisation for leaky ReLU 0.01, as nnU-Net's InitWeights_He
        let conv = Conv2d::with_init(
            &vs.sub("conv"),
            cin,
            cout,
            3,
            p,
            crate::nn::layers::kaiming_normal(0.01),
            None,
        )?;
        Ok(ConvNormAct {
            conv,
            norm: InstanceNorm::new(&vs.sub("norm"), cout)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        self.norm.forward(&y)?.leaky_relu(0.01)
    }
}

/// Two ConvNormAct blocks; the first may downsample by stride 2.
struct Stage {
    a: ConvNormAct,
    b: ConvNormAct,
}

impl Stage {
    fn new(vs: &Scope, cin: usize, cout: usize, stride: usize) -> Result<Self> {
        Ok(Stage {
            a: ConvNormAct::new(&vs.sub("0"), cin, cout, stride)?,
            b: ConvNormAct::new(&vs.sub("1"), cout, cout, 1)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.b.forward(&self.a.forward(x)?)
    }
}

/// Decoder level: bilinear ×2, 1×1 conv to the skip's width, concatenate the skip, a stage.
struct UpStage {
    reduce: Conv2d,
    stage: Stage,
    head: Conv2d,
}

/// An nnU-Net-style 2-D U-Net.
pub struct UNet {
    pub config: UNetConfig,
    down: Vec<Stage>,
    up: Vec<UpStage>,
}

impl UNet {
    pub fn new(vs: &Scope, config: UNetConfig) -> Result<Self> {
        if config.depth < 2
            || config.base_width == 0
            || config.in_channels == 0
            || config.classes < 2
        {
            return Err(Error::invalid(
                "unet",
                format!("depth ≥ 2, widths ≥ 1 and ≥ 2 classes are needed: {config:?}"),
            ));
        }
        let mut down = Vec::new();
        for l in 0..config.depth {
            let cin = if l == 0 {
                config.in_channels
            } else {
                config.width(l - 1)
            };
            down.push(Stage::new(
                &vs.sub("encoder").sub(l.to_string()),
                cin,
                config.width(l),
                if l == 0 { 1 } else { 2 },
            )?);
        }
        let mut up = Vec::new();
        for l in 0..config.depth - 1 {
            let s = vs.sub("decoder").sub(l.to_string());
            let w = config.width(l);
            up.push(UpStage {
                reduce: Conv2d::new(
                    &s.sub("reduce"),
                    config.width(l + 1),
                    w,
                    1,
                    Conv2dParams::default(),
                    false,
                )?,
                stage: Stage::new(&s.sub("stage"), 2 * w, w, 1)?,
                head: Conv2d::new(
                    &s.sub("head"),
                    w,
                    config.classes,
                    1,
                    Conv2dParams::default(),
                    true,
                )?,
            });
        }
        Ok(UNet { config, down, up })
    }

    /// The encoder's deepest features for x [N, in, H, W]: [N, width(depth − 1), H / 2^(depth − 1),
    /// W / 2^(depth − 1)] (the bottleneck; for feature-space measures of image sets).
    pub fn bottleneck(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 || s[1] != self.config.in_channels {
            return Err(Error::shape(
                "unet",
                format!("input {s:?} must be [N, {}, H, W]", self.config.in_channels),
            ));
        }
        let mut h = x.clone();
        for st in &self.down {
            h = st.forward(&h)?;
        }
        Ok(h)
    }

    /// Logits for x [N, in, H, W]. In training with deep supervision, one output per decoder
    /// level (full resolution first, halving after); otherwise only the full-resolution logits.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let f = 1usize << (self.config.depth - 1);
        let s = x.shape();
        if s.len() != 4
            || s[1] != self.config.in_channels
            || !s[2].is_multiple_of(f)
            || !s[3].is_multiple_of(f)
        {
            return Err(Error::shape(
                "unet",
                format!(
                    "input {s:?} must be [N, {}, H, W] with H and W divisible by {f}",
                    self.config.in_channels
                ),
            ));
        }
        let mut skips = Vec::with_capacity(self.down.len());
        let mut h = x.clone();
        for st in &self.down {
            h = st.forward(&h)?;
            skips.push(h.clone());
        }
        let n_out = if train && self.config.deep_supervision {
            self.up.len()
        } else {
            1
        };
        let mut outs = Vec::new();
        for l in (0..self.up.len()).rev() {
            let u = &self.up[l];
            let skip = &skips[l];
            let size = (skip.shape()[2], skip.shape()[3]);
            // 1×1 conv and bilinear resize commute; reducing channels first is cheaper
            let hu = resize_bilinear(&u.reduce.forward(&h)?, size)?;
            h = u.stage.forward(&Tensor::cat(&[skip.clone(), hu], 1)?)?;
            if l < n_out {
                outs.push(u.head.forward(&h)?);
            }
        }
        outs.reverse();
        Ok(outs)
    }
}
