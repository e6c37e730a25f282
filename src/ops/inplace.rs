//! In-place updates outside autograd, as PyTorch's trailing-underscore methods
//! (`add_`, `sub_`, `mul_`, `div_`, `add_scaled_`, `addcmul_`, `addcdiv_`,
//! `mul_scalar_`, `div_scalar_`, `add_scalar_`, `sqrt_`, `lerp_`, `maximum_`, `copy_`):
//! each is one pass over `self`'s storage (one dispatch on the GPU, no new storage,
//! through the backends' `Inplace` primitive), so every handle on `self` (a parameter,
//! an optimizer's state) sees the new values.
//!
//! The operands broadcast to `self`'s shape, never `self` to theirs. As in PyTorch, a
//! tensor that requires a gradient may only be updated in place under
//! [`crate::no_grad`], and never when it is the output of a recorded op (its gradient
//! would be computed from overwritten values; wgrad has no version counters).
//! Operands may alias `self` (`x.add_(&x)` doubles `x`): each element reads the
//! operand's value before the update (a tensor sharing `self`'s storage has its layout).
//! A GPU tensor past the binding limit is updated by the ordinary ops and a copy. A
//! half-precision tensor is updated in `f32` and rounded once (its operands share its
//! dtype), as PyTorch's.

use crate::backend::inplace::{self, InplaceOp};
use crate::error::{shape_err, Error, Result};
use crate::ops::split;
use crate::shape;
use crate::tensor::{check_float, check_pair, Tensor};

