//! Losses. `cross_entropy` is fused (one kernel for the per-row loss through the stable
//! log-sum-exp, one for its gradient `softmax - onehot`), so logits of +-1000 are fine.
//! `mse_loss` and the binary cross-entropy on logits are composites of elementwise ops and
//! `mean` and need no kernel of their own. Mean losses of an empty batch are NaN (0 / 0),
//! as PyTorch's.

use crate::autograd::record;
use crate::error::{arg_err, shape_err, Result};
use crate::shape;
use crate::tensor::{check_float, check_index, check_pair, check_same_device, Tensor};

/// Per-sample cross-entropy `-log softmax(logits)[target]` for logits `[N, C]` and `u32`
/// targets `[N]`; returns `[N]`.
pub fn cross_entropy_per_sample(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_float("cross_entropy", logits)?;
    check_index("cross_entropy", targets)?;
    check_same_device("cross_entropy", logits, targets)?;
    if logits.rank() != 2 || targets.rank() != 1 || targets.shape()[0] != logits.shape()[0] {
        return shape_err(
            "cross_entropy",
            format!(
                "logits {} and targets {}: expected [N, C] and [N]",
                shape::fmt(logits.shape()),
                shape::fmt(targets.shape())
            ),
        );
    }
    let (n, c) = (logits.shape()[0], logits.shape()[1]);
    if c == 0 {
        return arg_err("cross_entropy", "there are no classes (C = 0)");
    }
    let backend = logits.device().backend();
    let (loss, lse) = if c > backend.row_limit() && n > 0 {
        // Rows too long for one workgroup: the log-sum-exp from reductions that spread
        // over many workgroups; the loss picks each row's target logit (NaN for a target
        // >= C, as the fused kernel).
        crate::autograd::no_grad(|| -> Result<(Tensor, Tensor)> {
            let x = logits.detach();
            let m = x.max_dim(&[1], true)?;
            let lse = m.add(&x.sub(&m)?.exp()?.sum_dim(&[1], true)?.log()?)?;
            let picked = x.gather(1, &targets.reshape(&[n, 1])?)?;
            Ok((lse.sub(&picked)?.reshape(&[n])?, lse.reshape(&[n])?))
        })?
    } else {
        let (l, s) = backend.cross_entropy(logits.storage(), targets.storage(), n, c)?;
        (
            Tensor::like(l, vec![n], logits),
            Tensor::like(s, vec![n], logits),
        )
    };
    let (xs, ts) = (logits.detach(), targets.clone());
    Ok(record(loss, "cross_entropy", &[logits], move |g| {
        let dx = xs.device().backend().cross_entropy_backward(
            xs.storage(),
            lse.storage(),
            g.storage(),
            ts.storage(),
            n,
            c,
            false,
        )?;
        Ok(vec![Some(Tensor::like(dx, vec![n, c], &xs))])
    }))
}

/// The mean cross-entropy of a batch in one dispatch forward and one backward where the
/// backend has a kernel for its size (the GPU, up to 16K logits and 1,024 per thread);
/// `None` otherwise (per-sample losses and a mean then).
fn cross_entropy_mean_fused(logits: &Tensor, targets: &Tensor) -> Result<Option<Tensor>> {
    check_float("cross_entropy", logits)?;
    check_index("cross_entropy", targets)?;
    check_same_device("cross_entropy", logits, targets)?;
    let &[n, c] = logits.shape() else {
        return Ok(None);
    };
    if targets.shape() != [n] {
        return Ok(None);
    }
    let Some((l, s)) =
        logits
            .device()
            .backend()
            .cross_entropy_mean(logits.storage(), targets.storage(), n, c)?
    else {
        return Ok(None);
    };
    let loss = Tensor::like(l, vec![], logits);
    let lse = Tensor::like(s, vec![n], logits);
    let (xs, ts) = (logits.detach(), targets.clone());
    Ok(Some(record(loss, "cross_entropy", &[logits], move |g| {
        let dx = xs.device().backend().cross_entropy_backward(
            xs.storage(),
            lse.storage(),
            g.storage(),
            ts.storage(),
            n,
            c,
            true,
        )?;
        Ok(vec![Some(Tensor::like(dx, vec![n, c], &xs))])
    })))
}

