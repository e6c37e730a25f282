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

use std::sync::Arc;

use crate::autograd::record;
use crate::backend::cpu::{CpuData, Float};
use crate::backend::gpu::params::{params, Params};
use crate::backend::gpu::MAX_GROUP_ELEMENTS;
use crate::backend::gpu::{GpuBuffer, GpuContext, Kernel, ShaderFile, Work};
use crate::backend::Storage;
use crate::device::Device;
use crate::error::{arg_err, shape_err, Error, Result};
use crate::ops::layout::fill;
use crate::ops::{gpu_alloc, groups_1d, groups_rows, kernel, shader};
use crate::tensor::{check_float, check_same_device, DType, Tensor};

mod cpu;
use cpu::*;

pub(crate) const FILE: ShaderFile =
    shader("batchnorm", include_str!("../../../shaders/batchnorm.wgsl"))
        .with_params(&[&BatchNormParams::INFO]);

params! {
    /// Every batch-normalisation kernel's parameters: the input viewed as `[N, C, L]`.
    pub(crate) struct BatchNormParams as bn {
        /// Batch.
        n: u32,
        /// Channels.
        c: u32,
        /// Elements per image and channel (H W, or 1).
        l: u32,
        /// Blocks per channel.
        blocks: u32,
        /// Elements per block.
        block: u32,
        /// The kernels' flags.
        flags: u32,
        /// Variance epsilon.
        eps: f32,
        /// Running statistics' momentum.
        momentum: f32,
        /// M / (M - 1), for the unbiased running variance.
        unbiased: f32,
        /// N C L.
        numel: u32,
        /// Elements per channel, N L.
        m: u32,
        /// 1 / M.
        inv_m: f32,
    }
}
const STATS_PARTIAL: &Kernel = kernel!(
    FILE,
    "bn_partial_fwd",
    [X0, Y0],
    loops,
    params = BatchNormParams
);
const STATS_REDUCE: &Kernel = kernel!(
    FILE,
    "bn_reduce_fwd",
    [X0, X1, X2, Y0, Y1, Y2, YI],
    loops,
    params = BatchNormParams
);
const STATS_FINALIZE: &Kernel = kernel!(
    FILE,
    "bn_finalize_fwd",
    [X0, X1, X2, Y0, Y1, Y2, YI],
    loops,
    params = BatchNormParams
);
const EVAL_PREP: &Kernel = kernel!(
    FILE,
    "bn_eval_fwd",
    [X0, X1, X2, XI, Y0],
    params = BatchNormParams
);
const NORM_FWD: &Kernel = kernel!(FILE, "bn_norm_fwd", [X0, X1, Y0], params = BatchNormParams);
const BWD_PARTIAL: &Kernel = kernel!(
    FILE,
    "bn_partial_bwd",
    [X0, X1, X2, Y0],
    loops,
    params = BatchNormParams
);
const BWD_REDUCE: &Kernel = kernel!(
    FILE,
    "bn_reduce_bwd",
    [X0, X1, X2, Y0, Y1, Y2],
    loops,
    params = BatchNormParams
);
const BWD_FINALIZE: &Kernel = kernel!(
    FILE,
    "bn_finalize_bwd",
    [X0, X2, Y0, Y1, Y2],
    loops,
    params = BatchNormParams
);
const BWD_DX: &Kernel = kernel!(
    FILE,
    "bn_dx_bwd",
    [X0, X1, X2, Y0],
    params = BatchNormParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![
        STATS_PARTIAL,
        STATS_REDUCE,
        STATS_FINALIZE,
        EVAL_PREP,
        NORM_FWD,
        BWD_PARTIAL,
        BWD_REDUCE,
        BWD_FINALIZE,
        BWD_DX,
    ]
}

// Flags (P[5]); the shader names them BN_*.
const WEIGHT: u32 = 1;
const BIAS: u32 = 2;
const RUNNING: u32 = 4;
const COUNT: u32 = 8;
const TRAINING: u32 = 16;

