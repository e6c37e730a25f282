//! Batch normalisation with PyTorch's semantics (`torch.nn.BatchNorm1d`/`2d`).
//!
//! In training mode each channel `c` (dimension 1) is normalised with the batch's mean
//! and biased variance over every other dimension,
//! `y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c`,
//! and the running statistics move towards the batch's:
//! `running = (1 - momentum) running + momentum batch_stat`, where the variance that
//! goes into `running_var` is the unbiased one (`n / (n - 1)` times the biased).
//! In evaluation mode the running statistics replace the batch's.
//!
//! Both modes run the fused op [`crate::ops::batchnorm::batch_norm`]: on the GPU a
//! training forward is two or three dispatches (statistics, finalise with the in-place
//! update of the running statistics and `num_batches_tracked`, normalise) and so is its
//! backward; evaluation is two. Nothing is read back.

use super::{Buffer, Module, Parameter, TrainFlag};
use crate::autograd::no_grad;
use crate::device::Device;
use crate::error::{arg_err, shape_err, Error, Result};
use crate::ops::batchnorm::{batch_norm, BatchNormArgs};
use crate::ops::layout::fill;
use crate::tensor::{DType, Tensor};

/// Settings of a batch-norm layer; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormOptions {
    /// Added to the variance before the square root (default `1e-5`).
    pub eps: f64,
    /// Weight of the batch's statistic in the running average (default `0.1`).
    pub momentum: f64,
    /// Learnable per-channel `weight` (init 1) and `bias` (init 0) (default `true`).
    pub affine: bool,
    /// Element type of the parameters and running statistics (default `F32`; `F64`
    /// on the CPU for gradient checks).
    pub dtype: DType,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
            dtype: DType::F32,
        }
    }
}

/// Batch normalisation over the channel dimension (1) of inputs with `DIMS` kinds of
/// layout: use the aliases [`BatchNorm1d`] (`[N, C]` or `[N, C, L]`) and
/// [`BatchNorm2d`] (`[N, C, H, W]`).
///
/// Parameters: `weight` and `bias`, `[C]`. Buffers (saved in the `state_dict`, never
/// trained): `running_mean` (init 0), `running_var` (init 1) and
/// `num_batches_tracked` (a scalar counting training batches; `f32` here, since GPU
/// tensors are updated in place only as floats, where PyTorch uses `int64`).
///
/// ```
/// use wgrad::nn::{BatchNorm2d, Module};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let bn = BatchNorm2d::new(&dev, 3);
/// let x = Tensor::randn_seeded(&[4, 3, 5, 5], 1, &dev)?;
/// let y = bn.forward(&x)?; // per channel: mean 0, variance 1
/// assert_eq!(y.shape(), &[4, 3, 5, 5]);
/// let names: Vec<String> = bn.state_dict().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(
///     names,
///     ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Module)]
pub struct BatchNorm<const DIMS: usize> {
    /// Per-channel scale (gamma), `[C]`; `None` when built with `affine: false`.
    pub weight: Option<Parameter>,
    /// Per-channel shift (beta), `[C]`; `None` when built with `affine: false`.
    pub bias: Option<Parameter>,
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Weight of the batch's statistic in the running average.
    pub momentum: f64,
    running_mean: Buffer,
    running_var: Buffer,
    num_batches_tracked: Buffer,
    num_features: usize,
    training: TrainFlag,
}

/// Batch normalisation of `[N, C]` or `[N, C, L]` inputs (`torch.nn.BatchNorm1d`).
pub type BatchNorm1d = BatchNorm<1>;

/// Batch normalisation of `[N, C, H, W]` inputs (`torch.nn.BatchNorm2d`).
pub type BatchNorm2d = BatchNorm<2>;

impl<const DIMS: usize> BatchNorm<DIMS> {
    const VALID: () = assert!(DIMS == 1 || DIMS == 2, "BatchNorm<DIMS>: DIMS is 1 or 2");

