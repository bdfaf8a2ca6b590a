//! StyleGAN-specific layers, each as its reference (NVlabs) implementation: bias + activation
//! (`bias_act`), minibatch standard deviation, noise injection, pixel norm, StyleGAN3's
//! filtered leaky ReLU (the reference composite here; the fused CPU kernel it dispatches to is
//! [`crate::ops::filtered_lrelu`]); the diffusion model's sinusoidal timestep embedding is
//! re-exported from [`crate::ops::embedding`].
//!
//! These are compositions of differentiable ops (elementwise, reductions, views, upfirdn2d), so
//! their gradients of any order come from those ops; e.g. leaky ReLU's derivative is a constant
//! mask that its second derivative re-applies.

use crate::ops::elementwise::Unary;
use crate::ops::upfirdn::upfirdn2d;
use crate::tensor::{Device, Kernel, StorageElem, Tensor};
use crate::{Error, Result};

/// Activation of [`bias_act`] (NVlabs `activation_funcs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Linear,
    Relu,
    /// Leaky ReLU with the given negative slope (NVlabs default 0.2).
    Lrelu(f64),
    Tanh,
    Sigmoid,
    /// x·sigmoid(x) (NVlabs 'swish').
    Silu,
    Softplus,
}

impl Act {
    /// NVlabs' default gain: √2 for relu, lrelu and swish, 1 otherwise.
    pub fn default_gain(self) -> f64 {
        match self {
            Act::Relu | Act::Lrelu(_) | Act::Silu => std::f64::consts::SQRT_2,
            _ => 1.0,
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::Linear => Ok(x.clone()),
            Act::Relu => x.relu(),
            Act::Lrelu(a) => x.leaky_relu(a),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => x.sigmoid(),
            Act::Silu => x.silu(),
            Act::Softplus => x.softplus(),
        }
    }
}

/// `clamp(act(x + b) · gain, −clamp, clamp)`, as NVlabs `bias_act`: `b` is `[x.shape[dim]]`,
/// broadcast along `dim`; `gain` defaults to [`Act::default_gain`]; no clamp when `None`.
pub fn bias_act(
    x: &Tensor,
    b: Option<&Tensor>,
    dim: usize,
    act: Act,
    gain: Option<f64>,
    clamp: Option<f64>,
) -> Result<Tensor> {
    const OP: &str = "bias_act";
    if let Some(c) = clamp
        && (c.is_nan() || c < 0.0)
    {
        return Err(Error::invalid(OP, format!("clamp {c} must be ≥ 0")));
    }
    let mut y = x.clone();
    if let Some(b) = b {
        if dim >= x.rank() || b.shape() != [x.shape()[dim]] {
            return Err(Error::shape(
                OP,
                format!(
                    "bias {:?} does not match dim {dim} of input {:?}",
                    b.shape(),
                    x.shape()
                ),
            ));
        }
        if let Some(out) = bias_act_fused(x, b, dim, act, gain, clamp)? {
            return Ok(out);
        }
        let mut bs = vec![1; x.rank()];
        bs[dim] = x.shape()[dim];
        y = y.add(&b.reshape(&bs)?)?;
    }
    y = act.apply(&y)?;
    let gain = gain.unwrap_or_else(|| act.default_gain());
    if gain != 1.0 {
        y = y.mul_scalar(gain)?;
    }
    if let Some(c) = clamp {
        y = y.clamp(-c, c)?;
    }
    Ok(y)
}

/// The composite above in one pass over memory, for the CPU when no gradient is recorded
/// (sampling: `generate`, sample grids, the fakes of a D step): each element goes through the
/// same operations in the same order (x + b, the activation, · gain, clamp), so the result is
/// bit for bit the composite's. Only the activations whose composite runs these scalar
/// formulas (linear, relu, leaky relu); None when the composite must run.
fn bias_act_fused(
    x: &Tensor,
    b: &Tensor,
    dim: usize,
    act: Act,
    gain: Option<f64>,
    clamp: Option<f64>,
) -> Result<Option<Tensor>> {
    let unary = match act {
        Act::Linear => None,
        Act::Relu => Some(Unary::Relu),
        Act::Lrelu(a) => Some(Unary::LeakyRelu(a)),
        _ => return Ok(None),
    };
    let recorded = crate::autograd::is_grad_enabled() && (x.requires_grad() || b.requires_grad());
    if recorded || x.device() != Device::Cpu || b.device() != Device::Cpu {
        return Ok(None);
    }
    let k = BiasActKernel {
        channels: x.shape()[dim],
        inner: x.shape()[dim + 1..].iter().product(),
        unary,
        gain: gain.unwrap_or_else(|| act.default_gain()),
        clamp,
    };
    Tensor::run_kernel("bias_act", &[x, b], x.shape(), &k).map(Some)
}

