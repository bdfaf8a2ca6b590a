//! Label consistency of a synthetic set (a measure beyond the paper): a segmenter trained on real
//! data predicts each synthetic image, and its prediction is compared with the label the
//! generator made for that image. If the images and their annotations agree as they do in real
//! data, the Dice is close to the segmenter's Dice on real test slices.
//!
//! Dice is pooled over all images (one count per region over the whole set), as the training's
//! validation score, because single synthetic images are not subjects.

use crate::data::Slice;
use crate::eval::dice::{Region, RegionCounts};
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
