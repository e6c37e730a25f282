//! The exact GELU `x Phi(x)` and its slope `Phi(x) + x phi(x)` in `f32`, fast: libm's
//! `erfcf` was a quarter of the transformer's training step on the CPU.
//!
//! `Phi(x) = erfc(-x / sqrt 2) / 2` takes `erfc(z)` for `z = |x| / sqrt 2 >= 0` from the
//! Chebyshev fit of Numerical Recipes (`erfcc`, section 6.2):
//! `erfc(z) = t exp(-z^2 + P(t))` with `t = 1 / (1 + z / 2)` and `P` of degree 9, whose
//! relative error is below 1.2e-7 for every `z >= 0` (1.05e-7 measured against `f64`
//! erfc), then `Phi = erfc / 2` for negative x (no cancellation in the left tail) and
//! `1 - erfc / 2` for positive x. Everything is evaluated in `f32`, eight lanes to a
//! register where the machine has AVX2: the exponent `-z^2 + P(t)` as an exact
//! two-part sum (the square of `|x|` split exactly, by FMA or by Veltkamp and Dekker),
//! whose exponential ([`exp2_lanes`]) is within 2 ulp however far into the left tail,
//! so the tail keeps its relative accuracy. Measured against libm's `f64` `erfc` on a
//! dense grid (the unit tests): the forward within 4e-7 relative (3.3 ulp; the fit's
//! 1.2e-7, the rounding of `t` amplified by the fit's slope, the exponential's), the
//! slope within 3.5e-7 of its terms' size. (A first version evaluated in `f64`, within
//! 2e-7, and took 1.9 ms forward and 2.1 ms backward for a `[2048, 512]` activation on
//! two cores; this one takes 1.2 and 1.3 ms.) Every step is branch-free, so the slice
//! loops vectorise (with AVX2 and FMA where the machine has them, chosen at run time).
//!
//! Limits: `GELU(x) -> -0` as `x -> -inf` (also at `-inf` itself, where `x Phi(x)`
//! would be `-inf * 0`), `GELU(+inf) = +inf`; the slope is 0 at `-inf` and 1 at `+inf`;
//! NaN stays NaN.

use super::parallel;

/// `1 / sqrt(2 pi)`, the standard normal density at 0.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
/// The fit's coefficients of `P(t)`, constant term first (Numerical Recipes `erfcc`).
const ERFC_FIT: [f64; 10] = [
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
];

/// Work units one GELU element counts as when deciding whether to split a slice over
/// threads ([`parallel::parts`] splits from [`parallel::MIN_WORK`] units, `1 << 21`):
/// a slice splits from 128K elements. Measured on a 2-core x86-64 machine under heavy
/// load (2026-12-07, with the earlier `f64` evaluation): one thread took 3-4 ns per
/// element (forward and slope; libm's `erfcf` alone took 17-45 ns; the `f32` lanes now
/// take about 2.4, bound by memory on large slices), and a 64K-element GELU through the tensor API took
/// 0.25 ms split in two against 0.20 ms on one thread, so 64K is too few; from 128K each
/// half is 0.2 ms or more, well above the tens of microseconds a scoped thread costs.
/// The transformer's `[2048, 512]` activations split.
pub const GELU_WORK_PER_ELEMENT: usize = 16;

/// How `a * b + c` and the exact square are evaluated: without FMA ([`Plain`], any CPU)
/// or with it ([`Fused`], only inside functions compiled with the `fma` target feature,
/// where `mul_add` is one instruction; elsewhere it would be a slow library call).
trait Arith {
    /// `a * b + c`.
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
    /// `a^2` as `hi + lo` exactly (`hi` the rounded square).
    fn square(a: f32) -> (f32, f32);
}

/// Without FMA: the square split exactly by Veltkamp and Dekker.
struct Plain;
impl Arith for Plain {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    fn square(a: f32) -> (f32, f32) {
        // a = ah + al with 12 significant bits each, so their products are exact.
        let c = 4097.0 * a;
        let ah = c - (c - a);
        let al = a - ah;
        let hi = a * a;
        let lo = ((ah * ah - hi) + 2.0 * ah * al) + al * al;
        (hi, lo)
    }
}

/// With FMA: the square's rounding error is one fused multiply-add.
#[cfg(target_arch = "x86_64")]
struct Fused;
#[cfg(target_arch = "x86_64")]
impl Arith for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn square(a: f32) -> (f32, f32) {
        let hi = a * a;
        (hi, a.mul_add(a, -hi))
    }
}

