//! Reductions over chosen dimensions (`sum`, `mean`, `max`, with `keepdim`) and their
//! backward: `sum`/`mean` spread the output gradient back over the reduced positions;
//! `max` saves the argmax indices and routes the gradient through them.
//!
//! On the GPU a reduction runs in passes over as many workgroups as the work needs: each
//! workgroup reduces at most
//! 16,384 positions (64 per thread), long
//! reductions split over workgroups that write partial results, and a further pass
//! reduces those (see `plan_pass` in `backend/gpu/reduce.rs` and ARCHITECTURE.md).

use crate::autograd::record;
use crate::backend::reduce::ReducePlan as Plan;
use crate::error::{Error, Result};
use crate::shape;
use crate::tensor::{check_float, DType, Tensor};

/// Spreads `g` (output shape) back over the input: `scale * g[output of i]`.
fn spread(plan: &Plan, g: &Tensor, scale: f64) -> Result<Tensor> {
    let out = g.device().backend().spread(g.storage(), plan, scale)?;
    Ok(Tensor::like(out, plan.input.clone(), g))
}

/// A sum of a tensor too large for one binding, in pieces that fit: cut along its
/// first dimension longer than 1 (a piece that is one slice and still too large is cut
/// again, along its next), each piece summed keeping its dimensions; the pieces' sums
/// are added where that dimension is reduced and joined along it where it is kept.
/// Slicing, adding and joining are differentiable, so the backward runs in the same
/// pieces.
fn sum_in_pieces(x: &Tensor, plan: &Plan, dims: &[isize], scale: f64) -> Result<Tensor> {
    let d = plan
        .input
        .iter()
        .position(|&s| s > 1)
        .expect("a tensor over the binding cap has a dimension longer than 1");
    let size = plan.input[d];
    // Every dimension before d is 1, so the whole is `size * inner` and fewer than
    // `size` rows fit: each piece is smaller than the whole.
    let inner = shape::numel(&plan.input[d + 1..]);
    let fit = x.device().backend().binding_elements() / inner.max(1);
    let per = fit.min(size - 1).max(1);
    let mut parts = Vec::with_capacity(size.div_ceil(per));
    for start in (0..size).step_by(per) {
        let piece = x.narrow(d as isize, start, per.min(size - start))?;
        parts.push(sum_like(&piece, dims, true, false)?);
    }
    let joined = if plan.reduced[d] && x.dtype() == DType::U32 {
        // No elementwise add on u32: join the pieces' sums and sum them again.
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), d as isize)?.sum_dim(&[d as isize], true)?
    } else if plan.reduced[d] {
        let mut parts = parts.into_iter();
        let first = parts.next().expect("at least one piece");
        parts.try_fold(first, |acc, p| acc.add(&p))?
    } else {
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), d as isize)?
    };
    let y = joined.reshape(&plan.out_shape)?;
    if scale == 1.0 {
        Ok(y)
    } else {
        y.affine(scale, 0.0)
    }
}

fn sum_like(x: &Tensor, dims: &[isize], keepdim: bool, mean: bool) -> Result<Tensor> {
    if let Some(r) =
        crate::ops::half::widened("sum", &[x], |w| sum_like(&w[0], dims, keepdim, mean))
    {
        return r;
    }
    let op = if mean { "mean" } else { "sum" };
    if mean && x.dtype() == DType::U32 {
        // PyTorch's message for `torch.mean` of an integer tensor.
        return Err(Error::DType {
            op,
            msg: format!(
                "could not infer output dtype. Input dtype must be either a floating point \
                 or complex dtype. Got: {:?} (cast with `to_dtype(DType::F32)` first)",
                x.dtype()
            ),
        });
    }
    if x.dtype() != DType::U32 {
        check_float(op, x)?;
    }
    let plan = Plan::new(op, x.shape(), dims, keepdim)?;
    // The mean of no elements is 0 / 0 = NaN, as PyTorch (the sum stays 0).
    let scale = if mean { 1.0 / plan.m() as f64 } else { 1.0 };
    if plan.red_sizes.is_empty() {
        return x.reshape(&plan.out_shape);
    }
    let backend = x.device().backend();
    if x.numel() > backend.binding_elements() {
        return sum_in_pieces(x, &plan, dims, scale);
    }
    if x.dtype() == DType::U32 {
        let out = backend.sum_u32(x.storage(), &plan)?;
        return Ok(Tensor::like(out, plan.out_shape.clone(), x)); // no gradient
    }
    let out = backend.sum(x.storage(), &plan, scale)?;
    let y = Tensor::like(out, plan.out_shape.clone(), x);
    Ok(record(y, op, &[x], move |g| {
        Ok(vec![Some(spread(&plan, g, scale)?)])
    }))
}