/// One pass of [`bias_act`] (see [`bias_act_fused`]).
struct BiasActKernel {
    channels: usize,
    /// Elements per channel run (the product of the dimensions after `dim`).
    inner: usize,
    unary: Option<Unary>,
    gain: f64,
    clamp: Option<f64>,
}

impl BiasActKernel {
    /// Elements start.. of the output into `out`, from x and b: the activation, gain and clamp
    /// chosen once, so that each combination is its own loop (branch-free, vectorised).
    #[inline(always)]
    fn run_chunk<T: StorageElem>(
        &self,
        x: &[T],
        b: &[T],
        start: usize,
        out: &mut [std::mem::MaybeUninit<T>],
    ) {
        let s = match self.unary {
            Some(Unary::LeakyRelu(s)) => T::from_f64(s),
            _ => T::zero(),
        };
        macro_rules! go {
            ($act:expr) => {
                match (self.gain != 1.0, self.clamp.is_some()) {
                    (true, true) => self.pass::<T, true, true>(x, b, start, out, $act),
                    (true, false) => self.pass::<T, true, false>(x, b, start, out, $act),
                    (false, true) => self.pass::<T, false, true>(x, b, start, out, $act),
                    (false, false) => self.pass::<T, false, false>(x, b, start, out, $act),
                }
            };
        }
        // the same formulas as `apply_unary` for these activations
        match self.unary {
            None => go!(|v: T| v),
            Some(Unary::Relu) => go!(|v: T| if v > T::zero() { v } else { T::zero() }),
            Some(_) => go!(|v: T| if v > T::zero() { v } else { v * s }),
        }
    }

    #[inline(always)]
    fn pass<T: StorageElem, const SCALED: bool, const CLAMPED: bool>(
        &self,
        x: &[T],
        b: &[T],
        start: usize,
        out: &mut [std::mem::MaybeUninit<T>],
        act: impl Fn(T) -> T,
    ) {
        let inner = self.inner.max(1);
        let gain = T::from_f64(self.gain);
        let c = self.clamp.unwrap_or(0.0);
        let (lo, hi) = (T::from_f64(-c), T::from_f64(c));
        let mut i = 0;
        while i < out.len() {
            let row = (start + i) / inner;
            let end = ((row + 1) * inner - start).min(out.len());
            let bc = b[row % self.channels];
            for (o, &v) in out[i..end].iter_mut().zip(&x[start + i..start + end]) {
                let mut y = act(v + bc);
                if SCALED {
                    // the composite's `mul_scalar`: an affine map with offset 0
                    y = y * gain + T::zero();
                }
                if CLAMPED {
                    y = y.max(lo).min(hi);
                }
                o.write(y);
            }
            i = end;
        }
    }
}

impl Kernel for BiasActKernel {
    fn run<T: StorageElem>(&self, inputs: &[&[T]]) -> Result<Vec<T>> {
        let (x, b) = (inputs[0], inputs[1]);
        let n = x.len();
        // written once, never zeroed first
        let mut out: Vec<T> = Vec::with_capacity(n);
        crate::backend::cpu::par_chunks_mut(
            &mut out.spare_capacity_mut()[..n],
            1 << 15,
            |start, chunk| {
                crate::backend::cpu::vectorized(
                    #[inline(always)]
                    || self.run_chunk(x, b, start, chunk),
                )
            },
        );
        // SAFETY: the chunks cover 0..n and `run_chunk` writes every element of its chunk.
        unsafe { out.set_len(n) };
        Ok(out)
    }
}

