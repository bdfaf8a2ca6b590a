//! The denoising diffusion generator, as openai's guided-diffusion builds and trains it: the
//! U-Net ([`unet`]) and the Gaussian diffusion process with its schedules, loss and samplers
//! ([`schedule`], [`sampler`]).

pub mod unet;

pub use unet::{DiffusionUNet, DiffusionUNetConfig};
