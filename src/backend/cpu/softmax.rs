//! The CPU backend's softmax rows: the row maximum, the log-sum-exp, and the backward
//! from the saved output.

use std::sync::Arc;

use super::elementwise::CpuBackend;
use super::{map_float, map_float2, pool, CpuStorage, Float};
use crate::backend::{wrong_backend, Rows, Softmax, Storage};
use crate::error::Result;

impl Softmax for CpuBackend {
    fn softmax(&self, x: &Storage, r: Rows, log: bool) -> Result<Storage> {
        let _span = super::profile::span("softmax");
        let Storage::Cpu(x) = x else {
            return wrong_backend("softmax");
        };
        let out = map_float!(&*x.read(), |v: T| forward_cpu(r, v, log));
        Ok(Storage::Cpu(Arc::new(CpuStorage::new(out))))
    }

    fn softmax_backward(&self, y: &Storage, g: &Storage, r: Rows, log: bool) -> Result<Storage> {
        let _span = super::profile::span("softmax_backward");
        let (Storage::Cpu(y), Storage::Cpu(g)) = (y, g) else {
            return wrong_backend("softmax");
        };
        let out = map_float2!(&*y.read(), &*g.read(), |yv, gv: T| backward_cpu(
            r, yv, gv, log
        ));
        Ok(Storage::Cpu(Arc::new(CpuStorage::new(out))))
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
