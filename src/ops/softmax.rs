//! `softmax` and `log_softmax` along one dimension, each with its own backward kernel
//! computed from the saved output: `dx = y (g - sum(g y))` and `dx = g - e^y sum(g)`.

use crate::autograd::record;
use crate::backend::Rows;
use crate::error::Result;
use crate::ops::layout::split3;
use crate::shape;
use crate::tensor::{check_float, Tensor};

fn softmax_impl(x: &Tensor, dim: isize, log: bool) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened("softmax", &[x], |w| softmax_impl(&w[0], dim, log)) {
        return r;
    }
    let name = if log { "log_softmax" } else { "softmax" };
    check_float(name, x)?;
    // A 0-d tensor is one row of one element (PyTorch accepts dim 0 or -1 for it).
    let (outer, size, inner) = if x.rank() == 0 && (dim == 0 || dim == -1) {
        (1, 1, 1)
    } else {
        split3(x.shape(), shape::normalize_dim(name, dim, x.rank())?)
    };
    let r = Rows {
        outer,
        d: size,
        inner,
    };
    if x.numel() == 0 {
        // Nothing to normalise (PyTorch returns an empty result of the same shape).
        let y = Tensor::zeros(x.shape(), x.device())?;
        return Ok(record(y, name, &[x], |g| Ok(vec![Some(g.clone())])));
    }
    if size > x.device().backend().row_limit() {
        // Rows too long for one workgroup: compose the row max and sum, which spread
        // over many workgroups, with elementwise ops (autograd differentiates those).
        let m = crate::autograd::no_grad(|| x.max_dim(&[dim], true))?;
        let z = x.sub(&m)?;
        let e = z.exp()?;
        let s = e.sum_dim(&[dim], true)?;
        return if log { z.sub(&s.log()?) } else { e.div(&s) };
    }
    let out = x.device().backend().softmax(x.storage(), r, log)?;
    let y = Tensor::like(out, x.shape().to_vec(), x);
    let ys = y.detach();
    Ok(record(y, name, &[x], move |g| {
        let dx = ys
            .device()
            .backend()
            .softmax_backward(ys.storage(), g.storage(), r, log)?;
        Ok(vec![Some(Tensor::like(dx, ys.shape().to_vec(), &ys))])
    }))
}

impl Tensor {
    /// Softmax along `dim`.
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        softmax_impl(self, dim, false)
    }
    /// Log-softmax along `dim` (stable for large inputs).
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        softmax_impl(self, dim, true)
    }
}
