//! Elementwise binary ops with NumPy broadcasting: `add`, `sub`, `mul`, `div`, `pow`,
//! `maximum`, `minimum`, and comparisons (no gradient). Backward kernels compute both
//! input gradients in the output's shape; `sum_to_shape` then reduces them over the
//! broadcast dimensions. Each op saves both inputs. `clamp` composes comparisons and
//! `where` with constant bounds.

use crate::autograd::record;
use crate::backend::broadcast::Broadcast;
use crate::error::{Error, Result};
use crate::ops::split;
use crate::tensor::{check_pair, check_same_device, DType, Tensor};

pub use crate::backend::elementwise::binary::{BinaryOp, CompareOp};

/// Applies a broadcasting binary op, recording the backward.
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    match crate::ops::half::direct(op.name(), &[a, b], |w| binary_recorded(&w[0], &w[1], op)) {
        Some(r) => r,
        None => binary_recorded(a, b, op),
    }
}

/// [`binary`] on inputs of one dtype (half ones read as they are).
fn binary_recorded(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    check_pair(op.name(), a, b)?;
    let geo = Broadcast::new(op.name(), a.shape(), b.shape())?;
    crate::ops::check_out(op.name(), &geo.out, a.dtype(), a.device())?;
    let y = binary_forward(a, b, &geo, op)?;
    let (sa, sb) = (a.detach(), b.detach());
    Ok(record(y, op.name(), &[a, b], move |g| {
        let (da, db) = match op.constant_grads() {
            Some((ca, cb)) => (scaled(g, ca)?, scaled(g, cb)?),
            None => binary_backward(op, &geo, &sa, &sb, g)?,
        };
        Ok(vec![
            Some(da.sum_to_shape(sa.shape())?),
            Some(db.sum_to_shape(sb.shape())?),
        ])
    }))
}

/// `c g` for a constant gradient factor: `g` itself for 1, no launch.
fn scaled(g: &Tensor, c: f64) -> Result<Tensor> {
    if c == 1.0 {
        Ok(g.clone())
    } else if c == -1.0 {
        g.neg()
    } else {
        g.affine(c, 0.0)
    }
}

/// The forward of a binary op (without the graph), in pieces past the binding limit.
fn binary_forward(a: &Tensor, b: &Tensor, geo: &Broadcast, op: BinaryOp) -> Result<Tensor> {
    if let Some(mut o) = split::broadcast2(a, b, &[], &geo.out, 1, |p| {
        let piece = Broadcast::new(op.name(), p[0].shape(), p[1].shape())?;
        Ok(vec![binary_forward(&p[0], &p[1], &piece, op)?])
    })? {
        return Ok(o.remove(0));
    }
    let out = a
        .device()
        .backend()
        .binary(op, a.storage(), b.storage(), geo)?;
    crate::ops::half::like(out, geo.out.clone(), a)
}

/// The gradients of both inputs in the output's shape (before summing over the
/// broadcast dimensions), in pieces past the binding limit.
fn binary_backward(
    op: BinaryOp,
    geo: &Broadcast,
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    if let Some(o) = split::broadcast2(a, b, &[g], &geo.out, 2, |p| {
        let piece = Broadcast::new(op.name(), p[0].shape(), p[1].shape())?;
        let (da, db) = binary_backward(op, &piece, &p[0], &p[1], &p[2])?;
        Ok(vec![da, db])
    })? {
        let [da, db]: [Tensor; 2] = o
            .try_into()
            .map_err(|_| crate::error::Error::Gpu("binary: two outputs expected".into()))?;
        return Ok((da, db));
    }
    let (da, db) =
        a.device()
            .backend()
            .binary_backward(op, a.storage(), b.storage(), g.storage(), geo)?;
    Ok((
        crate::ops::half::like(da, geo.out.clone(), a)?,
        crate::ops::half::like(db, geo.out.clone(), a)?,
    ))
}

/// Elementwise comparison with broadcasting: 1.0 where it holds, else 0.0 (float
/// inputs), or `u32` 1 / 0 for two `u32` tensors (standing in for PyTorch's bool). No
/// gradient.
pub fn compare(a: &Tensor, b: &Tensor, op: CompareOp) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened(op.name(), &[a, b], |w| compare(&w[0], &w[1], op)) {
        return r;
    }
    if a.dtype() == DType::U32 || b.dtype() == DType::U32 {
        check_integer_pair(op.name(), a, b)?;
    } else {
        check_pair(op.name(), a, b)?;
    }
    let geo = Broadcast::new("compare", a.shape(), b.shape())?;
    crate::ops::check_out("compare", &geo.out, a.dtype(), a.device())?;
    if let Some(mut o) = split::broadcast2(a, b, &[], &geo.out, 1, |p| {
        Ok(vec![compare(&p[0], &p[1], op)?])
    })? {
        return Ok(o.remove(0));
    }
    let out = a
        .device()
        .backend()
        .compare(op, a.storage(), b.storage(), &geo, a.dtype())?;
    Ok(Tensor::like(out, geo.out.clone(), a))
}

/// Fails unless both are `u32` tensors on the same device: a `u32` and a float tensor
/// are not promoted (PyTorch would); the message says to cast one.
fn check_integer_pair(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DType {
            op,
            msg: format!(
                "dtypes differ: {:?} and {:?} (wgrad does not promote; cast one with \
                 `to_dtype(DType::{:?})` first)",
                a.dtype(),
                b.dtype(),
                if a.dtype() == DType::U32 {
                    b.dtype()
                } else {
                    a.dtype()
                }
            ),
        });
    }
    check_same_device(op, a, b)
}

