//! brainsynth: synthetic brain-tumour MR images (Progressive GAN, StyleGAN 1/2/3, diffusion) and
//! the segmentation study that measures whether they can stand in for real patient scans
//! (Akbar et al., "Brain tumor segmentation using synthetic MR images — a comparison of GANs and
//! diffusion models", Scientific Data 11:259, 2024).
//!
//! Built from scratch, without a deep-learning framework: a tensor and autograd core with
//! gradients of gradients, a CPU reference path that is the ground truth of every numerical test,
//! a fast CPU path, and handwritten CUDA kernels behind the `cuda` feature. The `brainsynth`
//! program (`brainsynth --help`) drives the same library from the command line; this page is for
//! using it from Rust.
//!
//! # Layers
//!
//! Each layer uses only the ones above it:
//!
//! | layer | modules | what it holds |
//! |---|---|---|
//! | tensors | [`tensor`], [`backend`] | [`Tensor`] (shared storage, strided views), [`DType`], [`Device`]; the CPU reference and fast kernels and the CUDA backend |
//! | autograd | [`autograd`] | reverse mode over recorded ops; [`autograd::grad`] with `create_graph` differentiates gradients again |
//! | ops | [`ops`] | convolution, modulated convolution, resampling, normalisation, attention, losses — each with its backward rule written in differentiable ops |
//! | nn / optim | [`nn`], [`optim`] | parameters with hierarchical names ([`ParamStore`]), layers; Adam/AdamW, SGD, EMA, schedules |
//! | models | [`models`] | U-Net, Swin + UperNet, StyleGAN2, StyleGAN3-T, the diffusion U-Net |
//! | data / io | [`data`], [`io`] | BraTS NIfTI cases, slices, slice stores, splits, the phantom; checkpoints (safetensors), PNG |
//! | train / eval / study | [`train`], [`eval`], [`study`] | resumable training runs, sampling into stores, Dice in 3-D, memorisation, the study end to end |
//!
//! [`profile`] times kernels per training step (`BRAINSYNTH_PROFILE=1`); [`error`] holds the one
//! error type, [`Error`], whose messages are sentences a person can act on.
//!
//! # Feature flags
//!
//! - `cuda`: the CUDA backend. `build.rs` compiles the kernels in `cuda/` with nvcc (found
//!   through `NVCC` or `PATH`); the driver is loaded at run time, so a build with the feature
//!   still runs on a machine without a GPU, and asking for [`Device::Cuda`] there is an
//!   [`Error`], not a crash.
//! - `cuda-emu` (implies `cuda`): the same kernels compiled with the host C++ compiler and run on
//!   the CPU under an emulation of CUDA's execution model — the CUDA backend with no GPU and no
//!   nvcc, for testing. `Device::Cuda(0)` is then the emulated device.
//!
//! # Examples
//!
//! Every example below runs under `cargo test` (the CUDA one too: it compares the devices when
//! one is there and says why it skips otherwise).
//!
//! ## Tensors and a gradient of a gradient
//!
//! ```
//! use brainsynth::autograd::grad;
//! use brainsynth::{DType, Tensor};
//!
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?.variable();
//! let y = x.sqr()?.mul(&x)?.sum_all()?; // y = Σ x³
//! assert_eq!(y.dtype(), DType::F32);
//! // dy/dx = 3x², recorded (create_graph) so that it can be differentiated again
//! let dy = grad(&[y], None, &[x.clone()], true)?.remove(0);
//! assert_eq!(dy.to_vec_f32()?, [3.0, 12.0, 27.0]);
//! // d/dx Σ 3x² = 6x
//! let d2 = grad(&[dy.sum_all()?], None, &[x], false)?.remove(0);
//! assert_eq!(d2.to_vec_f32()?, [6.0, 12.0, 18.0]);
//! # Ok::<(), brainsynth::Error>(())
//! ```
//!
//! ## Read a BraTS case and cut slices
//!
//! A BraTS case is a folder of five NIfTI volumes (`<id>_t1`, `_t1ce`, `_t2`, `_flair`, `_seg`,
//! or the 2023 names). Here the embedded phantom writes one, as `brainsynth phantom` does.
//!
//! ```
//! use brainsynth::data::{PhantomConfig, SliceConfig, read_case, read_store, slices_from_case};
//! use brainsynth::data::{SliceStore, write_phantom_cases, write_store};
//!
//! let dir = std::env::temp_dir().join(format!("brainsynth-doc-case-{}", std::process::id()));
//! let small = PhantomConfig { dims: [64, 64, 24], subjects: 1, ..PhantomConfig::default() };
//! let case_dirs = write_phantom_cases(&dir, &small)?;
//!
//! let case = read_case(&case_dirs[0])?; // the four sequences and the annotation, checked
//! let slices = slices_from_case(&case, &SliceConfig::default())?; // axial slices with brain
//! assert!(!slices.is_empty());
//! assert_eq!((slices[0].h, slices[0].w), (64, 64)); // padded to a multiple of 32
//!
//! // keep them as one checksummed store file, the input of training
//! let mut store = SliceStore::new(64, 64);
//! store.slices = slices;
//! write_store(dir.join("case.store"), &store)?;
//! assert_eq!(read_store(dir.join("case.store"))?.len(), store.len());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), brainsynth::Error>(())
//! ```
//!
//! ## Segment a slice with a U-Net trained by `brainsynth train-seg`
//!
//! `brainsynth train-seg --store phantom.store --model unet --out runs/unet` keeps its best
//! weights in `runs/unet/best.safetensors`. This program loads them and segments one slice (the
//! hidden lines make the store and run a two-step training the way those commands would):
//!
//! ```
//! use brainsynth::data::read_store;
//! use brainsynth::train::profile::SegProfile;
//! use brainsynth::train::seg::{SegKind, load_segmenter, predict_labels};
//! # use brainsynth::data::{PhantomConfig, SliceConfig, SliceStore, slices_from_case, write_store};
//! # use brainsynth::data::phantom::phantom_case;
//! # use brainsynth::train::seg::train_segmenter;
//! # use brainsynth::data::split::{SplitSpec, split_subjects};
//! # fn setup() -> brainsynth::Result<()> {
//! #     let dir = std::env::temp_dir().join(format!("brainsynth-doc-seg-{}", std::process::id()));
//! #     std::fs::create_dir_all(&dir).map_err(|e| brainsynth::Error::io(&dir, e))?;
//! #     std::env::set_current_dir(&dir).map_err(|e| brainsynth::Error::io(&dir, e))?;
//! #     let cfg = PhantomConfig { dims: [64, 64, 24], subjects: 3, ..PhantomConfig::default() };
//! #     let mut store = SliceStore::new(64, 64);
//! #     for i in 0..3 {
//! #         store.slices.extend(slices_from_case(&phantom_case(&cfg, i)?, &SliceConfig::default())?);
//! #     }
//! #     write_store("phantom.store", &store)?;
//! #     let split = split_subjects(&store.subjects(), &SplitSpec::Counts { train: None, test: 1 }, 0)?;
//! #     let (train, val) = (store.select_subjects(&split.train), store.select_subjects(&split.test));
//! #     let mut seg = SegProfile::quick().train_config(SegKind::UNet, 0);
//! #     seg.iterations = 2;
//! #     seg.val_every = 2;
//! #     seg.time_limit = None;
//! #     train_segmenter(&seg, &train.slices, &val.slices, "runs/unet".as_ref(), &mut |_| {})?;
//! #     Ok(())
//! # }
//!
//! fn main() -> brainsynth::Result<()> {
//! #   setup()?;
//!     let store = read_store("phantom.store")?;
//!     let cfg = SegProfile::quick().train_config(SegKind::UNet, 0); // train-seg's default profile
//!     let unet = load_segmenter(&cfg, "runs/unet/best.safetensors".as_ref())?;
//!     let slice = &store.slices[store.len() / 2];
//!     let labels = predict_labels(&unet, std::slice::from_ref(slice), 1)?.remove(0);
//!     let tumour = labels.iter().filter(|&&l| l != 0).count();
//!     println!("{} slice {}: {tumour} of {} pixels tumour", slice.subject, slice.index, labels.len());
//! #   assert_eq!(labels.len(), 64 * 64);
//! #   assert!(labels.iter().all(|l| [0, 1, 2, 4].contains(l)));
//! #   let dir = std::env::current_dir().map_err(|e| brainsynth::Error::io(".", e))?;
//! #   std::fs::remove_dir_all(&dir).ok();
//!     Ok(())
//! }
//! ```
//!
//! The labels are BraTS's: 0 background, 1 necrotic core, 2 oedema, 4 enhancing tumour.
//! [`train::seg::evaluate`] gives per-subject Dice in 3-D instead.
//!
//! ## Load a generator checkpoint and sample
//!
//! `brainsynth train-gen` writes snapshots (`snapshot-*.safetensors`) holding the generator's
//! moving average `G_ema` and its sizes; [`AnyGenerator::from_checkpoint`] rebuilds it and
//! [`train::generate::generate_stylegan`] samples a synthetic slice store (with a montage
//! beside it) that `train-seg` can train on. Here a tiny StyleGAN2 is made and saved first.
//!
//! ```
//! use brainsynth::io::checkpoint::{Checkpoint, CheckpointWriter};
//! use brainsynth::models::gan::{Arch, GanConfig};
//! use brainsynth::train::gan::{AnyGenerator, GanProfile, GanTrainer};
//! use brainsynth::train::generate::generate_stylegan;
//! use brainsynth::train::runner::Trainer;
//! use brainsynth::{Device, Tensor, DType};
//! use brainsynth::data::phantom::phantom_case;
//! use brainsynth::data::{PhantomConfig, SliceConfig, read_store, slices_from_case};
//!
//! let dir = std::env::temp_dir().join(format!("brainsynth-doc-gan-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).map_err(|e| brainsynth::Error::io(&dir, e))?;
//! // a tiny StyleGAN2 for 16×16 five-channel slices, saved as train-gen saves its weights
//! let mut cfg = GanProfile::quick(Arch::StyleGan2).train_config(Arch::StyleGan2, 0, Device::Cpu);
//! cfg.net = GanConfig { z_dim: 8, w_dim: 8, resolution: 16, channel_base: 64, channel_max: 8,
//!                       mapping_layers: 2, mbstd_group: 2, ..cfg.net };
//! cfg.batch = 2;
//! let phantom = PhantomConfig { dims: [48, 48, 16], subjects: 1, ..PhantomConfig::default() };
//! let small = SliceConfig { out_size: Some(16), ..SliceConfig::default() };
//! let reals = slices_from_case(&phantom_case(&phantom, 0)?, &small)?;
//! let trainer = GanTrainer::new(cfg, &reals, None)?;
//! let mut w = CheckpointWriter::new();
//! trainer.save_weights(&mut w)?;
//! w.save(dir.join("snapshot.safetensors"))?;
//!
//! let g = AnyGenerator::from_checkpoint(&Checkpoint::open(dir.join("snapshot.safetensors"))?)?;
//! // one image by hand: z → [1, 5, 16, 16] in about [−1, 1] (ψ = 1: no truncation)
//! let z = Tensor::zeros(&[1, g.z_dim()], DType::F32);
//! assert_eq!(g.sample(&z, 1.0)?.shape(), [1, 5, 16, 16]);
//! // or six into a store, as `brainsynth generate` does
//! let montage = generate_stylegan(&g, 6, 1.0, 0, 3, Device::Cpu, &dir.join("synth.store"))?;
//! assert_eq!(read_store(dir.join("synth.store"))?.len(), 6);
//! assert!(montage.exists());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), brainsynth::Error>(())
//! ```
//!
//! ## On a GPU, checked against the CPU reference
//!
//! Tensors move with [`Tensor::to_device`] and ops run where their inputs live (a model moves
//! with [`nn::ParamStore::set_device`]). This example runs a convolution and its input gradient
//! on `Device::Cuda(0)` and on the CPU and compares them; it runs for real with `--features
//! cuda` on a machine with a GPU, and with `--features cuda-emu` on the emulated device. Without
//! the feature or without a driver, moving to the device is an [`Error`] saying why, and the
//! example prints it and stops.
//!
//! ```
//! use brainsynth::autograd::grad;
//! use brainsynth::ops::conv::Conv2dParams;
//! use brainsynth::{DType, Device, Tensor};
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let x = Tensor::randn(&[2, 5, 12, 12], DType::F32, &mut rng);
//! let w = Tensor::randn(&[8, 5, 3, 3], DType::F32, &mut rng);
//! let run = |device: Device| -> brainsynth::Result<(Vec<f32>, Vec<f32>)> {
//!     let (x, w) = (x.to_device(device)?.variable(), w.to_device(device)?);
//!     let y = x.conv2d(&w, Conv2dParams::same(3))?;
//!     let dx = grad(&[y.sqr()?.sum_all()?], None, &[x], false)?.remove(0);
//!     Ok((y.to_vec_f32()?, dx.to_vec_f32()?)) // copied back to the host
//! };
//! let cpu = run(Device::Cpu)?;
//! match run(Device::Cuda(0)) {
//!     Ok(gpu) => {
//!         let max_diff = |a: &[f32], b: &[f32]| {
//!             a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max)
//!         };
//!         // the GPU sums in another order: equal up to f32 rounding, not bit for bit
//!         assert!(max_diff(&cpu.0, &gpu.0) < 1e-4, "forward differs");
//!         assert!(max_diff(&cpu.1, &gpu.1) < 1e-3, "input gradient differs");
//!     }
//!     Err(e) => println!("no GPU here, skipped: {e}"),
//! }
//! # Ok::<(), brainsynth::Error>(())
//! ```

pub mod autograd;
pub mod backend;
pub mod data;
pub mod error;
pub mod eval;
pub mod io;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod profile;
pub mod rng;
pub mod study;
pub mod tensor;
pub mod train;

// Finite-difference checkers for the integration tests (each its own crate, so they need a
// public path). Hidden from the documented API: their signatures follow the tests' needs.
#[doc(hidden)]
pub mod testing;

pub use error::{Error, Result};
pub use tensor::{DType, Device, Tensor};

// What people look for first: the networks and their configurations, the trained-model wrappers,
// parameters and checkpoints.
pub use io::checkpoint::{Checkpoint, CheckpointWriter};
pub use models::diffusion::{DiffusionUNet, DiffusionUNetConfig};
pub use models::gan::{Arch, Discriminator, GanConfig, StyleGan2Generator, StyleGan3Generator};
pub use models::swin::{SwinConfig, SwinSegmenter};
pub use models::unet::{UNet, UNetConfig};
pub use nn::ParamStore;
pub use train::diffusion::DiffusionGenerator;
pub use train::gan::AnyGenerator;
pub use train::profile::SegProfile;
pub use train::seg::{SegKind, Segmenter};
