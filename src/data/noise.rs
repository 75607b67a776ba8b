//! The pixel noise: a standard normal value per channel (Box-Muller, from two values of the
//! clip's stream), a row at a time, vectorised.
//!
//! The noise was nine tenths of the time a clip took to make: 921,600 normal values per clip,
//! each a logarithm and a cosine of the platform's maths library, one at a time. Here the stream
//! is read ahead ([`Rng::peek`]: no state passes from value to value), and the logarithm and the
//! cosine are branch-free polynomials (fdlibm's minimax coefficients, within an ulp or two of the
//! library's), so that the compiler runs eight values per instruction on AVX-512 and four on AVX2.
//! Every path computes the same bits (no fused multiply-adds: Rust never contracts), and the
//! values differ from the scalar library formula by a few ulps of f64 at most: the clips, rounded
//! to f32, are those the library made (tested).

// fdlibm's constants, digit for digit as published (more digits than an f64 holds).
#![allow(clippy::excessive_precision)]

use std::f64::consts::{FRAC_2_PI, PI, SQRT_2};

use kcp_runtime::{Isa, Rng};

use super::{uniform_of, Pixel, NOISE};

/// `out[i] = clamp(clean[i] + NOISE * z_i, 0, 1)` for the next `clean.len()` standard normal
/// values z_i of `rng` (two calls each), rounded to f32 and stored as `P`; `rng` moves past
/// them.
///
/// # Panics
/// If `out` is shorter than `clean`.
pub(super) fn add_noise<P: Pixel>(clean: &[f64], rng: &mut Rng, out: &mut [P]) {
    let out = &mut out[..clean.len()];
    add_noise_on(kcp_runtime::isa(), clean, rng, out);
    rng.skip(2 * clean.len() as u64);
}

/// [`add_noise`] on the path `isa` (the CPU must have it), `rng` left where it is.
fn add_noise_on<P: Pixel>(isa: Isa, clean: &[f64], rng: &Rng, out: &mut [P]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        // SAFETY: each path runs only where the CPU has its features.
        match isa {
            Isa::Avx512 if has!("avx512f") && has!("avx512dq") => return unsafe { avx512(clean, rng, out) },
            Isa::Avx512 | Isa::Avx2 if has!("avx2") && has!("fma") => return unsafe { avx2(clean, rng, out) },
            _ => {}
        }
    }
    let _ = isa;
    noisy(clean, rng, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn avx512<P: Pixel>(clean: &[f64], rng: &Rng, out: &mut [P]) {
    noisy(clean, rng, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2<P: Pixel>(clean: &[f64], rng: &Rng, out: &mut [P]) {
    noisy(clean, rng, out);
}

/// The loop every path compiles: no state from one value to the next.
#[inline(always)]
fn noisy<P: Pixel>(clean: &[f64], rng: &Rng, out: &mut [P]) {
    for (i, (o, &c)) in out.iter_mut().zip(clean).enumerate() {
        let z = normal(rng.peek(2 * i as u64), rng.peek(2 * i as u64 + 1));
        *o = P::store((c + NOISE * z).clamp(0.0, 1.0) as f32);
    }
}

/// The Box-Muller normal of two random words: `sqrt(-2 ln u) cos(2 pi v)`, u uniform in
/// [eps, 1), v in [0, 1).
#[inline(always)]
fn normal(a: u64, b: u64) -> f64 {
    let u = uniform_of(a, f64::EPSILON, 1.0);
    let v = uniform_of(b, 0.0, 1.0);
    (-2.0 * ln(u)).sqrt() * cos(2.0 * PI * v)
}

/// Natural logarithm of a positive normal `x` (fdlibm's method: `x = 2^k (1 + f)` with `1 + f` in
/// [sqrt(2)/2, sqrt(2)), and a minimax polynomial in `s = f / (2 + f)`).
#[inline(always)]
fn ln(x: f64) -> f64 {
    const LG: [f64; 7] = [
        6.666666666666735130e-01,
        3.999999999940941908e-01,
        2.857142874366239149e-01,
        2.222219843214978396e-01,
        1.818357216161805012e-01,
        1.531383769920937332e-01,
        1.479819860511658591e-01,
    ];
    // ln 2 split so that k * LN2_HI is exact.
    const LN2_HI: f64 = 6.93147180369123816490e-01;
    const LN2_LO: f64 = 1.90821492927058770002e-10;
    const MANTISSA: u64 = (1 << 52) - 1;
    let bits = x.to_bits();
    let m = f64::from_bits((bits & MANTISSA) | (1023 << 52));
    let high = m > SQRT_2;
    let m = if high { 0.5 * m } else { m };
    let k = ((bits >> 52) as i64 - 1023 + i64::from(high)) as f64;
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG[1] + w * (LG[3] + w * LG[5]));
    let t2 = z * (LG[0] + w * (LG[2] + w * (LG[4] + w * LG[6])));
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + (t1 + t2)) + k * LN2_LO)) - f)
}

