//! Without the `cuda` feature, asking for a GPU is an error value with a sentence, not a panic.
#![cfg(not(feature = "cuda"))]

use brainsynth::{DType, Device, Tensor};

#[test]
fn to_device_cuda_says_how_to_get_a_gpu_build() {
    let t = Tensor::ones(&[2, 3], DType::F32);
    let e = t
        .to_device(Device::Cuda(0))
        .expect_err("no GPU backend in this build");
    let msg = e.to_string();
    assert!(
        msg.contains("cuda:0") && msg.contains("--features cuda"),
        "{msg}"
    );
    // the CPU stays usable
    assert_eq!(
        t.to_device(Device::Cpu).unwrap().to_vec_f32().unwrap(),
        vec![1.0; 6]
    );
}
