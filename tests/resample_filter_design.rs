//! StyleGAN3 low-pass design against SciPy. The constants were computed with SciPy 1.17.1
//! (numpy 2.4) in a scratch venv: `scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)`,
//! `scipy.special.j1`, `scipy.special.i0`, and StyleGAN3's radial formula
//! (`j1(2·cutoff·π·r)/(π·r)` × outer Kaiser windows, normalised) evaluated with numpy.

// The constants are pasted verbatim from SciPy's repr (17 significant digits).
#![allow(clippy::excessive_precision)]

use brainsynth::DType;
use brainsynth::ops::filter_design::{
    bessel_i0, bessel_j1, design_lowpass_filter, firwin_kaiser, kaiser_atten, kaiser_beta,
    radial_lowpass,
};

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1e-3),
            "at {i}: {x} vs {y}"
        );
    }
}

#[test]
fn firwin_matches_scipy() {
    // firwin(12, 8.0, width=6.0, fs=32.0)
    let h = firwin_kaiser(12, 8.0, 6.0, 32.0).unwrap();
    close(
        &h[..6],
        &[
            0.00767645586850385,
            0.01846192518542642,
            -0.03657716603846909,
            -0.06816288218480221,
            0.13561485308234558,
            0.4429868140869955,
        ],
        1e-12,
    );
    close(
        &h[6..],
        &[
            0.4429868140869955,
            0.13561485308234558,
            -0.06816288218480221,
            -0.03657716603846909,
            0.01846192518542642,
            0.00767645586850385,
        ],
        1e-12,
    );
    // firwin(7, 3.1, width=2.5, fs=16.0): odd length, β = 0 branch
    let h = firwin_kaiser(7, 3.1, 2.5, 16.0).unwrap();
    close(
        &h,
        &[
            -0.04553203721804387,
            0.0932485432546643,
            0.2737424731956488,
            0.35708204153546136,
            0.2737424731956488,
            0.0932485432546643,
            -0.04553203721804387,
        ],
        1e-12,
    );
    // firwin(24, 11.3137, width=9.5, fs=64.0), first 6 and centre taps
    let h = firwin_kaiser(24, 11.3137, 9.5, 64.0).unwrap();
    close(
        &[h[0], h[1], h[2], h[3], h[4], h[5], h[11]],
        &[
            1.5689053697255236e-04,
            -1.6898348729792779e-03,
            -4.0667323039033088e-03,
            -1.3355831467741741e-04,
            1.2091668062532351e-02,
            1.7239190170693308e-02,
            3.3429326842452350e-01,
        ],
        1e-10,
    );
}

#[test]
fn bessel_functions_match_scipy() {
    for (x, j1, i0) in [
        (0.5, 0.24226845767487387, 1.0634833707413234),
        (3.0, 0.33905895852593654, 4.880792585865024),
        (12.5, -0.16548380461475956, 30596.335155785157),
        (40.0, 0.126038318037585, 1.48947747934199e16),
    ] {
        assert!(
            (bessel_j1(x) - j1).abs() < 1e-14,
            "j1({x}) = {}",
            bessel_j1(x)
        );
        assert!(
            (bessel_i0(x) / i0 - 1.0).abs() < 1e-13,
            "i0({x}) = {}",
            bessel_i0(x)
        );
    }
    assert!(bessel_j1(0.0).abs() < 1e-15);
    // scipy kaiser_beta(kaiser_atten(12, 5/16)) for the radial case below
    let beta = kaiser_beta(kaiser_atten(12, 5.0 / 16.0));
    assert!((beta - 2.4754530793256904).abs() < 1e-13, "{beta}");
}

#[test]
fn radial_filter_matches_numpy() {
    // numtaps 12, cutoff 10, width 5, fs 32
    let f = radial_lowpass(12, 10.0, 5.0, 32.0).unwrap();
    assert_eq!(f.len(), 144);
    close(
        &f[..4],
        &[
            0.00074097366724316,
            0.00084368489089251,
            -0.00110852441268622,
            -0.00305065647500921,
        ],
        1e-11,
    );
    close(
        &[f[5 * 12 + 5], f[3 * 12 + 7]],
        &[0.2374536580416455, -0.02649347437336073],
        1e-11,
    );
    // odd size: the centre takes the jinc's limit instead of NaN
    let f = radial_lowpass(5, 4.0, 3.0, 16.0).unwrap();
    assert!(f.iter().all(|v| v.is_finite()));
    assert!((f.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

#[test]
fn design_lowpass_filter_wraps_and_validates() {
    assert!(
        design_lowpass_filter(1, 8.0, 6.0, 32.0, false, DType::F32)
            .unwrap()
            .is_none()
    );
    let f = design_lowpass_filter(12, 8.0, 6.0, 32.0, false, DType::F32)
        .unwrap()
        .unwrap();
    assert_eq!((f.shape(), f.dtype()), (&[12usize][..], DType::F32));
    assert!((f.to_vec_f64().unwrap()[5] - 0.4429868140869955).abs() < 1e-7);
    let f = design_lowpass_filter(12, 10.0, 5.0, 32.0, true, DType::F64)
        .unwrap()
        .unwrap();
    assert_eq!(f.shape(), &[12, 12]);
    for bad in [
        (0, 8.0, 6.0, 32.0),
        (12, 16.0, 6.0, 32.0),
        (12, 0.0, 6.0, 32.0),
        (12, 8.0, 0.0, 32.0),
    ] {
        let e = design_lowpass_filter(bad.0, bad.1, bad.2, bad.3, false, DType::F32).unwrap_err();
        assert!(e.to_string().contains("design_lowpass_filter"), "{e}");
    }
}
