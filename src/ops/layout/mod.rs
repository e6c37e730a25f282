//! Shape and layout ops. Tensors are always contiguous: `reshape` is a view that shares
//! storage, everything else (`permute`, `transpose`, `narrow`, `broadcast_to`, `cat`,
//! `stack`, `index_select`, `gather`, `where`) writes a new contiguous tensor through
//! the strided-copy and scatter kernels of `shaders/layout.wgsl`.

use crate::autograd::record;
use crate::backend::layout::{Fill, Region};
use crate::backend::Storage;
use crate::device::Device;
use crate::error::{arg_err, shape_err, Error, Result};
use crate::shape;
use crate::tensor::{check_index, check_pair, check_same_device, DType, Tensor};

mod index;

/// A new tensor of `shape` filled with `value`.
pub(crate) fn fill(shape: &[usize], dtype: DType, value: f64, device: &Device) -> Result<Tensor> {
    let n = crate::ops::check_out("full", shape, dtype, device)?;
    let b = device.backend();
    let v = match dtype {
        DType::F32 => Fill::F32(value as f32),
        DType::F64 => Fill::F64(value),
        DType::U32 => Fill::U32(value as u32),
        // Filled in f32 and rounded once (as PyTorch's `full(..., dtype=half)`).
        DType::F16 | DType::BF16 => {
            return crate::ops::half::convert(&fill(shape, DType::F32, value, device)?, dtype)
        }
    };
    let new = |s: Storage| Tensor::from_storage(s, shape.to_vec(), dtype, device.clone());
    if crate::ops::split::over(device, n) && dtype != DType::F64 {
        // Past the binding limit: fill one piece and copy it along.
        let piece_len = b.binding_elements();
        let piece = b.fill(piece_len, v)?;
        let out = b.alloc_like(&piece, n)?;
        for at in (0..n).step_by(piece_len) {
            b.put(&out, at, &piece, piece_len.min(n - at))?;
        }
        return Ok(new(out));
    }
    Ok(new(b.fill(n, v)?))
}

/// A contiguous tensor of `out_shape` read from `x` at `base + sum idx_d * strides_d`.
fn strided_copy(x: &Tensor, out_shape: &[usize], strides: &[usize], base: usize) -> Result<Tensor> {
    let r = Region {
        shape: out_shape,
        strides,
        base,
    };
    let s = x
        .device()
        .backend()
        .copy_region(x.storage(), x.numel(), r)?;
    Ok(Tensor::like(s, out_shape.to_vec(), x))
}

/// Writes contiguous `src` into the region of `dst` at `base` with `strides` (in place).
fn strided_scatter(dst: &Tensor, src: &Tensor, strides: &[usize], base: usize) -> Result<()> {
    let r = Region {
        shape: src.shape(),
        strides,
        base,
    };
    dst.device()
        .backend()
        .scatter_region(dst.storage(), dst.numel(), src.storage(), r)
}

/// Overwrites `dst` with `src` (same shape, dtype and device; checked by the caller).
pub(crate) fn copy_into(dst: &Tensor, src: &Tensor) -> Result<()> {
    if dst.storage().same_as(src.storage()) {
        return Ok(()); // a view of itself: already equal
    }
    if dst.dtype().is_half() {
        return crate::ops::half::copy_into(dst, src);
    }
    strided_scatter(dst, src, &shape::contiguous_strides(src.shape()), 0)
}

/// A tensor of `x`'s dtype to scatter into: uninitialised on the GPU, zeroed on the CPU.
fn empty_like_shape(x: &Tensor, shape_: &[usize]) -> Result<Tensor> {
    let n = crate::ops::check_out("cat", shape_, x.dtype(), x.device())?;
    let s = x.device().backend().alloc_like(x.storage(), n)?;
    Ok(Tensor::like(s, shape_.to_vec(), x))
}

impl Tensor {
    /// The same elements viewed with another shape (shares storage; no copy).
    pub fn reshape(&self, shape_: &[usize]) -> Result<Tensor> {
        if shape::check_new("reshape", shape_)? != self.numel() {
            return shape_err(
                "reshape",
                format!(
                    "cannot view {} ({} elements) as {} ({} elements)",
                    shape::fmt(self.shape()),
                    self.numel(),
                    shape::fmt(shape_),
                    shape::numel(shape_)
                ),
            );
        }
        shape::check_rank("reshape", shape_)?;
        if shape_ == self.shape() {
            return Ok(self.clone());
        }
        let view = Tensor::from_storage(
            self.storage().clone(),
            shape_.to_vec(),
            self.dtype(),
            self.device().clone(),
        );
        let from = self.shape().to_vec();
        Ok(record(view, "reshape", &[self], move |g| {
            Ok(vec![Some(g.reshape(&from)?)])
        }))
    }

