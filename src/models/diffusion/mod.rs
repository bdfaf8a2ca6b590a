//! The denoising diffusion generator, as openai's guided-diffusion builds and trains it: the
//! U-Net ([`unet`]), the process's coefficients and respacing ([`schedule`]) and the process on
//! tensors — training loss, posterior, ancestral and DDIM sampling ([`sampler`]) — and one
//! training step ([`mod@train_step`]).

pub mod qkv_attention;
pub mod sampler;
pub mod schedule;
pub mod train_step;
pub mod unet;

pub use sampler::{Diffusion, MeanVariance, Sampler};
pub use schedule::{BetaSchedule, FixedVariance, Schedule, space_timesteps};
pub use train_step::{StepStats, draw_t_noise, study_optimizer_config, train_step};
pub use unet::{DiffusionUNet, DiffusionUNetConfig};
