//! Fused batch normalisation (`torch.nn.functional.batch_norm`): per-channel statistics
//! over every dimension but 1, `y = (x - mean) / sqrt(var + eps) * weight + bias`, the
//! running statistics updated in place, and a fused backward.
//!
//! The input is viewed as `[N, C, L]` (`L` the product of the dimensions after the
//! channel, 1 for `[N, C]`), so a channel holds `M = N L` values. On the GPU a training
//! forward is at most three dispatches and so is a backward:
//!
//! - forward: per-(channel, block) summaries `(count, mean, M2)` by Welford's update per
//!   element and Chan's combination over the workgroup (`bn_partial_fwd`); one
//!   workgroup per channel combines them and finishes: mean, `invstd`, the affine
//!   `scale`/`shift`, the running statistics and `num_batches_tracked`
//!   (`bn_finalize_fwd`); then `y = (x - mean) scale + shift` (`bn_norm_fwd`). When a
//!   channel's `M` values fit one workgroup (16,384 at 64 per thread) the first two are
//!   one dispatch (`bn_reduce_fwd`), so the forward is two.
//! - backward: per-(channel, block) sums of `g` and `g xhat` (`bn_partial_bwd`), one
//!   workgroup per channel adding them into `dbias`, `dweight` and the coefficients of
//!   `dx = scale (g - mean(g) - xhat mean(g xhat))` (`bn_finalize_bwd`; with one block,
//!   `bn_reduce_bwd` does both), then `dx` (`bn_dx_bwd`).
//!
//! Evaluation mode (the running statistics as constants) is two dispatches forward
//! (`bn_eval_fwd`, `bn_norm_fwd`), and its backward reuses the same kernels without the
//! batch-statistics terms (just `bn_dx_bwd` when only the input needs a gradient).
//!
//! The CPU runs the same math in `f32` or `f64`, with each statistic's sum accumulated in
//! `f64` (a mean pass, then a pass over squared deviations); it is the GPU's reference.

use crate::autograd::record;
use crate::backend::batchnorm::{plan_blocks, Plan, BIAS, COUNT, RUNNING, TRAINING, WEIGHT};
use crate::backend::{BnChannels, Storage};
use crate::error::{arg_err, shape_err, Error, Result};
use crate::ops::layout::fill;
use crate::tensor::{check_float, check_same_device, Tensor};

/// The arguments of [`batch_norm`] besides the input; the defaults are PyTorch's
/// (training, `momentum = 0.1`, `eps = 1e-5`, no affine, no running statistics).
#[derive(Clone, Copy, Debug)]
pub struct BatchNormArgs<'a> {
    /// Per-channel scale `[C]` (gamma), or none (1).
    pub weight: Option<&'a Tensor>,
    /// Per-channel shift `[C]` (beta), or none (0).
    pub bias: Option<&'a Tensor>,
    /// Running mean `[C]`: updated in place in training mode, used in evaluation mode.
    pub running_mean: Option<&'a Tensor>,
    /// Running (unbiased) variance `[C]`, as `running_mean`.
    pub running_var: Option<&'a Tensor>,
    /// A one-element counter increased by 1 in place by each training call.
    pub num_batches_tracked: Option<&'a Tensor>,
    /// Normalise with the batch's statistics (and update the running ones); otherwise
    /// with the running statistics.
    pub training: bool,
    /// `running = (1 - momentum) running + momentum batch_statistic`.
    pub momentum: f64,
    /// Added to the variance before the square root.
    pub eps: f64,
}

