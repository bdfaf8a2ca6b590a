//! Slices to flat `f32` NCHW buffers for the models, and generated buffers back to slices.
//!
//! * Generators see all five channels scaled to [−1, 1]: `v / 127.5 − 1`.
//! * Segmenters see the four sequences z-scored per slice and channel over the brain
//!   (pixels where any sequence is non-zero; background stays 0) and a class map
//!   (0 background, 1 core, 2 edema, 3 enhancing).

use crate::data::annotation::{decode_value, encode_label, label_to_class};
use crate::data::slices::{ANNOTATION, CHANNELS, Slice};
use crate::{Error, Result};

/// A flat `f32` buffer in NCHW order with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Nchw {
    /// `shape[0] · shape[1] · shape[2] · shape[3]` values.
    pub data: Vec<f32>,
    /// `[n, c, h, w]`.
    pub shape: [usize; 4],
}

/// Inputs of a segmenter.
#[derive(Debug, Clone, PartialEq)]
pub struct SegBatch {
    /// `[n, 4, h, w]` z-scored sequences.
    pub images: Nchw,
    /// `n · h · w` classes 0..4 (0 background, 1 core, 2 edema, 3 enhancing), row-major per slice.
    pub classes: Vec<u8>,
}

fn check_sizes(slices: &[&Slice]) -> Result<(usize, usize)> {
    let first = slices
        .first()
        .ok_or_else(|| Error::Data("batch of no slices".into()))?;
    let (h, w) = (first.h, first.w);
    for s in slices {
        if s.h != h || s.w != w || s.data.len() != CHANNELS * h * w {
            return Err(Error::shape(
                "batch",
                format!(
                    "slice {}#{} is {}×{}, the batch is {h}×{w}",
                    s.subject, s.index, s.h, s.w
                ),
            ));
        }
    }
    Ok((h, w))
}

/// All five channels of each slice scaled to [−1, 1] (`v / 127.5 − 1`), shape `[n, 5, h, w]`.
pub fn generator_batch<'a>(slices: impl IntoIterator<Item = &'a Slice>) -> Result<Nchw> {
    let slices: Vec<&Slice> = slices.into_iter().collect();
    let (h, w) = check_sizes(&slices)?;
    let data = slices
        .iter()
        .flat_map(|s| s.data.iter().map(|&v| v as f32 / 127.5 - 1.0))
        .collect();
    Ok(Nchw {
        data,
        shape: [slices.len(), CHANNELS, h, w],
    })
}

/// Turn generator output (`[n, 5, h, w]` in [−1, 1]; values outside are clipped) back into slices:
/// `round((x + 1) · 127.5)`, the annotation snapped to the nearest label code with
/// [`decode_value`]. Slices are named `subject` with indices `0..n`.
pub fn slices_from_generator(data: &[f32], shape: [usize; 4], subject: &str) -> Result<Vec<Slice>> {
    let [n, c, h, w] = shape;
    if c != CHANNELS || data.len() != n * c * h * w {
        return Err(Error::shape(
            "slices_from_generator",
            format!(
                "{} values for shape {shape:?} (5 channels expected)",
                data.len()
            ),
        ));
    }
    let per = c * h * w;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = Slice::zeros(subject, i as u32, h, w);
        for (d, &x) in s.data.iter_mut().zip(&data[i * per..(i + 1) * per]) {
            let v = if x.is_nan() { -1.0 } else { x.clamp(-1.0, 1.0) };
            *d = ((v + 1.0) * 127.5).round() as u8;
        }
        for v in s.channel_mut(ANNOTATION) {
            *v = encode_label(decode_value(*v as f32));
        }
        out.push(s);
    }
    Ok(out)
}

