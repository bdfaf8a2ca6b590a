//! StyleGAN2's generator as NVlabs' `networks_stylegan2.py` builds it for `--cfg=stylegan2`:
//! mapping network, then the skip-architecture synthesis network — per resolution 4, 8, …, R a
//! block of (constant input at 4×4 | up-sampling modulated conv `conv0`), modulated conv `conv1`
//! and a `torgb` whose output is added to the running image, itself up-sampled with the \[1,3,3,1\]
//! FIR between blocks. Block r has min(channel_base / r, channel_max) channels.
//!
//! ws: one per conv plus the last toRGB; block r reads its convs' ws and the next one for its
//! toRGB (ws overlap as in NVlabs: w_idx advances by the number of convs only).

use super::GanConfig;
use super::layers::{Noise, SynthesisLayer, ToRgb, fir_1331};
use super::mapping::Mapping;
use crate::nn::{Init, ParamStore, Scope};
use crate::ops::upfirdn::upsample2d;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// One synthesis block (`synthesis.b{res}`).
#[derive(Clone, Debug)]
pub struct SynthesisBlock {
    pub resolution: usize,
    /// The learned 4×4 input of the first block `[C, 4, 4]`.
    pub constant: Option<Tensor>,
    pub conv0: Option<SynthesisLayer>,
    pub conv1: SynthesisLayer,
    pub torgb: ToRgb,
    filter: Tensor,
}

impl SynthesisBlock {
    fn num_conv(&self) -> usize {
        1 + self.conv0.is_some() as usize
    }

    fn forward(
        &self,
        x: Option<&Tensor>,
        img: Option<&Tensor>,
        ws: &Tensor,
        noise: &mut Noise,
        fused: bool,
    ) -> Result<(Tensor, Tensor)> {
        let n = ws.shape()[0];
        let w_at = |i: usize| -> Result<Tensor> {
            let w_dim = ws.shape()[2];
            ws.narrow(1, i, 1)?.reshape(&[n, w_dim])
        };
        let (x, wi) = match (&self.constant, &self.conv0, x) {
            (Some(c), _, _) => {
                let s = c.shape();
                let x0 = c
                    .reshape(&[1, s[0], s[1], s[2]])?
                    .broadcast_as(&[n, s[0], s[1], s[2]])?;
                (self.conv1.forward(&x0, &w_at(0)?, noise, fused, 1.0)?, 1)
            }
            (None, Some(conv0), Some(x)) => {
                let y = conv0.forward(x, &w_at(0)?, noise, fused, 1.0)?;
                (self.conv1.forward(&y, &w_at(1)?, noise, fused, 1.0)?, 2)
            }
            _ => {
                return Err(Error::invalid(
                    "SynthesisBlock",
                    "a block after the first needs the previous block's features",
                ));
            }
        };
        let y = self.torgb.forward(&x, &w_at(wi)?, fused)?;
        let img = match img {
            Some(img) => upsample2d(img, &self.filter, 2, (0, 0, 0, 0), 1.0)?.add(&y)?,
            None => y,
        };
        Ok((x, img))
    }
}

/// NVlabs' StyleGAN2 `Generator` (unconditional): `mapping.*` and `synthesis.b{res}.*`.
#[derive(Clone, Debug)]
pub struct StyleGan2Generator {
    pub config: GanConfig,
    pub store: ParamStore,
    pub mapping: Mapping,
    pub blocks: Vec<SynthesisBlock>,
    pub num_ws: usize,
}

impl StyleGan2Generator {
    /// A new generator with parameters in `store`, initialised as NVlabs' (weights N(0,1), style
    /// biases 1, noise strengths 0, noise constants N(0,1)).
    pub fn new(store: &ParamStore, config: &GanConfig) -> Result<StyleGan2Generator> {
        config.validate()?;
        let root = store.root();
        let syn = root.sub("synthesis");
        let clamp = config.conv_clamp;
        let mut blocks = Vec::new();
        let mut noise_index = 0;
        for res in config.block_resolutions() {
            let vs: Scope = syn.sub(format!("b{res}"));
            let cout = config.channels_at(res);
            let (constant, conv0) = if res == 4 {
                (
                    Some(vs.param("const", &[cout, 4, 4], Init::normal(1.0))?),
                    None,
                )
            } else {
                let cin = config.channels_at(res / 2);
                let l = SynthesisLayer::new(
                    &vs.sub("conv0"),
                    cin,
                    cout,
                    config.w_dim,
                    res,
                    2,
                    clamp,
                    noise_index,
                )?;
                noise_index += 1;
                (None, Some(l))
            };
            let conv1 = SynthesisLayer::new(
                &vs.sub("conv1"),
                cout,
                cout,
                config.w_dim,
                res,
                1,
                clamp,
                noise_index,
            )?;
            noise_index += 1;
            let torgb = ToRgb::new(&vs.sub("torgb"), cout, config.channels, config.w_dim, clamp)?;
            blocks.push(SynthesisBlock {
                resolution: res,
                constant,
                conv0,
                conv1,
                torgb,
                filter: fir_1331(store.dtype())?,
            });
        }
        let num_ws = blocks.iter().map(|b| b.num_conv()).sum::<usize>() + 1;
        let mapping = Mapping::new(
            &root.sub("mapping"),
            config.z_dim,
            config.w_dim,
            num_ws,
            config.mapping_layers,
        )?;
        Ok(StyleGan2Generator {
            config: config.clone(),
            store: store.clone(),
            mapping,
            blocks,
            num_ws,
        })
    }

    /// Number of noise inputs (one per synthesis conv), in the order [`Noise::Given`] expects.
    pub fn num_noise_layers(&self) -> usize {
        self.num_ws - 1
    }

    /// ws [N, num_ws, w_dim] → images [N, channels, R, R]. `fused` picks the grouped-conv form
    /// (NVlabs uses it for inference, the non-fused form while training).
    pub fn synthesis(&self, ws: &Tensor, noise: &mut Noise, fused: bool) -> Result<Tensor> {
        let want = [
            ws.shape().first().copied().unwrap_or(0),
            self.num_ws,
            self.config.w_dim,
        ];
        if ws.shape() != want || want[0] == 0 {
            return Err(Error::shape(
                "StyleGan2Generator",
                format!(
                    "ws must be [N ≥ 1, {}, {}], got {:?}",
                    want[1],
                    want[2],
                    ws.shape()
                ),
            ));
        }
        let (mut x, mut img): (Option<Tensor>, Option<Tensor>) = (None, None);
        let mut w_idx = 0;
        for b in &self.blocks {
            let k = b.num_conv();
            let bws = ws.narrow(1, w_idx, k + 1)?;
            w_idx += k;
            let (nx, nimg) = b.forward(x.as_ref(), img.as_ref(), &bws, noise, fused)?;
            x = Some(nx);
            img = Some(nimg);
        }
        img.ok_or_else(|| Error::invalid("StyleGan2Generator", "no synthesis blocks"))
    }

    /// z [N, z_dim] → images, with truncation ψ (1 = none) on all ws.
    pub fn forward(&self, z: &Tensor, psi: f64, noise: &mut Noise, fused: bool) -> Result<Tensor> {
        let ws = self.mapping.forward(z, psi, None, false)?;
        self.synthesis(&ws, noise, fused)
    }
}
