//! Elementwise binary ops with NumPy broadcasting: `add`, `sub`, `mul`, `div`, `pow`,
//! `maximum`, `minimum`, and comparisons (no gradient). Backward kernels compute both
//! input gradients in the output's shape; `sum_to_shape` then reduces them over the
//! broadcast dimensions. Each op saves both inputs.

use crate::autograd::record;
use crate::backend::broadcast::Broadcast;
use crate::error::Result;
use crate::ops::split;
use crate::tensor::{check_pair, Tensor};

pub use crate::backend::elementwise::binary::{BinaryOp, CompareOp};

/// Applies a broadcasting binary op, recording the backward.
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
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
        g.affine(c as f32, 0.0)
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
    Ok(Tensor::like(out, geo.out.clone(), a))
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
        Tensor::like(da, geo.out.clone(), a),
        Tensor::like(db, geo.out.clone(), a),
    ))
}

/// Elementwise comparison with broadcasting: 1.0 where it holds, else 0.0. No gradient.
pub fn compare(a: &Tensor, b: &Tensor, op: CompareOp) -> Result<Tensor> {
    check_pair("compare", a, b)?;
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
        .compare(op, a.storage(), b.storage(), &geo)?;
    Ok(Tensor::like(out, geo.out.clone(), a))
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
    /// 1.0 where `self == other`.
    pub fn eq(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Eq)
    }
    /// 1.0 where `self != other`.
    pub fn ne(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Ne)
    }
    /// 1.0 where `self < other`.
    pub fn lt(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Lt)
    }
    /// 1.0 where `self <= other`.
    pub fn le(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Le)
    }
    /// 1.0 where `self > other`.
    pub fn gt(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Gt)
    }
    /// 1.0 where `self >= other`.
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
