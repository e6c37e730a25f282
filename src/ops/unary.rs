//! Elementwise unary ops: math (`neg`, `exp`, `log`, `sqrt`, `abs`, scalar `affine`) and
//! activations (`sigmoid`, `tanh`, `relu`, `softplus`, `leaky_relu`, `gelu`, `silu`,
//! `mish`, and `prelu` with a trainable slope; `noisy_relu` lives in `random`). Their math,
//! forward and backward in Rust and WGSL, is one row each of the elementwise table
//! ([`super::elementwise`]); this file records them in the graph and launches them. Each
//! op saves only the value its backward reads (its input or its output, [`Needs`]).

use crate::autograd::record;
use crate::backend::PreluGeo;
use crate::error::{arg_err, Result};
use crate::ops::split;
use crate::tensor::{check_float, check_pair, Tensor};

pub use crate::backend::elementwise::{Needs, UnaryOp};

/// Applies `op` to every element, recording the backward.
pub fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    match crate::ops::half::direct(op.name(), &[x], |w| unary_recorded(&w[0], op)) {
        Some(r) => r,
        None => unary_recorded(x, op),
    }
}

/// [`unary`] on inputs of the op's own dtype (half ones read as they are).
fn unary_recorded(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    check_float(op.name(), x)?;
    let y = unary_forward(x, op)?;
    let saved = match op.needs() {
        Needs::Output => Some(y.detach()),
        Needs::Input => Some(x.detach()),
        // A constant derivative keeps nothing alive; the gradient stands in (never read).
        Needs::Nothing => None,
    };
    Ok(record(y, op.name(), &[x], move |g| {
        Ok(vec![Some(unary_backward(
            op,
            saved.as_ref().unwrap_or(g),
            g,
        )?)])
    }))
}

/// `op(x)` without recording a backward.
pub(crate) fn unary_forward(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    if let Some(mut o) = split::elementwise(&[x], x.shape(), 1, x.dtype(), |p| {
        Ok(vec![unary_forward(&p[0], op)?])
    })? {
        return Ok(o.remove(0));
    }
    let out = x.device().backend().unary(op, x.storage(), x.numel())?;
    crate::ops::half::like(out, x.shape().to_vec(), x)
}

/// `dL/dx` of `op` from the saved value `s` (the input or the output, as
/// [`UnaryOp::needs`] says; any tensor of the shape for [`Needs::Nothing`]) and the
/// output gradient `g`.
pub(crate) fn unary_backward(op: UnaryOp, s: &Tensor, g: &Tensor) -> Result<Tensor> {
    if let Some(mut o) = split::elementwise(&[s, g], s.shape(), 1, s.dtype(), |p| {
        Ok(vec![unary_backward(op, &p[0], &p[1])?])
    })? {
        return Ok(o.remove(0));
    }
    let out = s
        .device()
        .backend()
        .unary_backward(op, s.storage(), g.storage(), s.numel())?;
    crate::ops::half::like(out, s.shape().to_vec(), g)
}

/// Parametric ReLU: `x` for `x > 0`, else `weight[c] * x` where `c` indexes dimension 1
/// of `x` (PyTorch's layout); a one-element `weight` is shared by all channels.
pub fn prelu(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened("prelu", &[x, weight], |w| prelu(&w[0], &w[1])) {
        return r;
    }
    check_pair("prelu", x, weight)?;
    let channels = if x.rank() >= 2 { x.shape()[1] } else { 1 };
    let w = weight.numel();
    if weight.rank() > 1 || (w != 1 && w != channels) {
        return arg_err(
            "prelu",
            format!(
                "the slope must have 1 or {channels} (channel) elements for input {:?}, got {:?}",
                x.shape(),
                weight.shape()
            ),
        );
    }
    let plane: usize = if x.rank() >= 2 {
        x.shape()[2..].iter().product()
    } else {
        1
    };
    let geo = PreluGeo {
        n: x.numel(),
        channels,
        plane,
        slopes: w,
    };
    let out = x
        .device()
        .backend()
        .prelu(x.storage(), weight.storage(), geo)?;
    let y = Tensor::like(out, x.shape().to_vec(), x);
    let (xs, ws) = (x.detach(), weight.detach());
    Ok(record(y, "prelu", &[x, weight], move |g| {
        let (dx, dw) =
            xs.device()
                .backend()
                .prelu_backward(xs.storage(), ws.storage(), g.storage(), geo)?;
        let dx = Tensor::like(dx, xs.shape().to_vec(), &xs);
        let dw_full = Tensor::like(dw, xs.shape().to_vec(), &xs);
        // Sum the per-element slope gradients over everything but the channel.
        let dw = if w == 1 {
            dw_full.sum()?.reshape(ws.shape())?
        } else {
            let n = xs.numel() / (channels * plane);
            dw_full
                .reshape(&[n, channels, plane])?
                .sum_dim(&[0, 2], false)?
                .reshape(ws.shape())?
        };
        Ok(vec![Some(dx), Some(dw)])
    }))
}

