//! Fused kernels as plain functions on tensors, on whichever device the inputs live: group
//! norm with an optional SiLU, window attention, modulated convolution — each forward and
//! backward. On the CPU they run the f64 loops of `cpu::fused_reference`; on a GPU, the
//! handwritten kernels in `cuda/`. They record no autograd history: op families wrap them in
//! their own backward rules (the backward functions here are what those rules call on a GPU).

use crate::backend::cpu::fused_reference::{self as reference, GnDims, McDims, WaDims};
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};

/// The GPU arm of a device match: without the feature no GPU tensor can exist, and the arm
/// is an error that says so.
macro_rules! on_gpu {
    ($e:expr) => {{
        #[cfg(feature = "cuda")]
        {
            $e
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(Error::Device {
                op: "fused",
                msg: "this build has no GPU backend (build with --features cuda)".into(),
            })
        }
    }};
}

/// The activation fused after group norm's affine step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GnAct {
    Identity,
    Silu,
}

/// Group norm output and the statistics its backward needs.
#[derive(Debug)]
pub struct GroupNormOut {
    pub y: Tensor,
    /// [N, groups]
    pub mean: Tensor,
    /// [N, groups], 1/sqrt(var + eps)
    pub rstd: Tensor,
}

#[derive(Debug)]
pub struct GroupNormGrads {
    pub dx: Tensor,
    pub dgamma: Tensor,
    pub dbeta: Tensor,
}

/// Window attention output and the row log-sum-exp its backward uses.
#[derive(Debug)]
pub struct WindowAttnOut {
    pub o: Tensor,
    /// [B, heads, N]
    pub lse: Tensor,
}

#[derive(Debug)]
pub struct WindowAttnGrads {
    pub dq: Tensor,
    pub dk: Tensor,
    pub dv: Tensor,
    /// [heads, N, N], summed over windows; None when no bias was given.
    pub dbias: Option<Tensor>,
}

#[derive(Debug)]
pub struct ModConvOut {
    pub y: Tensor,
    /// Demodulation coefficients [N, Cout] (ones without demodulation).
    pub demod: Tensor,
}

#[derive(Debug)]
pub struct ModConvGrads {
    pub dx: Tensor,
    pub dw: Tensor,
    pub ds: Tensor,
}

/// The device and dtype shared by all `ts`.
fn placement(op: &'static str, ts: &[&Tensor]) -> Result<(Device, DType)> {
    let (d, t) = (ts[0].device(), ts[0].dtype());
    for x in ts {
        if x.device() != d {
            return Err(Error::Device {
                op,
                msg: format!("inputs on {d} and {}", x.device()),
            });
        }
        if x.dtype() != t {
            return Err(Error::DType {
                op,
                msg: format!("{} and {}", t.name(), x.dtype().name()),
            });
        }
    }
    Ok((d, t))
}

fn need(op: &'static str, t: &Tensor, shape: &[usize], what: &str) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::shape(
            op,
            format!("{what} has shape {:?}, expected {shape:?}", t.shape()),
        ));
    }
    Ok(())
}

fn gn_dims(op: &'static str, x: &Tensor, groups: usize) -> Result<GnDims> {
    let s = x.shape();
    if s.len() < 2 || groups == 0 || !s[1].is_multiple_of(groups) {
        return Err(Error::shape(
            op,
            format!("input {s:?} must be [N, C, ...] with C divisible by {groups} groups"),
        ));
    }
    Ok(GnDims {
        n: s[0],
        c: s[1],
        hw: s[2..].iter().product(),
        groups,
    })
}

/// y = act((x − mean)/sqrt(var + eps)·γ + β), statistics per (sample, group of C/groups channels).
pub fn group_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    eps: f64,
    act: GnAct,
) -> Result<GroupNormOut> {
    let op = "group_norm";
    let d = gn_dims(op, x, groups)?;
    need(op, gamma, &[d.c], "gamma")?;
    need(op, beta, &[d.c], "beta")?;
    let (dev, dt) = placement(op, &[x, gamma, beta])?;
    match dev {
        Device::Cpu => {
            let (y, m, r) = reference::group_norm(
                &x.to_vec_f64()?,
                &gamma.to_vec_f64()?,
                &beta.to_vec_f64()?,
                d,
                eps,
                act == GnAct::Silu,
            );
            Ok(GroupNormOut {
                y: Tensor::from_f64s(&y, x.shape(), dt)?,
                mean: Tensor::from_f64s(&m, &[d.n, groups], dt)?,
                rstd: Tensor::from_f64s(&r, &[d.n, groups], dt)?,
            })
        }
        Device::Cuda(_) => on_gpu!(crate::backend::cuda::fused::group_norm(
            x, gamma, beta, d, eps, act
        )),
    }
}

