//! Layers as plain structs holding their parameter tensors (clones of the store's), each with
//! `forward(&self, x) -> Result<Tensor>`: PyTorch's `Linear`/`Conv2d`, the equalised-learning-rate
//! layers of ProGAN and StyleGAN, an embedding table, dropout and stochastic depth.

use rand::RngExt;

use super::init::{FanMode, Init};
use super::params::Scope;
use crate::ops::Conv2dParams;
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// PyTorch's default bias init for a layer with fan-in `fan_in`: U(−1/√fan_in, 1/√fan_in).
fn torch_default_bias(fan_in: usize) -> Init {
    let b = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -b, hi: b }
}

/// y = x·Wᵀ + b with W of shape [out, in] (`torch.nn.Linear`).
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// PyTorch's default initialisation (kaiming uniform a = √5, bias U(±1/√in)).
    pub fn new(vs: &Scope, in_features: usize, out_features: usize, bias: bool) -> Result<Linear> {
        Linear::with_init(
            vs,
            in_features,
            out_features,
            Init::torch_default_weight(),
            bias.then(|| torch_default_bias(in_features)),
        )
    }

    /// Explicit initialisers (e.g. Swin's trunc_normal(0.02) weight and zero bias).
    pub fn with_init(
        vs: &Scope,
        in_features: usize,
        out_features: usize,
        weight: Init,
        bias: Option<Init>,
    ) -> Result<Linear> {
        let w = vs.param("weight", &[out_features, in_features], weight)?;
        let b = match bias {
            Some(init) => Some(vs.param("bias", &[out_features], init)?),
            None => None,
        };
        Ok(Linear { weight: w, bias: b })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// Bias of shape [C] broadcast over NCHW.
fn add_channel_bias(y: &Tensor, b: &Tensor) -> Result<Tensor> {
    y.add(&b.reshape(&[1, b.elem_count(), 1, 1])?)
}

/// 2-D convolution with optional bias (`torch.nn.Conv2d`), weight [out, in/groups, k, k].
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: Conv2dParams,
}

impl Conv2d {
    /// PyTorch's default initialisation.
    pub fn new(
        vs: &Scope,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        params: Conv2dParams,
        bias: bool,
    ) -> Result<Conv2d> {
        let fan_in = in_channels / params.groups.max(1) * kernel * kernel;
        Conv2d::with_init(
            vs,
            in_channels,
            out_channels,
            kernel,
            params,
            Init::torch_default_weight(),
            bias.then(|| torch_default_bias(fan_in)),
        )
    }

    pub fn with_init(
        vs: &Scope,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        params: Conv2dParams,
        weight: Init,
        bias: Option<Init>,
    ) -> Result<Conv2d> {
        let shape = conv_weight_shape("Conv2d", in_channels, out_channels, kernel, params.groups)?;
        let w = vs.param("weight", &shape, weight)?;
        let b = match bias {
            Some(init) => Some(vs.param("bias", &[out_channels], init)?),
            None => None,
        };
        Ok(Conv2d {
            weight: w,
            bias: b,
            params,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv2d(&self.weight, self.params)?;
        match &self.bias {
            Some(b) => add_channel_bias(&y, b),
            None => Ok(y),
        }
    }
}

fn conv_weight_shape(
    op: &'static str,
    cin: usize,
    cout: usize,
    k: usize,
    groups: usize,
) -> Result<[usize; 4]> {
    if groups == 0 || !cin.is_multiple_of(groups) || !cout.is_multiple_of(groups) || k == 0 {
        return Err(Error::invalid(
            op,
            format!("{cin} → {cout} channels, kernel {k}, {groups} groups do not fit"),
        ));
    }
    Ok([cout, cin / groups, k, k])
}

/// Settings of the equalised-learning-rate layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EqualizedConfig {
    /// Run-time weight scale is `gain / √fan_in` (ProGAN uses √2; NVlabs' layers 1, with the
    /// activation gain applied by bias_act).
    pub gain: f64,
    /// Learning-rate multiplier (StyleGAN mapping network: 0.01). Parameters are stored divided by
    /// it and multiplied back at run time, which scales their effective learning rate by it.
    pub lr_multiplier: f64,
    pub bias: bool,
    /// Initial effective bias value (1 for StyleGAN's style affines).
    pub bias_init: f64,
}

impl Default for EqualizedConfig {
    fn default() -> Self {
        EqualizedConfig {
            gain: 1.0,
            lr_multiplier: 1.0,
            bias: true,
            bias_init: 0.0,
        }
    }
}

impl EqualizedConfig {
    pub fn with_lr_multiplier(mut self, m: f64) -> Self {
        self.lr_multiplier = m;
        self
    }
    pub fn with_gain(mut self, g: f64) -> Self {
        self.gain = g;
        self
    }
    pub fn with_bias_init(mut self, b: f64) -> Self {
        self.bias_init = b;
        self
    }
    pub fn without_bias(mut self) -> Self {
        self.bias = false;
        self
    }
}

fn check_lr_multiplier(op: &'static str, cfg: &EqualizedConfig) -> Result<()> {
    if !(cfg.lr_multiplier > 0.0 && cfg.lr_multiplier.is_finite()) {
        return Err(Error::invalid(
            op,
            format!("lr_multiplier must be positive, got {}", cfg.lr_multiplier),
        ));
    }
    Ok(())
}

/// NVlabs' `FullyConnectedLayer` without activation: weight stored N(0, 1)/lr_multiplier,
/// y = x·(W·gain·lr_multiplier/√in)ᵀ + b·lr_multiplier. Bias stored bias_init/lr_multiplier
/// (StyleGAN3's convention: the effective initial bias is bias_init).
#[derive(Clone, Debug)]
pub struct EqualizedLinear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub weight_gain: f64,
    pub bias_gain: f64,
}

