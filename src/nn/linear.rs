//! `Linear`: `y = x W^T + b` with PyTorch's layout (`weight [out, in]`) and default
//! initialisation (both uniform in `±1/sqrt(in)`), drawn from the device's generator.

use super::{init, Module, Parameter};
use crate::device::Device;
use crate::error::Result;
use crate::ops::matmul::Act;
use crate::tensor::Tensor;

/// A fully connected layer.
#[derive(Debug, Module)]
#[module(hooks(forward_with_activation))]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Parameter,
    /// `[out_features]`, if the layer has a bias.
    pub bias: Option<Parameter>,
}

impl Linear {
    /// A layer with a bias, initialised as PyTorch does (uniform in `±1/sqrt(in)`, from
    /// the device's seeded generator).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let layer = Linear::new(&dev, 3, 2);
    /// assert_eq!(layer.weight.tensor().shape(), [2, 3]); // [out, in], as PyTorch
    /// let y = layer.forward(&Tensor::ones(&[4, 3], &dev)?)?;
    /// assert_eq!(y.shape(), [4, 2]);
    /// # Ok(()) }
    /// ```
    pub fn new(device: &Device, in_features: usize, out_features: usize) -> Linear {
        Linear::with_bias(device, in_features, out_features, true)
    }

    /// A layer with or without a bias.
    pub fn with_bias(
        device: &Device,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Linear {
        let bound = 1.0 / (in_features.max(1) as f64).sqrt();
        let weight = init::uniform(&[out_features, in_features], -bound, bound, device);
        let bias =
            bias.then(|| Parameter::new(init::uniform(&[out_features], -bound, bound, device)));
        Linear {
            weight: Parameter::new(weight),
            bias,
        }
    }

    /// A layer with given weights (`[out, in]`) and bias (`[out]`).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Linear {
        Linear {
            weight: Parameter::new(weight),
            bias: bias.map(Parameter::new),
        }
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.tensor().shape()[1]
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.tensor().shape()[0]
    }

    /// `x W^T + b + residual` with the residual added in the product's epilogue (no
    /// pass of its own): a transformer's residual connection after this layer.
    pub(crate) fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Parameter::tensor);
        crate::ops::fused::linear_add(
            x,
            &self.weight.tensor(),
            bias.as_ref(),
            Act::Identity,
            Some(residual),
        )
    }
}

/// What the derived `Module` impl calls.
impl Linear {
    fn forward_act(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Parameter::tensor);
        x.linear_act(&self.weight.tensor(), bias.as_ref(), act)
    }

    /// `x W^T + b`, the bias added by the product's own kernel.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, Act::Identity)
    }

    /// `act(x W^T + b)` in the same kernel.
    fn forward_with_activation(&self, x: &Tensor, act: Act) -> Option<Result<Tensor>> {
        Some(self.forward_act(x, act))
    }
}