/// Elements evaluated side by side: each step below runs over all of them before the
/// next, so the vectorised code carries several independent dependency chains (one
/// element's chain of about 40 dependent operations would otherwise bound the speed).
const LANES: usize = 16;

/// Beyond this `|x|`, `Phi(x)` is 0 or 1 and the density 0 in `f32`: larger inputs
/// (infinities included) are evaluated here instead, so no step sees an infinity.
const FAR: f32 = 30.0;

/// `e^(h + l)` of each lane for a two-part argument (`l` small beside `h`, or both
/// small), branch-free, within 2 ulp in `f32`: `n` is the integer nearest
/// `(h + l) / ln 2` (by the `1.5 * 2^23` rounding trick), `r = (h - n ln2_hi) + l - n
/// ln2_lo` (the first difference exact: `n ln2_hi` has few significant bits and is
/// within a factor of 2 of `h`), `e^r` by Cephes' degree-6 polynomial and `2^n` from
/// exponent bits in two halves. Below -104 the result is 0 (every use rounds it so);
/// the arguments here are never above 1. NaN stays NaN.
#[inline(always)]
fn exp2_lanes<A: Arith>(h: &[f32; LANES], l: &[f32; LANES], out: &mut [f32; LANES]) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23
    const EXP_POLY: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5, // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    ];
    let (mut n, mut k, mut r) = ([0.0f32; LANES], [0i32; LANES], [0.0f32; LANES]);
    let mut p = [EXP_POLY[0]; LANES];
    for i in 0..LANES {
        let s = h[i] + l[i];
        let sc = if s < -110.0 { -110.0 } else { s };
        let t = A::mul_add(sc, LOG2E, ROUND);
        n[i] = t - ROUND;
        // n in integer form from t's low mantissa bits (an `as` cast would not
        // vectorise: it saturates and maps NaN to 0).
        k[i] = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
        // Clamped like the sum, so far-out lanes stay finite (their result is 0 below).
        let hc = if s < -110.0 { -110.0 } else { h[i] };
        let lc = if s < -110.0 { 0.0 } else { l[i] };
        r[i] = A::mul_add(-n[i], LN2_LO, A::mul_add(-n[i], LN2_HI, hc) + lc);
    }
    for &c in &EXP_POLY[1..] {
        for i in 0..LANES {
            p[i] = A::mul_add(p[i], r[i], c);
        }
    }
    for i in 0..LANES {
        let er = A::mul_add(p[i] * r[i], r[i], r[i]) + 1.0;
        let (a, b) = (k[i] >> 1, k[i] - (k[i] >> 1));
        let pow2 = |e: i32| f32::from_bits((e.wrapping_add(127) as u32) << 23);
        let v = er * pow2(a) * pow2(b);
        out[i] = if h[i] + l[i] < -104.0 { 0.0 } else { v };
    }
}

/// `Phi(x)` of each lane into `cdf`, and `e^(-x^2 / 2)` into `gauss` when asked. The
/// exponent `-x^2 / 2` is carried as an exact two-part sum (`x^2` split by
/// [`Arith::square`]), so its rounding (up to 1e-5 relative at `x = -13`) never
/// reaches the left tail's relative accuracy.
#[inline(always)]
fn cdf_lanes<A: Arith>(x: &[f32; LANES], cdf: &mut [f32; LANES], gauss: Option<&mut [f32; LANES]>) {
    let (mut t, mut h, mut l, mut p) = (
        [0.0f32; LANES],
        [0.0f32; LANES],
        [0.0f32; LANES],
        [ERFC_FIT[9] as f32; LANES],
    );
    for i in 0..LANES {
        let a = x[i].abs();
        let a = if a > FAR { FAR } else { a };
        let z = a * std::f32::consts::FRAC_1_SQRT_2;
        t[i] = 1.0 / A::mul_add(0.5, z, 1.0);
        let (hi, lo) = A::square(a);
        // -z^2 = -(a^2) / 2, both halves exact.
        h[i] = -0.5 * hi;
        l[i] = -0.5 * lo;
    }
    for &c in ERFC_FIT[..9].iter().rev() {
        for i in 0..LANES {
            p[i] = A::mul_add(p[i], t[i], c as f32);
        }
    }
    let mut e = [0.0f32; LANES];
    for i in 0..LANES {
        p[i] += l[i];
    }
    // erfc(z) = t e^(-z^2 + P(t)).
    exp2_lanes::<A>(&h, &p, &mut e);
    for i in 0..LANES {
        let half = 0.5 * t[i] * e[i];
        cdf[i] = if x[i] < 0.0 { half } else { 1.0 - half };
    }
    if let Some(g) = gauss {
        for i in 0..LANES {
            // The exact -x^2 / 2 again (its low part was folded into `p` above).
            let a = x[i].abs();
            let a = if a > FAR { FAR } else { a };
            l[i] = -0.5 * A::square(a).1;
        }
        exp2_lanes::<A>(&h, &l, g);
    }
}

