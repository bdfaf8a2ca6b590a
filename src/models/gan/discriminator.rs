//! The residual discriminator of NVlabs' `networks_stylegan2.py` (used by `--cfg=stylegan2` and
//! `--cfg=stylegan3-t` alike): `b{R}.fromrgb` (1×1, leaky ReLU), then per resolution R … 8 a
//! block of conv0 (3×3), conv1 (3×3, FIR-filtered stride-2 down-sampling, gain √½) plus a 1×1
//! down-sampling skip (no bias, gain √½), summed; then the epilogue `b4`: minibatch stddev
//! (group `mbstd_group`, one channel), conv (3×3), fc (leaky ReLU) and out (one logit). Conv layers
//! clamp at `conv_clamp`·gain.

use super::GanConfig;
use super::layers::{ConvLayer, FullyConnected, LRELU};
use crate::nn::ParamStore;
use crate::ops::stylegan::{Act, minibatch_stddev};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// One residual block `b{res}`.
#[derive(Clone, Debug)]
pub struct DiscriminatorBlock {
    pub resolution: usize,
    pub fromrgb: Option<ConvLayer>,
    pub conv0: ConvLayer,
    pub conv1: ConvLayer,
    pub skip: ConvLayer,
}

#[derive(Clone, Debug)]
pub struct Discriminator {
    pub config: GanConfig,
    pub store: ParamStore,
    pub blocks: Vec<DiscriminatorBlock>,
    pub epilogue_conv: ConvLayer,
    pub fc: FullyConnected,
    pub out: FullyConnected,
}

impl Discriminator {
    pub fn new(store: &ParamStore, config: &GanConfig) -> Result<Discriminator> {
        config.validate()?;
        let root = store.root();
        let clamp = config.conv_clamp;
        let mut blocks = Vec::new();
        for res in config
            .block_resolutions()
            .into_iter()
            .rev()
            .filter(|&r| r > 4)
        {
            let vs = root.sub(format!("b{res}"));
            let tmp = config.channels_at(res);
            let out = config.channels_at(res / 2);
            let fromrgb = if res == config.resolution {
                Some(ConvLayer::new(
                    &vs.sub("fromrgb"),
                    config.channels,
                    tmp,
                    1,
                    true,
                    LRELU,
                    1,
                    clamp,
                )?)
            } else {
                None
            };
            blocks.push(DiscriminatorBlock {
                resolution: res,
                fromrgb,
                conv0: ConvLayer::new(&vs.sub("conv0"), tmp, tmp, 3, true, LRELU, 1, clamp)?,
                conv1: ConvLayer::new(&vs.sub("conv1"), tmp, out, 3, true, LRELU, 2, clamp)?,
                skip: ConvLayer::new(&vs.sub("skip"), tmp, out, 1, false, Act::Linear, 2, None)?,
            });
        }
        let b4 = root.sub("b4");
        let c4 = config.channels_at(4);
        let epilogue_conv = ConvLayer::new(&b4.sub("conv"), c4 + 1, c4, 3, true, LRELU, 1, clamp)?;
        let fc = FullyConnected::new(&b4.sub("fc"), c4 * 16, c4, LRELU, 1.0, 0.0)?;
        let out = FullyConnected::new(&b4.sub("out"), c4, 1, Act::Linear, 1.0, 0.0)?;
        Ok(Discriminator {
            config: config.clone(),
            store: store.clone(),
            blocks,
            epilogue_conv,
            fc,
            out,
        })
    }

    /// images [N, channels, R, R] → logits [N, 1]. N must be a multiple of the minibatch-stddev
    /// group (or smaller than it).
    pub fn forward(&self, img: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let want = [c.channels, c.resolution, c.resolution];
        if img.rank() != 4 || img.shape()[1..] != want || img.shape()[0] == 0 {
            return Err(Error::shape(
                "Discriminator",
                format!(
                    "images must be [N ≥ 1, {}, {}, {}], got {:?}",
                    want[0],
                    want[1],
                    want[2],
                    img.shape()
                ),
            ));
        }
        let half = std::f64::consts::FRAC_1_SQRT_2;
        let mut x: Option<Tensor> = None;
        for b in &self.blocks {
            let mut h = match (&b.fromrgb, x) {
                (Some(f), _) => f.forward(img, 1.0)?,
                (None, Some(x)) => x,
                (None, None) => {
                    return Err(Error::invalid("Discriminator", "first block lacks fromrgb"));
                }
            };
            let y = b.skip.forward(&h, half)?;
            h = b.conv0.forward(&h, 1.0)?;
            h = b.conv1.forward(&h, half)?;
            x = Some(y.add(&h)?);
        }
        let x = match x {
            Some(x) => x,
            None => return Err(Error::invalid("Discriminator", "no blocks")),
        };
        let n = x.shape()[0];
        let x = minibatch_stddev(&x, c.mbstd_group, 1)?;
        let x = self.epilogue_conv.forward(&x, 1.0)?;
        let x = self.fc.forward(&x.reshape(&[n, usize::MAX])?)?;
        self.out.forward(&x)
    }
}
