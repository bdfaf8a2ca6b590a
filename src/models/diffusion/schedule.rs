//! The Gaussian diffusion process's numbers, as guided-diffusion's `gaussian_diffusion.py` and
//! `respace.py` compute them: β schedules (linear scaled by 1000/T, cosine), every derived
//! coefficient in f64 (cast to the model's dtype only when gathered per timestep), the fixed
//! variances, and timestep respacing (`space_timesteps`, `SpacedDiffusion`).

use crate::{Error, Result};

const OP: &str = "diffusion_schedule";

/// Named β schedules (`get_named_beta_schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetaSchedule {
    /// Ho et al.'s linear schedule scaled to T steps: β from 1e-4·1000/T to 0.02·1000/T.
    Linear,
    /// Nichol & Dhariwal's cosine ᾱ(t) = cos²((t/T + 0.008)/1.008 · π/2), β capped at 0.999.
    Cosine,
}

impl BetaSchedule {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(BetaSchedule::Linear),
            "cosine" => Ok(BetaSchedule::Cosine),
            _ => Err(Error::invalid(
                OP,
                format!("unknown noise schedule {s:?} (linear or cosine)"),
            )),
        }
    }

    /// The T betas, in f64.
    pub fn betas(self, steps: usize) -> Result<Vec<f64>> {
        if steps < 2 {
            return Err(Error::invalid(
                OP,
                format!("a diffusion process needs at least 2 steps, not {steps}"),
            ));
        }
        Ok(match self {
            BetaSchedule::Linear => {
                let scale = 1000.0 / steps as f64;
                let (lo, hi) = (scale * 0.0001, scale * 0.02);
                // numpy's linspace: start + i·step, the last value exactly `hi`
                let step = (hi - lo) / (steps - 1) as f64;
                (0..steps)
                    .map(|i| {
                        if i == steps - 1 {
                            hi
                        } else {
                            lo + i as f64 * step
                        }
                    })
                    .collect()
            }
            BetaSchedule::Cosine => {
                let abar = |t: f64| {
                    ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                        .cos()
                        .powi(2)
                };
                (0..steps)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
                        (1.0 - abar(t2) / abar(t1)).min(0.999)
                    })
                    .collect()
            }
        })
    }
}

/// The variance of the reverse step when σ is not learned (`ModelVarType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedVariance {
    /// β_t, with the first step's replaced by the posterior variance at t = 1 (guided-diffusion's
    /// choice whenever `learn_sigma` and `sigma_small` are off: the study's flags).
    Large,
    /// The posterior variance β̃_t (log clipped at t = 0).
    Small,
}

/// Every per-step coefficient of a (possibly respaced) process, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub alphas_cumprod_prev: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    pub posterior_variance: Vec<f64>,
    pub posterior_log_variance_clipped: Vec<f64>,
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
    /// The reverse step's variance and its log for the chosen [`FixedVariance`].
    pub model_variance: Vec<f64>,
    pub model_log_variance: Vec<f64>,
    pub variance: FixedVariance,
    /// For each step of this process, the timestep of the original process the model is
    /// conditioned on (identity unless respaced).
    pub timestep_map: Vec<usize>,
}

impl Schedule {
    /// The process of `betas` (each in (0, 1]).
    pub fn new(betas: Vec<f64>, variance: FixedVariance) -> Result<Self> {
        let n = betas.len();
        Self::with_map(betas, variance, (0..n).collect())
    }

    /// The study's: linear β, 4000 steps, fixed-large variance.
    pub fn study() -> Self {
        let betas = BetaSchedule::Linear.betas(4000).expect("4000 ≥ 2");
        Self::new(betas, FixedVariance::Large).expect("linear betas lie in (0, 1]")
    }

    fn with_map(
        betas: Vec<f64>,
        variance: FixedVariance,
        timestep_map: Vec<usize>,
    ) -> Result<Self> {
        let n = betas.len();
        if n < 2 {
            return Err(Error::invalid(
                OP,
                format!("a diffusion process needs at least 2 steps, not {n}"),
            ));
        }
        if let Some(b) = betas.iter().find(|&&b| !(b > 0.0 && b <= 1.0)) {
            return Err(Error::invalid(
                OP,
                format!("every β must lie in (0, 1], found {b}"),
            ));
        }
        let mut ac = Vec::with_capacity(n);
        let mut p = 1.0;
        for &b in &betas {
            p *= 1.0 - b;
            ac.push(p);
        }
        let mut acp = vec![1.0];
        acp.extend_from_slice(&ac[..n - 1]);
        let map = |f: &dyn Fn(usize) -> f64| (0..n).map(f).collect::<Vec<f64>>();
        let pv = map(&|i| betas[i] * (1.0 - acp[i]) / (1.0 - ac[i]));
        let pv_clipped: Vec<f64> = (0..n).map(|i| if i == 0 { pv[1] } else { pv[i] }).collect();
        let (model_variance, model_log_variance) = match variance {
            FixedVariance::Large => {
                let v: Vec<f64> = (0..n)
                    .map(|i| if i == 0 { pv[1] } else { betas[i] })
                    .collect();
                let l = v.iter().map(|x| x.ln()).collect();
                (v, l)
            }
            FixedVariance::Small => (pv.clone(), pv_clipped.iter().map(|x| x.ln()).collect()),
        };
        Ok(Schedule {
            sqrt_alphas_cumprod: ac.iter().map(|a| a.sqrt()).collect(),
            sqrt_one_minus_alphas_cumprod: ac.iter().map(|a| (1.0 - a).sqrt()).collect(),
            sqrt_recip_alphas_cumprod: ac.iter().map(|a| (1.0 / a).sqrt()).collect(),
            sqrt_recipm1_alphas_cumprod: ac.iter().map(|a| (1.0 / a - 1.0).sqrt()).collect(),
            posterior_log_variance_clipped: pv_clipped.iter().map(|x| x.ln()).collect(),
            posterior_mean_coef1: map(&|i| betas[i] * acp[i].sqrt() / (1.0 - ac[i])),
            posterior_mean_coef2: map(&|i| {
                (1.0 - acp[i]) * (1.0 - betas[i]).sqrt() / (1.0 - ac[i])
            }),
            posterior_variance: pv,
            model_variance,
            model_log_variance,
            alphas_cumprod: ac,
            alphas_cumprod_prev: acp,
            betas,
            variance,
            timestep_map,
        })
    }

