//! Arithmetic operators on tensors, written as in PyTorch: `&a + &b`, `&x * 2.0`,
//! `1.0 - &x`, `-&x`. Each returns `Result<Tensor>` (a shape, dtype or device mismatch
//! is an error, never a panic), as candle's operators do: finish an expression with `?`.
//! Tensor-tensor operators broadcast like [`Tensor::add`]; scalar operators are one
//! elementwise kernel: `+`, `-` and `*` an affine map ([`Tensor::affine`], the scalar
//! kept in `f64`), `/` a broadcast division by (or of) a tensor of no dimensions.
//!
//! ```
//! use wgrad::prelude::*;
//! # fn main() -> wgrad::Result<()> {
//! let dev = Device::cpu();
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 4.0], &[3], &dev)?;
//! let y = (&(1.0 - &x)? * 2.0)?;
//! assert_eq!(y.to_vec::<f32>()?, [0.0, -2.0, -6.0]);
//! assert_eq!((2.0 / &x)?.to_vec::<f32>()?, [2.0, 1.0, 0.5]);
//! assert_eq!((&x + &x)?.to_vec::<f32>()?, [2.0, 4.0, 8.0]);
//! # Ok(()) }
//! ```

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::backend::elementwise::UnaryOp;
use crate::error::Result;
use crate::tensor::Tensor;

/// `scale * x + shift` with `f64` scalars.
fn affine(x: &Tensor, scale: f64, shift: f64) -> Result<Tensor> {
    crate::ops::unary::unary(x, UnaryOp::Affine { scale, shift })
}

/// `s` as a tensor of no dimensions, in `x`'s dtype and on its device.
fn scalar_like(x: &Tensor, s: f64) -> Result<Tensor> {
    crate::ops::layout::fill(&[], x.dtype(), s, x.device())
}

/// A scalar divided by each element of `x`.
fn scalar_div(s: f64, x: &Tensor) -> Result<Tensor> {
    scalar_like(x, s)?.div(x)
}

/// Each element of `x` divided by a scalar (a true division, as PyTorch's, not a
/// multiplication by the reciprocal).
fn div_scalar(x: &Tensor, s: f64) -> Result<Tensor> {
    x.div(&scalar_like(x, s)?)
}

macro_rules! tensor_ops {
    ($($tr:ident $m:ident $f:ident;)*) => {$(
        impl $tr<&Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $m(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$f(self, rhs)
            }
        }
        impl $tr<Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $m(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$f(self, &rhs)
            }
        }
        impl $tr<&Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $m(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$f(&self, rhs)
            }
        }
        impl $tr<Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $m(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$f(&self, &rhs)
            }
        }
    )*};
}

tensor_ops! {
    Add add add;
    Sub sub sub;
    Mul mul mul;
    Div div div;
}

/// Operators between a tensor and a scalar of type `$s`, in both orders. Scalars are
/// `f64` only, like Python's floats in PyTorch: with a second scalar type a bare literal
/// (`1.0 - &x`) would not infer.
macro_rules! scalar_ops {
    ($($s:ty),*) => {$(
        scalar_ops!(@one $s, &Tensor);
        scalar_ops!(@one $s, Tensor);
    )*};
    (@one $s:ty, $t:ty) => {
        impl Add<$s> for $t {
            type Output = Result<Tensor>;
            fn add(self, rhs: $s) -> Result<Tensor> {
                affine(&self, 1.0, rhs as f64)
            }
        }
        impl Sub<$s> for $t {
            type Output = Result<Tensor>;
            fn sub(self, rhs: $s) -> Result<Tensor> {
                affine(&self, 1.0, -(rhs as f64))
            }
        }
        impl Mul<$s> for $t {
            type Output = Result<Tensor>;
            fn mul(self, rhs: $s) -> Result<Tensor> {
                affine(&self, rhs as f64, 0.0)
            }
        }
        impl Div<$s> for $t {
            type Output = Result<Tensor>;
            fn div(self, rhs: $s) -> Result<Tensor> {
                div_scalar(&self, rhs as f64)
            }
        }
        impl Add<$t> for $s {
            type Output = Result<Tensor>;
            fn add(self, rhs: $t) -> Result<Tensor> {
                affine(&rhs, 1.0, self as f64)
            }
        }
        impl Sub<$t> for $s {
            type Output = Result<Tensor>;
            fn sub(self, rhs: $t) -> Result<Tensor> {
                affine(&rhs, -1.0, self as f64)
            }
        }
        impl Mul<$t> for $s {
            type Output = Result<Tensor>;
            fn mul(self, rhs: $t) -> Result<Tensor> {
                affine(&rhs, self as f64, 0.0)
            }
        }
        impl Div<$t> for $s {
            type Output = Result<Tensor>;
            fn div(self, rhs: $t) -> Result<Tensor> {
                scalar_div(self as f64, &rhs)
            }
        }
    };
}

scalar_ops!(f64);

impl Neg for &Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        Tensor::neg(self)
    }
}

impl Neg for Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        Tensor::neg(&self)
    }
}
