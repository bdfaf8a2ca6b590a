//! Losses and GAN regularisers: cross-entropy against PyTorch and by hand (class weights, ignore
//! index), Dice values, one-hot, GAN losses, and the gradient penalties: their values against
//! closed forms for linear networks, and their derivatives w.r.t. the network parameters by
//! finite differences (grad of grad: that is what makes them regularisers).

#[allow(dead_code)]
#[path = "common/fixtures.rs"]
mod fixtures;

use brainsynth::autograd::{grad, set_grad_enabled};
use brainsynth::ops::loss::{
    DiceOptions, cross_entropy, logistic_d_loss, logistic_g_loss, mse_loss, one_hot,
    path_length_penalty, r1_penalty, r1_penalty_with, soft_dice_loss, wgan_d_loss, wgan_drift,
    wgan_g_loss, wgan_gp_penalty, wgan_gp_penalty_with,
};
use brainsynth::testing::{check_grad, rand_tensor, rand_vals};
use brainsynth::{DType, Error, Result, Tensor};

fn f64t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_f64s(v, shape, DType::F64).unwrap()
}

fn ok1(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let r = check_grad(f, inputs, 1e-6).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(r.compared > 0, "{name}: nothing compared");
    assert!(r.max_err < 1e-6, "{name}: max error {:.3e}", r.max_err);
}

fn close(name: &str, a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{name}: {a} vs {b}");
}

#[test]
fn cross_entropy_matches_pytorch() {
    let fx = fixtures::load("loss.bin");
    let get = |n: &str| {
        let a = fixtures::get(&fx, n);
        f64t(&a.f64s(), &a.shape)
    };
    // [N, C, H, W] logits, tensor targets with ignore index 255, class weights
    let logits = get("ce_logits").variable();
    let target = get("ce_target");
    let w = get("ce_weight").to_vec_f64().unwrap();
    let loss = cross_entropy(&logits, &target, Some(&w), Some(255)).unwrap();
    close(
        "ce",
        loss.item().unwrap(),
        get("ce_loss").item().unwrap(),
        1e-6,
    );
    let g = grad(&[loss], None, std::slice::from_ref(&logits), false).unwrap();
    let want = get("ce_grad").to_vec_f64().unwrap();
    for (a, b) in g[0].to_vec_f64().unwrap().iter().zip(want) {
        close("ce grad", *a, b, 1e-6);
    }
    // [N, C] logits, id targets, no weights
    let logits = get("ce2_logits").variable();
    let ids: Vec<usize> = get("ce2_target")
        .to_vec_f64()
        .unwrap()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let loss = cross_entropy(&logits, &ids, None, None).unwrap();
    close(
        "ce2",
        loss.item().unwrap(),
        get("ce2_loss").item().unwrap(),
        1e-6,
    );
    let g = grad(&[loss], None, std::slice::from_ref(&logits), false).unwrap();
    for (a, b) in g[0]
        .to_vec_f64()
        .unwrap()
        .iter()
        .zip(get("ce2_grad").to_vec_f64().unwrap())
    {
        close("ce2 grad", *a, b, 1e-6);
    }
}

#[test]
fn cross_entropy_by_hand_with_weights_and_ignore() {
    let rows = [[1.0, 2.0, 0.5], [0.1, 0.2, 3.0], [2.0, 2.0, 2.0]];
    let logits = f64t(&rows.concat(), &[3, 3]);
    let w = [1.0, 2.0, 0.5];
    let nll = |r: &[f64; 3], y: usize| {
        let z: f64 = r.iter().map(|v| v.exp()).sum();
        z.ln() - r[y]
    };
    let want = (0.5 * nll(&rows[0], 2) + 2.0 * nll(&rows[1], 1)) / (0.5 + 2.0);
    let got = cross_entropy(&logits, &[2usize, 1, 7][..], Some(&w), Some(7))
        .unwrap()
        .item()
        .unwrap();
    close("weighted ce", got, want, 1e-12);
    // every target ignored: an error, not NaN
    assert!(cross_entropy(&logits, &[7usize, 7, 7][..], None, Some(7)).is_err());
}

