//! Row normalisations on the CPU (`layer_norm`, `rms_norm`, `group_norm`; the geometry
//! in `backend/norm.rs`): each row's statistics accumulated in `f64` (a mean pass, then
//! a pass over squared deviations, each in [`SUM_LANES`] partial sums so it vectorises)
//! and rounded to the input's type as the GPU keeps them, the output and the gradients
//! in `f32` or `f64`. Rows are split over threads when there are enough elements
//! ([`NORM_WORK_PER_ELEMENT`]). It is the GPU's reference.

use super::elementwise::CpuBackend;
use super::parallel::{self, SendPtr};
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
        let _span = super::profile::span("norm_rows");
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
        let _span = super::profile::span("norm_rows_backward");
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
        let _span = super::profile::span("norm_affine_backward");
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

/// Work units one element of a normalisation counts as when splitting rows over
/// threads ([`parallel::parts`]): a split from 128K elements, the same as GELU's
/// ([`super::gelu::GELU_WORK_PER_ELEMENT`]; not tuned separately): each element costs a
/// few `f64` operations in each of two or three passes. The transformer's `[2048, 128]`
/// layer norms split over two threads.
const NORM_WORK_PER_ELEMENT: usize = 16;

/// Partial sums kept side by side so a row's `f64` sums vectorise (a single running sum
/// is one chain of dependent additions).
const SUM_LANES: usize = 8;

/// `sum f(a[i], b[i])` in `f64` over slices of one length, in [`SUM_LANES`] partial
/// sums added at the end.
#[inline(always)]
fn lane_sum<A: Copy, B: Copy>(a: &[A], b: &[B], f: impl Fn(A, B) -> f64) -> f64 {
    let mut acc = [0.0f64; SUM_LANES];
    let (ac, bc) = (a.chunks_exact(SUM_LANES), b.chunks_exact(SUM_LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (ca, cb) in ac.zip(bc) {
        for l in 0..SUM_LANES {
            acc[l] += f(ca[l], cb[l]);
        }
    }
    let tail: f64 = ar.iter().zip(br).map(|(&x, &y)| f(x, y)).sum();
    let half = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (half[0] + half[2]) + (half[1] + half[3]) + tail
}

/// Row `r`'s mean (0 for RMS) and `rstd`, accumulated in `f64` and rounded to `T`.
fn row_stats<T: Float>(row: &[T], geo: &NormGeo) -> (T, T) {
    let n = row.len() as f64;
    let mean = if geo.rms() {
        0.0
    } else {
        lane_sum(row, row, |v, _| v.to_f64()) / n
    };
    let var = lane_sum(row, row, |v, _| {
        let d = v.to_f64() - mean;
        d * d
    }) / n;
    (T::from_f64(mean), T::from_f64(1.0 / (var + geo.eps).sqrt()))
}

/// The affine values laid out per element of a row, for each of the `groups` row
/// kinds: `[groups, D]` with element `(g, j)` the value of affine index
/// `(g D + j) / l` (row `r` uses kind `r mod groups`). No division per element in the
/// loops, and rows read their weights as one contiguous slice.
fn per_element<T: Copy>(values: &[f64], geo: &NormGeo, conv: impl Fn(f64) -> T) -> Vec<T> {
    (0..geo.groups)
        .flat_map(|kind| (0..geo.d).map(move |j| (kind, j)))
        .map(|(kind, j)| conv(values[geo.affine_of(kind, j)]))
        .collect()
}

/// Row `r`'s slice of a [`per_element`] table.
fn row_of<'a, T>(table: &'a [T], geo: &NormGeo, r: usize) -> &'a [T] {
    let start = (r % geo.groups) * geo.d;
    &table[start..start + geo.d]
}

/// How many threads a pass over all rows uses.
fn row_parts(geo: &NormGeo) -> usize {
    parallel::parts(geo.rows, geo.numel() * NORM_WORK_PER_ELEMENT)
}

/// The output and the statistics `[2, R]`.
fn forward<T: Float>(
    x: &[T],
    w: Option<&[f64]>,
    b: Option<&[f64]>,
    geo: &NormGeo,
) -> (Vec<T>, Vec<T>) {
    // Every element is written below (each row by one part), so the buffer is not
    // zero-filled first.
    let mut y = super::pool::with_capacity::<T>(x.len());
    let mut stats = vec![T::zero(); 2 * geo.rows];
    let w: Option<Vec<T>> = w.map(|w| per_element(w, geo, T::from_f64));
    let b: Option<Vec<T>> = b.map(|b| per_element(b, geo, T::from_f64));
    let (y_ptr, s_ptr) = (
        SendPtr(y.spare_capacity_mut().as_mut_ptr()),
        SendPtr(stats.as_mut_ptr()),
    );
    parallel::for_parts(geo.rows, row_parts(geo), |_, rows| {
        // The whole wrappers (not their raw-pointer fields) are what the parts share.
        let (y_ptr, s_ptr) = (y_ptr, s_ptr);
        let rows = Rows {
            x,
            w: w.as_deref(),
            b: b.as_deref(),
            geo,
            rows,
        };
        #[cfg(target_arch = "x86_64")]
        if super::gelu::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe { forward_rows_avx2(rows, y_ptr, s_ptr) };
        }
        forward_rows(rows, y_ptr, s_ptr)
    });
    // SAFETY: the capacity is at least `x.len()`, and the parts wrote every row.
    unsafe { y.set_len(x.len()) };
    (y, stats)
}

