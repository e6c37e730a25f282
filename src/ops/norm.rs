//! Row normalisations with PyTorch's semantics: `layer_norm` and `rms_norm` over a
//! trailing `normalized_shape`, and `group_norm` of `[N, C, *]` (which is instance norm
//! with `num_groups == C`). All three are one op on rows of contiguous elements
//! (`backend/norm.rs`): each row is normalised by its own mean and biased variance (the
//! mean square for `rms_norm`), then scaled and shifted by an optional weight and bias.
//!
//! On the GPU the forward is one dispatch (32 to 256 threads per row, several short rows
//! per workgroup; the statistics by Welford's update per element and Chan's combination
//! across the row's threads, then the output) and the backward at most two (`dx` per
//! row; the weight's and bias's gradients as one column reduction). Rows of more than 16,384 elements, which one
//! workgroup would reduce too serially, are normalised by a composition of the
//! reductions and elementwise ops instead (on both devices, so they agree).

use std::cell::Cell;

use crate::autograd::record;
use crate::backend::norm::{NormGeo, BIAS, MAX_ROW, RMS, WEIGHT};
use crate::backend::Storage;
use crate::error::{arg_err, shape_err, Error, Result};
use crate::ops::layout::fill;
use crate::shape;
use crate::tensor::{check_float, check_same_device, DType, Tensor};

thread_local! {
    static MAX_ROW_OVERRIDE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `f` with rows longer than `max_row` elements normalised by the composition of
/// generic ops (normally past 16,384): for tests of that path on small inputs.
#[doc(hidden)]
pub fn with_max_row<R>(max_row: usize, f: impl FnOnce() -> R) -> R {
    let old = MAX_ROW_OVERRIDE.with(|c| c.replace(Some(max_row)));
    let out = f();
    MAX_ROW_OVERRIDE.with(|c| c.set(old));
    out
}

/// `torch.finfo(dtype).eps`: `rms_norm`'s default epsilon.
fn finfo_eps(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::EPSILON,
        DType::F16 => 2f64.powi(-10),
        DType::BF16 => 2f64.powi(-7),
        _ => f32::EPSILON as f64,
    }
}

/// Fails unless `t` (a weight or bias) is on `x`'s device, of its dtype and of `shape`.
fn check_affine(
    op: &'static str,
    what: &str,
    t: &Tensor,
    x: &Tensor,
    shape: &[usize],
) -> Result<()> {
    check_same_device(op, x, t)?;
    if t.dtype() != x.dtype() {
        return Err(Error::DType {
            op,
            msg: format!("{what} is {:?}, the input is {:?}", t.dtype(), x.dtype()),
        });
    }
    if t.shape() != shape {
        return shape_err(
            op,
            format!(
                "{what} must be {} for the input {}, got {}",
                shape::fmt(shape),
                shape::fmt(x.shape()),
                shape::fmt(t.shape())
            ),
        );
    }
    Ok(())
}

fn check_eps(op: &'static str, eps: f64) -> Result<()> {
    if !(eps >= 0.0 && eps.is_finite()) {
        return arg_err(op, format!("eps must be finite and >= 0, got {eps}"));
    }
    Ok(())
}

/// The rows of `layer_norm` / `rms_norm`: `(R, D)`, after checking that the input ends
/// with `normalized_shape`.
fn trailing_rows(
    op: &'static str,
    x: &Tensor,
    normalized_shape: &[usize],
) -> Result<(usize, usize)> {
    check_float(op, x)?;
    let k = normalized_shape.len();
    if k == 0 {
        return shape_err(op, "normalized_shape must have at least one dimension");
    }
    if x.rank() < k || x.shape()[x.rank() - k..] != *normalized_shape {
        return shape_err(
            op,
            format!(
                "normalized_shape {} must be the input's trailing dimensions, got the input {}",
                shape::fmt(normalized_shape),
                shape::fmt(x.shape())
            ),
        );
    }
    let d: usize = normalized_shape.iter().product();
    let rows: usize = x.shape()[..x.rank() - k].iter().product();
    Ok((rows, d))
}

