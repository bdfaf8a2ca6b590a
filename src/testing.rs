//! Numerical checking helpers shared by the crate's tests and by users auditing their own ops:
//! central finite differences in f64, first and second order.

use crate::Result;
use crate::autograd::{GradOptions, grad_with};

/// Finite differences also check that an input the function ignores gets a zero gradient, so
/// the checks allow unused inputs (a bias that a gradient penalty does not see, say).
fn grad(
    outputs: &[Tensor],
    grad_outputs: Option<&[Tensor]>,
    inputs: &[Tensor],
    create_graph: bool,
) -> Result<Vec<Tensor>> {
    grad_with(
        outputs,
        grad_outputs,
        inputs,
        GradOptions {
            create_graph,
            allow_unused: true,
        },
    )
}
use crate::tensor::{DType, Tensor};

/// Worst mismatch found by a gradient check.
#[derive(Debug, Clone, Copy)]
pub struct GradCheck {
    /// max over elements of |analytic − numeric| / max(1, |numeric|)
    pub max_err: f64,
    /// how many derivatives were compared
    pub compared: usize,
}

/// Deterministic pseudo-random f64 values in [-1, 1) (SplitMix64), for seeds and projections.
pub fn rand_vals(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// A random f64 tensor with values in [-1, 1).
pub fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f64s(&rand_vals(n, seed), shape, DType::F64).expect("length matches")
}

/// Reduce f's output to a scalar with a fixed random projection, so every output element matters.
fn project(y: &Tensor, seed: u64) -> Result<Tensor> {
    let w = Tensor::from_f64s(
        &rand_vals(y.elem_count(), seed ^ 0xABCD),
        y.shape(),
        y.dtype(),
    )?;
    y.mul(&w)?.sum_all()
}

fn perturbed(inputs: &[Tensor], i: usize, j: usize, delta: f64) -> Result<Vec<Tensor>> {
    let mut vals = inputs[i].to_vec_f64()?;
    vals[j] += delta;
    let mut v = inputs.to_vec();
    v[i] = Tensor::from_f64s(&vals, inputs[i].shape(), inputs[i].dtype())?;
    Ok(v)
}

/// Compare the autograd gradient of `f` (projected to a scalar) with central differences, for
/// every element of every input. Inputs should be f64.
pub fn check_grad(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    eps: f64,
) -> Result<GradCheck> {
    let vars: Vec<Tensor> = inputs.iter().map(|t| t.variable()).collect();
    let loss = project(&f(&vars)?, 7)?;
    let analytic = grad(&[loss], None, &vars, false)?;
    let scalar =
        |xs: &[Tensor]| -> Result<f64> { crate::autograd::no_grad(|| project(&f(xs)?, 7)?.item()) };
    let mut worst = GradCheck {
        max_err: 0.0,
        compared: 0,
    };
    for (i, a) in analytic.iter().enumerate() {
        let av = a.to_vec_f64()?;
        for (j, &aj) in av.iter().enumerate() {
            let num = (scalar(&perturbed(inputs, i, j, eps)?)?
                - scalar(&perturbed(inputs, i, j, -eps)?)?)
                / (2.0 * eps);
            let err = (aj - num).abs() / num.abs().max(1.0);
            worst.max_err = worst.max_err.max(err);
            worst.compared += 1;
        }
    }
    Ok(worst)
}

/// Second order: with g(x) = ∂L/∂x computed with `create_graph`, compare the autograd gradient of
/// h(x) = ⟨g(x), v⟩ (v fixed random) with central differences of h, which itself uses only first
/// derivatives. This is what WGAN-GP, R1 and path-length regularisation rely on.
pub fn check_grad2(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    eps: f64,
) -> Result<GradCheck> {
    let h = |xs: &[Tensor], create: bool| -> Result<Tensor> {
        let vars: Vec<Tensor> = xs.iter().map(|t| t.variable()).collect();
        let loss = project(&f(&vars)?, 11)?;
        let gs = grad(&[loss], None, &vars, true)?;
        let mut total: Option<Tensor> = None;
        for (k, g) in gs.iter().enumerate() {
            let t = project(g, 100 + k as u64)?;
            total = Some(match total {
                Some(p) => p.add(&t)?,
                None => t,
            });
        }
        let total = total.unwrap_or_else(|| Tensor::scalar(0.0, DType::F64));
        if create {
            Ok(total)
        } else {
            Ok(total.detach())
        }
    };
    // analytic: differentiate h through the recorded first-order graph
    let vars: Vec<Tensor> = inputs.iter().map(|t| t.variable()).collect();
    let loss = project(&f(&vars)?, 11)?;
    let gs = grad(&[loss], None, &vars, true)?;
    let mut hv: Option<Tensor> = None;
    for (k, g) in gs.iter().enumerate() {
        let t = project(g, 100 + k as u64)?;
        hv = Some(match hv {
            Some(p) => p.add(&t)?,
            None => t,
        });
    }
    let hv = hv.unwrap_or_else(|| Tensor::scalar(0.0, DType::F64));
    let analytic = grad(&[hv], None, &vars, false)?;
    let mut worst = GradCheck {
        max_err: 0.0,
        compared: 0,
    };
    for (i, a) in analytic.iter().enumerate() {
        let av = a.to_vec_f64()?;
        for (j, &aj) in av.iter().enumerate() {
            let hp = h(&perturbed(inputs, i, j, eps)?, false)?.item()?;
            let hm = h(&perturbed(inputs, i, j, -eps)?, false)?.item()?;
            let num = (hp - hm) / (2.0 * eps);
            let err = (aj - num).abs() / num.abs().max(1.0);
            worst.max_err = worst.max_err.max(err);
            worst.compared += 1;
        }
    }
    Ok(worst)
}