/// GELU of each lane (see the module's documentation for the limits).
#[inline(always)]
fn gelu_lanes<A: Arith>(v: &mut [f32; LANES]) {
    let mut cdf = [0.0f32; LANES];
    cdf_lanes::<A>(v, &mut cdf, None);
    for i in 0..LANES {
        // Phi underflows to 0 only for very negative x (and -inf): the limit is -0.
        v[i] = if cdf[i] == 0.0 { -0.0 } else { v[i] * cdf[i] };
    }
}

/// `g * GELU'(s)` of each lane into `out`.
#[inline(always)]
fn slope_lanes<A: Arith>(out: &mut [f32; LANES], g: &[f32; LANES], s: &[f32; LANES]) {
    let (mut cdf, mut gauss) = ([0.0f32; LANES], [0.0f32; LANES]);
    cdf_lanes::<A>(s, &mut cdf, Some(&mut gauss));
    for i in 0..LANES {
        // The density is 0 only far out (and at +-inf, where x * 0 would be NaN).
        let slope = if gauss[i] == 0.0 {
            cdf[i]
        } else {
            A::mul_add(s[i] * INV_SQRT_2PI as f32, gauss[i], cdf[i])
        };
        out[i] = g[i] * slope;
    }
}

/// The exact GELU `x Phi(x)` of one `f32` (see the module's documentation).
pub fn gelu(x: f32) -> f32 {
    let mut v = [x; LANES];
    gelu_lanes::<Plain>(&mut v);
    v[0]
}

/// The exact GELU's derivative `Phi(x) + x phi(x)` of one `f32`.
pub fn gelu_slope(x: f32) -> f32 {
    let mut out = [0.0; LANES];
    slope_lanes::<Plain>(&mut out, &[1.0; LANES], &[x; LANES]);
    out[0]
}

/// The exact GELU in `f64` through libm's `erfc` (the gradient checker's reference),
/// with the same limits as [`gelu`].
pub fn gelu_f64(x: f64) -> f64 {
    let cdf = 0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2);
    if cdf == 0.0 {
        -0.0
    } else {
        x * cdf
    }
}

/// The exact GELU's derivative in `f64` through libm's `erfc` and `exp`.
pub fn gelu_slope_f64(x: f64) -> f64 {
    let cdf = 0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2);
    let dens = (-0.5 * x * x).exp() * INV_SQRT_2PI;
    if dens == 0.0 {
        cdf
    } else {
        cdf + x * dens
    }
}

/// The forward over a slice, [`LANES`] elements at a time (the tail padded).
#[inline(always)]
fn forward_loop<A: Arith>(ys: &mut [f32]) {
    let mut chunks = ys.chunks_exact_mut(LANES);
    for c in &mut chunks {
        let c: &mut [f32; LANES] = c.try_into().expect("a whole chunk");
        gelu_lanes::<A>(c);
    }
    let rest = chunks.into_remainder();
    let mut v = [0.0; LANES];
    v[..rest.len()].copy_from_slice(rest);
    gelu_lanes::<A>(&mut v);
    let n = rest.len();
    rest.copy_from_slice(&v[..n]);
}

/// The backward over slices of one length, [`LANES`] elements at a time.
#[inline(always)]
fn backward_loop<A: Arith>(out: &mut [f32], g: &[f32], s: &[f32]) {
    let mut chunks = out.chunks_exact_mut(LANES);
    let (mut gc, mut sc) = (g.chunks_exact(LANES), s.chunks_exact(LANES));
    for ((o, g), s) in (&mut chunks).zip(&mut gc).zip(&mut sc) {
        let o: &mut [f32; LANES] = o.try_into().expect("a whole chunk");
        slope_lanes::<A>(
            o,
            g.try_into().expect("a whole chunk"),
            s.try_into().expect("a whole chunk"),
        );
    }
    let rest = chunks.into_remainder();
    let n = rest.len();
    let (mut vo, mut vg, mut vs) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
    vg[..n].copy_from_slice(gc.remainder());
    vs[..n].copy_from_slice(sc.remainder());
    slope_lanes::<A>(&mut vo, &vg, &vs);
    rest.copy_from_slice(&vo[..n]);
}

