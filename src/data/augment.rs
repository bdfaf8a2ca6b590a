//! Augmentation of training slices.
//!
//! Geometric transforms (rotation and scaling about the slice centre, horizontal/vertical flips)
//! move the four sequences and the annotation together: sequences are resampled bilinearly, the
//! annotation by nearest neighbour on decoded labels (so it stays 0, 51, 102 or 204). Intensity
//! transforms (gamma, Gaussian noise, Gaussian blur) touch the sequences only and only inside the
//! brain (pixels where any sequence is non-zero), so the background stays exactly zero.
//!
//! Parameters are a plain struct ([`AugmentParams`]): draw them with [`AugmentParams::sample`]
//! from a seeded [`SplitMix64`], or build them by hand (tests use this to check alignment).

use crate::data::annotation::{decode_value, encode_label};
use crate::data::slices::{ANNOTATION, Slice};
use crate::rng::SplitMix64;

/// Ranges the random parameters are drawn from.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    /// Rotation uniform in ±this many degrees (default 15).
    pub max_rotation_deg: f32,
    /// Scale factor uniform in this range (default 0.9–1.1).
    pub scale_range: (f32, f32),
    /// Probability of a left–right flip (default 0.5).
    pub flip_h_prob: f32,
    /// Probability of an up–down flip (default 0).
    pub flip_v_prob: f32,
    /// Gamma uniform in this range (default 0.8–1.25).
    pub gamma_range: (f32, f32),
    /// Noise standard deviation uniform in 0–this, in 0–255 units (default 6).
    pub max_noise_std: f32,
    /// Probability of blurring (default 0.25).
    pub blur_prob: f32,
    /// Blur sigma uniform in 0.3–this, in pixels (default 1.0).
    pub max_blur_sigma: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            max_rotation_deg: 15.0,
            scale_range: (0.9, 1.1),
            flip_h_prob: 0.5,
            flip_v_prob: 0.0,
            gamma_range: (0.8, 1.25),
            max_noise_std: 6.0,
            blur_prob: 0.25,
            max_blur_sigma: 1.0,
        }
    }
}

/// One concrete augmentation.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentParams {
    /// Counter-clockwise rotation in degrees.
    pub rotation_deg: f32,
    /// Scale factor (> 1 enlarges).
    pub scale: f32,
    /// Mirror left–right.
    pub flip_h: bool,
    /// Mirror up–down.
    pub flip_v: bool,
    /// Gamma applied to `v / 255` of each sequence (1 = none).
    pub gamma: f32,
    /// Standard deviation of additive Gaussian noise, 0–255 units (0 = none).
    pub noise_std: f32,
    /// Gaussian blur sigma in pixels (0 = none).
    pub blur_sigma: f32,
    /// Seed of the noise pattern.
    pub noise_seed: u64,
}

impl AugmentParams {
    /// Parameters that change nothing.
    pub fn identity() -> Self {
        AugmentParams {
            rotation_deg: 0.0,
            scale: 1.0,
            flip_h: false,
            flip_v: false,
            gamma: 1.0,
            noise_std: 0.0,
            blur_sigma: 0.0,
            noise_seed: 0,
        }
    }

    /// Draw parameters from `cfg`'s ranges.
    pub fn sample(cfg: &AugmentConfig, rng: &mut SplitMix64) -> Self {
        let u = |rng: &mut SplitMix64, lo: f32, hi: f32| rng.uniform(lo as f64, hi as f64) as f32;
        let rotation_deg = u(rng, -cfg.max_rotation_deg, cfg.max_rotation_deg);
        let scale = u(rng, cfg.scale_range.0, cfg.scale_range.1);
        let flip_h = rng.chance(cfg.flip_h_prob as f64);
        let flip_v = rng.chance(cfg.flip_v_prob as f64);
        let gamma = u(rng, cfg.gamma_range.0, cfg.gamma_range.1);
        let noise_std = u(rng, 0.0, cfg.max_noise_std);
        let blur_sigma = if rng.chance(cfg.blur_prob as f64) {
            u(rng, 0.3, cfg.max_blur_sigma.max(0.3))
        } else {
            0.0
        };
        AugmentParams {
            rotation_deg,
            scale,
            flip_h,
            flip_v,
            gamma,
            noise_std,
            blur_sigma,
            noise_seed: rng.next_u64(),
        }
    }

    fn is_geometric_identity(&self) -> bool {
        self.rotation_deg == 0.0 && self.scale == 1.0 && !self.flip_h && !self.flip_v
    }
}

/// For output pixel (r, c), the source position (row, column) in the input.
fn source_position(p: &AugmentParams, h: usize, w: usize, r: usize, c: usize) -> (f32, f32) {
    let cy = (h as f32 - 1.0) / 2.0;
    let cx = (w as f32 - 1.0) / 2.0;
    let mut y = r as f32 - cy;
    let mut x = c as f32 - cx;
    if p.flip_h {
        x = -x;
    }
    if p.flip_v {
        y = -y;
    }
    // Inverse of "rotate counter-clockwise by θ (y grows downwards), then scale".
    let t = p.rotation_deg.to_radians();
    let (s, co) = t.sin_cos();
    let xs = (co * x - s * y) / p.scale;
    let ys = (s * x + co * y) / p.scale;
    (ys + cy, xs + cx)
}

