//! Row normalisations on the CPU (`layer_norm`, `rms_norm`, `group_norm`; the geometry
//! in `backend/norm.rs`): each row's statistics accumulated in `f64` (a mean pass, then
//! a pass over squared deviations) and rounded to the input's type as the GPU keeps
//! them, the output and the gradients in `f32` or `f64`. It is the GPU's reference.

use super::elementwise::CpuBackend;
use super::{CpuData, Float};
use crate::backend::norm::NormGeo;
use crate::backend::{Norm, Storage};
use crate::error::{Error, Result};

const OP: &str = "norm";

fn dtype_err<T>() -> Result<T> {
    Err(Error::DType {
        op: OP,
        msg: "the normalisation's tensors must share one float type".into(),
    })
}

/// A storage's values in `f64`, or `None`.
fn host(t: Option<&Storage>) -> Result<Option<Vec<f64>>> {
    t.map(|t| Ok(t.cpu(OP)?.read().to_f64_vec())).transpose()
}

impl Norm for CpuBackend {
    fn norm_rows(
        &self,
        x: &Storage,
        weight: Option<&Storage>,
        bias: Option<&Storage>,
        geo: &NormGeo,
    ) -> Result<(Storage, Storage)> {
        let (w, b) = (host(weight)?, host(bias)?);
        let x = x.cpu(OP)?;
        let (y, stats) = match &*x.read() {
            CpuData::F32(v) => {
                let (y, s) = forward(v, w.as_deref(), b.as_deref(), geo);
                (CpuData::F32(y), CpuData::F32(s))
            }
            CpuData::F64(v) => {
                let (y, s) = forward(v, w.as_deref(), b.as_deref(), geo);
                (CpuData::F64(y), CpuData::F64(s))
            }
            CpuData::U32(_) => return dtype_err(),
        };
        Ok((Storage::new_cpu(y), Storage::new_cpu(stats)))
    }

    fn norm_rows_backward(
        &self,
        x: &Storage,
        stats: &Storage,
        g: &Storage,
        weight: Option<&Storage>,
        geo: &NormGeo,
    ) -> Result<Storage> {
        let w = host(weight)?;
        let s = stats.cpu(OP)?.read().to_f64_vec();
        let (xd, gd) = (x.cpu(OP)?.read(), g.cpu(OP)?.read());
        let dx = match (&*xd, &*gd) {
            (CpuData::F32(xv), CpuData::F32(gv)) => {
                CpuData::F32(backward_input(xv, gv, &s, w.as_deref(), geo))
            }
            (CpuData::F64(xv), CpuData::F64(gv)) => {
                CpuData::F64(backward_input(xv, gv, &s, w.as_deref(), geo))
            }
            _ => return dtype_err(),
        };
        Ok(Storage::new_cpu(dx))
    }

    fn norm_affine_backward(
        &self,
        x: &Storage,
        stats: &Storage,
        g: &Storage,
        geo: &NormGeo,
        need: [bool; 2],
    ) -> Result<[Option<Storage>; 2]> {
        let s = stats.cpu(OP)?.read().to_f64_vec();
        let (xd, gd) = (x.cpu(OP)?.read(), g.cpu(OP)?.read());
        let (dw, db) = match (&*xd, &*gd) {
            (CpuData::F32(xv), CpuData::F32(gv)) => {
                let (dw, db) = backward_affine(xv, gv, &s, geo);
                (CpuData::F32(dw), CpuData::F32(db))
            }
            (CpuData::F64(xv), CpuData::F64(gv)) => {
                let (dw, db) = backward_affine(xv, gv, &s, geo);
                (CpuData::F64(dw), CpuData::F64(db))
            }
            _ => return dtype_err(),
        };
        Ok([
            need[0].then(|| Storage::new_cpu(dw)),
            need[1].then(|| Storage::new_cpu(db)),
        ])
    }
}

