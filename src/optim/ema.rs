//! Exponential moving average of a model's weights (StyleGAN's G_ema): shadow copies updated as
//! ema ← p + β·(ema − p), buffers copied as they are.

use crate::nn::ParamStore;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// How β is chosen at each update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EmaDecay {
    /// A fixed β.
    Constant(f64),
    /// NVlabs: half-life of `ema_kimg` thousand images, β = 0.5^(batch / ema_nimg), with
    /// ema_nimg = min(ema_kimg·1000, cur_nimg·rampup) when a ramp-up is given.
    HalfLife { ema_kimg: f64, rampup: Option<f64> },
}

/// Shadow weights of one store, in the store's order.
pub struct Ema {
    pub decay: EmaDecay,
    names: Vec<String>,
    shadow: Vec<Tensor>,
    buffer_names: Vec<String>,
    buffers: Vec<Tensor>,
}

/// A copy with its own storage, on `t`'s device.
fn copy_of(t: &Tensor) -> Result<Tensor> {
    match t.device() {
        Device::Cpu => Tensor::from_f64s(&t.to_vec_f64()?, t.shape(), t.dtype()),
        // through the host: an exact copy, and never an alias of the live weights
        d => t.detach().to_device(Device::Cpu)?.to_device(d),
    }
}

impl Ema {
    /// Shadows start as copies of the current weights and buffers.
    pub fn new(store: &ParamStore, decay: EmaDecay) -> Result<Ema> {
        let params = store.params();
        let bufs = store.buffers();
        Ok(Ema {
            decay,
            names: params.iter().map(|p| p.name.clone()).collect(),
            shadow: params
                .iter()
                .map(|p| copy_of(&p.tensor))
                .collect::<Result<_>>()?,
            buffer_names: bufs.iter().map(|b| b.0.clone()).collect(),
            buffers: bufs.iter().map(|b| copy_of(&b.1)).collect::<Result<_>>()?,
        })
    }
    /// Fixed β (e.g. 0.999).
    pub fn with_beta(store: &ParamStore, beta: f64) -> Result<Ema> {
        Ema::new(store, EmaDecay::Constant(beta))
    }
    /// StyleGAN's schedule (ema_kimg 10, rampup 0.05 for StyleGAN2-ADA; None to disable).
    pub fn half_life(store: &ParamStore, ema_kimg: f64, rampup: Option<f64>) -> Result<Ema> {
        Ema::new(store, EmaDecay::HalfLife { ema_kimg, rampup })
    }

    /// β for a step that has seen `cur_nimg` images (before this batch) with batch size `batch`.
    pub fn beta(&self, cur_nimg: u64, batch: usize) -> f64 {
        match self.decay {
            EmaDecay::Constant(b) => b,
            EmaDecay::HalfLife { ema_kimg, rampup } => {
                let mut nimg = ema_kimg * 1000.0;
                if let Some(r) = rampup {
                    nimg = nimg.min(cur_nimg as f64 * r);
                }
                0.5f64.powf(batch as f64 / nimg.max(1e-8))
            }
        }
    }

    /// One update with the schedule's β.
    pub fn update(&mut self, store: &ParamStore, cur_nimg: u64, batch: usize) -> Result<()> {
        let b = self.beta(cur_nimg, batch);
        self.update_with_beta(store, b)
    }

    /// ema ← p + β·(ema − p) for every parameter; buffers copied.
    pub fn update_with_beta(&mut self, store: &ParamStore, beta: f64) -> Result<()> {
        let params = store.params();
        self.check_names(&params.iter().map(|p| p.name.clone()).collect::<Vec<_>>())?;
        for (p, e) in params.iter().zip(&self.shadow) {
            if p.tensor.device() != Device::Cpu {
                // on the device, in its dtype (the host path below rounds once, in f64)
                let pt = p.tensor.detach();
                e.assign(&pt.add(&e.sub(&pt)?.mul_scalar(beta)?)?)?;
                continue;
            }
            let pv = p.tensor.to_vec_f64()?;
            let ev = e.to_vec_f64()?;
            let nv: Vec<f64> = pv
                .iter()
                .zip(&ev)
                .map(|(&p, &e)| p + beta * (e - p))
                .collect();
            e.assign(&Tensor::from_f64s(&nv, e.shape(), e.dtype())?)?;
        }
        for ((_, b), e) in store.buffers().iter().zip(&self.buffers) {
            e.assign(b)?;
        }
        Ok(())
    }

    fn check_names(&self, names: &[String]) -> Result<()> {
        if names.len() < self.names.len() || names[..self.names.len()] != self.names[..] {
            return Err(Error::invalid(
                "Ema",
                "the store's parameters are not the ones this EMA was made from",
            ));
        }
        Ok(())
    }

    /// Copy the averaged weights and buffers into `target` (a second instance of the model,
    /// NVlabs' G_ema), matching by name.
    pub fn copy_to(&self, target: &ParamStore) -> Result<()> {
        for (n, e) in self.named_tensors() {
            let t = target.get(&n).ok_or_else(|| {
                Error::invalid("Ema::copy_to", format!("target store has no {n:?}"))
            })?;
            t.assign(&e)?;
        }
        Ok(())
    }

    /// Exchange the live weights and buffers of `store` with the averaged ones. Call twice to
    /// undo; `with_averaged` does both around a closure.
    pub fn swap(&mut self, store: &ParamStore) -> Result<()> {
        let params = store.params();
        self.check_names(&params.iter().map(|p| p.name.clone()).collect::<Vec<_>>())?;
        let live: Vec<Tensor> = params
            .iter()
            .map(|p| p.tensor.clone())
            .chain(store.buffers().into_iter().map(|b| b.1))
            .collect();
        for (l, e) in live.iter().zip(self.shadow.iter().chain(&self.buffers)) {
            let tmp = copy_of(l)?;
            l.assign(e)?;
            e.assign(&tmp)?;
        }
        Ok(())
    }

    /// Run `f` with the averaged weights in `store` (sampling), then put the live ones back, also
    /// when `f` fails.
    pub fn with_averaged<R>(
        &mut self,
        store: &ParamStore,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        self.swap(store)?;
        let r = f();
        self.swap(store)?;
        r
    }

    /// The shadow tensors under the store's names (parameters, then buffers), for checkpoints.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .cloned()
            .zip(self.shadow.iter().cloned())
            .chain(
                self.buffer_names
                    .iter()
                    .cloned()
                    .zip(self.buffers.iter().cloned()),
            )
            .collect()
    }
}