/// StyleGAN2's minibatch standard deviation layer (`MinibatchStdLayer`): the batch is split
/// into groups of `G = min(group_size, N)` (sample i in group i mod N/G), channels into
/// `num_channels` parts; the group std (ε 1e-8), averaged over each part and the pixels, is
/// appended as `num_channels` new channels. `[N, C, H, W]` → `[N, C + F, H, W]`.
pub fn minibatch_stddev(x: &Tensor, group_size: usize, num_channels: usize) -> Result<Tensor> {
    const OP: &str = "minibatch_stddev";
    let (n, c, h, w) = match x.shape() {
        [n, c, h, w] => (*n, *c, *h, *w),
        s => {
            return Err(Error::shape(
                OP,
                format!("input must be [N, C, H, W], got {s:?}"),
            ));
        }
    };
    let g = group_size.min(n);
    let f = num_channels;
    if g == 0 || f == 0 || n % g != 0 || c % f != 0 {
        return Err(Error::shape(
            OP,
            format!(
                "input {:?}: the batch must split into groups of {g} and the channels into {f} parts",
                x.shape()
            ),
        ));
    }
    let groups = n / g;
    let y = x.reshape(&[g, groups, f, c / f, h, w])?;
    let y = y.sub(&y.mean_axes(&[0], true)?)?;
    let y = y.sqr()?.mean_axes(&[0], false)?; // [n, F, c, H, W]
    let y = y.add_scalar(1e-8)?.sqrt()?;
    let y = y.mean_axes(&[2, 3, 4], false)?; // [n, F]
    let y = y
        .reshape(&[1, groups, f, 1, 1])?
        .broadcast_as(&[g, groups, f, h, w])?
        .reshape(&[n, f, h, w])?;
    Tensor::cat(&[x.clone(), y], 1)
}

/// Noise injection: `x + noise · strength`, `noise` `[N, 1, H, W]` (one map per sample, shared
/// by the channels), `strength` a scalar (`[]` or `[1]`, StyleGAN2) or per channel `[C]`
/// (StyleGAN1).
pub fn add_noise(x: &Tensor, noise: &Tensor, strength: &Tensor) -> Result<Tensor> {
    const OP: &str = "add_noise";
    let (n, c, h, w) = match x.shape() {
        [n, c, h, w] => (*n, *c, *h, *w),
        s => {
            return Err(Error::shape(
                OP,
                format!("input must be [N, C, H, W], got {s:?}"),
            ));
        }
    };
    if noise.shape() != [n, 1, h, w] {
        return Err(Error::shape(
            OP,
            format!(
                "noise must be [N, 1, H, W] = {:?} for input {:?}, got {:?}",
                [n, 1, h, w],
                x.shape(),
                noise.shape()
            ),
        ));
    }
    let s = match strength.shape() {
        [] | [1] => strength.reshape(&[1, 1, 1, 1])?,
        [k] if *k == c => strength.reshape(&[1, c, 1, 1])?,
        s => {
            return Err(Error::shape(
                OP,
                format!("strength must be a scalar or [C] = [{c}], got {s:?}"),
            ));
        }
    };
    x.add(&noise.mul(&s)?)
}

/// Pixel norm (ProGAN, StyleGAN mapping): `x · rsqrt(mean(x², dim 1) + 1e-8)`.
pub fn pixel_norm(x: &Tensor) -> Result<Tensor> {
    if x.rank() < 2 {
        return Err(Error::shape(
            "pixel_norm",
            format!(
                "input needs a channel dimension (dim 1), got {:?}",
                x.shape()
            ),
        ));
    }
    x.mul(&x.sqr()?.mean_axes(&[1], true)?.add_scalar(1e-8)?.rsqrt()?)
}

/// StyleGAN3's filtered leaky ReLU: add the bias `b` `[C]`, upsample with `fu` (`up`,
/// `padding` `(x0, x1, y0, y1)`, gain `up²`), leaky ReLU with `slope`, × `gain`, clamp to
/// ±`clamp`, then downsample with `fd` (`down`). A `None` filter is the identity. On the CPU
/// with separable filters this is the fused kernel of [`crate::ops::filtered_lrelu`];
/// elsewhere [`filtered_lrelu_ref`].
#[allow(clippy::too_many_arguments)]
pub fn filtered_lrelu(
    x: &Tensor,
    fu: Option<&Tensor>,
    fd: Option<&Tensor>,
    b: Option<&Tensor>,
    up: usize,
    down: usize,
    padding: (isize, isize, isize, isize),
    gain: f64,
    slope: f64,
    clamp: Option<f64>,
    flip_filter: bool,
) -> Result<Tensor> {
    check_filtered_lrelu(x, fu, fd, b, up, down, gain, slope, clamp)?;
    let p = crate::ops::filtered_lrelu::Params {
        up,
        down,
        padding,
        gain,
        slope,
        clamp,
        flip_filter,
    };
    match crate::ops::filtered_lrelu::try_fused(x, fu, fd, b, &p)? {
        Some(y) => Ok(y),
        None => filtered_lrelu_ref(
            x,
            fu,
            fd,
            b,
            up,
            down,
            padding,
            gain,
            slope,
            clamp,
            flip_filter,
        ),
    }
}

