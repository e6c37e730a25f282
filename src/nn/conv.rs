//! Convolution and pooling layers (NCHW), with PyTorch's parameter names, weight
//! layouts and default initialisation (uniform in `±1/sqrt(fan_in)`).

use super::{init, Module, Parameter};
use crate::device::Device;
use crate::error::Result;
use crate::ops::conv2d::ConvOptions;
use crate::ops::matmul::Act;
use crate::tensor::Tensor;

/// `torch.nn.Conv2d`: weight `[out, in / groups, kh, kw]`, bias `[out]`.
#[derive(Debug, Module)]
#[module(hooks(forward_with_activation))]
pub struct Conv2d {
    /// The filters.
    pub weight: Parameter,
    /// One bias per output channel, if any.
    pub bias: Option<Parameter>,
    /// Stride, padding, dilation and groups.
    #[module(skip)]
    pub options: ConvOptions,
}

impl Conv2d {
    /// A `k x k` convolution with stride 1, no padding, a bias.
    pub fn new(device: &Device, in_channels: usize, out_channels: usize, k: usize) -> Conv2d {
        Conv2d::with_options(
            device,
            in_channels,
            out_channels,
            (k, k),
            ConvOptions::default(),
            true,
        )
    }

    /// Any kernel size and options.
    pub fn with_options(
        device: &Device,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        options: ConvOptions,
        bias: bool,
    ) -> Conv2d {
        let groups = options.groups.max(1);
        let shape = [out_channels, in_channels / groups, kernel.0, kernel.1];
        let (weight, bias) = conv_parameters(device, shape, out_channels, bias);
        Conv2d {
            weight,
            bias,
            options,
        }
    }

    /// Builder: stride.
    pub fn stride(mut self, s: usize) -> Conv2d {
        self.options.stride = (s, s);
        self
    }

    /// Builder: zero padding.
    pub fn padding(mut self, p: usize) -> Conv2d {
        self.options.padding = (p, p);
        self
    }
}

/// What the derived `Module` impl calls.
impl Conv2d {
    /// The convolution with its bias added by the product's own kernel.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| b.tensor());
        x.conv2d_act(
            &self.weight.tensor(),
            b.as_ref(),
            self.options,
            Act::Identity,
        )
    }

    /// `act` of the convolution, in the same kernel.
    fn forward_with_activation(&self, x: &Tensor, act: Act) -> Option<Result<Tensor>> {
        let b = self.bias.as_ref().map(|b| b.tensor());
        Some(x.conv2d_act(&self.weight.tensor(), b.as_ref(), self.options, act))
    }
}

/// PyTorch's default initialisation of a convolution's weight (of `shape`) and bias:
/// both uniform in `±1/sqrt(fan_in)`, with the fan-in taken from `weight.size(1) * kh *
/// kw` (for a transposed convolution too, as PyTorch does).
fn conv_parameters(
    device: &Device,
    shape: [usize; 4],
    out_channels: usize,
    bias: bool,
) -> (Parameter, Option<Parameter>) {
    let fan_in = shape[1] * shape[2] * shape[3];
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    let weight = Parameter::new(init::uniform(&shape, -bound, bound, device));
    let bias = bias.then(|| Parameter::new(init::uniform(&[out_channels], -bound, bound, device)));
    (weight, bias)
}

/// `torch.nn.ConvTranspose2d`: weight `[in, out / groups, kh, kw]`, bias `[out]`.
#[derive(Debug, Module)]
pub struct ConvTranspose2d {
    /// The filters.
    pub weight: Parameter,
    /// One bias per output channel, if any.
    pub bias: Option<Parameter>,
    /// Stride, padding, output padding, dilation and groups.
    #[module(skip)]
    pub options: ConvOptions,
}

impl ConvTranspose2d {
    /// A `k x k` transposed convolution with the given stride, and a bias.
    pub fn new(
        device: &Device,
        in_channels: usize,
        out_channels: usize,
        k: usize,
        stride: usize,
    ) -> ConvTranspose2d {
        let options = ConvOptions {
            stride: (stride, stride),
            ..Default::default()
        };
        ConvTranspose2d::with_options(device, in_channels, out_channels, (k, k), options, true)
    }

    /// Any kernel size and options.
    pub fn with_options(
        device: &Device,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        options: ConvOptions,
        bias: bool,
    ) -> ConvTranspose2d {
        let groups = options.groups.max(1);
        let shape = [in_channels, out_channels / groups, kernel.0, kernel.1];
        let (weight, bias) = conv_parameters(device, shape, out_channels, bias);
        ConvTranspose2d {
            weight,
            bias,
            options,
        }
    }

    /// Builder: zero padding removed from the output.
    pub fn padding(mut self, p: usize) -> ConvTranspose2d {
        self.options.padding = (p, p);
        self
    }

    /// Builder: extra output rows and columns.
    pub fn output_padding(mut self, p: usize) -> ConvTranspose2d {
        self.options.output_padding = (p, p);
        self
    }
}

/// What the derived `Module` impl calls.
impl ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| b.tensor());
        x.conv_transpose2d(&self.weight.tensor(), b.as_ref(), self.options)
    }
}

/// `torch.nn.MaxPool2d(kernel, stride, padding)`; stride defaults to the kernel size.
#[derive(Clone, Copy, Debug, Module)]
pub struct MaxPool2d {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Implicit padding (never chosen as the maximum).
    pub padding: (usize, usize),
}

impl MaxPool2d {
    /// `k x k` windows with stride `k`.
    pub fn new(k: usize) -> MaxPool2d {
        MaxPool2d {
            kernel: (k, k),
            stride: (k, k),
            padding: (0, 0),
        }
    }
}

/// What the derived `Module` impl calls.
impl MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(self.kernel, self.stride, self.padding)
    }
}

/// `torch.nn.AvgPool2d(kernel, stride, padding)` (padding counted in the average).
#[derive(Clone, Copy, Debug, Module)]
pub struct AvgPool2d {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Implicit zero padding.
    pub padding: (usize, usize),
}

impl AvgPool2d {
    /// `k x k` windows with stride `k`.
    pub fn new(k: usize) -> AvgPool2d {
        AvgPool2d {
            kernel: (k, k),
            stride: (k, k),
            padding: (0, 0),
        }
    }
}

/// What the derived `Module` impl calls.
impl AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool2d(self.kernel, self.stride, self.padding)
    }
}

/// `torch.nn.AdaptiveAvgPool2d(output_size)`.
#[derive(Clone, Copy, Debug, Module)]
pub struct AdaptiveAvgPool2d(pub (usize, usize));

/// What the derived `Module` impl calls.
impl AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool2d(self.0)
    }
}

/// `torch.nn.Upsample(scale_factor, mode="nearest")` with integer factors.
#[derive(Clone, Copy, Debug, Module)]
pub struct Upsample(pub usize);

/// What the derived `Module` impl calls.
impl Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.upsample_nearest((self.0, self.0))
    }
}
