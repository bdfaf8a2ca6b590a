//! The StyleGAN building blocks shared by both generators and the discriminator, as NVlabs'
//! `networks_stylegan2.py`: `FullyConnectedLayer` (equalised, bias + activation), `Conv2dLayer`
//! (equalised conv with FIR resampling, bias + activation + clamp), the modulated
//! `SynthesisLayer` with its noise input and `ToRGBLayer`.

use crate::nn::{EqualizedConfig, EqualizedLinear, Init, Scope};
use crate::ops::modconv::{ModConvParams, conv2d_resample, modulated_conv2d};
use crate::ops::stylegan::{Act, bias_act};
use crate::ops::upfirdn::setup_filter;
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// The leaky ReLU of all StyleGAN layers (slope 0.2, gain √2).
pub const LRELU: Act = Act::Lrelu(0.2);

/// The \[1,3,3,1\] resampling filter (outer product, normalised to sum 1), as `setup_filter`.
pub fn fir_1331(dtype: DType) -> Result<Tensor> {
    setup_filter(&[1.0, 3.0, 3.0, 1.0], &[4], true, false, 1.0, None, dtype)
}

/// NVlabs' `FullyConnectedLayer`: equalised weight and bias (lr multiplier), then `bias_act`.
#[derive(Clone, Debug)]
pub struct FullyConnected {
    pub lin: EqualizedLinear,
    pub act: Act,
}

impl FullyConnected {
    pub fn new(
        vs: &Scope,
        in_features: usize,
        out_features: usize,
        act: Act,
        lr_multiplier: f64,
        bias_init: f64,
    ) -> Result<FullyConnected> {
        let cfg = EqualizedConfig::default()
            .with_lr_multiplier(lr_multiplier)
            .with_bias_init(bias_init);
        Ok(FullyConnected {
            lin: EqualizedLinear::new(vs, in_features, out_features, cfg)?,
            act,
        })
    }

    /// x [N, in] → [N, out].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.act == Act::Linear {
            return self.lin.forward(x);
        }
        let y = self.lin.forward_no_bias(x)?;
        bias_act(
            &y,
            self.lin.scaled_bias()?.as_ref(),
            1,
            self.act,
            None,
            None,
        )
    }
}

/// NVlabs' `Conv2dLayer`: weight N(0,1) scaled by 1/√(in·k²) at run time, `conv2d_resample` with
/// the \[1,3,3,1\] filter (padding k/2), bias + activation with `gain`·act gain and clamp
/// `conv_clamp`·`gain`.
#[derive(Clone, Debug)]
pub struct ConvLayer {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    weight_gain: f64,
    act: Act,
    down: usize,
    conv_clamp: Option<f64>,
    filter: Tensor,
}

impl ConvLayer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vs: &Scope,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        bias: bool,
        act: Act,
        down: usize,
        conv_clamp: Option<f64>,
    ) -> Result<ConvLayer> {
        let weight = vs.param(
            "weight",
            &[out_channels, in_channels, kernel, kernel],
            Init::normal(1.0),
        )?;
        let bias = if bias {
            Some(vs.param("bias", &[out_channels], Init::Constant(0.0))?)
        } else {
            None
        };
        Ok(ConvLayer {
            weight,
            bias,
            weight_gain: 1.0 / ((in_channels * kernel * kernel) as f64).sqrt(),
            act,
            down,
            conv_clamp,
            filter: fir_1331(vs.dtype())?,
        })
    }

    pub fn forward(&self, x: &Tensor, gain: f64) -> Result<Tensor> {
        let w = self.weight.mul_scalar(self.weight_gain)?;
        let k = self.weight.shape()[2];
        let y = conv2d_resample(x, &w, Some(&self.filter), 1, self.down, k / 2, 1, true)?;
        bias_act(
            &y,
            self.bias.as_ref(),
            1,
            self.act,
            Some(self.act.default_gain() * gain),
            self.conv_clamp.map(|c| c * gain),
        )
    }
}

