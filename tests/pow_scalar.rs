//! `pow_scalar` against Rust's `powf` (PyTorch's rules) on both devices: negative bases
//! with integer exponents, NaN for a negative base with a non-integer exponent, `x^0 = 1`,
//! exponents past the kernel's multiplied-out range, and the gradient `e x^(e - 1)` (0
//! everywhere for `e = 0`, 1 at `x = 0` for `e = 1`). The op registry adds the finite
//! difference and GPU-against-CPU checks.

mod common;

use common::{assert_close, test_device, vec_f32};
use wgrad::prelude::*;

/// `x^e` in f64 (Rust's `powf` has PyTorch's rules), rounded to f32.
fn want(xs: &[f32], e: f64) -> Vec<f32> {
    xs.iter().map(|&x| (x as f64).powf(e) as f32).collect()
}

/// `(x^e, d/dx)` of `x.pow_scalar(e)` on `dev`, with the gradient of `sum(y)`.
fn run(xs: &[f32], e: f64, dev: &Device) -> (Vec<f32>, Vec<f32>) {
    let x = Tensor::from_slice(xs, &[xs.len()], dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = x.pow_scalar(e).unwrap();
    y.sum().unwrap().backward().unwrap();
    (vec_f32(&y), vec_f32(&x.grad().unwrap()))
}

test_device!(
    /// Integer exponents keep the sign rule for negative bases ((-2)^3 = -8, (-2)^2 = 4),
    /// and a negative exponent is the reciprocal; the gradient is `e x^(e - 1)`.
    integer_exponents_on_negative_and_positive_bases_cpu,
    integer_exponents_on_negative_and_positive_bases_gpu,
    |dev| {
        let xs = [-3.0f32, -2.0, -0.5, 0.5, 1.5, 2.0, 3.0];
        for e in [1.0, 2.0, 3.0, 4.0, 7.0, -1.0, -2.0, -3.0, 25.0] {
            let (y, g) = run(&xs, e, &dev);
            let what = format!("x^{e}");
            assert_close(&y, &want(&xs, e), 0.0, 1e-6, &what);
            let dwant: Vec<f32> = xs
                .iter()
                .map(|&x| (e * (x as f64).powf(e - 1.0)) as f32)
                .collect();
            assert_close(&g, &dwant, 0.0, 1e-6, &format!("d/dx {what}"));
        }
        let (y, _) = run(&[-2.0], 3.0, &dev);
        assert_eq!(y, [-8.0]);
    }
);

test_device!(
    /// Non-integer exponents: powf's values on positive bases, NaN on negative ones, 0 at
    /// a zero base with a positive exponent.
    fractional_exponents_cpu,
    fractional_exponents_gpu,
    |dev| {
        let xs = [0.25f32, 0.5, 1.0, 2.0, 9.0];
        for e in [0.5, 1.5, -0.5, 2.5, -1.25] {
            let (y, g) = run(&xs, e, &dev);
            let what = format!("x^{e}");
            assert_close(&y, &want(&xs, e), 0.0, 1e-5, &what);
            let dwant: Vec<f32> = xs
                .iter()
                .map(|&x| (e * (x as f64).powf(e - 1.0)) as f32)
                .collect();
            assert_close(&g, &dwant, 0.0, 1e-5, &format!("d/dx {what}"));
        }
        let (y, _) = run(&[-2.0, -0.5, 0.0, 4.0], 0.5, &dev);
        assert!(y[0].is_nan() && y[1].is_nan(), "negative base, e = 0.5: {y:?}");
        assert_eq!(&y[2..], [0.0, 2.0]);
    }
);

test_device!(
    /// `x^0 = 1` for every `x`, zero and NaN included, with a zero gradient everywhere;
    /// `x^1` has gradient 1 everywhere, at 0 too (`0^0 = 1`).
    exponents_zero_and_one_cpu,
    exponents_zero_and_one_gpu,
    |dev| {
        let xs = [-2.0f32, -0.5, 0.0, 0.5, 3.0];
        let (y, g) = run(&xs, 0.0, &dev);
        assert_eq!(y, [1.0; 5]);
        assert_eq!(g, [0.0; 5]);
        let (y, _) = run(&[f32::NAN], 0.0, &dev);
        assert_eq!(y, [1.0]);
        let (y, g) = run(&xs, 1.0, &dev);
        assert_eq!(y, xs);
        assert_eq!(g, [1.0; 5]);
        let (y, _) = run(&[f32::NAN, 2.0], 2.0, &dev);
        assert!(y[0].is_nan() && y[1] == 4.0, "NaN^2: {y:?}");
    }
);

test_device!(
    /// Exponents beyond the range the kernel multiplies out (2^24) go through `pow`: an
    /// even integer there keeps a negative base positive.
    huge_exponents_cpu,
    huge_exponents_gpu,
    |dev| {
        let xs = [-1.0f32, 1.0, 0.5, 0.0, -0.5];
        let (y, _) = run(&xs, 33_554_432.0, &dev);
        assert_eq!(y, [1.0, 1.0, 0.0, 0.0, 0.0]);
        let (y, _) = run(&[-1.0, 1.0], 1_000_001.0, &dev);
        assert_eq!(y, [-1.0, 1.0]);
    }
);

#[test]
fn infinities_and_f64_on_the_cpu() {
    let dev = Device::cpu();
    // A zero base with a negative exponent is infinite (WGSL leaves infinities to the
    // implementation, so this is checked on the CPU only).
    let (y, _) = run(&[0.0, 2.0], -1.0, &dev);
    assert_eq!(y, [f32::INFINITY, 0.5]);
    let x = Tensor::from_vec(vec![-2.0f64, 0.1, 3.0], &[3], &dev).unwrap();
    let y = x.pow_scalar(3.0).unwrap().to_vec::<f64>().unwrap();
    assert_eq!(y, [-8.0, 0.1f64.powf(3.0), 27.0]);
}

#[test]
fn integer_tensors_are_an_error() {
    let x = Tensor::from_vec(vec![2u32, 3], &[2], &Device::cpu()).unwrap();
    assert!(matches!(x.pow_scalar(2.0), Err(Error::DType { .. })));
}
