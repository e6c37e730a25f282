//! The CPU backend's softmax cross-entropy.

use std::sync::Arc;

use super::elementwise::CpuBackend;
use super::parallel::{self, SendPtr};
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

/// Work units per logit when splitting rows over threads (an exponential and a few
/// comparisons and additions).
const WORK_PER_LOGIT: usize = 16;

fn ce_forward_cpu<T: Float>(x: &[T], t: &[u32], c: usize) -> (Vec<T>, Vec<T>) {
    let c = c.max(1);
    let rows = t.len().min(x.len() / c);
    let (mut loss, mut lse) = (vec![T::zero(); rows], vec![T::zero(); rows]);
    let (lp, sp) = (SendPtr(loss.as_mut_ptr()), SendPtr(lse.as_mut_ptr()));
    let parts = parallel::parts(rows, x.len().saturating_mul(WORK_PER_LOGIT));
    parallel::for_parts(rows, parts, |_, range| {
        let (lp, sp) = (lp, sp);
        // One row's exponentials at a time in a buffer of their own, so that loop
        // vectorises; their sum is then taken in order.
        let mut e = vec![T::zero(); c];
        for n in range {
            let row = &x[n * c..(n + 1) * c];
            let m = row.iter().fold(row[0], |a, &b| a.max(b));
            for (e, &v) in e.iter_mut().zip(row) {
                *e = (v - m).exp();
            }
            let s = e.iter().fold(T::zero(), |a, &b| a + b);
            let l = m + s.ln();
            // SAFETY: both buffers hold `rows` elements; each row is written by the one
            // part whose range holds it.
            unsafe {
                *lp.0.add(n) = l - row[t[n] as usize];
                *sp.0.add(n) = l;
            }
        }
    });
    (loss, lse)
}

fn ce_backward_cpu<T: Float>(x: &[T], lse: &[T], g: &[T], t: &[u32], c: usize) -> Vec<T> {
    let c = c.max(1);
    let rows = x.len() / c;
    let mut out: Vec<T> = super::pool::filled(rows * c, T::zero());
    let work = x.len().saturating_mul(WORK_PER_LOGIT);
    parallel::for_blocks_mut(&mut out, rows, work, |first, block| {
        for (r, o) in block.chunks_exact_mut(c).enumerate() {
            let n = first + r;
            let (l, gn, k) = (lse[n], g[n], t[n] as usize);
            for (o, &v) in o.iter_mut().zip(&x[n * c..(n + 1) * c]) {
                *o = gn * (v - l).exp();
            }
            // g (softmax - onehot): the target's entry as g (p - 1).
            o[k] = gn * ((x[n * c + k] - l).exp() - T::one());
        }
    });
    out
}