/// Cosine of `x` in [0, 2 pi] (well, any |x| up to a few pi): reduced by the nearest multiple
/// of pi/2, then fdlibm's sine or cosine kernel on [-pi/4, pi/4].
#[inline(always)]
fn cos(x: f64) -> f64 {
    // pi/2 in two parts: the first's 33 bits times a small k are exact.
    const PIO2_HI: f64 = 1.57079632673412561417e+00;
    const PIO2_LO: f64 = 6.07710050650619224932e-11;
    const C: [f64; 6] = [
        4.16666666666666019037e-02,
        -1.38888888888741095749e-03,
        2.48015872894767294178e-05,
        -2.75573143513906633035e-07,
        2.08757232129817482790e-09,
        -1.13596475577881948265e-11,
    ];
    const S: [f64; 6] = [
        -1.66666666666666324348e-01,
        8.33333333332248946124e-03,
        -1.98412698298579493134e-04,
        2.75573137070700676789e-06,
        -2.50507602534068634195e-08,
        1.58969099521155010221e-10,
    ];
    let k = (x * FRAC_2_PI + 0.5).floor();
    let r = (x - k * PIO2_HI) - k * PIO2_LO;
    let z = r * r;
    let w = z * z;
    let cr = z * (C[0] + z * (C[1] + z * C[2])) + w * w * (C[3] + z * (C[4] + z * C[5]));
    let hz = 0.5 * z;
    let one_hz = 1.0 - hz;
    let cos_r = one_hz + (((1.0 - one_hz) - hz) + z * cr);
    let sr = S[1] + z * (S[2] + z * S[3]) + z * w * (S[4] + z * S[5]);
    let sin_r = r + z * r * (S[0] + z * sr);
    // cos(r + k pi/2): cos r, -sin r, -cos r, sin r. (k's low bits through the mantissa of
    // k + 2^52: `as i64` saturates, and its checks would not vectorise.)
    let quadrant = (k + 4_503_599_627_370_496.0).to_bits() & 3;
    let value = if quadrant & 1 == 0 { cos_r } else { sin_r };
    if quadrant == 1 || quadrant == 2 {
        -value
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance from `a` to `b` in units of b's last place.
    fn ulps(a: f64, b: f64) -> f64 {
        (a - b).abs() / (b.abs().max(f64::MIN_POSITIVE) * f64::EPSILON)
    }

    /// The logarithm is within an ulp or two of the library's over the noise's whole range,
    /// exponents from 2^-52 up.
    #[test]
    fn ln_is_within_two_ulps() {
        let mut rng = Rng::new(1);
        for k in 0..200_000 {
            let x = match k % 3 {
                0 => uniform_of(rng.next_u64(), f64::EPSILON, 1.0),
                1 => (rng.next_f64() + 1.0).exp2() * 2f64.powi(-(k % 53)),
                _ => 1.0 + rng.next_f64() * 1e-6,
            };
            let (got, want) = (ln(x), x.ln());
            assert!(ulps(got, want) <= 2.0 || (got - want).abs() < 1e-300, "ln {x}: {got} vs {want}");
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(f64::EPSILON), f64::EPSILON.ln());
    }

    /// The cosine is within 2e-16 of the library's on [0, 2 pi), the quarter turns included.
    #[test]
    fn cos_is_within_an_ulp_of_one() {
        let mut rng = Rng::new(2);
        let turns = (0..=4).map(|q| q as f64 * PI / 2.0);
        for x in (0..200_000).map(|_| 2.0 * PI * uniform_of(rng.next_u64(), 0.0, 1.0)).chain(turns) {
            let (got, want) = (cos(x), x.cos());
            assert!((got - want).abs() <= 2.3e-16, "cos {x}: {got} vs {want}");
        }
    }

    /// Every path this CPU has makes the same bits, and the same pixels as the library's
    /// formula, one value after another.
    #[test]
    fn every_path_makes_the_libraries_noise() {
        let mut rng = Rng::new(3);
        let clean: Vec<f64> = (0..1000).map(|_| uniform_of(rng.next_u64(), -0.2, 1.2)).collect();
        let mut portable = vec![0.0f32; clean.len()];
        noisy(&clean, &rng, &mut portable);
        for isa in Isa::available() {
            let mut got = vec![0.0f32; clean.len()];
            add_noise_on(isa, &clean, &rng, &mut got);
            assert_eq!(got, portable, "{isa}");
        }
        let mut walked = rng.clone();
        let mut library = Vec::new();
        for &c in &clean {
            let u = uniform_of(walked.next_u64(), f64::EPSILON, 1.0);
            let v = uniform_of(walked.next_u64(), 0.0, 1.0);
            let z = (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos();
            library.push((c + NOISE * z).clamp(0.0, 1.0) as f32);
        }
        assert_eq!(portable, library);
        let mut bytes = vec![0u8; clean.len()];
        for isa in Isa::available() {
            add_noise_on(isa, &clean, &rng, &mut bytes);
            assert!(bytes.iter().zip(&library).all(|(&b, &v)| b == (v * 255.0).round() as u8), "{isa}");
        }
        let mut moved = rng.clone();
        add_noise(&clean, &mut moved, &mut vec![0.0; clean.len()]);
        assert_eq!(moved.next_u64(), walked.next_u64(), "the stream moves past what it used");
    }

    #[test]
    fn ln_2_is_ln_2() {
        assert!(ulps(ln(2.0), std::f64::consts::LN_2) <= 0.5);
    }
}
