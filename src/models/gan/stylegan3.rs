//! StyleGAN3-T's generator as NVlabs' `networks_stylegan3.py` builds it for `--cfg=stylegan3-t`:
//! a 2-layer mapping network, `synthesis.input` (Fourier features whose frequencies and phases
//! are rotated and translated by an affine transform of w, then mixed by a learned matrix),
//! 14 `synthesis.L{i}_{size}_{channels}` layers and a final toRGB layer.
//!
//! Each layer: modulated conv (weights and styles pre-normalised, demodulated, scaled by
//! `magnitude_ema`^−½, padding k−1), then filtered leaky ReLU — up-sample with a Kaiser-windowed
//! sinc, bias/leaky ReLU/√2 gain/clamp, down-sample with another. The cutoff, stopband, sampling
//! rate and size schedule (with a 10-pixel margin, the last two layers critically sampled) is the
//! reference's, computed in f64 with numpy's rounding; filters are designed in f64 and stored as
//! f32 buffers (`up_filter`, `down_filter`). `magnitude_ema` (a buffer) is updated only in
//! training. The output is scaled by 0.25.

use super::GanConfig;
use super::layers::{FullyConnected, LRELU};
use super::mapping::Mapping;
use crate::nn::{Init, ParamStore, Scope};
use crate::ops::filter_design::design_lowpass_filter;
use crate::ops::modconv::{ModConvParams, modulated_conv2d};
use crate::ops::stylegan::{Act, filtered_lrelu};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// The synthesis settings of `--cfg=stylegan3-t` (NVlabs' defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Sg3Settings {
    /// Layers excluding the Fourier input and toRGB (14).
    pub num_layers: usize,
    /// Critically sampled layers at the end (2).
    pub num_critical: usize,
    /// Cutoff of the first layer f_c,0 (2).
    pub first_cutoff: f64,
    /// Minimum stopband of the first layer f_t,0 (2^2.1).
    pub first_stopband: f64,
    /// Minimum stopband of the last layer relative to its cutoff (2^0.3).
    pub last_stopband_rel: f64,
    /// Extra pixels around the image in the intermediate layers (10).
    pub margin_size: usize,
    /// Output scale (0.25).
    pub output_scale: f64,
    /// Conv kernel (3 in the T config).
    pub conv_kernel: usize,
    /// Low-pass filter taps per resampling factor (6).
    pub filter_size: usize,
    /// Sampling-rate factor at which the leaky ReLU runs (2).
    pub lrelu_upsampling: usize,
    /// Decay of the input-magnitude averages: 0.5^(batch / 20000) in `train.py`.
    pub magnitude_ema_beta: f64,
}

impl Sg3Settings {
    /// NVlabs' values with `train.py`'s magnitude decay for `batch`.
    pub fn for_batch(batch: usize) -> Sg3Settings {
        Sg3Settings {
            num_layers: 14,
            num_critical: 2,
            first_cutoff: 2.0,
            first_stopband: 2f64.powf(2.1),
            last_stopband_rel: 2f64.powf(0.3),
            margin_size: 10,
            output_scale: 0.25,
            conv_kernel: 3,
            filter_size: 6,
            lrelu_upsampling: 2,
            magnitude_ema_beta: 0.5f64.powf(batch as f64 / 2e4),
        }
    }
}

/// The per-layer schedule (index 0 is the Fourier input, 1…num_layers+1 the layers).
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub cutoffs: Vec<f64>,
    pub stopbands: Vec<f64>,
    pub sampling_rates: Vec<f64>,
    pub half_widths: Vec<f64>,
    pub sizes: Vec<usize>,
    pub channels: Vec<usize>,
}