    fn name() -> &'static str {
        if DIMS == 1 {
            "BatchNorm1d"
        } else {
            "BatchNorm2d"
        }
    }

    /// A layer for `num_features` channels with PyTorch's defaults (`eps = 1e-5`,
    /// `momentum = 0.1`, affine, `f32`).
    pub fn new(device: &Device, num_features: usize) -> Self {
        Self::with_options(device, num_features, BatchNormOptions::default())
            .expect("BatchNorm: the default options are valid")
    }

    /// A layer with other settings (an `F64` layer lives on the CPU).
    pub fn with_options(
        device: &Device,
        num_features: usize,
        options: BatchNormOptions,
    ) -> Result<Self> {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        let op = Self::name();
        if num_features == 0 {
            return arg_err(op, "num_features must be at least 1");
        }
        if !options.dtype.is_float() {
            return Err(Error::DType {
                op,
                msg: format!(
                    "parameters must be of a float dtype, not {:?}",
                    options.dtype
                ),
            });
        }
        if !(0.0..=1.0).contains(&options.momentum) {
            return arg_err(
                op,
                format!("momentum must be in [0, 1], got {}", options.momentum),
            );
        }
        if !(options.eps >= 0.0 && options.eps.is_finite()) {
            return arg_err(
                op,
                format!("eps must be finite and >= 0, got {}", options.eps),
            );
        }
        let c = [num_features];
        let dt = options.dtype;
        let (weight, bias) = if options.affine {
            (
                Some(Parameter::new(fill(&c, dt, 1.0, device)?)),
                Some(Parameter::new(fill(&c, dt, 0.0, device)?)),
            )
        } else {
            (None, None)
        };
        Ok(BatchNorm {
            weight,
            bias,
            eps: options.eps,
            momentum: options.momentum,
            running_mean: Buffer::new(fill(&c, dt, 0.0, device)?),
            running_var: Buffer::new(fill(&c, dt, 1.0, device)?),
            num_batches_tracked: Buffer::new(fill(&[], dt, 0.0, device)?),
            num_features,
            training: TrainFlag::default(),
        })
    }

    /// The number of channels `C`.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// True in training mode.
    pub fn is_training(&self) -> bool {
        self.training.get()
    }

    /// The running mean, `[C]` (a handle to the buffer itself).
    pub fn running_mean(&self) -> Tensor {
        self.running_mean.tensor()
    }

    /// The running (unbiased) variance, `[C]` (a handle to the buffer itself).
    pub fn running_var(&self) -> Tensor {
        self.running_var.tensor()
    }

    /// How many training batches have updated the running statistics (a scalar).
    pub fn num_batches_tracked(&self) -> Tensor {
        self.num_batches_tracked.tensor()
    }

    /// Resets the running statistics to mean 0, variance 1 and no batches, in place.
    pub fn reset_running_stats(&self) -> Result<()> {
        no_grad(|| {
            for (b, v) in [
                (&self.running_mean, 0.0),
                (&self.running_var, 1.0),
                (&self.num_batches_tracked, 0.0),
            ] {
                let t = b.tensor();
                t.copy_from(&fill(t.shape(), t.dtype(), v, t.device())?)?;
            }
            Ok(())
        })
    }

    /// Checks the input's layout, channels and element type.
    fn plan(&self, x: &Tensor) -> Result<()> {
        let op = Self::name();
        let ok_rank = if DIMS == 1 {
            x.rank() == 2 || x.rank() == 3
        } else {
            x.rank() == 4
        };
        if !ok_rank {
            let want = if DIMS == 1 {
                "a 2-D [N, C] or 3-D [N, C, L] input"
            } else {
                "a 4-D [N, C, H, W] input"
            };
            return shape_err(op, format!("expected {want}, got {:?}", x.shape()));
        }
        if x.shape()[1] != self.num_features {
            return shape_err(
                op,
                format!(
                    "input {:?} has {} channels (dimension 1), the layer was built for {}",
                    x.shape(),
                    x.shape()[1],
                    self.num_features
                ),
            );
        }
        let own = self.running_mean.tensor().dtype();
        if x.dtype() != own {
            return Err(Error::DType {
                op,
                msg: format!(
                    "the input is {:?}, the layer's parameters and statistics are {own:?}",
                    x.dtype()
                ),
            });
        }
        Ok(())
    }
}

/// What the derived `Module` impl calls.
impl<const DIMS: usize> BatchNorm<DIMS> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.plan(x)?;
        let training = self.training.get();
        if training {
            let n = x.numel() / self.num_features;
            if n < 2 {
                return arg_err(
                    Self::name(),
                    format!(
                        "expected more than 1 value per channel when training, got input {:?}",
                        x.shape()
                    ),
                );
            }
        }
        let weight = self.weight.as_ref().map(|p| p.tensor());
        let bias = self.bias.as_ref().map(|p| p.tensor());
        let (rm, rv, count) = (
            self.running_mean.tensor(),
            self.running_var.tensor(),
            self.num_batches_tracked.tensor(),
        );
        batch_norm(
            x,
            &BatchNormArgs {
                weight: weight.as_ref(),
                bias: bias.as_ref(),
                running_mean: Some(&rm),
                running_var: Some(&rv),
                num_batches_tracked: Some(&count),
                training,
                momentum: self.momentum,
                eps: self.eps,
            },
        )
    }
}
