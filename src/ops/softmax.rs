//! `softmax` and `log_softmax` along one dimension, each with its own backward kernel
//! computed from the saved output: `dx = y (g - sum(g y))` and `dx = g - e^y sum(g)`.

use crate::autograd::record;
use crate::backend::cpu::pool;
use crate::backend::cpu::{map_float, map_float2, Float};
use crate::backend::gpu::params::{params, Params};
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::device::Device;
use crate::error::Result;
use crate::ops::layout::split3;
use crate::ops::{gpu_alloc, groups_rows, kernel, row_work, shader};
use crate::shape;
use crate::tensor::{check_float, Tensor};

pub(crate) const FILE: ShaderFile = shader("softmax", include_str!("../../shaders/softmax.wgsl"))
    .with_params(&[&SoftmaxParams::INFO]);

params! {
    /// Softmax rows: the tensor viewed as `[outer, d, inner]`, one row per (outer, inner).
    pub(crate) struct SoftmaxParams as sm {
        /// Rows (outer * inner).
        rows: u32,
        /// Row length.
        d: u32,
        /// Elements per position of the dimension.
        inner: u32,
        /// Padding.
        _pad: u32,
    }
}
const SOFTMAX_FWD: &Kernel = kernel!(
    FILE,
    "softmax_fwd",
    [X0, Y0],
    loops,
    overrides = ["RT"],
    params = SoftmaxParams
);
const LOG_SOFTMAX_FWD: &Kernel = kernel!(
    FILE,
    "log_softmax_fwd",
    [X0, Y0],
    loops,
    overrides = ["RT"],
    params = SoftmaxParams
);
const SOFTMAX_BWD: &Kernel = kernel!(
    FILE,
    "softmax_bwd",
    [X0, X1, Y0],
    loops,
    overrides = ["RT"],
    params = SoftmaxParams
);
const LOG_SOFTMAX_BWD: &Kernel = kernel!(
    FILE,
    "log_softmax_bwd",
    [X0, X1, Y0],
    loops,
    overrides = ["RT"],
    params = SoftmaxParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![SOFTMAX_FWD, LOG_SOFTMAX_FWD, SOFTMAX_BWD, LOG_SOFTMAX_BWD]
}

#[derive(Clone, Copy)]
struct Rows {
    outer: usize,
    d: usize,
    inner: usize,
}

impl Rows {
    fn params(self) -> SoftmaxParams {
        SoftmaxParams {
            rows: (self.outer * self.inner) as u32,
            d: self.d as u32,
            inner: self.inner as u32,
            ..Default::default()
        }
    }
    fn at(self, row: usize, j: usize) -> usize {
        let (o, i) = (row / self.inner, row % self.inner);
        (o * self.d + j) * self.inner + i
    }
    fn rows(self) -> usize {
        self.outer * self.inner
    }
}

fn forward_cpu<T: Float>(r: Rows, x: &[T], log: bool) -> Vec<T> {
    let mut y = pool::filled(x.len(), T::zero());
    for row in 0..r.rows() {
        let mut m = x[r.at(row, 0)];
        for j in 1..r.d {
            m = m.max(x[r.at(row, j)]);
        }
        let mut s = T::zero();
        for j in 0..r.d {
            s += (x[r.at(row, j)] - m).exp();
        }
        let lse = m + s.ln();
        for j in 0..r.d {
            let k = r.at(row, j);
            y[k] = if log { x[k] - lse } else { (x[k] - lse).exp() };
        }
    }
    y
}

fn backward_cpu<T: Float>(r: Rows, y: &[T], g: &[T], log: bool) -> Vec<T> {
    let mut dx = pool::filled(y.len(), T::zero());
    for row in 0..r.rows() {
        let mut s = T::zero();
        for j in 0..r.d {
            let k = r.at(row, j);
            s += if log { g[k] } else { g[k] * y[k] };
        }
        for j in 0..r.d {
            let k = r.at(row, j);
            dx[k] = if log {
                g[k] - y[k].exp() * s
            } else {
                y[k] * (g[k] - s)
            };
        }
    }
    dx
}

fn softmax_impl(x: &Tensor, dim: isize, log: bool) -> Result<Tensor> {
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
    if x.device().is_gpu() && size > crate::ops::reduce::MAX_GROUP_ELEMENTS {
        // Rows too long for one workgroup: compose the row max and sum, which spread
        // over many workgroups, with elementwise ops (autograd differentiates those).
        let m = crate::autograd::no_grad(|| x.max_dim(&[dim], true))?;
        let z = x.sub(&m)?;
        let e = z.exp()?;
        let s = e.sum_dim(&[dim], true)?;
        return if log { z.sub(&s.log()?) } else { e.div(&s) };
    }
    let (fk, bk) = if log {
        (LOG_SOFTMAX_FWD, LOG_SOFTMAX_BWD)
    } else {
        (SOFTMAX_FWD, SOFTMAX_BWD)
    };
    let y = match x.device() {
        Device::Cpu => Tensor::from_cpu(
            map_float!(&*x.cpu_data(), |v: T| forward_cpu(r, v, log)),
            x.shape().to_vec(),
        ),
        Device::Gpu(g) => {
            let out = gpu_alloc(g, x.numel())?;
            g.launch_with(
                fk,
                &r.params(),
                &[x.gpu_buf(), &out],
                groups_rows(r.rows()),
                row_work(r.rows(), r.d),
            );
            Tensor::from_gpu(out, x.shape().to_vec(), x.dtype())
        }
    };
    let ys = y.detach();
    Ok(record(y, name, &[x], move |g| {
        Ok(vec![Some(match g.device() {
            Device::Cpu => Tensor::from_cpu(
                map_float2!(&*ys.cpu_data(), &*g.cpu_data(), |yv, gv: T| backward_cpu(
                    r, yv, gv, log
                )),
                ys.shape().to_vec(),
            ),
            Device::Gpu(ctx) => {
                let out = gpu_alloc(ctx, ys.numel())?;
                ctx.launch_with(
                    bk,
                    &r.params(),
                    &[ys.gpu_buf(), g.gpu_buf(), &out],
                    groups_rows(r.rows()),
                    row_work(r.rows(), r.d),
                );
                Tensor::from_gpu(out, ys.shape().to_vec(), ys.dtype())
            }
        })])
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
