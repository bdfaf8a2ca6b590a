//! The Swin transformer segmenter, as in the paper: a Swin backbone (patch embedding, blocks of
//! window / shifted-window multi-head self-attention with relative-position bias, patch merging,
//! stochastic depth) with an UperNet head (pyramid pooling on the last stage + FPN fusion of all
//! four), predicting at 1/4 resolution and upsampled bilinearly to the input size.

use crate::nn::{BatchNorm2d, Conv2d, Init, LayerNorm, Linear, Scope};
use crate::ops::Conv2dParams;
use crate::ops::attention::{
    shifted_window_mask, window_attention, window_partition, window_reverse,
};
use crate::ops::embedding::relative_position_bias;
use crate::ops::resize::{adaptive_avg_pool2d, resize_bilinear};
use crate::rng::SplitMix64;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Sizes of a Swin segmenter.
#[derive(Clone, Debug, PartialEq)]
pub struct SwinConfig {
    pub in_channels: usize,
    pub classes: usize,
    /// Side of the square patches of the embedding (4 in Swin).
    pub patch_size: usize,
    /// Channels of the first stage; doubled per stage.
    pub embed_dim: usize,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Attention heads per stage.
    pub heads: Vec<usize>,
    /// Side of the attention windows.
    pub window: usize,
    /// Hidden width of the MLPs relative to the stage width.
    pub mlp_ratio: usize,
    /// Stochastic depth rate, rising linearly over the blocks to this value.
    pub drop_path: f64,
    /// Channels of the UperNet head.
    pub head_channels: usize,
    /// Output sizes of the pyramid pooling module.
    pub pool_scales: Vec<usize>,
    /// Channel dropout before the classifiers (mmseg's `dropout_ratio`, 0.1).
    pub head_dropout: f64,
    /// Channels of mmseg's auxiliary FCN head on the penultimate stage (`in_index` 2 of four),
    /// used in training only; `None` leaves it out.
    pub aux_channels: Option<usize>,
    /// Weight of the auxiliary head's loss (0.4 in mmseg's UperNet configurations).
    pub aux_weight: f64,
}

impl SwinConfig {
    /// A Swin-T-like network small enough for two CPU cores at 64×64.
    pub fn quick() -> Self {
        SwinConfig {
            in_channels: 4,
            classes: 4,
            patch_size: 2,
            embed_dim: 24,
            depths: vec![2, 2, 2, 2],
            heads: vec![1, 2, 4, 8],
            window: 4,
            mlp_ratio: 4,
            drop_path: 0.1,
            head_channels: 48,
            pool_scales: vec![1, 2, 3, 6],
            head_dropout: 0.1,
            aux_channels: Some(24),
            aux_weight: 0.4,
        }
    }
    /// The paper's Swin-B with an UperNet head of 512 channels, at 256×256.
    pub fn paper() -> Self {
        SwinConfig {
            in_channels: 4,
            classes: 4,
            patch_size: 4,
            embed_dim: 128,
            depths: vec![2, 2, 18, 2],
            heads: vec![4, 8, 16, 32],
            window: 7,
            mlp_ratio: 4,
            drop_path: 0.3,
            head_channels: 512,
            pool_scales: vec![1, 2, 3, 6],
            head_dropout: 0.1,
            aux_channels: Some(256),
            aux_weight: 0.4,
        }
    }
}

/// One Swin block: (shifted) window attention and an MLP, each pre-normed with a residual.
struct SwinBlock {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    rel_table: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    window: usize,
    shift: usize,
    drop_path: f64,
}

