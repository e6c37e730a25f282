//! Automatic mixed precision: [`autocast`], PyTorch's `torch.autocast`, and
//! [`GradScaler`], PyTorch's `torch.amp.GradScaler`.
//!
//! Inside an autocast scope for a device and a half dtype (`F16` or `BF16`), ops on that
//! device's tensors pick their precision by PyTorch's lists:
//! - **lower precision**: matrix products, linear layers, convolutions, attention and
//!   recurrent layers cast their float inputs to the half dtype (so parameters stay `f32`
//!   master weights, and their gradients arrive in `f32`) and give half outputs;
//! - **f32**: exponentials, logarithms, powers, softmax, the normalisations, sums and
//!   means, and the losses compute from `f32` inputs and give `f32` outputs;
//! - **promote**: any other op given half and `f32` inputs together runs in `f32`
//!   (outside autocast that mix is an error);
//! - everything else runs in its inputs' dtype.
//!
//! The scope is per thread, and ops inside an op (a loss built from other ops) run with
//! autocast off, as in PyTorch. The backward pass needs no scope: each op's gradient
//! follows the dtypes its forward chose.

mod scaler;

pub use scaler::GradScaler;

use std::cell::RefCell;

use crate::device::Device;
use crate::error::{arg_err, Result};
use crate::tensor::DType;

thread_local! {
    static STATE: RefCell<Option<(Device, DType)>> = const { RefCell::new(None) };
}

/// Runs `f` with autocast on for `device` in `dtype` (`F16` or `BF16`), as PyTorch's
/// `with torch.autocast(device_type, dtype):`. The previous state comes back afterwards,
/// also when `f` panics.
///
/// ```
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let x = Tensor::randn_seeded(&[4, 8], 1, &dev)?;
/// let w = Tensor::randn_seeded(&[3, 8], 2, &dev)?.requires_grad_(true)?;
/// let loss = wgrad::amp::autocast(&dev, DType::F16, || -> wgrad::Result<Tensor> {
///     let y = x.linear(&w)?; // a product: f16
///     assert_eq!(y.dtype(), DType::F16);
///     let p = y.softmax(-1)?; // softmax: f32
///     assert_eq!(p.dtype(), DType::F32);
///     p.sum()
/// })??;
/// loss.backward()?;
/// assert_eq!(w.grad().unwrap().dtype(), DType::F32); // master weights stay f32
/// # Ok(()) }
/// ```
pub fn autocast<R>(device: &Device, dtype: DType, f: impl FnOnce() -> R) -> Result<R> {
    let _guard = AutocastGuard::new(device, dtype)?;
    Ok(f())
}

/// Autocast on for `device` in `dtype` until the guard drops (the scope of
/// [`autocast`] as a value).
pub struct AutocastGuard {
    previous: Option<(Device, DType)>,
}

impl AutocastGuard {
    /// Turns autocast on; `dtype` must be `F16` or `BF16`.
    pub fn new(device: &Device, dtype: DType) -> Result<AutocastGuard> {
        if !dtype.is_half() {
            return arg_err(
                "autocast",
                format!("autocast runs in F16 or BF16, not {dtype:?}"),
            );
        }
        Ok(AutocastGuard {
            previous: STATE.with(|s| s.replace(Some((device.clone(), dtype)))),
        })
    }

    /// Turns autocast off until the guard drops (what an op does around its own work).
    pub(crate) fn off() -> AutocastGuard {
        AutocastGuard {
            previous: STATE.with(|s| s.replace(None)),
        }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        STATE.with(|s| *s.borrow_mut() = previous);
    }
}

/// The dtype autocast uses for `device` on this thread, if it is on for it.
pub fn autocast_dtype(device: &Device) -> Option<DType> {
    STATE.with(|s| match &*s.borrow() {
        Some((d, dtype)) if d == device => Some(*dtype),
        _ => None,
    })
}

/// How autocast treats an op (by the name its entry function passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cast {
    /// Float inputs cast to the half dtype.
    Lower,
    /// Half inputs computed in f32, f32 outputs.
    F32,
    /// The inputs' dtype; mixed half and f32 inputs run in f32.
    Promote,
}

/// PyTorch's autocast lists, as wgrad's op names.
pub(crate) fn cast_of(op: &str) -> Cast {
    const LOWER: &[&str] = &[
        "matmul",
        "linear",
        "conv2d",
        "conv_transpose2d",
        "scaled_dot_product_attention",
        "rnn_layer",
        "rnn_layer_reverse",
        "lstm_cell",
        "gru_cell",
        "prelu",
    ];
    const F32: &[&str] = &[
        "exp",
        "log",
        "log1p",
        "expm1",
        "pow",
        "pow_scalar",
        "rsqrt",
        "reciprocal",
        "softplus",
        "softmax",
        "sum",
        "layer_norm",
        "rms_norm",
        "group_norm",
        "cross_entropy",
        "nll_loss",
        "mse_loss",
        "bce_with_logits",
        "binary_cross_entropy",
    ];
    if LOWER.contains(&op) {
        Cast::Lower
    } else if F32.contains(&op) {
        Cast::F32
    } else {
        Cast::Promote
    }
}
