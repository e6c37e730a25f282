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
    pub label_smoothing: f32,
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
