//! Losses: MSE, cross-entropy (torch's weighted mean with ignore index), nnU-Net soft Dice,
//! one-hot encoding, the GAN losses of StyleGAN2 (logistic) and ProGAN (WGAN with drift), and
//! the gradient regularisers WGAN-GP, R1 and path length. The regularisers differentiate D or G
//! with `create_graph`, so their values are differentiable w.r.t. the network parameters.

use std::sync::Arc;

use crate::autograd::{grad, set_grad_enabled};
use crate::ops::view::ZERO;
use crate::tensor::Tensor;
use crate::{Error, Result};

// ---- labels ------------------------------------------------------------------------------------

/// Class labels: a slice of ids, or a tensor of ids stored as floats (integral, non-negative).
#[derive(Clone, Copy, Debug)]
pub enum Labels<'a> {
    Ids(&'a [usize]),
    Tensor(&'a Tensor),
}

impl<'a> From<&'a [usize]> for Labels<'a> {
    fn from(v: &'a [usize]) -> Self {
        Labels::Ids(v)
    }
}
impl<'a> From<&'a Vec<usize>> for Labels<'a> {
    fn from(v: &'a Vec<usize>) -> Self {
        Labels::Ids(v)
    }
}
impl<'a> From<&'a Tensor> for Labels<'a> {
    fn from(t: &'a Tensor) -> Self {
        Labels::Tensor(t)
    }
}

impl Labels<'_> {
    fn ids(&self, op: &'static str) -> Result<Vec<usize>> {
        match self {
            Labels::Ids(v) => Ok(v.to_vec()),
            Labels::Tensor(t) => t
                .to_vec_f64()?
                .into_iter()
                .map(|v| {
                    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f64 {
                        Ok(v as usize)
                    } else {
                        Err(Error::invalid(
                            op,
                            format!("label {v} is not a non-negative integer class id"),
                        ))
                    }
                })
                .collect(),
        }
    }
}

/// One-hot encoding: labels [N, *] (integral values) → [N, classes, *] of 0/1 in the labels'
/// dtype. No gradient.
pub fn one_hot(labels: &Tensor, classes: usize) -> Result<Tensor> {
    let s = labels.shape();
    if s.is_empty() {
        return Err(Error::shape(
            "one_hot",
            "labels must have a batch dimension, got a scalar",
        ));
    }
    let ids = Labels::Tensor(labels).ids("one_hot")?;
    let (n, sp) = (s[0], s[1..].iter().product::<usize>());
    let mut out = vec![0f64; n * classes * sp];
    for (i, &y) in ids.iter().enumerate() {
        if y >= classes {
            return Err(Error::invalid(
                "one_hot",
                format!("label {y} is not below the {classes} classes"),
            ));
        }
        let (b, p) = (i / sp.max(1), i % sp.max(1));
        out[(b * classes + y) * sp + p] = 1.0;
    }
    let mut shape = vec![n, classes];
    shape.extend_from_slice(&s[1..]);
    Tensor::from_f64s(&out, &shape, labels.dtype())
}

// ---- regression and segmentation losses --------------------------------------------------------

/// Mean squared error (torch `mse_loss`, reduction mean). Shapes must match exactly.
pub fn mse_loss(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    if pred.shape() != target.shape() {
        return Err(Error::shape(
            "mse_loss",
            format!(
                "prediction {:?} vs target {:?}",
                pred.shape(),
                target.shape()
            ),
        ));
    }
    pred.sub(target)?.sqr()?.mean_all()
}

