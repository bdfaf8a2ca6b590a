//! The memorisation audit of the study (Akbar et al. 2024, "memorization"): for every synthetic
//! image, its highest Pearson correlation with any training image, and which training image that
//! is. A generator that copies its training set shows up as synthetic images whose best
//! correlation is close to 1.
//!
//! Pearson correlation of two images is the dot product of their centred, unit-norm pixel
//! vectors, so the whole audit is one normalised matrix product `S · Rᵀ` followed by a row-wise
//! maximum. It runs in blocks (synthetic rows kept in memory, the real store streamed past them)
//! so that the memory stays bounded at the paper's scale (100 000 synthetic images against tens of
//! thousands of 256×256×5 training slices), and the product runs on whichever device is given.
//!
//! Centring and normalisation are computed in f64 per image and cast to f32; the product is an f32
//! matrix product, whose error (about 1e-6 relative for unit vectors) is far below any threshold
//! a reader would use. Ties go to the lowest training index, so the result does not depend on the
//! block size. An image that is constant over the compared channels has no correlation; it is
//! counted and reported, never silently matched.

use crate::data::slices::{CHANNELS, Slice};
use crate::data::store::SliceStore;
use crate::data::store::StoreReader;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// Where the audit reads slices from: a store in memory or a store file read record by record.
pub trait SliceSource {
    /// Number of slices.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Rows and columns of every slice.
    fn size(&self) -> (usize, usize);
    /// Slice `i`.
    fn slice(&mut self, i: usize) -> Result<Slice>;
}

impl SliceSource for SliceStore {
    fn len(&self) -> usize {
        self.slices.len()
    }
    fn size(&self) -> (usize, usize) {
        (self.h, self.w)
    }
    fn slice(&mut self, i: usize) -> Result<Slice> {
        self.slices.get(i).cloned().ok_or_else(|| {
            Error::invalid(
                "store",
                format!("slice {i} out of range (store holds {})", self.slices.len()),
            )
        })
    }
}

impl<R: std::io::Read + std::io::Seek> SliceSource for StoreReader<R> {
    fn len(&self) -> usize {
        StoreReader::len(self)
    }
    fn size(&self) -> (usize, usize) {
        (self.h(), self.w())
    }
    fn slice(&mut self, i: usize) -> Result<Slice> {
        self.get(i)
    }
}

/// What the audit compares and how it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditConfig {
    /// Channels compared (0–4: T1, T1ce, T2, FLAIR, annotation); the default is all five, as the
    /// generators produce image and annotation together.
    pub channels: Vec<usize>,
    /// A synthetic image whose best correlation exceeds this is counted as a likely copy.
    pub threshold: f64,
    /// Where the matrix products run.
    pub device: Device,
    /// Memory for one block of normalised rows (bytes); the synthetic block and the real block
    /// each get this much.
    pub block_bytes: usize,
}

/// Default threshold for "likely copied" (a correlation this high between two brain slices means
/// the same anatomy in the same position; it is a choice, shown in every report).
pub const DEFAULT_THRESHOLD: f64 = 0.95;

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            channels: (0..CHANNELS).collect(),
            threshold: DEFAULT_THRESHOLD,
            device: Device::Cpu,
            block_bytes: 256 << 20,
        }
    }
}

/// The best match of one synthetic image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nearest {
    /// Index of the most correlated training image; `None` when the synthetic image is constant
    /// over the compared channels (or every training image is).
    pub real: Option<usize>,
    /// Its Pearson correlation (NaN when `real` is `None`).
    pub correlation: f64,
}

/// The audit's result: one [`Nearest`] per synthetic image, in store order.
#[derive(Clone, Debug, PartialEq)]
pub struct Audit {
    pub nearest: Vec<Nearest>,
    /// Training images compared.
    pub n_real: usize,
    /// Synthetic images that were constant (no correlation defined).
    pub constant_synthetic: usize,
    /// Training images that were constant (never matched).
    pub constant_real: usize,
    /// The threshold the summary counts against.
    pub threshold: f64,
    pub channels: Vec<usize>,
}

/// Summary statistics of the best correlations (over the synthetic images that have one).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditSummary {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    /// Synthetic images whose best correlation exceeds the threshold.
    pub above_threshold: usize,
    /// Distinct training images that some synthetic image exceeds the threshold against.
    pub distinct_real_above: usize,
}

