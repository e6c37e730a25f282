//! `clamp`, `clamp_min` and `clamp_max` against PyTorch's definitions on both devices:
//! values, the gradient (1 inside, 0 outside, passed at the bounds themselves), NaN,
//! `min > max`, and the arguments that are errors.

mod common;

use common::{test_device, vec_f32};
use wgrad::prelude::*;

const X: [f32; 8] = [-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0, f32::NAN];

/// PyTorch's clamp and its gradient for one element: `min(max(x, lo), hi)`, gradient 1
/// where `lo <= x <= hi`.
fn reference(x: f32, lo: Option<f32>, hi: Option<f32>) -> (f32, f32) {
    let mut y = x;
    if let Some(lo) = lo {
        if y < lo {
            y = lo;
        }
    }
    if let Some(hi) = hi {
        if y > hi {
            y = hi;
        }
    }
    // False at NaN: PyTorch's mask `(x >= min) & (x <= max)` gives NaN no gradient.
    let inside = lo.is_none_or(|lo| x >= lo) && hi.is_none_or(|hi| x <= hi);
    (y, if inside { 1.0 } else { 0.0 })
}

fn same(got: &[f32], want: &[f32], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
    assert_eq!(got.len(), want.len(), "{what}");
}

test_device!(
    /// Each form with bounds that hit elements exactly (their gradient passes), NaN kept
    /// (with no gradient),
    /// and `min > max` giving `max` everywhere with no gradient.
    clamp_values_and_gradients_cpu,
    clamp_values_and_gradients_gpu,
    |dev| {
        let cases: [(Option<f32>, Option<f32>); 5] = [
            (Some(-1.0), Some(1.0)),
            (Some(-0.5), None),
            (None, Some(0.25)),
            (Some(0.0), Some(0.0)),
            (Some(1.0), Some(-1.0)),
        ];
        for (lo, hi) in cases {
            let x = Tensor::from_slice(&X, &[2, 4], &dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap();
            let y = match (lo, hi) {
                (Some(lo), None) => x.clamp_min(lo.into()).unwrap(),
                (None, Some(hi)) => x.clamp_max(hi.into()).unwrap(),
                _ => x.clamp(lo.map(f64::from), hi.map(f64::from)).unwrap(),
            };
            let (want, dwant): (Vec<f32>, Vec<f32>) =
                X.iter().map(|&v| reference(v, lo, hi)).unzip();
            let what = format!("clamp({lo:?}, {hi:?})");
            assert_eq!(y.shape(), [2, 4]);
            same(&vec_f32(&y), &want, &what);
            let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[2, 4], &dev)
                .unwrap();
            y.mul(&w).unwrap().sum().unwrap().backward().unwrap();
            let dwant: Vec<f32> = dwant.iter().enumerate().map(|(i, d)| d * (i + 1) as f32).collect();
            same(&vec_f32(&x.grad().unwrap()), &dwant, &format!("{what} grad"));
        }
    }
);

#[test]
fn clamp_bad_arguments_are_errors() {
    let dev = Device::cpu();
    let x = Tensor::from_slice(&X, &[8], &dev).unwrap();
    assert!(matches!(x.clamp(None, None), Err(Error::Argument { .. })));
    assert!(matches!(
        x.clamp(Some(f64::NAN), Some(1.0)),
        Err(Error::Argument { .. })
    ));
    assert!(matches!(x.clamp_max(f64::NAN), Err(Error::Argument { .. })));
    let i = Tensor::from_slice(&[1u32, 2], &[2], &dev).unwrap();
    assert!(matches!(i.clamp_min(0.0), Err(Error::DType { .. })));
}
