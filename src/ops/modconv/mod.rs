//! StyleGAN2's modulated convolution: the weight is scaled per sample by the styles (one factor
//! per input channel), then optionally demodulated so each output channel of each sample has
//! unit expected variance again: w'[n,o,i,..] = w[o,i,..]·s\[n,i\] / sqrt(Σ_{i,ky,kx} (w·s)² + 1e-8).
//!
//! Two forms give the same result (as in NVlabs' `modulated_conv2d`):
//! - fused: build the per-sample weights and run one grouped conv with groups = N over x viewed
//!   as [1, N·Cin, H, W];
//! - non-fused: scale x by the styles, convolve with the shared weight, scale the output by the
//!   demodulation coefficients. Cheaper for large batches; what NVlabs uses while training.
//!
//! Up/down-sampling follows NVlabs' `conv2d_resample`: up-sampling is a transposed conv of
//! stride `up` followed by the FIR filter (gain up²), down-sampling filters first and then runs a
//! strided conv, 1×1 kernels resample on the cheaper side of the conv; `padding` is with respect
//! to the up-sampled image.
//!
//! On the CPU everything is composed of differentiable ops (broadcast products, sums, rsqrt,
//! conv2d, upfirdn2d), so gradients of any order w.r.t. x, weight and styles come for free (R1,
//! path length). On a GPU the layers without resampling (up = down = 1, a square kernel applied
//! as a correlation: every SynthesisLayer but the up-sampling ones) run the handwritten fused
//! kernels of cuda/modconv.cu (`modconv/cuda.rs`) as one recorded op: its first-order backward
//! is the fused backward kernels, its second order (under `create_graph`: the path-length
//! penalty) the rule of `FusedBackward`, written with conv2d's three primitives and broadcast
//! ops. Up/down-sampling layers keep the composite form on every device.

#[cfg(feature = "cuda")]
mod cuda;

#[cfg(feature = "cuda")]
use std::sync::Arc;

#[cfg(feature = "cuda")]
use crate::autograd::{GradFn, is_grad_enabled, record};
use crate::ops::Conv2dParams;
#[cfg(feature = "cuda")]
use crate::ops::conv::ConvGeom;
use crate::ops::upfirdn::upfirdn2d;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Demodulation's epsilon under the square root (DESIGN.md §5).
pub const DEMOD_EPS: f64 = 1e-8;

/// Options of [`modulated_conv2d`]. `padding` is on every side, with respect to the up-sampled
/// image.
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
    /// true: correlation (PyTorch's conv2d), false: true convolution (the kernel flipped).
    /// NVlabs' SynthesisLayer passes `up == 1` (the up-sampling path is cheaper unflipped).
    pub flip_weight: bool,
}