/// Where the synthesis layers' noise comes from (NVlabs `noise_mode`, plus injected maps).
pub enum Noise<'a> {
    /// Each layer's `noise_const` buffer · `noise_strength` (deterministic; NVlabs 'const').
    Const,
    /// No noise ('none').
    Off,
    /// Fresh N(0,1) maps [N, 1, H, W] from this generator, × `noise_strength` ('random').
    Random(&'a mut dyn rand::Rng),
    /// One map per noise layer in synthesis order, each broadcastable to [N, 1, H, W],
    /// × `noise_strength` (for tests and reproducible sampling).
    Given(&'a [Tensor]),
}

/// NVlabs' StyleGAN2 `SynthesisLayer`: style affine (bias init 1), modulated + demodulated 3×3
/// conv (up 2 = transposed conv then \[1,3,3,1\], `flip_weight` only without up-sampling), noise
/// added before bias + leaky ReLU (gain √2·`gain`, clamp `conv_clamp`·`gain`).
#[derive(Clone, Debug)]
pub struct SynthesisLayer {
    pub affine: FullyConnected,
    pub weight: Tensor,
    pub bias: Tensor,
    pub noise_const: Tensor,
    pub noise_strength: Tensor,
    /// Position of this layer among the noise layers (for [`Noise::Given`]).
    pub noise_index: usize,
    resolution: usize,
    up: usize,
    conv_clamp: Option<f64>,
    filter: Tensor,
}

impl SynthesisLayer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vs: &Scope,
        in_channels: usize,
        out_channels: usize,
        w_dim: usize,
        resolution: usize,
        up: usize,
        conv_clamp: Option<f64>,
        noise_index: usize,
    ) -> Result<SynthesisLayer> {
        Ok(SynthesisLayer {
            affine: FullyConnected::new(
                &vs.sub("affine"),
                w_dim,
                in_channels,
                Act::Linear,
                1.0,
                1.0,
            )?,
            weight: vs.param(
                "weight",
                &[out_channels, in_channels, 3, 3],
                Init::normal(1.0),
            )?,
            noise_const: vs.buffer_init(
                "noise_const",
                &[resolution, resolution],
                Init::normal(1.0),
            )?,
            noise_strength: vs.param("noise_strength", &[], Init::Constant(0.0))?,
            bias: vs.param("bias", &[out_channels], Init::Constant(0.0))?,
            noise_index,
            resolution,
            up,
            conv_clamp,
            filter: fir_1331(vs.dtype())?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        noise: &mut Noise,
        fused: bool,
        gain: f64,
    ) -> Result<Tensor> {
        let n = x.shape()[0];
        let r = self.resolution;
        let styles = self.affine.forward(w)?;
        let map = match noise {
            Noise::Off => None,
            Noise::Const => Some(self.noise_const.reshape(&[1, 1, r, r])?),
            Noise::Random(rng) => {
                Some(Tensor::randn(&[n, 1, r, r], x.dtype(), rng).to_device(x.device())?)
            }
            Noise::Given(maps) => {
                let m = maps.get(self.noise_index).ok_or_else(|| {
                    Error::invalid(
                        "SynthesisLayer",
                        format!(
                            "{} noise maps given, but layer {} needs one",
                            maps.len(),
                            self.noise_index
                        ),
                    )
                })?;
                Some(m.reshape(&[m.elem_count() / (r * r), 1, r, r])?)
            }
        };
        let noise_t = match map {
            Some(m) => Some(m.mul(&self.noise_strength.reshape(&[1, 1, 1, 1])?)?),
            None => None,
        };
        let p = ModConvParams {
            up: self.up,
            padding: 1,
            flip_weight: self.up == 1,
            ..ModConvParams::default()
        }
        .fused(fused);
        let y = modulated_conv2d(
            x,
            &self.weight,
            &styles,
            noise_t.as_ref(),
            Some(&self.filter),
            p,
        )?;
        bias_act(
            &y,
            Some(&self.bias),
            1,
            LRELU,
            Some(LRELU.default_gain() * gain),
            self.conv_clamp.map(|c| c * gain),
        )
    }
}

/// NVlabs' `ToRGBLayer`: modulated 1×1 conv without demodulation (styles × 1/√in), bias, clamp.
#[derive(Clone, Debug)]
pub struct ToRgb {
    pub affine: FullyConnected,
    pub weight: Tensor,
    pub bias: Tensor,
    weight_gain: f64,
    conv_clamp: Option<f64>,
}

impl ToRgb {
    pub fn new(
        vs: &Scope,
        in_channels: usize,
        out_channels: usize,
        w_dim: usize,
        conv_clamp: Option<f64>,
    ) -> Result<ToRgb> {
        Ok(ToRgb {
            affine: FullyConnected::new(
                &vs.sub("affine"),
                w_dim,
                in_channels,
                Act::Linear,
                1.0,
                1.0,
            )?,
            weight: vs.param(
                "weight",
                &[out_channels, in_channels, 1, 1],
                Init::normal(1.0),
            )?,
            bias: vs.param("bias", &[out_channels], Init::Constant(0.0))?,
            weight_gain: 1.0 / (in_channels as f64).sqrt(),
            conv_clamp,
        })
    }

    pub fn forward(&self, x: &Tensor, w: &Tensor, fused: bool) -> Result<Tensor> {
        let styles = self.affine.forward(w)?.mul_scalar(self.weight_gain)?;
        let p = ModConvParams::default().demodulate(false).fused(fused);
        let y = modulated_conv2d(x, &self.weight, &styles, None, None, p)?;
        bias_act(&y, Some(&self.bias), 1, Act::Linear, None, self.conv_clamp)
    }
}