/// Generator output as a synthetic training set: [`slices_from_generator`] with each image its
/// own pseudo-subject `synthetic_<first + i>` (six digits), axial index 0, so subject-level splits
/// and audits treat every generated image as one case (shared by every generator's `generate`).
pub fn synthetic_slices(data: &[f32], shape: [usize; 4], first: usize) -> Result<Vec<Slice>> {
    let mut out = slices_from_generator(data, shape, "synthetic")?;
    for (i, s) in out.iter_mut().enumerate() {
        s.subject = format!("synthetic_{:06}", first + i);
        s.index = 0;
    }
    Ok(out)
}

/// Z-score `values` over the pixels where `mask` is set (background → 0). A constant foreground
/// becomes 0.
pub fn zscore_foreground(values: &[u8], mask: &[bool], out: &mut [f32]) {
    let (mut n, mut sum, mut sq) = (0usize, 0f64, 0f64);
    for (&v, &m) in values.iter().zip(mask) {
        if m {
            n += 1;
            sum += v as f64;
            sq += (v as f64) * (v as f64);
        }
    }
    let mean = if n > 0 { sum / n as f64 } else { 0.0 };
    let var = if n > 0 {
        (sq / n as f64 - mean * mean).max(0.0)
    } else {
        0.0
    };
    let std = var.sqrt();
    for ((o, &v), &m) in out.iter_mut().zip(values).zip(mask) {
        *o = if m && std > 1e-6 {
            ((v as f64 - mean) / std) as f32
        } else {
            0.0
        };
    }
}

/// Segmenter inputs: the four sequences z-scored per slice and channel over the brain, and the
/// class map from the annotation.
pub fn segmenter_batch<'a>(slices: impl IntoIterator<Item = &'a Slice>) -> Result<SegBatch> {
    let slices: Vec<&Slice> = slices.into_iter().collect();
    let (h, w) = check_sizes(&slices)?;
    let hw = h * w;
    let mut images = vec![0f32; slices.len() * 4 * hw];
    let mut classes = Vec::with_capacity(slices.len() * hw);
    for (i, s) in slices.iter().enumerate() {
        let mask: Vec<bool> = (0..hw)
            .map(|p| (0..4).any(|c| s.channel(c)[p] > 0))
            .collect();
        for c in 0..4 {
            let o = (i * 4 + c) * hw;
            zscore_foreground(s.channel(c), &mask, &mut images[o..o + hw]);
        }
        classes.extend(
            s.channel(ANNOTATION)
                .iter()
                .map(|&v| label_to_class(decode_value(v as f32))),
        );
    }
    Ok(SegBatch {
        images: Nchw {
            data: images,
            shape: [slices.len(), 4, h, w],
        },
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_round_trip() {
        let mut s = Slice::zeros("a", 3, 2, 3);
        for (i, v) in s.data.iter_mut().enumerate() {
            *v = (i * 9) as u8;
        }
        for (i, v) in s.channel_mut(ANNOTATION).iter_mut().enumerate() {
            *v = [0, 51, 102, 204, 0, 51][i];
        }
        let b = generator_batch([&s]).unwrap();
        assert_eq!(b.shape, [1, 5, 2, 3]);
        assert!(b.data.iter().all(|v| (-1.0..=1.0).contains(v)));
        let back = slices_from_generator(&b.data, b.shape, "a").unwrap();
        assert_eq!(back[0].data, s.data);
    }

    #[test]
    fn segmenter_zscores_foreground_only() {
        let mut s = Slice::zeros("a", 0, 1, 4);
        s.channel_mut(0).copy_from_slice(&[0, 10, 20, 30]);
        s.channel_mut(ANNOTATION)
            .copy_from_slice(&[0, 51, 102, 204]);
        let b = segmenter_batch([&s]).unwrap();
        let t1 = &b.images.data[0..4];
        assert_eq!(t1[0], 0.0);
        let mean: f32 = t1[1..].iter().sum::<f32>() / 3.0;
        assert!(mean.abs() < 1e-5);
        assert_eq!(b.classes, vec![0, 1, 2, 3]);
    }
}