impl SwinBlock {
    fn new(
        vs: &Scope,
        dim: usize,
        heads: usize,
        window: usize,
        shift: usize,
        mlp_ratio: usize,
        drop_path: f64,
    ) -> Result<Self> {
        let side = 2 * window - 1;
        let lin = |s: &Scope, i, o| {
            Linear::with_init(s, i, o, Init::trunc_normal(0.02), Some(Init::Constant(0.0)))
        };
        Ok(SwinBlock {
            norm1: LayerNorm::new(&vs.sub("norm1"), dim)?,
            qkv: lin(&vs.sub("attn").sub("qkv"), dim, 3 * dim)?,
            proj: lin(&vs.sub("attn").sub("proj"), dim, dim)?,
            rel_table: vs.sub("attn").no_weight_decay().param(
                "relative_position_bias_table",
                &[side * side, heads],
                Init::trunc_normal(0.02),
            )?,
            norm2: LayerNorm::new(&vs.sub("norm2"), dim)?,
            fc1: lin(&vs.sub("mlp").sub("fc1"), dim, mlp_ratio * dim)?,
            fc2: lin(&vs.sub("mlp").sub("fc2"), mlp_ratio * dim, dim)?,
            heads,
            window,
            shift,
            drop_path,
        })
    }

    /// x [B, H, W, C] → same shape.
    fn forward(&self, x: &Tensor, train: bool, rng: &mut SplitMix64) -> Result<Tensor> {
        let s = x.shape().to_vec();
        let (b, h, w, c) = (s[0], s[1], s[2], s[3]);
        // windows no larger than the map, and no shift when one window covers it (as Swin)
        let ws = self.window.min(h).min(w);
        let shift = if ws < self.window { 0 } else { self.shift };
        let (hp, wp) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
        let mut t = self
            .norm1
            .forward(x)?
            .pad_axis(1, 0, hp - h)?
            .pad_axis(2, 0, wp - w)?;
        if shift > 0 {
            t = t.roll(-(shift as isize), 1)?.roll(-(shift as isize), 2)?;
        }
        let win = window_partition(&t, ws)?; // [B·nW, N, C]
        let (bw, n) = (win.shape()[0], ws * ws);
        let d = c / self.heads;
        let qkv = self
            .qkv
            .forward(&win)?
            .reshape(&[bw, n, 3, self.heads, d])?
            .permute(&[2, 0, 3, 1, 4])?;
        let q = qkv.narrow(0, 0, 1)?.reshape(&[bw, self.heads, n, d])?;
        let k = qkv.narrow(0, 1, 1)?.reshape(&[bw, self.heads, n, d])?;
        let v = qkv.narrow(0, 2, 1)?.reshape(&[bw, self.heads, n, d])?;
        let bias = relative_position_bias(&self.rel_table, ws)?;
        let mask = if shift > 0 {
            Some(shifted_window_mask(hp, wp, ws, shift, x.dtype())?.to_device(x.device())?)
        } else {
            None
        };
        let a = window_attention(&q, &k, &v, &bias, mask.as_ref(), (d as f64).powf(-0.5))?;
        let a = self
            .proj
            .forward(&a.permute(&[0, 2, 1, 3])?.reshape(&[bw, n, c])?)?;
        let mut t = window_reverse(&a, ws, hp, wp)?.reshape(&[b, hp, wp, c])?;
        if shift > 0 {
            t = t.roll(shift as isize, 1)?.roll(shift as isize, 2)?;
        }
        let t = t.narrow(1, 0, h)?.narrow(2, 0, w)?;
        let x = x.add(&drop_path(&t, self.drop_path, train, rng)?)?;
        let m = self
            .fc2
            .forward(&self.fc1.forward(&self.norm2.forward(&x)?)?.gelu()?)?;
        x.add(&drop_path(&m, self.drop_path, train, rng)?)
    }
}

/// Stochastic depth: in training, zero whole samples with probability p and scale the rest by
/// 1/(1 − p). The per-sample mask enters as a tensor.
fn drop_path(x: &Tensor, p: f64, train: bool, rng: &mut SplitMix64) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(x.clone());
    }
    let b = x.shape()[0];
    let keep: Vec<f64> = (0..b)
        .map(|_| {
            if rng.next_f64() < p {
                0.0
            } else {
                1.0 / (1.0 - p)
            }
        })
        .collect();
    let mut shape = vec![1; x.rank()];
    shape[0] = b;
    // drawn on the host (the same draws on every device), applied where x lives
    x.mul(&Tensor::from_f64s(&keep, &shape, x.dtype())?.to_device(x.device())?)
}

