//! `affine_grid` and bilinear `grid_sample`, as torch (`torch.nn.functional`), differentiable
//! with respect to both the image and the grid, to any order (StyleGAN2-ADA's augmentation runs
//! inside the R1 penalty, which differentiates twice).
//!
//! The bilinear interpolation is written in differentiable ops: the integer corner positions are
//! constants taken from the (detached) sampling positions, the corner values are gathered from
//! the image with an index map (`gather_map`, linear, adjoint `scatter_add_map`), and the weights
//! are differentiable functions of the grid. Gradients of gradients follow from those ops.
//! The sampling positions' kinks (integer pixel positions, the border clamp, reflection folds)
//! have measure zero, as in torch.

use std::sync::Arc;

use crate::ops::view::ZERO;
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// What `grid_sample` reads outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridPadding {
    /// Zero outside the image.
    Zeros,
    /// Positions clamped to the image (edge pixels repeat).
    Border,
    /// Positions reflected at the image edges, then clamped.
    Reflection,
}

/// `n` points of a normalised coordinate axis: torch's `linspace(-1, 1, n)`, scaled by
/// `(n−1)/n` without `align_corners` (pixel centres); a single point sits at 0.
fn base_coords(n: usize, align_corners: bool) -> Vec<f64> {
    if n <= 1 {
        return vec![0.0; n];
    }
    (0..n)
        .map(|i| {
            let v = -1.0 + 2.0 * i as f64 / (n - 1) as f64;
            if align_corners {
                v
            } else {
                v * (n - 1) as f64 / n as f64
            }
        })
        .collect()
}

/// Sampling grid `[N, H, W, 2]` (x then y, in [-1, 1] units) of the affine maps `theta`
/// `[N, 2, 3]` for an output of `size = (N, C, H, W)`, as torch `affine_grid`. Differentiable
/// with respect to `theta`.
pub fn affine_grid(
    theta: &Tensor,
    size: (usize, usize, usize, usize),
    align_corners: bool,
) -> Result<Tensor> {
    const OP: &str = "affine_grid";
    let (n, _c, h, w) = size;
    if theta.shape() != [n, 2, 3] {
        return Err(Error::shape(
            OP,
            format!(
                "theta must be [N, 2, 3] = [{n}, 2, 3] for size {size:?}, got {:?}",
                theta.shape()
            ),
        ));
    }
    let (xs, ys) = (base_coords(w, align_corners), base_coords(h, align_corners));
    let mut base = Vec::with_capacity(h * w * 3);
    for &y in &ys {
        for &x in &xs {
            base.extend_from_slice(&[x, y, 1.0]);
        }
    }
    let base = Tensor::from_f64s(&base, &[1, h * w, 3], theta.dtype())?;
    // [1, HW, 3] · [N, 3, 2] → [N, HW, 2]
    base.matmul(&theta.transpose(1, 2)?)?.reshape(&[n, h, w, 2])
}

/// Pixel coordinate along an axis of `size` pixels from normalised `g` (differentiable).
fn unnormalize(g: &Tensor, size: usize, align_corners: bool) -> Result<Tensor> {
    let s = size as f64;
    if align_corners {
        g.affine((s - 1.0) / 2.0, (s - 1.0) / 2.0)
    } else {
        g.affine(s / 2.0, (s - 1.0) / 2.0)
    }
}

/// Reflection then clamp (torch's `reflect_coordinates` + `clip_coordinates`) at one value,
/// returned as the local affine map `v ↦ a·v + b`, so the result stays differentiable.
fn reflect_affine(v: f64, size: usize, align_corners: bool) -> (f64, f64) {
    let s = size as f64;
    let (twice_low, twice_high) = if align_corners {
        (0.0, 2.0 * (s - 1.0))
    } else {
        (-1.0, 2.0 * s - 1.0)
    };
    let (mut a, mut b) = if twice_low == twice_high {
        (0.0, 0.0)
    } else {
        let min = twice_low / 2.0;
        let span = (twice_high - twice_low) / 2.0;
        let sign = if v - min < 0.0 { -1.0 } else { 1.0 };
        let folded = sign * (v - min);
        let flips = (folded / span).floor();
        if flips.rem_euclid(2.0) == 0.0 {
            // extra + min, extra = folded − flips·span
            (sign, -sign * min - flips * span + min)
        } else {
            // span − extra + min
            (-sign, span + sign * min + flips * span + min)
        }
    };
    let r = a * v + b;
    if r < 0.0 {
        (a, b) = (0.0, 0.0);
    } else if r > s - 1.0 {
        (a, b) = (0.0, s - 1.0);
    }
    (a, b)
}