impl Default for ModConvParams {
    fn default() -> Self {
        ModConvParams {
            up: 1,
            down: 1,
            padding: 0,
            demodulate: true,
            fused: true,
            flip_weight: true,
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
/// `resample_filter` is the low-pass filter for up/down-sampling, prepared by
/// [`setup_filter`](crate::ops::upfirdn::setup_filter) (e.g. \[1,3,3,1\]); `None` is the identity.
pub fn modulated_conv2d(
    x: &Tensor,
    weight: &Tensor,
    styles: &Tensor,
    noise: Option<&Tensor>,
    resample_filter: Option<&Tensor>,
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
    let (n, cin, cout, kh, kw) = (xs[0], xs[1], ws[0], ws[2], ws[3]);
    #[cfg(feature = "cuda")]
    if crate::ops::gpu::on_gpu(x)
        && p.up == 1
        && p.down == 1
        && kh == kw
        && (p.flip_weight || kh == 1)
    {
        let y = fused_gpu(x, weight, styles, p.padding, p.demodulate)?;
        return match noise {
            Some(z) => y.add(z),
            None => Ok(y),
        };
    }
    let identity;
    let f = match resample_filter {
        Some(f) => f,
        None => {
            identity = Tensor::ones(&[1, 1], x.dtype());
            &identity
        }
    };
    let resample = Resample {
        f,
        up: p.up,
        down: p.down,
        padding: p.padding as isize,
        flip_weight: p.flip_weight,
    };

    // demodulation coefficients [N, Cout]: Σ_{i,k} (w·s)² = Σ_i s² · Σ_k w², a [N, Cin] ×
    // [Cin, Cout] product instead of building the [N, Cout, Cin, kh, kw] weights to square them
    let dcoefs = if p.demodulate {
        let wsq = weight.sqr()?.sum_axes(&[2, 3], false)?; // [Cout, Cin]
        Some(
            styles
                .sqr()?
                .matmul(&wsq.transpose(0, 1)?)?
                .add_scalar(DEMOD_EPS)?
                .rsqrt()?,
        )
    } else {
        None
    };

    let y = if p.fused {
        // per-sample weights w[o, i, k]·s[n, i]·d[n, o] in one broadcast product
        let scale = match &dcoefs {
            Some(d) => styles
                .reshape(&[n, 1, cin, 1])?
                .mul(&d.reshape(&[n, cout, 1, 1])?)?,
            None => styles.reshape(&[n, 1, cin, 1])?,
        };
        let w = weight.reshape(&[1, cout, cin, kh * kw])?.mul(&scale)?;
        let xg = contiguous(x)?.reshape(&[1, n * cin, xs[2], xs[3]])?;
        let y = resample.conv2d(&xg, &w.reshape(&[n * cout, cin, kh, kw])?, n)?;
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        y.reshape(&[n, cout, oh, ow])?
    } else {
        let y = resample.conv2d(&x.mul(&styles.reshape(&[n, cin, 1, 1])?)?, weight, 1)?;
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

/// NVlabs' `conv2d_resample` on its own (the discriminator's layers): x [N, Cin, H, W]
/// convolved with w [Cout, Cin/groups, kh, kw], with FIR up/down-sampling by `f` (prepared by
/// [`setup_filter`](crate::ops::upfirdn::setup_filter); `None` = identity) and `padding` with
/// respect to the up-sampled image; `flip_weight` as in [`ModConvParams`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_resample(
    x: &Tensor,
    w: &Tensor,
    f: Option<&Tensor>,
    up: usize,
    down: usize,
    padding: usize,
    groups: usize,
    flip_weight: bool,
) -> Result<Tensor> {
    const OP: &str = "conv2d_resample";
    if x.rank() != 4 || w.rank() != 4 || groups == 0 || up == 0 || down == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "input {:?} must be [N, C, H, W], weight {:?} [Cout, Cin/groups, kh, kw], up/down/groups ≥ 1",
                x.shape(),
                w.shape()
            ),
        ));
    }
    let identity;
    let f = match f {
        Some(f) => f,
        None => {
            identity = Tensor::ones(&[1, 1], x.dtype());
            &identity
        }
    };
    Resample {
        f,
        up,
        down,
        padding: padding as isize,
        flip_weight,
    }
    .conv2d(x, w, groups)
}