#[test]
fn one_hot_and_dice_values() {
    let labels = f64t(&[0.0, 2.0, 1.0, 2.0], &[1, 2, 2]);
    let oh = one_hot(&labels, 3).unwrap();
    assert_eq!(oh.shape(), [1, 3, 2, 2]);
    assert_eq!(
        oh.to_vec_f64().unwrap(),
        [1., 0., 0., 0., 0., 0., 1., 0., 0., 1., 0., 1.]
    );
    // perfect prediction: loss 0, with and without background, batch or per sample
    for batch_dice in [false, true] {
        for include_background in [false, true] {
            let o = DiceOptions {
                batch_dice,
                include_background,
                ..DiceOptions::default()
            };
            let l = soft_dice_loss(&oh, &oh, &o).unwrap().item().unwrap();
            assert!(l.abs() < 1e-9, "perfect dice loss {l}");
        }
    }
    // by hand: class 1 has tp 0.7, Σp 0.9, Σy 1
    let p = f64t(&[0.8, 0.3, 0.2, 0.7], &[1, 2, 1, 2]);
    let y = f64t(&[1.0, 0.0, 0.0, 1.0], &[1, 2, 1, 2]);
    let o = DiceOptions {
        smooth: 0.0,
        ..DiceOptions::default()
    };
    let l = soft_dice_loss(&p, &y, &o).unwrap().item().unwrap();
    close("dice", l, 1.0 - 1.4 / 1.9, 1e-12);
    // explicit classes: background only, tp 0.8, Σp 1.1, Σy 1
    let o = DiceOptions {
        smooth: 0.0,
        classes: Some(vec![0]),
        ..DiceOptions::default()
    };
    let l = soft_dice_loss(&p, &y, &o).unwrap().item().unwrap();
    close("dice bg", l, 1.0 - 1.6 / 2.1, 1e-12);
}

#[test]
fn gan_losses_values() {
    let fake = f64t(&[0.5, -1.0], &[2, 1]);
    let real = f64t(&[2.0, 0.0], &[2, 1]);
    let sp = |x: f64| (1.0 + x.exp()).ln();
    close(
        "g",
        logistic_g_loss(&fake).unwrap().item().unwrap(),
        (sp(-0.5) + sp(1.0)) / 2.0,
        1e-12,
    );
    close(
        "d",
        logistic_d_loss(&fake, &real).unwrap().item().unwrap(),
        (sp(0.5) + sp(-1.0)) / 2.0 + (sp(-2.0) + sp(0.0)) / 2.0,
        1e-12,
    );
    close(
        "wg",
        wgan_g_loss(&fake).unwrap().item().unwrap(),
        0.25,
        1e-12,
    );
    close(
        "wd",
        wgan_d_loss(&fake, &real).unwrap().item().unwrap(),
        -0.25 - 1.0,
        1e-12,
    );
    close(
        "drift",
        wgan_drift(&real, 0.001).unwrap().item().unwrap(),
        0.001 * 2.0,
        1e-12,
    );
}

#[test]
fn loss_first_order_gradients() {
    ok1(
        "mse",
        |x| mse_loss(&x[0], &x[1]),
        &[rand_tensor(&[2, 3], 1), rand_tensor(&[2, 3], 2)],
    );
    let ids: Vec<usize> = vec![0, 3, 1, 2, 3, 0, 9, 1, 2, 2, 1, 0];
    ok1(
        "cross_entropy",
        |x| cross_entropy(&x[0], &ids, Some(&[0.3, 1.0, 2.0, 0.5]), Some(9)),
        &[rand_tensor(&[2, 4, 2, 3], 3)],
    );
    let labels = f64t(&[0.0, 1.0, 2.0, 2.0, 1.0, 1.0, 0.0, 2.0], &[2, 2, 2]);
    let target = one_hot(&labels, 3).unwrap();
    for batch_dice in [false, true] {
        ok1(
            "soft_dice",
            |x| {
                soft_dice_loss(
                    &x[0].softmax(1)?,
                    &target,
                    &DiceOptions {
                        batch_dice,
                        ..DiceOptions::default()
                    },
                )
            },
            &[rand_tensor(&[2, 3, 2, 2], 4)],
        );
    }
    ok1(
        "logistic",
        |x| logistic_d_loss(&x[0], &x[1])?.add(&logistic_g_loss(&x[0])?),
        &[rand_tensor(&[3, 1], 5), rand_tensor(&[3, 1], 6)],
    );
    ok1(
        "wgan",
        |x| {
            wgan_d_loss(&x[0], &x[1])?
                .add(&wgan_drift(&x[1], 0.001)?)?
                .add(&wgan_g_loss(&x[0])?)
        },
        &[rand_tensor(&[3, 1], 7), rand_tensor(&[3, 1], 8)],
    );
}