    /// [`reshape`](Tensor::reshape) with PyTorch's `view` spelling: at most one
    /// dimension may be `-1`, inferred from the element count (`x.view(&[-1, 4])` on 12
    /// elements is `[3, 4]`). Tensors are always contiguous, so every shape with the same
    /// element count is a view (shared storage, no copy). Errors, as PyTorch: two `-1`s,
    /// any other negative size, an element count the other sizes do not divide, and a
    /// `-1` beside sizes whose product is 0 (the inferred size would be ambiguous).
    pub fn view(&self, shape_: &[isize]) -> Result<Tensor> {
        let bad = |why: String| -> Result<Tensor> {
            shape_err(
                "view",
                format!(
                    "shape {shape_:?} is invalid for {} ({} elements): {why}",
                    shape::fmt(self.shape()),
                    self.numel()
                ),
            )
        };
        let mut infer = None;
        let mut known: Vec<usize> = Vec::with_capacity(shape_.len());
        for (i, &d) in shape_.iter().enumerate() {
            match d {
                -1 if infer.is_some() => return bad("only one dimension can be -1".into()),
                -1 => infer = Some(i),
                d if d < 0 => return bad(format!("size {d} of dimension {i} is negative")),
                d => known.push(d as usize),
            }
        }
        let Some(at) = infer else {
            return self.reshape(&known);
        };
        // The product of the given sizes; an overflow cannot divide the element count.
        let rest = known.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match rest {
            Some(0) => bad("-1 beside sizes whose product is 0 is ambiguous".into()),
            Some(r) if self.numel().is_multiple_of(r) => {
                known.insert(at, self.numel() / r);
                self.reshape(&known)
            }
            _ => bad("the other sizes do not divide the element count".into()),
        }
    }

    /// Merges dimensions `start` to the last into one: `flatten(start, -1)`, PyTorch's
    /// `x.flatten(start)` (`x.flatten_from(1)` turns `[N, C, H, W]` into `[N, C H W]`).
    pub fn flatten_from(&self, start: isize) -> Result<Tensor> {
        self.flatten(start, -1)
    }

