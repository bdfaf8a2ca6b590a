//! The denoising U-Net of openai's guided-diffusion (`unet.py`, `UNetModel`), as the study's flags
//! build it: sinusoidal timestep embedding → linear → SiLU → linear (4× width); ResBlocks of
//! GroupNorm(32)+SiLU+conv3×3 with the embedding applied as `norm(h)·(1+scale)+shift`
//! (scale-shift norm) or added (without it), a zero-initialised last conv and a 1×1 skip where the
//! width changes; attention blocks with the legacy QKV order (heads split before q, k, v);
//! strided-conv downsampling and nearest ×2 + conv upsampling; output GroupNorm+SiLU+zero conv.
//!
//! Parameter names and shapes are guided-diffusion's state-dict entries (`time_embed.0.weight`,
//! `input_blocks.1.0.in_layers.2.weight`, `middle_block.1.qkv.weight` of shape [3C, C, 1], ...), so
//! a converted checkpoint loads by name. Initialisation is PyTorch's default, with the layers
//! guided-diffusion passes through `zero_module` set to zero.

use rand::rngs::StdRng;

use super::qkv_attention::qkv_attention_legacy;
use crate::nn::{Conv2d, Dropout, GroupNorm, Init, Linear, Scope};
use crate::ops::Conv2dParams;
use crate::ops::embedding::timestep_embedding;
use crate::ops::resize::resize_nearest;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// guided-diffusion's `normalization`: GroupNorm with 32 groups.
const GROUPS: usize = 32;
/// `timestep_embedding`'s default period.
const MAX_PERIOD: f64 = 10000.0;

/// Sizes and switches of a [`DiffusionUNet`] (guided-diffusion's `UNetModel` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct DiffusionUNetConfig {
    pub image_size: usize,
    pub in_channels: usize,
    /// `num_channels`: width at multiplier 1 (a multiple of 32 for GroupNorm32).
    pub model_channels: usize,
    pub out_channels: usize,
    pub num_res_blocks: usize,
    /// Downsampling factors (`ds`) with attention, i.e. image_size / resolution.
    pub attention_ds: Vec<usize>,
    pub channel_mult: Vec<usize>,
    pub num_heads: usize,
    /// Fixed channels per head instead of a fixed head count (guided-diffusion's
    /// `num_head_channels`; None = its −1).
    pub num_head_channels: Option<usize>,
    /// Heads in the decoder's attention (None = `num_heads`, guided-diffusion's −1).
    pub num_heads_upsample: Option<usize>,
    pub use_scale_shift_norm: bool,
    pub dropout: f64,
}

impl DiffusionUNetConfig {
    /// guided-diffusion's `create_model` defaults for this image size, with the study's flags
    /// (`num_res_blocks`, width) given: attention at resolutions 16 and 8, 4 heads, scale-shift
    /// norm, dropout 0, ε-prediction only (no learned σ, so out = in channels).
    pub fn guided_defaults(
        image_size: usize,
        channels: usize,
        model_channels: usize,
        num_res_blocks: usize,
    ) -> Result<Self> {
        Ok(DiffusionUNetConfig {
            image_size,
            in_channels: channels,
            model_channels,
            out_channels: channels,
            num_res_blocks,
            attention_ds: attention_ds_for(image_size, &[16, 8])?,
            channel_mult: channel_mult_for(image_size)?,
            num_heads: 4,
            num_head_channels: None,
            num_heads_upsample: None,
            use_scale_shift_norm: true,
            dropout: 0.0,
        })
    }

    /// The study's model: 256×256×5, 64 channels, 3 res blocks.
    pub fn paper() -> Self {
        Self::guided_defaults(256, 5, 64, 3).expect("256 is a supported size")
    }

    /// The benchmark configuration of the CPU anchors (64×64×5, multipliers 1,2,3,4, 3 res blocks,
    /// attention at 16 and 8 with 4 heads) at `width` 32 or 64.
    pub fn bench(width: usize) -> Self {
        let mut c = Self::guided_defaults(64, 5, width, 3).expect("64 is a supported size");
        c.channel_mult = vec![1, 2, 3, 4];
        c
    }