    pub fn num_steps(&self) -> usize {
        self.betas.len()
    }

    /// `SpacedDiffusion`: the process that keeps only the steps `use_timesteps` (of this process)
    /// with β's recomputed so ᾱ matches at the kept steps; the model keeps seeing the original
    /// timesteps.
    pub fn respaced(&self, use_timesteps: &[usize]) -> Result<Self> {
        let mut keep = use_timesteps.to_vec();
        keep.sort_unstable();
        keep.dedup();
        if let Some(&bad) = keep.iter().find(|&&i| i >= self.num_steps()) {
            return Err(Error::invalid(
                OP,
                format!("step {bad} outside a process of {} steps", self.num_steps()),
            ));
        }
        let mut last = 1.0;
        let mut betas = Vec::with_capacity(keep.len());
        for &i in &keep {
            let a = self.alphas_cumprod[i];
            betas.push(1.0 - a / last);
            last = a;
        }
        let map = keep.iter().map(|&i| self.timestep_map[i]).collect();
        Self::with_map(betas, self.variance, map)
    }
}

/// guided-diffusion's `space_timesteps`: `spec` is "ddimN" (the one integer stride giving
/// exactly N steps) or comma-separated counts, one per equal section of the T steps, each spaced
/// evenly with Python's round-half-to-even. Sorted step indices.
pub fn space_timesteps(steps: usize, spec: &str) -> Result<Vec<usize>> {
    let bad = |why: String| Error::invalid("space_timesteps", why);
    if let Some(n) = spec.strip_prefix("ddim") {
        let want: usize = n
            .parse()
            .map_err(|_| bad(format!("{spec:?}: expected ddimN with N a number of steps")))?;
        for stride in 1..steps {
            if steps.div_ceil(stride) == want {
                return Ok((0..steps).step_by(stride).collect());
            }
        }
        return Err(bad(format!(
            "cannot take exactly {want} of {steps} steps with an integer stride"
        )));
    }
    let counts = spec
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            bad(format!(
                "{spec:?}: expected step counts like 100 or 10,20,30"
            ))
        })?;
    space_sections(steps, &counts)
}

/// `space_timesteps` with the section counts given as numbers.
pub fn space_sections(steps: usize, counts: &[usize]) -> Result<Vec<usize>> {
    let bad = |why: String| Error::invalid("space_timesteps", why);
    if counts.is_empty() || counts.contains(&0) {
        return Err(bad(format!(
            "every section needs at least one step, got {counts:?}"
        )));
    }
    let (per, extra) = (steps / counts.len(), steps % counts.len());
    let mut start = 0;
    let mut all = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        let size = per + usize::from(i < extra);
        if size < count {
            return Err(bad(format!(
                "cannot take {count} steps from a section of {size} (of {steps} steps in all)"
            )));
        }
        let stride = if count <= 1 {
            1.0
        } else {
            (size - 1) as f64 / (count - 1) as f64
        };
        let mut cur = 0.0f64;
        for _ in 0..count {
            all.push(start + cur.round_ties_even() as usize);
            cur += stride;
        }
        start += size;
    }
    all.sort_unstable();
    all.dedup();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respacing_every_step_is_the_same_process() {
        let s = Schedule::new(
            BetaSchedule::Linear.betas(50).unwrap(),
            FixedVariance::Large,
        )
        .unwrap();
        let r = s.respaced(&(0..50).collect::<Vec<_>>()).unwrap();
        for (a, b) in s.betas.iter().zip(&r.betas) {
            assert!((a - b).abs() < 1e-12);
        }
        assert_eq!(r.timestep_map, s.timestep_map);
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(space_timesteps(100, "0").is_err());
        assert!(space_timesteps(100, "101").is_err());
        assert!(space_timesteps(100, "ddim99").is_err());
        assert!(space_timesteps(100, "ten").is_err());
        assert!(BetaSchedule::Linear.betas(1).is_err());
        assert!(Schedule::new(vec![0.1, 1.5], FixedVariance::Large).is_err());
    }
}
