//! In-place updates outside autograd, as PyTorch's trailing-underscore methods
//! (`add_`, `sub_`, `mul_`, `add_scaled_`, `addcmul_`, `addcdiv_`, `mul_scalar_`,
//! `copy_`): the result is computed without a graph and written back into `self`'s
//! storage, so every handle on `self` (a parameter, an optimizer's state) sees it.
//!
//! The operands broadcast to `self`'s shape, never `self` to theirs. As in PyTorch, a
//! tensor that requires a gradient may only be updated in place under
//! [`crate::no_grad`], and never when it is the output of a recorded op (its gradient
//! would be computed from overwritten values; wgrad has no version counters).
//! Operands may alias `self` (`x.add_(&x)` doubles `x`): the new values are computed
//! in full before they are written.

use crate::autograd::{is_grad_enabled, NoGradGuard};
use crate::error::{shape_err, Error, Result};
use crate::shape;
use crate::tensor::{check_pair, Tensor};

impl Tensor {
    /// Checks that `self` may be overwritten and that each operand is a float tensor of
    /// `self`'s dtype on its device that broadcasts to `self`'s shape.
    fn check_inplace(&self, op: &'static str, operands: &[&Tensor]) -> Result<()> {
        if self.requires_grad() {
            if self.grad_fn().is_some() {
                return Err(Error::Autograd(format!(
                    "{op}: this tensor is the output of a recorded op; updating it in place \
                     would corrupt the gradients computed from it (detach() it first)"
                )));
            }
            if is_grad_enabled() {
                return Err(Error::Autograd(format!(
                    "{op}: a leaf tensor that requires grad is used in an in-place \
                     operation; update it inside no_grad(..)"
                )));
            }
        }
        for o in operands {
            check_pair(op, self, o)?;
            let out = shape::broadcast(op, self.shape(), o.shape())?;
            if out != self.shape() {
                return shape_err(
                    op,
                    format!(
                        "the operand {} does not broadcast to the updated tensor's shape {}",
                        shape::fmt(o.shape()),
                        shape::fmt(self.shape())
                    ),
                );
            }
        }
        Ok(())
    }

    /// Runs `f` without a graph after the checks and writes its result into `self`.
    fn update_inplace(
        &self,
        op: &'static str,
        operands: &[&Tensor],
        f: impl FnOnce() -> Result<Tensor>,
    ) -> Result<&Tensor> {
        self.check_inplace(op, operands)?;
        let _guard = NoGradGuard::new();
        let r = f()?;
        crate::ops::layout::copy_into(self, &r)?;
        Ok(self)
    }

    /// `self + alpha * other`, one dispatch fewer when `alpha` is 1 or -1.
    fn add_times(&self, other: &Tensor, alpha: f32) -> Result<Tensor> {
        if alpha == 1.0 {
            self.add(other)
        } else if alpha == -1.0 {
            self.sub(other)
        } else {
            self.add(&other.mul_scalar(alpha as f64)?)
        }
    }

    /// `self += other` in place (`other` broadcast to `self`'s shape), as PyTorch's
    /// `add_`. Returns `self` for chaining.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2], &dev)?;
    /// let row = Tensor::from_vec(vec![10.0f32, 20.0], &[2], &dev)?;
    /// x.add_(&row)?;
    /// assert_eq!(x.to_vec::<f32>()?, vec![11.0, 22.0, 13.0, 24.0]);
    /// // A leaf that requires grad is updated only under no_grad.
    /// let w = Tensor::ones(&[2], &dev)?.requires_grad_(true)?;
    /// assert!(w.add_(&row).is_err());
    /// no_grad(|| w.add_(&row).map(|_| ()))?;
    /// assert_eq!(w.to_vec::<f32>()?, vec![11.0, 21.0]);
    /// # Ok(()) }
    /// ```
    pub fn add_(&self, other: &Tensor) -> Result<&Tensor> {
        self.update_inplace("add_", &[other], || self.add(other))
    }

    /// `self -= other` in place (`other` broadcast to `self`'s shape), as PyTorch's `sub_`.
    pub fn sub_(&self, other: &Tensor) -> Result<&Tensor> {
        self.update_inplace("sub_", &[other], || self.sub(other))
    }

    /// `self *= other` in place (`other` broadcast to `self`'s shape), as PyTorch's `mul_`.
    pub fn mul_(&self, other: &Tensor) -> Result<&Tensor> {
        self.update_inplace("mul_", &[other], || self.mul(other))
    }

    /// `self += alpha * other` in place, as PyTorch's `add_(other, alpha=alpha)`.
    pub fn add_scaled_(&self, other: &Tensor, alpha: f32) -> Result<&Tensor> {
        self.update_inplace("add_scaled_", &[other], || self.add_times(other, alpha))
    }

    /// `self += value * a * b` in place, as PyTorch's `addcmul_(a, b, value=value)`.
    pub fn addcmul_(&self, a: &Tensor, b: &Tensor, value: f32) -> Result<&Tensor> {
        self.update_inplace("addcmul_", &[a, b], || self.add_times(&a.mul(b)?, value))
    }

    /// `self += value * a / b` in place, as PyTorch's `addcdiv_(a, b, value=value)`.
    pub fn addcdiv_(&self, a: &Tensor, b: &Tensor, value: f32) -> Result<&Tensor> {
        self.update_inplace("addcdiv_", &[a, b], || self.add_times(&a.div(b)?, value))
    }

    /// `self *= s` in place, as PyTorch's `mul_` with a number.
    pub fn mul_scalar_(&self, s: f32) -> Result<&Tensor> {
        self.update_inplace("mul_scalar_", &[], || self.mul_scalar(s as f64))
    }

    /// Overwrites `self` with `src` broadcast to `self`'s shape, as PyTorch's `copy_`
    /// (same dtype and device; [`Tensor::copy_from`] is the same-shape form that
    /// ignores gradient tracking).
    pub fn copy_(&self, src: &Tensor) -> Result<&Tensor> {
        self.update_inplace("copy_", &[src], || src.broadcast_to(self.shape()))
    }
}