/// Channel dropout (PyTorch's Dropout2d, as mmseg's heads apply before the classifier): in
/// training, zero whole channels of each sample with probability p and scale the rest.
fn channel_dropout(x: &Tensor, p: f64, train: bool, rng: &mut SplitMix64) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(x.clone());
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let keep: Vec<f64> = (0..n * c)
        .map(|_| {
            if rng.next_f64() < p {
                0.0
            } else {
                1.0 / (1.0 - p)
            }
        })
        .collect();
    x.mul(&Tensor::from_f64s(&keep, &[n, c, 1, 1], x.dtype())?.to_device(x.device())?)
}

/// 2×2 neighbourhoods concatenated (4C), normalised, projected to 2C.
struct PatchMerging {
    norm: LayerNorm,
    reduction: Linear,
}

impl PatchMerging {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape().to_vec();
        let (b, h, w, c) = (s[0], s[1], s[2], s[3]);
        let x = x.pad_axis(1, 0, h % 2)?.pad_axis(2, 0, w % 2)?;
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        // Swin's order: (row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1)
        let t = x
            .reshape(&[b, h2, 2, w2, 2, c])?
            .permute(&[0, 1, 3, 4, 2, 5])?
            .reshape(&[b, h2, w2, 4 * c])?;
        self.reduction.forward(&self.norm.forward(&t)?)
    }
}

/// conv (no bias) → batch norm → ReLU: mmseg's ConvModule.
struct ConvModule {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvModule {
    fn new(vs: &Scope, cin: usize, cout: usize, k: usize) -> Result<Self> {
        Ok(ConvModule {
            conv: Conv2d::with_init(
                &vs.sub("conv"),
                cin,
                cout,
                k,
                Conv2dParams::same(k),
                crate::nn::layers::kaiming_normal(0.0),
                None,
            )?,
            bn: BatchNorm2d::new(&vs.sub("bn"), cout)?,
        })
    }
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward(&self.conv.forward(x)?, train)?.relu()
    }
}

/// UperNet: pyramid pooling on the deepest map, then FPN top-down fusion of all levels.
struct UperHead {
    ppm: Vec<(usize, ConvModule)>,
    bottleneck: ConvModule,
    lateral: Vec<ConvModule>,
    fpn: Vec<ConvModule>,
    fuse: ConvModule,
    cls: Conv2d,
    dropout: f64,
}

