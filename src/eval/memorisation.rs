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
//! Centring and normalisation come from exact integer sums per image, as a table over the 256
//! byte values computed in f64 and cast to f32; the product is an f32 matrix product, whose error (about 1e-6 relative for unit vectors) is far below any threshold
//! a reader would use. Ties go to the lowest training index, so the result does not depend on the
//! block size. An image that is constant over the compared channels has no correlation; it is
//! counted and reported, never silently matched.
//!
//! With [`AuditConfig::residual`] the training set's mean image (per pixel and channel) is
//! subtracted from every image before the correlation. Whole-image correlation between brain
//! slices is dominated by the head's outline and intensities: on the quick phantom a generator
//! that has learnt only a blurry average head scores 0.96–0.98 against tumour-free slices of the
//! same outline without copying anything (README). Residual correlation measures agreement in
//! what sets an image apart from the average: a copy still scores 1.

use crate::backend::cpu::fast::{SyncPtr, par_tasks};
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
    /// Correlate residuals: every image minus the training set's mean image (see the module
    /// notes). Off by default: the study's measure is the plain Pearson correlation.
    pub residual: bool,
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
            residual: false,
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
    /// Whether residuals (minus the training set's mean image) were correlated.
    pub residual: bool,
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

/// The centring and scaling of one image's chosen channels as a table over its byte values:
/// `table[v] = (v − mean) / ‖x − mean‖`, so that normalising is one lookup per pixel. `None`
/// when the image is constant. The sums are exact integers, so mean and norm are rounded once.
fn norm_table(s: &Slice, channels: &[usize]) -> Option<[f32; 256]> {
    let d = (s.h * s.w * channels.len()) as u128;
    let (mut sum, mut sq) = (0u64, 0u64);
    for &c in channels {
        // chunks of 4096 keep the vectorised u32 partial sums from overflowing (4096·255² < 2³²)
        for chunk in s.channel(c).chunks(4096) {
            sum += u64::from(chunk.iter().map(|&v| u32::from(v)).sum::<u32>());
            sq += u64::from(
                chunk
                    .iter()
                    .map(|&v| u32::from(v) * u32::from(v))
                    .sum::<u32>(),
            );
        }
    }
    // d·Σ(v − mean)² = d·Σv² − (Σv)², exactly
    let dss = d * u128::from(sq) - u128::from(sum) * u128::from(sum);
    if dss == 0 {
        return None;
    }
    let mean = sum as f64 / d as f64;
    let inv = 1.0 / (dss as f64 / d as f64).sqrt();
    let mut table = [0.0f32; 256];
    for (v, t) in table.iter_mut().enumerate() {
        *t = ((v as f64 - mean) * inv) as f32;
    }
    Some(table)
}

/// One image's chosen channels minus `mean` (the features in row order), centred and scaled to
/// unit norm, in f64 then cast, into `out`; false when the residual is constant.
fn residual_row(s: &Slice, channels: &[usize], mean: &[f64], out: &mut [f32]) -> bool {
    let r: Vec<f64> = channels
        .iter()
        .flat_map(|&c| s.channel(c).iter().map(|&v| f64::from(v)))
        .zip(mean)
        .map(|(v, m)| v - m)
        .collect();
    let d = r.len() as f64;
    let m = r.iter().sum::<f64>() / d;
    let ss: f64 = r.iter().map(|v| (v - m) * (v - m)).sum();
    // residuals are differences of bytes and an average: below this they are rounding, not signal
    // (also false for a NaN sum, which byte data cannot give)
    if ss.is_nan() || ss <= 1e-9 * d {
        return false;
    }
    let inv = 1.0 / ss.sqrt();
    for (o, v) in out.iter_mut().zip(&r) {
        *o = ((v - m) * inv) as f32;
    }
    true
}

/// The mean over every image of `src` of its chosen channels (features in row order).
fn mean_image(src: &mut dyn SliceSource, channels: &[usize]) -> Result<Vec<f64>> {
    let (h, w) = src.size();
    let plane = h * w;
    let mut sum = vec![0u64; plane * channels.len()];
    for i in 0..src.len() {
        let s = src.slice(i)?;
        for (k, &c) in channels.iter().enumerate() {
            for (a, &v) in sum[k * plane..(k + 1) * plane].iter_mut().zip(s.channel(c)) {
                *a += u64::from(v);
            }
        }
    }
    let n = src.len().max(1) as f64;
    Ok(sum.into_iter().map(|v| v as f64 / n).collect())
}

