//! Losses. `cross_entropy` is fused (one kernel for the per-row loss through the stable
//! log-sum-exp, one for its gradient `softmax - onehot`), so logits of +-1000 are fine.
//! `mse_loss` and the binary cross-entropy on logits are composites of elementwise ops and
//! `mean` and need no kernel of their own. Mean losses of an empty batch are NaN (0 / 0),
//! as PyTorch's.

use crate::autograd::record;
use crate::backend::cpu::{CpuData, Float};
use crate::backend::gpu::params::{params, Params};
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::device::Device;
use crate::error::{arg_err, shape_err, Result};
use crate::ops::layout::u32_data;
use crate::ops::{gpu_alloc, groups_1d, groups_rows, kernel, row_work, shader};
use crate::shape;
use crate::tensor::{check_float, check_index, check_pair, check_same_device, Tensor};

pub(crate) const FILE: ShaderFile =
    shader("loss", include_str!("../../shaders/loss.wgsl")).with_params(&[&CeParams::INFO]);

params! {
    /// Softmax cross-entropy of `[n, c]` logits.
    pub(crate) struct CeParams as ce {
        /// Rows.
        n: u32,
        /// Classes.
        c: u32,
        /// 1: the backward of the mean loss (one gradient for every row, over n).
        mean: u32,
        /// Padding.
        _pad: u32,
    }
}
const CE_FWD: &Kernel = kernel!(
    FILE,
    "cross_entropy_fwd",
    [X0, XI, Y0, Y1, YI],
    loops,
    overrides = ["RT"],
    params = CeParams
);
const CE_BWD: &Kernel = kernel!(
    FILE,
    "cross_entropy_bwd",
    [X0, X1, X2, XI, Y0],
    params = CeParams
);
const CE_MEAN_FWD: &Kernel = kernel!(
    FILE,
    "cross_entropy_mean_fwd",
    [X0, XI, Y0, Y1, YI],
    loops,
    params = CeParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![CE_FWD, CE_BWD, CE_MEAN_FWD]
}

/// The cross-entropy kernels' parameters.
fn ce_params(n: usize, c: usize, mean: bool) -> CeParams {
    CeParams {
        n: n as u32,
        c: c as u32,
        mean: mean as u32,
        ..Default::default()
    }
}

/// Logits one workgroup's thread may loop over in the one-dispatch mean loss.
const MEAN_SERIAL: usize = 1024;

fn ce_forward_cpu<T: Float>(x: &[T], t: &[u32], c: usize) -> (Vec<T>, Vec<T>) {
    x.chunks(c)
        .zip(t)
        .map(|(row, &k)| {
            let m = row.iter().fold(row[0], |a, &b| a.max(b));
            let s = row.iter().fold(T::zero(), |a, &b| a + (b - m).exp());
            let lse = m + s.ln();
            (lse - row[k as usize], lse)
        })
        .unzip()
}