/// Threads of the reducing workgroups.
const THREADS: usize = 256;
/// Fewest elements of a block when a channel is split (16 per thread).
const MIN_BLOCK: usize = 4096;
/// Workgroups a split aims for (as the reductions do).
const FILL: usize = 512;

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
    pub momentum: f32,
    /// Added to the variance before the square root.
    pub eps: f32,
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

/// The input's `[N, C, L]` view and how the GPU splits each channel.
#[derive(Clone, Copy, Debug)]
struct Plan {
    n: usize,
    c: usize,
    l: usize,
    /// Elements of one block (a multiple of 256, at most 16,384).
    block: usize,
    /// Blocks per channel.
    blocks: usize,
    flags: u32,
    eps: f32,
    momentum: f32,
}

impl Plan {
    fn m(&self) -> usize {
        self.n * self.l
    }

    fn numel(&self) -> usize {
        self.n * self.c * self.l
    }

    fn params(&self) -> BatchNormParams {
        let m = self.m();
        let unbiased = if m > 1 {
            m as f64 / (m - 1) as f64
        } else {
            1.0
        };
        BatchNormParams {
            n: self.n as u32,
            c: self.c as u32,
            l: self.l as u32,
            blocks: self.blocks as u32,
            block: self.block as u32,
            flags: self.flags,
            eps: self.eps,
            momentum: self.momentum,
            unbiased: unbiased as f32,
            numel: self.numel() as u32,
            m: m as u32,
            inv_m: (1.0 / m.max(1) as f64) as f32,
        }
    }

    /// The declared work of the per-block kernels (the fused ones take a whole channel).
    fn block_work(&self) -> Work {
        Work {
            serial: self.block.min(self.m()).div_ceil(THREADS).max(1) as u64,
            reduced: (self.c * self.m()) as u64,
            ..Default::default()
        }
    }

    /// The declared work of the kernels that combine a channel's block results.
    fn finalize_work(&self) -> Work {
        Work {
            serial: self.blocks.div_ceil(THREADS) as u64,
            reduced: (self.c * self.blocks) as u64,
            ..Default::default()
        }
    }
}

/// Splits each channel's `m` values into blocks: one block when they fit a workgroup
/// (16,384 values), else blocks of 16,384 halved (down to 4,096) until the grid has 512
/// workgroups. `forced` (a multiple of 256 up to 16,384) is for tests of the split path.
fn plan_blocks(
    op: &'static str,
    c: usize,
    m: usize,
    forced: Option<usize>,
) -> Result<(usize, usize)> {
    let block = match forced {
        Some(b) => {
            if b == 0 || b % THREADS != 0 || b > MAX_GROUP_ELEMENTS {
                return arg_err(
                    op,
                    format!(
                        "a block is a multiple of {THREADS} up to {MAX_GROUP_ELEMENTS}, got {b}"
                    ),
                );
            }
            b
        }
        None if m <= MAX_GROUP_ELEMENTS => MAX_GROUP_ELEMENTS,
        None => {
            let mut b = MAX_GROUP_ELEMENTS;
            while b > MIN_BLOCK && c * m.div_ceil(b) < FILL {
                b /= 2;
            }
            b
        }
    };
    let blocks = m.div_ceil(block).max(1);
    if blocks > MAX_GROUP_ELEMENTS {
        return arg_err(
            op,
            format!(
                "{m} values per channel are more than one pass can reduce ({} at most)",
                MAX_GROUP_ELEMENTS * block
            ),
        );
    }
    Ok((block, blocks))
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
        eps: a.eps,
        momentum: a.momentum,
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
    batch_norm_impl(x, args, None)
}

/// [`batch_norm`] with the GPU's channels split into blocks of `block` values (a
/// multiple of 256 up to 16,384) whatever their length: for tests of the multi-block
/// path on small inputs. The CPU ignores `block`.
#[doc(hidden)]
pub fn batch_norm_blocked(x: &Tensor, args: &BatchNormArgs, block: usize) -> Result<Tensor> {
    batch_norm_impl(x, args, Some(block))
}

impl Tensor {
    /// [`batch_norm`] of this tensor.
    pub fn batch_norm(&self, args: &BatchNormArgs) -> Result<Tensor> {
        batch_norm(self, args)
    }
}

