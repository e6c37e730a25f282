//! Layer, RMS and group normalisation with PyTorch's names, defaults and parameter
//! names (`torch.nn.LayerNorm`, `torch.nn.RMSNorm`, `torch.nn.GroupNorm`). Each runs one
//! fused op of [`crate::ops::norm`]: on the GPU one dispatch forward and at most two
//! backward. Unlike batch normalisation they keep no running statistics, so training
//! and evaluation behave alike.

use super::{Module, Parameter};
use crate::device::Device;
use crate::error::{arg_err, Error, Result};
use crate::ops::layout::fill;
use crate::ops::norm::{group_norm, layer_norm, rms_norm};
use crate::tensor::{DType, Tensor};

fn check_dtype(op: &'static str, dtype: DType) -> Result<()> {
    if !dtype.is_float() {
        return Err(Error::DType {
            op,
            msg: format!("parameters must be of a float dtype, not {dtype:?}"),
        });
    }
    Ok(())
}

fn check_eps(op: &'static str, eps: f64) -> Result<()> {
    if !(eps >= 0.0 && eps.is_finite()) {
        return arg_err(op, format!("eps must be finite and >= 0, got {eps}"));
    }
    Ok(())
}

fn check_shape(op: &'static str, normalized_shape: &[usize]) -> Result<()> {
    if normalized_shape.is_empty() {
        return arg_err(op, "normalized_shape must have at least one dimension");
    }
    Ok(())
}

/// A parameter of `shape` filled with `value`.
fn filled(shape: &[usize], dtype: DType, value: f64, device: &Device) -> Result<Parameter> {
    Ok(Parameter::new(fill(shape, dtype, value, device)?))
}

/// Settings of a [`LayerNorm`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormOptions {
    /// Added to the variance before the square root (default `1e-5`).
    pub eps: f64,
    /// A learnable `weight` (init 1) and, with `bias`, a learnable `bias` (init 0)
    /// (default `true`).
    pub elementwise_affine: bool,
    /// A learnable `bias` when `elementwise_affine` (default `true`).
    pub bias: bool,
    /// Element type of the parameters (default `F32`).
    pub dtype: DType,
}

impl Default for LayerNormOptions {
    fn default() -> Self {
        LayerNormOptions {
            eps: 1e-5,
            elementwise_affine: true,
            bias: true,
            dtype: DType::F32,
        }
    }
}

/// Layer normalisation over the trailing `normalized_shape` (`torch.nn.LayerNorm`):
/// [`crate::ops::norm::layer_norm`] with the layer's `weight` and `bias` (each of
/// `normalized_shape`).
///
/// ```
/// use wgrad::nn::{LayerNorm, Module};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let ln = LayerNorm::new(&dev, &[8])?;
/// let y = ln.forward(&Tensor::randn_seeded(&[4, 8], 1, &dev)?)?;
/// assert_eq!(y.shape(), [4, 8]);
/// let names: Vec<String> = ln.state_dict().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["weight", "bias"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Module)]
pub struct LayerNorm {
    /// The scale, `normalized_shape`; `None` without `elementwise_affine`.
    pub weight: Option<Parameter>,
    /// The shift, `normalized_shape`; `None` without `elementwise_affine` or `bias`.
    pub bias: Option<Parameter>,
    /// Added to the variance before the square root.
    pub eps: f64,
    normalized_shape: Vec<usize>,
}

impl LayerNorm {
    /// A layer with PyTorch's defaults (`eps = 1e-5`, weight and bias, `f32`).
    pub fn new(device: &Device, normalized_shape: &[usize]) -> Result<Self> {
        Self::with_options(device, normalized_shape, LayerNormOptions::default())
    }

    /// A layer with other settings.
    pub fn with_options(
        device: &Device,
        normalized_shape: &[usize],
        options: LayerNormOptions,
    ) -> Result<Self> {
        let op = "LayerNorm";
        check_shape(op, normalized_shape)?;
        check_dtype(op, options.dtype)?;
        check_eps(op, options.eps)?;
        let dt = options.dtype;
        let affine = options.elementwise_affine;
        Ok(LayerNorm {
            weight: affine
                .then(|| filled(normalized_shape, dt, 1.0, device))
                .transpose()?,
            bias: (affine && options.bias)
                .then(|| filled(normalized_shape, dt, 0.0, device))
                .transpose()?,
            eps: options.eps,
            normalized_shape: normalized_shape.to_vec(),
        })
    }

    /// The trailing dimensions each row spans.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.as_ref().map(Parameter::tensor);
        let b = self.bias.as_ref().map(Parameter::tensor);
        layer_norm(x, &self.normalized_shape, w.as_ref(), b.as_ref(), self.eps)
    }
}

/// Settings of an [`RMSNorm`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RMSNormOptions {
    /// Added to the mean square before the square root; `None` (the default) is
    /// `torch.finfo(dtype).eps` of the input's type.
    pub eps: Option<f64>,
    /// A learnable `weight` (init 1) (default `true`).
    pub elementwise_affine: bool,
    /// Element type of the parameters (default `F32`).
    pub dtype: DType,
}

impl Default for RMSNormOptions {
    fn default() -> Self {
        RMSNormOptions {
            eps: None,
            elementwise_affine: true,
            dtype: DType::F32,
        }
    }
}

