//! Random ops from the counter-based Philox generator: `rand`, `randn`, `dropout`
//! (inverted scaling, mask saved for backward) and `noisy_relu` (`relu(x + eps)`,
//! `eps ~ N(0, sigma^2)` while training). A draw's numbers depend only on its
//! (seed, offset) key, so the GPU and the CPU produce the same values.

use crate::autograd::record;
use crate::backend::random::RngKey;
use crate::backend::{Dist, Masked};
use crate::device::Device;
use crate::error::{arg_err, Result};
use crate::tensor::{check_float, DType, Tensor};

fn draw(shape_: &[usize], key: RngKey, device: &Device, normal: bool) -> Result<Tensor> {
    let n = crate::ops::check_out("rand", shape_, DType::F32, device)?;
    let dist = if normal { Dist::Normal } else { Dist::Uniform };
    let out = device.backend().draw(dist, key, n)?;
    Ok(Tensor::from_storage(
        out,
        shape_.to_vec(),
        DType::F32,
        device.clone(),
    ))
}

pub(crate) fn uniform(shape_: &[usize], key: RngKey, device: &Device) -> Result<Tensor> {
    draw(shape_, key, device, false)
}

pub(crate) fn normal(shape_: &[usize], key: RngKey, device: &Device) -> Result<Tensor> {
    draw(shape_, key, device, true)
}

/// Applies `x * mask` with a mask made on the device; the mask is saved for backward.
fn masked(x: &Tensor, name: &'static str, op: Masked, key: RngKey) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened(name, &[x], |w| masked(&w[0], name, op, key)) {
        return r;
    }
    let (y, m) = x
        .device()
        .backend()
        .masked(op, x.storage(), key, x.numel())?;
    let y = Tensor::like(y, x.shape().to_vec(), x);
    let mask = Tensor::like(m, x.shape().to_vec(), x);
    Ok(record(y, name, &[x], move |g| {
        Ok(vec![Some(g.mul(&mask)?)])
    }))
}

/// Dropout with an explicit generator key (see [`Tensor::dropout`]).
pub fn dropout_with_key(x: &Tensor, p: f64, key: RngKey) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened("dropout", &[x], |w| dropout_with_key(&w[0], p, key))
    {
        return r;
    }
    check_float("dropout", x)?;
    if !(0.0..1.0).contains(&p) {
        return arg_err("dropout", format!("p must be in [0, 1), got {p}"));
    }
    // Keep an element when the top 24 bits of its word reach ceil(p 2^24): an exact
    // integer test, identical on both backends.
    let threshold = (p * 16_777_216.0).ceil() as u32;
    let scale = (1.0 / (1.0 - p)) as f32;
    masked(x, "dropout", Masked::Dropout { threshold, scale }, key)
}

/// Noisy ReLU with an explicit generator key (see [`Tensor::noisy_relu`]).
pub fn noisy_relu_with_key(x: &Tensor, std: f64, key: RngKey) -> Result<Tensor> {
    if let Some(r) =
        crate::ops::half::widened("noisy_relu", &[x], |w| noisy_relu_with_key(&w[0], std, key))
    {
        return r;
    }
    check_float("noisy_relu", x)?;
    if std.is_nan() || std < 0.0 {
        return arg_err(
            "noisy_relu",
            format!("the noise deviation must be >= 0, got {std}"),
        );
    }
    masked(
        x,
        "noisy_relu",
        Masked::NoisyRelu { sigma: std as f32 },
        key,
    )
}

impl Tensor {
    /// Inverted dropout: while `training`, zeroes each element with probability `p` and
    /// scales the rest by `1 / (1 - p)`, using the device's seeded generator; the
    /// identity otherwise.
    pub fn dropout(&self, p: f64, training: bool) -> Result<Tensor> {
        if !training || p == 0.0 {
            check_float("dropout", self)?;
            return Ok(self.clone());
        }
        dropout_with_key(self, p, self.device().next_rng_key())
    }

    /// Noisy ReLU `max(x + eps, 0)`, `eps ~ N(0, std^2)` from the device's generator
    /// while `training`; plain `relu` otherwise.
    pub fn noisy_relu(&self, std: f64, training: bool) -> Result<Tensor> {
        if !training {
            return self.relu();
        }
        noisy_relu_with_key(self, std, self.device().next_rng_key())
    }
}