/// What [`forward_rows`] reads: the input, the affine tables and a range of rows.
struct Rows<'a, T> {
    x: &'a [T],
    w: Option<&'a [T]>,
    b: Option<&'a [T]>,
    geo: &'a NormGeo,
    rows: std::ops::Range<usize>,
}

/// [`forward_rows`] compiled for AVX2 and FMA (its `f64` sums four lanes wide).
///
/// # Safety
/// Only on a CPU with AVX2 and FMA; as [`forward_rows`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_rows_avx2<T: Float>(
    rows: Rows<'_, T>,
    y_ptr: SendPtr<std::mem::MaybeUninit<T>>,
    s_ptr: SendPtr<T>,
) {
    forward_rows(rows, y_ptr, s_ptr)
}

/// The forward of a range of rows into `y` and the statistics (the caller's buffers,
/// each row written by one part).
#[inline(always)]
fn forward_rows<T: Float>(
    r: Rows<'_, T>,
    y_ptr: SendPtr<std::mem::MaybeUninit<T>>,
    s_ptr: SendPtr<T>,
) {
    let Rows { x, w, b, geo, rows } = r;
    let d = geo.d;
    for r in rows {
        let row = &x[r * d..(r + 1) * d];
        let (mean, rstd) = row_stats(row, geo);
        // SAFETY: each part writes only its own rows of `y` and their statistics,
        // and both buffers outlive the scoped parts.
        let out = unsafe {
            *s_ptr.0.add(r) = mean;
            *s_ptr.0.add(geo.rows + r) = rstd;
            std::slice::from_raw_parts_mut(y_ptr.0.add(r * d), d)
        };
        match (&w, &b) {
            (Some(w), Some(b)) => {
                let (w, b) = (row_of(w, geo, r), row_of(b, geo, r));
                for (((o, &v), &wv), &bv) in out.iter_mut().zip(row).zip(w).zip(b) {
                    o.write((v - mean) * rstd * wv + bv);
                }
            }
            (Some(w), None) => {
                let w = row_of(w, geo, r);
                for ((o, &v), &wv) in out.iter_mut().zip(row).zip(w) {
                    o.write((v - mean) * rstd * wv);
                }
            }
            (None, Some(b)) => {
                let b = row_of(b, geo, r);
                for ((o, &v), &bv) in out.iter_mut().zip(row).zip(b) {
                    o.write((v - mean) * rstd + bv);
                }
            }
            (None, None) => {
                for (o, &v) in out.iter_mut().zip(row) {
                    o.write((v - mean) * rstd);
                }
            }
        }
    }
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
    if geo.d == 0 {
        return Vec::new();
    }
    // Every element is written below, so the buffer is not zero-filled first.
    let mut dx = super::pool::with_capacity::<T>(x.len());
    let inv_d = 1.0 / geo.d as f64;
    // Multiplying by an exact 1.0 where there is no weight changes nothing.
    let w = match w {
        Some(w) => per_element(w, geo, |v| v),
        None => vec![1.0; geo.groups * geo.d],
    };
    parallel::for_blocks_mut(
        &mut dx.spare_capacity_mut()[..x.len()],
        geo.rows,
        geo.numel() * NORM_WORK_PER_ELEMENT,
        |first, block| {
            let part = BackRows {
                x,
                g,
                s,
                w: &w,
                geo,
                inv_d,
            };
            #[cfg(target_arch = "x86_64")]
            if super::gelu::has_avx2() {
                // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                return unsafe { backward_rows_avx2(&part, first, block) };
            }
            backward_rows(&part, first, block)
        },
    );
    // SAFETY: the capacity is at least `x.len()`, and every row of it was written.
    unsafe { dx.set_len(x.len()) };
    dx
}

/// What [`backward_rows`] reads.
struct BackRows<'a, T> {
    x: &'a [T],
    g: &'a [T],
    s: &'a [f64],
    w: &'a [f64],
    geo: &'a NormGeo,
    inv_d: f64,
}

