//! GPU work on tensors larger than one storage binding (`maxStorageBufferBindingSize`:
//! 128 MiB by default in WebGPU, up to 4 GiB on desktop GPUs). A kernel can bind no
//! more than that, so the ops that can (elementwise ops, matrix products, convolutions,
//! linear layers) cut such work into pieces along a leading dimension: each piece's
//! inputs are copied out with `copy_buffer_to_buffer` (which has no binding limit), the
//! piece runs through the op's ordinary kernels, and its output is copied into place.
//! The copies cost memory traffic but only on this path; work that fits is untouched.
//! Where no cut helps (one row larger than a binding, a broadcast operand larger than a
//! binding), the launch refuses the dispatch and the next readback returns
//! [`crate::Error::OutOfMemory`].

use crate::error::Result;
use crate::shape;
use crate::tensor::{DType, Tensor};
use crate::Device;

/// True when `elems` elements on `dev` are too many for a kernel to bind (never on the
/// CPU).
pub(crate) fn over(dev: &Device, elems: usize) -> bool {
    elems > dev.backend().binding_elements()
}

/// True when any of `tensors` is too large for a kernel to bind.
pub(crate) fn any_over(tensors: &[&Tensor]) -> bool {
    tensors.iter().any(|t| over(t.device(), t.numel()))
}

/// `t` (detached) as one dimension.
pub(crate) fn flat(t: &Tensor) -> Result<Tensor> {
    t.detach().reshape(&[t.numel()])
}

/// Elements `[start, start + numel(shape))` of `t` (detached), as a new tensor of
/// `shape` (a buffer copy).
pub(crate) fn take(t: &Tensor, start: usize, shape_: Vec<usize>) -> Result<Tensor> {
    let len = shape::numel(&shape_);
    let s = t.device().backend().take(t.storage(), start, len)?;
    Ok(Tensor::like(s, shape_, t))
}

/// Copies `src` into `dst`'s storage from element `at`.
pub(crate) fn put(dst: &Tensor, at: usize, src: &Tensor) -> Result<()> {
    dst.device()
        .backend()
        .put(dst.storage(), at, src.storage(), src.numel())
}