/// torch `cross_entropy` on logits [N, C] or [N, C, *] with class-id targets \[N\] or [N, *]:
/// Σ w\[yᵢ\]·(−log softmax(xᵢ)\[yᵢ\]) / Σ w\[yᵢ\] over the targets that are not `ignore_index`
/// (w = 1 without class weights). An ignore index may lie outside 0..C (e.g. 255). Unlike
/// torch, which returns NaN, a batch whose every target is ignored (or weighs 0) is an error.
pub fn cross_entropy<'a>(
    logits: &Tensor,
    target: impl Into<Labels<'a>>,
    weights: Option<&[f64]>,
    ignore_index: Option<usize>,
) -> Result<Tensor> {
    let op = "cross_entropy";
    let s = logits.shape();
    if s.len() < 2 {
        return Err(Error::shape(
            op,
            format!("logits {s:?} must be [N, C] or [N, C, *]"),
        ));
    }
    let (n, c) = (s[0], s[1]);
    let sp: usize = s[2..].iter().product();
    let target = target.into();
    if let Labels::Tensor(t) = target {
        let mut want = vec![n];
        want.extend_from_slice(&s[2..]);
        if t.shape() != want.as_slice() && t.elem_count() != n * sp {
            return Err(Error::shape(
                op,
                format!("target {:?} for logits {s:?}, expected {want:?}", t.shape()),
            ));
        }
    }
    let ids = target.ids(op)?;
    if ids.len() != n * sp {
        return Err(Error::shape(
            op,
            format!(
                "{} targets for logits {s:?} ({} expected)",
                ids.len(),
                n * sp
            ),
        ));
    }
    if let Some(w) = weights
        && w.len() != c
    {
        return Err(Error::shape(
            op,
            format!("{} class weights for {c} classes", w.len()),
        ));
    }
    if logits.elem_count() >= ZERO as usize {
        return Err(Error::invalid(op, "logits too large for 32-bit index maps"));
    }
    let mut map = Vec::with_capacity(ids.len());
    let mut wv = Vec::with_capacity(ids.len());
    for (i, &y) in ids.iter().enumerate() {
        if Some(y) == ignore_index {
            map.push(ZERO);
            wv.push(0.0);
            continue;
        }
        if y >= c {
            return Err(Error::invalid(
                op,
                format!("target class {y} is not below the {c} classes"),
            ));
        }
        let (b, p) = (i / sp.max(1), i % sp.max(1));
        map.push(((b * c + y) * sp + p) as u32);
        wv.push(weights.map_or(1.0, |w| w[y]));
    }
    let total: f64 = wv.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return Err(Error::invalid(
            op,
            "every target is ignored or has weight 0, so the weighted mean is undefined",
        ));
    }
    let logp = logits.log_softmax(1)?.reshape(&[n * c * sp])?;
    let picked = logp.gather_map(Arc::new(map), &[n * sp])?;
    let w = Tensor::from_f64s(&wv, &[n * sp], logits.dtype())?;
    picked.mul(&w)?.sum_all()?.affine(-1.0 / total, 0.0)
}

/// Options of [`soft_dice_loss`] (nnU-Net `SoftDiceLoss`).
#[derive(Clone, Debug, PartialEq)]
pub struct DiceOptions {
    /// Added to numerator and denominator (nnU-Net v2: 1e-5).
    pub smooth: f64,
    /// One Dice per class over the whole batch (nnU-Net "batch dice") instead of per sample.
    pub batch_dice: bool,
    /// Keep class 0 (nnU-Net `do_bg`); ignored when `classes` is given.
    pub include_background: bool,
    /// Exactly these classes, when given.
    pub classes: Option<Vec<usize>>,
}

impl Default for DiceOptions {
    fn default() -> Self {
        DiceOptions {
            smooth: 1e-5,
            batch_dice: false,
            include_background: false,
            classes: None,
        }
    }
}

/// Soft Dice loss 1 − mean dc with dc = (2·tp + smooth) / max(2·tp + fp + fn + smooth, 1e-8)
/// per class (and per sample unless batch Dice), probs and one-hot target [N, C, *].
/// nnU-Net returns −mean dc; the two differ by a constant, so gradients agree.
pub fn soft_dice_loss(probs: &Tensor, target: &Tensor, opts: &DiceOptions) -> Result<Tensor> {
    let op = "soft_dice_loss";
    let s = probs.shape();
    if s.len() < 2 || target.shape() != s {
        return Err(Error::shape(
            op,
            format!(
                "probabilities {s:?} and one-hot target {:?} must be equal and [N, C, *]",
                target.shape()
            ),
        ));
    }
    let c = s[1];
    let classes: Vec<usize> = match &opts.classes {
        Some(v) => v.clone(),
        None if opts.include_background => (0..c).collect(),
        None => (1..c).collect(),
    };
    if classes.is_empty() || classes.iter().any(|&k| k >= c) {
        return Err(Error::invalid(
            op,
            format!("classes {classes:?} must be a non-empty subset of 0..{c}"),
        ));
    }
    let mut axes: Vec<isize> = (2..s.len() as isize).collect();
    if opts.batch_dice {
        axes.insert(0, 0);
    }
    let tp = if axes.is_empty() {
        probs.mul(target)?
    } else {
        probs.mul(target)?.sum_axes(&axes, false)?
    };
    let sum = |t: &Tensor| -> Result<Tensor> {
        if axes.is_empty() {
            Ok(t.clone())
        } else {
            t.sum_axes(&axes, false)
        }
    };
    // 2tp + fp + fn = Σx + Σy
    let den = sum(probs)?
        .add(&sum(target)?)?
        .add_scalar(opts.smooth)?
        .clamp(1e-8, f64::INFINITY)?;
    let dc = tp.affine(2.0, opts.smooth)?.div(&den)?;
    // class axis is last after the reduction: [C] (batch Dice) or [N, C]
    dc.index_select(-1, &classes)?.mean_all()?.affine(-1.0, 1.0)
}