/// What one call normalises: the geometry, the affine tensors and the shape the affine
/// tensors take to broadcast against the input (for the composed path).
struct Call<'a> {
    op: &'static str,
    geo: NormGeo,
    weight: Option<&'a Tensor>,
    bias: Option<&'a Tensor>,
    affine_view: Vec<usize>,
}

/// Layer normalisation over the trailing `normalized_shape`, as
/// `torch.nn.functional.layer_norm`: each row of `prod(normalized_shape)` elements
/// becomes `(x - mean) / sqrt(var + eps) * weight + bias` (biased variance; `weight`
/// and `bias` of `normalized_shape`, each optional). Differentiable in all three.
///
/// ```
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let x = Tensor::from_vec(vec![1.0f32, 3.0, 2.0, 6.0], &[2, 2], &dev)?;
/// let y = x.layer_norm(&[2], None, None, 0.0)?;
/// assert_eq!(y.to_vec::<f32>()?, [-1.0, 1.0, -1.0, 1.0]);
/// # Ok(()) }
/// ```
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let ins = crate::ops::half::with_optional(&[x], &[weight, bias]);
    // Half inference on the GPU: the fused kernel reads the half input and affine as
    // they are (and on the native path writes f16 itself); otherwise half inputs widen.
    let max_row = MAX_ROW_OVERRIDE.with(Cell::get).unwrap_or(MAX_ROW);
    let fused_rows = crate::shape::numel(normalized_shape) <= max_row && x.numel() > 0;
    let direct = fused_rows && crate::ops::half::gpu_inference(&ins);
    if !direct {
        if let Some(r) = crate::ops::half::widened("layer_norm", &ins, |w| {
            let (f, o) = crate::ops::half::split_optional(w, 1, &[weight, bias]);
            layer_norm(&f[0], normalized_shape, o[0], o[1], eps)
        }) {
            return r;
        }
    }
    let op = "layer_norm";
    let (rows, d) = trailing_rows(op, x, normalized_shape)?;
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            check_affine(op, what, t, x, normalized_shape)?;
        }
    }
    check_eps(op, eps)?;
    let geo = NormGeo {
        rows,
        d,
        groups: 1,
        l: 1,
        flags: 0,
        eps,
    };
    run(
        x,
        Call {
            op,
            geo,
            weight,
            bias,
            affine_view: normalized_shape.to_vec(),
        },
    )
}

/// Root-mean-square normalisation over the trailing `normalized_shape`, as
/// `torch.nn.functional.rms_norm`: each row becomes `x / sqrt(mean(x^2) + eps) *
/// weight`; `eps` of `None` is `torch.finfo(dtype).eps`. Differentiable in `x` and
/// `weight`.
///
/// ```
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let x = Tensor::from_vec(vec![3.0f32, 4.0], &[1, 2], &dev)?;
/// let y = x.rms_norm(&[2], None, Some(0.0))?;
/// let v = y.to_vec::<f32>()?; // x / sqrt(12.5)
/// assert!((v[0] - 0.848_528_1).abs() < 1e-6 && (v[1] - 1.131_370_9).abs() < 1e-6);
/// # Ok(()) }
/// ```
pub fn rms_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    eps: Option<f64>,
) -> Result<Tensor> {
    let ins = crate::ops::half::with_optional(&[x], &[weight]);
    if let Some(r) = crate::ops::half::widened("rms_norm", &ins, |w| {
        let (f, o) = crate::ops::half::split_optional(w, 1, &[weight]);
        // PyTorch's default eps is the input dtype's: keep the half type's.
        let eps = eps.or(Some(finfo_eps(x.dtype())));
        rms_norm(&f[0], normalized_shape, o[0], eps)
    }) {
        return r;
    }
    let op = "rms_norm";
    let (rows, d) = trailing_rows(op, x, normalized_shape)?;
    if let Some(w) = weight {
        check_affine(op, "weight", w, x, normalized_shape)?;
    }
    let eps = eps.unwrap_or(finfo_eps(x.dtype()));
    check_eps(op, eps)?;
    let geo = NormGeo {
        rows,
        d,
        groups: 1,
        l: 1,
        flags: RMS,
        eps,
    };
    run(
        x,
        Call {
            op,
            geo,
            weight,
            bias: None,
            affine_view: normalized_shape.to_vec(),
        },
    )
}