/// How one image of a block is normalised.
enum Normalised {
    /// Plain Pearson: a table over the byte values ([`norm_table`]), boxed so both variants
    /// are small.
    Table(Box<[f32; 256]>),
    /// Residual: the finished row ([`residual_row`]), as its index in the block's row buffer.
    Row(usize),
}

/// A block of normalised images (constant ones left out), laid out for the product.
struct Block {
    /// Row-major `[n, d]`, or its transpose `[d, n]`.
    data: Vec<f32>,
    /// Slice index of each of the `n` images.
    index: Vec<usize>,
}

/// Normalised images `range` of `src`: rows `[n, d]`, or with `transpose` columns `[d, n]`.
/// Reading is serial (a store file is read record by record); normalising runs on the workers,
/// each writing its own part of the output.
fn load_block(
    src: &mut dyn SliceSource,
    range: std::ops::Range<usize>,
    channels: &[usize],
    mean: Option<&[f64]>,
    transpose: bool,
) -> Result<Block> {
    let start = range.start;
    let read = range
        .map(|i| src.slice(i))
        .collect::<Result<Vec<Slice>>>()?;
    // residual rows, one per image read (empty for plain Pearson)
    let mut rows: Vec<f32> = Vec::new();
    let found: Vec<Option<Normalised>> = match mean {
        None => {
            let mut t: Vec<Option<[f32; 256]>> = vec![None; read.len()];
            let tp = SyncPtr(t.as_mut_ptr());
            par_tasks(
                read.len(),
                || (),
                // SAFETY: task i writes only t[i].
                |_, i| unsafe { *tp.get().add(i) = norm_table(&read[i], channels) },
            );
            t.into_iter()
                .map(|t| t.map(|t| Normalised::Table(Box::new(t))))
                .collect()
        }
        Some(m) => {
            let d = m.len();
            rows = vec![0.0f32; read.len() * d];
            let mut ok = vec![false; read.len()];
            let (rp, okp) = (SyncPtr(rows.as_mut_ptr()), SyncPtr(ok.as_mut_ptr()));
            par_tasks(
                read.len(),
                || (),
                // SAFETY: task i writes only row i of `rows` and ok[i].
                |_, i| unsafe {
                    let row = std::slice::from_raw_parts_mut(rp.get().add(i * d), d);
                    *okp.get().add(i) = residual_row(&read[i], channels, m, row);
                },
            );
            ok.iter()
                .enumerate()
                .map(|(i, &k)| k.then_some(Normalised::Row(i)))
                .collect()
        }
    };
    let mut slices = Vec::with_capacity(read.len());
    let mut tables = Vec::with_capacity(read.len());
    let mut index = Vec::with_capacity(read.len());
    for (k, (s, t)) in read.into_iter().zip(found).enumerate() {
        if let Some(t) = t {
            slices.push(s);
            tables.push(t);
            index.push(start + k);
        }
    }
    let n = slices.len();
    let Some(first) = slices.first() else {
        return Ok(Block {
            data: Vec::new(),
            index,
        });
    };
    let plane = first.h * first.w;
    let d = plane * channels.len();
    // feature p of image r (p = k·plane + q: pixel q of channel channels[k])
    let value = |r: usize, p: usize| -> f32 {
        match &tables[r] {
            Normalised::Table(t) => {
                t[usize::from(slices[r].data[channels[p / plane] * plane + p % plane])]
            }
            Normalised::Row(i) => rows[i * d + p],
        }
    };
    let mut data = vec![0.0f32; n * d];
    let out = SyncPtr(data.as_mut_ptr());
    if transpose {
        // tasks own 1024 features (rows of the output); inside, 16 images at a time, so each
        // feature's write is one 64-byte run and each image is read sequentially
        const P: usize = 1024;
        const R: usize = 16;
        par_tasks(
            d.div_ceil(P),
            || (),
            |_, t| {
                let (p0, p1) = (t * P, ((t + 1) * P).min(d));
                for r0 in (0..n).step_by(R) {
                    let r1 = (r0 + R).min(n);
                    for p in p0..p1 {
                        for r in r0..r1 {
                            let v = value(r, p);
                            // SAFETY: task t writes only rows p0..p1 of the [d, n] output.
                            unsafe { *out.get().add(p * n + r) = v };
                        }
                    }
                }
            },
        );
    } else {
        par_tasks(
            n,
            || (),
            |_, r| {
                // SAFETY: task r writes only row r of the [n, d] output.
                let row = unsafe { std::slice::from_raw_parts_mut(out.get().add(r * d), d) };
                match &tables[r] {
                    Normalised::Table(t) => {
                        for (k, &c) in channels.iter().enumerate() {
                            for (o, &v) in row[k * plane..(k + 1) * plane]
                                .iter_mut()
                                .zip(slices[r].channel(c))
                            {
                                *o = t[usize::from(v)];
                            }
                        }
                    }
                    Normalised::Row(i) => row.copy_from_slice(&rows[i * d..(i + 1) * d]),
                }
            },
        );
    }
    Ok(Block { data, index })
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
    let mean = match cfg.residual {
        true => Some(mean_image(real, &cfg.channels)?),
        false => None,
    };
    let mut s0 = 0;
    while s0 < ns {
        let s1 = (s0 + rows_per_block).min(ns);
        // The product is Cᵀ = R · Sᵀ: the synthetic block is laid out as Sᵀ once and reused for
        // every block of training rows, which then need no transposing (a GEMM with a
        // transposed operand view runs at a third of its speed at these shapes,
        // benches/memorization.rs).
        let sb = load_block(synth, s0..s1, &cfg.channels, mean.as_deref(), true)?;
        let sidx = sb.index;
        constant_synthetic += (s1 - s0) - sidx.len();
        if !sidx.is_empty() {
            let ns_b = sidx.len();
            let st = Tensor::from_vec(sb.data, &[d, ns_b])?.to_device(cfg.device)?;
            // Best so far per synthetic image of this block: (correlation, real index).
            let mut best = vec![(f32::NEG_INFINITY, usize::MAX); ns_b];
            let mut r0 = 0;
            while r0 < nr {
                let r1 = (r0 + rows_per_block).min(nr);
                let rb = load_block(real, r0..r1, &cfg.channels, mean.as_deref(), false)?;
                let ridx = rb.index;
                if s0 == 0 {
                    constant_real += (r1 - r0) - ridx.len();
                }
                if !ridx.is_empty() {
                    let r = Tensor::from_vec(rb.data, &[ridx.len(), d])?.to_device(cfg.device)?;
                    let scores = r.matmul(&st)?.to_vec_f32()?;
                    // Training rows in increasing index order and a strict comparison: the
                    // lowest training index wins a tie, whatever the block size.
                    for (row, &j) in scores.chunks_exact(ns_b).zip(&ridx) {
                        for (b, &c) in best.iter_mut().zip(row) {
                            if c > b.0 {
                                *b = (c, j);
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
        residual: cfg.residual,
    })
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

    /// Residual correlation: against a brute force over (image − mean training image), and on
    /// "heads" (one shared outline plus each image's own small pattern) it separates an average
    /// head, which plain correlation calls a copy, from real copies, which both find.
    #[test]
    fn residual_correlation_tells_an_average_head_from_a_copy() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (h, w) = (20, 20);
        let head = |y: usize, x: usize| {
            let (dy, dx) = (y as f64 - 9.5, x as f64 - 9.5);
            dy * dy + dx * dx < 64.0
        };
        // each training image: the head at 150 (0 outside) plus its own pattern of ±12
        let mut real = SliceStore::new(h, w);
        for i in 0..30 {
            let mut sl = Slice::zeros(format!("r{i}"), 0, h, w);
            for c in 0..CHANNELS {
                for (k, v) in sl.channel_mut(c).iter_mut().enumerate() {
                    if head(k / w, k % w) {
                        *v = (150 + rng.random_range(-12i32..=12)) as u8;
                    }
                }
            }
            real.slices.push(sl);
        }
        let mut synth = SliceStore::new(h, w);
        // 0: an average head (no pattern of its own, a little noise); 1, 2: copies of 7 and 21
        let mut avg = Slice::zeros("avg", 0, h, w);
        for c in 0..CHANNELS {
            for (k, v) in avg.channel_mut(c).iter_mut().enumerate() {
                if head(k / w, k % w) {
                    *v = (150 + rng.random_range(-2i32..=2)) as u8;
                }
            }
        }
        synth.slices.push(avg);
        synth.slices.push(real.slices[7].clone());
        synth.slices.push(real.slices[21].clone());
        let run = |residual: bool| {
            let cfg = AuditConfig {
                residual,
                block_bytes: 5 * h * w * CHANNELS * 4,
                ..AuditConfig::default()
            };
            audit(&mut synth.clone(), &mut real.clone(), &cfg, &mut |_, _| {}).unwrap()
        };
        let (plain, resid) = (run(false), run(true));
        assert!(resid.residual && !plain.residual);
        println!(
            "plain {:?}\nresidual {:?}",
            plain.correlations(),
            resid.correlations()
        );
        assert!(
            plain.nearest[0].correlation > 0.95,
            "{:?}",
            plain.nearest[0]
        );
        assert!(resid.nearest[0].correlation < 0.5, "{:?}", resid.nearest[0]);
        for (i, j) in [(1, 7), (2, 21)] {
            for a in [&plain, &resid] {
                assert_eq!(a.nearest[i].real, Some(j));
                assert!(a.nearest[i].correlation > 0.9999, "{:?}", a.nearest[i]);
            }
        }
        // brute force over residuals
        let feats = |s: &Slice| -> Vec<f64> { s.data.iter().map(|&v| f64::from(v)).collect() };
        let n = real.slices.len() as f64;
        let mut mean = vec![0.0; h * w * CHANNELS];
        for r in &real.slices {
            for (m, v) in mean.iter_mut().zip(feats(r)) {
                *m += v / n;
            }
        }
        let minus = |v: Vec<f64>| -> Vec<f64> { v.iter().zip(&mean).map(|(a, m)| a - m).collect() };
        for (i, s) in synth.slices.iter().enumerate() {
            let sv = minus(feats(s));
            let (mut bj, mut bc) = (0, f64::NEG_INFINITY);
            for (j, r) in real.slices.iter().enumerate() {
                let c = pearson(&sv, &minus(feats(r)));
                if c > bc {
                    (bj, bc) = (j, c);
                }
            }
            assert_eq!(resid.nearest[i].real, Some(bj), "synthetic {i}");
            assert!((resid.nearest[i].correlation - bc).abs() < 1e-5);
        }
    }

    /// Sizes where the transposed layout splits into several feature tasks (d = 2880, tasks of
    /// 1024) and ragged 16-image groups; the same bits on the workers and on one thread.
    #[test]
    fn matches_brute_force_when_the_layout_is_split() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (h, w) = (24, 24);
        let store = |rng: &mut rand::rngs::StdRng, n: usize, p: &str| {
            let mut s = SliceStore::new(h, w);
            s.slices = (0..n)
                .map(|i| random_slice(rng, &format!("{p}{i}"), h, w))
                .collect();
            s
        };
        let real = store(&mut rng, 41, "r");
        let mut synth = store(&mut rng, 37, "s");
        synth.slices[20] = real.slices[33].clone();
        let as_f64 = |s: &Slice| s.data.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let run = |block_bytes: usize| {
            let cfg = AuditConfig {
                block_bytes,
                ..AuditConfig::default()
            };
            audit(&mut synth.clone(), &mut real.clone(), &cfg, &mut |_, _| {}).unwrap()
        };
        let a = run(1 << 20);
        for (i, s) in synth.slices.iter().enumerate() {
            let sv = as_f64(s);
            let (mut bj, mut bc) = (0, f64::NEG_INFINITY);
            for (j, r) in real.slices.iter().enumerate() {
                let c = pearson(&sv, &as_f64(r));
                if c > bc {
                    (bj, bc) = (j, c);
                }
            }
            assert_eq!(a.nearest[i].real, Some(bj), "synthetic {i}");
            assert!(
                (a.nearest[i].correlation - bc).abs() < 1e-5,
                "synthetic {i}"
            );
        }
        assert_eq!(a.nearest[20].real, Some(33));
        assert!(a.nearest[20].correlation > 1.0 - 1e-6);
        // blocks of 13 images: several synthetic and training blocks, the same bits
        let b = run(13 * h * w * CHANNELS * 4);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        // serial (as if called from a worker): the same bits
        let c = crate::backend::cpu::as_worker(|| run(1 << 20));
        assert_eq!(format!("{a:?}"), format!("{c:?}"));
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