    fn heads_for(&self, ch: usize, upsample: bool) -> Result<usize> {
        let heads = match (self.num_head_channels, upsample) {
            (Some(hc), _) => {
                if hc == 0 || !ch.is_multiple_of(hc) {
                    return Err(Error::invalid(
                        "diffusion_unet",
                        format!("{ch} attention channels are not divisible by {hc} per head"),
                    ));
                }
                ch / hc
            }
            (None, true) => self.num_heads_upsample.unwrap_or(self.num_heads),
            (None, false) => self.num_heads,
        };
        if heads == 0 || !ch.is_multiple_of(heads) {
            return Err(Error::invalid(
                "diffusion_unet",
                format!("{ch} attention channels do not split into {heads} heads"),
            ));
        }
        Ok(heads)
    }
}

/// guided-diffusion's `create_model` channel multipliers for an image size.
pub fn channel_mult_for(image_size: usize) -> Result<Vec<usize>> {
    match image_size {
        256 => Ok(vec![1, 1, 2, 2, 4, 4]),
        128 => Ok(vec![1, 1, 2, 3, 4]),
        64 => Ok(vec![1, 2, 3, 4]),
        s => Err(Error::invalid(
            "diffusion_unet",
            format!(
                "no default channel multipliers for image size {s} (guided-diffusion has them for 64, 128 and 256); give them explicitly"
            ),
        )),
    }
}

/// Attention resolutions (e.g. 16, 8) as downsampling factors, as `create_model` converts them.
pub fn attention_ds_for(image_size: usize, resolutions: &[usize]) -> Result<Vec<usize>> {
    resolutions
        .iter()
        .map(|&r| {
            if r == 0 || !image_size.is_multiple_of(r) {
                Err(Error::invalid(
                    "diffusion_unet",
                    format!("attention resolution {r} does not divide image size {image_size}"),
                ))
            } else {
                Ok(image_size / r)
            }
        })
        .collect()
}

fn conv(vs: &Scope, cin: usize, cout: usize, k: usize, stride: usize) -> Result<Conv2d> {
    Conv2d::new(
        vs,
        cin,
        cout,
        k,
        Conv2dParams::same(k).with_stride(stride),
        true,
    )
}

/// guided-diffusion's `zero_module(conv_nd(...))`.
fn zero_conv(vs: &Scope, cin: usize, cout: usize, k: usize) -> Result<Conv2d> {
    Conv2d::with_init(
        vs,
        cin,
        cout,
        k,
        Conv2dParams::same(k),
        Init::Constant(0.0),
        Some(Init::Constant(0.0)),
    )
}