fn contiguous(t: &Tensor) -> Result<Tensor> {
    if t.is_contiguous() {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// NVlabs' `conv2d_resample`: a conv with optional FIR up/down-sampling, padding applied once.
struct Resample<'a> {
    f: &'a Tensor,
    up: usize,
    down: usize,
    padding: isize,
    flip_weight: bool,
}

impl Resample<'_> {
    fn conv2d(&self, x: &Tensor, w: &Tensor, groups: usize) -> Result<Tensor> {
        const OP: &str = "modulated_conv2d";
        let (cout, cig, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
        let (fw, fh) = match self.f.shape() {
            [k] => (*k as isize, *k as isize),
            [fh, fw] => (*fw as isize, *fh as isize),
            s => {
                return Err(Error::shape(
                    OP,
                    format!("resample filter {s:?} must be [k] or [fh, fw]"),
                ));
            }
        };
        let (up, down) = (self.up as isize, self.down as isize);
        let p = self.padding;
        let (mut px0, mut px1, mut py0, mut py1) = (p, p, p, p);
        if up > 1 {
            px0 += (fw + up - 1).div_euclid(2);
            px1 += (fw - up).div_euclid(2);
            py0 += (fh + up - 1).div_euclid(2);
            py1 += (fh - up).div_euclid(2);
        }
        if down > 1 {
            px0 += (fw - down + 1).div_euclid(2);
            px1 += (fw - down).div_euclid(2);
            py0 += (fh - down + 1).div_euclid(2);
            py1 += (fh - down).div_euclid(2);
        }
        let fir = |x: &Tensor, up: usize, down: usize, pad: (isize, isize, isize, isize), gain| {
            upfirdn2d(x, self.f, (up, up), (down, down), pad, gain, false)
        };
        let gain = (self.up * self.up) as f64;
        // `flip`: flip the kernel (true convolution) before a correlating conv
        let conv = |x: &Tensor, w: &Tensor, stride: usize, pad: (usize, usize), flip: bool| {
            let w = if flip && (kh > 1 || kw > 1) {
                w.flip(&[2, 3])?
            } else {
                w.clone()
            };
            let cp = Conv2dParams {
                stride: (stride, stride),
                padding: pad,
                dilation: (1, 1),
                groups,
            };
            x.conv2d(&w, cp)
        };
        let unflipped = !self.flip_weight;
        let pads = (px0, px1, py0, py1);
        let one = kh == 1 && kw == 1;
        if one && down > 1 && up == 1 {
            // 1×1 down: resample first, on the smaller number of channels
            return conv(&fir(x, 1, self.down, pads, 1.0)?, w, 1, (0, 0), unflipped);
        }
        if one && up > 1 && down == 1 {
            return fir(&conv(x, w, 1, (0, 0), unflipped)?, self.up, 1, pads, gain);
        }
        if down > 1 && up == 1 {
            return conv(&fir(x, 1, 1, pads, 1.0)?, w, self.down, (0, 0), unflipped);
        }
        if up > 1 {
            // transposed conv: weight [groups·cig, cout/groups, kh, kw]
            let wt = if groups == 1 {
                w.transpose(0, 1)?
            } else {
                w.reshape(&[groups, cout / groups, cig, kh, kw])?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape(&[groups * cig, cout / groups, kh, kw])?
            };
            let wt = if self.flip_weight && (kh > 1 || kw > 1) {
                wt.flip(&[2, 3])?
            } else {
                wt
            };
            px0 -= kw as isize - 1;
            px1 -= kw as isize - up;
            py0 -= kh as isize - 1;
            py1 -= kh as isize - up;
            let pxt = (-px0).min(-px1).max(0);
            let pyt = (-py0).min(-py1).max(0);
            let cp = Conv2dParams {
                stride: (self.up, self.up),
                padding: (pyt as usize, pxt as usize),
                dilation: (1, 1),
                groups,
            };
            let y = x.conv_transpose2d(&wt, cp, (0, 0))?;
            // the transposed conv inserted the zeros; the filter pass carries the up² gain
            let y = fir(&y, 1, 1, (px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain)?;
            return if down > 1 {
                fir(&y, 1, self.down, (0, 0, 0, 0), 1.0)
            } else {
                Ok(y)
            };
        }
        // no resampling: plain conv with symmetric padding
        conv(x, w, 1, (py0 as usize, px0 as usize), unflipped)
    }
}

/// The fused modulated conv on a GPU (stride 1, `pad` on every side, correlation) as one
/// recorded op.
#[cfg(feature = "cuda")]
fn fused_gpu(x: &Tensor, w: &Tensor, s: &Tensor, pad: usize, demodulate: bool) -> Result<Tensor> {
    let cp = Conv2dParams {
        padding: (pad, pad),
        ..Default::default()
    };
    let g = crate::ops::conv::conv_geom("modulated_conv2d", x.shape(), w.shape(), &cp)?;
    let (y, demod) = cuda::forward(x, w, s, &g, demodulate, DEMOD_EPS)?;
    Ok(record(y, &[x, w, s], || {
        Arc::new(FusedBackward {
            x: x.clone(),
            w: w.clone(),
            s: s.clone(),
            demod,
            g,
            cp,
            demodulate,
        })
    }))
}

/// Backward of the fused modulated conv y = d[n,o] · conv(x·s[n,i], w) (d = 1 without
/// demodulation, else (Σ_{i,k} w² s² + eps)^-½).
#[cfg(feature = "cuda")]
struct FusedBackward {
    x: Tensor,
    w: Tensor,
    s: Tensor,
    /// d [n, cout] from the forward (values only: used by the first-order kernels).
    demod: Tensor,
    g: ConvGeom,
    cp: Conv2dParams,
    demodulate: bool,
}

#[cfg(feature = "cuda")]
impl GradFn for FusedBackward {
    fn name(&self) -> &'static str {
        "modulated_conv2d"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone(), self.w.clone(), self.s.clone()]
    }
    fn backward(&self, out: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let pick = |t: Tensor, i: usize| needs[i].then_some(t);
        if !is_grad_enabled() {
            // not differentiated again: the fused backward kernels
            let [gx, gw, gs] = cuda::backward(
                g,
                &self.x,
                &self.w,
                &self.s,
                out,
                &self.demod,
                &self.g,
                self.demodulate,
            )?;
            return Ok(vec![pick(gx, 0), pick(gw, 1), pick(gs, 2)]);
        }
        let [gx, gw, gs] = self.recorded(g, needs)?;
        Ok(vec![gx, gw, gs])
    }
}