/// Maximum over `dims` and the flat position of the maximum within the reduced
/// dimensions (row-major over them; the first on ties). NaN is the largest value, as in
/// PyTorch: a slice holding NaN gives NaN and the position of its first NaN.
/// On a `u32` tensor the values are `u32` too (and have no gradient).
pub fn max_with_indices(x: &Tensor, dims: &[isize], keepdim: bool) -> Result<(Tensor, Tensor)> {
    if let Some(r) =
        crate::ops::half::widened("max", &[x], |w| max_with_indices(&w[0], dims, keepdim))
    {
        return r;
    }
    if x.dtype() != DType::U32 {
        check_float("max", x)?;
    }
    let plan = Plan::new("max", x.shape(), dims, keepdim)?;
    if plan.m() == 0 {
        // PyTorch's errors: an empty tensor needs a reduction dim, and that dim must
        // not be empty (an empty tensor reduced over a non-empty dim is empty).
        let what = if plan.red_sizes.len() == plan.input.len() {
            "expected reduction dims to be specified for an empty input"
        } else {
            "expected the reduction dims to have non-zero size"
        };
        return crate::error::shape_err("max", what);
    }
    let (vals, idx) = x.device().backend().max(x.storage(), &plan, x.dtype())?;
    let y = Tensor::like(vals, plan.out_shape.clone(), x);
    let idx = Tensor::from_storage(idx, plan.out_shape.clone(), DType::U32, x.device().clone());
    if x.dtype() == DType::U32 {
        return Ok((y, idx)); // integers have no gradient
    }
    let saved = idx.clone();
    let y = record(y, "max", &[x], move |g| {
        let dx = g
            .device()
            .backend()
            .max_backward(g.storage(), saved.storage(), &plan)?;
        Ok(vec![Some(Tensor::like(dx, plan.input.clone(), g))])
    });
    Ok((y, idx))
}

impl Tensor {
    /// Sum of all elements (a 0-dimensional tensor). A `u32` tensor sums to `u32`
    /// (PyTorch: int64), wrapping around past `u32::MAX` on both devices.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let logits = Tensor::from_vec(vec![0.1f32, 0.9, 0.8, 0.2, 0.3, 0.7], &[3, 2], &dev)?;
    /// let labels = Tensor::from_vec(vec![1u32, 0, 0], &[3], &dev)?;
    /// // PyTorch's accuracy idiom, no casts: argmax and eq give u32, sum stays u32.
    /// let correct = logits.argmax(1, false)?.eq(&labels)?.sum()?;
    /// assert_eq!(correct.dtype(), DType::U32);
    /// assert_eq!(correct.to_vec::<u32>()?, [2]);
    /// # Ok(()) }
    /// ```
    pub fn sum(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        sum_like(self, &all, false, false)
    }
    /// Sum over `dims` (negative dims count from the end); `u32` stays `u32`, as
    /// [`Tensor::sum`].
    pub fn sum_dim(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        sum_like(self, dims, keepdim, false)
    }
    /// Mean of all elements; NaN for an empty tensor (0 / 0, as PyTorch). A `u32`
    /// tensor is an error, as in PyTorch: cast it with `to_dtype(DType::F32)`.
    pub fn mean(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        sum_like(self, &all, false, true)
    }
    /// Mean over `dims`; NaN where they hold no elements.
    pub fn mean_dim(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        sum_like(self, dims, keepdim, true)
    }
    /// Maximum of all elements: NaN if any is NaN; a shape error for an empty tensor.
    /// The maxima of a `u32` tensor are `u32` (as are all the `max` methods').
    pub fn max(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        Ok(max_with_indices(self, &all, false)?.0)
    }
    /// Maximum over `dims`; the gradient flows to the (first) maximal element.
    pub fn max_dim(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        Ok(max_with_indices(self, dims, keepdim)?.0)
    }
    /// Maximum over one dimension and its position along it (`u32`), like `torch.max(x, dim)`.
    pub fn max_dim_with_indices(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        max_with_indices(self, &[dim], keepdim)
    }
    /// Position of the maximum along `dim` (`u32`; the first NaN's where there is one).
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        Ok(crate::autograd::no_grad(|| max_with_indices(self, &[dim], keepdim))?.1)
    }
}