/// `SynthesisNetwork.__init__`'s schedule for `cfg` (channels from channel_base / channel_max).
pub fn schedule(cfg: &GanConfig, s: &Sg3Settings) -> Result<Schedule> {
    let n = s.num_layers;
    if n <= s.num_critical || n < 2 {
        return Err(Error::invalid(
            "stylegan3 schedule",
            format!(
                "{n} layers must exceed the {} critical ones",
                s.num_critical
            ),
        ));
    }
    let res = cfg.resolution as f64;
    let last_cutoff = res / 2.0;
    let last_stopband = last_cutoff * s.last_stopband_rel;
    let exps: Vec<f64> = (0..=n)
        .map(|i| (i as f64 / (n - s.num_critical) as f64).min(1.0))
        .collect();
    let cutoffs: Vec<f64> = exps
        .iter()
        .map(|&e| s.first_cutoff * (last_cutoff / s.first_cutoff).powf(e))
        .collect();
    let stopbands: Vec<f64> = exps
        .iter()
        .map(|&e| s.first_stopband * (last_stopband / s.first_stopband).powf(e))
        .collect();
    let sampling_rates: Vec<f64> = stopbands
        .iter()
        .map(|&f| (f * 2.0).min(res).log2().ceil().exp2())
        .collect();
    let half_widths: Vec<f64> = stopbands
        .iter()
        .zip(&sampling_rates)
        .zip(&cutoffs)
        .map(|((&f, &sr), &c)| f.max(sr / 2.0) - c)
        .collect();
    let mut sizes: Vec<usize> = sampling_rates
        .iter()
        .map(|&sr| sr as usize + 2 * s.margin_size)
        .collect();
    sizes[n - 1] = cfg.resolution;
    sizes[n] = cfg.resolution;
    let mut channels: Vec<usize> = cutoffs
        .iter()
        .map(|&c| {
            ((cfg.channel_base as f64 / 2.0) / c)
                .min(cfg.channel_max as f64)
                .round_ties_even() as usize
        })
        .collect();
    channels[n] = cfg.channels;
    if channels.contains(&0) {
        return Err(Error::invalid(
            "stylegan3 schedule",
            format!(
                "channel_base {} gives layers without channels",
                cfg.channel_base
            ),
        ));
    }
    Ok(Schedule {
        cutoffs,
        stopbands,
        sampling_rates,
        half_widths,
        sizes,
        channels,
    })
}

/// `synthesis.input`: Fourier features of `channels` frequencies sampled on a `size`² grid.
#[derive(Clone, Debug)]
pub struct SynthesisInput {
    pub affine: FullyConnected,
    pub weight: Tensor,
    pub transform: Tensor,
    pub freqs: Tensor,
    pub phases: Tensor,
    channels: usize,
    size: usize,
    sampling_rate: f64,
    bandwidth: f64,
}

impl SynthesisInput {
    fn new(
        vs: &Scope,
        w_dim: usize,
        channels: usize,
        size: usize,
        sampling_rate: f64,
        bandwidth: f64,
    ) -> Result<SynthesisInput> {
        // initial frequencies: random directions, radii shrunk as NVlabs', within the bandwidth
        let mut rng = vs.store().rng_for(&vs.join("freqs"));
        let raw = Tensor::randn(&[channels, 2], vs.dtype(), &mut rng).to_vec_f64()?;
        let mut f = Vec::with_capacity(channels * 2);
        for c in raw.chunks_exact(2) {
            let r = c[0].hypot(c[1]);
            let d = r * (r * r).exp().powf(0.25) / bandwidth;
            f.extend([c[0] / d, c[1] / d]);
        }
        let freqs = vs.buffer("freqs", &Tensor::from_f64s(&f, &[channels, 2], vs.dtype())?)?;
        let phases = vs.buffer_init("phases", &[channels], Init::Uniform { lo: -0.5, hi: 0.5 })?;
        let eye: Vec<f64> = (0..9).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
        let transform = vs.buffer("transform", &Tensor::from_f64s(&eye, &[3, 3], vs.dtype())?)?;
        let affine = FullyConnected::new(&vs.sub("affine"), w_dim, 4, Act::Linear, 1.0, 0.0)?;
        // weight_init 0, bias_init [1, 0, 0, 0]: the identity transform
        affine.lin.weight.assign(&affine.lin.weight.zeros_like())?;
        if let Some(b) = &affine.lin.bias {
            b.assign(&Tensor::from_f64s(&[1.0, 0.0, 0.0, 0.0], &[4], vs.dtype())?)?;
        }
        Ok(SynthesisInput {
            affine,
            weight: vs.param("weight", &[channels, channels], Init::normal(1.0))?,
            transform,
            freqs,
            phases,
            channels,
            size,
            sampling_rate,
            bandwidth,
        })
    }