/// Per-channel statistics `[4, C]`: mean, invstd, scale, shift.
fn forward_stats(x: &Tensor, a: &BatchNormArgs, p: &Plan) -> Result<Tensor> {
    match x.device() {
        Device::Cpu => Ok(cpu_stats(x, a, p)),
        Device::Gpu(g) => gpu_stats(g, x, a, p),
    }
}

fn batch_norm_impl(x: &Tensor, a: &BatchNormArgs, forced: Option<usize>) -> Result<Tensor> {
    let op = "batch_norm";
    let p = check(op, x, a, forced)?;
    let stats = forward_stats(x, a, &p)?;
    let y = if p.numel() == 0 {
        fill(x.shape(), x.dtype(), 0.0, x.device())?
    } else {
        match x.device() {
            Device::Cpu => {
                let s = stats.cpu_data().to_f64_vec();
                let y = match &*x.cpu_data() {
                    CpuData::F32(v) => CpuData::F32(normalize_cpu(v, &p, &s)),
                    CpuData::F64(v) => CpuData::F64(normalize_cpu(v, &p, &s)),
                    CpuData::U32(_) => unreachable!("batch_norm input checked float"),
                };
                Tensor::from_cpu(y, x.shape().to_vec())
            }
            Device::Gpu(g) => {
                let y = gpu_alloc(g, p.numel())?;
                g.launch(
                    NORM_FWD,
                    &p.params(),
                    &[x.gpu_buf(), stats.gpu_buf(), &y],
                    groups_1d(p.numel()),
                );
                Tensor::from_gpu(y, x.shape().to_vec(), x.dtype())
            }
        }
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
        let (dx, dw, db) = backward(&xs, &stats, g, &p, need)?;
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

type Grads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// The gradients of the input, weight and bias (each only where `need` says so).
fn backward(x: &Tensor, stats: &Tensor, g: &Tensor, p: &Plan, need: [bool; 3]) -> Result<Grads> {
    let training = p.flags & TRAINING != 0;
    let [need_dx, need_dw, need_db] = need;
    if p.numel() == 0 {
        let zeros = |shape: &[usize]| fill(shape, x.dtype(), 0.0, x.device()).map(Some);
        return Ok((
            if need_dx { zeros(x.shape())? } else { None },
            if need_dw { zeros(&[p.c])? } else { None },
            if need_db { zeros(&[p.c])? } else { None },
        ));
    }
    let c = [p.c];
    match g.device() {
        Device::Cpu => {
            let s = stats.cpu_data().to_f64_vec();
            let (xd, gd) = (x.cpu_data(), g.cpu_data());
            let (dx, dw, db) = match (&*xd, &*gd) {
                (CpuData::F32(xv), CpuData::F32(gv)) => {
                    let (dx, dw, db) = backward_cpu(xv, gv, p, &s, need_dx);
                    (dx.map(CpuData::F32), CpuData::F32(dw), CpuData::F32(db))
                }
                (CpuData::F64(xv), CpuData::F64(gv)) => {
                    let (dx, dw, db) = backward_cpu(xv, gv, p, &s, need_dx);
                    (dx.map(CpuData::F64), CpuData::F64(dw), CpuData::F64(db))
                }
                _ => unreachable!("batch_norm gradients are of the input's float type"),
            };
            Ok((
                dx.map(|d| Tensor::from_cpu(d, x.shape().to_vec())),
                need_dw.then(|| Tensor::from_cpu(dw, c.to_vec())),
                need_db.then(|| Tensor::from_cpu(db, c.to_vec())),
            ))
        }
        Device::Gpu(ctx) => {
            let dt = x.dtype();
            let sums_needed = need_dw || need_db || (need_dx && training);
            let (coef, dw, db) = if sums_needed {
                let (coef, dw, db) = (
                    gpu_alloc(ctx, 4 * p.c)?,
                    gpu_alloc(ctx, p.c)?,
                    gpu_alloc(ctx, p.c)?,
                );
                let params = p.params();
                if p.blocks == 1 {
                    ctx.launch_with(
                        BWD_REDUCE,
                        &params,
                        &[x.gpu_buf(), g.gpu_buf(), stats.gpu_buf(), &coef, &dw, &db],
                        groups_rows(p.c),
                        p.block_work(),
                    );
                } else {
                    let partials = gpu_alloc(ctx, 2 * p.c * p.blocks)?;
                    ctx.launch_with(
                        BWD_PARTIAL,
                        &params,
                        &[x.gpu_buf(), g.gpu_buf(), stats.gpu_buf(), &partials],
                        groups_rows(p.c * p.blocks),
                        p.block_work(),
                    );
                    ctx.launch_with(
                        BWD_FINALIZE,
                        &params,
                        &[&partials, stats.gpu_buf(), &coef, &dw, &db],
                        groups_rows(p.c),
                        p.finalize_work(),
                    );
                }
                (
                    Some(Tensor::from_gpu(coef, vec![4, p.c], dt)),
                    need_dw.then(|| Tensor::from_gpu(dw, c.to_vec(), dt)),
                    need_db.then(|| Tensor::from_gpu(db, c.to_vec(), dt)),
                )
            } else {
                // Evaluation mode, only dx: dx = scale g, read from the statistics.
                (None, None, None)
            };
            let dx = if need_dx {
                let out = gpu_alloc(ctx, p.numel())?;
                let coef = coef.as_ref().filter(|_| training).unwrap_or(stats);
                ctx.launch(
                    BWD_DX,
                    &p.params(),
                    &[x.gpu_buf(), g.gpu_buf(), coef.gpu_buf(), &out],
                    groups_1d(p.numel()),
                );
                Some(Tensor::from_gpu(out, x.shape().to_vec(), dt))
            } else {
                None
            };
            Ok((dx, dw, db))
        }
    }
}

/// The GPU's forward statistics, with the running statistics and the counter updated.
fn gpu_stats(g: &Arc<GpuContext>, x: &Tensor, a: &BatchNormArgs, p: &Plan) -> Result<Tensor> {
    let stats = gpu_alloc(g, 4 * p.c)?;
    let params = p.params();
    let xb = x.gpu_buf();
    let w = a.weight.map_or(xb, |t| t.gpu_buf());
    let b = a.bias.map_or(xb, |t| t.gpu_buf());
    if p.flags & TRAINING == 0 {
        let (rm, rv) = (
            a.running_mean.expect("checked").gpu_buf(),
            a.running_var.expect("checked").gpu_buf(),
        );
        let w = a.weight.map_or(rm, |t| t.gpu_buf());
        let b = a.bias.map_or(rm, |t| t.gpu_buf());
        g.launch(EVAL_PREP, &params, &[rm, rv, w, b, &stats], groups_1d(p.c));
        return Ok(Tensor::from_gpu(stats, vec![4, p.c], x.dtype()));
    }
    // Writable slots the call has no tensor for get small scratch buffers (a buffer must
    // not be bound twice where one binding writes).
    let scratch: Vec<GpuBuffer> = (0..3).map(|_| gpu_alloc(g, 1)).collect::<Result<_>>()?;
    let rm = a.running_mean.map_or(&scratch[0], |t| t.gpu_buf());
    let rv = a.running_var.map_or(&scratch[1], |t| t.gpu_buf());
    let count = a.num_batches_tracked.map_or(&scratch[2], |t| t.gpu_buf());
    if p.blocks == 1 {
        g.launch_with(
            STATS_REDUCE,
            &params,
            &[xb, w, b, &stats, rm, rv, count],
            groups_rows(p.c),
            p.block_work(),
        );
    } else {
        let partials = gpu_alloc(g, 3 * p.c * p.blocks)?;
        g.launch_with(
            STATS_PARTIAL,
            &params,
            &[xb, &partials],
            groups_rows(p.c * p.blocks),
            p.block_work(),
        );
        g.launch_with(
            STATS_FINALIZE,
            &params,
            &[&partials, w, b, &stats, rm, rv, count],
            groups_rows(p.c),
            p.finalize_work(),
        );
    }
    Ok(Tensor::from_gpu(stats, vec![4, p.c], x.dtype()))
}