impl Tensor {
    /// Applies a [`UnaryOp`].
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        unary(self, op)
    }
    /// -x
    pub fn neg(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Neg)
    }
    /// e^x
    pub fn exp(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Log)
    }
    /// Square root.
    pub fn sqrt(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sqrt)
    }
    /// |x| (gradient 0 at 0).
    pub fn abs(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Abs)
    }
    /// The logistic sigmoid; its gradient is `sigma (1 - sigma)`, from the saved output.
    pub fn sigmoid(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sigmoid)
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Tanh)
    }
    /// max(x, 0) (gradient 0 at 0; NaN stays NaN and passes the gradient, as PyTorch).
    pub fn relu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Relu)
    }
    /// `x` for `x > 0`, else `slope * x`.
    pub fn leaky_relu(&self, slope: f64) -> Result<Tensor> {
        unary(self, UnaryOp::LeakyRelu { slope })
    }
    /// PyTorch's `softplus(x, beta, threshold)`: `ln(1 + e^(beta x)) / beta`, and `x`
    /// where `beta x > threshold`. PyTorch's defaults are `beta = 1`, `threshold = 20`.
    pub fn softplus(&self, beta: f64, threshold: f64) -> Result<Tensor> {
        if beta <= 0.0 {
            return arg_err("softplus", format!("beta must be positive, got {beta}"));
        }
        unary(self, UnaryOp::Softplus { beta, threshold })
    }
    /// GELU, exact: `x Phi(x)` with `Phi` the standard normal CDF (PyTorch's
    /// `gelu(x)`, `approximate='none'`). Accurate for negative inputs too (computed
    /// through `erfc`, with no cancellation).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let x = Tensor::from_vec(vec![-1.0f32, 0.0, 1.0], &[3], &Device::cpu())?;
    /// let y = x.gelu()?.to_vec::<f32>()?;
    /// assert!((y[0] + 0.158_655_25).abs() < 1e-6 && y[1] == 0.0);
    /// # Ok(()) }
    /// ```
    pub fn gelu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Gelu)
    }
    /// GELU's tanh approximation, `x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2`
    /// (PyTorch's `gelu(x, approximate='tanh')`).
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        unary(self, UnaryOp::GeluTanh)
    }
    /// SiLU (swish), `x sigmoid(x)`.
    pub fn silu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Silu)
    }
    /// Mish, `x tanh(softplus(x))`.
    pub fn mish(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Mish)
    }
    /// Parametric ReLU with a (trainable) slope per channel (dimension 1) or one slope.
    pub fn prelu(&self, weight: &Tensor) -> Result<Tensor> {
        prelu(self, weight)
    }
    /// `x^exponent` elementwise, PyTorch's `x.pow(exponent)` (`x ** exponent`) for a
    /// scalar exponent; [`Tensor::pow`] takes a tensor of exponents.
    ///
    /// As in PyTorch, a negative `x` with an integer exponent keeps its sign rule
    /// (`(-2)^3 = -8`) and gives NaN with a non-integer one; `x^0 = 1` for every `x`. The
    /// gradient is `exponent * x^(exponent - 1)`, and 0 everywhere when the exponent is 0.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let x = Tensor::from_vec(vec![-2.0f32, 0.5, 3.0], &[3], &Device::cpu())?;
    /// assert_eq!(x.pow_scalar(3.0)?.to_vec::<f32>()?, vec![-8.0, 0.125, 27.0]);
    /// assert!(x.pow_scalar(0.5)?.to_vec::<f32>()?[0].is_nan());
    /// # Ok(()) }
    /// ```
    pub fn pow_scalar(&self, exponent: f64) -> Result<Tensor> {
        unary(self, UnaryOp::PowScalar { exponent })
    }
    /// `scale * x + shift` for scalars.
    pub fn affine(&self, scale: f64, shift: f64) -> Result<Tensor> {
        unary(self, UnaryOp::Affine { scale, shift })
    }
    /// Multiplies by a scalar.
    pub fn mul_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    /// Adds a scalar.
    pub fn add_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, s)
    }
}
