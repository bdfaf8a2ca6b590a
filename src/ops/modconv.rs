//! StyleGAN2's modulated convolution: the weight is scaled per sample by the styles (one factor
//! per input channel), then optionally demodulated so each output channel of each sample has
//! unit expected variance again: w'[n,o,i,..] = w[o,i,..]·s[n,i] / sqrt(Σ_{i,ky,kx} (w·s)² + 1e-8).
//!
//! Two forms give the same result (as in NVlabs' `modulated_conv2d`):
//! - fused: build the per-sample weights and run one grouped conv with groups = N over x viewed
//!   as [1, N·Cin, H, W];
//! - non-fused: scale x by the styles, convolve with the shared weight, scale the output by the
//!   demodulation coefficients. Cheaper for large batches; what NVlabs uses while training.
//!
//! Everything is composed of differentiable ops (broadcast products, sums, rsqrt, conv2d), so
//! gradients of any order w.r.t. x, weight and styles come for free (R1, path length).

use crate::ops::Conv2dParams;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Demodulation's epsilon under the square root (DESIGN.md §5).
pub const DEMOD_EPS: f64 = 1e-8;

/// Options of [`modulated_conv2d`]. `padding` is in input pixels, on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModConvParams {
    /// Integer up-sampling factor (1 = none).
    pub up: usize,
    /// Integer down-sampling factor (1 = none).
    pub down: usize,
    pub padding: usize,
    /// Divide each output channel by the norm of its modulated weight.
    pub demodulate: bool,
    /// One grouped conv with per-sample weights (true) or activations scaled around a shared
    /// conv (false).
    pub fused: bool,
}

impl Default for ModConvParams {
    fn default() -> Self {
        ModConvParams {
            up: 1,
            down: 1,
            padding: 0,
            demodulate: true,
            fused: true,
        }
    }
}

impl ModConvParams {
    /// Stride 1, size-preserving padding for an odd kernel k, demodulated, fused.
    pub fn same(k: usize) -> Self {
        ModConvParams {
            padding: k / 2,
            ..Default::default()
        }
    }
    pub fn fused(mut self, fused: bool) -> Self {
        self.fused = fused;
        self
    }
    pub fn demodulate(mut self, d: bool) -> Self {
        self.demodulate = d;
        self
    }
}

/// Modulated conv of x [N, Cin, H, W] with weight [Cout, Cin, kh, kw] and styles [N, Cin];
/// `noise` (broadcastable to the output, e.g. [N, 1, H, W]) is added to the result.
pub fn modulated_conv2d(
    x: &Tensor,
    weight: &Tensor,
    styles: &Tensor,
    noise: Option<&Tensor>,
    p: ModConvParams,
) -> Result<Tensor> {
    const OP: &str = "modulated_conv2d";
    let (xs, ws, ss) = (x.shape(), weight.shape(), styles.shape());
    if xs.len() != 4 || ws.len() != 4 || ss.len() != 2 || ws[1] != xs[1] || ss != [xs[0], xs[1]] {
        return Err(Error::shape(
            OP,
            format!(
                "input {xs:?} must be [N, Cin, H, W], weight {ws:?} [Cout, Cin, kh, kw] and styles {ss:?} [N, Cin]"
            ),
        ));
    }
    if p.up == 0 || p.down == 0 {
        return Err(Error::invalid(
            OP,
            format!("up and down must be at least 1: {p:?}"),
        ));
    }
    if p.up != 1 || p.down != 1 {
        return Err(Error::invalid(OP, "up/down-sampling needs upfirdn2d"));
    }
    let (n, cin, cout, kh, kw) = (xs[0], xs[1], ws[0], ws[2], ws[3]);
    let conv = Conv2dParams::default().with_padding(p.padding);

    // per-sample weights [N, Cout, Cin, kh, kw] and demodulation coefficients [N, Cout]
    let need_w = p.demodulate || p.fused;
    let w = if need_w {
        Some(
            weight
                .reshape(&[1, cout, cin, kh, kw])?
                .mul(&styles.reshape(&[n, 1, cin, 1, 1])?)?,
        )
    } else {
        None
    };
    let dcoefs = match (&w, p.demodulate) {
        (Some(w), true) => Some(
            w.sqr()?
                .sum_axes(&[2, 3, 4], false)?
                .add_scalar(DEMOD_EPS)?
                .rsqrt()?,
        ),
        _ => None,
    };

    let y = if p.fused {
        let mut w = w.ok_or_else(|| Error::invalid(OP, "internal: fused form without weights"))?;
        if let Some(d) = &dcoefs {
            w = w.mul(&d.reshape(&[n, cout, 1, 1, 1])?)?;
        }
        let xg = contiguous(x)?.reshape(&[1, n * cin, xs[2], xs[3]])?;
        let y = xg.conv2d(&w.reshape(&[n * cout, cin, kh, kw])?, conv.with_groups(n))?;
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        y.reshape(&[n, cout, oh, ow])?
    } else {
        let y = x
            .mul(&styles.reshape(&[n, cin, 1, 1])?)?
            .conv2d(weight, conv)?;
        match &dcoefs {
            Some(d) => y.mul(&d.reshape(&[n, cout, 1, 1])?)?,
            None => y,
        }
    };
    match noise {
        Some(z) => y.add(z),
        None => Ok(y),
    }
}

fn contiguous(t: &Tensor) -> Result<Tensor> {
    if t.is_contiguous() {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}