#[cfg(feature = "cuda")]
impl FusedBackward {
    /// The gradients with recorded ops (so they differentiate again), z = conv(x·s, w):
    /// gz = g·d; gx = s·conv_bwd_data(gz, w); gs = Σ_p x·conv_bwd_data(gz, w);
    /// gw = conv_bwd_weight(x·s, gz); with demodulation, c = Σ_p g·z · d³ adds
    /// −w·(cᵀ s²) to gw and −s·(c wsq) to gs (wsq[o, i] = Σ_k w²).
    fn recorded(&self, g: &Tensor, needs: &[bool]) -> Result<[Option<Tensor>; 3]> {
        let (n, cin, cout) = (self.g.n, self.g.cin, self.g.cout);
        let (x, w, s) = (&self.x, &self.w, &self.s);
        let s4 = s.reshape(&[n, cin, 1, 1])?;
        let xs = x.mul(&s4)?;
        let demod = if self.demodulate {
            let wsq = w.sqr()?.sum_axes(&[2, 3], false)?;
            let d = s
                .sqr()?
                .matmul(&wsq.transpose(0, 1)?)?
                .add_scalar(DEMOD_EPS)?
                .rsqrt()?;
            Some((d, wsq))
        } else {
            None
        };
        let gz = match &demod {
            Some((d, _)) => g.mul(&d.reshape(&[n, cout, 1, 1])?)?,
            None => g.clone(),
        };
        // c[n, o] = Σ_p g·z · d³
        let c = match &demod {
            Some((d, _)) if needs[1] || needs[2] => {
                let z = xs.conv2d(w, self.cp)?;
                let gd = g.mul(&z)?.sum_axes(&[2, 3], false)?;
                Some(gd.mul(&d.sqr()?.mul(d)?)?)
            }
            _ => None,
        };
        let (mut gx, mut gs) = (None, None);
        if needs[0] || needs[2] {
            let gxs = gz.conv2d_backward_data(w, x.shape(), self.cp)?;
            if needs[0] {
                gx = Some(gxs.mul(&s4)?);
            }
            if needs[2] {
                let mut v = gxs.mul(x)?.sum_axes(&[2, 3], false)?;
                if let (Some(c), Some((_, wsq))) = (&c, &demod) {
                    v = v.sub(&s.mul(&c.matmul(wsq)?)?)?;
                }
                gs = Some(v);
            }
        }
        let gw = if needs[1] {
            let mut v = xs.conv2d_backward_weight(&gz, w.shape(), self.cp)?;
            if let Some(c) = &c {
                let cs = c.transpose(0, 1)?.matmul(&s.sqr()?)?;
                v = v.sub(&w.mul(&cs.reshape(&[cout, cin, 1, 1])?)?)?;
            }
            Some(v)
        } else {
            None
        };
        Ok([gx, gw, gs])
    }
}