/// [`backward_rows`] compiled for AVX2 and FMA (its `f64` loops four lanes wide).
///
/// # Safety
/// Only on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_rows_avx2<T: Float>(
    p: &BackRows<'_, T>,
    first: usize,
    block: &mut [std::mem::MaybeUninit<T>],
) {
    backward_rows(p, first, block)
}

/// [`backward_input`] for the rows of `block`, the first of which is row `first`.
#[inline(always)]
fn backward_rows<T: Float>(
    p: &BackRows<'_, T>,
    first: usize,
    block: &mut [std::mem::MaybeUninit<T>],
) {
    let BackRows {
        x,
        g,
        s,
        w,
        geo,
        inv_d,
    } = *p;
    let d = geo.d;
    for (ri, out) in block.chunks_mut(d).enumerate() {
        let r = first + ri;
        let (mean, rstd) = (s[r], s[geo.rows + r]);
        let (xr, gr, wr) = (
            &x[r * d..(r + 1) * d],
            &g[r * d..(r + 1) * d],
            row_of(w, geo, r),
        );
        let s1 = if geo.rms() {
            0.0
        } else {
            lane_sum(gr, wr, |gv, wv| gv.to_f64() * wv)
        };
        let gx = |xv: T, gv: T, wv: f64| {
            let gw = gv.to_f64() * wv;
            (gw, (xv.to_f64() - mean) * rstd)
        };
        let mut acc = [0.0f64; SUM_LANES];
        let mut tail = 0.0;
        let full = d / SUM_LANES * SUM_LANES;
        for c in (0..full).step_by(SUM_LANES) {
            for l in 0..SUM_LANES {
                let (gw, xhat) = gx(xr[c + l], gr[c + l], wr[c + l]);
                acc[l] += gw * xhat;
            }
        }
        for j in full..d {
            let (gw, xhat) = gx(xr[j], gr[j], wr[j]);
            tail += gw * xhat;
        }
        let half = [
            acc[0] + acc[4],
            acc[1] + acc[5],
            acc[2] + acc[6],
            acc[3] + acc[7],
        ];
        let s2 = (half[0] + half[2]) + (half[1] + half[3]) + tail;
        let c1 = s1 * inv_d;
        let c2 = s2 * inv_d;
        for (j, o) in out.iter_mut().enumerate() {
            let (gw, xhat) = gx(xr[j], gr[j], wr[j]);
            o.write(T::from_f64(rstd * (gw - c1 - xhat * c2)));
        }
    }
}

/// Per chunk and affine value, `sum g xhat` and `sum g` (`[chunks, A]` each, in `f64`).
fn backward_affine<T: Float>(x: &[T], g: &[T], s: &[f64], geo: &NormGeo) -> (Vec<T>, Vec<T>) {
    let (chunk, chunks) = geo.chunks();
    let (a_len, k_len) = (geo.affine(), geo.per_affine());
    let mut dw = vec![T::zero(); chunks * a_len];
    let mut db = vec![T::zero(); chunks * a_len];
    if geo.groups == 1 && geo.l == 1 {
        // Affine value a is column a and element k of it is row k: walk the chunk's
        // rows in order, all columns at once (contiguous reads, one running sum per
        // column, the same order of additions per column as the general loop).
        let (dw_ptr, db_ptr) = (SendPtr(dw.as_mut_ptr()), SendPtr(db.as_mut_ptr()));
        let parts = parallel::parts(chunks, geo.numel() * NORM_WORK_PER_ELEMENT);
        parallel::for_parts(chunks, parts, |_, range| {
            // The whole wrappers (not their raw-pointer fields) are what the parts share.
            let (dw_ptr, db_ptr) = (dw_ptr, db_ptr);
            let (mut sw, mut sb) = (vec![0.0f64; a_len], vec![0.0f64; a_len]);
            for ci in range {
                sw.iter_mut().for_each(|v| *v = 0.0);
                sb.iter_mut().for_each(|v| *v = 0.0);
                for r in ci * chunk..((ci + 1) * chunk).min(k_len) {
                    let (mean, rstd) = (s[r], s[geo.rows + r]);
                    let (xr, gr) = (
                        &x[r * a_len..(r + 1) * a_len],
                        &g[r * a_len..(r + 1) * a_len],
                    );
                    for (((w, b), &xv), &gv) in sw.iter_mut().zip(sb.iter_mut()).zip(xr).zip(gr) {
                        let gv = gv.to_f64();
                        *w += gv * ((xv.to_f64() - mean) * rstd);
                        *b += gv;
                    }
                }
                // SAFETY: each part writes only its own chunks' rows of `dw` and `db`,
                // which outlive the scoped parts.
                unsafe {
                    for a in 0..a_len {
                        *dw_ptr.0.add(ci * a_len + a) = T::from_f64(sw[a]);
                        *db_ptr.0.add(ci * a_len + a) = T::from_f64(sb[a]);
                    }
                }
            }
        });
        return (dw, db);
    }
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
