//! Arbitrary bytes as a `.nii` or `.nii.gz` file, NIfTI-1 or NIfTI-2, any orientation (gzip is
//! recognised by its magic bytes): the volume reader, the label check for both namings and
//! slicing must return values or typed errors, never panic, hang or allocate without bound.
//! Seeds (`fuzz/seeds/nifti_case/`, the hostile ones written by `fuzz/seeds/make_nifti_seeds.py`) include NIfTI-2, RAS and
//! permuted sforms, a qform, a negative dimension and a declared-huge gzip bomb.
#![no_main]

use std::path::Path;

use brainsynth::data::nifti_case::{Case, Naming, labels_from_volume, read_volume_bytes};
use brainsynth::data::slices::{SliceConfig, slices_from_case};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Not named .gz: gzip is found by its magic bytes, so both paths stay reachable.
    let path = Path::new("fuzz.nii");
    let Ok(vol) = read_volume_bytes(data, path) else {
        return;
    };
    for naming in [Naming::Brats2020, Naming::Brats2023] {
        if let Ok(labels) = labels_from_volume(&vol, naming, path) {
            // Small volumes only: slicing cost grows with the volume.
            if vol.data.len() <= 1 << 16 {
                let case = Case {
                    id: "fuzz".into(),
                    dims: vol.dims,
                    sequences: [
                        vol.data.clone(),
                        vol.data.clone(),
                        vol.data.clone(),
                        vol.data.clone(),
                    ],
                    labels,
                    naming,
                    files: Default::default(),
                };
                let cfg = SliceConfig {
                    pad_to: Some(16),
                    out_size: Some(8),
                    min_coverage: 0.0,
                    ..SliceConfig::default()
                };
                let _ = slices_from_case(&case, &cfg);
            }
        }
    }
});
