//! From volumes to 2-D training slices, following the study's preparation code:
//!
//! 1. each sequence volume is scaled by its own maximum to 0–255 (rounded, negatives clipped);
//! 2. every axial slice is padded (or cropped) centrally to `pad_to × pad_to` (BraTS: 240 → 256,
//!    8 pixels each side);
//! 3. a slice is kept when more than 15 % of the padded slice has T1 > 50;
//! 4. the labels become the fifth channel, `label / 5 · 255` (0, 51, 102, 204);
//! 5. optionally the slice is downscaled (area averaging for the sequences, a weighted label
//!    majority with ties going to the more specific tumour label for the annotation).
//!
//! A [`Slice`] stores its five channels as `u8` in 0–255, channel-major (`5 × h × w`), in the order
//! T1, T1ce, T2, FLAIR, annotation. Row `r`, column `c` of axial slice `z` is voxel
//! `(x = c, y = r, z)` of the volume (with BraTS orientation: anterior at the top, patient's right
//! on the left, i.e. the radiological view).

use crate::data::annotation::{LABELS, decode_value, encode_label, priority};
use crate::data::nifti_case::Case;
use crate::{Error, Result};

/// Channels of a slice: T1, T1ce, T2, FLAIR, annotation.
pub const CHANNELS: usize = 5;
/// Index of the annotation channel.
pub const ANNOTATION: usize = 4;
/// Names of the five channels.
pub const CHANNEL_NAMES: [&str; CHANNELS] = ["T1", "T1ce", "T2", "FLAIR", "annotation"];

/// One axial slice of one subject: five `u8` channels (0–255) of `h × w` pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// Subject id (the case folder name).
    pub subject: String,
    /// Axial index `z` in the subject's volume.
    pub index: u32,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// `CHANNELS × h × w` values, channel-major then row-major.
    pub data: Vec<u8>,
}

impl Slice {
    /// A slice of zeros.
    pub fn zeros(subject: impl Into<String>, index: u32, h: usize, w: usize) -> Self {
        Slice {
            subject: subject.into(),
            index,
            h,
            w,
            data: vec![0; CHANNELS * h * w],
        }
    }

    /// Channel `c` (0..5) as `h × w` row-major values.
    pub fn channel(&self, c: usize) -> &[u8] {
        let n = self.h * self.w;
        &self.data[c * n..(c + 1) * n]
    }

    /// Mutable channel `c`.
    pub fn channel_mut(&mut self, c: usize) -> &mut [u8] {
        let n = self.h * self.w;
        &mut self.data[c * n..(c + 1) * n]
    }

    /// The annotation decoded into labels 0, 1, 2, 4 (one per pixel, row-major).
    pub fn labels(&self) -> Vec<u8> {
        self.channel(ANNOTATION)
            .iter()
            .map(|&v| decode_value(v as f32))
            .collect()
    }

    /// Number of tumour pixels (any label other than background).
    pub fn tumour_pixels(&self) -> usize {
        self.labels().iter().filter(|&&l| l != 0).count()
    }
}

/// How slices are cut from a case.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceConfig {
    /// Side of the square slices are padded/cropped to. `None` = automatic: the larger in-plane
    /// dimension rounded up to a multiple of 32 (BraTS 240 → 256, the study's value; a 120-voxel
    /// phantom → 128).
    pub pad_to: Option<usize>,
    /// Side of the square slices are downscaled to after padding (`None` = keep `pad_to`).
    /// Must not exceed the padded side.
    pub out_size: Option<usize>,
    /// T1 value (0–255 scale) a pixel must exceed to count as brain. Study: 50.
    pub t1_threshold: u8,
    /// Fraction of the padded slice that must exceed `t1_threshold`. Study: 0.15 (strictly more).
    pub min_coverage: f32,
}

impl Default for SliceConfig {
    /// The study's settings: automatic padding (256 for BraTS), no downscaling, T1 > 50 on more
    /// than 15 % of the slice.
    fn default() -> Self {
        SliceConfig {
            pad_to: None,
            out_size: None,
            t1_threshold: 50,
            min_coverage: 0.15,
        }
    }
}

impl SliceConfig {
    /// The padded side for volumes of in-plane size `nx × ny`.
    pub fn padded_side(&self, nx: usize, ny: usize) -> usize {
        self.pad_to.unwrap_or_else(|| nx.max(ny).div_ceil(32) * 32)
    }