/// Gradients of [`group_norm`] from dy and the saved statistics.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    dy: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    groups: usize,
    act: GnAct,
) -> Result<GroupNormGrads> {
    let op = "group_norm_backward";
    let d = gn_dims(op, x, groups)?;
    need(op, dy, x.shape(), "dy")?;
    need(op, gamma, &[d.c], "gamma")?;
    need(op, beta, &[d.c], "beta")?;
    need(op, mean, &[d.n, groups], "mean")?;
    need(op, rstd, &[d.n, groups], "rstd")?;
    let (dev, dt) = placement(op, &[dy, x, gamma, beta, mean, rstd])?;
    match dev {
        Device::Cpu => {
            let (dx, dg, db) = reference::group_norm_backward(
                &dy.to_vec_f64()?,
                &x.to_vec_f64()?,
                &gamma.to_vec_f64()?,
                &beta.to_vec_f64()?,
                &mean.to_vec_f64()?,
                &rstd.to_vec_f64()?,
                d,
                act == GnAct::Silu,
            );
            Ok(GroupNormGrads {
                dx: Tensor::from_f64s(&dx, x.shape(), dt)?,
                dgamma: Tensor::from_f64s(&dg, &[d.c], dt)?,
                dbeta: Tensor::from_f64s(&db, &[d.c], dt)?,
            })
        }
        Device::Cuda(_) => on_gpu!({
            crate::backend::cuda::fused::group_norm_backward(dy, x, gamma, beta, mean, rstd, d, act)
        }),
    }
}

fn wa_dims(
    op: &'static str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
) -> Result<WaDims> {
    let s = q.shape();
    if s.len() != 4 {
        return Err(Error::shape(
            op,
            format!("q {s:?} must be [B, heads, N, dim]"),
        ));
    }
    need(op, k, s, "k")?;
    need(op, v, s, "v")?;
    let (b, heads, n, dim) = (s[0], s[1], s[2], s[3]);
    if let Some(bias) = bias {
        need(op, bias, &[heads, n, n], "bias")?;
    }
    let mut nw = 1;
    if let Some(m) = mask {
        let ms = m.shape();
        if ms.len() != 3 || ms[1] != n || ms[2] != n || ms[0] == 0 || b % ms[0] != 0 {
            return Err(Error::shape(
                op,
                format!("mask {ms:?} must be [nW, {n}, {n}] with nW dividing B = {b}"),
            ));
        }
        nw = ms[0];
    }
    Ok(WaDims {
        b,
        heads,
        n,
        dim,
        nw,
    })
}

fn opt_vals(t: Option<&Tensor>) -> Result<Option<Vec<f64>>> {
    t.map(|t| t.to_vec_f64()).transpose()
}

/// softmax(scale·QKᵀ + bias\[h\] + mask[b mod nW])·V for q, k, v [B, heads, N, dim], bias
/// [heads, N, N] (the gathered relative-position bias), mask [nW, N, N] (Swin's shift mask).
/// The GPU kernel takes N ≤ 64 and dim ≤ 64.
pub fn window_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    scale: f64,
) -> Result<WindowAttnOut> {
    let op = "window_attention";
    let d = wa_dims(op, q, k, v, bias, mask)?;
    let mut all = vec![q, k, v];
    all.extend(bias);
    all.extend(mask);
    let (dev, dt) = placement(op, &all)?;
    match dev {
        Device::Cpu => {
            let (b, m) = (opt_vals(bias)?, opt_vals(mask)?);
            let (o, lse) = reference::window_attention(
                &q.to_vec_f64()?,
                &k.to_vec_f64()?,
                &v.to_vec_f64()?,
                b.as_deref(),
                m.as_deref(),
                d,
                scale,
            );
            Ok(WindowAttnOut {
                o: Tensor::from_f64s(&o, q.shape(), dt)?,
                lse: Tensor::from_f64s(&lse, &[d.b, d.heads, d.n], dt)?,
            })
        }
        Device::Cuda(_) => {
            on_gpu!(crate::backend::cuda::fused::window_attention(
                q, k, v, bias, mask, d, scale
            ))
        }
    }
}