impl Tensor {
    /// Elementwise `self + other`, broadcasting (NumPy's rules).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2], &dev)?;
    /// let b = Tensor::from_vec(vec![10.0f32, 20.0], &[2], &dev)?; // added to every row
    /// assert_eq!(a.add(&b)?.to_vec::<f32>()?, [11.0, 22.0, 13.0, 24.0]);
    /// # Ok(()) }
    /// ```
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Add)
    }
    /// Elementwise `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Sub)
    }
    /// Elementwise `self * other`, broadcasting (NumPy's rules).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &dev)?;
    /// assert_eq!(a.mul(&Tensor::scalar(2.0, &dev)?)?.to_vec::<f32>()?, [2.0, 4.0, 6.0]);
    /// # Ok(()) }
    /// ```
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Mul)
    }
    /// Elementwise `self / other`, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Div)
    }
    /// Elementwise `self ^ other`, broadcasting.
    pub fn pow(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Pow)
    }
    /// Elementwise maximum (ties share the gradient).
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Maximum)
    }
    /// Elementwise minimum (ties share the gradient).
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Minimum)
    }
    /// 1.0 where `self == other`, else 0.0, broadcasting; on two `u32` tensors a `u32`
    /// tensor of 1 / 0 (PyTorch's bool). Mixed `u32` / float operands are an error.
    pub fn eq(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Eq)
    }
    /// 1.0 where `self != other`, else 0.0, broadcasting; on two `u32` tensors a `u32`
    /// tensor of 1 / 0 (PyTorch's bool). Mixed `u32` / float operands are an error.
    pub fn ne(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Ne)
    }
    /// 1.0 where `self < other`, else 0.0, broadcasting; on two `u32` tensors a `u32`
    /// tensor of 1 / 0 (PyTorch's bool). Mixed `u32` / float operands are an error.
    pub fn lt(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Lt)
    }
    /// 1.0 where `self <= other`, else 0.0, broadcasting; on two `u32` tensors a `u32`
    /// tensor of 1 / 0 (PyTorch's bool). Mixed `u32` / float operands are an error.
    pub fn le(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Le)
    }
    /// 1.0 where `self > other`, else 0.0, broadcasting; on two `u32` tensors a `u32`
    /// tensor of 1 / 0 (PyTorch's bool). Mixed `u32` / float operands are an error.
    pub fn gt(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Gt)
    }
    /// 1.0 where `self >= other`, else 0.0, broadcasting; on two `u32` tensors a `u32`
    /// tensor of 1 / 0 (PyTorch's bool). Mixed `u32` / float operands are an error.
    pub fn ge(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Ge)
    }
    /// Sums a broadcast gradient back down to `shape` (no-op when already that shape).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let lead = self.rank() - shape.len();
        let dims: Vec<isize> = (0..self.rank())
            .filter(|&d| d < lead || (shape[d - lead] == 1 && self.shape()[d] != 1))
            .map(|d| d as isize)
            .collect();
        self.sum_dim(&dims, true)?.reshape(shape)
    }
}

/// `x` with the elements on the wrong side of `bound` (`below` it, or above) replaced
/// by it; the gradient passes where `x` is on the right side, the bound included, so not
/// at NaN (which stays NaN through the detached branch), as PyTorch's.
fn clamp_side(x: &Tensor, bound: f64, below: bool) -> Result<Tensor> {
    let b = crate::ops::layout::fill(&[], x.dtype(), bound, x.device())?;
    let (keep, out) = if below {
        (x.ge(&b)?, x.lt(&b)?)
    } else {
        (x.le(&b)?, x.gt(&b)?)
    };
    let rest = Tensor::where_cond(&out, &b, &x.detach())?;
    Tensor::where_cond(&keep, x, &rest)
}

impl Tensor {
    /// PyTorch's `clamp(x, min, max)`: `min(max(x, min), max)` elementwise, either bound
    /// optional (not both); with `min > max` every element is `max`, as in PyTorch. The
    /// gradient is PyTorch's: 1 where `min <= x <= max` (the bounds included), 0 outside.
    /// NaN stays NaN, with gradient 0 (PyTorch's too). A NaN bound, or no bound, is an
    /// error.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let x = Tensor::from_vec(vec![-2.0f32, 0.5, 3.0], &[3], &Device::cpu())?;
    /// assert_eq!(x.clamp(Some(-1.0), Some(1.0))?.to_vec::<f32>()?, [-1.0, 0.5, 1.0]);
    /// # Ok(()) }
    /// ```
    pub fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Result<Tensor> {
        if let Some(r) = crate::ops::half::widened("clamp", &[self], |w| w[0].clamp(min, max)) {
            return r;
        }
        crate::tensor::check_float("clamp", self)?;
        if min.is_none() && max.is_none() {
            return crate::error::arg_err("clamp", "at least one of min and max is needed");
        }
        if min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan) {
            return crate::error::arg_err("clamp", "a bound is NaN");
        }
        let x = match min {
            Some(lo) => clamp_side(self, lo, true)?,
            None => self.clone(),
        };
        match max {
            Some(hi) => clamp_side(&x, hi, false),
            None => Ok(x),
        }
    }

    /// `clamp(Some(min), None)`: PyTorch's `clamp_min`.
    pub fn clamp_min(&self, min: f64) -> Result<Tensor> {
        self.clamp(Some(min), None)
    }

    /// `clamp(None, Some(max))`: PyTorch's `clamp_max`.
    pub fn clamp_max(&self, max: f64) -> Result<Tensor> {
        self.clamp(None, Some(max))
    }
}
