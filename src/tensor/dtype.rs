//! Element types. f32 is the working type; f64 exists on the CPU so gradient checks can be tight.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }
}

/// The scalar operations every CPU kernel is written against, so one generic kernel serves f32 and f64.
pub trait Float:
    Copy
    + Send
    + Sync
    + 'static
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    const DTYPE: DType;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn zero() -> Self;
    fn one() -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn powf(self, p: Self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn erf(self) -> Self;
    fn max(self, o: Self) -> Self;
    fn min(self, o: Self) -> Self;
    fn is_finite(self) -> bool;
    fn floor(self) -> Self;
}

macro_rules! impl_float {
    ($t:ty, $d:expr, $exp:path, $erf:path) => {
        impl Float for $t {
            const DTYPE: DType = $d;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn zero() -> Self {
                0.0
            }
            #[inline(always)]
            fn one() -> Self {
                1.0
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn max(self, o: Self) -> Self {
                <$t>::max(self, o)
            }
            #[inline(always)]
            fn min(self, o: Self) -> Self {
                <$t>::min(self, o)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
        }
    };
}
impl_float!(f32, DType::F32, exp_f32, erf_f32);
impl_float!(f64, DType::F64, f64::exp, erf_f64);

/// c[0] + c[1]·x + … + c[9]·x⁹ by Estrin's scheme: the same operations as Horner's rule in a
/// shallower dependency chain (about 4 multiply-adds deep instead of 9), which is what limits a
/// vectorized loop over it.
#[inline(always)]
fn poly9(x: f32, c: [f32; 10]) -> f32 {
    let x2 = x * x;
    let x4 = x2 * x2;
    let x8 = x4 * x4;
    let p01 = c[0] + c[1] * x;
    let p23 = c[2] + c[3] * x;
    let p45 = c[4] + c[5] * x;
    let p67 = c[6] + c[7] * x;
    let p89 = c[8] + c[9] * x;
    (p01 + p23 * x2) + (p45 + p67 * x2) * x4 + p89 * x8
}

/// e^x in f32 without a library call, so loops over it vectorize: x = n·ln2 + r with
/// n = ⌊x·log2 e⌋ and r in [0, ln 2), e^r by its Taylor series to r⁹ (truncation < 1e-8
/// relative), 2ⁿ built in the exponent bits. Relative error a few ulp (tested against f64);
/// overflow gives +inf, results below f32's normal range give 0, NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so n·LN2_HI is exact for |n| < 2^9
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // adding 1.5·2²³ rounds v (|v| < 2²²) to an integer that sits in the low mantissa bits
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.336_55, 88.722_83);
    let v = xc * LOG2E;
    let t = v + MAGIC;
    let rn = t - MAGIC;
    // ⌊v⌋: one step down where rounding went up (no floorf call, no float-to-int conversion)
    let down = rn > v;
    let n = if down { rn - 1.0 } else { rn };
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000) - i32::from(down);
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = poly9(
        r,
        [
            1.0,
            1.0,
            0.5,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
            1.0 / 5_040.0,
            1.0 / 40_320.0,
            1.0 / 362_880.0,
        ],
    );
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    let y = p * scale;
    if x > 88.722_83 {
        f32::INFINITY
    } else if x < -87.336_55 {
        0.0
    } else {
        y
    }
}

/// The error function in f32 without a library call (exact GELU evaluates it for every
/// activation): below 0.5 its Maclaurin series to x¹⁹, beyond 1 − erfc with the
/// Chebyshev-fitted erfc of Numerical Recipes (fractional error < 1.2e-7) and [`exp_f32`].
/// Both branches are computed and one selected, so loops over it vectorize.
// the coefficients are written as published
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let z = x.abs();
    let z2 = z * z;
    // series: 2/√π · Σ (−1)ⁿ z^(2n+1) / (n! (2n+1)), as z · poly(z²)
    let s = poly9(
        z2,
        [
            1.0,
            -1.0 / 3.0,
            1.0 / (2.0 * 5.0),
            -1.0 / (6.0 * 7.0),
            1.0 / (24.0 * 9.0),
            -1.0 / (120.0 * 11.0),
            1.0 / (720.0 * 13.0),
            -1.0 / (5040.0 * 15.0),
            1.0 / (40_320.0 * 17.0),
            -1.0 / (362_880.0 * 19.0),
        ],
    );
    let small = std::f32::consts::FRAC_2_SQRT_PI * z * s;
    let t = 1.0 / (1.0 + 0.5 * z);
    let q = poly9(
        t,
        [
            -1.265_512_23,
            1.000_023_68,
            0.374_091_96,
            0.096_784_18,
            -0.186_288_06,
            0.278_868_07,
            -1.135_203_98,
            1.488_515_87,
            -0.822_152_23,
            0.170_872_77,
        ],
    );
    let large = 1.0 - t * exp_f32(q - z2);
    let r = if z < 0.5 { small } else { large };
    if x < 0.0 { -r } else { r }
}

/// The error function to f64 precision (std has none): an all-positive series for |x| < 3
/// (no cancellation) and a continued fraction for erfc beyond.
pub fn erf_f64(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        // erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n x^(2n+1) 2^n / (1*3*...*(2n+1))
        let x2 = a * a;
        let mut term = a;
        let mut sum = a;
        let mut n = 0.0;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        std::f64::consts::FRAC_2_SQRT_PI * (-x2).exp() * sum
    } else if a < 6.5 {
        // erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        let mut t = a;
        for k in (1..80).rev() {
            t = a + (k as f64 / 2.0) / t;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / t
    } else {
        1.0
    };
    if x < 0.0 { -r } else { r }
}

#[cfg(test)]
mod tests {
    use super::{erf_f32, erf_f64, exp_f32};

    #[test]
    fn exp_f32_is_within_a_few_ulp_of_f64() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.5 {
            let want = (x as f64).exp();
            let rel = ((exp_f32(x) as f64) - want).abs() / want;
            worst = worst.max(rel);
            x += 0.001_37;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn erf_f32_is_within_f32_precision_of_f64() {
        let (mut worst_abs, mut worst_rel) = (0f64, 0f64);
        let mut x = -6.0f32;
        while x < 6.0 {
            let want = erf_f64(x as f64);
            let err = ((erf_f32(x) as f64) - want).abs();
            worst_abs = worst_abs.max(err);
            if want.abs() > 1e-30 {
                worst_rel = worst_rel.max(err / want.abs());
            }
            x += 0.000_73;
        }
        assert!(worst_abs < 3e-7, "worst absolute error {worst_abs}");
        assert!(worst_rel < 1e-6, "worst relative error {worst_rel}");
        assert_eq!(erf_f32(0.0), 0.0);
        assert_eq!(erf_f32(f32::INFINITY), 1.0);
        assert_eq!(erf_f32(f32::NEG_INFINITY), -1.0);
        assert!(erf_f32(f32::NAN).is_nan());
    }

    #[test]
    fn erf_matches_known_values() {
        // Values from tables of the error function (15 significant digits).
        let cases = [
            (0.0, 0.0),
            (0.5, 0.520499877813047),
            (1.0, 0.842700792949715),
            (2.0, 0.995322265018953),
            (2.9, 0.999958902121802),
            (3.5, 0.999999256901628),
            (-1.0, -0.842700792949715),
        ];
        for (x, want) in cases {
            assert!(
                (erf_f64(x) - want).abs() < 1e-13,
                "erf({x}) = {} want {want}",
                erf_f64(x)
            );
        }
    }
}