// ---- GAN losses --------------------------------------------------------------------------------

/// StyleGAN2 generator loss (non-saturating logistic): mean softplus(−D(G(z))).
pub fn logistic_g_loss(d_fake: &Tensor) -> Result<Tensor> {
    d_fake.neg()?.softplus()?.mean_all()
}

/// StyleGAN2 discriminator loss: mean softplus(D(G(z))) + mean softplus(−D(x)).
pub fn logistic_d_loss(d_fake: &Tensor, d_real: &Tensor) -> Result<Tensor> {
    d_fake
        .softplus()?
        .mean_all()?
        .add(&d_real.neg()?.softplus()?.mean_all()?)
}

/// WGAN generator loss: −mean D(G(z)).
pub fn wgan_g_loss(d_fake: &Tensor) -> Result<Tensor> {
    d_fake.mean_all()?.neg()
}

/// WGAN critic loss: mean D(G(z)) − mean D(x).
pub fn wgan_d_loss(d_fake: &Tensor, d_real: &Tensor) -> Result<Tensor> {
    d_fake.mean_all()?.sub(&d_real.mean_all()?)
}

/// ProGAN's drift term ε·mean D(x)² (ε = 0.001 there) keeping critic outputs near 0.
pub fn wgan_drift(d_real: &Tensor, epsilon: f64) -> Result<Tensor> {
    d_real.sqr()?.mean_all()?.affine(epsilon, 0.0)
}

/// Per-sample squared norms of ∂ΣD/∂x (x [N, ...]): the shared core of WGAN-GP and R1.
fn grad_sq_norms(op: &'static str, d_out: &Tensor, x: &Tensor) -> Result<Tensor> {
    if x.rank() == 0 {
        return Err(Error::shape(
            op,
            "inputs must have a batch dimension, got a scalar",
        ));
    }
    if !x.requires_grad() {
        return Err(Error::invalid(
            op,
            "the inputs were not tracked: make them a variable (`.variable()`) before running D",
        ));
    }
    if !d_out.requires_grad() {
        return Err(Error::invalid(
            op,
            "D's output has no recorded history (was D run under no_grad?)",
        ));
    }
    // seeding with ones (rather than differentiating a recorded sum) works in any grad mode
    let g = grad(
        std::slice::from_ref(d_out),
        Some(&[d_out.ones_like()]),
        std::slice::from_ref(x),
        true,
    )?
    .pop()
    .ok_or_else(|| Error::Autograd(format!("{op}: no gradient returned")))?;
    let axes: Vec<isize> = (1..x.rank() as isize).collect();
    if axes.is_empty() {
        g.sqr()
    } else {
        g.sqr()?.sum_axes(&axes, false)
    }
}

/// WGAN-GP (ProGAN): λ/target² · mean((‖∂D/∂x̃‖₂ − target)²) over the batch, with `d_out` =
/// D(x̃) on interpolates x̃ (a tracked tensor, e.g. `lerp(real, fake, α).variable()`). λ = 10,
/// target = 1 in ProGAN. The value is differentiable w.r.t. D's parameters.
pub fn wgan_gp_penalty(
    d_out: &Tensor,
    interpolates: &Tensor,
    lambda: f64,
    target: f64,
) -> Result<Tensor> {
    if target == 0.0 || target.is_nan() {
        return Err(Error::invalid(
            "wgan_gp_penalty",
            format!("target norm must be non-zero, got {target}"),
        ));
    }
    let norms = grad_sq_norms("wgan_gp_penalty", d_out, interpolates)?.sqrt()?;
    norms
        .add_scalar(-target)?
        .sqr()?
        .mean_all()?
        .affine(lambda / (target * target), 0.0)
}

