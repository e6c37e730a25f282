//! Losses with PyTorch's definitions and reductions. Cross-entropy rests on the fused
//! kernel; label smoothing, binary cross-entropy with logits and MSE are compositions of
//! differentiable ops (no new kernels). A mean over an empty batch is NaN, as PyTorch's.

use crate::error::{shape_err, Result};
use crate::shape;
use crate::tensor::{check_pair, Tensor};

/// How per-element losses are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean (the default).
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// No reduction: one loss per element (or per sample).
    None,
}

impl Reduction {
    fn apply(self, per: Tensor) -> Result<Tensor> {
        match self {
            Reduction::Mean => per.mean(),
            Reduction::Sum => per.sum(),
            Reduction::None => Ok(per),
        }
    }
}

/// Mean squared error.
#[derive(Clone, Copy, Debug, Default)]
pub struct MSELoss {
    /// How to combine the squared errors.
    pub reduction: Reduction,
}

impl MSELoss {
    /// The loss of `input` against `target` (same shapes).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        check_pair("mse_loss", input, target)?;
        if input.shape() != target.shape() {
            return shape_err(
                "mse_loss",
                format!(
                    "{} vs {}: shapes differ",
                    shape::fmt(input.shape()),
                    shape::fmt(target.shape())
                ),
            );
        }
        let d = input.sub(target)?;
        self.reduction.apply(d.mul(&d)?)
    }
}

/// Softmax cross-entropy from logits `[N, C]` and `u32` class indices `[N]`, with
/// optional label smoothing: the target distribution is `(1 - s) onehot + s / C`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CrossEntropyLoss {
    /// How to combine the per-sample losses.
    pub reduction: Reduction,
    /// Label smoothing `s` in `[0, 1]`.
    pub label_smoothing: f64,
}

impl CrossEntropyLoss {
    /// The loss of `logits` against `targets`.
    pub fn forward(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let s = self.label_smoothing;
        if !(0.0..=1.0).contains(&s) {
            return crate::error::arg_err(
                "cross_entropy",
                format!("label smoothing must be in [0, 1], got {s}"),
            );
        }
        let nll = crate::ops::loss::cross_entropy_per_sample(logits, targets)?;
        let per = if s == 0.0 {
            nll
        } else {
            // -sum_j (s / C) log p_j = -s * mean_j log p_j
            let smooth = logits
                .log_softmax(1)?
                .mean_dim(&[1], false)?
                .mul_scalar(-s)?;
            nll.mul_scalar(1.0 - s)?.add(&smooth)?
        };
        self.reduction.apply(per)
    }
}

/// Binary cross-entropy on logits, `-(w y log sigma(x) + (1 - y) log(1 - sigma(x)))` in a
/// stable form (see [`crate::ops::loss::bce_with_logits_per_element`]); targets in
/// `[0, 1]`, same shape as the logits.
#[derive(Clone, Debug, Default)]
pub struct BCEWithLogitsLoss {
    /// How to combine the per-element losses.
    pub reduction: Reduction,
    /// The weight `w` of positive examples, broadcast over the logits (`[C]` for `[N, C]`
    /// logits: one per class, as PyTorch's `pos_weight`); `None` weighs them 1.
    pub pos_weight: Option<Tensor>,
}

impl BCEWithLogitsLoss {
    /// The loss of `logits` against `targets`.
    pub fn forward(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let per = crate::ops::loss::bce_with_logits_per_element(
            logits,
            targets,
            self.pos_weight.as_ref(),
        )?;
        self.reduction.apply(per)
    }
}

/// PyTorch's `NLLLoss`: the negative log-likelihood of log-probabilities `[N, C]` (from
/// [`Tensor::log_softmax`]) against `u32` class indices `[N]`, with optional class
/// weights and an ignored class (see [`crate::ops::loss::nll_loss_parts`]). The mean is
/// PyTorch's weighted mean: the weighted sum divided by the sum of the weights of the
/// samples not ignored (NaN when there are none). `Reduction::None` gives one loss per
/// sample, 0 for ignored ones.
///
/// ```
/// use wgrad::nn::{NLLLoss, Reduction};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let logp = Tensor::from_vec(vec![-1.0f32, -2.0, -3.0, -4.0], &[2, 2], &dev)?;
/// let target = Tensor::from_vec(vec![0u32, 1], &[2], &dev)?;
/// let w = Tensor::from_vec(vec![1.0f32, 3.0], &[2], &dev)?;
/// let loss = NLLLoss::default().weight(w).forward(&logp, &target)?;
/// assert_eq!(loss.item()?, (1.0 * 1.0 + 3.0 * 4.0) / (1.0 + 3.0));
/// let per = NLLLoss::default().ignore_index(1).reduction(Reduction::None);
/// assert_eq!(per.forward(&logp, &target)?.to_vec::<f32>()?, [1.0, 0.0]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct NLLLoss {
    /// How to combine the per-sample losses.
    pub reduction: Reduction,
    /// One weight per class, `[C]`; `None` weighs every class 1.
    pub weight: Option<Tensor>,
    /// A class whose samples count neither in the loss nor in the mean's divisor; it must
    /// be below `C` (the targets are `u32`: there is no `-100`).
    pub ignore_index: Option<u32>,
}

impl NLLLoss {
    /// With class weights `[C]`.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// With an ignored class.
    pub fn ignore_index(mut self, class: u32) -> Self {
        self.ignore_index = Some(class);
        self
    }

    /// With a reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The loss of log-probabilities `input` `[N, C]` against `target` `[N]`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        input.nll_loss_with(
            target,
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
        )
    }
}

/// PyTorch's `BCELoss`: binary cross-entropy of probabilities against targets in `[0, 1]`
/// of the same shape, `-w (y log p + (1 - y) log(1 - p))` with each log clamped at -100
/// (see [`crate::ops::loss::binary_cross_entropy_per_element`], also for the gradient,
/// PyTorch's). For logits, [`BCEWithLogitsLoss`] is stabler.
#[derive(Clone, Debug, Default)]
pub struct BCELoss {
    /// How to combine the per-element losses.
    pub reduction: Reduction,
    /// A weight broadcast to the input's shape (e.g. `[C]` for `[N, C]`); `None` is 1.
    pub weight: Option<Tensor>,
}

impl BCELoss {
    /// With a weight broadcast to the input's shape.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// With a reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The loss of probabilities `input` against `target`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        input.binary_cross_entropy_with(target, self.weight.as_ref(), self.reduction)
    }
}

impl Tensor {
    /// [`Tensor::nll_loss`] with options: class weights `[C]`, an ignored class (below
    /// `C`) and a reduction; the mean is PyTorch's weighted mean (see [`NLLLoss`]).
    pub fn nll_loss_with(
        &self,
        target: &Tensor,
        weight: Option<&Tensor>,
        ignore_index: Option<u32>,
        reduction: Reduction,
    ) -> Result<Tensor> {
        let (per, divisor) = crate::ops::loss::nll_loss_parts(self, target, weight, ignore_index)?;
        match (reduction, divisor) {
            (Reduction::Mean, Some(d)) => per.sum()?.div(&d),
            (r, _) => r.apply(per),
        }
    }

    /// [`Tensor::binary_cross_entropy`] with a weight broadcast to the input's shape and a
    /// reduction (see [`BCELoss`]).
    pub fn binary_cross_entropy_with(
        &self,
        target: &Tensor,
        weight: Option<&Tensor>,
        reduction: Reduction,
    ) -> Result<Tensor> {
        reduction.apply(crate::ops::loss::binary_cross_entropy_per_element(
            self, target, weight,
        )?)
    }
}
