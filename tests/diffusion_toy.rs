//! The samplers on a 1-D toy distribution whose optimal ε-predictor is known in closed form:
//! data N(μ, s²) gives E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ). Sampling with that
//! predictor, every sampler is a linear-Gaussian chain whose output mean and variance follow
//! exactly from the schedule (computed here in f64): the samples must show those moments
//! (ancestral over all 4000 steps of the study's process, respaced to 100 steps, DDIM with 50),
//! the full ancestral chain must give back the data's N(μ, s²), and a seed must fix the samples.

use brainsynth::models::diffusion::{Diffusion, Sampler, Schedule, space_timesteps};
use brainsynth::{DType, Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

const MU: f64 = 0.3;
const S: f64 = 0.2;
const N: usize = 4000;

fn moments(x: &Tensor) -> (f64, f64) {
    let v = x.to_vec_f64().unwrap();
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

/// Mean and standard deviation of the chain `sampler` runs with the optimal predictor, from
/// x_T ~ N(0, 1): each step is x' = a·x + b + σ·z.
fn chain_moments(d: &Diffusion, sampler: Sampler) -> (f64, f64) {
    let (p, ddim) = match sampler {
        Sampler::Ancestral => (d.clone(), false),
        Sampler::Respaced(k) => (
            d.respaced(&space_timesteps(4000, &k.to_string()).unwrap())
                .unwrap(),
            false,
        ),
        Sampler::Ddim(k) => (
            d.respaced(&space_timesteps(4000, &format!("ddim{k}")).unwrap())
                .unwrap(),
            true,
        ),
    };
    let s = &p.schedule;
    let (mut m, mut v) = (0.0, 1.0);
    for i in (0..s.betas.len()).rev() {
        let ab = s.alphas_cumprod[i];
        let k = (1.0 - ab).sqrt() / (ab * S * S + 1.0 - ab);
        // ε̂ = k·x − k√ᾱ·μ and x̂₀ = A·x + B
        let (ea, eb) = (k, -k * ab.sqrt() * MU);
        let a0 = s.sqrt_recip_alphas_cumprod[i] - s.sqrt_recipm1_alphas_cumprod[i] * ea;
        let b0 = -s.sqrt_recipm1_alphas_cumprod[i] * eb;
        let (a, b, var) = if ddim {
            let (c0, ce) = (
                s.alphas_cumprod_prev[i].sqrt(),
                (1.0 - s.alphas_cumprod_prev[i]).sqrt(),
            );
            (c0 * a0 + ce * ea, c0 * b0 + ce * eb, 0.0)
        } else {
            let (c1, c2) = (s.posterior_mean_coef1[i], s.posterior_mean_coef2[i]);
            let var = if i == 0 {
                0.0
            } else {
                s.model_log_variance[i].exp()
            };
            (c1 * a0 + c2, c1 * b0, var)
        };
        m = a * m + b;
        v = a * a * v + var;
    }
    (m, v.sqrt())
}

#[test]
fn samplers_reproduce_a_gaussian_toy_distribution() {
    let d = Diffusion::new(Schedule::study());
    let ac = d.schedule.alphas_cumprod.clone();
    // the optimal predictor; t are the original process's timesteps
    let eps = |x: &Tensor, t: &Tensor| -> Result<Tensor> {
        let tv = t.to_vec_f64()?;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for &ti in &tv {
            let ab = ac[ti as usize];
            let k = (1.0 - ab).sqrt() / (ab * S * S + 1.0 - ab);
            a.push(k);
            b.push(-k * ab.sqrt() * MU);
        }
        let n = tv.len();
        let a = Tensor::from_f64s(&a, &[n, 1, 1, 1], x.dtype())?;
        let b = Tensor::from_f64s(&b, &[n, 1, 1, 1], x.dtype())?;
        x.mul(&a)?.add(&b)
    };
    // the full chain is the data distribution (to discretisation error)
    let (m, s) = chain_moments(&d, Sampler::Ancestral);
    assert!(
        (m - MU).abs() < 1e-3 && (s - S).abs() < 2e-3,
        "ancestral chain: {m} ± {s}"
    );
    // sampling error of N draws: 0.2/√4000 ≈ 0.003 on the mean, 0.2/√8000 ≈ 0.0022 on the std
    for sampler in [
        Sampler::Ancestral,
        Sampler::Respaced(100),
        Sampler::Ddim(50),
    ] {
        let mut rng = StdRng::seed_from_u64(7);
        let x = d
            .sample(&eps, sampler, &[N, 1, 1, 1], DType::F32, &mut rng)
            .unwrap();
        let (m, s) = moments(&x);
        let (wm, ws) = chain_moments(&d, sampler);
        println!(
            "{sampler:?}: mean {m:.4} (chain {wm:.4}, data {MU}), std {s:.4} (chain {ws:.4}, data {S})"
        );
        assert!((m - wm).abs() < 0.012, "{sampler:?}: mean {m} vs {wm}");
        assert!((s - ws).abs() < 0.009, "{sampler:?}: std {s} vs {ws}");
    }
    // same seed, same samples
    let run = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        d.sample(
            &eps,
            Sampler::Respaced(20),
            &[8, 1, 1, 1],
            DType::F32,
            &mut rng,
        )
        .unwrap()
        .to_vec_f32()
        .unwrap()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn samplers_refuse_impossible_step_counts() {
    let d = Diffusion::new(Schedule::study());
    let eps = |x: &Tensor, _t: &Tensor| Ok(x.clone());
    let mut rng = StdRng::seed_from_u64(0);
    for s in [
        Sampler::Respaced(0),
        Sampler::Respaced(4001),
        Sampler::Ddim(0),
        Sampler::Ddim(3999),
    ] {
        let e = d.sample(&eps, s, &[1, 1, 1, 1], DType::F32, &mut rng);
        assert!(e.is_err(), "{s:?} accepted");
        println!("{s:?}: {}", e.err().unwrap());
    }
    for bad in ["respaced:0", "ddim:", "ddim:x", "euler", "respaced:-3"] {
        assert!(Sampler::parse(bad).is_err(), "{bad} parsed");
    }
    assert_eq!(Sampler::parse("ddim:50").unwrap(), Sampler::Ddim(50));
    assert_eq!(
        Sampler::parse("respaced:100").unwrap(),
        Sampler::Respaced(100)
    );
    assert_eq!(Sampler::parse("ancestral").unwrap(), Sampler::Ancestral);
    // timesteps outside the process, or not integers
    let x = Tensor::zeros(&[2, 1, 1, 1], DType::F32);
    let t = Tensor::from_f64s(&[0.0, 4000.0], &[2], DType::F32).unwrap();
    assert!(d.q_sample(&x, &t, &x).is_err());
    let t = Tensor::from_f64s(&[0.5, 1.0], &[2], DType::F32).unwrap();
    assert!(d.q_sample(&x, &t, &x).is_err());
}
