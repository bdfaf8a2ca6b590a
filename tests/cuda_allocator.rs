//! The caching allocator: once a training step has run, the same step again makes no driver
//! allocation. Its own test binary, so no other test shares the device's pool meanwhile.
#![cfg(feature = "cuda")]

use brainsynth::autograd::grad;
use brainsynth::backend::cuda;
use brainsynth::ops::Conv2dParams;
use brainsynth::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn second_training_step_makes_no_driver_allocation() {
    match cuda::available_or_skip(0) {
        Ok(None) => {}
        Ok(Some(why)) => {
            println!("skipping second_training_step_makes_no_driver_allocation: {why}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    let be = cuda::backend(0).unwrap();
    let gpu = Device::Cuda(0);
    let mut rng = StdRng::seed_from_u64(3);
    let x = Tensor::randn(&[4, 3, 16, 16], DType::F32, &mut rng)
        .to_device(gpu)
        .unwrap();
    let w = Tensor::randn(&[8, 3, 3, 3], DType::F32, &mut rng)
        .to_device(gpu)
        .unwrap()
        .variable();
    let lin = Tensor::randn(&[10, 8], DType::F32, &mut rng)
        .to_device(gpu)
        .unwrap()
        .variable();
    let step = || {
        let h = x.conv2d(&w, Conv2dParams::same(3)).unwrap().silu().unwrap();
        let pooled = h.mean_axes(&[2, 3], false).unwrap();
        let l = pooled
            .linear(&lin, None)
            .unwrap()
            .log_softmax(1)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = grad(&[l], None, &[w.clone(), lin.clone()], false).unwrap();
        w.assign(&w.sub(&g[0].mul_scalar(0.01).unwrap()).unwrap())
            .unwrap();
        lin.assign(&lin.sub(&g[1].mul_scalar(0.01).unwrap()).unwrap())
            .unwrap();
    };
    step();
    be.synchronize().unwrap();
    let before = be.driver_allocations();
    assert!(before > 0, "the first step allocates");
    step();
    be.synchronize().unwrap();
    assert_eq!(
        be.driver_allocations(),
        before,
        "a second identical step should be served from the cache"
    );
    assert!(be.cached_bytes() > 0);
}