/// Group normalisation of `x` (`[N, C, *]`), as `torch.nn.functional.group_norm`: the
/// channels split into `num_groups` groups of `C / num_groups`, each (sample, group)
/// normalised by its own mean and biased variance, then scaled and shifted per channel
/// by `weight` and `bias` (`[C]` each, optional). `num_groups == C` is instance
/// normalisation, `num_groups == 1` normalises each sample as a whole.
///
/// ```
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let x = Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 9.0], &[1, 2, 2], &dev)?;
/// let y = x.group_norm(2, None, None, 0.0)?; // one group per channel
/// assert_eq!(y.to_vec::<f32>()?, [-1.0, 1.0, -1.0, 1.0]);
/// # Ok(()) }
/// ```
pub fn group_norm(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let ins = crate::ops::half::with_optional(&[x], &[weight, bias]);
    if let Some(r) = crate::ops::half::widened("group_norm", &ins, |w| {
        let (f, o) = crate::ops::half::split_optional(w, 1, &[weight, bias]);
        group_norm(&f[0], num_groups, o[0], o[1], eps)
    }) {
        return r;
    }
    let op = "group_norm";
    check_float(op, x)?;
    if x.rank() < 2 {
        return shape_err(
            op,
            format!(
                "expected an input [N, C, *] of rank 2 or more, got {}",
                shape::fmt(x.shape())
            ),
        );
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    if num_groups == 0 || c % num_groups != 0 {
        return shape_err(
            op,
            format!(
                "the input's {c} channels ({}) must divide into num_groups = {num_groups} groups",
                shape::fmt(x.shape())
            ),
        );
    }
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            check_affine(op, what, t, x, &[c])?;
        }
    }
    check_eps(op, eps)?;
    let l: usize = x.shape()[2..].iter().product();
    let geo = NormGeo {
        rows: n * num_groups,
        d: c / num_groups * l,
        groups: num_groups,
        l,
        flags: 0,
        eps,
    };
    let mut affine_view = vec![1; x.rank() - 1];
    affine_view[0] = c;
    run(
        x,
        Call {
            op,
            geo,
            weight,
            bias,
            affine_view,
        },
    )
}

impl Tensor {
    /// [`layer_norm`] of this tensor.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        layer_norm(self, normalized_shape, weight, bias, eps)
    }

    /// [`rms_norm`] of this tensor.
    pub fn rms_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        eps: Option<f64>,
    ) -> Result<Tensor> {
        rms_norm(self, normalized_shape, weight, eps)
    }

    /// [`group_norm`] of this tensor.
    pub fn group_norm(
        &self,
        num_groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        group_norm(self, num_groups, weight, bias, eps)
    }
}

/// Normalises a checked call: the fused kernels, or the composition for long rows.
fn run(x: &Tensor, mut call: Call) -> Result<Tensor> {
    if call.weight.is_some() {
        call.geo.flags |= WEIGHT;
    }
    if call.bias.is_some() {
        call.geo.flags |= BIAS;
    }
    if x.numel() == 0 {
        return empty(x, call);
    }
    let max_row = MAX_ROW_OVERRIDE.with(Cell::get).unwrap_or(MAX_ROW);
    if call.geo.d > max_row {
        return composed(x, &call);
    }
    fused(x, call)
}

