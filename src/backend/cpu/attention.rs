//! The CPU reference of scaled-dot-product attention. It stores scores, but only for a
//! block of [`ROWS`] query rows at a time (`ROWS x S` values), so a long sequence never
//! needs the whole `[L, S]` matrix; the products go through `matrixmultiply`. Operands
//! at strided layouts (heads of a packed projection) are gathered into contiguous rows
//! first and the results scattered back: the reference keeps one arithmetic path.

use std::sync::Arc;

use super::elementwise::CpuBackend;
use super::matmul::{gemm_slices, Gemm};
use super::{pool, CpuData, CpuStorage};
use std::borrow::Cow;

use crate::backend::attention::{AttentionGeometry, RowLayout};
use crate::backend::{wrong_backend, Attention, Storage};
use crate::error::{Error, Result};

/// Query rows whose scores are held at once.
const ROWS: usize = 64;

fn cpu<'a>(s: &'a Storage, op: &'static str) -> Result<&'a Arc<CpuStorage>> {
    match s {
        Storage::Cpu(c) => Ok(c),
        _ => wrong_backend(op),
    }
}

fn dtype_err<T>() -> Result<T> {
    Err(Error::DType {
        op: "scaled_dot_product_attention",
        msg: "q, k and v must share one float dtype".into(),
    })
}

fn store(d: CpuData) -> Storage {
    Storage::Cpu(Arc::new(CpuStorage::new(d)))
}

impl Attention for CpuBackend {
    fn attention_head_limit(&self) -> usize {
        usize::MAX
    }

    fn attention(
        &self,
        [q, k, v]: [&Storage; 3],
        mask: Option<&Storage>,
        geo: &AttentionGeometry,
    ) -> Result<(Storage, Storage)> {
        let _span = super::profile::span("attention");
        let op = "scaled_dot_product_attention";
        let mask = mask
            .map(|m| cpu(m, op).map(|m| m.read().to_f64_vec()))
            .transpose()?;
        let (q, k, v) = (cpu(q, op)?.read(), cpu(k, op)?.read(), cpu(v, op)?.read());
        let m = mask.as_deref();
        let (o, lse) = match (&*q, &*k, &*v) {
            (CpuData::F32(q), CpuData::F32(k), CpuData::F32(v)) => {
                let (o, l) = forward_at(geo, [q, k, v], m);
                (CpuData::F32(o), CpuData::F32(l))
            }
            (CpuData::F64(q), CpuData::F64(k), CpuData::F64(v)) => {
                let (o, l) = forward_at(geo, [q, k, v], m);
                (CpuData::F64(o), CpuData::F64(l))
            }
            _ => return dtype_err(),
        };
        Ok((store(o), store(lse)))
    }

    fn attention_backward(
        &self,
        [q, k, v]: [&Storage; 3],
        mask: Option<&Storage>,
        [out, lse, dout]: [&Storage; 3],
        geo: &AttentionGeometry,
        grads: [&Storage; 3],
    ) -> Result<()> {
        let _span = super::profile::span("attention_backward");
        let op = "scaled_dot_product_attention";
        let mask = mask
            .map(|m| cpu(m, op).map(|m| m.read().to_f64_vec()))
            .transpose()?;
        let targets = [cpu(grads[0], op)?, cpu(grads[1], op)?, cpu(grads[2], op)?];
        let (q, k, v) = (cpu(q, op)?.read(), cpu(k, op)?.read(), cpu(v, op)?.read());
        let (o, l, g) = (
            cpu(out, op)?.read(),
            cpu(lse, op)?.read(),
            cpu(dout, op)?.read(),
        );
        let m = mask.as_deref();
        let grads = match (&*q, &*k, &*v, &*o, &*l, &*g) {
            (
                CpuData::F32(q),
                CpuData::F32(k),
                CpuData::F32(v),
                CpuData::F32(o),
                CpuData::F32(l),
                CpuData::F32(g),
            ) => backward_at(geo, [q, k, v], m, [o, l, g]).map(CpuData::F32),
            (
                CpuData::F64(q),
                CpuData::F64(k),
                CpuData::F64(v),
                CpuData::F64(o),
                CpuData::F64(l),
                CpuData::F64(g),
            ) => backward_at(geo, [q, k, v], m, [o, l, g]).map(CpuData::F64),
            _ => return dtype_err(),
        };
        // One write lock at a time: the targets may be one storage.
        for (i, d) in grads.iter().enumerate() {
            let (lay, (n, w)) = (&geo.layouts[i], operand_shape(geo, i));
            match (&mut *targets[i].write(), d) {
                (CpuData::F32(t), CpuData::F32(d)) => scatter(t, lay, geo.bh, n, w, d),
                (CpuData::F64(t), CpuData::F64(d)) => scatter(t, lay, geo.bh, n, w, d),
                _ => return dtype_err(),
            }
        }
        Ok(())
    }
}