/// Per-element binary cross-entropy on logits, PyTorch's
/// `binary_cross_entropy_with_logits(x, y, pos_weight=w, reduction='none')`:
/// `-(w y log sigma(x) + (1 - y) log(1 - sigma(x)))` for targets `y` in `[0, 1]` of the
/// logits' shape, with `pos_weight` (the weight of positive examples, e.g. `[C]` for
/// `[N, C]` logits) broadcast to the logits' shape, 1 when `None`. Computed as
/// `w y softplus(-x) + (1 - y) softplus(x)`, each term a softplus, so it keeps its digits
/// for logits of any size (`softplus(x) - x y` cancels for large `|x|`). The weight gets a
/// gradient too (PyTorch refuses one).
pub fn bce_with_logits_per_element(
    logits: &Tensor,
    targets: &Tensor,
    pos_weight: Option<&Tensor>,
) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy_with_logits";
    check_pair(OP, logits, targets)?;
    if logits.shape() != targets.shape() {
        return shape_err(
            OP,
            format!(
                "{} vs {}: shapes differ",
                shape::fmt(logits.shape()),
                shape::fmt(targets.shape())
            ),
        );
    }
    if let Some(w) = pos_weight {
        check_pair(OP, logits, w)?;
        if shape::broadcast(OP, w.shape(), logits.shape())? != logits.shape() {
            return shape_err(
                OP,
                format!(
                    "pos_weight {} does not broadcast to the logits {}",
                    shape::fmt(w.shape()),
                    shape::fmt(logits.shape())
                ),
            );
        }
    }
    let pos = logits.neg()?.softplus(1.0, 20.0)?.mul(targets)?;
    let pos = match pos_weight {
        Some(w) => pos.mul(w)?,
        None => pos,
    };
    let neg = logits
        .softplus(1.0, 20.0)?
        .mul(&targets.affine(-1.0, 1.0)?)?;
    pos.add(&neg)
}

impl Tensor {
    /// Mean binary cross-entropy on logits against targets in `[0, 1]` of the same shape,
    /// with an optional `pos_weight` broadcast over the logits (see
    /// [`bce_with_logits_per_element`]); NaN for an empty batch, as PyTorch.
    pub fn bce_with_logits(&self, targets: &Tensor, pos_weight: Option<&Tensor>) -> Result<Tensor> {
        bce_with_logits_per_element(self, targets, pos_weight)?.mean()
    }

    /// Mean softmax cross-entropy of logits `[N, C]` against `u32` class indices `[N]`
    /// (one dispatch forward and one backward on the GPU for batches up to 16K logits).
    /// The logits' gradient is `(softmax - onehot) / N`.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let logits = Tensor::zeros(&[2, 4], &dev)?.requires_grad_(true)?;
    /// let targets = Tensor::from_vec(vec![1u32, 3], &[2], &dev)?;
    /// let loss = logits.cross_entropy(&targets)?;
    /// assert!((loss.item()? - 4f64.ln()).abs() < 1e-6); // uniform over 4 classes
    /// loss.backward()?;
    /// let g = logits.grad().unwrap().to_vec::<f32>()?;
    /// assert!((g[1] - (0.25 - 1.0) / 2.0).abs() < 1e-6);
    /// # Ok(()) }
    /// ```
    pub fn cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        if let Some(loss) = cross_entropy_mean_fused(self, targets)? {
            return Ok(loss);
        }
        cross_entropy_per_sample(self, targets)?.mean()
    }

    /// Mean squared error against a target of the same shape.
    pub fn mse_loss(&self, target: &Tensor) -> Result<Tensor> {
        check_pair("mse_loss", self, target)?;
        if self.shape() != target.shape() {
            return shape_err(
                "mse_loss",
                format!(
                    "{} vs {}: shapes differ",
                    shape::fmt(self.shape()),
                    shape::fmt(target.shape())
                ),
            );
        }
        let d = self.sub(target)?;
        d.mul(&d)?.mean()
    }
}