/// Root-mean-square normalisation over the trailing `normalized_shape`
/// (`torch.nn.RMSNorm`): [`crate::ops::norm::rms_norm`] with the layer's `weight`.
///
/// ```
/// use wgrad::nn::{Module, RMSNorm};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let norm = RMSNorm::new(&dev, &[8])?;
/// assert_eq!(norm.forward(&Tensor::ones(&[2, 8], &dev)?)?.shape(), [2, 8]);
/// # Ok(()) }
/// ```
#[derive(Debug, Module)]
pub struct RMSNorm {
    /// The scale, `normalized_shape`; `None` without `elementwise_affine`.
    pub weight: Option<Parameter>,
    /// Added to the mean square; `None` is `torch.finfo(dtype).eps`.
    pub eps: Option<f64>,
    normalized_shape: Vec<usize>,
}

impl RMSNorm {
    /// A layer with PyTorch's defaults (`eps = None`, a weight, `f32`).
    pub fn new(device: &Device, normalized_shape: &[usize]) -> Result<Self> {
        Self::with_options(device, normalized_shape, RMSNormOptions::default())
    }

    /// A layer with other settings.
    pub fn with_options(
        device: &Device,
        normalized_shape: &[usize],
        options: RMSNormOptions,
    ) -> Result<Self> {
        let op = "RMSNorm";
        check_shape(op, normalized_shape)?;
        check_dtype(op, options.dtype)?;
        if let Some(eps) = options.eps {
            check_eps(op, eps)?;
        }
        Ok(RMSNorm {
            weight: options
                .elementwise_affine
                .then(|| filled(normalized_shape, options.dtype, 1.0, device))
                .transpose()?,
            eps: options.eps,
            normalized_shape: normalized_shape.to_vec(),
        })
    }

    /// The trailing dimensions each row spans.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.as_ref().map(Parameter::tensor);
        rms_norm(x, &self.normalized_shape, w.as_ref(), self.eps)
    }
}

/// Settings of a [`GroupNorm`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormOptions {
    /// Added to the variance before the square root (default `1e-5`).
    pub eps: f64,
    /// Learnable per-channel `weight` (init 1) and `bias` (init 0) (default `true`).
    pub affine: bool,
    /// Element type of the parameters (default `F32`).
    pub dtype: DType,
}

impl Default for GroupNormOptions {
    fn default() -> Self {
        GroupNormOptions {
            eps: 1e-5,
            affine: true,
            dtype: DType::F32,
        }
    }
}

/// Group normalisation of `[N, C, *]` inputs (`torch.nn.GroupNorm`):
/// [`crate::ops::norm::group_norm`] with per-channel `weight` and `bias` (`[C]`).
/// `num_groups == num_channels` is instance normalisation with affine parameters.
///
/// ```
/// use wgrad::nn::{GroupNorm, Module};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let gn = GroupNorm::new(&dev, 2, 6)?;
/// let y = gn.forward(&Tensor::randn_seeded(&[3, 6, 4, 4], 1, &dev)?)?;
/// assert_eq!(y.shape(), [3, 6, 4, 4]);
/// assert!(GroupNorm::new(&dev, 4, 6).is_err()); // 6 channels do not split in 4
/// # Ok(()) }
/// ```
#[derive(Debug, Module)]
pub struct GroupNorm {
    /// Per-channel scale, `[C]`; `None` without `affine`.
    pub weight: Option<Parameter>,
    /// Per-channel shift, `[C]`; `None` without `affine`.
    pub bias: Option<Parameter>,
    /// Added to the variance before the square root.
    pub eps: f64,
    num_groups: usize,
    num_channels: usize,
}

impl GroupNorm {
    /// A layer with PyTorch's defaults (`eps = 1e-5`, affine, `f32`).
    pub fn new(device: &Device, num_groups: usize, num_channels: usize) -> Result<Self> {
        Self::with_options(
            device,
            num_groups,
            num_channels,
            GroupNormOptions::default(),
        )
    }

    /// A layer with other settings.
    pub fn with_options(
        device: &Device,
        num_groups: usize,
        num_channels: usize,
        options: GroupNormOptions,
    ) -> Result<Self> {
        let op = "GroupNorm";
        if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
            return arg_err(
                op,
                format!(
                    "num_channels ({num_channels}) must be divisible by num_groups \
                     ({num_groups})"
                ),
            );
        }
        check_dtype(op, options.dtype)?;
        check_eps(op, options.eps)?;
        let (c, dt) = ([num_channels], options.dtype);
        let (weight, bias) = if options.affine {
            (
                Some(filled(&c, dt, 1.0, device)?),
                Some(filled(&c, dt, 0.0, device)?),
            )
        } else {
            (None, None)
        };
        Ok(GroupNorm {
            weight,
            bias,
            eps: options.eps,
            num_groups,
            num_channels,
        })
    }

    /// The number of groups.
    pub fn num_groups(&self) -> usize {
        self.num_groups
    }

    /// The number of channels `C`.
    pub fn num_channels(&self) -> usize {
        self.num_channels
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.as_ref().map(Parameter::tensor);
        let b = self.bias.as_ref().map(Parameter::tensor);
        group_norm(x, self.num_groups, w.as_ref(), b.as_ref(), self.eps)
    }
}