/// An empty input: an empty output, and zero gradients for the weight and bias.
fn empty(x: &Tensor, call: Call) -> Result<Tensor> {
    let y = fill(x.shape(), x.dtype(), 0.0, x.device())?;
    let mut inputs = vec![x];
    inputs.extend(call.weight);
    inputs.extend(call.bias);
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let (dtype, device) = (x.dtype(), x.device().clone());
    Ok(record(y, call.op, &inputs, move |_| {
        shapes
            .iter()
            .map(|s| fill(s, dtype, 0.0, &device).map(Some))
            .collect()
    }))
}

/// Rows too long for one workgroup: the same math from reductions and elementwise ops,
/// differentiated by autograd.
fn composed(x: &Tensor, call: &Call) -> Result<Tensor> {
    let geo = &call.geo;
    let rows = x.reshape(&[geo.rows, geo.d])?;
    let centred = if geo.rms() {
        rows
    } else {
        rows.sub(&rows.mean_dim(&[1], true)?)?
    };
    let var = centred.mul(&centred)?.mean_dim(&[1], true)?;
    let eps = fill(&[1], x.dtype(), geo.eps, x.device())?;
    let std = var.add(&eps)?.sqrt()?;
    let mut y = centred.div(&std)?.reshape(x.shape())?;
    if let Some(w) = call.weight {
        y = y.mul(&w.reshape(&call.affine_view)?)?;
    }
    if let Some(b) = call.bias {
        y = y.add(&b.reshape(&call.affine_view)?)?;
    }
    Ok(y)
}

/// The fused forward and its recorded backward.
fn fused(x: &Tensor, call: Call) -> Result<Tensor> {
    let Call {
        op,
        geo,
        weight,
        bias,
        ..
    } = call;
    let backend = x.device().backend();
    let storage = |t: Option<&Tensor>| t.map(|t| t.storage().clone());
    let (y, stats) = backend.norm_rows(
        x.storage(),
        storage(weight).as_ref(),
        storage(bias).as_ref(),
        &geo,
    )?;
    let y = crate::ops::half::like(y, x.shape().to_vec(), x)?;
    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    let need_x = x.requires_grad();
    let need_w = weight.is_some_and(Tensor::requires_grad);
    let need_b = bias.is_some_and(Tensor::requires_grad);
    let affine_shape = weight.or(bias).map(|t| t.shape().to_vec());
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    let xs = x.detach();
    let ws: Option<Storage> = storage(weight);
    Ok(record(y, op, &inputs, move |g| {
        let backend = g.device().backend();
        let dx = if need_x {
            let dx =
                backend.norm_rows_backward(xs.storage(), &stats, g.storage(), ws.as_ref(), &geo)?;
            Some(Tensor::like(dx, xs.shape().to_vec(), &xs))
        } else {
            None
        };
        let mut grads = vec![dx];
        let (dw, db) = if need_w || need_b {
            let [dw, db] = backend.norm_affine_backward(
                xs.storage(),
                &stats,
                g.storage(),
                &geo,
                [need_w, need_b],
            )?;
            let shape = affine_shape.clone().unwrap_or_default();
            let finish = |t: Option<Storage>| -> Result<Option<Tensor>> {
                t.map(|t| add_chunks(t, &geo, &shape, &xs)).transpose()
            };
            (finish(dw)?, finish(db)?)
        } else {
            (None, None)
        };
        if has_w {
            grads.push(dw);
        }
        if has_b {
            grads.push(db);
        }
        Ok(grads)
    }))
}

/// The affine backward's `[chunks, A]` partial sums added into the weight's shape.
fn add_chunks(t: Storage, geo: &NormGeo, shape: &[usize], like: &Tensor) -> Result<Tensor> {
    let (_, chunks) = geo.chunks();
    let t = Tensor::like(t, vec![chunks, geo.affine()], like);
    let t = if chunks > 1 {
        t.sum_dim(&[0], false)?
    } else {
        t
    };
    t.reshape(shape)
}
