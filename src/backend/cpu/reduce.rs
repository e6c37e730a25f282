//! The CPU backend's reductions.

use super::elementwise::CpuBackend;
use super::pool::{self, CollectPooled};
use super::{map_float, strided_offset, CpuData, Float, StridedIter};
use crate::backend::reduce::ReducePlan as Plan;
use crate::backend::{Reduce, Storage};
use crate::error::Result;
use crate::shape;
use crate::tensor::DType;

impl Reduce for CpuBackend {
    fn sum_u32(&self, x: &Storage, plan: &Plan) -> Result<Storage> {
        let _span = super::profile::span("sum_u32");
        let CpuData::U32(v) = &*x.cpu("reduce")?.read() else {
            return Err(crate::error::Error::DType {
                op: "sum",
                msg: "float data reached the u32 sum".into(),
            });
        };
        Ok(Storage::new_cpu(CpuData::U32(sum_u32(plan, v))))
    }

    fn sum(&self, x: &Storage, plan: &Plan, scale: f64) -> Result<Storage> {
        let _span = super::profile::span("sum");
        Ok(Storage::new_cpu(map_float!(
            &*x.cpu("reduce")?.read(),
            |v: T| sum_cpu(plan, v, scale)
        )))
    }

    fn spread(&self, g: &Storage, plan: &Plan, scale: f64) -> Result<Storage> {
        let _span = super::profile::span("spread");
        let (so, _) = plan.bwd_strides();
        Ok(Storage::new_cpu(map_float!(
            &*g.cpu("reduce")?.read(),
            |gv: T| {
                StridedIter::new(&plan.input, &so)
                    .map(|o| gv[o] * T::from_f64(scale))
                    .collect_pooled()
            }
        )))
    }

    fn max(&self, x: &Storage, plan: &Plan, _dtype: DType) -> Result<(Storage, Storage)> {
        let _span = super::profile::span("max");
        let (vals, idx) = match &*x.cpu("reduce")?.read() {
            CpuData::F32(v) => {
                let (a, b) = max_cpu(plan, v, |v, best| v.beats_nan(best));
                (CpuData::F32(a), b)
            }
            CpuData::F64(v) => {
                let (a, b) = max_cpu(plan, v, |v, best| v.beats_nan(best));
                (CpuData::F64(a), b)
            }
            CpuData::U32(v) => {
                let (a, b) = max_cpu(plan, v, |v, best| v > best);
                (CpuData::U32(a), b)
            }
        };
        Ok((Storage::new_cpu(vals), Storage::new_cpu(CpuData::U32(idx))))
    }

    fn max_backward(&self, g: &Storage, idx: &Storage, plan: &Plan) -> Result<Storage> {
        let _span = super::profile::span("max_backward");
        let n = shape::numel(&plan.input);
        let (so, sr) = plan.bwd_strides();
        let idx = idx.cpu("reduce")?.read();
        let CpuData::U32(idx) = &*idx else {
            return Err(crate::error::Error::DType {
                op: "max",
                msg: "the saved positions are not u32".into(),
            });
        };
        Ok(Storage::new_cpu(map_float!(
            &*g.cpu("reduce")?.read(),
            |gv: T| (0..n)
                .map(|i| {
                    let o = strided_offset(i, &plan.input, &so);
                    if idx[o] as usize == strided_offset(i, &plan.input, &sr) {
                        gv[o]
                    } else {
                        T::zero()
                    }
                })
                .collect_pooled()
        )))
    }
}

fn sum_cpu<T: Float>(plan: &Plan, x: &[T], scale: f64) -> Vec<T> {
    // Reducing leading dimensions only (a bias gradient: [rows, features] -> [features]):
    // add whole rows in memory order instead of striding down each column.
    let lead = plan.reduced.iter().take_while(|&&r| r).count();
    if lead > 0 && plan.reduced[lead..].iter().all(|&r| !r) {
        let inner: usize = plan.input[lead..].iter().product();
        let mut out = pool::filled(inner, T::zero());
        if inner > 0 {
            for row in x.chunks_exact(inner) {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
        }
        if scale != 1.0 {
            let s = T::from_f64(scale);
            out.iter_mut().for_each(|o| *o = *o * s);
        }
        return out;
    }
    let offsets: Vec<usize> = StridedIter::new(&plan.red_sizes, &plan.red_strides).collect();
    StridedIter::new(&plan.kept_sizes, &plan.kept_strides)
        .map(|base| {
            let mut acc = T::zero();
            for &j in &offsets {
                acc += x[base + j];
            }
            acc * T::from_f64(scale)
        })
        .collect_pooled()
}

/// The `u32` sum over the reduced dimensions, wrapping past `u32::MAX` (as the GPU's
/// 32-bit adds do).
fn sum_u32(plan: &Plan, x: &[u32]) -> Vec<u32> {
    let offsets: Vec<usize> = StridedIter::new(&plan.red_sizes, &plan.red_strides).collect();
    StridedIter::new(&plan.kept_sizes, &plan.kept_strides)
        .map(|base| {
            offsets
                .iter()
                .fold(0u32, |acc, &j| acc.wrapping_add(x[base + j]))
        })
        .collect_pooled()
}

/// The maximum and its first position, `better(v, best)` saying when `v` replaces
/// `best` (NaN the largest float).
fn max_cpu<T: Copy>(plan: &Plan, x: &[T], better: impl Fn(T, T) -> bool) -> (Vec<T>, Vec<u32>) {
    (0..plan.outputs())
        .map(|o| {
            let base = plan.base(o);
            let mut best = (x[base + plan.offset(0)], 0u32);
            for j in 1..plan.m() {
                let v = x[base + plan.offset(j)];
                if better(v, best.0) {
                    best = (v, j as u32);
                }
            }
            best
        })
        .unzip()
}