/// Tiny discriminator on images [N, 1, 2, 2]: linear(4 → 3) → leaky ReLU(0.2) → linear(3 → 1).
fn tiny_d(x: &Tensor, p: &[Tensor]) -> Result<Tensor> {
    x.reshape(&[x.shape()[0], 4])?
        .linear(&p[0], Some(&p[1]))?
        .leaky_relu(0.2)?
        .linear(&p[2], Some(&p[3]))
}

fn tiny_d_params(seed: u64) -> Vec<Tensor> {
    vec![
        rand_tensor(&[3, 4], seed),
        rand_tensor(&[3], seed + 1),
        rand_tensor(&[1, 3], seed + 2),
        rand_tensor(&[1], seed + 3),
    ]
}

#[test]
fn r1_of_linear_discriminator_is_half_gamma_weight_norm_squared() {
    // D(x) = w·x + b has ∂D/∂x = w for every sample: R1 = γ/2 · ‖w‖²
    let w = rand_tensor(&[1, 4], 10).variable();
    let b = rand_tensor(&[1], 11);
    let reals = rand_tensor(&[3, 1, 2, 2], 12).variable();
    let d = reals
        .reshape(&[3, 4])
        .unwrap()
        .linear(&w, Some(&b))
        .unwrap();
    let r1 = r1_penalty(&d, &reals, 10.0).unwrap();
    let wn2: f64 = w.to_vec_f64().unwrap().iter().map(|v| v * v).sum();
    close("r1", r1.item().unwrap(), 5.0 * wn2, 1e-12);
    // and ∂R1/∂w = γ·w
    let g = grad(&[r1], None, std::slice::from_ref(&w), false).unwrap();
    for (a, b) in g[0]
        .to_vec_f64()
        .unwrap()
        .iter()
        .zip(w.to_vec_f64().unwrap())
    {
        close("dR1/dw", *a, 10.0 * b, 1e-12);
    }
    // reals not tracked: an error, not a silent zero
    let untracked = rand_tensor(&[3, 1, 2, 2], 12);
    let d = untracked
        .reshape(&[3, 4])
        .unwrap()
        .linear(&w, Some(&b))
        .unwrap();
    assert!(matches!(
        r1_penalty(&d, &untracked, 10.0),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn r1_is_differentiable_wrt_discriminator_weights() {
    let reals = rand_tensor(&[3, 1, 2, 2], 20);
    ok1(
        "r1 wrt D params",
        |p| r1_penalty_with(&reals, 10.0, |x| tiny_d(x, p)),
        &tiny_d_params(21),
    );
}

#[test]
fn wgan_gp_values_and_parameter_gradients() {
    // linear critic: ‖∇‖ = ‖w‖ for every sample → λ(‖w‖ − 1)²
    let w = rand_tensor(&[1, 4], 30);
    let x = rand_tensor(&[2, 1, 2, 2], 31).variable();
    let d = x.reshape(&[2, 4]).unwrap().linear(&w, None).unwrap();
    let norm: f64 = w
        .to_vec_f64()
        .unwrap()
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt();
    let gp = wgan_gp_penalty(&d, &x, 10.0, 1.0).unwrap().item().unwrap();
    close("gp", gp, 10.0 * (norm - 1.0).powi(2), 1e-12);
    // interpolates between reals and fakes; derivatives w.r.t. the critic's weights
    let real = rand_tensor(&[3, 1, 2, 2], 32);
    let fake = rand_tensor(&[3, 1, 2, 2], 33);
    let alpha = f64t(&[0.2, 0.5, 0.9], &[3, 1, 1, 1]);
    let mixed = real.lerp(&fake, &alpha).unwrap();
    ok1(
        "wgan-gp wrt D params",
        |p| wgan_gp_penalty_with(&mixed, 10.0, 1.0, |x| tiny_d(x, p)),
        &tiny_d_params(34),
    );
}

/// Tiny synthesis: img = act(ws_flat · A) as [N, 1, 2, 3] (ws [N, 2, 3], A [6, 6]).
fn tiny_g(ws: &Tensor, a: &Tensor, nonlinear: bool) -> Result<Tensor> {
    let y = ws.reshape(&[ws.shape()[0], 6])?.matmul(a)?;
    let y = if nonlinear { y.tanh()? } else { y };
    y.reshape(&[ws.shape()[0], 1, 2, 3])
}

#[test]
fn path_length_penalty_matches_closed_form_for_linear_synthesis() {
    let (n, a_vals) = (2, rand_vals(36, 40));
    let a = f64t(&a_vals, &[6, 6]);
    let ws = rand_tensor(&[n, 2, 3], 41).variable();
    let noise = rand_tensor(&[n, 1, 2, 3], 42);
    let img = tiny_g(&ws, &a, false).unwrap();
    let (pen, new_mean) = path_length_penalty(&img, &ws, &noise, 0.5, 0.01, 2.0).unwrap();
    // ∂Σ(img·ñ)/∂ws[n] = A · ñ[n] with ñ = noise / √(H·W)
    let nv = noise.to_vec_f64().unwrap();
    let s = 1.0 / 6f64.sqrt();
    let lengths: Vec<f64> = (0..n)
        .map(|b| {
            let g: Vec<f64> = (0..6)
                .map(|i| (0..6).map(|j| a_vals[i * 6 + j] * nv[b * 6 + j] * s).sum())
                .collect();
            // mean over the 2 ws of the squared norm over w_dim 3
            ((g[..3].iter().map(|v| v * v).sum::<f64>()
                + g[3..].iter().map(|v| v * v).sum::<f64>())
                / 2.0)
                .sqrt()
        })
        .collect();
    let mean_len = lengths.iter().sum::<f64>() / n as f64;
    let m = 0.5 + 0.01 * (mean_len - 0.5);
    close("pl_mean", new_mean, m, 1e-12);
    let want = 2.0 * lengths.iter().map(|l| (l - m).powi(2)).sum::<f64>() / n as f64;
    close("pl penalty", pen.item().unwrap(), want, 1e-12);
}

#[test]
fn path_length_penalty_is_differentiable_wrt_generator_weights() {
    let ws0 = rand_tensor(&[2, 2, 3], 50);
    let noise = rand_tensor(&[2, 1, 2, 3], 51);
    ok1(
        "path length wrt G params",
        |p| {
            // check_grad evaluates f under no_grad; synthesis must be recorded for the penalty
            let _mode = set_grad_enabled(true);
            let ws = ws0.variable();
            let img = tiny_g(&ws, &p[0], true)?;
            Ok(path_length_penalty(&img, &ws, &noise, 0.3, 0.01, 2.0)?.0)
        },
        &[rand_tensor(&[6, 6], 52)],
    );
}

#[test]
fn errors_name_the_op() {
    let expect = |r: Result<Tensor>, op: &str| match r {
        Err(e @ (Error::Shape { .. } | Error::Invalid { .. })) => {
            assert!(e.to_string().starts_with(op), "{e}")
        }
        other => panic!("{op}: expected an error, got {other:?}"),
    };
    let logits = rand_tensor(&[2, 3], 1);
    expect(mse_loss(&logits, &rand_tensor(&[3, 2], 1)), "mse_loss");
    expect(
        cross_entropy(&logits, &[0usize][..], None, None),
        "cross_entropy",
    );
    expect(
        cross_entropy(&logits, &[0usize, 3][..], None, None),
        "cross_entropy",
    );
    expect(
        cross_entropy(&logits, &[0usize, 1][..], Some(&[1.0]), None),
        "cross_entropy",
    );
    expect(
        cross_entropy(&logits, &f64t(&[0.5, 1.0], &[2]), None, None),
        "cross_entropy",
    );
    expect(one_hot(&f64t(&[3.0], &[1]), 3), "one_hot");
    let p = rand_tensor(&[1, 2, 2, 2], 1);
    expect(
        soft_dice_loss(&p, &rand_tensor(&[1, 3, 2, 2], 1), &DiceOptions::default()),
        "soft_dice_loss",
    );
    expect(
        soft_dice_loss(
            &p,
            &p,
            &DiceOptions {
                classes: Some(vec![2]),
                ..DiceOptions::default()
            },
        ),
        "soft_dice_loss",
    );
    let ws = rand_tensor(&[2, 6], 1).variable();
    let img = ws.reshape(&[2, 1, 2, 3]).unwrap();
    expect(
        path_length_penalty(&img, &ws, &rand_tensor(&[2, 1, 2, 3], 2), 0.0, 0.01, 2.0).map(|r| r.0),
        "path_length_penalty",
    );
}