/// Row `r`'s mean (0 for RMS) and `rstd`, accumulated in `f64` and rounded to `T`.
fn row_stats<T: Float>(row: &[T], geo: &NormGeo) -> (T, T) {
    let n = row.len() as f64;
    let mean = if geo.rms() {
        0.0
    } else {
        row.iter().map(|v| v.to_f64()).sum::<f64>() / n
    };
    let var = row.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / n;
    (T::from_f64(mean), T::from_f64(1.0 / (var + geo.eps).sqrt()))
}

/// The output and the statistics `[2, R]`.
fn forward<T: Float>(
    x: &[T],
    w: Option<&[f64]>,
    b: Option<&[f64]>,
    geo: &NormGeo,
) -> (Vec<T>, Vec<T>) {
    let mut y = super::pool::filled(x.len(), T::zero());
    let mut stats = vec![T::zero(); 2 * geo.rows];
    let w: Option<Vec<T>> = w.map(|w| w.iter().map(|&v| T::from_f64(v)).collect());
    let b: Option<Vec<T>> = b.map(|b| b.iter().map(|&v| T::from_f64(v)).collect());
    for r in 0..geo.rows {
        let row = &x[r * geo.d..(r + 1) * geo.d];
        let (mean, rstd) = row_stats(row, geo);
        stats[r] = mean;
        stats[geo.rows + r] = rstd;
        for (j, (o, &v)) in y[r * geo.d..].iter_mut().zip(row).enumerate() {
            let a = geo.affine_of(r, j);
            let e = (v - mean) * rstd;
            let e = w.as_ref().map_or(e, |w| e * w[a]);
            *o = b.as_ref().map_or(e, |b| e + b[a]);
        }
    }
    (y, stats)
}

/// `dx = rstd (gw - mean(gw) - xhat mean(gw xhat))` per row, `gw = g weight` (without
/// the `mean(gw)` term for RMS), the sums in `f64`.
fn backward_input<T: Float>(
    x: &[T],
    g: &[T],
    s: &[f64],
    w: Option<&[f64]>,
    geo: &NormGeo,
) -> Vec<T> {
    let mut dx = super::pool::filled(x.len(), T::zero());
    let inv_d = 1.0 / geo.d as f64;
    for r in 0..geo.rows {
        let (mean, rstd) = (s[r], s[geo.rows + r]);
        let at = |j: usize| {
            let i = r * geo.d + j;
            let gw = g[i].to_f64() * w.map_or(1.0, |w| w[geo.affine_of(r, j)]);
            (gw, (x[i].to_f64() - mean) * rstd)
        };
        let (mut s1, mut s2) = (0.0, 0.0);
        for j in 0..geo.d {
            let (gw, xhat) = at(j);
            s1 += gw;
            s2 += gw * xhat;
        }
        let c1 = if geo.rms() { 0.0 } else { s1 * inv_d };
        let c2 = s2 * inv_d;
        for j in 0..geo.d {
            let (gw, xhat) = at(j);
            dx[r * geo.d + j] = T::from_f64(rstd * (gw - c1 - xhat * c2));
        }
    }
    dx
}

/// Per chunk and affine value, `sum g xhat` and `sum g` (`[chunks, A]` each, in `f64`).
fn backward_affine<T: Float>(x: &[T], g: &[T], s: &[f64], geo: &NormGeo) -> (Vec<T>, Vec<T>) {
    let (chunk, chunks) = geo.chunks();
    let (a_len, k_len) = (geo.affine(), geo.per_affine());
    let mut dw = vec![T::zero(); chunks * a_len];
    let mut db = vec![T::zero(); chunks * a_len];
    for ci in 0..chunks {
        for a in 0..a_len {
            let (mut sw, mut sb) = (0.0, 0.0);
            for k in ci * chunk..((ci + 1) * chunk).min(k_len) {
                let (r, i) = geo.element_of(a, k);
                let gv = g[i].to_f64();
                sw += gv * ((x[i].to_f64() - s[r]) * s[geo.rows + r]);
                sb += gv;
            }
            dw[ci * a_len + a] = T::from_f64(sw);
            db[ci * a_len + a] = T::from_f64(sb);
        }
    }
    (dw, db)
}
