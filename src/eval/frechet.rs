//! Fréchet distance between two sets of feature vectors (a measure beyond the paper): each set is
//! summarised by its mean μ and covariance Σ, and
//! `d² = |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½)`, as the FID of Heusel et al. 2017 but in
//! the feature space of the study's own real-trained U-Net (its bottleneck, averaged over
//! positions), so it needs no downloaded weights.
//!
//! Everything is computed in f64; the matrix square roots come from a cyclic Jacobi
//! eigendecomposition of symmetric matrices (negative eigenvalues from rounding are clamped to 0).
//! Covariances use n − 1.

use crate::{Error, Result};

/// Mean and covariance of `rows` vectors of length `d` (row-major `rows × d`).
pub fn mean_cov(x: &[f64], rows: usize, d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if rows < 2 || d == 0 || x.len() != rows * d {
        return Err(Error::invalid(
            "frechet",
            format!(
                "need at least 2 feature vectors of a common length; got {} values for {rows} × {d}",
                x.len()
            ),
        ));
    }
    let mut mu = vec![0.0; d];
    for r in x.chunks_exact(d) {
        for (m, v) in mu.iter_mut().zip(r) {
            *m += v;
        }
    }
    mu.iter_mut().for_each(|m| *m /= rows as f64);
    let mut cov = vec![0.0; d * d];
    for r in x.chunks_exact(d) {
        for i in 0..d {
            let a = r[i] - mu[i];
            for j in i..d {
                cov[i * d + j] += a * (r[j] - mu[j]);
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / (rows - 1) as f64;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    Ok((mu, cov))
}

/// Eigenvalues and eigenvectors (columns of the returned `d × d` matrix) of a symmetric matrix,
/// by cyclic Jacobi rotations.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * norm.max(1e-300) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// The square root of a symmetric positive semi-definite matrix.
fn sqrt_psd(a: &[f64], d: usize) -> Vec<f64> {
    let (lam, v) = symmetric_eigen(a, d);
    let mut out = vec![0.0; d * d];
    for (k, &l) in lam.iter().enumerate() {
        let s = l.max(0.0).sqrt();
        if s == 0.0 {
            continue;
        }
        for i in 0..d {
            let vi = v[i * d + k] * s;
            for j in 0..d {
                out[i * d + j] += vi * v[j * d + k];
            }
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                c[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    c
}

/// Squared Fréchet distance between Gaussians (μ₁, Σ₁) and (μ₂, Σ₂) of dimension `d`.
pub fn frechet_distance(mu1: &[f64], cov1: &[f64], mu2: &[f64], cov2: &[f64], d: usize) -> f64 {
    let dm: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let s1 = sqrt_psd(cov1, d);
    let mut m = matmul(&matmul(&s1, cov2, d), &s1, d);
    // symmetrise against rounding before the eigendecomposition
    for i in 0..d {
        for j in i + 1..d {
            let v = 0.5 * (m[i * d + j] + m[j * d + i]);
            m[i * d + j] = v;
            m[j * d + i] = v;
        }
    }
    let (lam, _) = symmetric_eigen(&m, d);
    let tr_sqrt: f64 = lam.iter().map(|l| l.max(0.0).sqrt()).sum();
    let tr: f64 = (0..d).map(|i| cov1[i * d + i] + cov2[i * d + i]).sum();
    (dm + tr - 2.0 * tr_sqrt).max(0.0)
}

/// Squared Fréchet distance between two sets of `d`-dimensional features.
pub fn frechet_between(a: &[f64], na: usize, b: &[f64], nb: usize, d: usize) -> Result<f64> {
    let (m1, c1) = mean_cov(a, na, d)?;
    let (m2, c2) = mean_cov(b, nb, d)?;
    Ok(frechet_distance(&m1, &c1, &m2, &c2, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn eigen_reconstructs_a_random_symmetric_matrix() {
        let d = 6;
        let mut r = SplitMix64::new(3);
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in i..d {
                let v = r.normal();
                a[i * d + j] = v;
                a[j * d + i] = v;
            }
        }
        let (lam, v) = symmetric_eigen(&a, d);
        for i in 0..d {
            for j in 0..d {
                let x: f64 = (0..d).map(|k| v[i * d + k] * lam[k] * v[j * d + k]).sum();
                assert!((x - a[i * d + j]).abs() < 1e-10, "{x} vs {}", a[i * d + j]);
            }
        }
    }

    #[test]
    fn diagonal_gaussians_have_the_closed_form() {
        // d² = |Δμ|² + Σ (σ₁ᵢ − σ₂ᵢ)² for diagonal covariances
        let d = 3;
        let (s1, s2) = ([1.0, 4.0, 9.0], [4.0, 1.0, 9.0]);
        let diag = |s: [f64; 3]| {
            let mut c = vec![0.0; 9];
            for i in 0..3 {
                c[i * 3 + i] = s[i];
            }
            c
        };
        let f = frechet_distance(&[0.0, 1.0, 2.0], &diag(s1), &[1.0, 1.0, 0.0], &diag(s2), d);
        let want = 1.0 + 4.0 + (1.0f64 - 2.0).powi(2) + (2.0f64 - 1.0).powi(2);
        assert!((f - want).abs() < 1e-9, "{f} vs {want}");
    }

    #[test]
    fn a_set_against_itself_is_zero_and_a_shift_is_its_square() {
        let (n, d) = (50, 4);
        let mut r = SplitMix64::new(7);
        let a: Vec<f64> = (0..n * d).map(|_| r.normal()).collect();
        assert!(frechet_between(&a, n, &a, n, d).unwrap().abs() < 1e-9);
        let b: Vec<f64> = a.iter().map(|x| x + 0.5).collect();
        let f = frechet_between(&a, n, &b, n, d).unwrap();
        assert!((f - 0.25 * d as f64).abs() < 1e-9, "{f}");
        assert!(frechet_between(&a[..d], 1, &a, n, d).is_err());
    }
}