    /// Merges dimensions `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let s = shape::normalize_dim("flatten", start, self.rank())?;
        let e = shape::normalize_dim("flatten", end, self.rank())?;
        if s > e {
            return arg_err("flatten", format!("start {start} is after end {end}"));
        }
        let mut new: Vec<usize> = self.shape()[..s].to_vec();
        new.push(self.shape()[s..=e].iter().product());
        new.extend_from_slice(&self.shape()[e + 1..]);
        self.reshape(&new)
    }

    /// Inserts a dimension of size 1 at `dim`.
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = shape::normalize_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut new = self.shape().to_vec();
        new.insert(d, 1);
        self.reshape(&new)
    }

    /// Removes dimension `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = shape::normalize_dim("squeeze", dim, self.rank())?;
        if self.shape()[d] != 1 {
            return shape_err(
                "squeeze",
                format!("dimension {d} of {:?} is not 1", self.shape()),
            );
        }
        let mut new = self.shape().to_vec();
        new.remove(d);
        self.reshape(&new)
    }

    /// Reorders dimensions: output dim `i` is input dim `dims[i]` (a contiguous copy).
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        if let Some(r) = crate::ops::half::widened("permute", &[self], |w| w[0].permute(dims)) {
            return r;
        }
        let r = self.rank();
        let mut seen = vec![false; r];
        if dims.len() != r
            || dims
                .iter()
                .any(|&d| d >= r || std::mem::replace(&mut seen[d], true))
        {
            return arg_err(
                "permute",
                format!(
                    "{dims:?} is not a permutation of the {r} dimensions of {:?}",
                    self.shape()
                ),
            );
        }
        if dims.iter().enumerate().all(|(i, &d)| i == d) {
            return Ok(self.clone());
        }
        let own = shape::contiguous_strides(self.shape());
        let out_shape: Vec<usize> = dims.iter().map(|&d| self.shape()[d]).collect();
        let strides: Vec<usize> = dims.iter().map(|&d| own[d]).collect();
        let y = strided_copy(self, &out_shape, &strides, 0)?;
        let mut inverse = vec![0; r];
        for (i, &d) in dims.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(record(y, "permute", &[self], move |g| {
            Ok(vec![Some(g.permute(&inverse)?)])
        }))
    }

    /// Swaps two dimensions.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = shape::normalize_dim("transpose", d0, self.rank())?;
        let b = shape::normalize_dim("transpose", d1, self.rank())?;
        let mut dims: Vec<usize> = (0..self.rank()).collect();
        dims.swap(a, b);
        self.permute(&dims)
    }

    /// The transpose of a matrix.
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() != 2 {
            return shape_err(
                "t",
                format!("needs a matrix, got {}", shape::fmt(self.shape())),
            );
        }
        self.transpose(0, 1)
    }

    /// Tensors are always stored contiguously, so this is the identity; kept for PyTorch
    /// familiarity.
    pub fn contiguous(&self) -> Tensor {
        self.clone()
    }

    /// Elements `start..start + len` along `dim` (a copy).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        if let Some(r) =
            crate::ops::half::widened("narrow", &[self], |w| w[0].narrow(dim, start, len))
        {
            return r;
        }
        let d = shape::normalize_dim("narrow", dim, self.rank())?;
        if start
            .checked_add(len)
            .is_none_or(|end| end > self.shape()[d])
        {
            return shape_err(
                "narrow",
                format!(
                    "start {start} and length {len} reach outside dimension {d} (size {}) of {}",
                    self.shape()[d],
                    shape::fmt(self.shape())
                ),
            );
        }
        let strides = shape::contiguous_strides(self.shape());
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = len;
        let base = start * strides[d];
        let y = strided_copy(self, &out_shape, &strides, base)?;
        let full = self.shape().to_vec();
        let xs = self.detach();
        Ok(record(y, "narrow", &[self], move |g| {
            let dx = fill(&full, g.dtype(), 0.0, g.device())?;
            strided_scatter(&dx, g, &strides, base)?;
            drop(xs);
            Ok(vec![Some(dx)])
        }))
    }

    /// Repeats size-1 (and missing leading) dimensions to reach `shape` (a copy).
    pub fn broadcast_to(&self, shape_: &[usize]) -> Result<Tensor> {
        if let Some(r) =
            crate::ops::half::widened("broadcast_to", &[self], |w| w[0].broadcast_to(shape_))
        {
            return r;
        }
        let out = shape::broadcast("broadcast_to", self.shape(), shape_)?;
        if out != shape_ {
            return shape_err(
                "broadcast_to",
                format!(
                    "{} cannot be broadcast to {}",
                    shape::fmt(self.shape()),
                    shape::fmt(shape_)
                ),
            );
        }
        crate::ops::check_out("broadcast_to", shape_, self.dtype(), self.device())?;
        if shape_ == self.shape() {
            return Ok(self.clone());
        }
        let strides = shape::broadcast_strides(self.shape(), shape_);
        let y = strided_copy(self, shape_, &strides, 0)?;
        let from = self.shape().to_vec();
        Ok(record(y, "broadcast_to", &[self], move |g| {
            Ok(vec![Some(g.sum_to_shape(&from)?)])
        }))
    }

    /// Concatenates along `dim`; all other dimensions must agree.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        if let Some(r) = crate::ops::half::widened("cat", tensors, |w| {
            Tensor::cat(&w.iter().collect::<Vec<_>>(), dim)
        }) {
            return r;
        }
        let Some(first) = tensors.first() else {
            return arg_err("cat", "needs at least one tensor");
        };
        let d = shape::normalize_dim("cat", dim, first.rank())?;
        let mut total = 0;
        for (i, t) in tensors.iter().enumerate() {
            check_same_device("cat", first, t)?;
            if t.dtype() != first.dtype() {
                return Err(Error::DType {
                    op: "cat",
                    msg: format!("dtypes differ: {:?} and {:?}", first.dtype(), t.dtype()),
                });
            }
            // PyTorch's wording, naming the tensor's place in the list.
            if t.rank() != first.rank() {
                return shape_err(
                    "cat",
                    format!(
                        "tensors must have same number of dimensions: got {} and {} for tensor number {i} in the list ({} and {})",
                        first.rank(),
                        t.rank(),
                        shape::fmt(first.shape()),
                        shape::fmt(t.shape())
                    ),
                );
            }
            if let Some(k) = (0..t.rank()).find(|&k| k != d && t.shape()[k] != first.shape()[k]) {
                return shape_err(
                    "cat",
                    format!(
                        "sizes of tensors must match except in dimension {d}: expected size {} but got size {} in dimension {k} for tensor number {i} in the list ({} and {})",
                        first.shape()[k],
                        t.shape()[k],
                        shape::fmt(first.shape()),
                        shape::fmt(t.shape())
                    ),
                );
            }
            total += t.shape()[d];
        }
        let mut out_shape = first.shape().to_vec();
        out_shape[d] = total;
        let out = empty_like_shape(first, &out_shape)?;
        let strides = shape::contiguous_strides(&out_shape);
        let mut starts = Vec::with_capacity(tensors.len());
        let mut at = 0;
        for t in tensors {
            strided_scatter(&out, t, &strides, at * strides[d])?;
            starts.push((at, t.shape()[d]));
            at += t.shape()[d];
        }
        let inputs: Vec<&Tensor> = tensors.to_vec();
        Ok(record(out, "cat", &inputs, move |g| {
            starts
                .iter()
                .map(|&(s, len)| Ok(Some(g.narrow(d as isize, s, len)?)))
                .collect()
        }))
    }

    /// Stacks equal-shaped tensors along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return arg_err("stack", "needs at least one tensor");
        };
        for t in tensors {
            if t.shape() != first.shape() {
                return shape_err(
                    "stack",
                    format!(
                        "shapes differ: {} and {}",
                        shape::fmt(first.shape()),
                        shape::fmt(t.shape())
                    ),
                );
            }
        }
        let d = shape::normalize_dim("stack", dim, first.rank() + 1)? as isize;
        let parts: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.unsqueeze(d))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::cat(&refs, d)
    }
}

/// Views a shape as `[outer, shape[d], inner]` around dimension `d`.
pub(crate) fn split3(shape_: &[usize], d: usize) -> (usize, usize, usize) {
    (
        shape_[..d].iter().product(),
        shape_[d],
        shape_[d + 1..].iter().product(),
    )
}