/// A 1×1 `conv_nd(1, ...)` with weight [out, in, 1] as guided-diffusion stores it, applied to
/// [B, C, T] as a 1×1 conv over [B, C, T, 1].
struct Conv1x1 {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1x1 {
    fn new(vs: &Scope, cin: usize, cout: usize, zero: bool) -> Result<Self> {
        let b = 1.0 / (cin as f64).sqrt();
        let (w, bi) = if zero {
            (Init::Constant(0.0), Init::Constant(0.0))
        } else {
            (
                Init::torch_default_weight(),
                Init::Uniform { lo: -b, hi: b },
            )
        };
        Ok(Conv1x1 {
            weight: vs.param("weight", &[cout, cin, 1], w)?,
            bias: vs.param("bias", &[cout], bi)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        let (o, i) = (self.weight.shape()[0], self.weight.shape()[1]);
        let y = x.reshape(&[s[0], s[1], s[2], 1])?.conv2d(
            &self.weight.reshape(&[o, i, 1, 1])?,
            Conv2dParams::default(),
        )?;
        y.reshape(&[s[0], o, s[2]])?
            .add(&self.bias.reshape(&[1, o, 1])?)
    }
}

/// guided-diffusion's `ResBlock` (no up/down variant: `resblock_updown` is off at its defaults).
struct ResBlock {
    in_norm: GroupNorm,
    in_conv: Conv2d,
    emb: Linear,
    out_norm: GroupNorm,
    dropout: Dropout,
    out_conv: Conv2d,
    skip: Option<Conv2d>,
    scale_shift: bool,
    cout: usize,
}

impl ResBlock {
    fn new(
        vs: &Scope,
        cin: usize,
        cout: usize,
        emb_dim: usize,
        cfg: &DiffusionUNetConfig,
    ) -> Result<Self> {
        let emb_out = if cfg.use_scale_shift_norm {
            2 * cout
        } else {
            cout
        };
        Ok(ResBlock {
            in_norm: GroupNorm::new(&vs.sub("in_layers").sub("0"), GROUPS, cin)?,
            in_conv: conv(&vs.sub("in_layers").sub("2"), cin, cout, 3, 1)?,
            emb: Linear::new(&vs.sub("emb_layers").sub("1"), emb_dim, emb_out, true)?,
            out_norm: GroupNorm::new(&vs.sub("out_layers").sub("0"), GROUPS, cout)?,
            dropout: Dropout::new(cfg.dropout)?,
            out_conv: zero_conv(&vs.sub("out_layers").sub("3"), cout, cout, 3)?,
            skip: if cin == cout {
                None
            } else {
                Some(conv(&vs.sub("skip_connection"), cin, cout, 1, 1)?)
            },
            scale_shift: cfg.use_scale_shift_norm,
            cout,
        })
    }

    /// `emb_act` is SiLU(embedding), shared by all blocks (emb_layers = SiLU → linear).
    fn forward(&self, x: &Tensor, emb_act: &Tensor, rng: Option<&mut StdRng>) -> Result<Tensor> {
        let h = self.in_conv.forward(&self.in_norm.forward_silu(x)?)?;
        let n = x.shape()[0];
        let e = self.emb.forward(emb_act)?;
        let h = if self.scale_shift {
            let e = e.reshape(&[n, 2 * self.cout, 1, 1])?;
            let ss = e.chunk(1, 2)?;
            self.out_norm
                .forward(&h)?
                .mul(&ss[0].add_scalar(1.0)?)?
                .add(&ss[1])?
                .silu()?
        } else {
            self.out_norm
                .forward_silu(&h.add(&e.reshape(&[n, self.cout, 1, 1])?)?)?
        };
        let h = match rng {
            Some(r) => self.dropout.forward(&h, true, r)?,
            None => h,
        };
        let h = self.out_conv.forward(&h)?;
        let skip = match &self.skip {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        skip.add(&h)
    }
}

/// guided-diffusion's `AttentionBlock` with `QKVAttentionLegacy`.
struct AttentionBlock {
    norm: GroupNorm,
    qkv: Conv1x1,
    proj_out: Conv1x1,
    heads: usize,
}

impl AttentionBlock {
    fn new(vs: &Scope, ch: usize, heads: usize) -> Result<Self> {
        Ok(AttentionBlock {
            norm: GroupNorm::new(&vs.sub("norm"), GROUPS, ch)?,
            qkv: Conv1x1::new(&vs.sub("qkv"), ch, 3 * ch, false)?,
            proj_out: Conv1x1::new(&vs.sub("proj_out"), ch, ch, true)?,
            heads,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape().to_vec();
        let flat = [s[0], s[1], s[2] * s[3]];
        let qkv = self.qkv.forward(&self.norm.forward(x)?.reshape(&flat)?)?;
        let h = self
            .proj_out
            .forward(&qkv_attention_legacy(&qkv, self.heads)?)?;
        x.add(&h.reshape(&s)?)
    }
}

/// One entry of a `TimestepEmbedSequential`.
enum Layer {
    Conv(Conv2d),
    Res(Box<ResBlock>),
    Attn(AttentionBlock),
    Down(Conv2d),
    Up(Conv2d),
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        emb_act: &Tensor,
        rng: &mut Option<&mut StdRng>,
    ) -> Result<Tensor> {
        match self {
            Layer::Conv(c) | Layer::Down(c) => c.forward(x),
            Layer::Res(r) => r.forward(x, emb_act, rng.as_deref_mut()),
            Layer::Attn(a) => a.forward(x),
            Layer::Up(c) => {
                let s = x.shape();
                c.forward(&resize_nearest(x, (2 * s[2], 2 * s[3]))?)
            }
        }
    }
}

type Block = Vec<Layer>;

fn run_block(
    block: &Block,
    x: &Tensor,
    emb_act: &Tensor,
    rng: &mut Option<&mut StdRng>,
) -> Result<Tensor> {
    let mut h = x.clone();
    for l in block {
        h = l.forward(&h, emb_act, rng)?;
    }
    Ok(h)
}

/// guided-diffusion's `UNetModel` (unconditional, 2-D).
pub struct DiffusionUNet {
    pub config: DiffusionUNetConfig,
    time_embed: [Linear; 2],
    input_blocks: Vec<Block>,
    middle_block: Block,
    output_blocks: Vec<Block>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
}

impl DiffusionUNet {
    pub fn new(vs: &Scope, config: DiffusionUNetConfig) -> Result<Self> {
        let c = &config;
        if c.channel_mult.is_empty()
            || c.channel_mult.contains(&0)
            || c.model_channels == 0
            || c.in_channels == 0
            || c.out_channels == 0
            || c.num_res_blocks == 0
        {
            return Err(Error::invalid(
                "diffusion_unet",
                format!("widths, channel multipliers and res blocks must be ≥ 1: {c:?}"),
            ));
        }
        let f = 1usize << (c.channel_mult.len() - 1);
        if c.image_size == 0 || !c.image_size.is_multiple_of(f) {
            return Err(Error::invalid(
                "diffusion_unet",
                format!(
                    "image size {} must be divisible by {f} for {} levels",
                    c.image_size,
                    c.channel_mult.len()
                ),
            ));
        }
        let emb_dim = 4 * c.model_channels;
        let te = vs.sub("time_embed");
        let time_embed = [
            Linear::new(&te.sub("0"), c.model_channels, emb_dim, true)?,
            Linear::new(&te.sub("2"), emb_dim, emb_dim, true)?,
        ];
        let ib = vs.sub("input_blocks");
        let mut ch = c.channel_mult[0] * c.model_channels;
        let input_ch = ch;
        let mut input_blocks: Vec<Block> = vec![vec![Layer::Conv(conv(
            &ib.sub("0").sub("0"),
            c.in_channels,
            ch,
            3,
            1,
        )?)]];
        let mut chans = vec![ch];
        let mut ds = 1;
        for (level, &mult) in c.channel_mult.iter().enumerate() {
            for _ in 0..c.num_res_blocks {
                let s = ib.sub(input_blocks.len().to_string());
                let out = mult * c.model_channels;
                let mut layers = vec![Layer::Res(Box::new(ResBlock::new(
                    &s.sub("0"),
                    ch,
                    out,
                    emb_dim,
                    c,
                )?))];
                ch = out;
                if c.attention_ds.contains(&ds) {
                    layers.push(Layer::Attn(AttentionBlock::new(
                        &s.sub("1"),
                        ch,
                        c.heads_for(ch, false)?,
                    )?));
                }
                input_blocks.push(layers);
                chans.push(ch);
            }
            if level + 1 != c.channel_mult.len() {
                let s = ib.sub(input_blocks.len().to_string());
                input_blocks.push(vec![Layer::Down(conv(
                    &s.sub("0").sub("op"),
                    ch,
                    ch,
                    3,
                    2,
                )?)]);
                chans.push(ch);
                ds *= 2;
            }
        }
        let mb = vs.sub("middle_block");
        let middle_block = vec![
            Layer::Res(Box::new(ResBlock::new(&mb.sub("0"), ch, ch, emb_dim, c)?)),
            Layer::Attn(AttentionBlock::new(
                &mb.sub("1"),
                ch,
                c.heads_for(ch, false)?,
            )?),
            Layer::Res(Box::new(ResBlock::new(&mb.sub("2"), ch, ch, emb_dim, c)?)),
        ];
        let ob = vs.sub("output_blocks");
        let mut output_blocks = Vec::new();
        for (level, &mult) in c.channel_mult.iter().enumerate().rev() {
            for i in 0..=c.num_res_blocks {
                let s = ob.sub(output_blocks.len().to_string());
                let ich = chans.pop().expect("one skip per input block");
                let out = c.model_channels * mult;
                let mut layers = vec![Layer::Res(Box::new(ResBlock::new(
                    &s.sub("0"),
                    ch + ich,
                    out,
                    emb_dim,
                    c,
                )?))];
                ch = out;
                if c.attention_ds.contains(&ds) {
                    layers.push(Layer::Attn(AttentionBlock::new(
                        &s.sub(layers.len().to_string()),
                        ch,
                        c.heads_for(ch, true)?,
                    )?));
                }
                if level > 0 && i == c.num_res_blocks {
                    layers.push(Layer::Up(conv(
                        &s.sub(layers.len().to_string()).sub("conv"),
                        ch,
                        ch,
                        3,
                        1,
                    )?));
                    ds /= 2;
                }
                output_blocks.push(layers);
            }
        }
        let out_norm = GroupNorm::new(&vs.sub("out").sub("0"), GROUPS, ch)?;
        let out_conv = zero_conv(&vs.sub("out").sub("2"), input_ch, c.out_channels, 3)?;
        Ok(DiffusionUNet {
            config,
            time_embed,
            input_blocks,
            middle_block,
            output_blocks,
            out_norm,
            out_conv,
        })
    }

    /// The model's output (ε) for x [N, in, H, W] at timesteps t \[N\] (the timestep values the
    /// embedding sees, as floats), in evaluation (no dropout).
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.forward_with(x, t, None)
    }

    /// As [`Self::forward`]; with an `rng`, dropout is active (training).
    pub fn forward_with(&self, x: &Tensor, t: &Tensor, rng: Option<&mut StdRng>) -> Result<Tensor> {
        let c = &self.config;
        let s = x.shape();
        let f = 1usize << (c.channel_mult.len() - 1);
        if s.len() != 4
            || s[1] != c.in_channels
            || s[2] == 0
            || s[3] == 0
            || !s[2].is_multiple_of(f)
            || !s[3].is_multiple_of(f)
        {
            return Err(Error::shape(
                "diffusion_unet",
                format!(
                    "input {s:?} must be [N, {}, H, W] with H and W positive multiples of {f}",
                    c.in_channels
                ),
            ));
        }
        if t.shape() != [s[0]] {
            return Err(Error::shape(
                "diffusion_unet",
                format!(
                    "timesteps {:?} must be [{}], one per image",
                    t.shape(),
                    s[0]
                ),
            ));
        }
        let mut rng = rng;
        // timesteps carry no gradient; the embedding is computed in the model's dtype
        let t = if t.dtype() == x.dtype() {
            t.clone()
        } else {
            Tensor::from_f64s(
                &t.to_device(Device::Cpu)?.to_vec_f64()?,
                t.shape(),
                x.dtype(),
            )?
            .to_device(x.device())?
        };
        let temb = timestep_embedding(&t, c.model_channels, MAX_PERIOD)?;
        let emb = self.time_embed[1].forward(&self.time_embed[0].forward(&temb)?.silu()?)?;
        let emb_act = emb.silu()?;
        let mut hs = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.clone();
        for b in &self.input_blocks {
            h = run_block(b, &h, &emb_act, &mut rng)?;
            hs.push(h.clone());
        }
        h = run_block(&self.middle_block, &h, &emb_act, &mut rng)?;
        for b in &self.output_blocks {
            let skip = hs.pop().expect("one skip per output block");
            h = run_block(b, &Tensor::cat(&[h, skip], 1)?, &emb_act, &mut rng)?;
        }
        self.out_conv.forward(&self.out_norm.forward_silu(&h)?)
    }
}