    /// w [N, w_dim] → features [N, channels, size, size].
    fn forward(&self, w: &Tensor) -> Result<Tensor> {
        let n = w.shape()[0];
        let (c, sz) = (self.channels, self.size);
        let t = self.affine.forward(w)?; // (r_c, r_s, t_x, t_y)
        let rs = t.narrow(1, 0, 2)?.sqr()?.sum_axes(&[1], true)?.sqrt()?;
        let t = t.div(&rs)?;
        let col = |i: usize| t.narrow(1, i, 1); // [N, 1]
        let (rc, rsn, tx, ty) = (col(0)?, col(1)?, col(2)?, col(3)?);
        let zero = rc.zeros_like();
        let one = rc.ones_like();
        // m_r · m_t: inverse rotation, then inverse translation (wrt. the resulting image)
        let m_r = Tensor::cat(
            &[
                rc.clone(),
                rsn.neg()?,
                zero.clone(),
                rsn.clone(),
                rc.clone(),
                zero.clone(),
                zero.clone(),
                zero.clone(),
                one.clone(),
            ],
            1,
        )?
        .reshape(&[n, 3, 3])?;
        let m_t = Tensor::cat(
            &[
                one.clone(),
                zero.clone(),
                tx.neg()?,
                zero.clone(),
                one.clone(),
                ty.neg()?,
                zero.clone(),
                zero,
                one,
            ],
            1,
        )?
        .reshape(&[n, 3, 3])?;
        let tr = m_r
            .matmul(&m_t)?
            .matmul(&self.transform.reshape(&[1, 3, 3])?)?;
        let lin = tr.narrow(1, 0, 2)?.narrow(2, 0, 2)?.contiguous()?; // [N, 2, 2]
        let shift = tr.narrow(1, 0, 2)?.narrow(2, 2, 1)?.contiguous()?; // [N, 2, 1]
        let freqs0 = self.freqs.reshape(&[1, c, 2])?;
        let phases = self
            .phases
            .reshape(&[1, c])?
            .add(&freqs0.matmul(&shift)?.reshape(&[n, c])?)?;
        let freqs = freqs0.matmul(&lin)?; // [N, C, 2]
        let norm = freqs.sqr()?.sum_axes(&[2], false)?.sqrt()?;
        let amplitudes = norm
            .add_scalar(-self.bandwidth)?
            .mul_scalar(-1.0 / (self.sampling_rate / 2.0 - self.bandwidth))?
            .add_scalar(1.0)?
            .clamp(0.0, 1.0)?;
        // affine_grid (align_corners = False) scaled by size / (2 · sampling rate)
        let scale = 0.5 * sz as f64 / self.sampling_rate;
        let g: Vec<f64> = (0..sz)
            .map(|i| scale * ((2 * i + 1) as f64 / sz as f64 - 1.0))
            .collect();
        let gx = Tensor::from_f64s(&g, &[1, 1, 1, sz], w.dtype())?.to_device(w.device())?;
        let gy = Tensor::from_f64s(&g, &[1, 1, sz, 1], w.dtype())?.to_device(w.device())?;
        let fx = freqs.narrow(2, 0, 1)?.reshape(&[n, c, 1, 1])?;
        let fy = freqs.narrow(2, 1, 1)?.reshape(&[n, c, 1, 1])?;
        let x = gx
            .mul(&fx)?
            .add(&gy.mul(&fy)?)?
            .add(&phases.reshape(&[n, c, 1, 1])?)?;
        let x = x
            .mul_scalar(2.0 * std::f64::consts::PI)?
            .sin()?
            .mul(&amplitudes.reshape(&[n, c, 1, 1])?)?;
        let wmix = self
            .weight
            .mul_scalar(1.0 / (c as f64).sqrt())?
            .reshape(&[c, c, 1, 1])?;
        x.conv2d(&wmix, crate::ops::Conv2dParams::default())
    }
}

/// One `synthesis.L{i}_{size}_{channels}` layer.
#[derive(Clone, Debug)]
pub struct Sg3Layer {
    pub name: String,
    pub affine: FullyConnected,
    pub weight: Tensor,
    pub bias: Tensor,
    pub magnitude_ema: Tensor,
    pub up_filter: Option<Tensor>,
    pub down_filter: Option<Tensor>,
    is_torgb: bool,
    in_channels: usize,
    kernel: usize,
    up: usize,
    down: usize,
    padding: (isize, isize, isize, isize),
    conv_clamp: Option<f64>,
    magnitude_ema_beta: f64,
}

