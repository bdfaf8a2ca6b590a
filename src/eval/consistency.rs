//! Label consistency of a synthetic set (a measure beyond the paper): a segmenter trained on real
//! data predicts each synthetic image, and its prediction is compared with the label the
//! generator made for that image. If the images and their annotations agree as they do in real
//! data, the Dice is close to the segmenter's Dice on real test slices.
//!
//! [`bottleneck_features`] gives the same network's features for the Fréchet distance of
//! [`crate::eval::frechet`].
//!
//! Dice is pooled over all images (one count per region over the whole set), as the training's
//! validation score, because single synthetic images are not subjects.

use crate::data::Slice;
use crate::data::batch::segmenter_batch;
use crate::eval::dice::{Region, RegionCounts};
use crate::tensor::Tensor;
use crate::train::seg::{Segmenter, predict_labels};
use crate::{Error, Result};

/// Pooled Dice per region of `model`'s predictions against the slices' own labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Consistency {
    pub images: usize,
    /// Dice per region, in [`Region::ALL`] order.
    pub dice: [f64; 5],
    /// Mean over the three classes.
    pub mean_class_dice: f64,
}

/// Predict every slice with `model` and compare with its label, `batch` slices at a time.
pub fn label_consistency(model: &Segmenter, slices: &[Slice], batch: usize) -> Result<Consistency> {
    if slices.is_empty() {
        return Err(Error::Data(
            "label consistency of an empty set of images".into(),
        ));
    }
    let preds = predict_labels(model, slices, batch)?;
    let mut c = RegionCounts::default();
    for (s, p) in slices.iter().zip(&preds) {
        c.add(p, &s.labels())?;
    }
    let mut dice = [0.0; 5];
    for (d, r) in dice.iter_mut().zip(Region::ALL) {
        *d = c.dice(r);
    }
    Ok(Consistency {
        images: slices.len(),
        dice,
        mean_class_dice: c.mean_class_dice(),
    })
}

/// The real-trained U-Net's bottleneck features of every slice, averaged over positions:
/// `(features row-major n × c, c)`. The Swin has no such bottleneck: an error.
pub fn bottleneck_features(
    model: &Segmenter,
    slices: &[Slice],
    batch: usize,
) -> Result<(Vec<f64>, usize)> {
    let mut out = Vec::new();
    let mut channels = 0;
    crate::autograd::no_grad(|| -> Result<()> {
        for chunk in slices.chunks(batch.max(1)) {
            let b = segmenter_batch(chunk.iter())?;
            let x = Tensor::from_vec(b.images.data, &b.images.shape)?;
            let f = model.unet_bottleneck(&x)?.ok_or_else(|| {
                Error::invalid("features", "only the U-Net has a bottleneck to measure in")
            })?;
            let s = f.shape().to_vec();
            let (c, hw) = (s[1], s[2] * s[3]);
            channels = c;
            let v = f.to_vec_f32()?;
            for i in 0..s[0] {
                for k in 0..c {
                    let o = (i * c + k) * hw;
                    out.push(v[o..o + hw].iter().map(|&x| x as f64).sum::<f64>() / hw as f64);
                }
            }
        }
        Ok(())
    })?;
    Ok((out, channels))
}