/// [`wgan_gp_penalty`] with D given as a closure: x̃ is made a variable and D run on it.
pub fn wgan_gp_penalty_with(
    interpolates: &Tensor,
    lambda: f64,
    target: f64,
    d: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let x = interpolates.detach().variable();
    // the penalty needs D's graph whatever the caller's grad mode
    let out = {
        let _mode = set_grad_enabled(true);
        d(&x)?
    };
    wgan_gp_penalty(&out, &x, lambda, target)
}

/// StyleGAN2 R1: γ/2 · mean over the batch of ‖∂D/∂x‖² on reals, with `d_out_real` = D(x) and x
/// tracked. Only d/dx is walked (no weight gradients), but the result is differentiable w.r.t.
/// D's parameters (created with `create_graph`).
pub fn r1_penalty(d_out_real: &Tensor, reals: &Tensor, gamma: f64) -> Result<Tensor> {
    grad_sq_norms("r1_penalty", d_out_real, reals)?
        .mean_all()?
        .affine(gamma / 2.0, 0.0)
}

/// [`r1_penalty`] with D given as a closure: the reals are made a variable and D run on them.
pub fn r1_penalty_with(
    reals: &Tensor,
    gamma: f64,
    d: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let x = reals.detach().variable();
    let out = {
        let _mode = set_grad_enabled(true);
        d(&x)?
    };
    r1_penalty(&out, &x, gamma)
}

/// StyleGAN2 path-length regularisation (stylegan2-ada-pytorch `StyleGAN2Loss`):
/// noise' = noise/√(H·W) (noise standard normal, shaped like the images [N, C, H, W]),
/// g = ∂Σ(img·noise')/∂ws (ws [N, num_ws, w_dim], the tensor the images were computed from),
/// lengths = √(mean over num_ws of Σ over w_dim g²),
/// new mean = pl_mean + decay·(mean(lengths) − pl_mean) (kept differentiable, as there),
/// penalty = pl_weight · mean over the batch of (lengths − new mean)².
/// Returns the penalty and the updated running mean (decay 0.01, weight 2 in StyleGAN2).
pub fn path_length_penalty(
    fake_images: &Tensor,
    ws: &Tensor,
    noise: &Tensor,
    pl_mean: f64,
    decay: f64,
    pl_weight: f64,
) -> Result<(Tensor, f64)> {
    let op = "path_length_penalty";
    let s = fake_images.shape();
    if s.len() != 4 || noise.shape() != s {
        return Err(Error::shape(
            op,
            format!(
                "images {s:?} and noise {:?} must be equal and [N, C, H, W]",
                noise.shape()
            ),
        ));
    }
    if ws.rank() != 3 || ws.shape()[0] != s[0] {
        return Err(Error::shape(
            op,
            format!(
                "ws {:?} must be [N, num_ws, w_dim] with N = {}",
                ws.shape(),
                s[0]
            ),
        ));
    }
    if !ws.requires_grad() || !fake_images.requires_grad() {
        return Err(Error::invalid(
            op,
            "ws and the images made from them must be tracked: make ws a variable (or compute \
             them from one) and run synthesis with grad mode on",
        ));
    }
    let scaled = noise
        .detach()
        .affine(1.0 / ((s[2] * s[3]) as f64).sqrt(), 0.0)?;
    // ∂Σ(img·ñ)/∂ws is the backward of img seeded with ñ
    let g = grad(
        std::slice::from_ref(fake_images),
        Some(&[scaled]),
        std::slice::from_ref(ws),
        true,
    )?
    .pop()
    .ok_or_else(|| Error::Autograd(format!("{op}: no gradient returned")))?;
    let lengths = g
        .sqr()?
        .sum_axes(&[2], false)?
        .mean_axes(&[1], false)?
        .sqrt()?;
    let mean = lengths.mean_all()?.affine(decay, (1.0 - decay) * pl_mean)?;
    let new_mean = mean.item()?;
    let penalty = lengths
        .sub(&mean)?
        .sqr()?
        .mean_all()?
        .affine(pl_weight, 0.0)?;
    Ok((penalty, new_mean))
}