/// [`forward_loop`] compiled for AVX2 and FMA (4 `f64` lanes, fused multiply-adds).
///
/// # Safety
/// Only on a CPU with AVX2 and FMA (the caller checks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(ys: &mut [f32]) {
    forward_loop::<Fused>(ys)
}

/// [`backward_loop`] compiled for AVX2 and FMA.
///
/// # Safety
/// Only on a CPU with AVX2 and FMA (the caller checks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2(out: &mut [f32], g: &[f32], s: &[f32]) {
    backward_loop::<Fused>(out, g, s)
}

/// True when the AVX2 and FMA loops may run (detected once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// One thread's share of the forward.
fn forward_part(ys: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 (checked at run time).
        return unsafe { forward_avx2(ys) };
    }
    forward_loop::<Plain>(ys)
}

/// One thread's share of the backward.
fn backward_part(out: &mut [f32], g: &[f32], s: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 (checked at run time).
        return unsafe { backward_avx2(out, g, s) };
    }
    backward_loop::<Plain>(out, g, s)
}

/// `y = GELU(y)` over a slice in place, on several threads for long slices.
pub fn forward_in_place(ys: &mut [f32]) {
    let n = ys.len();
    parallel::for_blocks_mut(ys, n, n * GELU_WORK_PER_ELEMENT, |_, part| {
        forward_part(part)
    });
}

