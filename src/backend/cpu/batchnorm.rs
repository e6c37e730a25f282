//! Batch normalisation on the CPU: the statistics with each sum accumulated in `f64` (a
//! mean pass, then a pass over squared deviations), the running statistics' update in
//! place, the normalisation and the backward, in `f32` or `f64`. It is the GPU's
//! reference.

use super::elementwise::CpuBackend;
use super::{map_float, CpuData, Float};
use crate::backend::batchnorm::Plan;
use crate::backend::{BatchNorm, BnChannels, Storage};
use crate::error::{arg_err, Error, Result};

const OP: &str = "batch_norm";

fn not_float<T>() -> Result<T> {
    Err(Error::DType {
        op: OP,
        msg: "u32 data reached a float kernel".into(),
    })
}

impl BatchNorm for CpuBackend {
    fn batch_norm_stats(&self, x: &Storage, ch: BnChannels, p: &Plan) -> Result<Storage> {
        let _span = super::profile::span("batch_norm_stats");
        let host = |t: Option<&Storage>| -> Result<Option<Vec<f64>>> {
            t.map(|t| Ok(t.cpu(OP)?.read().to_f64_vec())).transpose()
        };
        let (w, b) = (host(ch.weight)?, host(ch.bias)?);
        let x = x.cpu(OP)?;
        let f64_input = matches!(&*x.read(), CpuData::F64(_));
        let round = |v: f64| if f64_input { v } else { v as f32 as f64 };
        let mut s = vec![0.0; 4 * p.c];
        if !p.training() {
            let (Some(rm), Some(rv)) = (host(ch.running_mean)?, host(ch.running_var)?) else {
                return arg_err(OP, "evaluation mode needs running_mean and running_var");
            };
            for c in 0..p.c {
                s[c] = rm[c];
                s[p.c + c] = round(1.0 / (rv[c] + p.eps as f64).sqrt());
            }
        } else {
            let (mean, var) = match &*x.read() {
                CpuData::F32(v) => moments_cpu(v, p),
                CpuData::F64(v) => moments_cpu(v, p),
                CpuData::U32(_) => return not_float(),
            };
            for c in 0..p.c {
                s[c] = round(mean[c]);
                s[p.c + c] = round(1.0 / (var[c] + p.eps as f64).sqrt());
            }
            let m = p.momentum as f64;
            let unbiased = p.m() as f64 / (p.m() - 1) as f64;
            if let (Some(rm), Some(rv)) = (ch.running_mean, ch.running_var) {
                update_in_place(rm, |c, r| (1.0 - m) * r + m * mean[c])?;
                update_in_place(rv, |c, r| (1.0 - m) * r + m * (var[c] * unbiased))?;
            }
            if let Some(t) = ch.count {
                update_in_place(t, |_, v| v + 1.0)?;
            }
        }
        for c in 0..p.c {
            let invstd = s[p.c + c];
            s[2 * p.c + c] = round(w.as_ref().map_or(invstd, |w| invstd * w[c]));
            s[3 * p.c + c] = b.as_ref().map_or(0.0, |b| b[c]);
        }
        let data = if f64_input {
            CpuData::F64(s)
        } else {
            CpuData::F32(s.iter().map(|&v| v as f32).collect())
        };
        Ok(Storage::new_cpu(data))
    }

    fn batch_norm(&self, x: &Storage, stats: &Storage, p: &Plan) -> Result<Storage> {
        let _span = super::profile::span("batch_norm");
        let s = stats.cpu(OP)?.read().to_f64_vec();
        Ok(Storage::new_cpu(map_float!(&*x.cpu(OP)?.read(), |v: T| {
            normalize_cpu(v, p, &s)
        })))
    }

    fn batch_norm_backward(
        &self,
        x: &Storage,
        stats: &Storage,
        g: &Storage,
        p: &Plan,
        need: [bool; 3],
    ) -> Result<[Option<Storage>; 3]> {
        let _span = super::profile::span("batch_norm_backward");
        let [need_dx, need_dw, need_db] = need;
        let s = stats.cpu(OP)?.read().to_f64_vec();
        let (xd, gd) = (x.cpu(OP)?.read(), g.cpu(OP)?.read());
        let (dx, dw, db) = match (&*xd, &*gd) {
            (CpuData::F32(xv), CpuData::F32(gv)) => {
                let (dx, dw, db) = backward_cpu(xv, gv, p, &s, need_dx);
                (dx.map(CpuData::F32), CpuData::F32(dw), CpuData::F32(db))
            }
            (CpuData::F64(xv), CpuData::F64(gv)) => {
                let (dx, dw, db) = backward_cpu(xv, gv, p, &s, need_dx);
                (dx.map(CpuData::F64), CpuData::F64(dw), CpuData::F64(db))
            }
            _ => {
                return Err(Error::DType {
                    op: OP,
                    msg: "the gradient is not of the input's float type".into(),
                })
            }
        };
        Ok([
            dx.map(Storage::new_cpu),
            need_dw.then(|| Storage::new_cpu(dw)),
            need_db.then(|| Storage::new_cpu(db)),
        ])
    }
}