impl EqualizedLinear {
    pub fn new(
        vs: &Scope,
        in_features: usize,
        out_features: usize,
        cfg: EqualizedConfig,
    ) -> Result<EqualizedLinear> {
        check_lr_multiplier("EqualizedLinear", &cfg)?;
        let lr = cfg.lr_multiplier;
        let w = vs.param(
            "weight",
            &[out_features, in_features],
            Init::normal(1.0 / lr),
        )?;
        let b = if cfg.bias {
            Some(vs.param("bias", &[out_features], Init::Constant(cfg.bias_init / lr))?)
        } else {
            None
        };
        Ok(EqualizedLinear {
            weight: w,
            bias: b,
            weight_gain: cfg.gain * lr / (in_features.max(1) as f64).sqrt(),
            bias_gain: lr,
        })
    }

    /// The weight as used: W · weight_gain.
    pub fn scaled_weight(&self) -> Result<Tensor> {
        self.weight.mul_scalar(self.weight_gain)
    }
    /// The bias as used: b · bias_gain (for a fused bias + activation op).
    pub fn scaled_bias(&self) -> Result<Option<Tensor>> {
        self.bias
            .as_ref()
            .map(|b| {
                if self.bias_gain == 1.0 {
                    Ok(b.clone())
                } else {
                    b.mul_scalar(self.bias_gain)
                }
            })
            .transpose()
    }
    /// x · (W·weight_gain)ᵀ, without bias.
    pub fn forward_no_bias(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.scaled_weight()?, None)
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.scaled_weight()?, self.scaled_bias()?.as_ref())
    }
}

/// NVlabs' `Conv2dLayer` / ProGAN's equalised conv without activation or resampling: weight
/// [out, in/groups, k, k] stored N(0, 1)/lr_multiplier, scaled at run time by
/// gain·lr_multiplier/√(in/groups·k²); bias × lr_multiplier.
#[derive(Clone, Debug)]
pub struct EqualizedConv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub weight_gain: f64,
    pub bias_gain: f64,
    pub params: Conv2dParams,
}

impl EqualizedConv2d {
    pub fn new(
        vs: &Scope,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        params: Conv2dParams,
        cfg: EqualizedConfig,
    ) -> Result<EqualizedConv2d> {
        check_lr_multiplier("EqualizedConv2d", &cfg)?;
        let shape = conv_weight_shape(
            "EqualizedConv2d",
            in_channels,
            out_channels,
            kernel,
            params.groups,
        )?;
        let lr = cfg.lr_multiplier;
        let w = vs.param("weight", &shape, Init::normal(1.0 / lr))?;
        let b = if cfg.bias {
            Some(vs.param("bias", &[out_channels], Init::Constant(cfg.bias_init / lr))?)
        } else {
            None
        };
        let fan_in = shape[1] * shape[2] * shape[3];
        Ok(EqualizedConv2d {
            weight: w,
            bias: b,
            weight_gain: cfg.gain * lr / (fan_in as f64).sqrt(),
            bias_gain: lr,
            params,
        })
    }