    fn validate(&self, nx: usize, ny: usize) -> Result<(usize, usize)> {
        let p = self.padded_side(nx, ny);
        if p == 0 {
            return Err(Error::invalid("slices", "pad_to must be positive"));
        }
        let s = self.out_size.unwrap_or(p);
        if s == 0 || s > p {
            return Err(Error::invalid(
                "slices",
                format!("output size {s} must be between 1 and the padded size {p}"),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_coverage) {
            return Err(Error::invalid(
                "slices",
                format!("min_coverage {} must be in [0, 1]", self.min_coverage),
            ));
        }
        Ok((p, s))
    }
}

/// Scale a volume by its own maximum to 0–255 (`round(v / max · 255)`, negatives → 0). A volume
/// whose maximum is not positive becomes all zeros.
pub fn scale_to_u8(data: &[f32]) -> Vec<u8> {
    let max = data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return vec![0; data.len()];
    }
    let k = 255.0 / max;
    data.iter()
        .map(|&v| (v * k).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Pad with zeros or crop, centrally, an `h × w` image to `oh × ow`. The offset is
/// `(oh - h) / 2` (truncated), so 240 → 256 puts 8 pixels on each side.
pub fn pad_or_crop<T: Copy + Default>(
    src: &[T],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
) -> Vec<T> {
    assert_eq!(src.len(), h * w, "pad_or_crop: buffer is not {h}×{w}");
    let mut out = vec![T::default(); oh * ow];
    let dy = (oh as isize - h as isize) / 2;
    let dx = (ow as isize - w as isize) / 2;
    for r in 0..oh {
        let sr = r as isize - dy;
        if sr < 0 || sr >= h as isize {
            continue;
        }
        for c in 0..ow {
            let sc = c as isize - dx;
            if sc < 0 || sc >= w as isize {
                continue;
            }
            out[r * ow + c] = src[sr as usize * w + sc as usize];
        }
    }
    out
}

/// The study's coverage rule: strictly more than `min_fraction` of the pixels of `t1` (the padded
/// slice) exceed `threshold`.
pub fn passes_coverage(t1: &[u8], threshold: u8, min_fraction: f32) -> bool {
    if t1.is_empty() {
        return false;
    }
    let n = t1.iter().filter(|&&v| v > threshold).count();
    n as f64 > min_fraction as f64 * t1.len() as f64
}

/// For each output index, the source indices and their overlap weights (sum = `n / m`).
fn area_weights(n: usize, m: usize) -> Vec<Vec<(usize, f64)>> {
    let scale = n as f64 / m as f64;
    (0..m)
        .map(|o| {
            let a = o as f64 * scale;
            let b = (o + 1) as f64 * scale;
            let mut v = Vec::new();
            let mut i = a.floor() as usize;
            while (i as f64) < b && i < n {
                let lo = a.max(i as f64);
                let hi = b.min(i as f64 + 1.0);
                if hi > lo + 1e-12 {
                    v.push((i, hi - lo));
                }
                i += 1;
            }
            v
        })
        .collect()
}

/// Downscale an `h × w` image to `oh × ow` by area averaging (each output pixel is the mean of the
/// source area it covers, with fractional pixels weighted). Requires `oh ≤ h`, `ow ≤ w`.
pub fn downscale_area(src: &[u8], h: usize, w: usize, oh: usize, ow: usize) -> Vec<u8> {
    assert_eq!(src.len(), h * w);
    assert!(
        oh <= h && ow <= w && oh > 0 && ow > 0,
        "downscale_area: not a downscale"
    );
    let wy = area_weights(h, oh);
    let wx = area_weights(w, ow);
    // Rows first: h × ow.
    let mut tmp = vec![0f64; h * ow];
    for r in 0..h {
        for (oc, ws) in wx.iter().enumerate() {
            let s: f64 = ws.iter().map(|&(c, wt)| src[r * w + c] as f64 * wt).sum();
            tmp[r * ow + oc] = s;
        }
    }
    let norm = (h as f64 / oh as f64) * (w as f64 / ow as f64);
    let mut out = vec![0u8; oh * ow];
    for (or, ws) in wy.iter().enumerate() {
        for oc in 0..ow {
            let s: f64 = ws.iter().map(|&(r, wt)| tmp[r * ow + oc] * wt).sum();
            out[or * ow + oc] = (s / norm).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Downscale a label map (values 0, 1, 2, 4) to `oh × ow`: each output pixel takes the label
/// covering most of its source area; ties go to enhancing, then core, then edema, then background.
pub fn downscale_labels(src: &[u8], h: usize, w: usize, oh: usize, ow: usize) -> Vec<u8> {
    assert_eq!(src.len(), h * w);
    assert!(
        oh <= h && ow <= w && oh > 0 && ow > 0,
        "downscale_labels: not a downscale"
    );
    let wy = area_weights(h, oh);
    let wx = area_weights(w, ow);
    let mut out = vec![0u8; oh * ow];
    for (or, wsy) in wy.iter().enumerate() {
        for (oc, wsx) in wx.iter().enumerate() {
            let mut acc = [0f64; 4];
            for &(r, a) in wsy {
                for &(c, b) in wsx {
                    let l = src[r * w + c];
                    let k = LABELS.iter().position(|&x| x == l).unwrap_or(0);
                    acc[k] += a * b;
                }
            }
            let mut best = 0usize;
            for k in 1..4 {
                let better = acc[k] > acc[best] + 1e-9
                    || ((acc[k] - acc[best]).abs() <= 1e-9
                        && priority(LABELS[k]) > priority(LABELS[best]));
                if better {
                    best = k;
                }
            }
            out[or * ow + oc] = LABELS[best];
        }
    }
    out
}

/// Cut the kept axial slices of a case (see the module documentation for the steps).
pub fn slices_from_case(case: &Case, cfg: &SliceConfig) -> Result<Vec<Slice>> {
    let [nx, ny, nz] = case.dims;
    let (p, s) = cfg.validate(nx, ny)?;
    let nvox = nx * ny * nz;
    if case.labels.len() != nvox || case.sequences.iter().any(|q| q.len() != nvox) {
        return Err(Error::Data(format!(
            "case {}: volumes do not hold {nx}×{ny}×{nz} voxels",
            case.id
        )));
    }
    let scaled: Vec<Vec<u8>> = case.sequences.iter().map(|v| scale_to_u8(v)).collect();
    let plane = nx * ny;
    let mut out = Vec::new();
    for z in 0..nz {
        let range = z * plane..(z + 1) * plane;
        // Row r = y, column c = x: the volume's x-fastest plane is already row-major.
        let t1 = pad_or_crop(&scaled[0][range.clone()], ny, nx, p, p);
        if !passes_coverage(&t1, cfg.t1_threshold, cfg.min_coverage) {
            continue;
        }
        let mut slice = Slice::zeros(case.id.clone(), z as u32, s, s);
        for (c, vol) in scaled.iter().enumerate() {
            let padded = if c == 0 {
                t1.clone()
            } else {
                pad_or_crop(&vol[range.clone()], ny, nx, p, p)
            };
            let img = if s == p {
                padded
            } else {
                downscale_area(&padded, p, p, s, s)
            };
            slice.channel_mut(c).copy_from_slice(&img);
        }
        let labels = pad_or_crop(&case.labels[range], ny, nx, p, p);
        let labels = if s == p {
            labels
        } else {
            downscale_labels(&labels, p, p, s, s)
        };
        for (d, l) in slice.channel_mut(ANNOTATION).iter_mut().zip(labels) {
            *d = encode_label(l);
        }
        out.push(slice);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_240_to_256_puts_8_each_side() {
        let src: Vec<u8> = vec![1; 240 * 240];
        let out = pad_or_crop(&src, 240, 240, 256, 256);
        assert_eq!(out[7 * 256 + 100], 0);
        assert_eq!(out[8 * 256 + 8], 1);
        assert_eq!(out[247 * 256 + 247], 1);
        assert_eq!(out[248 * 256 + 100], 0);
        assert_eq!(out.iter().filter(|&&v| v == 1).count(), 240 * 240);
    }

    #[test]
    fn auto_padding() {
        let c = SliceConfig::default();
        assert_eq!(c.padded_side(240, 240), 256);
        assert_eq!(c.padded_side(120, 120), 128);
        assert_eq!(c.padded_side(96, 80), 96);
    }

    #[test]
    fn scale_by_max() {
        assert_eq!(scale_to_u8(&[0.0, 50.0, 100.0, -3.0]), vec![0, 128, 255, 0]);
        assert_eq!(scale_to_u8(&[0.0, 0.0]), vec![0, 0]);
    }

    #[test]
    fn area_downscale_by_two_is_block_mean() {
        let src = [0u8, 10, 100, 100, 20, 30, 100, 100];
        assert_eq!(downscale_area(&src, 2, 4, 1, 2), vec![15, 100]);
        // Non-integer ratio keeps a constant image constant.
        let flat = vec![77u8; 7 * 7];
        assert!(downscale_area(&flat, 7, 7, 3, 3).iter().all(|&v| v == 77));
    }

    #[test]
    fn label_downscale_majority_with_priority_ties() {
        let src = [2u8, 2, 4, 0, 2, 1, 4, 0];
        // Block 1: {2,2,2,1} → 2. Block 2: {4,0,4,0} → tie → 4.
        assert_eq!(downscale_labels(&src, 2, 4, 1, 2), vec![2, 4]);
    }
}
