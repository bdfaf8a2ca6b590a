//! End to end: a 2-layer MLP (Linear → SiLU → Linear) fitted to a small regression problem with
//! Adam; the loss must drop at least tenfold.

use brainsynth::nn::{Linear, ParamStore};
use brainsynth::optim::{Adam, AdamConfig, Optimizer};
use brainsynth::testing::rand_vals;
use brainsynth::{DType, Tensor};

#[test]
fn mlp_fits_with_adam() {
    let n = 64;
    let xs = rand_vals(2 * n, 3);
    let ys: Vec<f64> = (0..n)
        .map(|i| (2.0 * xs[2 * i]).sin() + 0.5 * xs[2 * i + 1] * xs[2 * i + 1])
        .collect();
    let x = Tensor::from_f64s(&xs, &[n, 2], DType::F32).unwrap();
    let y = Tensor::from_f64s(&ys, &[n, 1], DType::F32).unwrap();

    let store = ParamStore::new(7);
    let fc0 = Linear::new(&store.root().sub("fc0"), 2, 32, true).unwrap();
    let fc1 = Linear::new(&store.root().sub("fc1"), 32, 1, true).unwrap();
    let mut opt = Adam::new(&store, AdamConfig::adam(0.01)).unwrap();
    let loss_of = || {
        let h = fc0.forward(&x).unwrap().silu().unwrap();
        fc1.forward(&h)
            .unwrap()
            .sub(&y)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
    };
    let first = loss_of().item().unwrap();
    let mut last = first;
    for _ in 0..400 {
        opt.zero_grad();
        let loss = loss_of();
        loss.backward().unwrap();
        opt.step().unwrap();
        last = loss.item().unwrap();
    }
    assert!(last * 10.0 < first, "loss {first} → {last}");
}
