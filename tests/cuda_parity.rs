//! Every CUDA op against the CPU reference kernels on fresh random inputs, forward and backward
//! (autograd on the GPU vs on the CPU) and second order where the GAN regularisers need it:
//! relative error ‖gpu − cpu‖/‖cpu‖ under 1e-5 in f32 and 1e-12 in f64. The cases live once, in
//! `brainsynth::ops::audit` (which `brainsynth audit-kernels` runs too); each test here
//! runs one group of them. Each test prints its seed (set BRAINSYNTH_SEED to repeat one) and
//! skips with a printed reason when no GPU is present (a failure when one is expected).
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu;
use gpu::*;

use brainsynth::autograd::{GradOptions, grad_with};
use brainsynth::ops::audit;
use brainsynth::{DType, Device, Tensor};

#[test]
fn unary_ops_match_cpu() {
    audit_group("unary");
}

#[test]
fn binary_ops_broadcast_like_cpu() {
    audit_group("binary");
}

#[test]
fn where_lerp_and_views_match_cpu() {
    audit_group("views");
}

#[test]
fn reductions_and_softmax_match_cpu() {
    audit_group("reduce");
}

#[test]
fn matmul_and_linear_match_cpu() {
    audit_group("matmul");
}

#[test]
fn conv2d_family_matches_cpu() {
    audit_group("conv");
}

#[test]
fn conv2d_anchor_shape_matches_cpu() {
    audit_group("conv_anchor");
}

#[test]
fn fused_group_norm_matches_reference() {
    audit_group("fused_group_norm");
}

#[test]
fn fused_window_attention_matches_reference() {
    audit_group("fused_window_attention");
}

#[test]
fn fused_modulated_conv_matches_reference() {
    audit_group("fused_modconv");
}

/// The groups run by the tests of this file and of cuda_parity_models.rs: every group of the
/// audit is one test's.
const TESTED: &[&str] = &[
    "unary",
    "binary",
    "views",
    "reduce",
    "matmul",
    "conv",
    "conv_anchor",
    "fused_group_norm",
    "fused_window_attention",
    "fused_modconv",
    "norms",
    "attention",
    "resampling",
    "stylegan",
];

#[test]
fn every_audit_group_is_tested() {
    let groups: Vec<&str> = audit::GROUPS.iter().map(|g| g.name).collect();
    assert_eq!(groups, TESTED);
}

#[test]
fn device_handling_is_explicit() {
    let Some(_gpu) = gpu_or_skip("device_handling_is_explicit") else {
        return;
    };
    let mut r = rng("devices");
    let x = Tensor::randn(&[3, 4], DType::F32, &mut r);
    let g = x.to_device(GPU).unwrap();
    assert_eq!(g.device(), GPU);
    assert_eq!(
        g.to_device(Device::Cpu).unwrap().to_vec_f32().unwrap(),
        x.to_vec_f32().unwrap()
    );
    // reading a GPU tensor needs an explicit copy
    assert!(g.to_vec_f32().is_err());
    // mixing devices is an error that names both
    let e = g.add(&x).expect_err("cpu + gpu");
    assert!(
        e.to_string().contains("cuda:0") && e.to_string().contains("cpu"),
        "{e}"
    );
    // zeros_like and friends stay on the device
    assert_eq!(g.zeros_like().device(), GPU);
    assert_eq!(
        g.full_like(2.5)
            .to_device(Device::Cpu)
            .unwrap()
            .to_vec_f32()
            .unwrap(),
        vec![2.5; 12]
    );
    // assign from the cpu and from the gpu, into a whole tensor and into a view
    let p = Tensor::zeros(&[3, 4], DType::F32).to_device(GPU).unwrap();
    p.assign(&x).unwrap();
    assert_eq!(rel_err(&p, &x), 0.0);
    p.assign(&g.mul_scalar(2.0).unwrap()).unwrap();
    assert_eq!(rel_err(&p, &x.mul_scalar(2.0).unwrap()), 0.0);
    let col = p.narrow(1, 1, 2).unwrap();
    col.assign(&Tensor::ones(&[3, 2], DType::F32)).unwrap();
    let back = p.to_device(Device::Cpu).unwrap().to_vec_f32().unwrap();
    assert_eq!(back[1], 1.0);
    assert_eq!(back[0], 2.0 * x.to_vec_f32().unwrap()[0]);
    // update_data is a CPU door
    assert!(p.update_data::<f32, _>(|_| ()).is_err());
    // a device that does not exist
    let e = x.to_device(Device::Cuda(4096)).expect_err("no such device");
    assert!(e.to_string().contains("does not exist"), "{e}");
    // gradients flow back across to_device
    let v = x.variable();
    let l = v.to_device(GPU).unwrap().sqr().unwrap().sum_all().unwrap();
    let gx = grad(&[l], None, std::slice::from_ref(&v), false).unwrap();
    assert_eq!(gx[0].device(), Device::Cpu);
    assert!(rel_err(&gx[0].to_device(GPU).unwrap(), &x.mul_scalar(2.0).unwrap()) < 1e-6);
}

/// Parity compares every input's gradient, zeros included.
fn grad(
    outputs: &[brainsynth::Tensor],
    grad_outputs: Option<&[brainsynth::Tensor]>,
    inputs: &[brainsynth::Tensor],
    create_graph: bool,
) -> brainsynth::Result<Vec<brainsynth::Tensor>> {
    grad_with(
        outputs,
        grad_outputs,
        inputs,
        GradOptions {
            create_graph,
            allow_unused: true,
        },
    )
}
