//! Batch normalisation on the CPU: the statistics with each sum accumulated in `f64` (a
//! mean pass, then a pass over squared deviations), the running statistics' update in
//! place, the normalisation and the backward, in `f32` or `f64`.

use super::*;

/// The index of element `j` (of `M`) of channel `c`: `x[(n C + c) L + l]`, visited as
/// contiguous runs of `L`.
pub(super) fn channel_runs(p: &Plan, c: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let (cc, l) = (p.c, p.l);
    (0..p.n).map(move |n| {
        let start = (n * cc + c) * l;
        start..start + l
    })
}

/// The CPU's forward statistics (rounded to the input's type), with the running
/// statistics and the counter updated in place.
pub(super) fn cpu_stats(x: &Tensor, a: &BatchNormArgs, p: &Plan) -> Tensor {
    let host = |t: Option<&Tensor>| t.map(|t| t.cpu_data().to_f64_vec());
    let (w, b) = (host(a.weight), host(a.bias));
    let round = |v: f64| match x.dtype() {
        DType::F32 => v as f32 as f64,
        _ => v,
    };
    let mut s = vec![0.0; 4 * p.c];
    if p.flags & TRAINING == 0 {
        let (rm, rv) = (
            host(a.running_mean).expect("checked"),
            host(a.running_var).expect("checked"),
        );
        for ch in 0..p.c {
            s[ch] = rm[ch];
            s[p.c + ch] = round(1.0 / (rv[ch] + p.eps as f64).sqrt());
        }
    } else {
        let (mean, var) = match &*x.cpu_data() {
            CpuData::F32(v) => moments_cpu(v, p),
            CpuData::F64(v) => moments_cpu(v, p),
            CpuData::U32(_) => unreachable!("batch_norm input checked float"),
        };
        for ch in 0..p.c {
            s[ch] = round(mean[ch]);
            s[p.c + ch] = round(1.0 / (var[ch] + p.eps as f64).sqrt());
        }
        let m = p.momentum as f64;
        let unbiased = p.m() as f64 / (p.m() - 1) as f64;
        if let (Some(rm), Some(rv)) = (a.running_mean, a.running_var) {
            update_in_place(rm, |ch, r| (1.0 - m) * r + m * mean[ch]);
            update_in_place(rv, |ch, r| (1.0 - m) * r + m * (var[ch] * unbiased));
        }
        if let Some(t) = a.num_batches_tracked {
            update_in_place(t, |_, v| v + 1.0);
        }
    }
    for ch in 0..p.c {
        let invstd = s[p.c + ch];
        s[2 * p.c + ch] = round(w.as_ref().map_or(invstd, |w| invstd * w[ch]));
        s[3 * p.c + ch] = b.as_ref().map_or(0.0, |b| b[ch]);
    }
    let data = match x.dtype() {
        DType::F64 => CpuData::F64(s),
        _ => CpuData::F32(s.iter().map(|&v| v as f32).collect()),
    };
    Tensor::from_cpu(data, vec![4, p.c])
}

/// Each channel's mean and biased variance: a pass for the mean, then one over the
/// squared deviations, both accumulated in `f64`.
pub(super) fn moments_cpu<T: Float>(x: &[T], p: &Plan) -> (Vec<f64>, Vec<f64>) {
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

/// Rewrites a float tensor's elements in place: `v[i] = f(i, v[i])`.
pub(super) fn update_in_place(t: &Tensor, f: impl Fn(usize, f64) -> f64) {
    let Storage::Cpu(s) = t.storage() else {
        unreachable!("CPU path")
    };
    match &mut *s.write() {
        CpuData::F32(v) => v
            .iter_mut()
            .enumerate()
            .for_each(|(i, e)| *e = f(i, *e as f64) as f32),
        CpuData::F64(v) => v.iter_mut().enumerate().for_each(|(i, e)| *e = f(i, *e)),
        CpuData::U32(_) => unreachable!("batch_norm statistics checked float"),
    }
}

/// `y = (x - mean) scale + shift` in the input's type.
pub(super) fn normalize_cpu<T: Float>(x: &[T], p: &Plan, s: &[f64]) -> Vec<T> {
    let mut y = crate::backend::cpu::pool::filled(x.len(), T::zero());
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
pub(super) fn backward_cpu<T: Float>(
    x: &[T],
    g: &[T],
    p: &Plan,
    s: &[f64],
    need_dx: bool,
) -> (Option<Vec<T>>, Vec<T>, Vec<T>) {
    let training = p.flags & TRAINING != 0;
    let inv_m = 1.0 / p.m() as f64;
    let mut dw = Vec::with_capacity(p.c);
    let mut db = Vec::with_capacity(p.c);
    let mut dx = need_dx.then(|| crate::backend::cpu::pool::filled(x.len(), T::zero()));
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