/// The index of element `j` (of `M`) of channel `c`: `x[(n C + c) L + l]`, visited as
/// contiguous runs of `L`.
fn channel_runs(p: &Plan, c: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let (cc, l) = (p.c, p.l);
    (0..p.n).map(move |n| {
        let start = (n * cc + c) * l;
        start..start + l
    })
}

/// Each channel's mean and biased variance: a pass for the mean, then one over the
/// squared deviations, both accumulated in `f64`.
fn moments_cpu<T: Float>(x: &[T], p: &Plan) -> (Vec<f64>, Vec<f64>) {
    let m = p.m() as f64;
    let mut mean = vec![0.0; p.c];
    let mut var = vec![0.0; p.c];
    for ch in 0..p.c {
        let mut s = 0.0;
        for r in channel_runs(p, ch) {
            s += x[r].iter().map(|v| v.to_f64()).sum::<f64>();
        }
        let mu = s / m;
        let mut q = 0.0;
        for r in channel_runs(p, ch) {
            q += x[r].iter().map(|v| (v.to_f64() - mu).powi(2)).sum::<f64>();
        }
        mean[ch] = mu;
        var[ch] = q / m;
    }
    (mean, var)
}

/// Rewrites a float storage's elements in place: `v[i] = f(i, v[i])`.
fn update_in_place(t: &Storage, f: impl Fn(usize, f64) -> f64) -> Result<()> {
    match &mut *t.cpu(OP)?.write() {
        CpuData::F32(v) => v
            .iter_mut()
            .enumerate()
            .for_each(|(i, e)| *e = f(i, *e as f64) as f32),
        CpuData::F64(v) => v.iter_mut().enumerate().for_each(|(i, e)| *e = f(i, *e)),
        CpuData::U32(_) => return not_float(),
    }
    Ok(())
}

/// `y = (x - mean) scale + shift` in the input's type.
fn normalize_cpu<T: Float>(x: &[T], p: &Plan, s: &[f64]) -> Vec<T> {
    let mut y = super::pool::filled(x.len(), T::zero());
    for ch in 0..p.c {
        let mean = T::from_f64(s[ch]);
        let scale = T::from_f64(s[2 * p.c + ch]);
        let shift = T::from_f64(s[3 * p.c + ch]);
        for r in channel_runs(p, ch) {
            for (o, &v) in y[r.clone()].iter_mut().zip(&x[r]) {
                *o = (v - mean) * scale + shift;
            }
        }
    }
    y
}

/// `(dx, dweight, dbias)`: the sums of `g` and `g xhat` accumulated in `f64`, `dx` in the
/// input's type from the same coefficients the GPU uses.
fn backward_cpu<T: Float>(
    x: &[T],
    g: &[T],
    p: &Plan,
    s: &[f64],
    need_dx: bool,
) -> (Option<Vec<T>>, Vec<T>, Vec<T>) {
    let training = p.training();
    let inv_m = 1.0 / p.m() as f64;
    let mut dw = Vec::with_capacity(p.c);
    let mut db = Vec::with_capacity(p.c);
    let mut dx = need_dx.then(|| super::pool::filled(x.len(), T::zero()));
    for ch in 0..p.c {
        let (mean, invstd, scale) = (s[ch], s[p.c + ch], s[2 * p.c + ch]);
        let (mut sg, mut sgx) = (0.0, 0.0);
        for r in channel_runs(p, ch) {
            for (&xv, &gv) in x[r.clone()].iter().zip(&g[r]) {
                let gv = gv.to_f64();
                sg += gv;
                sgx += gv * ((xv.to_f64() - mean) * invstd);
            }
        }
        dw.push(T::from_f64(sgx));
        db.push(T::from_f64(sg));
        if let Some(dx) = dx.as_mut() {
            let (b, k) = if training {
                (
                    T::from_f64(scale * sg * inv_m),
                    T::from_f64(scale * invstd * sgx * inv_m),
                )
            } else {
                (T::zero(), T::zero())
            };
            let (a, mean) = (T::from_f64(scale), T::from_f64(mean));
            for r in channel_runs(p, ch) {
                for ((o, &xv), &gv) in dx[r.clone()].iter_mut().zip(&x[r.clone()]).zip(&g[r]) {
                    *o = a * gv - b - k * (xv - mean);
                }
            }
        }
    }
    (dx, dw, db)
}
