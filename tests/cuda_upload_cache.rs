//! Host metadata of the GPU ops — index maps of gather / scatter, axis maps of resize and
//! pooling, FIR taps of upfirdn — goes to the device once per content: repeating a call makes no
//! host→device copy (the backend counts them) and gives bit-identical results. Its own test
//! binary, so that no other test uploads while the counter is read.
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu;
use gpu::*;

use std::sync::Arc;

use brainsynth::backend::cuda;
use brainsynth::ops::resize::{avg_pool2d, resize_bilinear};
use brainsynth::ops::upfirdn::{setup_filter, upfirdn2d};
use brainsynth::{DType, Device, Result, Tensor};

fn ops(x: &Tensor, f: &Tensor, map: &Arc<Vec<u32>>) -> Result<Vec<Tensor>> {
    Ok(vec![
        resize_bilinear(x, (20, 23))?,
        avg_pool2d(x, (3, 2), (2, 2), (1, 0))?,
        upfirdn2d(x, f, (2, 2), (1, 1), (2, 1, 2, 1), 4.0, false)?,
        x.gather_map(map.clone(), &[2, 3])?
            .scatter_add_map(map.clone(), &[2, 3, 9, 12])?,
    ])
}

fn host(ts: &[Tensor]) -> Vec<Vec<f64>> {
    ts.iter()
        .map(|t| t.to_device(Device::Cpu).unwrap().to_vec_f64().unwrap())
        .collect()
}

#[test]
fn metadata_is_uploaded_once_per_content() {
    let Some(_gpu) = gpu_or_skip("metadata_is_uploaded_once_per_content") else {
        return;
    };
    let be = cuda::backend(0).unwrap();
    let mut r = rng("upload cache");
    for dt in [DType::F32, DType::F64] {
        let x = Tensor::randn(&[2, 3, 9, 12], dt, &mut r)
            .to_device(GPU)
            .unwrap();
        let f = setup_filter(
            &[1.0, 3.0, 3.0, 1.0],
            &[4],
            true,
            false,
            1.0,
            Some(false),
            dt,
        )
        .unwrap()
        .to_device(GPU)
        .unwrap();
        let map = Arc::new(vec![7u32, 0, 7, 100, 59, 3]);
        let first = host(&ops(&x, &f, &map).unwrap());
        let before = be.host_uploads();
        let second = host(&ops(&x, &f, &map).unwrap());
        assert_eq!(
            be.host_uploads(),
            before,
            "a repeated call uploaded its metadata"
        );
        assert_eq!(first, second);
        // other shapes: new maps go up, and the results still match the CPU
        let y = resize_bilinear(&x, (21, 23)).unwrap();
        assert!(be.host_uploads() > before, "a new map was not uploaded");
        let cpu = resize_bilinear(&x.to_device(Device::Cpu).unwrap(), (21, 23)).unwrap();
        assert_close("resize after caching", &y, &cpu);
        // emptying the cache uploads again
        be.empty_cache();
        let before = be.host_uploads();
        let third = host(&ops(&x, &f, &map).unwrap());
        assert!(be.host_uploads() > before);
        assert_eq!(first, third);
    }
}
