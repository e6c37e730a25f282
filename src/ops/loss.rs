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
    if let Some(r) = crate::ops::half::widened("cross_entropy", &[logits, targets], |w| {
        cross_entropy_per_sample(&w[0], &w[1])
    }) {
        return r;
    }
    check_float("cross_entropy", logits)?;
    check_index("cross_entropy", targets)?;
    check_same_device("cross_entropy", logits, targets)?;
    if logits.rank() == 2 && targets.rank() == 1 && targets.shape()[0] != logits.shape()[0] {
        return shape_err(
            "cross_entropy",
            format!(
                "expected input batch_size ({}) to match target batch_size ({}) (logits {}, targets {})",
                logits.shape()[0],
                targets.shape()[0],
                shape::fmt(logits.shape()),
                shape::fmt(targets.shape())
            ),
        );
    }
    if logits.rank() != 2 || targets.rank() != 1 {
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
    let ins = crate::ops::half::with_optional(&[logits, targets], &[pos_weight]);
    if let Some(r) = crate::ops::half::widened("bce_with_logits", &ins, |w| {
        let (f, o) = crate::ops::half::split_optional(w, 2, &[pos_weight]);
        bce_with_logits_per_element(&f[0], &f[1], o[0])
    }) {
        return r;
    }
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
        if let Some(r) = crate::ops::half::widened("cross_entropy", &[self, targets], |w| {
            w[0].cross_entropy(&w[1])
        }) {
            return r;
        }
        if let Some(loss) = cross_entropy_mean_fused(self, targets)? {
            return Ok(loss);
        }
        cross_entropy_per_sample(self, targets)?.mean()
    }

    /// Mean squared error against a target of the same shape.
    pub fn mse_loss(&self, target: &Tensor) -> Result<Tensor> {
        if let Some(r) =
            crate::ops::half::widened("mse_loss", &[self, target], |w| w[0].mse_loss(&w[1]))
        {
            return r;
        }
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

/// A 0-dimensional tensor of `like`'s dtype and device holding `v` (a constant to broadcast
/// against `like`, in `f64` when the CPU computes in `f64`).
fn constant(like: &Tensor, v: f64) -> Result<Tensor> {
    crate::ops::layout::fill(&[], like.dtype(), v, like.device())
}

/// The parts of PyTorch's `nll_loss` on log-probabilities `input` `[N, C]` against `u32`
/// class indices `target` `[N]`: the per-sample losses `-w[t_i] input[i, t_i]` (0 for an
/// ignored sample) and, when the mean is not the plain mean (a `weight` `[C]` or an
/// `ignore_index` is given), its divisor: the sum of the weights of the samples not
/// ignored. `ignore_index` must be a class index (below `C`): the targets are `u32`, so
/// PyTorch's `-100` has no equivalent, and an index of `C` or more cannot be told apart
/// from a bad target without reading the targets back from the GPU.
///
/// Out-of-range targets (not ignored) are an error on the CPU; on the GPU the pick reads
/// them with `gather`, whose error is deferred to the next readback or `sync` (and the
/// loss is NaN until then), as for `cross_entropy`. The input gets the gradient
/// `-w[t_i]` at `[i, t_i]` (divided by the divisor for the mean); the weight gets one too
/// (PyTorch refuses one).
pub fn nll_loss_parts(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    ignore_index: Option<u32>,
) -> Result<(Tensor, Option<Tensor>)> {
    let ins = crate::ops::half::with_optional(&[input, target], &[weight]);
    if let Some(r) = crate::ops::half::widened("nll_loss", &ins, |w| {
        let (f, o) = crate::ops::half::split_optional(w, 2, &[weight]);
        nll_loss_parts(&f[0], &f[1], o[0], ignore_index)
    }) {
        return r;
    }
    const OP: &str = "nll_loss";
    check_float(OP, input)?;
    check_index(OP, target)?;
    check_same_device(OP, input, target)?;
    if input.rank() == 2 && target.rank() == 1 && target.shape()[0] != input.shape()[0] {
        return shape_err(
            OP,
            format!(
                "expected input batch_size ({}) to match target batch_size ({}) (input {}, target {})",
                input.shape()[0],
                target.shape()[0],
                shape::fmt(input.shape()),
                shape::fmt(target.shape())
            ),
        );
    }
    if input.rank() != 2 || target.rank() != 1 {
        return shape_err(
            OP,
            format!(
                "input {} and target {}: expected [N, C] and [N]",
                shape::fmt(input.shape()),
                shape::fmt(target.shape())
            ),
        );
    }
    let (n, c) = (input.shape()[0], input.shape()[1]);
    if c == 0 {
        return arg_err(OP, "there are no classes (C = 0)");
    }
    if let Some(w) = weight {
        check_pair(OP, input, w)?;
        if w.shape() != [c] {
            return shape_err(
                OP,
                format!(
                    "weight {} for input {}: expected [{c}], one per class",
                    shape::fmt(w.shape()),
                    shape::fmt(input.shape())
                ),
            );
        }
    }
    if let Some(ig) = ignore_index {
        if ig as usize >= c {
            return arg_err(
                OP,
                format!("ignore_index {ig} must be a class index below C = {c}"),
            );
        }
    }
    if !input.device().is_gpu() {
        // The targets are in host memory: name the loss rather than `gather`.
        let bad = target
            .to_vec::<u32>()?
            .into_iter()
            .find(|&k| k as usize >= c && Some(k) != ignore_index);
        if let Some(bad) = bad {
            return arg_err(OP, format!("target {bad} is out of range for {c} classes"));
        }
    }
    let picked = input.gather(1, &target.reshape(&[n, 1])?)?.reshape(&[n])?;
    let Some(ig) = ignore_index else {
        return Ok(match weight {
            None => (picked.neg()?, None),
            Some(w) => {
                let wt = w.index_select(0, target)?;
                (picked.mul(&wt)?.neg()?, Some(wt.sum()?))
            }
        });
    };
    // The class weights with the ignored class's set to 0, and a keep mask per sample
    // (an ignored sample's loss is 0 even where its log-probability is -inf).
    let mut mask = vec![1.0f64; c];
    mask[ig as usize] = 0.0;
    let mask = match input.dtype() {
        crate::tensor::DType::F64 => Tensor::from_vec(mask, &[c], input.device())?,
        _ => Tensor::from_vec(
            mask.into_iter().map(|v| v as f32).collect::<Vec<_>>(),
            &[c],
            input.device(),
        )?,
    };
    let class_w = match weight {
        Some(w) => w.mul(&mask)?,
        None => mask.clone(),
    };
    let keep = mask.index_select(0, target)?;
    let wt = class_w.index_select(0, target)?;
    let per = Tensor::where_cond(&keep, &picked.mul(&wt)?.neg()?, &constant(input, 0.0)?)?;
    Ok((per, Some(wt.sum()?)))
}

/// PyTorch's `binary_cross_entropy(p, y, weight, reduction='none')` for probabilities
/// `input` and targets `target` of the same shape, with an optional `weight` broadcast to
/// the input's shape: `-w (y max(log p, -100) + (1 - y) max(log(1 - p), -100))`, each log
/// clamped at -100 as PyTorch does, so `p` of exactly 0 or 1 gives finite losses (100 per
/// wrong certainty). Probabilities outside `[0, 1]` are not checked (PyTorch refuses
/// them); their losses are not meaningful.
///
/// The gradient is PyTorch's, not the derivative of the clamped logs:
/// `dp = w (p - y) / max((1 - p) p, 1e-12)` (equal to the derivative of the unclamped
/// loss wherever `(1 - p) p >= 1e-12`; at `p = 0` it is `-w y 1e12`, at `p = 1`
/// `w (1 - y) 1e12`). The target gets `w (max(log(1 - p), -100) - max(log p, -100))` (the
/// derivative of the clamped loss, which is `-w logit(p)` inside the clamps; PyTorch's
/// `-w logit(p)` is infinite at 0 and 1) and the weight its factor
/// `-(y max(log p, -100) + (1 - y) max(log(1 - p), -100))`, summed over broadcast
/// dimensions.
pub fn binary_cross_entropy_per_element(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
) -> Result<Tensor> {
    let ins = crate::ops::half::with_optional(&[input, target], &[weight]);
    if let Some(r) = crate::ops::half::widened("binary_cross_entropy", &ins, |w| {
        let (f, o) = crate::ops::half::split_optional(w, 2, &[weight]);
        binary_cross_entropy_per_element(&f[0], &f[1], o[0])
    }) {
        return r;
    }
    const OP: &str = "binary_cross_entropy";
    check_pair(OP, input, target)?;
    if input.shape() != target.shape() {
        return shape_err(
            OP,
            format!(
                "input {} vs target {}: shapes differ",
                shape::fmt(input.shape()),
                shape::fmt(target.shape())
            ),
        );
    }
    if let Some(w) = weight {
        check_pair(OP, input, w)?;
        if shape::broadcast(OP, w.shape(), input.shape())? != input.shape() {
            return shape_err(
                OP,
                format!(
                    "weight {} does not broadcast to the input {}",
                    shape::fmt(w.shape()),
                    shape::fmt(input.shape())
                ),
            );
        }
    }
    let (p, y) = (input.detach(), target.detach());
    let w = weight.map(Tensor::detach);
    let (per, lp, l1p) = crate::autograd::no_grad(|| -> Result<(Tensor, Tensor, Tensor)> {
        let floor = constant(&p, -100.0)?;
        let lp = p.log()?.maximum(&floor)?;
        let l1p = p.affine(-1.0, 1.0)?.log()?.maximum(&floor)?;
        // -(y lp + (1 - y) l1p) = -(l1p + y (lp - l1p))
        let per = l1p.add(&y.mul(&lp.sub(&l1p)?)?)?.neg()?;
        Ok((per, lp, l1p))
    })?;
    let out = match &w {
        Some(w) => crate::autograd::no_grad(|| per.mul(w))?,
        None => per.clone(),
    };
    let mut inputs = vec![input, target];
    inputs.extend(weight);
    Ok(record(out, OP, &inputs, move |g| {
        let gw = match &w {
            Some(w) => g.mul(w)?,
            None => g.clone(),
        };
        let eps = constant(&p, 1e-12)?;
        let denom = p.affine(-1.0, 1.0)?.mul(&p)?.maximum(&eps)?;
        let dp = gw.mul(&p.sub(&y)?)?.div(&denom)?;
        let dy = gw.mul(&l1p.sub(&lp)?)?;
        let mut grads = vec![Some(dp), Some(dy)];
        if let Some(w) = &w {
            grads.push(Some(g.mul(&per)?.sum_to_shape(w.shape())?));
        }
        Ok(grads)
    }))
}

impl Tensor {
    /// PyTorch's `nll_loss(input, target)`: the mean of `-self[i, target[i]]` for
    /// log-probabilities `[N, C]` (from [`Tensor::log_softmax`]) and `u32` class indices
    /// `[N]`; NaN for an empty batch. Class weights, an ignored class and the other
    /// reductions: [`Tensor::nll_loss_with`] or [`crate::nn::NLLLoss`].
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let logp = Tensor::from_vec(vec![-0.5f32, -1.0, -2.0, -3.0], &[2, 2], &dev)?;
    /// let target = Tensor::from_vec(vec![1u32, 0], &[2], &dev)?;
    /// assert_eq!(logp.nll_loss(&target)?.item()?, (1.0 + 2.0) / 2.0);
    /// # Ok(()) }
    /// ```
    pub fn nll_loss(&self, target: &Tensor) -> Result<Tensor> {
        nll_loss_parts(self, target, None, None)?.0.mean()
    }

    /// PyTorch's `binary_cross_entropy(input, target)`: the mean over all elements of
    /// `-(y log p + (1 - y) log(1 - p))` for probabilities `p = self` and targets `y` of the
    /// same shape, each log clamped at -100 (see [`binary_cross_entropy_per_element`] for
    /// the gradient); NaN for an empty input. A weight and the other reductions:
    /// [`Tensor::binary_cross_entropy_with`] or [`crate::nn::BCELoss`].
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let p = Tensor::from_vec(vec![0.5f32, 0.0], &[2], &dev)?;
    /// let y = Tensor::from_vec(vec![1.0f32, 1.0], &[2], &dev)?;
    /// let loss = p.binary_cross_entropy(&y)?.item()?;
    /// assert!((loss - (2f64.ln() + 100.0) / 2.0).abs() < 1e-5); // log 0 clamped at -100
    /// # Ok(()) }
    /// ```
    pub fn binary_cross_entropy(&self, target: &Tensor) -> Result<Tensor> {
        binary_cross_entropy_per_element(self, target, None)?.mean()
    }
}