/// Apply the padding mode to pixel coordinates `p` (shape `[N, 1, Ho, Wo]`).
fn pad_coords(p: &Tensor, size: usize, mode: GridPadding, align_corners: bool) -> Result<Tensor> {
    match mode {
        GridPadding::Zeros => Ok(p.clone()),
        GridPadding::Border => p.clamp(0.0, size as f64 - 1.0),
        GridPadding::Reflection => {
            let v = p.to_vec_f64()?;
            let (a, b): (Vec<f64>, Vec<f64>) = v
                .iter()
                .map(|&v| reflect_affine(v, size, align_corners))
                .unzip();
            let a = Tensor::from_f64s(&a, p.shape(), p.dtype())?;
            let b = Tensor::from_f64s(&b, p.shape(), p.dtype())?;
            p.mul(&a)?.add(&b)
        }
    }
}

/// Bilinear sampling of `x` `[N, C, H, W]` at `grid` `[N, Ho, Wo, 2]` (x then y, −1 and 1 are
/// the image's edges — pixel edges, or pixel centres with `align_corners`), as torch
/// `grid_sample(mode='bilinear')`. Output `[N, C, Ho, Wo]`; differentiable w.r.t. `x` and
/// `grid`, to any order.
pub fn grid_sample(
    x: &Tensor,
    grid: &Tensor,
    padding: GridPadding,
    align_corners: bool,
) -> Result<Tensor> {
    const OP: &str = "grid_sample";
    let (n, c, h, w) = match x.shape() {
        [n, c, h, w] => (*n, *c, *h, *w),
        s => {
            return Err(Error::shape(
                OP,
                format!("input must be [N, C, H, W], got {s:?}"),
            ));
        }
    };
    let (ho, wo) = match grid.shape() {
        [gn, ho, wo, 2] if *gn == n => (*ho, *wo),
        s => {
            return Err(Error::shape(
                OP,
                format!(
                    "grid must be [N, Ho, Wo, 2] with N = {n} (input {:?}), got {s:?}",
                    x.shape()
                ),
            ));
        }
    };
    if x.dtype() != grid.dtype() {
        return Err(Error::DType {
            op: OP,
            msg: format!(
                "input {} and grid {}",
                x.dtype().name(),
                grid.dtype().name()
            ),
        });
    }
    if x.elem_count() >= ZERO as usize || n * c * ho * wo >= ZERO as usize {
        return Err(Error::invalid(OP, "tensor too large for 32-bit index maps"));
    }
    let comp = |i: usize| -> Result<Tensor> { grid.narrow(3, i, 1)?.reshape(&[n, 1, ho, wo]) };
    let px = pad_coords(
        &unnormalize(&comp(0)?, w, align_corners)?,
        w,
        padding,
        align_corners,
    )?;
    let py = pad_coords(
        &unnormalize(&comp(1)?, h, align_corners)?,
        h,
        padding,
        align_corners,
    )?;
    // integer corners: constants from the detached positions
    let fx: Vec<f64> = px.to_vec_f64()?.iter().map(|v| v.floor()).collect();
    let fy: Vec<f64> = py.to_vec_f64()?.iter().map(|v| v.floor()).collect();
    let dt: DType = x.dtype();
    let tx = px.sub(&Tensor::from_f64s(&fx, px.shape(), dt)?)?;
    let ty = py.sub(&Tensor::from_f64s(&fy, py.shape(), dt)?)?;
    let (ux, uy) = (tx.affine(-1.0, 1.0)?, ty.affine(-1.0, 1.0)?);
    let corner = |dx: i64, dy: i64| -> Result<Tensor> {
        let mut map = Vec::with_capacity(n * c * ho * wo);
        for b in 0..n {
            for ch in 0..c {
                let plane = (b * c + ch) * h * w;
                for k in 0..ho * wo {
                    // saturating: a huge or non-finite position lands outside, never overflows
                    let xi = (fx[b * ho * wo + k] as i64).saturating_add(dx);
                    let yi = (fy[b * ho * wo + k] as i64).saturating_add(dy);
                    let inside = xi >= 0 && yi >= 0 && (xi as usize) < w && (yi as usize) < h;
                    map.push(if inside {
                        (plane + yi as usize * w + xi as usize) as u32
                    } else {
                        ZERO
                    });
                }
            }
        }
        x.gather_map(Arc::new(map), &[n, c, ho, wo])
    };
    let nw = corner(0, 0)?.mul(&ux.mul(&uy)?)?;
    let ne = corner(1, 0)?.mul(&tx.mul(&uy)?)?;
    let sw = corner(0, 1)?.mul(&ux.mul(&ty)?)?;
    let se = corner(1, 1)?.mul(&tx.mul(&ty)?)?;
    nw.add(&ne)?.add(&sw)?.add(&se)
}
