//! StyleGAN3's low-pass filter design (`SynthesisLayer.design_lowpass_filter`): a Kaiser-windowed
//! sinc, as `scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)`, or its radially symmetric
//! jinc counterpart. Designed in f64, then cast to the requested type (StyleGAN3 casts to f32).

use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// Modified Bessel function of the first kind, order 0: Σ ((x/2)^k / k!)², all terms positive.
pub fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut term, mut sum, mut k) = (1.0, 1.0, 0.0);
    loop {
        k += 1.0;
        term *= q / (k * k);
        sum += term;
        if term <= sum * 1e-17 {
            return sum;
        }
    }
}

/// Bessel function of the first kind, order 1, from Bessel's integral
/// `J1(x) = (1/2π) ∫ cos(τ − x sin τ) dτ` over a period. The integrand is periodic and smooth, so
/// the trapezoid rule converges geometrically once the points outnumber |x| (no cancellation
/// trouble, unlike the power series for large x).
pub fn bessel_j1(x: f64) -> f64 {
    let m = 2 * (x.abs().ceil() as usize) + 48;
    let s: f64 = (0..m)
        .map(|k| {
            let t = 2.0 * std::f64::consts::PI * k as f64 / m as f64;
            (t - x * t.sin()).cos()
        })
        .sum();
    s / m as f64
}

/// scipy `kaiser_atten(numtaps, width)`: attenuation (dB) of a Kaiser FIR filter whose
/// transition width is `width` (in units of the Nyquist frequency).
pub fn kaiser_atten(numtaps: usize, width: f64) -> f64 {
    2.285 * (numtaps as f64 - 1.0) * std::f64::consts::PI * width + 7.95
}

/// scipy `kaiser_beta(atten)`: Kaiser window β for an attenuation in dB.
pub fn kaiser_beta(a: f64) -> f64 {
    if a > 50.0 {
        0.1102 * (a - 8.7)
    } else if a > 21.0 {
        0.5842 * (a - 21.0).powf(0.4) + 0.07886 * (a - 21.0)
    } else {
        0.0
    }
}

/// Symmetric Kaiser window of `m` points (numpy `kaiser`, scipy `windows.kaiser(sym=True)`).
pub fn kaiser_window(m: usize, beta: f64) -> Vec<f64> {
    if m == 1 {
        return vec![1.0];
    }
    let alpha = (m as f64 - 1.0) / 2.0;
    let d = bessel_i0(beta);
    (0..m)
        .map(|n| {
            let r = (n as f64 - alpha) / alpha;
            bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / d
        })
        .collect()
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let p = std::f64::consts::PI * x;
        p.sin() / p
    }
}

fn check(numtaps: usize, cutoff: f64, width: f64, fs: f64) -> Result<()> {
    const OP: &str = "design_lowpass_filter";
    if numtaps == 0 {
        return Err(Error::invalid(OP, "numtaps must be at least 1"));
    }
    // written positively so NaN arguments are rejected too
    let valid = fs > 0.0 && width > 0.0 && cutoff > 0.0 && cutoff < fs / 2.0;
    if !valid {
        return Err(Error::invalid(
            OP,
            format!(
                "need fs > 0, width > 0 and 0 < cutoff < fs/2; got fs {fs}, width {width}, cutoff {cutoff}"
            ),
        ));
    }
    Ok(())
}

/// `scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)`: a low-pass, Kaiser-windowed sinc
/// scaled to unit gain at DC, in f64.
pub fn firwin_kaiser(numtaps: usize, cutoff: f64, width: f64, fs: f64) -> Result<Vec<f64>> {
    check(numtaps, cutoff, width, fs)?;
    let nyq = fs / 2.0;
    let c = cutoff / nyq;
    let beta = kaiser_beta(kaiser_atten(numtaps, width / nyq));
    let win = kaiser_window(numtaps, beta);
    let alpha = 0.5 * (numtaps as f64 - 1.0);
    let mut h: Vec<f64> = (0..numtaps)
        .map(|i| {
            let m = i as f64 - alpha;
            c * sinc(c * m) * win[i]
        })
        .collect();
    let s: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= s);
    Ok(h)
}

/// StyleGAN3's radially symmetric low-pass `[numtaps, numtaps]` (row-major), in f64: the jinc
/// `J1(2π·cutoff·r) / (π·r)` times the outer product of Kaiser windows, normalised to sum 1.
/// At r = 0 (odd `numtaps`) the jinc takes its limit `cutoff` (NVlabs would produce NaN there;
/// StyleGAN3 only uses even sizes).
pub fn radial_lowpass(numtaps: usize, cutoff: f64, width: f64, fs: f64) -> Result<Vec<f64>> {
    check(numtaps, cutoff, width, fs)?;
    let x: Vec<f64> = (0..numtaps)
        .map(|i| (i as f64 - (numtaps as f64 - 1.0) / 2.0) / fs)
        .collect();
    let beta = kaiser_beta(kaiser_atten(numtaps, width / (fs / 2.0)));
    let w = kaiser_window(numtaps, beta);
    let pi = std::f64::consts::PI;
    let mut f = Vec::with_capacity(numtaps * numtaps);
    for (i, &yi) in x.iter().enumerate() {
        for (j, &xj) in x.iter().enumerate() {
            let r = xj.hypot(yi);
            let jinc = if r == 0.0 {
                cutoff
            } else {
                bessel_j1(2.0 * cutoff * pi * r) / (pi * r)
            };
            f.push(jinc * w[i] * w[j]);
        }
    }
    let s: f64 = f.iter().sum();
    f.iter_mut().for_each(|v| *v /= s);
    Ok(f)
}

/// StyleGAN3 `design_lowpass_filter`: `None` for a single tap (identity), else the separable
/// Kaiser low-pass `[numtaps]` or, with `radial`, the 2-D jinc filter `[numtaps, numtaps]`;
/// designed in f64 and stored as `dtype`.
pub fn design_lowpass_filter(
    numtaps: usize,
    cutoff: f64,
    width: f64,
    fs: f64,
    radial: bool,
    dtype: DType,
) -> Result<Option<Tensor>> {
    if numtaps == 1 {
        return Ok(None);
    }
    let t = if radial {
        Tensor::from_f64s(
            &radial_lowpass(numtaps, cutoff, width, fs)?,
            &[numtaps, numtaps],
            dtype,
        )?
    } else {
        Tensor::from_f64s(
            &firwin_kaiser(numtaps, cutoff, width, fs)?,
            &[numtaps],
            dtype,
        )?
    };
    Ok(Some(t))
}