/// How an input of a split op is cut.
pub(crate) enum Part<'a> {
    /// Along dimension 0 with the output (its dimension 0 is the output's).
    Rows(&'a Tensor),
    /// Passed whole to every piece (broadcast along dimension 0).
    Whole(&'a Tensor),
}

/// Runs GPU work in pieces along dimension 0 of its output when a buffer is too large
/// to bind. `f` maps the pieces of `inputs` (cut as each [`Part`] says) to `outputs`
/// tensors whose dimension 0 is the piece's; they are copied into `outputs` tensors of
/// `out_shape` and `dtype`. Returns `None` when everything fits (the caller launches
/// its kernels as usual) or when cutting cannot help (a whole input is too large; the
/// launch then reports the error).
pub(crate) fn rows(
    inputs: &[Part],
    out_shape: &[usize],
    outputs: usize,
    dtype: DType,
    mut f: impl FnMut(&[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Option<Vec<Tensor>>> {
    let all: Vec<&Tensor> = inputs
        .iter()
        .map(|p| match p {
            Part::Rows(t) | Part::Whole(t) => *t,
        })
        .collect();
    let Some(first_input) = all.first().copied() else {
        return Ok(None);
    };
    let dev = first_input.device();
    let Some(&total) = out_shape.first() else {
        return Ok(None);
    };
    let out_numel = shape::numel(out_shape);
    if total == 0 || (!over(dev, out_numel) && !any_over(&all)) {
        return Ok(None);
    }
    let mut row = out_numel / total;
    for p in inputs {
        match p {
            Part::Rows(t) => {
                debug_assert_eq!(t.shape().first(), Some(&total), "rows of the output");
                row = row.max(t.numel() / total);
            }
            Part::Whole(t) if over(dev, t.numel()) => return Ok(None),
            Part::Whole(_) => {}
        }
    }
    let cap = dev.backend().binding_elements();
    if total == 1 || !inputs.iter().any(|p| matches!(p, Part::Rows(_))) {
        // One piece would be the whole work again: no cut at this level helps.
        return Ok(None);
    }
    let per = (cap / row.max(1)).max(1);
    let outs: Vec<Tensor> = (0..outputs)
        .map(|_| {
            dev.backend()
                .alloc_like(first_input.storage(), out_numel)
                .map(|s| Tensor::from_storage(s, out_shape.to_vec(), dtype, dev.clone()))
        })
        .collect::<Result<_>>()?;
    let out_row = out_numel / total;
    for first in (0..total).step_by(per) {
        let n = per.min(total - first);
        let pieces = inputs
            .iter()
            .map(|p| match p {
                Part::Rows(t) => {
                    let r = t.numel() / total;
                    let mut s = t.shape().to_vec();
                    s[0] = n;
                    take(t, first * r, s)
                }
                Part::Whole(t) => Ok((*t).clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        let results = f(&pieces)?;
        debug_assert_eq!(results.len(), outputs);
        for (o, r) in outs.iter().zip(&results) {
            debug_assert_eq!(r.numel(), n * out_row, "a piece's output has its rows");
            put(o, first * out_row, r)?;
        }
    }
    Ok(Some(outs))
}

/// [`rows`] for ops whose inputs all have the output's shape: cut as one dimension.
pub(crate) fn elementwise(
    inputs: &[&Tensor],
    out_shape: &[usize],
    outputs: usize,
    dtype: DType,
    f: impl FnMut(&[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Option<Vec<Tensor>>> {
    if !any_over(inputs) {
        return Ok(None);
    }
    let n = shape::numel(out_shape);
    let flats = inputs.iter().map(|t| flat(t)).collect::<Result<Vec<_>>>()?;
    let parts: Vec<Part> = flats.iter().map(Part::Rows).collect();
    let Some(outs) = rows(&parts, &[n], outputs, dtype, f)? else {
        return Ok(None);
    };
    outs.into_iter()
        .map(|o| o.reshape(out_shape))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// [`rows`] for a broadcasting binary op: operands of the output's shape are cut as
/// one dimension; otherwise the output is cut along dimension 0, an operand running
/// along it cut with it and any other (broadcast along it) passed whole.
pub(crate) fn broadcast2(
    a: &Tensor,
    b: &Tensor,
    extra: &[&Tensor],
    out_shape: &[usize],
    outputs: usize,
    mut f: impl FnMut(&[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Option<Vec<Tensor>>> {
    // Checked without allocating: this runs on every GPU binary op.
    let out_over = over(a.device(), shape::numel(out_shape));
    if !out_over && !any_over(&[a, b]) && !any_over(extra) {
        return Ok(None);
    }
    let mut all = vec![a, b];
    all.extend(extra);
    if a.shape() == out_shape && b.shape() == out_shape {
        return elementwise(&all, out_shape, outputs, a.dtype(), f);
    }
    if out_shape.len() > 1 && out_shape[0] == 1 {
        // A leading 1 cannot be cut: drop it (from the operands that have it) and cut
        // along the next dimension.
        let drop = |t: &Tensor| -> Result<Tensor> {
            if t.rank() == out_shape.len() {
                t.detach().reshape(&t.shape()[1..])
            } else {
                Ok(t.detach())
            }
        };
        let (a1, b1) = (drop(a)?, drop(b)?);
        let extra1 = extra.iter().map(|t| drop(t)).collect::<Result<Vec<_>>>()?;
        let extra_refs: Vec<&Tensor> = extra1.iter().collect();
        let outs = broadcast2(&a1, &b1, &extra_refs, &out_shape[1..], outputs, f)?;
        return outs
            .map(|o| o.into_iter().map(|t| t.reshape(out_shape)).collect())
            .transpose();
    }
    let cut = |t: &Tensor| {
        t.rank() == out_shape.len()
            && out_shape
                .first()
                .is_some_and(|&d| d > 1 && t.shape()[0] == d)
    };
    let detached: Vec<Tensor> = all.iter().map(|t| t.detach()).collect();
    let parts: Vec<Part> = detached
        .iter()
        .map(|t| {
            if cut(t) {
                Part::Rows(t)
            } else {
                Part::Whole(t)
            }
        })
        .collect();
    rows(&parts, out_shape, outputs, a.dtype(), |p| f(p))
}

/// Rows of `row` elements that fit one binding on `dev` (at least one).
pub(crate) fn rows_per_piece(dev: &Device, row: usize) -> usize {
    (dev.backend().binding_elements() / row.max(1)).max(1)
}

/// A differentiable op `f` run on pieces of `x` of at most `per` rows along dimension 0,
/// its results concatenated along dimension 0: for ops whose rows are independent
/// (a batch of images, the rows of a linear layer) and whose work on all of `x` at once
/// is too large to bind. Slicing and concatenating along dimension 0 are buffer copies,
/// so the pieces and their gradients never bind the whole tensor.
pub(crate) fn map_rows(
    x: &Tensor,
    per: usize,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let total = x.shape()[0];
    let mut outs = Vec::with_capacity(total.div_ceil(per.max(1)));
    for first in (0..total).step_by(per.max(1)) {
        outs.push(f(&x.narrow(0, first, per.min(total - first))?)?);
    }
    Tensor::cat(&outs.iter().collect::<Vec<_>>(), 0)
}
