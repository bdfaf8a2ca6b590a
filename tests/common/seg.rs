//! Small segmenter trainings shared by the training tests: phantom slices, a tiny U-Net/Swin
//! configuration, a fresh temporary folder.

use std::path::PathBuf;

use brainsynth::data::phantom::{PhantomConfig, phantom_case};
use brainsynth::data::{Slice, SliceConfig, slices_from_case};
use brainsynth::models::swin::SwinConfig;
use brainsynth::models::unet::UNetConfig;
use brainsynth::train::profile::SegProfile;
use brainsynth::train::seg::{SegKind, SegTrainConfig};

pub fn slices(subjects: std::ops::Range<usize>) -> Vec<Slice> {
    let cfg = PhantomConfig {
        dims: [64, 64, 24],
        subjects: 8,
        ..PhantomConfig::default()
    };
    let sc = SliceConfig {
        out_size: Some(32),
        ..SliceConfig::default()
    };
    subjects
        .flat_map(|i| slices_from_case(&phantom_case(&cfg, i).unwrap(), &sc).unwrap())
        .collect()
}

pub fn tiny(kind: SegKind, iterations: u64) -> SegTrainConfig {
    let mut c = SegProfile::quick().train_config(kind, 0);
    c.unet = UNetConfig {
        base_width: 4,
        depth: 3,
        max_width: 16,
        ..UNetConfig::quick()
    };
    c.swin = SwinConfig {
        embed_dim: 8,
        depths: vec![2, 2],
        heads: vec![1, 2],
        head_channels: 8,
        pool_scales: vec![1, 2],
        ..SwinConfig::quick()
    };
    c.iterations = iterations;
    c.val_every = 2;
    c.batch = 2;
    c
}

pub fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brainsynth-seg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}
