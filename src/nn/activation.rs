//! The lecture's activations as modules: sigmoid, tanh, ReLU, softplus, leaky ReLU,
//! noisy ReLU (noise only in training mode) and parametric ReLU with a trainable slope.

use super::{Module, Parameter, TrainFlag};
use crate::device::Device;
use crate::error::Result;
use crate::ops::matmul::Act;
use crate::tensor::Tensor;

macro_rules! stateless {
    ($(#[$doc:meta])* $name:ident, $act:expr, |$x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, Module)]
        #[module(hooks(fusable_activation))]
        pub struct $name;
        /// What the derived `Module` impl calls.
        impl $name {
            fn forward(&self, $x: &Tensor) -> Result<Tensor> {
                $body
            }
            fn fusable_activation(&self) -> Option<Act> {
                Some($act)
            }
        }
    };
}

stateless!(
    /// `1 / (1 + e^-x)`.
    Sigmoid, Act::Sigmoid, |x| x.sigmoid());
stateless!(
    /// `tanh x`.
    Tanh, Act::Tanh, |x| x.tanh());
stateless!(
    /// `max(x, 0)`. After a `Linear` or `Conv2d` in a [`Sequential`](super::Sequential)
    /// it runs in the layer's own kernel.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let x = Tensor::from_vec(vec![-1.0f32, 0.5], &[2], &Device::cpu())?;
    /// assert_eq!(ReLU.forward(&x)?.to_vec::<f32>()?, [0.0, 0.5]);
    /// # Ok(()) }
    /// ```
    ReLU, Act::Relu, |x| x.relu());
stateless!(
    /// Passes the input through.
    Identity, Act::Identity, |x| Ok(x.clone()));
stateless!(
    /// SiLU (swish), `x sigmoid(x)`. Fuses into a preceding `Linear` or `Conv2d` in a
    /// [`Sequential`](super::Sequential) (which then saves the pre-activation).
    SiLU, Act::Silu, |x| x.silu());
stateless!(
    /// Mish, `x tanh(softplus(x))`. Fuses like [`SiLU`].
    Mish, Act::Mish, |x| x.mish());

/// Which GELU: PyTorch's `approximate` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GeluApproximate {
    /// Exact, `x Phi(x)` (PyTorch's `'none'`).
    #[default]
    None,
    /// `x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2` (PyTorch's `'tanh'`).
    Tanh,
}

/// GELU, exact by default (PyTorch's `nn.GELU(approximate=...)`). Fuses into a preceding
/// `Linear` or `Conv2d` in a [`Sequential`](super::Sequential), which then saves the
/// pre-activation for the backward.
///
/// ```
/// use wgrad::prelude::*;
/// use wgrad::nn::{GeluApproximate, GELU};
/// # fn main() -> wgrad::Result<()> {
/// let x = Tensor::from_vec(vec![1.0f32], &[1], &Device::cpu())?;
/// let exact = GELU::default().forward(&x)?.item()?;
/// let tanh = GELU { approximate: GeluApproximate::Tanh }.forward(&x)?.item()?;
/// assert!((exact - 0.841_344_7).abs() < 1e-6 && (tanh - 0.841_192).abs() < 1e-6);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, Module)]
#[module(hooks(fusable_activation))]
pub struct GELU {
    /// Exact or the tanh approximation.
    #[module(skip)]
    pub approximate: GeluApproximate,
}

/// What the derived `Module` impl calls.
impl GELU {
    fn act(&self) -> Act {
        match self.approximate {
            GeluApproximate::None => Act::Gelu,
            GeluApproximate::Tanh => Act::GeluTanh,
        }
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.act().apply_op(x)
    }
    fn fusable_activation(&self) -> Option<Act> {
        Some(self.act())
    }
}

/// `ln(1 + e^(beta x)) / beta`, linear where `beta x > threshold` (PyTorch's defaults:
/// `beta = 1`, `threshold = 20`).
#[derive(Clone, Copy, Debug, Module)]
pub struct Softplus {
    /// Sharpness.
    pub beta: f64,
    /// Where the function becomes the identity.
    pub threshold: f64,
}

impl Default for Softplus {
    fn default() -> Self {
        Softplus {
            beta: 1.0,
            threshold: 20.0,
        }
    }
}

/// What the derived `Module` impl calls.
impl Softplus {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.softplus(self.beta, self.threshold)
    }
}

/// `x` for `x > 0`, else `slope * x` (PyTorch's default slope: 0.01).
#[derive(Clone, Copy, Debug, Module)]
#[module(hooks(fusable_activation))]
pub struct LeakyReLU(pub f64);

impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU(0.01)
    }
}

/// What the derived `Module` impl calls.
impl LeakyReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.leaky_relu(self.0)
    }
    fn fusable_activation(&self) -> Option<Act> {
        Some(Act::LeakyRelu(self.0))
    }
}

/// `max(x + eps, 0)` with `eps ~ N(0, sigma^2)` in training mode, `relu` in evaluation.
#[derive(Debug, Default, Module)]
pub struct NoisyReLU {
    /// The noise's standard deviation.
    pub sigma: f64,
    training: TrainFlag,
}

impl NoisyReLU {
    /// Noise of standard deviation `sigma`.
    pub fn new(sigma: f64) -> NoisyReLU {
        NoisyReLU {
            sigma,
            training: TrainFlag::default(),
        }
    }
}

/// What the derived `Module` impl calls.
impl NoisyReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.noisy_relu(self.sigma, self.training.get())
    }
}

/// Parametric ReLU: `x` for `x > 0`, else `a * x` with a trainable slope `a`, one shared
/// or one per channel (dimension 1), initialised to 0.25 as in PyTorch.
#[derive(Debug, Module)]
pub struct PReLU {
    /// The slopes, `[num_parameters]`.
    pub weight: Parameter,
}

impl PReLU {
    /// `num_parameters` slopes (1, or the number of channels) starting at `init`.
    pub fn new(device: &Device, num_parameters: usize, init: f64) -> PReLU {
        let w = Tensor::full(&[num_parameters], init, device).expect("1-D shape");
        PReLU {
            weight: Parameter::new(w),
        }
    }
}

/// What the derived `Module` impl calls.
impl PReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.prelu(&self.weight.tensor())
    }
}