impl Sg3Layer {
    #[allow(clippy::too_many_arguments)]
    fn new(
        vs: &Scope,
        name: String,
        cfg: &GanConfig,
        s: &Sg3Settings,
        sch: &Schedule,
        idx: usize,
    ) -> Result<Sg3Layer> {
        let prev = idx.saturating_sub(1);
        let is_torgb = idx == s.num_layers;
        let (in_c, out_c) = (sch.channels[prev], sch.channels[idx]);
        let (in_sz, out_sz) = (sch.sizes[prev] as isize, sch.sizes[idx] as isize);
        let (in_sr, out_sr) = (sch.sampling_rates[prev], sch.sampling_rates[idx]);
        let tmp_sr = in_sr.max(out_sr)
            * if is_torgb {
                1.0
            } else {
                s.lrelu_upsampling as f64
            };
        let kernel = if is_torgb { 1 } else { s.conv_kernel };
        let up = (tmp_sr / in_sr).round_ties_even() as usize;
        let down = (tmp_sr / out_sr).round_ties_even() as usize;
        let up_taps = if up > 1 && !is_torgb {
            s.filter_size * up
        } else {
            1
        };
        let down_taps = if down > 1 && !is_torgb {
            s.filter_size * down
        } else {
            1
        };
        let dt = vs.dtype();
        let up_filter = design_lowpass_filter(
            up_taps,
            sch.cutoffs[prev],
            sch.half_widths[prev] * 2.0,
            tmp_sr,
            false,
            dt,
        )?
        .map(|f| vs.buffer("up_filter", &f))
        .transpose()?;
        let down_filter = design_lowpass_filter(
            down_taps,
            sch.cutoffs[idx],
            sch.half_widths[idx] * 2.0,
            tmp_sr,
            false,
            dt,
        )?
        .map(|f| vs.buffer("down_filter", &f))
        .transpose()?;
        let (up_i, down_i, k) = (up as isize, down as isize, kernel as isize);
        let pad_total = (out_sz - 1) * down_i + 1 - (in_sz + k - 1) * up_i
            + up_taps as isize
            + down_taps as isize
            - 2;
        let lo = (pad_total + up_i).div_euclid(2);
        let hi = pad_total - lo;
        Ok(Sg3Layer {
            name,
            affine: FullyConnected::new(&vs.sub("affine"), cfg.w_dim, in_c, Act::Linear, 1.0, 1.0)?,
            weight: vs.param("weight", &[out_c, in_c, kernel, kernel], Init::normal(1.0))?,
            bias: vs.param("bias", &[out_c], Init::Constant(0.0))?,
            magnitude_ema: vs.buffer_init("magnitude_ema", &[], Init::Constant(1.0))?,
            up_filter,
            down_filter,
            is_torgb,
            in_channels: in_c,
            kernel,
            up,
            down,
            padding: (lo, hi, lo, hi),
            conv_clamp: cfg.conv_clamp,
            magnitude_ema_beta: s.magnitude_ema_beta,
        })
    }