/// The rows of a `[bh, rows, width]` operand stored at `lay`, contiguous (borrowed when
/// they already are).
fn gather<'a, T: Copy>(
    src: &'a [T],
    lay: &RowLayout,
    bh: usize,
    rows: usize,
    width: usize,
) -> Cow<'a, [T]> {
    if *lay == RowLayout::contiguous(rows, width) {
        return Cow::Borrowed(&src[..bh * rows * width]);
    }
    let mut out = Vec::with_capacity(bh * rows * width);
    for b in 0..bh {
        for i in 0..rows {
            let at = lay.at(b, i);
            out.extend_from_slice(&src[at..at + width]);
        }
    }
    Cow::Owned(out)
}

/// Writes contiguous rows `vals` of a `[bh, rows, width]` operand into `dst` at `lay`.
fn scatter<T: Copy>(
    dst: &mut [T],
    lay: &RowLayout,
    bh: usize,
    rows: usize,
    width: usize,
    vals: &[T],
) {
    for b in 0..bh {
        for i in 0..rows {
            let at = lay.at(b, i);
            let from = (b * rows + i) * width;
            dst[at..at + width].copy_from_slice(&vals[from..from + width]);
        }
    }
}

/// Rows per batch-head and row width of `q`, `k` and `v` (`i` = 0, 1, 2).
fn operand_shape(geo: &AttentionGeometry, i: usize) -> (usize, usize) {
    [(geo.l, geo.e), (geo.s, geo.e), (geo.s, geo.ev)][i]
}

/// `q`, `k` and `v` gathered from their layouts into contiguous rows.
fn gather_qkv<'a, T: Copy>(geo: &AttentionGeometry, ops: [&'a [T]; 3]) -> [Cow<'a, [T]>; 3] {
    std::array::from_fn(|i| {
        let (n, w) = operand_shape(geo, i);
        gather(ops[i], &geo.layouts[i], geo.bh, n, w)
    })
}

/// [`forward`] on operands at the geometry's layouts; the output at its layout.
fn forward_at<T: Gemm>(
    geo: &AttentionGeometry,
    [q, k, v]: [&[T]; 3],
    mask: Option<&[f64]>,
) -> (Vec<T>, Vec<T>) {
    let [q, k, v] = gather_qkv(geo, [q, k, v]);
    let lo = &geo.layouts[3];
    let (o, lse) = forward(geo, &q, &k, &v, mask);
    if *lo == RowLayout::contiguous(geo.l, geo.ev) {
        return (o, lse);
    }
    let mut out = pool::filled(geo.bh * geo.l * geo.ev, T::zero());
    scatter(&mut out, lo, geo.bh, geo.l, geo.ev, &o);
    (out, lse)
}

/// [`backward`] on operands at the geometry's layouts (the output and its gradient at
/// the output's); the gradients contiguous.
fn backward_at<T: Gemm>(
    geo: &AttentionGeometry,
    [q, k, v]: [&[T]; 3],
    mask: Option<&[f64]>,
    [o, lse, g]: [&[T]; 3],
) -> [Vec<T>; 3] {
    let [q, k, v] = gather_qkv(geo, [q, k, v]);
    let lo = &geo.layouts[3];
    let o = gather(o, lo, geo.bh, geo.l, geo.ev);
    let g = gather(g, lo, geo.bh, geo.l, geo.ev);
    backward(geo, [&q, &k, &v], mask, [&o, lse, &g])
}

/// Turns the raw products `q k^T` of query rows `i0..i0 + rows` of batch-head `bh` into
/// scaled and masked scores, `-inf` where a key is excluded.
fn scores<T: Gemm>(
    geo: &AttentionGeometry,
    mask: Option<&[f64]>,
    bh: usize,
    i0: usize,
    rows: usize,
    s: &mut [T],
) {
    let scale = T::from_f64(geo.scale);
    for r in 0..rows {
        for j in 0..geo.s {
            let x = &mut s[r * geo.s + j];
            *x = match geo.bias(mask, bh, i0 + r, j) {
                Some(b) => *x * scale + T::from_f64(b),
                None => T::from_f64(f64::NEG_INFINITY),
            };
        }
    }
}

/// The dropout factor of query row `i` of batch-head `bh` for key `j`.
fn keep<T: Gemm>(geo: &AttentionGeometry, bh: usize, i: usize, j: usize) -> T {
    match geo.dropout {
        Some(d) if d.keeps(bh * geo.l + i, j) => T::from_f64(d.scale),
        Some(_) => T::zero(),
        None => T::one(),
    }
}