fn ce_backward_cpu<T: Float>(x: &[T], lse: &[T], g: &[T], t: &[u32], c: usize) -> Vec<T> {
    (0..x.len())
        .map(|i| {
            let (n, j) = (i / c, i % c);
            let onehot = if t[n] as usize == j {
                T::one()
            } else {
                T::zero()
            };
            g[n] * ((x[i] - lse[n]).exp() - onehot)
        })
        .collect()
}

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
    let params = ce_params(n, c, false);
    let (loss, lse) = match logits.device() {
        Device::Cpu => {
            let t = u32_data(targets);
            if let Some(&bad) = t.iter().find(|&&k| k as usize >= c) {
                return arg_err(
                    "cross_entropy",
                    format!("target {bad} is out of range for {c} classes"),
                );
            }
            let (l, s) = match &*logits.cpu_data() {
                CpuData::F32(x) => {
                    let (l, s) = ce_forward_cpu(x, &t, c);
                    (CpuData::F32(l), CpuData::F32(s))
                }
                CpuData::F64(x) => {
                    let (l, s) = ce_forward_cpu(x, &t, c);
                    (CpuData::F64(l), CpuData::F64(s))
                }
                CpuData::U32(_) => unreachable!("dtype checked"),
            };
            (Tensor::from_cpu(l, vec![n]), Tensor::from_cpu(s, vec![n]))
        }
        Device::Gpu(_) if c > crate::ops::reduce::MAX_GROUP_ELEMENTS && n > 0 => {
            // Rows too long for one workgroup: the log-sum-exp from reductions that
            // spread over many workgroups; the loss picks each row's target logit
            // (NaN for a target >= C, as the fused kernel).
            crate::autograd::no_grad(|| -> Result<(Tensor, Tensor)> {
                let x = logits.detach();
                let m = x.max_dim(&[1], true)?;
                let lse = m.add(&x.sub(&m)?.exp()?.sum_dim(&[1], true)?.log()?)?;
                let picked = x.gather(1, &targets.reshape(&[n, 1])?)?;
                Ok((lse.sub(&picked)?.reshape(&[n])?, lse.reshape(&[n])?))
            })?
        }
        Device::Gpu(g) => {
            let (l, s) = (gpu_alloc(g, n)?, gpu_alloc(g, n)?);
            let flag = g.error_flag()?;
            g.launch_with(
                CE_FWD,
                &params,
                &[logits.gpu_buf(), targets.gpu_buf(), &l, &s, &flag],
                groups_rows(n),
                row_work(n, c),
            );
            (
                Tensor::from_gpu(l, vec![n], logits.dtype()),
                Tensor::from_gpu(s, vec![n], logits.dtype()),
            )
        }
    };
    let (xs, ts) = (logits.detach(), targets.clone());
    Ok(record(loss, "cross_entropy", &[logits], move |g| {
        Ok(vec![Some(match g.device() {
            Device::Cpu => {
                let t = u32_data(&ts);
                let data = match (&*xs.cpu_data(), &*lse.cpu_data(), &*g.cpu_data()) {
                    (CpuData::F32(x), CpuData::F32(s), CpuData::F32(gv)) => {
                        CpuData::F32(ce_backward_cpu(x, s, gv, &t, c))
                    }
                    (CpuData::F64(x), CpuData::F64(s), CpuData::F64(gv)) => {
                        CpuData::F64(ce_backward_cpu(x, s, gv, &t, c))
                    }
                    _ => unreachable!("dtypes checked"),
                };
                Tensor::from_cpu(data, vec![n, c])
            }
            Device::Gpu(ctx) => {
                let out = gpu_alloc(ctx, n * c)?;
                ctx.launch(
                    CE_BWD,
                    &params,
                    &[xs.gpu_buf(), lse.gpu_buf(), g.gpu_buf(), ts.gpu_buf(), &out],
                    groups_1d(n * c),
                );
                Tensor::from_gpu(out, vec![n, c], xs.dtype())
            }
        })])
    }))
}

/// The mean cross-entropy of a batch small enough for one workgroup (`N C` at most 16K
/// logits, at most 1,024 per thread) in one dispatch on the GPU, and its gradient in one
/// more; `None` where it does not apply (the CPU, or a bigger batch: per-sample losses
/// and a mean then).
fn cross_entropy_mean_fused(logits: &Tensor, targets: &Tensor) -> Result<Option<Tensor>> {
    let Device::Gpu(g) = logits.device() else {
        return Ok(None);
    };
    check_index("cross_entropy", targets)?;
    check_same_device("cross_entropy", logits, targets)?;
    let &[n, c] = logits.shape() else {
        return Ok(None);
    };
    let fits = n > 0
        && c > 0
        && n * c <= crate::ops::reduce::MAX_GROUP_ELEMENTS
        && n.div_ceil(256) * c <= MEAN_SERIAL;
    if !fits || targets.shape() != [n] || logits.dtype() != crate::tensor::DType::F32 {
        return Ok(None);
    }
    let (l, s) = (gpu_alloc(g, 1)?, gpu_alloc(g, n)?);
    let flag = g.error_flag()?;
    g.launch_with(
        CE_MEAN_FWD,
        &ce_params(n, c, false),
        &[logits.gpu_buf(), targets.gpu_buf(), &l, &s, &flag],
        [1, 1, 1],
        crate::backend::gpu::Work {
            serial: (n.div_ceil(256) * c) as u64,
            reduced: (n * c) as u64,
            ..Default::default()
        },
    );
    let loss = Tensor::from_gpu(l, vec![], logits.dtype());
    let lse = Tensor::from_gpu(s, vec![n], logits.dtype());
    let (xs, ts) = (logits.detach(), targets.clone());
    Ok(Some(record(loss, "cross_entropy", &[logits], move |g| {
        let Device::Gpu(ctx) = g.device() else {
            unreachable!("a GPU loss")
        };
        let out = gpu_alloc(ctx, n * c)?;
        ctx.launch(
            CE_BWD,
            &ce_params(n, c, true),
            &[xs.gpu_buf(), lse.gpu_buf(), g.gpu_buf(), ts.gpu_buf(), &out],
            groups_1d(n * c),
        );
        Ok(vec![Some(Tensor::from_gpu(out, vec![n, c], xs.dtype()))])
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