fn bilinear(img: &[u8], h: usize, w: usize, y: f32, x: f32) -> f32 {
    if y < -0.5 || x < -0.5 || y > h as f32 - 0.5 || x > w as f32 - 0.5 {
        return 0.0;
    }
    let y0 = y.floor();
    let x0 = x.floor();
    let fy = y - y0;
    let fx = x - x0;
    let at = |yy: f32, xx: f32| -> f32 {
        if yy < 0.0 || xx < 0.0 || yy >= h as f32 || xx >= w as f32 {
            0.0
        } else {
            img[yy as usize * w + xx as usize] as f32
        }
    };
    (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1.0))
        + fy * ((1.0 - fx) * at(y0 + 1.0, x0) + fx * at(y0 + 1.0, x0 + 1.0))
}

fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i32;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

fn blur(img: &mut [f32], h: usize, w: usize, sigma: f32) {
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    let mut tmp = vec![0f32; img.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (i, kv) in k.iter().enumerate() {
                let xx = (x as isize + i as isize - r).clamp(0, w as isize - 1) as usize;
                acc += kv * img[y * w + xx];
            }
            tmp[y * w + x] = acc;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (i, kv) in k.iter().enumerate() {
                let yy = (y as isize + i as isize - r).clamp(0, h as isize - 1) as usize;
                acc += kv * tmp[yy * w + x];
            }
            img[y * w + x] = acc;
        }
    }
}

/// Apply `p` to a slice (subject and index are kept).
pub fn augment(slice: &Slice, p: &AugmentParams) -> Slice {
    let (h, w) = (slice.h, slice.w);
    let n = h * w;
    let mut out = slice.clone();
    // Geometry.
    let mut imgs: Vec<Vec<f32>> = (0..ANNOTATION)
        .map(|c| slice.channel(c).iter().map(|&v| v as f32).collect())
        .collect();
    if !p.is_geometric_identity() {
        let labels = slice.labels();
        let mut new_labels = vec![0u8; n];
        for r in 0..h {
            for c in 0..w {
                let (y, x) = source_position(p, h, w, r, c);
                for (ch, img) in imgs.iter_mut().enumerate() {
                    img[r * w + c] = bilinear(slice.channel(ch), h, w, y, x);
                }
                let (yi, xi) = (y.round(), x.round());
                if yi >= 0.0 && xi >= 0.0 && (yi as usize) < h && (xi as usize) < w {
                    new_labels[r * w + c] = labels[yi as usize * w + xi as usize];
                }
            }
        }
        for (d, l) in out.channel_mut(ANNOTATION).iter_mut().zip(new_labels) {
            *d = encode_label(l);
        }
    }
    // Intensity, inside the brain only.
    let mask: Vec<bool> = (0..n)
        .map(|i| imgs.iter().any(|img| img[i] > 0.5))
        .collect();
    let mut rng = SplitMix64::new(p.noise_seed);
    for img in imgs.iter_mut() {
        if p.gamma != 1.0 {
            for v in img.iter_mut() {
                *v = 255.0 * (v.max(0.0) / 255.0).powf(p.gamma);
            }
        }
        if p.blur_sigma > 0.0 {
            blur(img, h, w, p.blur_sigma);
        }
        if p.noise_std > 0.0 {
            for (v, &m) in img.iter_mut().zip(&mask) {
                if m {
                    *v += p.noise_std * rng.normal() as f32;
                }
            }
        }
        for (v, &m) in img.iter_mut().zip(&mask) {
            if !m {
                *v = 0.0;
            }
        }
    }
    for (c, img) in imgs.iter().enumerate() {
        for (d, v) in out.channel_mut(c).iter_mut().zip(img) {
            *d = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Draw parameters from `cfg` with `rng` and apply them; returns the slice and the parameters.
pub fn augment_random(
    slice: &Slice,
    cfg: &AugmentConfig,
    rng: &mut SplitMix64,
) -> (Slice, AugmentParams) {
    let p = AugmentParams::sample(cfg, rng);
    (augment(slice, &p), p)
}

/// Re-snap an annotation channel to exact codes (decode then encode), e.g. after resampling.
pub fn snap_annotation(slice: &mut Slice) {
    for v in slice.channel_mut(ANNOTATION) {
        *v = encode_label(decode_value(*v as f32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_slice() -> Slice {
        let mut s = Slice::zeros("s", 0, 16, 12);
        for r in 0..16 {
            for c in 0..12 {
                s.channel_mut(0)[r * 12 + c] = (10 * r + c) as u8;
            }
        }
        s
    }

    #[test]
    fn identity_is_identity() {
        let s = test_slice();
        assert_eq!(augment(&s, &AugmentParams::identity()), s);
    }

    #[test]
    fn flips_are_exact() {
        let s = test_slice();
        let p = AugmentParams {
            flip_h: true,
            ..AugmentParams::identity()
        };
        let f = augment(&s, &p);
        assert_eq!(f.channel(0)[0], s.channel(0)[11]);
        assert_eq!(augment(&f, &p), s);
    }

    #[test]
    fn rotation_by_90_is_exact_on_square() {
        let mut s = Slice::zeros("s", 0, 8, 8);
        s.channel_mut(0)[1] = 200; // row 0, col 1
        let p = AugmentParams {
            rotation_deg: 90.0,
            ..AugmentParams::identity()
        };
        let out = augment(&s, &p);
        let nz: Vec<usize> = (0..64).filter(|&i| out.channel(0)[i] > 100).collect();
        assert_eq!(nz.len(), 1);
    }
}