/// The arguments both paths of [`filtered_lrelu`] refuse, with one sentence each.
#[allow(clippy::too_many_arguments)]
fn check_filtered_lrelu(
    x: &Tensor,
    fu: Option<&Tensor>,
    fd: Option<&Tensor>,
    b: Option<&Tensor>,
    up: usize,
    down: usize,
    gain: f64,
    slope: f64,
    clamp: Option<f64>,
) -> Result<()> {
    const OP: &str = "filtered_lrelu";
    if x.rank() != 4 {
        return Err(Error::shape(
            OP,
            format!("input must be [N, C, H, W], got {:?}", x.shape()),
        ));
    }
    let valid = gain > 0.0 && slope >= 0.0; // false for NaN too
    if !valid {
        return Err(Error::invalid(
            OP,
            format!("gain {gain} must be > 0 and slope {slope} ≥ 0"),
        ));
    }
    if up == 0 || down == 0 {
        return Err(Error::invalid(
            OP,
            format!("up {up} and down {down} must be at least 1"),
        ));
    }
    if let Some(c) = clamp
        && (c.is_nan() || c < 0.0)
    {
        return Err(Error::invalid(OP, format!("clamp {c} must be ≥ 0")));
    }
    if let Some(b) = b
        && b.shape() != [x.shape()[1]]
    {
        return Err(Error::shape(
            OP,
            format!(
                "bias {:?} does not match the {} channels of input {:?}",
                b.shape(),
                x.shape()[1],
                x.shape()
            ),
        ));
    }
    if fu.into_iter().chain(fd).any(|f| f.requires_grad()) {
        return Err(Error::invalid(
            OP,
            "the filters must be constants (detach them): they get no gradient",
        ));
    }
    Ok(())
}

/// StyleGAN3's filtered leaky ReLU, reference path (`_filtered_lrelu_ref`): composite
/// differentiable ops (bias, upfirdn2d, bias_act, upfirdn2d), the CPU reference of the fused
/// op, differentiable to any order.
#[allow(clippy::too_many_arguments)]
pub fn filtered_lrelu_ref(
    x: &Tensor,
    fu: Option<&Tensor>,
    fd: Option<&Tensor>,
    b: Option<&Tensor>,
    up: usize,
    down: usize,
    padding: (isize, isize, isize, isize),
    gain: f64,
    slope: f64,
    clamp: Option<f64>,
    flip_filter: bool,
) -> Result<Tensor> {
    const OP: &str = "filtered_lrelu";
    if x.rank() != 4 {
        return Err(Error::shape(
            OP,
            format!("input must be [N, C, H, W], got {:?}", x.shape()),
        ));
    }
    let valid = gain > 0.0 && slope >= 0.0; // false for NaN too
    if !valid {
        return Err(Error::invalid(
            OP,
            format!("gain {gain} must be > 0 and slope {slope} ≥ 0"),
        ));
    }
    let identity = Tensor::ones(&[1, 1], x.dtype());
    let fu = fu.unwrap_or(&identity);
    let fd = fd.unwrap_or(&identity);
    let y = bias_act(x, b, 1, Act::Linear, None, None)?;
    let y = upfirdn2d(
        &y,
        fu,
        (up, up),
        (1, 1),
        padding,
        (up * up) as f64,
        flip_filter,
    )?;
    let y = bias_act(&y, None, 1, Act::Lrelu(slope), Some(gain), clamp)?;
    upfirdn2d(&y, fd, (1, 1), (down, down), (0, 0, 0, 0), 1.0, flip_filter)
}

/// The diffusion model's sinusoidal timestep embedding; one implementation, in
/// [`crate::ops::embedding`].
pub use crate::ops::embedding::timestep_embedding as sinusoidal_embedding;