fn forward<T: Gemm>(
    geo: &AttentionGeometry,
    q: &[T],
    k: &[T],
    v: &[T],
    mask: Option<&[f64]>,
) -> (Vec<T>, Vec<T>) {
    let (l, s, e, ev) = (geo.l, geo.s, geo.e, geo.ev);
    let mut out = pool::filled(geo.bh * l * ev, T::zero());
    let mut lse = pool::filled(geo.bh * l, T::zero());
    let mut p = vec![T::zero(); ROWS.min(l) * s];
    let neg_inf = T::from_f64(f64::NEG_INFINITY);
    for bh in 0..geo.bh {
        let (qb, kb, vb) = (&q[bh * l * e..], &k[bh * s * e..], &v[bh * s * ev..]);
        for i0 in (0..l).step_by(ROWS) {
            let rows = ROWS.min(l - i0);
            let p = &mut p[..rows * s];
            gemm_slices(
                (rows, e, s),
                &qb[i0 * e..],
                (e, 1),
                kb,
                (1, e),
                T::zero(),
                p,
                s,
            );
            scores(geo, mask, bh, i0, rows, p);
            for r in 0..rows {
                let row = &mut p[r * s..(r + 1) * s];
                let m = row.iter().fold(neg_inf, |m, &x| m.max(x));
                let at = bh * l + i0 + r;
                if m == neg_inf {
                    // No key is visible: a zero output (PyTorch's safe softmax).
                    row.iter_mut().for_each(|x| *x = T::zero());
                    lse[at] = T::from_f64(f64::INFINITY);
                    continue;
                }
                let mut sum = T::zero();
                for x in row.iter_mut() {
                    *x = (*x - m).exp();
                    sum += *x;
                }
                lse[at] = m + sum.ln();
                for (j, x) in row.iter_mut().enumerate() {
                    *x = *x / sum * keep::<T>(geo, bh, i0 + r, j);
                }
            }
            gemm_slices(
                (rows, s, ev),
                p,
                (s, 1),
                vb,
                (ev, 1),
                T::zero(),
                &mut out[(bh * l + i0) * ev..],
                ev,
            );
        }
    }
    (out, lse)
}

fn backward<T: Gemm>(
    geo: &AttentionGeometry,
    [q, k, v]: [&[T]; 3],
    mask: Option<&[f64]>,
    [o, lse, g]: [&[T]; 3],
) -> [Vec<T>; 3] {
    let (l, s, e, ev) = (geo.l, geo.s, geo.e, geo.ev);
    let mut dq = pool::filled(geo.bh * l * e, T::zero());
    let mut dk = pool::filled(geo.bh * s * e, T::zero());
    let mut dv = pool::filled(geo.bh * s * ev, T::zero());
    let block = ROWS.min(l) * s;
    let (mut p, mut dp, mut pz) = (
        vec![T::zero(); block],
        vec![T::zero(); block],
        vec![T::zero(); block],
    );
    let scale = T::from_f64(geo.scale);
    for bh in 0..geo.bh {
        let (qb, kb, vb) = (&q[bh * l * e..], &k[bh * s * e..], &v[bh * s * ev..]);
        for i0 in (0..l).step_by(ROWS) {
            let rows = ROWS.min(l - i0);
            let n = rows * s;
            let gb = &g[(bh * l + i0) * ev..];
            gemm_slices(
                (rows, e, s),
                &qb[i0 * e..],
                (e, 1),
                kb,
                (1, e),
                T::zero(),
                &mut p[..n],
                s,
            );
            scores(geo, mask, bh, i0, rows, &mut p[..n]);
            // dP (of the dropped weights) = dO V^T.
            gemm_slices(
                (rows, ev, s),
                gb,
                (ev, 1),
                vb,
                (1, ev),
                T::zero(),
                &mut dp[..n],
                s,
            );
            for r in 0..rows {
                let i = i0 + r;
                let at = bh * l + i;
                let d = (0..ev).fold(T::zero(), |acc, c| acc + g[at * ev + c] * o[at * ev + c]);
                for j in 0..s {
                    let x = r * s + j;
                    let w = (p[x] - lse[at]).exp();
                    let z = keep::<T>(geo, bh, i, j);
                    pz[x] = w * z;
                    // dS, with the scale of the scores folded in.
                    dp[x] = w * (dp[x] * z - d) * scale;
                }
            }
            gemm_slices(
                (s, rows, ev),
                &pz[..n],
                (1, s),
                gb,
                (ev, 1),
                T::one(),
                &mut dv[bh * s * ev..],
                ev,
            );
            gemm_slices(
                (rows, s, e),
                &dp[..n],
                (s, 1),
                kb,
                (e, 1),
                T::zero(),
                &mut dq[(bh * l + i0) * e..],
                e,
            );
            gemm_slices(
                (s, rows, e),
                &dp[..n],
                (1, s),
                &qb[i0 * e..],
                (e, 1),
                T::one(),
                &mut dk[bh * s * e..],
                e,
            );
        }
    }
    [dq, dk, dv]
}
