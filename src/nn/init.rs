//! Parameter initialisers with PyTorch's meanings (`torch.nn.init`), drawn from a seeded generator
//! in f64 and stored as the parameter's dtype.

use rand::RngExt;
use rand::rngs::StdRng;

use crate::{Error, Result};

/// Which fan a Kaiming initialiser preserves (PyTorch's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    FanIn,
    FanOut,
}

/// How a parameter's first values are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Constant(f64),
    /// N(mean, std²).
    Normal {
        mean: f64,
        std: f64,
    },
    /// U[lo, hi).
    Uniform {
        lo: f64,
        hi: f64,
    },
    /// He normal: std = gain / √fan, gain = √(2 / (1 + a²)) (leaky ReLU slope `a`; 0 for ReLU).
    KaimingNormal {
        a: f64,
        mode: FanMode,
    },
    /// He uniform: bound = √3 · gain / √fan. `a = √5` with `FanIn` is PyTorch's default for
    /// `Linear` and `Conv2d` weights (bound 1/√fan_in).
    KaimingUniform {
        a: f64,
        mode: FanMode,
    },
    /// Glorot normal: std = gain · √(2 / (fan_in + fan_out)).
    XavierNormal {
        gain: f64,
    },
    /// Glorot uniform: bound = gain · √(6 / (fan_in + fan_out)).
    XavierUniform {
        gain: f64,
    },
    /// N(mean, std²) restricted to [a, b] (absolute bounds, as `trunc_normal_`; timm and Swin use
    /// std 0.02 with a = −2, b = 2).
    TruncNormal {
        mean: f64,
        std: f64,
        a: f64,
        b: f64,
    },
}

impl Init {
    /// Normal with mean 0.
    pub fn normal(std: f64) -> Init {
        Init::Normal { mean: 0.0, std }
    }
    /// timm's `trunc_normal_(std=std)`: mean 0, cut at ±2 (absolute).
    pub fn trunc_normal(std: f64) -> Init {
        Init::TruncNormal {
            mean: 0.0,
            std,
            a: -2.0,
            b: 2.0,
        }
    }
    /// PyTorch's default weight init for `Linear`/`Conv2d` (kaiming uniform, a = √5).
    pub fn torch_default_weight() -> Init {
        Init::KaimingUniform {
            a: 5f64.sqrt(),
            mode: FanMode::FanIn,
        }
    }

    /// Draw `shape`'s values.
    pub fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f64>> {
        let n: usize = shape.iter().product();
        let normal = |rng: &mut StdRng, mean: f64, std: f64| -> f64 {
            mean + std * rng.sample::<f64, _>(rand_distr::StandardNormal)
        };
        let uniform = |rng: &mut StdRng, lo: f64, hi: f64| lo + (hi - lo) * rng.random::<f64>();
        Ok(match *self {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Constant(c) => vec![c; n],
            Init::Normal { mean, std } => (0..n).map(|_| normal(rng, mean, std)).collect(),
            Init::Uniform { lo, hi } => (0..n).map(|_| uniform(rng, lo, hi)).collect(),
            Init::KaimingNormal { a, mode } => {
                let std = leaky_relu_gain(a) / fan(shape, mode)?.sqrt();
                (0..n).map(|_| normal(rng, 0.0, std)).collect()
            }
            Init::KaimingUniform { a, mode } => {
                let bound = 3f64.sqrt() * leaky_relu_gain(a) / fan(shape, mode)?.sqrt();
                (0..n).map(|_| uniform(rng, -bound, bound)).collect()
            }
            Init::XavierNormal { gain } => {
                let (fi, fo) = fans(shape)?;
                let std = gain * (2.0 / (fi + fo) as f64).sqrt();
                (0..n).map(|_| normal(rng, 0.0, std)).collect()
            }
            Init::XavierUniform { gain } => {
                let (fi, fo) = fans(shape)?;
                let bound = gain * (6.0 / (fi + fo) as f64).sqrt();
                (0..n).map(|_| uniform(rng, -bound, bound)).collect()
            }
            Init::TruncNormal { mean, std, a, b } => {
                // Rejection sampling is exact; refuse intervals so narrow it would spin.
                let cdf = |x: f64| 0.5 * (1.0 + crate::tensor::dtype::erf_f64(x / 2f64.sqrt()));
                let mass = if std > 0.0 {
                    cdf((b - mean) / std) - cdf((a - mean) / std)
                } else {
                    0.0
                };
                if !(a < b) || !(mass > 1e-3) {
                    return Err(Error::invalid(
                        "trunc_normal",
                        format!(
                            "interval [{a}, {b}] holds too little of N({mean}, {std}²) to sample"
                        ),
                    ));
                }
                (0..n)
                    .map(|_| {
                        loop {
                            let v = normal(rng, mean, std);
                            if (a..=b).contains(&v) {
                                break v;
                            }
                        }
                    })
                    .collect()
            }
        })
    }
}

/// PyTorch's `calculate_gain('leaky_relu', a)`.
pub fn leaky_relu_gain(a: f64) -> f64 {
    (2.0 / (1.0 + a * a)).sqrt()
}

/// (fan_in, fan_out) as PyTorch computes them: dims 1 and 0 times the receptive field.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::shape(
            "init",
            format!("fan in/out need at least 2 dimensions, shape is {shape:?}"),
        ));
    }
    let receptive: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

fn fan(shape: &[usize], mode: FanMode) -> Result<f64> {
    let (fi, fo) = fans(shape)?;
    let f = match mode {
        FanMode::FanIn => fi,
        FanMode::FanOut => fo,
    };
    if f == 0 {
        return Err(Error::shape(
            "init",
            format!("zero fan for shape {shape:?}"),
        ));
    }
    Ok(f as f64)
}