impl Default for BatchNormArgs<'_> {
    fn default() -> Self {
        BatchNormArgs {
            weight: None,
            bias: None,
            running_mean: None,
            running_var: None,
            num_batches_tracked: None,
            training: true,
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

fn check_channel_tensor(
    op: &'static str,
    what: &str,
    t: &Tensor,
    x: &Tensor,
    c: usize,
) -> Result<()> {
    check_same_device(op, x, t)?;
    if t.dtype() != x.dtype() {
        return Err(Error::DType {
            op,
            msg: format!("{what} is {:?}, the input is {:?}", t.dtype(), x.dtype()),
        });
    }
    if t.shape() != [c] {
        return shape_err(
            op,
            format!(
                "{what} must be [{c}] for the input {:?}, got {:?}",
                x.shape(),
                t.shape()
            ),
        );
    }
    Ok(())
}

/// Checks the arguments (before anything is launched or written) and plans the call.
fn check(op: &'static str, x: &Tensor, a: &BatchNormArgs, forced: Option<usize>) -> Result<Plan> {
    check_float(op, x)?;
    if x.rank() < 2 {
        return shape_err(
            op,
            format!(
                "expected an input [N, C, ...] of rank 2 or more, got {:?}",
                x.shape()
            ),
        );
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let l: usize = x.shape()[2..].iter().product();
    if c == 0 {
        return shape_err(op, format!("the input {:?} has no channels", x.shape()));
    }
    for (what, t) in [
        ("weight", a.weight),
        ("bias", a.bias),
        ("running_mean", a.running_mean),
        ("running_var", a.running_var),
    ] {
        if let Some(t) = t {
            check_channel_tensor(op, what, t, x, c)?;
        }
    }
    if a.running_mean.is_some() != a.running_var.is_some() {
        return arg_err(op, "running_mean and running_var go together");
    }
    if !a.training && a.running_mean.is_none() {
        return arg_err(op, "evaluation mode needs running_mean and running_var");
    }
    if let Some(t) = a.num_batches_tracked {
        check_same_device(op, x, t)?;
        if t.numel() != 1 || t.dtype() != x.dtype() {
            return arg_err(
                op,
                format!(
                    "num_batches_tracked must be one {:?} value, got {:?} {:?}",
                    x.dtype(),
                    t.dtype(),
                    t.shape()
                ),
            );
        }
    }
    // The tensors written in place must not be read or written through another argument
    // (one GPU dispatch cannot bind a buffer both ways).
    let written = [a.running_mean, a.running_var, a.num_batches_tracked];
    let all = [
        Some(x),
        a.weight,
        a.bias,
        a.running_mean,
        a.running_var,
        a.num_batches_tracked,
    ];
    for (i, w) in written.iter().enumerate() {
        let Some(w) = w else { continue };
        for (j, o) in all.iter().enumerate() {
            if j != i + 3 && o.is_some_and(|o| o.storage().same_as(w.storage())) {
                return arg_err(
                    op,
                    "the running statistics and num_batches_tracked must not share storage \
                     with each other or with the input, weight or bias",
                );
            }
        }
    }
    if !(a.eps >= 0.0 && a.eps.is_finite()) {
        return arg_err(op, format!("eps must be finite and >= 0, got {}", a.eps));
    }
    if !a.momentum.is_finite() {
        return arg_err(op, format!("momentum must be finite, got {}", a.momentum));
    }
    let m = n * l;
    if a.training && m < 2 {
        return arg_err(
            op,
            format!(
                "expected more than 1 value per channel when training, got input {:?}",
                x.shape()
            ),
        );
    }
    let (block, blocks) = plan_blocks(op, c, m, forced)?;
    let mut flags = 0;
    if a.weight.is_some() {
        flags |= WEIGHT;
    }
    if a.bias.is_some() {
        flags |= BIAS;
    }
    if a.training {
        flags |= TRAINING;
        if a.running_mean.is_some() {
            flags |= RUNNING;
        }
        if a.num_batches_tracked.is_some() {
            flags |= COUNT;
        }
    }
    Ok(Plan {
        n,
        c,
        l,
        block,
        blocks,
        flags,
        eps: a.eps as f32,
        momentum: a.momentum as f32,
    })
}

/// Batch normalisation of `x` (`[N, C, ...]`) over every dimension but 1, as
/// `torch.nn.functional.batch_norm`: in training mode with the batch's mean and biased
/// variance (updating `running_mean`, `running_var` with the unbiased variance, and
/// `num_batches_tracked`, in place, when given), otherwise with the running statistics.
/// Differentiable in `x`, `weight` and `bias`.
///
/// ```
/// use wgrad::ops::batchnorm::{batch_norm, BatchNormArgs};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 5.0], &[2, 2], &dev)?;
/// let y = batch_norm(&x, &BatchNormArgs { eps: 0.0, ..Default::default() })?;
/// assert_eq!(y.to_vec::<f32>()?, [-1.0, -1.0, 1.0, 1.0]);
/// # Ok(()) }
/// ```
pub fn batch_norm(x: &Tensor, args: &BatchNormArgs) -> Result<Tensor> {
    if let Some(r) = half_batch_norm(x, args, None) {
        return r;
    }
    batch_norm_impl(x, args, None)
}

/// [`batch_norm`] with the GPU's channels split into blocks of `block` values (a
/// multiple of 256 up to 16,384) whatever their length: for tests of the multi-block
/// path on small inputs. The CPU ignores `block`.
#[doc(hidden)]
pub fn batch_norm_blocked(x: &Tensor, args: &BatchNormArgs, block: usize) -> Result<Tensor> {
    if let Some(r) = half_batch_norm(x, args, Some(block)) {
        return r;
    }
    batch_norm_impl(x, args, Some(block))
}

impl Tensor {
    /// [`batch_norm`] of this tensor.
    pub fn batch_norm(&self, args: &BatchNormArgs) -> Result<Tensor> {
        batch_norm(self, args)
    }
}

/// Batch norm with half tensors among the input, the affine parameters and the running
/// statistics: computed in f32 ([`crate::ops::half::widened`]), the updated running
/// statistics rounded back into their own storage.
fn half_batch_norm(x: &Tensor, a: &BatchNormArgs, forced: Option<usize>) -> Option<Result<Tensor>> {
    let stats = [a.running_mean, a.running_var, a.num_batches_tracked];
    let optional = [a.weight, a.bias, stats[0], stats[1], stats[2]];
    let ins = crate::ops::half::with_optional(&[x], &optional);
    crate::ops::half::widened("batch_norm", &ins, |w| {
        let (f, o) = crate::ops::half::split_optional(w, 1, &optional);
        let args = BatchNormArgs {
            weight: o[0],
            bias: o[1],
            running_mean: o[2],
            running_var: o[3],
            num_batches_tracked: o[4],
            ..*a
        };
        let y = batch_norm_impl(&f[0], &args, forced)?;
        for (orig, wide) in stats.iter().zip(&o[2..]) {
            if let (Some(orig), Some(wide)) = (orig, wide) {
                if orig.dtype().is_half() {
                    orig.copy_from(&wide.to_dtype(orig.dtype())?)?;
                }
            }
        }
        Ok(y)
    })
}

fn batch_norm_impl(x: &Tensor, a: &BatchNormArgs, forced: Option<usize>) -> Result<Tensor> {
    let op = "batch_norm";
    let p = check(op, x, a, forced)?;
    fn storage(t: Option<&Tensor>) -> Option<&Storage> {
        t.map(|t| t.storage())
    }
    let channels = BnChannels {
        weight: storage(a.weight),
        bias: storage(a.bias),
        running_mean: storage(a.running_mean),
        running_var: storage(a.running_var),
        count: storage(a.num_batches_tracked),
    };
    let backend = x.device().backend();
    // Per-channel statistics `[4, C]`: mean, invstd, scale, shift.
    let stats = backend.batch_norm_stats(x.storage(), channels, &p)?;
    let y = if p.numel() == 0 {
        fill(x.shape(), x.dtype(), 0.0, x.device())?
    } else {
        let y = backend.batch_norm(x.storage(), &stats, &p)?;
        Tensor::like(y, x.shape().to_vec(), x)
    };
    let mut inputs = vec![x];
    inputs.extend(a.weight);
    inputs.extend(a.bias);
    let need = [
        x.requires_grad(),
        a.weight.is_some_and(|w| w.requires_grad()),
        a.bias.is_some_and(|b| b.requires_grad()),
    ];
    let (has_w, has_b) = (a.weight.is_some(), a.bias.is_some());
    let xs = x.detach();
    Ok(record(y, "batch_norm", &inputs, move |g| {
        let [dx, dw, db] = backward(&xs, &stats, g, &p, need)?;
        let mut grads = vec![dx];
        if has_w {
            grads.push(dw);
        }
        if has_b {
            grads.push(db);
        }
        Ok(grads)
    }))
}

/// The gradients of the input, weight and bias (each only where `need` says so).
fn backward(
    x: &Tensor,
    stats: &Storage,
    g: &Tensor,
    p: &Plan,
    need: [bool; 3],
) -> Result<[Option<Tensor>; 3]> {
    let [need_dx, need_dw, need_db] = need;
    if p.numel() == 0 {
        let zeros = |shape: &[usize]| fill(shape, x.dtype(), 0.0, x.device()).map(Some);
        return Ok([
            if need_dx { zeros(x.shape())? } else { None },
            if need_dw { zeros(&[p.c])? } else { None },
            if need_db { zeros(&[p.c])? } else { None },
        ]);
    }
    let [dx, dw, db] =
        g.device()
            .backend()
            .batch_norm_backward(x.storage(), stats, g.storage(), p, need)?;
    Ok([
        dx.map(|d| Tensor::like(d, x.shape().to_vec(), x)),
        dw.map(|d| Tensor::like(d, vec![p.c], x)),
        db.map(|d| Tensor::like(d, vec![p.c], x)),
    ])
}
