//! Weight initialisers with PyTorch's formulas (`torch.nn.init`). Each draws from the
//! device's seeded generator (see [`Device::manual_seed`]); the `_` versions overwrite
//! an existing tensor in place.

use crate::device::Device;
use crate::error::{arg_err, Result};
use crate::tensor::Tensor;

/// `(fan_in, fan_out)` of a weight shaped `[out, in, k...]`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape.len() {
        0 => (1, 1),
        1 => (shape[0], shape[0]),
        _ => {
            let receptive: usize = shape[2..].iter().product();
            (shape[1] * receptive, shape[0] * receptive)
        }
    }
}

/// Uniform in `[low, high)`.
pub fn uniform(shape: &[usize], low: f64, high: f64, device: &Device) -> Tensor {
    Tensor::rand(shape, device)
        .and_then(|t| t.affine(high - low, low))
        .expect("uniform: a valid shape")
}

/// Normal with `mean` and `std`.
pub fn normal(shape: &[usize], mean: f64, std: f64, device: &Device) -> Tensor {
    Tensor::randn(shape, device)
        .and_then(|t| t.affine(std, mean))
        .expect("normal: a valid shape")
}

/// Glorot/Xavier uniform: bound `gain * sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_uniform(shape: &[usize], gain: f64, device: &Device) -> Tensor {
    let (fi, fo) = fans(shape);
    let b = gain * (6.0 / (fi + fo) as f64).sqrt();
    uniform(shape, -b, b, device)
}

/// Glorot/Xavier normal: std `gain * sqrt(2 / (fan_in + fan_out))`.
pub fn xavier_normal(shape: &[usize], gain: f64, device: &Device) -> Tensor {
    let (fi, fo) = fans(shape);
    normal(shape, 0.0, gain * (2.0 / (fi + fo) as f64).sqrt(), device)
}

/// Kaiming/He uniform for ReLU layers (fan-in mode): bound `sqrt(6 / fan_in)`.
pub fn kaiming_uniform(shape: &[usize], device: &Device) -> Tensor {
    let (fi, _) = fans(shape);
    let b = (6.0 / fi.max(1) as f64).sqrt();
    uniform(shape, -b, b, device)
}

/// Kaiming/He normal for ReLU layers (fan-in mode): std `sqrt(2 / fan_in)`.
pub fn kaiming_normal(shape: &[usize], device: &Device) -> Tensor {
    let (fi, _) = fans(shape);
    normal(shape, 0.0, (2.0 / fi.max(1) as f64).sqrt(), device)
}

/// Overwrites `t` in place with values from `make(shape, device)` (converted to `t`'s
/// dtype: a half parameter gets the values rounded).
pub fn fill_(t: &Tensor, make: impl FnOnce(&[usize], &Device) -> Tensor) -> Result<()> {
    if !t.dtype().is_float() {
        return arg_err("init", "only float tensors can be initialised");
    }
    t.copy_from(&make(t.shape(), t.device()).to_dtype(t.dtype())?)
}

/// Overwrites `t` with zeros.
pub fn zeros_(t: &Tensor) -> Result<()> {
    t.copy_from(&t.zeros_like()?)
}