    pub fn scaled_weight(&self) -> Result<Tensor> {
        self.weight.mul_scalar(self.weight_gain)
    }
    pub fn scaled_bias(&self) -> Result<Option<Tensor>> {
        self.bias
            .as_ref()
            .map(|b| {
                if self.bias_gain == 1.0 {
                    Ok(b.clone())
                } else {
                    b.mul_scalar(self.bias_gain)
                }
            })
            .transpose()
    }
    pub fn forward_no_bias(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.scaled_weight()?, self.params)
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward_no_bias(x)?;
        match self.scaled_bias()? {
            Some(b) => add_channel_bias(&y, &b),
            None => Ok(y),
        }
    }
}

/// A lookup table [num, dim] (`torch.nn.Embedding`, N(0, 1) init).
#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(vs: &Scope, num: usize, dim: usize) -> Result<Embedding> {
        Ok(Embedding {
            weight: vs.param("weight", &[num, dim], Init::normal(1.0))?,
        })
    }
    /// Rows `ids` of the table, shape [ids.len(), dim].
    pub fn forward(&self, ids: &[usize]) -> Result<Tensor> {
        let num = self.weight.shape()[0];
        if let Some(&bad) = ids.iter().find(|&&i| i >= num) {
            return Err(Error::invalid(
                "Embedding",
                format!("index {bad} outside a table of {num} rows"),
            ));
        }
        self.weight.index_select(0, ids)
    }
}

/// A Bernoulli(keep) mask of `shape` with kept entries 1/keep (0 everywhere when keep is 0).
fn keep_mask(shape: &[usize], keep: f64, dtype: DType, rng: &mut impl rand::Rng) -> Tensor {
    let scale = if keep > 0.0 { 1.0 / keep } else { 0.0 };
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_f64s(&v, shape, dtype).expect("length matches by construction")
}

fn check_prob(op: &'static str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(
            op,
            format!("drop probability {p} is not in [0, 1]"),
        ));
    }
    Ok(())
}

/// Element-wise dropout: in training, zero each element with probability p and scale the rest
/// by 1/(1 − p); identity in evaluation.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    pub p: f64,
}

impl Dropout {
    pub fn new(p: f64) -> Result<Dropout> {
        check_prob("Dropout", p)?;
        Ok(Dropout { p })
    }
    /// A scaled keep mask for `x` (the randomness, as a tensor that tests can inject).
    pub fn mask(&self, x: &Tensor, rng: &mut impl rand::Rng) -> Tensor {
        keep_mask(x.shape(), 1.0 - self.p, x.dtype(), rng)
    }
    pub fn forward(&self, x: &Tensor, train: bool, rng: &mut impl rand::Rng) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        // drawn on the host (the same draws on every device), applied where x lives
        x.mul(&self.mask(x, rng).to_device(x.device())?)
    }
    /// x · mask, where `mask` came from `mask` (or a test).
    pub fn forward_with_mask(&self, x: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        x.mul(mask)
    }
}

/// Stochastic depth (timm's `drop_path`): in training, drop whole samples of a residual branch
/// with probability p and scale kept samples by 1/(1 − p); identity in evaluation.
#[derive(Clone, Copy, Debug)]
pub struct DropPath {
    pub p: f64,
}

impl DropPath {
    pub fn new(p: f64) -> Result<DropPath> {
        check_prob("DropPath", p)?;
        Ok(DropPath { p })
    }
    /// A per-sample scaled keep mask of shape [N, 1, 1, ...] for `x`.
    pub fn mask(&self, x: &Tensor, rng: &mut impl rand::Rng) -> Result<Tensor> {
        if x.rank() == 0 {
            return Err(Error::shape("DropPath", "input needs a batch dimension"));
        }
        let mut shape = vec![1; x.rank()];
        shape[0] = x.shape()[0];
        Ok(keep_mask(&shape, 1.0 - self.p, x.dtype(), rng))
    }
    pub fn forward(&self, x: &Tensor, train: bool, rng: &mut impl rand::Rng) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        x.mul(&self.mask(x, rng)?.to_device(x.device())?)
    }
    pub fn forward_with_mask(&self, x: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        x.mul(mask)
    }
}

/// Kaiming-normal `Init` for a layer followed by leaky ReLU with slope `a` (fan-in mode), the
/// usual choice for nnU-Net convolutions (a = 0.01).
pub fn kaiming_normal(a: f64) -> Init {
    Init::KaimingNormal {
        a,
        mode: FanMode::FanIn,
    }
}