impl UperHead {
    fn new(
        vs: &Scope,
        in_ch: &[usize],
        ch: usize,
        scales: &[usize],
        classes: usize,
        dropout: f64,
    ) -> Result<Self> {
        let last = in_ch[in_ch.len() - 1];
        let ppm = scales
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                Ok((
                    s,
                    ConvModule::new(&vs.sub("psp").sub(i.to_string()), last, ch, 1)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let lateral = in_ch[..in_ch.len() - 1]
            .iter()
            .enumerate()
            .map(|(i, &c)| ConvModule::new(&vs.sub("lateral").sub(i.to_string()), c, ch, 1))
            .collect::<Result<Vec<_>>>()?;
        let fpn = (0..in_ch.len() - 1)
            .map(|i| ConvModule::new(&vs.sub("fpn").sub(i.to_string()), ch, ch, 3))
            .collect::<Result<Vec<_>>>()?;
        Ok(UperHead {
            ppm,
            bottleneck: ConvModule::new(
                &vs.sub("psp_bottleneck"),
                last + scales.len() * ch,
                ch,
                3,
            )?,
            lateral,
            fpn,
            fuse: ConvModule::new(&vs.sub("fpn_bottleneck"), in_ch.len() * ch, ch, 3)?,
            cls: Conv2d::new(
                &vs.sub("cls"),
                ch,
                classes,
                1,
                Conv2dParams::default(),
                true,
            )?,
            dropout,
        })
    }

    fn forward(&self, feats: &[Tensor], train: bool, rng: &mut SplitMix64) -> Result<Tensor> {
        let top = &feats[feats.len() - 1];
        let size = |t: &Tensor| (t.shape()[2], t.shape()[3]);
        let mut psp = vec![top.clone()];
        for (s, m) in &self.ppm {
            psp.push(resize_bilinear(
                &m.forward(&adaptive_avg_pool2d(top, (*s, *s))?, train)?,
                size(top),
            )?);
        }
        let mut lat: Vec<Tensor> = self
            .lateral
            .iter()
            .zip(feats)
            .map(|(m, f)| m.forward(f, train))
            .collect::<Result<_>>()?;
        lat.push(self.bottleneck.forward(&Tensor::cat(&psp, 1)?, train)?);
        for i in (1..lat.len()).rev() {
            let up = resize_bilinear(&lat[i], size(&lat[i - 1]))?;
            lat[i - 1] = lat[i - 1].add(&up)?;
        }
        let mut outs: Vec<Tensor> = self
            .fpn
            .iter()
            .zip(&lat)
            .map(|(m, l)| m.forward(l, train))
            .collect::<Result<_>>()?;
        outs.push(lat[lat.len() - 1].clone());
        let s0 = size(&outs[0]);
        let outs: Vec<Tensor> = outs
            .iter()
            .map(|o| {
                if size(o) == s0 {
                    Ok(o.clone())
                } else {
                    resize_bilinear(o, s0)
                }
            })
            .collect::<Result<_>>()?;
        let fused = self.fuse.forward(&Tensor::cat(&outs, 1)?, train)?;
        self.cls
            .forward(&channel_dropout(&fused, self.dropout, train, rng)?)
    }
}

/// mmseg's auxiliary FCN head (one conv module, `concat_input` off): deep supervision of the
/// backbone's penultimate stage during training.
struct AuxHead {
    conv: ConvModule,
    cls: Conv2d,
    dropout: f64,
}

impl AuxHead {
    fn forward(&self, x: &Tensor, train: bool, rng: &mut SplitMix64) -> Result<Tensor> {
        let t = self.conv.forward(x, train)?;
        self.cls
            .forward(&channel_dropout(&t, self.dropout, train, rng)?)
    }
}

/// The stage the auxiliary head reads: the penultimate (mmseg's `in_index` 2 of four stages).
fn aux_stage(stages: usize) -> usize {
    stages.saturating_sub(2)
}

/// Swin backbone + UperNet head.
pub struct SwinSegmenter {
    pub config: SwinConfig,
    patch_embed: Conv2d,
    patch_norm: LayerNorm,
    stages: Vec<Vec<SwinBlock>>,
    merges: Vec<PatchMerging>,
    out_norms: Vec<LayerNorm>,
    head: UperHead,
    aux: Option<AuxHead>,
}

impl SwinSegmenter {
    pub fn new(vs: &Scope, config: SwinConfig) -> Result<Self> {
        let ns = config.depths.len();
        if ns == 0
            || config.heads.len() != ns
            || config.window == 0
            || config.patch_size == 0
            || config.classes < 2
            || !(0.0..1.0).contains(&config.head_dropout)
            || config.aux_channels == Some(0)
        {
            return Err(Error::invalid(
                "swin",
                format!("depths and heads must be equally long and sizes positive: {config:?}"),
            ));
        }
        for (i, &h) in config.heads.iter().enumerate() {
            if h == 0 || !(config.embed_dim << i).is_multiple_of(h) {
                return Err(Error::invalid(
                    "swin",
                    format!(
                        "stage {i}: width {} is not divisible by {h} heads",
                        config.embed_dim << i
                    ),
                ));
            }
        }
        let bb = vs.sub("backbone");
        let p = config.patch_size;
        let patch_embed = Conv2d::new(
            &bb.sub("patch_embed").sub("proj"),
            config.in_channels,
            config.embed_dim,
            p,
            Conv2dParams::default().with_stride(p),
            true,
        )?;
        let patch_norm = LayerNorm::new(&bb.sub("patch_embed").sub("norm"), config.embed_dim)?;
        let total: usize = config.depths.iter().sum();
        let mut k = 0;
        let (mut stages, mut merges, mut out_norms, mut widths) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, &depth) in config.depths.iter().enumerate() {
            let dim = config.embed_dim << i;
            let st = bb.sub("stages").sub(i.to_string());
            let mut blocks = Vec::new();
            for j in 0..depth {
                let dp = if total > 1 {
                    config.drop_path * k as f64 / (total - 1) as f64
                } else {
                    0.0
                };
                let shift = if j % 2 == 1 { config.window / 2 } else { 0 };
                blocks.push(SwinBlock::new(
                    &st.sub("blocks").sub(j.to_string()),
                    dim,
                    config.heads[i],
                    config.window,
                    shift,
                    config.mlp_ratio,
                    dp,
                )?);
                k += 1;
            }
            stages.push(blocks);
            if i + 1 < ns {
                let m = st.sub("downsample");
                merges.push(PatchMerging {
                    norm: LayerNorm::new(&m.sub("norm"), 4 * dim)?,
                    reduction: Linear::with_init(
                        &m.sub("reduction"),
                        4 * dim,
                        2 * dim,
                        Init::trunc_normal(0.02),
                        None,
                    )?,
                });
            }
            out_norms.push(LayerNorm::new(&bb.sub(format!("norm{i}")), dim)?);
            widths.push(dim);
        }
        let head = UperHead::new(
            &vs.sub("decode_head"),
            &widths,
            config.head_channels,
            &config.pool_scales,
            config.classes,
            config.head_dropout,
        )?;
        let aux = match config.aux_channels {
            Some(ch) => {
                let a = vs.sub("auxiliary_head");
                Some(AuxHead {
                    conv: ConvModule::new(&a.sub("convs").sub("0"), widths[aux_stage(ns)], ch, 3)?,
                    cls: Conv2d::new(
                        &a.sub("conv_seg"),
                        ch,
                        config.classes,
                        1,
                        Conv2dParams::default(),
                        true,
                    )?,
                    dropout: config.head_dropout,
                })
            }
            None => None,
        };
        Ok(SwinSegmenter {
            config,
            patch_embed,
            patch_norm,
            stages,
            merges,
            out_norms,
            head,
            aux,
        })
    }

    /// Logits [N, classes, H, W] for x [N, in, H, W].
    pub fn forward(&self, x: &Tensor, train: bool, rng: &mut SplitMix64) -> Result<Tensor> {
        Ok(self.forward_with_aux(x, train, rng)?.0)
    }

    /// Logits and, in training with an auxiliary head, the auxiliary head's logits, both
    /// upsampled bilinearly to the input size (where mmseg computes every head's loss).
    pub fn forward_with_aux(
        &self,
        x: &Tensor,
        train: bool,
        rng: &mut SplitMix64,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let s = x.shape();
        let p = self.config.patch_size;
        if s.len() != 4
            || s[1] != self.config.in_channels
            || !s[2].is_multiple_of(p)
            || !s[3].is_multiple_of(p)
        {
            return Err(Error::shape(
                "swin",
                format!(
                    "input {s:?} must be [N, {}, H, W] with H and W divisible by {p}",
                    self.config.in_channels
                ),
            ));
        }
        let mut t = self
            .patch_norm
            .forward(&self.patch_embed.forward(x)?.permute(&[0, 2, 3, 1])?)?;
        let mut feats = Vec::new();
        for (i, blocks) in self.stages.iter().enumerate() {
            for b in blocks {
                t = b.forward(&t, train, rng)?;
            }
            feats.push(
                self.out_norms[i]
                    .forward(&t)?
                    .permute(&[0, 3, 1, 2])?
                    .contiguous()?,
            );
            if i < self.merges.len() {
                t = self.merges[i].forward(&t)?;
            }
        }
        let logits = resize_bilinear(&self.head.forward(&feats, train, rng)?, (s[2], s[3]))?;
        let aux = match (&self.aux, train) {
            (Some(a), true) => Some(resize_bilinear(
                &a.forward(&feats[aux_stage(feats.len())], train, rng)?,
                (s[2], s[3]),
            )?),
            _ => None,
        };
        Ok((logits, aux))
    }
}