impl Tensor {
    /// Checks that `self` may be overwritten and that each operand is a float tensor of
    /// `self`'s dtype on its device that broadcasts to `self`'s shape.
    fn check_inplace(&self, op: &'static str, operands: &[&Tensor]) -> Result<()> {
        check_float(op, self)?;
        if self.requires_grad() {
            if self.grad_fn().is_some() {
                return Err(Error::Autograd(format!(
                    "{op}: this tensor is the output of a recorded op; updating it in place \
                     would corrupt the gradients computed from it (detach() it first)"
                )));
            }
            if crate::autograd::is_grad_enabled() {
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

    /// Checks, then applies `u` to `self` with the operands `a`, `b` (those `u` reads).
    fn update(
        &self,
        op: &'static str,
        u: InplaceOp,
        a: Option<&Tensor>,
        b: Option<&Tensor>,
    ) -> Result<&Tensor> {
        let operands: Vec<&Tensor> = a.into_iter().chain(b).collect();
        self.check_inplace(op, &operands)?;
        if self.dtype().is_half() {
            // Computed in f32 and rounded once into `self`'s storage, as PyTorch's
            // half-precision in-place ops (their "opmath" type).
            let _guard = crate::autograd::NoGradGuard::new();
            let wide = self.float()?;
            let (a32, b32) = (
                a.map(Tensor::float).transpose()?,
                b.map(Tensor::float).transpose()?,
            );
            wide.update(op, u, a32.as_ref(), b32.as_ref())?;
            crate::ops::layout::copy_into(self, &wide.to_dtype(self.dtype())?)?;
            return Ok(self);
        }
        // One pass, unless a GPU tensor is past the binding limit (the composed ops cut
        // their work) or an operand shares the storage with another layout (a wgrad
        // view never does; the composed ops are correct for any).
        let odd_alias = operands
            .iter()
            .any(|o| o.storage().same_as(self.storage()) && o.numel() != self.numel());
        if odd_alias || split::over(self.device(), self.numel()) {
            let _guard = crate::autograd::NoGradGuard::new();
            let r = self.composed(u, a, b)?;
            crate::ops::layout::copy_into(self, &r)?;
            return Ok(self);
        }
        let geo = inplace::geometry(self.shape(), a.map(|t| t.shape()), b.map(|t| t.shape()));
        self.device().backend().update(
            u,
            self.storage(),
            a.map(|t| t.storage()),
            b.map(|t| t.storage()),
            &geo,
        )?;
        Ok(self)
    }

    /// `u`'s result as a new tensor from the ordinary ops (the path past the binding
    /// limit).
    fn composed(&self, u: InplaceOp, a: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
        fn arg(t: Option<&Tensor>) -> Result<&Tensor> {
            t.ok_or_else(|| {
                Error::Gpu("an in-place update's operand is missing (a wgrad bug)".into())
            })
        }
        let scalar = |v: f64| Tensor::scalar(v, self.device());
        match u {
            InplaceOp::AddScaled(alpha) => self.add_times(arg(a)?, alpha),
            InplaceOp::Mul => self.mul(arg(a)?),
            InplaceOp::Div => self.div(arg(a)?),
            InplaceOp::Addcmul(v) => self.add_times(&arg(a)?.mul(arg(b)?)?, v),
            InplaceOp::Addcdiv(v) => self.add_times(&arg(a)?.div(arg(b)?)?, v),
            InplaceOp::MulScalar(s) => self.mul(&scalar(s)?),
            InplaceOp::DivScalar(s) => self.div(&scalar(s)?),
            InplaceOp::AddScalar(s) => self.add(&scalar(s)?),
            InplaceOp::Sqrt => self.sqrt(),
            InplaceOp::Lerp(w) => {
                let end = arg(a)?;
                if w.abs() < 0.5 {
                    self.add_times(&end.sub(self)?, w)
                } else {
                    end.sub(&end.sub(self)?.mul(&scalar(1.0 - w)?)?)
                }
            }
            InplaceOp::Maximum => self.maximum(arg(a)?),
            InplaceOp::Copy => arg(a)?.broadcast_to(self.shape()),
        }
    }

    /// `self + alpha * other` from the ordinary ops, one fewer when `alpha` is 1 or -1.
    fn add_times(&self, other: &Tensor, alpha: f64) -> Result<Tensor> {
        if alpha == 1.0 {
            self.add(other)
        } else if alpha == -1.0 {
            self.sub(other)
        } else {
            self.add(&other.mul_scalar(alpha)?)
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
        self.update("add_", InplaceOp::AddScaled(1.0), Some(other), None)
    }

    /// `self -= other` in place (`other` broadcast to `self`'s shape), as PyTorch's `sub_`.
    pub fn sub_(&self, other: &Tensor) -> Result<&Tensor> {
        self.update("sub_", InplaceOp::AddScaled(-1.0), Some(other), None)
    }

    /// `self *= other` in place (`other` broadcast to `self`'s shape), as PyTorch's `mul_`.
    pub fn mul_(&self, other: &Tensor) -> Result<&Tensor> {
        self.update("mul_", InplaceOp::Mul, Some(other), None)
    }

    /// `self /= other` in place (`other` broadcast to `self`'s shape), as PyTorch's `div_`.
    pub fn div_(&self, other: &Tensor) -> Result<&Tensor> {
        self.update("div_", InplaceOp::Div, Some(other), None)
    }

    /// `self += alpha * other` in place, as PyTorch's `add_(other, alpha=alpha)`
    /// (`alpha` rounded to the tensor's dtype).
    pub fn add_scaled_(&self, other: &Tensor, alpha: f64) -> Result<&Tensor> {
        self.update(
            "add_scaled_",
            InplaceOp::AddScaled(alpha),
            Some(other),
            None,
        )
    }

    /// `self += value * a * b` in place, as PyTorch's `addcmul_(a, b, value=value)`.
    pub fn addcmul_(&self, a: &Tensor, b: &Tensor, value: f64) -> Result<&Tensor> {
        self.update("addcmul_", InplaceOp::Addcmul(value), Some(a), Some(b))
    }

    /// `self += value * a / b` in place, as PyTorch's `addcdiv_(a, b, value=value)`.
    pub fn addcdiv_(&self, a: &Tensor, b: &Tensor, value: f64) -> Result<&Tensor> {
        self.update("addcdiv_", InplaceOp::Addcdiv(value), Some(a), Some(b))
    }

    /// `self *= s` in place, as PyTorch's `mul_` with a number.
    pub fn mul_scalar_(&self, s: f64) -> Result<&Tensor> {
        self.update("mul_scalar_", InplaceOp::MulScalar(s), None, None)
    }

    /// `self /= s` in place, as PyTorch's `div_` with a number (a division, not a
    /// product with `1 / s`: the same rounding as PyTorch's).
    pub fn div_scalar_(&self, s: f64) -> Result<&Tensor> {
        self.update("div_scalar_", InplaceOp::DivScalar(s), None, None)
    }

    /// `self += s` in place, as PyTorch's `add_` with a number.
    pub fn add_scalar_(&self, s: f64) -> Result<&Tensor> {
        self.update("add_scalar_", InplaceOp::AddScalar(s), None, None)
    }

    /// `self = sqrt(self)` in place, as PyTorch's `sqrt_` (NaN below 0).
    pub fn sqrt_(&self) -> Result<&Tensor> {
        self.update("sqrt_", InplaceOp::Sqrt, None, None)
    }

    /// `self += weight * (end - self)` in place, as PyTorch's `lerp_(end, weight)` with a
    /// number, and with its formula: from `|weight| >= 0.5` on,
    /// `end - (end - self) * (1 - weight)`, exact at `weight = 1`. Adam's first moment
    /// is `m.lerp_(&g, 1.0 - beta1)`.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let m = Tensor::from_vec(vec![0.0f32, 4.0], &[2], &dev)?;
    /// let g = Tensor::from_vec(vec![2.0f32, 0.0], &[2], &dev)?;
    /// m.lerp_(&g, 0.25)?;
    /// assert_eq!(m.to_vec::<f32>()?, vec![0.5, 3.0]);
    /// # Ok(()) }
    /// ```
    pub fn lerp_(&self, end: &Tensor, weight: f64) -> Result<&Tensor> {
        self.update("lerp_", InplaceOp::Lerp(weight), Some(end), None)
    }

    /// `self = max(self, other)` in place, NaN where either is NaN, as
    /// `torch.maximum(self, other, out=self)` (AMSGrad's running maximum).
    pub fn maximum_(&self, other: &Tensor) -> Result<&Tensor> {
        self.update("maximum_", InplaceOp::Maximum, Some(other), None)
    }

    /// Overwrites `self` with `src` broadcast to `self`'s shape, as PyTorch's `copy_`
    /// (same dtype and device; [`Tensor::copy_from`] is the same-shape form that
    /// ignores gradient tracking).
    pub fn copy_(&self, src: &Tensor) -> Result<&Tensor> {
        self.update("copy_", InplaceOp::Copy, Some(src), None)
    }
}