/// Centred, unit-norm vector of the chosen channels of `s`, or `None` when constant.
fn normalised(s: &Slice, channels: &[usize]) -> Option<Vec<f32>> {
    let n = s.h * s.w;
    let d = n * channels.len();
    let mut sum = 0.0f64;
    for &c in channels {
        sum += s.channel(c).iter().map(|&v| v as f64).sum::<f64>();
    }
    let mean = sum / d as f64;
    let mut ss = 0.0f64;
    for &c in channels {
        ss += s
            .channel(c)
            .iter()
            .map(|&v| (v as f64 - mean) * (v as f64 - mean))
            .sum::<f64>();
    }
    if ss <= 0.0 {
        return None;
    }
    let inv = 1.0 / ss.sqrt();
    let mut out = Vec::with_capacity(d);
    for &c in channels {
        out.extend(
            s.channel(c)
                .iter()
                .map(|&v| ((v as f64 - mean) * inv) as f32),
        );
    }
    Some(out)
}

/// Normalised rows of slices `range` of `src` (constant ones left out): the row data, and for
/// each row its slice index.
fn load_block(
    src: &mut dyn SliceSource,
    range: std::ops::Range<usize>,
    channels: &[usize],
) -> Result<(Vec<f32>, Vec<usize>)> {
    let mut rows = Vec::new();
    let mut index = Vec::new();
    for i in range {
        if let Some(v) = normalised(&src.slice(i)?, channels) {
            rows.extend_from_slice(&v);
            index.push(i);
        }
    }
    Ok((rows, index))
}

fn check(cfg: &AuditConfig, synth: &dyn SliceSource, real: &dyn SliceSource) -> Result<()> {
    if cfg.channels.is_empty() || cfg.channels.iter().any(|&c| c >= CHANNELS) {
        return Err(Error::invalid(
            "memorisation audit",
            format!(
                "channels {:?}: choose one or more of 0–4 (T1, T1ce, T2, FLAIR, annotation)",
                cfg.channels
            ),
        ));
    }
    let mut seen = [false; CHANNELS];
    for &c in &cfg.channels {
        if std::mem::replace(&mut seen[c], true) {
            return Err(Error::invalid(
                "memorisation audit",
                format!("channel {c} is listed twice in {:?}", cfg.channels),
            ));
        }
    }
    if !(cfg.threshold.is_finite() && (-1.0..=1.0).contains(&cfg.threshold)) {
        return Err(Error::invalid(
            "memorisation audit",
            format!(
                "threshold {} is not a correlation (between -1 and 1)",
                cfg.threshold
            ),
        ));
    }
    if synth.is_empty() {
        return Err(Error::invalid(
            "memorisation audit",
            "the synthetic set holds no images",
        ));
    }
    if real.is_empty() {
        return Err(Error::invalid(
            "memorisation audit",
            "the training set holds no images",
        ));
    }
    if synth.size() != real.size() {
        let (a, b) = (synth.size(), real.size());
        return Err(Error::invalid(
            "memorisation audit",
            format!(
                "synthetic images are {}×{} but training images are {}×{}; generate at the \
                 training size",
                a.0, a.1, b.0, b.1
            ),
        ));
    }
    Ok(())
}

