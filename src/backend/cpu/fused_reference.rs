//! Plain-loop f64 references of group norm (+ SiLU) and of Swin's window attention, forward and
//! backward: the ground truth that the fast CPU norm and attention kernels are checked against
//! (tests/norm_fast_kernels.rs, tests/attention_fast_backward.rs). The GPU kernels are checked
//! against the ops' CPU kernels by `ops::audit`. Layouts: NCHW with HW flattened; all slices
//! contiguous, row-major.

/// Sizes of a group norm: x is [n, c, hw] in `groups` groups of c / groups channels.
#[derive(Clone, Copy, Debug)]
pub struct GnDims {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub groups: usize,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// y = act((x − mean) · rstd · γ + β) with biased variance per (sample, group); returns
/// (y, mean [n, groups], rstd [n, groups]).
pub fn group_norm(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    d: GnDims,
    eps: f64,
    silu: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let cpg = d.c / d.groups;
    let m = cpg * d.hw;
    let mut y = vec![0.0; x.len()];
    let (mut means, mut rstds) = (vec![0.0; d.n * d.groups], vec![0.0; d.n * d.groups]);
    for n in 0..d.n {
        for g in 0..d.groups {
            let base = (n * d.c + g * cpg) * d.hw;
            let xs = &x[base..base + m];
            let mean = xs.iter().sum::<f64>() / m as f64;
            let var = xs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / m as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            means[n * d.groups + g] = mean;
            rstds[n * d.groups + g] = rstd;
            for (i, &v) in xs.iter().enumerate() {
                let c = g * cpg + i / d.hw;
                let z = (v - mean) * rstd * gamma[c] + beta[c];
                y[base + i] = if silu { z * sigmoid(z) } else { z };
            }
        }
    }
    (y, means, rstds)
}

/// Gradients (dx, dγ, dβ) of `group_norm` given dy and its saved statistics.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    dy: &[f64],
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    rstd: &[f64],
    d: GnDims,
    silu: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let cpg = d.c / d.groups;
    let m = cpg * d.hw;
    let mut dx = vec![0.0; x.len()];
    let (mut dgamma, mut dbeta) = (vec![0.0; d.c], vec![0.0; d.c]);
    for n in 0..d.n {
        for g in 0..d.groups {
            let base = (n * d.c + g * cpg) * d.hw;
            let (mu, rs) = (mean[n * d.groups + g], rstd[n * d.groups + g]);
            // xhat, and dL/dz through the activation
            let mut xh = vec![0.0; m];
            let mut dz = vec![0.0; m];
            for i in 0..m {
                let c = g * cpg + i / d.hw;
                xh[i] = (x[base + i] - mu) * rs;
                let z = xh[i] * gamma[c] + beta[c];
                dz[i] = if silu {
                    let s = sigmoid(z);
                    dy[base + i] * s * (1.0 + z * (1.0 - s))
                } else {
                    dy[base + i]
                };
            }
            let (mut s1, mut s2) = (0.0, 0.0);
            for i in 0..m {
                let c = g * cpg + i / d.hw;
                dbeta[c] += dz[i];
                dgamma[c] += dz[i] * xh[i];
                s1 += dz[i] * gamma[c];
                s2 += dz[i] * gamma[c] * xh[i];
            }
            let (m1, m2) = (s1 / m as f64, s2 / m as f64);
            for i in 0..m {
                let c = g * cpg + i / d.hw;
                dx[base + i] = rs * (dz[i] * gamma[c] - m1 - xh[i] * m2);
            }
        }
    }
    (dx, dgamma, dbeta)
}

/// Sizes of window attention: q, k, v are [b, heads, n, dim]; the mask has `nw` windows and
/// window b uses mask b mod nw.
#[derive(Clone, Copy, Debug)]
pub struct WaDims {
    pub b: usize,
    pub heads: usize,
    pub n: usize,
    pub dim: usize,
    pub nw: usize,
}

fn wa_scores(
    q: &[f64],
    k: &[f64],
    bias: Option<&[f64]>,
    mask: Option<&[f64]>,
    d: WaDims,
    scale: f64,
    bh: usize,
) -> Vec<f64> {
    let (b, h) = (bh / d.heads, bh % d.heads);
    let base = bh * d.n * d.dim;
    let mut s = vec![0.0; d.n * d.n];
    for i in 0..d.n {
        for j in 0..d.n {
            let mut acc = 0.0;
            for c in 0..d.dim {
                acc += q[base + i * d.dim + c] * k[base + j * d.dim + c];
            }
            acc *= scale;
            if let Some(bias) = bias {
                acc += bias[(h * d.n + i) * d.n + j];
            }
            if let Some(mask) = mask {
                acc += mask[((b % d.nw) * d.n + i) * d.n + j];
            }
            s[i * d.n + j] = acc;
        }
    }
    s
}

/// O = softmax(scale·QKᵀ + bias\[h\] + mask[b mod nw])·V per (window, head); returns (O, row
/// log-sum-exp [b, heads, n]).
pub fn window_attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bias: Option<&[f64]>,
    mask: Option<&[f64]>,
    d: WaDims,
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut o = vec![0.0; q.len()];
    let mut lse = vec![0.0; d.b * d.heads * d.n];
    for bh in 0..d.b * d.heads {
        let s = wa_scores(q, k, bias, mask, d, scale, bh);
        let base = bh * d.n * d.dim;
        for i in 0..d.n {
            let row = &s[i * d.n..(i + 1) * d.n];
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|&x| (x - mx).exp()).sum();
            lse[bh * d.n + i] = mx + sum.ln();
            for c in 0..d.dim {
                let mut acc = 0.0;
                for j in 0..d.n {
                    acc += (row[j] - mx).exp() / sum * v[base + j * d.dim + c];
                }
                o[base + i * d.dim + c] = acc;
            }
        }
    }
    (o, lse)
}

/// Gradients (dQ, dK, dV, dbias [heads, n, n]) of `window_attention`.
#[allow(clippy::too_many_arguments)]
pub fn window_attention_backward(
    dout: &[f64],
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bias: Option<&[f64]>,
    mask: Option<&[f64]>,
    d: WaDims,
    scale: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    let mut dbias = vec![0.0; d.heads * d.n * d.n];
    for bh in 0..d.b * d.heads {
        let h = bh % d.heads;
        let s = wa_scores(q, k, bias, mask, d, scale, bh);
        let base = bh * d.n * d.dim;
        for i in 0..d.n {
            let row = &s[i * d.n..(i + 1) * d.n];
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|&x| (x - mx).exp()).sum();
            let p: Vec<f64> = row.iter().map(|&x| (x - mx).exp() / sum).collect();
            // dP_ij = dO_i · V_j; dS = P ∘ (dP − Σ_j P_ij dP_ij)
            let dp: Vec<f64> = (0..d.n)
                .map(|j| {
                    (0..d.dim)
                        .map(|c| dout[base + i * d.dim + c] * v[base + j * d.dim + c])
                        .sum()
                })
                .collect();
            let dot: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
            for j in 0..d.n {
                let ds = p[j] * (dp[j] - dot);
                dbias[(h * d.n + i) * d.n + j] += ds;
                for c in 0..d.dim {
                    dq[base + i * d.dim + c] += scale * ds * k[base + j * d.dim + c];
                    dk[base + j * d.dim + c] += scale * ds * q[base + i * d.dim + c];
                    dv[base + j * d.dim + c] += p[j] * dout[base + i * d.dim + c];
                }
            }
        }
    }
    (dq, dk, dv, dbias)
}
