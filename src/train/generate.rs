//! Generation: a trained generator → a synthetic slice store (the file `train-seg` and the study
//! read) plus a montage of its first images beside it. The same functions back `brainsynth
//! generate` and the study's generation stage.
//!
//! Each sampled image has five channels in \[−1, 1\] (four MR contrasts + the annotation);
//! [`synthetic_slices`] turns them into [`Slice`]s, each image its own pseudo-subject, with the
//! annotation snapped to the nearest label code. Nothing is left behind on failure: a store whose
//! montage could not be written is removed again.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::Result;
use crate::data::Slice;
use crate::data::batch::synthetic_slices;
use crate::data::store::StoreWriter;
use crate::io::png::{MontageOptions, write_montage};
use crate::models::diffusion::Sampler;
use crate::models::gan::growing::Truncation;
use crate::tensor::{DType, Device, Tensor};
use crate::train::diffusion::DiffusionGenerator;
use crate::train::gan::{AnyGenerator, GrowingSampler};

/// Where the montage of a store goes: `synth.store` → `synth.png`.
pub fn montage_path(out: &Path) -> PathBuf {
    out.with_extension("png")
}

/// Sample `n` images of `g` into the store `out` and its montage; returns the montage path.
pub fn generate_stylegan(
    g: &AnyGenerator,
    n: usize,
    psi: f64,
    seed: u64,
    batch: usize,
    device: Device,
    out: &Path,
) -> Result<PathBuf> {
    if device != Device::Cpu {
        g.store().set_device(device);
    }
    generate_with(
        g.z_dim(),
        &|z| g.sample(z, psi),
        n,
        seed,
        batch,
        device,
        out,
    )
}

/// [`generate_stylegan`] for a progressively grown GAN (at the growth of its checkpoint,
/// upsampled to the final side).
pub fn generate_growing(
    g: &GrowingSampler,
    trunc: Truncation,
    n: usize,
    seed: u64,
    batch: usize,
    device: Device,
    out: &Path,
) -> Result<PathBuf> {
    if device != Device::Cpu {
        g.g.store().set_device(device);
    }
    generate_with(
        g.g.z_dim(),
        &|z| g.sample(z, trunc),
        n,
        seed,
        batch,
        device,
        out,
    )
}

/// Sample `n` images (latents N(0, 1) from `seed`, `batch` at a time) into the store `out` and
/// its montage; nothing stays behind on failure.
fn generate_with(
    z_dim: usize,
    sample: &dyn Fn(&Tensor) -> Result<Tensor>,
    n: usize,
    seed: u64,
    batch: usize,
    device: Device,
    out: &Path,
) -> Result<PathBuf> {
    let cfg_res = {
        let z = Tensor::zeros(&[1, z_dim], DType::F32);
        let probe = sample(&z.to_device(device)?)?;
        probe.shape().to_vec()
    };
    let (h, w) = (cfg_res[2], cfg_res[3]);
    let mut writer = StoreWriter::create(out, h, w)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut first: Vec<Slice> = Vec::new();
    let mut done = 0;
    while done < n {
        let b = batch.min(n - done);
        let z = Tensor::randn(&[b, z_dim], DType::F32, &mut rng).to_device(device)?;
        let img = sample(&z)?;
        let s = img.shape();
        let host = img.to_device(Device::Cpu)?.to_vec_f32()?;
        let slices = synthetic_slices(&host, [s[0], s[1], s[2], s[3]], done)?;
        for sl in &slices {
            writer.push(sl)?;
        }
        first.extend(slices.into_iter().take(8usize.saturating_sub(first.len())));
        done += b;
    }
    writer.finish()?;
    let png = montage_path(out);
    if let Err(e) = write_montage(&png, &first, &MontageOptions::default()) {
        // all or nothing: the store without its montage is taken back
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    Ok(png)
}

/// Sample `n` images of the diffusion model `g` into the store `out` and its montage (all
/// sampled before anything is written); returns the montage path.
pub fn generate_diffusion(
    g: &DiffusionGenerator,
    sampler: Sampler,
    n: usize,
    seed: u64,
    batch: usize,
    out: &Path,
) -> Result<PathBuf> {
    let images = g.sample(sampler, n, batch, seed)?;
    let slices = synthetic_slices(&images.data, images.shape, 0)?;
    let s = g.image_size();
    let mut writer = StoreWriter::create(out, s, s)?;
    for sl in &slices {
        writer.push(sl)?;
    }
    writer.finish()?;
    let png = montage_path(out);
    let shown = &slices[..slices.len().min(8)];
    if let Err(e) = write_montage(&png, shown, &MontageOptions::default()) {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    Ok(png)
}