/// `out = g * GELU'(s)` elementwise (all three of one length), on several threads for
/// long slices.
pub fn backward_into(out: &mut [f32], g: &[f32], s: &[f32]) {
    let n = out.len().min(g.len()).min(s.len());
    let out = &mut out[..n];
    parallel::for_blocks_mut(out, n, n * GELU_WORK_PER_ELEMENT, |first, part| {
        let end = first + part.len();
        backward_part(part, &g[first..end], &s[first..end])
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Phi(x) in f64 from libm's erfc.
    fn cdf64(x: f64) -> f64 {
        0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
    }

    /// Every f32 on a grid of step 1/1024 over [-10, 10], plus some far values.
    fn grid() -> Vec<f32> {
        let mut xs: Vec<f32> = (-10 * 1024..=10 * 1024)
            .map(|i| i as f32 / 1024.0)
            .collect();
        xs.extend([
            1e-30, -1e-30, 1e-7, -1e-7, 12.0, -12.0, 13.5, -13.5, 20.0, -20.0, 1e10, -1e10,
        ]);
        // Some values between the grid points, irrational offsets.
        xs.extend((0..20_000).map(|i| -9.7 + i as f32 * 9.7e-4 * std::f32::consts::E));
        xs
    }

    /// One lane of [`exp2_lanes`] for `e^(h + l)`.
    fn exp1(h: f32, l: f32) -> f32 {
        let mut out = [0.0; LANES];
        exp2_lanes::<Plain>(&[h; LANES], &[l; LANES], &mut out);
        out[0]
    }

    /// The slice forward (the vectorised, possibly FMA variant) over `xs`.
    fn forward_slice(xs: &[f32]) -> Vec<f32> {
        let mut ys = xs.to_vec();
        forward_in_place(&mut ys);
        ys
    }

    /// The slice backward with a unit gradient over `xs`.
    fn slope_slice(xs: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; xs.len()];
        backward_into(&mut out, &vec![1.0; xs.len()], xs);
        out
    }

    #[test]
    fn two_part_exp_matches_libm() {
        let mut worst = 0.0f64;
        for i in -10_400..=100 {
            let h = i as f32 / 100.0 + 0.003_7;
            for l in [0.0f32, -1.2, 0.37, 3e-6] {
                let want = (h as f64 + l as f64).exp();
                if want < f32::MIN_POSITIVE as f64 {
                    continue;
                }
                worst = worst.max((exp1(h, l) as f64 / want - 1.0).abs());
            }
        }
        eprintln!("exp: worst relative error {worst:e}");
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        assert!(exp1(f32::NAN, 0.0).is_nan());
        assert_eq!(exp1(-450.0, -1.0), 0.0);
        assert_eq!(exp1(0.0, 0.0), 1.0);
    }

    #[test]
    fn forward_matches_the_exact_gelu() {
        let xs = grid();
        let slice = forward_slice(&xs);
        let mut worst = (0.0f64, 0.0f32);
        for (&x, &fast) in xs.iter().zip(&slice) {
            let want = x as f64 * cdf64(x as f64);
            for got in [gelu(x) as f64, fast as f64] {
                if (want as f32).abs() < f32::MIN_POSITIVE {
                    // Underflows in f32: (signed) zero or a subnormal close to it.
                    assert!(got.abs() <= 2.0 * f32::MIN_POSITIVE as f64, "{x}: {got:e}");
                    continue;
                }
                let err = (got / want - 1.0).abs();
                if err > worst.0 {
                    worst = (err, x);
                }
            }
        }
        eprintln!("GELU: worst relative error {:e} at {}", worst.0, worst.1);
        assert!(
            worst.0 < 4e-7,
            "worst relative error {:e} at {}",
            worst.0,
            worst.1
        );
    }

    #[test]
    fn slope_matches_the_exact_derivative() {
        let xs = grid();
        let slice = slope_slice(&xs);
        let mut worst = (0.0f64, 0.0f32);
        for (&x, &fast) in xs.iter().zip(&slice) {
            let xd = x as f64;
            let (cdf, dens) = (cdf64(xd), (-0.5 * xd * xd).exp() * INV_SQRT_2PI);
            let want = cdf + xd * dens;
            // The slope crosses 0 near x = -0.75 (both terms cancel): the error is
            // measured against the terms' size, as any f32 evaluation's would be.
            let scale = cdf.abs() + (xd * dens).abs();
            for got in [gelu_slope(x) as f64, fast as f64] {
                if scale < f32::MIN_POSITIVE as f64 {
                    assert!(got.abs() <= 2.0 * f32::MIN_POSITIVE as f64, "{x}: {got:e}");
                    continue;
                }
                let err = (got - want).abs() / scale;
                if err > worst.0 {
                    worst = (err, x);
                }
            }
        }
        eprintln!("GELU': worst relative error {:e} at {}", worst.0, worst.1);
        assert!(
            worst.0 < 3.5e-7,
            "worst relative error {:e} at {}",
            worst.0,
            worst.1
        );
        // Far in the left tail the slope is tiny and negative, not 0 or NaN.
        let far = gelu_slope(-6.0) as f64;
        let want = cdf64(-6.0) - 6.0 * (-18.0f64).exp() * INV_SQRT_2PI;
        assert!((far / want - 1.0).abs() < 3e-7, "{far:e} vs {want:e}");
    }

    #[test]
    fn tails_and_special_values() {
        let special = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1e30,
            1e30,
            0.0,
            f32::NAN,
            40.0,
            -40.0,
        ];
        let (fwd, slope) = (forward_slice(&special), slope_slice(&special));
        for (i, &x) in special.iter().enumerate() {
            for (y, d) in [(gelu(x), gelu_slope(x)), (fwd[i], slope[i])] {
                if x.is_nan() {
                    assert!(y.is_nan() && d.is_nan(), "NaN in: {y} {d}");
                    continue;
                }
                let (want_y, want_d) = if x == 0.0 {
                    (0.0, 0.5)
                } else if x > 0.0 {
                    (x, 1.0)
                } else {
                    (-0.0, 0.0)
                };
                assert_eq!(y, want_y, "GELU({x})");
                assert!((d - want_d).abs() < 1e-7, "GELU'({x}) = {d}");
                if x < 0.0 {
                    assert!(y.is_sign_negative(), "GELU({x}) = {y}");
                }
            }
        }
        // Far left values are tiny, negative and finite: x Phi(x) at -10 is -7.62e-23.
        for far in [gelu(-10.0), forward_slice(&[-10.0])[0]] {
            assert!((far / -7.619_853e-23 - 1.0).abs() < 2e-7, "{far:e}");
        }
    }

    #[test]
    fn slices_split_over_threads_match_one_part() {
        // Long enough to split over threads where there are several.
        let n = 3 * (parallel::MIN_WORK / GELU_WORK_PER_ELEMENT) + 17;
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 2001) as f32 / 100.0 - 10.0)
            .collect();
        let g: Vec<f32> = (0..n).map(|i| 1.0 + (i % 13) as f32 * 0.25).collect();
        let ys = forward_slice(&xs);
        let mut dx = vec![0.0f32; n];
        backward_into(&mut dx, &g, &xs);
        let mut one = xs.clone();
        forward_part(&mut one);
        let mut done = vec![0.0f32; n];
        backward_part(&mut done, &g, &xs);
        assert_eq!(ys, one);
        assert_eq!(dx, done);
        // Short slices (the padded tail only) agree with the scalars within rounding.
        let short = forward_slice(&[0.5, -2.0, 3.25]);
        for (y, x) in short.iter().zip([0.5f32, -2.0, 3.25]) {
            assert!((y - gelu(x)).abs() <= 2.0 * f32::EPSILON * y.abs(), "{x}");
        }
        assert!(forward_slice(&[]).is_empty());
    }
}