/// Gradients of [`window_attention`]; `o` and `lse` are its outputs.
#[allow(clippy::too_many_arguments)]
pub fn window_attention_backward(
    dout: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    scale: f64,
    o: &Tensor,
    lse: &Tensor,
) -> Result<WindowAttnGrads> {
    let op = "window_attention_backward";
    let d = wa_dims(op, q, k, v, bias, mask)?;
    need(op, dout, q.shape(), "dout")?;
    need(op, o, q.shape(), "o")?;
    need(op, lse, &[d.b, d.heads, d.n], "lse")?;
    let mut all = vec![dout, q, k, v, o, lse];
    all.extend(bias);
    all.extend(mask);
    let (dev, dt) = placement(op, &all)?;
    match dev {
        Device::Cpu => {
            let (b, m) = (opt_vals(bias)?, opt_vals(mask)?);
            let (dq, dk, dv, db) = reference::window_attention_backward(
                &dout.to_vec_f64()?,
                &q.to_vec_f64()?,
                &k.to_vec_f64()?,
                &v.to_vec_f64()?,
                b.as_deref(),
                m.as_deref(),
                d,
                scale,
            );
            Ok(WindowAttnGrads {
                dq: Tensor::from_f64s(&dq, q.shape(), dt)?,
                dk: Tensor::from_f64s(&dk, q.shape(), dt)?,
                dv: Tensor::from_f64s(&dv, q.shape(), dt)?,
                dbias: match bias {
                    Some(_) => Some(Tensor::from_f64s(&db, &[d.heads, d.n, d.n], dt)?),
                    None => None,
                },
            })
        }
        Device::Cuda(_) => on_gpu!({
            crate::backend::cuda::fused::window_attention_backward(
                dout, q, k, v, bias, mask, d, scale, o, lse,
            )
        }),
    }
}

fn mc_dims(op: &'static str, x: &Tensor, w: &Tensor, s: &Tensor, pad: usize) -> Result<McDims> {
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() != 4 || ws.len() != 4 || ws[1] != xs[1] || ws[2] != ws[3] || ws[2] == 0 {
        return Err(Error::shape(
            op,
            format!("input {xs:?} [N, Cin, H, W] with weight {ws:?} [Cout, Cin, k, k]"),
        ));
    }
    need(op, s, &[xs[0], xs[1]], "style")?;
    if xs[2] + 2 * pad < ws[2] || xs[3] + 2 * pad < ws[2] {
        return Err(Error::shape(
            op,
            format!("kernel {} larger than the padded input {xs:?}", ws[2]),
        ));
    }
    Ok(McDims {
        n: xs[0],
        cin: xs[1],
        h: xs[2],
        w: xs[3],
        cout: ws[0],
        k: ws[2],
        pad,
    })
}

/// StyleGAN2's modulated convolution: per sample n, weight w[o,i,·]·s\[n,i\], demodulated (when
/// asked) by 1/sqrt(Σ (w·s)² + eps), stride 1, zero padding `pad`.
pub fn modulated_conv2d(
    x: &Tensor,
    w: &Tensor,
    s: &Tensor,
    pad: usize,
    demodulate: bool,
    eps: f64,
) -> Result<ModConvOut> {
    let op = "modulated_conv2d";
    let d = mc_dims(op, x, w, s, pad)?;
    let (dev, dt) = placement(op, &[x, w, s])?;
    match dev {
        Device::Cpu => {
            let (y, dm) = reference::modulated_conv2d(
                &x.to_vec_f64()?,
                &w.to_vec_f64()?,
                &s.to_vec_f64()?,
                d,
                demodulate,
                eps,
            );
            Ok(ModConvOut {
                y: Tensor::from_f64s(&y, &[d.n, d.cout, d.oh(), d.ow()], dt)?,
                demod: Tensor::from_f64s(&dm, &[d.n, d.cout], dt)?,
            })
        }
        Device::Cuda(_) => {
            on_gpu!(crate::backend::cuda::fused::modulated_conv2d(
                x, w, s, d, demodulate, eps
            ))
        }
    }
}

/// Gradients of [`modulated_conv2d`]; `out` is its output.
#[allow(clippy::too_many_arguments)]
pub fn modulated_conv2d_backward(
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    s: &Tensor,
    out: &ModConvOut,
    pad: usize,
    demodulate: bool,
    eps: f64,
) -> Result<ModConvGrads> {
    let op = "modulated_conv2d_backward";
    let d = mc_dims(op, x, w, s, pad)?;
    need(op, dy, &[d.n, d.cout, d.oh(), d.ow()], "dy")?;
    need(op, &out.y, dy.shape(), "y")?;
    need(op, &out.demod, &[d.n, d.cout], "demod")?;
    let (dev, dt) = placement(op, &[dy, x, w, s, &out.y, &out.demod])?;
    match dev {
        Device::Cpu => {
            let (dx, dw, ds) = reference::modulated_conv2d_backward(
                &dy.to_vec_f64()?,
                &x.to_vec_f64()?,
                &w.to_vec_f64()?,
                &s.to_vec_f64()?,
                d,
                demodulate,
                eps,
            );
            Ok(ModConvGrads {
                dx: Tensor::from_f64s(&dx, x.shape(), dt)?,
                dw: Tensor::from_f64s(&dw, w.shape(), dt)?,
                ds: Tensor::from_f64s(&ds, s.shape(), dt)?,
            })
        }
        Device::Cuda(_) => on_gpu!({
            crate::backend::cuda::fused::modulated_conv2d_backward(dy, x, w, s, out, d, demodulate)
        }),
    }
}
