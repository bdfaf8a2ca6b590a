//! Layers: values against hand-written loops, gradients by finite differences, dropout masks.

use brainsynth::nn::{
    Conv2d, DropPath, Dropout, Embedding, EqualizedConfig, EqualizedConv2d, EqualizedLinear,
    Linear, ParamStore,
};
use brainsynth::ops::Conv2dParams;
use brainsynth::testing::{check_grad, check_grad2, rand_tensor};
use brainsynth::{DType, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "elem {i}: {x} vs {y}"
        );
    }
}

#[test]
fn equalized_linear_value() {
    let store = ParamStore::with_dtype(5, DType::F64);
    let (fin, fout, lr, gain) = (6, 3, 0.01, 2f64.sqrt());
    let cfg = EqualizedConfig::default()
        .with_lr_multiplier(lr)
        .with_gain(gain)
        .with_bias_init(0.5);
    let l = EqualizedLinear::new(&store.root().sub("fc"), fin, fout, cfg).unwrap();
    // stored N(0, 1)/lr: spread about 100; bias stored bias_init/lr
    let w = l.weight.to_vec_f64().unwrap();
    assert!(w.iter().map(|v| v.abs()).fold(0.0, f64::max) > 20.0);
    assert_eq!(l.bias.as_ref().unwrap().to_vec_f64().unwrap(), [50.0; 3]);
    let x = rand_tensor(&[2, fin], 1);
    let y = l.forward(&x).unwrap().to_vec_f64().unwrap();
    let xv = x.to_vec_f64().unwrap();
    let scale = gain * lr / (fin as f64).sqrt();
    let mut want = vec![0.0; 2 * fout];
    for n in 0..2 {
        for o in 0..fout {
            let mut acc = 50.0 * lr; // effective bias = bias_init
            for i in 0..fin {
                acc += xv[n * fin + i] * w[o * fin + i] * scale;
            }
            want[n * fout + o] = acc;
        }
    }
    close(&y, &want, 1e-12);
    // the store names
    assert!(store.get("fc.weight").is_some() && store.get("fc.bias").is_some());
}

#[test]
fn equalized_linear_gradients() {
    let f = |t: &[Tensor]| {
        let l = EqualizedLinear {
            weight: t[1].clone(),
            bias: Some(t[2].clone()),
            weight_gain: 0.7,
            bias_gain: 0.01,
        };
        l.forward(&t[0])
    };
    let inputs = [
        rand_tensor(&[3, 4], 1),
        rand_tensor(&[5, 4], 2),
        rand_tensor(&[5], 3),
    ];
    let r = check_grad(f, &inputs, 1e-6).unwrap();
    assert!(r.max_err < 1e-6 && r.compared == 12 + 20 + 5, "{r:?}");
}

#[test]
fn equalized_conv_value_and_gradients() {
    let store = ParamStore::with_dtype(2, DType::F64);
    let l = EqualizedConv2d::new(
        &store.root().sub("conv"),
        4,
        2,
        3,
        Conv2dParams::same(3).with_groups(2),
        EqualizedConfig::default(),
    )
    .unwrap();
    assert_eq!(l.weight.shape(), [2, 2, 3, 3]);
    assert!((l.weight_gain - 1.0 / 18f64.sqrt()).abs() < 1e-15);
    let x = rand_tensor(&[1, 4, 5, 5], 4);
    let b = Tensor::from_f64s(&[0.3, -0.2], &[2], DType::F64).unwrap();
    l.bias.as_ref().unwrap().assign(&b).unwrap();
    let y = l.forward(&x).unwrap();
    let ws = l.weight.mul_scalar(l.weight_gain).unwrap();
    let want = x
        .conv2d(&ws, l.params)
        .unwrap()
        .add(&b.reshape(&[1, 2, 1, 1]).unwrap())
        .unwrap();
    close(&y.to_vec_f64().unwrap(), &want.to_vec_f64().unwrap(), 1e-12);

    let f = |t: &[Tensor]| {
        EqualizedConv2d {
            weight: t[1].clone(),
            bias: Some(t[2].clone()),
            weight_gain: 0.3,
            bias_gain: 2.0,
            params: Conv2dParams::same(3),
        }
        .forward(&t[0])
    };
    let inputs = [
        rand_tensor(&[1, 2, 4, 4], 5),
        rand_tensor(&[3, 2, 3, 3], 6),
        rand_tensor(&[3], 7),
    ];
    let r = check_grad(f, &inputs, 1e-6).unwrap();
    assert!(r.max_err < 1e-6, "{r:?}");
    // R1 differentiates through the layer twice
    let r = check_grad2(f, &inputs, 1e-5).unwrap();
    assert!(r.max_err < 1e-5, "{r:?}");
}