    fn forward(&self, x: &Tensor, w: &Tensor, update_emas: bool) -> Result<Tensor> {
        if update_emas {
            let _g = crate::autograd::no_grad_guard();
            let cur = x.detach().sqr()?.mean_all()?;
            // lerp(cur, ema, β) = cur + β·(ema − cur)
            let new = cur.add(
                &self
                    .magnitude_ema
                    .sub(&cur)?
                    .mul_scalar(self.magnitude_ema_beta)?,
            )?;
            self.magnitude_ema.assign(&new)?;
        }
        let input_gain = self.magnitude_ema.rsqrt()?.detach();
        let mut styles = self.affine.forward(w)?;
        let mut weight = self.weight.clone();
        if self.is_torgb {
            styles = styles
                .mul_scalar(1.0 / ((self.in_channels * self.kernel * self.kernel) as f64).sqrt())?;
        } else {
            // pre-normalise weights (per output channel) and styles (over the whole batch), as
            // NVlabs' StyleGAN3 modulated_conv2d; demodulation follows
            weight = weight.mul(&weight.sqr()?.mean_axes(&[1, 2, 3], true)?.rsqrt()?)?;
            styles = styles.mul(&styles.sqr()?.mean_all()?.rsqrt()?)?;
        }
        let p = ModConvParams {
            padding: self.kernel - 1,
            demodulate: !self.is_torgb,
            ..ModConvParams::default()
        };
        let y = modulated_conv2d(x, &weight, &styles, None, None, p)?;
        let y = y.mul(&input_gain.reshape(&[1, 1, 1, 1])?)?;
        let (gain, slope) = if self.is_torgb {
            (1.0, 1.0)
        } else {
            (LRELU.default_gain(), 0.2)
        };
        filtered_lrelu(
            &y,
            self.up_filter.as_ref(),
            self.down_filter.as_ref(),
            Some(&self.bias),
            self.up,
            self.down,
            self.padding,
            gain,
            slope,
            self.conv_clamp,
            false,
        )
    }
}

/// NVlabs' StyleGAN3 `Generator` (unconditional, T config).
#[derive(Clone, Debug)]
pub struct StyleGan3Generator {
    pub config: GanConfig,
    pub settings: Sg3Settings,
    pub schedule: Schedule,
    pub store: ParamStore,
    pub mapping: Mapping,
    pub input: SynthesisInput,
    pub layers: Vec<Sg3Layer>,
    pub num_ws: usize,
}

impl StyleGan3Generator {
    pub fn new(
        store: &ParamStore,
        config: &GanConfig,
        settings: &Sg3Settings,
    ) -> Result<StyleGan3Generator> {
        config.validate()?;
        let sch = schedule(config, settings)?;
        let root = store.root();
        let syn = root.sub("synthesis");
        let input = SynthesisInput::new(
            &syn.sub("input"),
            config.w_dim,
            sch.channels[0],
            sch.sizes[0],
            sch.sampling_rates[0],
            sch.cutoffs[0],
        )?;
        let layers = (0..=settings.num_layers)
            .map(|i| {
                let name = format!("L{i}_{}_{}", sch.sizes[i], sch.channels[i]);
                Sg3Layer::new(&syn.sub(&name), name.clone(), config, settings, &sch, i)
            })
            .collect::<Result<Vec<_>>>()?;
        let num_ws = settings.num_layers + 2;
        let mapping = Mapping::new(
            &root.sub("mapping"),
            config.z_dim,
            config.w_dim,
            num_ws,
            config.mapping_layers,
        )?;
        Ok(StyleGan3Generator {
            config: config.clone(),
            settings: settings.clone(),
            schedule: sch,
            store: store.clone(),
            mapping,
            input,
            layers,
            num_ws,
        })
    }

    /// ws [N, num_ws, w_dim] → images [N, channels, R, R]; `update_emas` (training) moves each
    /// layer's `magnitude_ema` towards its input's mean square.
    pub fn synthesis(&self, ws: &Tensor, update_emas: bool) -> Result<Tensor> {
        let want = [
            ws.shape().first().copied().unwrap_or(0),
            self.num_ws,
            self.config.w_dim,
        ];
        if ws.shape() != want || want[0] == 0 {
            return Err(Error::shape(
                "StyleGan3Generator",
                format!(
                    "ws must be [N ≥ 1, {}, {}], got {:?}",
                    want[1],
                    want[2],
                    ws.shape()
                ),
            ));
        }
        let (n, wd) = (want[0], want[2]);
        let w_at = |i: usize| ws.narrow(1, i, 1)?.reshape(&[n, wd]);
        let mut x = self.input.forward(&w_at(0)?)?;
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(&x, &w_at(i + 1)?, update_emas)?;
        }
        if self.settings.output_scale != 1.0 {
            x = x.mul_scalar(self.settings.output_scale)?;
        }
        Ok(x)
    }

    /// z [N, z_dim] → images, truncation ψ on all ws (1 = none).
    pub fn forward(&self, z: &Tensor, psi: f64) -> Result<Tensor> {
        let ws = self.mapping.forward(z, psi, None, false)?;
        self.synthesis(&ws, false)
    }
}
