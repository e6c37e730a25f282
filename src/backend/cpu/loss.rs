//! The CPU backend's softmax cross-entropy.

use std::sync::Arc;

use super::elementwise::CpuBackend;
use super::{CpuData, CpuStorage, Float};
use crate::backend::{wrong_backend, Loss, Storage};
use crate::error::{arg_err, Result};

fn targets(t: &Storage) -> Result<std::sync::RwLockReadGuard<'_, CpuData>> {
    match t {
        Storage::Cpu(t) => Ok(t.read()),
        Storage::Gpu(_) => wrong_backend("cross_entropy"),
        Storage::Half(h) => crate::backend::half::not_yet("cross_entropy", h.dtype),
    }
}

impl Loss for CpuBackend {
    fn row_limit(&self) -> usize {
        usize::MAX
    }

    fn cross_entropy(
        &self,
        x: &Storage,
        t: &Storage,
        _n: usize,
        c: usize,
    ) -> Result<(Storage, Storage)> {
        let _span = super::profile::span("cross_entropy");
        let (Storage::Cpu(x), t) = (x, targets(t)?) else {
            return wrong_backend("cross_entropy");
        };
        let CpuData::U32(t) = &*t else {
            return arg_err("cross_entropy", "the targets must be u32 class indices");
        };
        if let Some(&bad) = t.iter().find(|&&k| k as usize >= c) {
            return arg_err(
                "cross_entropy",
                format!("target {bad} is out of range for {c} classes"),
            );
        }
        let (l, s) = match &*x.read() {
            CpuData::F32(x) => {
                let (l, s) = ce_forward_cpu(x, t, c);
                (CpuData::F32(l), CpuData::F32(s))
            }
            CpuData::F64(x) => {
                let (l, s) = ce_forward_cpu(x, t, c);
                (CpuData::F64(l), CpuData::F64(s))
            }
            CpuData::U32(_) => return arg_err("cross_entropy", "the logits must be floats"),
        };
        let wrap = |d| Storage::Cpu(Arc::new(CpuStorage::new(d)));
        Ok((wrap(l), wrap(s)))
    }

    fn cross_entropy_backward(
        &self,
        x: &Storage,
        lse: &Storage,
        g: &Storage,
        t: &Storage,
        _n: usize,
        c: usize,
        _mean: bool,
    ) -> Result<Storage> {
        let _span = super::profile::span("cross_entropy_backward");
        let (Storage::Cpu(x), Storage::Cpu(s), Storage::Cpu(g)) = (x, lse, g) else {
            return wrong_backend("cross_entropy");
        };
        let t = targets(t)?;
        let CpuData::U32(t) = &*t else {
            return arg_err("cross_entropy", "the targets must be u32 class indices");
        };
        let data = match (&*x.read(), &*s.read(), &*g.read()) {
            (CpuData::F32(x), CpuData::F32(s), CpuData::F32(gv)) => {
                CpuData::F32(ce_backward_cpu(x, s, gv, t, c))
            }
            (CpuData::F64(x), CpuData::F64(s), CpuData::F64(gv)) => {
                CpuData::F64(ce_backward_cpu(x, s, gv, t, c))
            }
            _ => return arg_err("cross_entropy", "mixed dtypes"),
        };
        Ok(Storage::Cpu(Arc::new(CpuStorage::new(data))))
    }

    fn cross_entropy_mean(
        &self,
        _x: &Storage,
        _t: &Storage,
        _n: usize,
        _c: usize,
    ) -> Result<Option<(Storage, Storage)>> {
        let _span = super::profile::span("cross_entropy_mean");
        Ok(None)
    }
}

fn ce_forward_cpu<T: Float>(x: &[T], t: &[u32], c: usize) -> (Vec<T>, Vec<T>) {
    x.chunks(c)
        .zip(t)
        .map(|(row, &k)| {
            let m = row.iter().fold(row[0], |a, &b| a.max(b));
            let s = row.iter().fold(T::zero(), |a, &b| a + (b - m).exp());
            let lse = m + s.ln();
            (lse - row[k as usize], lse)
        })
        .unzip()
}

fn ce_backward_cpu<T: Float>(x: &[T], lse: &[T], g: &[T], t: &[u32], c: usize) -> Vec<T> {
    (0..x.len())
        .map(|i| {
            let (n, j) = (i / c, i % c);
            let onehot = if t[n] as usize == j {
                T::one()
            } else {
                T::zero()
            };
            g[n] * ((x[i] - lse[n]).exp() - onehot)
        })
        .collect()
}