/// Run the audit: for every image of `synth`, its best Pearson correlation with any image of
/// `real`. `progress` is called with (synthetic images done, total) after each block.
pub fn audit(
    synth: &mut dyn SliceSource,
    real: &mut dyn SliceSource,
    cfg: &AuditConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Audit> {
    check(cfg, synth, real)?;
    let (h, w) = synth.size();
    let d = h * w * cfg.channels.len();
    let rows_per_block = (cfg.block_bytes / (d * 4)).max(1);
    let (ns, nr) = (synth.len(), real.len());
    let mut nearest = vec![
        Nearest {
            real: None,
            correlation: f64::NAN,
        };
        ns
    ];
    let mut constant_synthetic = 0;
    let mut constant_real = 0;
    let mut s0 = 0;
    while s0 < ns {
        let s1 = (s0 + rows_per_block).min(ns);
        let (srows, sidx) = load_block(synth, s0..s1, &cfg.channels)?;
        constant_synthetic += (s1 - s0) - sidx.len();
        if !sidx.is_empty() {
            let st = Tensor::from_vec(srows, &[sidx.len(), d])?.to_device(cfg.device)?;
            // Best so far per synthetic row of this block: (correlation, real index).
            let mut best = vec![(f32::NEG_INFINITY, usize::MAX); sidx.len()];
            let mut r0 = 0;
            while r0 < nr {
                let r1 = (r0 + rows_per_block).min(nr);
                let (rrows, ridx) = load_block(real, r0..r1, &cfg.channels)?;
                if s0 == 0 {
                    constant_real += (r1 - r0) - ridx.len();
                }
                if !ridx.is_empty() {
                    // Rᵀ laid out contiguously: the GEMM on a transposed view runs at a third
                    // of its speed at this shape (benches/memorization.rs)
                    let rt = Tensor::from_vec(transposed(&rrows, ridx.len(), d), &[d, ridx.len()])?
                        .to_device(cfg.device)?;
                    let scores = st.matmul(&rt)?.to_vec_f32()?;
                    for (i, b) in best.iter_mut().enumerate() {
                        let row = &scores[i * ridx.len()..(i + 1) * ridx.len()];
                        for (j, &c) in row.iter().enumerate() {
                            // Strictly greater: the lowest training index wins a tie, as
                            // blocks are visited in increasing order.
                            if c > b.0 {
                                *b = (c, ridx[j]);
                            }
                        }
                    }
                }
                r0 = r1;
            }
            for (k, &(c, j)) in best.iter().enumerate() {
                if j != usize::MAX {
                    nearest[sidx[k]] = Nearest {
                        real: Some(j),
                        correlation: (c as f64).clamp(-1.0, 1.0),
                    };
                }
            }
        }
        progress(s1, ns);
        s0 = s1;
    }
    Ok(Audit {
        nearest,
        n_real: nr,
        constant_synthetic,
        constant_real,
        threshold: cfg.threshold,
        channels: cfg.channels.clone(),
    })
}

/// The `rows × cols` row-major matrix `m` transposed, in cache-sized tiles (a plain strided
/// copy of a block of training images is slower than the product it feeds).
fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 32;
    let mut out = vec![0.0f32; m.len()];
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    out[c * rows + r] = m[r * cols + c];
                }
            }
        }
    }
    out
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    // Linear interpolation between closest ranks (NumPy's default).
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Audit {
    /// The correlations that exist (constant images left out).
    pub fn correlations(&self) -> Vec<f64> {
        self.nearest
            .iter()
            .filter(|n| n.real.is_some())
            .map(|n| n.correlation)
            .collect()
    }

    /// Mean, quantiles, maximum and the count above the threshold; `None` when no synthetic
    /// image had a correlation.
    pub fn summary(&self) -> Option<AuditSummary> {
        let mut c = self.correlations();
        if c.is_empty() {
            return None;
        }
        c.sort_by(f64::total_cmp);
        let above: Vec<&Nearest> = self
            .nearest
            .iter()
            .filter(|n| n.real.is_some() && n.correlation > self.threshold)
            .collect();
        let mut distinct: Vec<usize> = above.iter().filter_map(|n| n.real).collect();
        distinct.sort_unstable();
        distinct.dedup();
        Some(AuditSummary {
            n: c.len(),
            mean: c.iter().sum::<f64>() / c.len() as f64,
            median: quantile(&c, 0.5),
            p95: quantile(&c, 0.95),
            p99: quantile(&c, 0.99),
            max: c[c.len() - 1],
            above_threshold: above.len(),
            distinct_real_above: distinct.len(),
        })
    }

    /// The `k` synthetic images with the highest best correlation, highest first:
    /// `(synthetic index, nearest)`. Ties keep store order.
    pub fn closest(&self, k: usize) -> Vec<(usize, Nearest)> {
        let mut v: Vec<(usize, Nearest)> = self
            .nearest
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, n)| n.real.is_some())
            .collect();
        v.sort_by(|a, b| {
            b.1.correlation
                .total_cmp(&a.1.correlation)
                .then(a.0.cmp(&b.0))
        });
        v.truncate(k);
        v
    }

    /// Counts of best correlations in `bins` equal bins over [lo, 1]: `(bin centre, count)`.
    pub fn histogram(&self, lo: f64, bins: usize) -> Vec<(f64, usize)> {
        let bins = bins.max(1);
        let width = (1.0 - lo) / bins as f64;
        let mut counts = vec![0usize; bins];
        for c in self.correlations() {
            let b = (((c - lo) / width).floor().max(0.0) as usize).min(bins - 1);
            counts[b] += 1;
        }
        counts
            .into_iter()
            .enumerate()
            .map(|(i, n)| (lo + (i as f64 + 0.5) * width, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn random_slice(rng: &mut rand::rngs::StdRng, name: &str, h: usize, w: usize) -> Slice {
        let mut s = Slice::zeros(name, 0, h, w);
        for v in s.data.iter_mut() {
            *v = rng.random();
        }
        s
    }

    fn pearson(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let mut sab = 0.0;
        let mut saa = 0.0;
        let mut sbb = 0.0;
        for (x, y) in a.iter().zip(b) {
            sab += (x - ma) * (y - mb);
            saa += (x - ma) * (x - ma);
            sbb += (y - mb) * (y - mb);
        }
        sab / (saa * sbb).sqrt()
    }

    #[test]
    fn matches_brute_force_pearson_and_is_block_size_independent() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (h, w) = (6, 5);
        let mut real = SliceStore::new(h, w);
        for i in 0..23 {
            real.slices
                .push(random_slice(&mut rng, &format!("r{i}"), h, w));
        }
        let mut synth = SliceStore::new(h, w);
        for i in 0..17 {
            synth
                .slices
                .push(random_slice(&mut rng, &format!("s{i}"), h, w));
        }
        // One copy with a brightness change (correlation exactly 1) and one constant image.
        let mut copy = real.slices[11].clone();
        for v in copy.data.iter_mut() {
            *v /= 2;
        }
        synth.slices[4] = copy;
        synth.slices[9] = Slice::zeros("flat", 0, h, w);
        let channels = vec![0, 2, 4];
        let as_f64 = |s: &Slice| -> Vec<f64> {
            channels
                .iter()
                .flat_map(|&c| s.channel(c).iter().map(|&v| v as f64))
                .collect()
        };
        let mut results = Vec::new();
        for block_bytes in [1, 7 * h * w * 3 * 4, 1 << 20] {
            let cfg = AuditConfig {
                channels: channels.clone(),
                block_bytes,
                ..AuditConfig::default()
            };
            let a = audit(&mut synth.clone(), &mut real.clone(), &cfg, &mut |_, _| {}).unwrap();
            results.push(a);
        }
        let a = &results[0];
        assert_eq!(a.constant_synthetic, 1);
        assert_eq!(a.nearest[9].real, None);
        for (i, s) in synth.slices.iter().enumerate() {
            if i == 9 {
                continue;
            }
            let sv = as_f64(s);
            let (mut bj, mut bc) = (0, f64::NEG_INFINITY);
            for (j, r) in real.slices.iter().enumerate() {
                let c = pearson(&sv, &as_f64(r));
                if c > bc {
                    (bj, bc) = (j, c);
                }
            }
            let n = a.nearest[i];
            assert_eq!(n.real, Some(bj), "synthetic {i}");
            assert!(
                (n.correlation - bc).abs() < 1e-5,
                "{} vs {bc}",
                n.correlation
            );
        }
        assert_eq!(a.nearest[4].real, Some(11));
        // Halving by integer division is not an exact scaling, so close to 1, not 1.
        assert!(a.nearest[4].correlation > 0.99);
        // Bit-identical whatever the block size (Debug, because NaN != NaN).
        let dbg = |a: &Audit| format!("{a:?}");
        assert_eq!(dbg(&results[0]), dbg(&results[1]));
        assert_eq!(dbg(&results[0]), dbg(&results[2]));
        let sum = a.summary().unwrap();
        assert_eq!(sum.n, 16);
        assert_eq!(sum.above_threshold, 1);
        assert_eq!(sum.distinct_real_above, 1);
        assert_eq!(a.closest(1)[0].0, 4);
        assert_eq!(a.histogram(-1.0, 4).iter().map(|b| b.1).sum::<usize>(), 16);
    }

    #[test]
    fn bad_configurations_are_errors() {
        let mut s = SliceStore::new(4, 4);
        s.slices.push(Slice::zeros("a", 0, 4, 4));
        let mut r = SliceStore::new(4, 5);
        r.slices.push(Slice::zeros("b", 0, 4, 5));
        let cfg = AuditConfig::default();
        let e = audit(&mut s.clone(), &mut r, &cfg, &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("4×4"), "{e}");
        let bad = AuditConfig {
            channels: vec![1, 7],
            ..AuditConfig::default()
        };
        assert!(audit(&mut s.clone(), &mut s.clone(), &bad, &mut |_, _| {}).is_err());
        let bad = AuditConfig {
            threshold: 2.0,
            ..AuditConfig::default()
        };
        assert!(audit(&mut s.clone(), &mut s.clone(), &bad, &mut |_, _| {}).is_err());
        let empty = SliceStore::new(4, 4);
        let e = audit(&mut empty.clone(), &mut s, &cfg, &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("synthetic"), "{e}");
    }
}