#[test]
fn plain_linear_and_conv() {
    let store = ParamStore::with_dtype(3, DType::F64);
    let l = Linear::new(&store.root().sub("head"), 10, 4, true).unwrap();
    let bound = 1.0 / 10f64.sqrt();
    assert!(
        l.weight
            .to_vec_f64()
            .unwrap()
            .iter()
            .all(|v| v.abs() <= bound)
    );
    assert!(
        l.bias
            .as_ref()
            .unwrap()
            .to_vec_f64()
            .unwrap()
            .iter()
            .all(|v| v.abs() <= bound)
    );
    let x = rand_tensor(&[2, 10], 1);
    let y = l.forward(&x).unwrap();
    let want = x
        .matmul(&l.weight.transpose(0, 1).unwrap())
        .unwrap()
        .add(l.bias.as_ref().unwrap())
        .unwrap();
    close(&y.to_vec_f64().unwrap(), &want.to_vec_f64().unwrap(), 1e-12);

    let c = Conv2d::new(
        &store.root().sub("stem"),
        2,
        4,
        3,
        Conv2dParams::same(3).with_stride(2),
        true,
    )
    .unwrap();
    let y = c.forward(&rand_tensor(&[1, 2, 6, 6], 2)).unwrap();
    assert_eq!(y.shape(), [1, 4, 3, 3]);
    let f = |t: &[Tensor]| {
        Conv2d {
            weight: t[1].clone(),
            bias: Some(t[2].clone()),
            params: Conv2dParams::same(3).with_stride(2),
        }
        .forward(&t[0])
    };
    let inputs = [
        rand_tensor(&[1, 2, 5, 5], 8),
        rand_tensor(&[2, 2, 3, 3], 9),
        rand_tensor(&[2], 10),
    ];
    assert!(check_grad(f, &inputs, 1e-6).unwrap().max_err < 1e-6);
    // channel/group mismatch is an error, not a panic
    assert!(
        Conv2d::new(
            &store.root().sub("bad"),
            3,
            4,
            3,
            Conv2dParams::same(3).with_groups(2),
            true
        )
        .is_err()
    );
}

#[test]
fn embedding_rows() {
    let store = ParamStore::with_dtype(3, DType::F64);
    let e = Embedding::new(&store.root().sub("emb"), 5, 3).unwrap();
    let w = e.weight.to_vec_f64().unwrap();
    let y = e.forward(&[4, 0]).unwrap().to_vec_f64().unwrap();
    assert_eq!(y, [&w[12..15], &w[0..3]].concat());
    assert!(e.forward(&[5]).is_err());
}

#[test]
fn dropout_and_drop_path() {
    let x = Tensor::ones(&[4, 2, 3, 3], DType::F64);
    let mut rng = StdRng::seed_from_u64(0);
    // eval: identity
    let d = Dropout::new(0.5).unwrap();
    assert_eq!(
        d.forward(&x, false, &mut rng)
            .unwrap()
            .to_vec_f64()
            .unwrap(),
        x.to_vec_f64().unwrap()
    );
    // train: values are 0 or 1/keep, mean about 1
    let big = Tensor::ones(&[20000], DType::F64);
    let y = d
        .forward(&big, true, &mut rng)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    assert!((mean - 1.0).abs() < 0.05, "{mean}");
    // drop path: whole samples, as timm (mask [N,1,1,1] scaled by 1/keep)
    let dp = DropPath::new(0.25).unwrap();
    let mask = dp.mask(&x, &mut rng).unwrap();
    assert_eq!(mask.shape(), [4, 1, 1, 1]);
    let y = dp
        .forward_with_mask(&x, &mask, true)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let m = mask.to_vec_f64().unwrap();
    for n in 0..4 {
        assert!(m[n] == 0.0 || (m[n] - 1.0 / 0.75).abs() < 1e-15);
        assert!(y[n * 18..(n + 1) * 18].iter().all(|&v| v == m[n]));
    }
    // an injected mask is used as given; eval ignores it
    let inj = Tensor::from_f64s(&[0.0, 2.0, 2.0, 0.0], &[4, 1, 1, 1], DType::F64).unwrap();
    let y = dp
        .forward_with_mask(&x, &inj, true)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    assert_eq!((y[0], y[18], y[54]), (0.0, 2.0, 0.0));
    let y = dp
        .forward_with_mask(&x, &inj, false)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    assert!(y.iter().all(|&v| v == 1.0));
    assert!(Dropout::new(1.5).is_err() && DropPath::new(-0.1).is_err());
    // p = 1 drops everything (no division by zero)
    let all = DropPath::new(1.0)
        .unwrap()
        .forward(&x, true, &mut rng)
        .unwrap();
    assert!(all.to_vec_f64().unwrap().iter().all(|&v| v == 0.0));
}
