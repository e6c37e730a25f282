//! The CPU's scaled-dot-product attention. It stores scores, but only for a block of
//! [`ROWS`] query rows at a time (`ROWS x S` values), so a long sequence never needs the
//! whole `[L, S]` matrix; batch-heads are split over threads, each with its own blocks.
//! Operands at strided layouts (heads of a packed projection) are read in place (the
//! products take their row strides) and the output written at its layout; only the
//! gradients of `q`, `k` and `v` are computed contiguous and then copied to theirs
//! (they may share one storage, whose lock is taken once per gradient).

use std::sync::Arc;

use super::elementwise::CpuBackend;
use super::matmul::{gemm_slices, Gemm};
use super::parallel::{self, SendPtr};
use super::{pool, CpuData, CpuStorage};

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
        let mut span = super::profile::span("attention");
        let (bh, l, s, e, ev) = (geo.bh, geo.l, geo.s, geo.e, geo.ev);
        span.add_products(l, s, e, bh); // q k^T
        span.add_products(l, ev, s, bh); // P v
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
        let mut span = super::profile::span("attention_backward");
        let (bh, l, s, e, ev) = (geo.bh, geo.l, geo.s, geo.e, geo.ev);
        // q k^T again, dO v^T, dV, dQ and dK.
        for (m, n, k) in [(l, s, e), (l, s, ev), (s, ev, l), (l, e, s), (s, e, l)] {
            span.add_products(m, n, k, bh);
        }
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

/// An operand read in place: batch-head `bh`'s rows start at `lay.at(bh, 0)` and lie
/// `lay.row` elements apart (the heads of a packed projection need no copy).
#[derive(Clone, Copy)]
struct Rows<'a, T> {
    data: &'a [T],
    lay: RowLayout,
}

impl<'a, T> Rows<'a, T> {
    /// Batch-head `bh`'s rows from row `i` on, and the distance between rows (empty
    /// past the data: an operand with no rows, whose layout offset may lie beyond its
    /// end; a product over it checks its bounds).
    fn head(&self, bh: usize, i: usize) -> (&'a [T], usize) {
        let rows = self.data.get(self.lay.at(bh, i)..).unwrap_or(&[]);
        (rows, self.lay.row)
    }
}

/// [`forward`] on operands at the geometry's layouts; the output at its layout.
fn forward_at<T: Gemm>(
    geo: &AttentionGeometry,
    [q, k, v]: [&[T]; 3],
    mask: Option<&[f64]>,
) -> (Vec<T>, Vec<T>) {
    let rows = |data, i: usize| Rows {
        data,
        lay: geo.layouts[i],
    };
    forward(geo, [rows(q, 0), rows(k, 1), rows(v, 2)], mask)
}

/// [`backward`] on operands at the geometry's layouts (the output and its gradient at
/// the output's); the gradients contiguous.
fn backward_at<T: Gemm>(
    geo: &AttentionGeometry,
    [q, k, v]: [&[T]; 3],
    mask: Option<&[f64]>,
    [o, lse, g]: [&[T]; 3],
) -> [Vec<T>; 3] {
    let rows = |data, i: usize| Rows {
        data,
        lay: geo.layouts[i],
    };
    backward(
        geo,
        [rows(q, 0), rows(k, 1), rows(v, 2)],
        mask,
        [rows(o, 3), rows(g, 3)],
        lse,
    )
}

/// Turns the raw products `q k^T` of query rows `i0..i0 + rows` of batch-head `bh` into
/// scaled and masked scores, `-inf` where a key is excluded. Returns, per row, how many
/// leading keys may be visible (`S`, or fewer under a causal mask without a mask
/// tensor: the rest are `-inf` and need no arithmetic).
fn scores<T: Gemm>(
    geo: &AttentionGeometry,
    mask: Option<&[f64]>,
    bh: usize,
    i0: usize,
    rows: usize,
    s: &mut [T],
) -> impl Fn(usize) -> usize {
    let scale = T::from_f64(geo.scale);
    let (keys, causal) = (geo.s, geo.causal);
    let neg_inf = T::from_f64(f64::NEG_INFINITY);
    let plain = mask.is_none() || geo.mask.is_none();
    // Under a causal mask alone, query i sees keys 0..=i.
    let visible = move |r: usize| {
        if plain && causal {
            (i0 + r + 1).min(keys)
        } else {
            keys
        }
    };
    for r in 0..rows {
        let row = &mut s[r * keys..(r + 1) * keys];
        if plain {
            let (seen, hidden) = row.split_at_mut(visible(r));
            seen.iter_mut().for_each(|x| *x = *x * scale);
            hidden.iter_mut().for_each(|x| *x = neg_inf);
            continue;
        }
        for (j, x) in row.iter_mut().enumerate() {
            *x = match geo.bias(mask, bh, i0 + r, j) {
                Some(b) => *x * scale + T::from_f64(b),
                None => neg_inf,
            };
        }
    }
    visible
}

/// The dropout factor of query row `i` of batch-head `bh` for key `j`.
fn keep<T: Gemm>(geo: &AttentionGeometry, bh: usize, i: usize, j: usize) -> T {
    match geo.dropout {
        Some(d) if d.keeps(bh * geo.l + i, j) => T::from_f64(d.scale),
        Some(_) => T::zero(),
        None => T::one(),
    }
}

/// Batch-heads per thread: the work of one is its products, `L S (E + Ev)`
/// multiply-adds forward.
fn parts(geo: &AttentionGeometry) -> usize {
    let per = geo.l * geo.s * (geo.e + geo.ev);
    parallel::parts(geo.bh, geo.bh.saturating_mul(per))
}

/// A mutable view of block `b` (of `len` elements) of the buffer at `p`.
///
/// # Safety
/// The buffer must hold at least `(b + 1) len` elements, and no other view of block `b`
/// may exist while this one does.
unsafe fn block<'a, T>(p: SendPtr<T>, b: usize, len: usize) -> &'a mut [T] {
    std::slice::from_raw_parts_mut(p.0.add(b * len), len)
}

fn forward<T: Gemm>(
    geo: &AttentionGeometry,
    [q, k, v]: [Rows<'_, T>; 3],
    mask: Option<&[f64]>,
) -> (Vec<T>, Vec<T>) {
    let (l, s, e, ev) = (geo.l, geo.s, geo.e, geo.ev);
    // The output at its layout (it covers the buffer: zeros only where it does not).
    let lo = geo.layouts[3];
    let mut out = pool::filled(geo.bh * l * ev, T::zero());
    let mut lse = pool::filled(geo.bh * l, T::zero());
    let out_len = out.len();
    let (op, lp) = (SendPtr(out.as_mut_ptr()), SendPtr(lse.as_mut_ptr()));
    let neg_inf = T::from_f64(f64::NEG_INFINITY);
    // Batch-heads are independent: each thread takes a run of them, with its own
    // block of scores.
    parallel::for_parts(geo.bh, parts(geo), |_, heads| {
        let (op, lp) = (op, lp);
        let mut p = vec![T::zero(); ROWS.min(l) * s];
        for bh in heads {
            let ((kb, kr), (vb, vr)) = (k.head(bh, 0), v.head(bh, 0));
            // SAFETY: `lse` holds `bh` blocks of `l`; each batch-head (so each part's run
            // of them) writes only its own.
            let lb = unsafe { block(lp, bh, l) };
            for i0 in (0..l).step_by(ROWS) {
                let rows = ROWS.min(l - i0);
                let p = &mut p[..rows * s];
                let (qb, qr) = q.head(bh, i0);
                gemm_slices((rows, e, s), qb, (qr, 1), kb, (1, kr), T::zero(), p, s);
                let visible = scores(geo, mask, bh, i0, rows, p);
                for r in 0..rows {
                    let row = &mut p[r * s..(r + 1) * s];
                    let (seen, hidden) = row.split_at_mut(visible(r));
                    hidden.iter_mut().for_each(|x| *x = T::zero());
                    let m = seen.iter().fold(neg_inf, |m, &x| m.max(x));
                    if m == neg_inf {
                        // No key is visible: a zero output (PyTorch's safe softmax).
                        seen.iter_mut().for_each(|x| *x = T::zero());
                        lb[i0 + r] = T::from_f64(f64::INFINITY);
                        continue;
                    }
                    // The exponentials in a loop of their own (it vectorises), then
                    // their sum in order.
                    seen.iter_mut().for_each(|x| *x = (*x - m).exp());
                    let sum = seen.iter().fold(T::zero(), |a, &x| a + x);
                    lb[i0 + r] = m + sum.ln();
                    if geo.dropout.is_none() {
                        seen.iter_mut().for_each(|x| *x = *x / sum);
                    } else {
                        for (j, x) in seen.iter_mut().enumerate() {
                            *x = *x / sum * keep::<T>(geo, bh, i0 + r, j);
                        }
                    }
                }
                // The output rows `i0..i0 + rows` of this batch-head, at the output's
                // layout: no other batch-head writes them, but they interleave with
                // other heads' rows, so they are written through the pointer (the
                // bounds checked here) rather than through a slice.
                let at = lo.at(bh, i0);
                if s > 0 && ev > 0 {
                    assert!(
                        at + (rows - 1) * lo.row + ev <= out_len,
                        "attention: output bounds"
                    );
                    assert!(p.len() >= rows * s && vb.len() >= (s - 1) * vr + ev);
                    // SAFETY: every index of P, V and the output rows is checked above;
                    // the output is a buffer of its own.
                    unsafe {
                        T::gemm(
                            rows,
                            s,
                            ev,
                            p.as_ptr(),
                            (s, 1),
                            vb.as_ptr(),
                            (vr, 1),
                            T::zero(),
                            op.0.add(at),
                            lo.row,
                        )
                    };
                }
            }
        }
    });
    (out, lse)
}

fn backward<T: Gemm>(
    geo: &AttentionGeometry,
    [q, k, v]: [Rows<'_, T>; 3],
    mask: Option<&[f64]>,
    [o, g]: [Rows<'_, T>; 2],
    lse: &[T],
) -> [Vec<T>; 3] {
    let (l, s, e, ev) = (geo.l, geo.s, geo.e, geo.ev);
    let mut dq = pool::filled(geo.bh * l * e, T::zero());
    let mut dk = pool::filled(geo.bh * s * e, T::zero());
    let mut dv = pool::filled(geo.bh * s * ev, T::zero());
    let ptrs = [
        SendPtr(dq.as_mut_ptr()),
        SendPtr(dk.as_mut_ptr()),
        SendPtr(dv.as_mut_ptr()),
    ];
    let block_len = ROWS.min(l) * s;
    let scale = T::from_f64(geo.scale);
    parallel::for_parts(geo.bh, parts(geo), |_, heads| {
        let [pq, pk, pv] = ptrs;
        let (mut p, mut dp, mut pz) = (
            vec![T::zero(); block_len],
            vec![T::zero(); block_len],
            vec![T::zero(); block_len],
        );
        for bh in heads {
            let ((kb, kr), (vb, vr)) = (k.head(bh, 0), v.head(bh, 0));
            // SAFETY: each gradient holds `bh` blocks of these sizes; each batch-head
            // (so each part's run of them) writes only its own.
            let (dqb, dkb, dvb) = unsafe {
                (
                    block(pq, bh, l * e),
                    block(pk, bh, s * e),
                    block(pv, bh, s * ev),
                )
            };
            for i0 in (0..l).step_by(ROWS) {
                let rows = ROWS.min(l - i0);
                let n = rows * s;
                let ((qb, qr), (gb, gr)) = (q.head(bh, i0), g.head(bh, i0));
                gemm_slices(
                    (rows, e, s),
                    qb,
                    (qr, 1),
                    kb,
                    (1, kr),
                    T::zero(),
                    &mut p[..n],
                    s,
                );
                let visible = scores(geo, mask, bh, i0, rows, &mut p[..n]);
                // dP (of the dropped weights) = dO V^T.
                gemm_slices(
                    (rows, ev, s),
                    gb,
                    (gr, 1),
                    vb,
                    (1, vr),
                    T::zero(),
                    &mut dp[..n],
                    s,
                );
                for r in 0..rows {
                    let i = i0 + r;
                    let at = bh * l + i;
                    let (go, oo) = (&g.head(bh, i).0[..ev], &o.head(bh, i).0[..ev]);
                    let d = go
                        .iter()
                        .zip(oo)
                        .fold(T::zero(), |acc, (&a, &b)| acc + a * b);
                    let (vis, x0) = (visible(r), r * s);
                    let (pr, dpr, pzr) = (&p[x0..x0 + s], &mut dp[x0..x0 + s], &mut pz[x0..x0 + s]);
                    // Keys past `vis` have zero weight (and zero gradient).
                    dpr[vis..].iter_mut().for_each(|x| *x = T::zero());
                    pzr[vis..].iter_mut().for_each(|x| *x = T::zero());
                    let l_at = lse[at];
                    if geo.dropout.is_none() {
                        for ((&sc, dx), pzx) in
                            pr[..vis].iter().zip(&mut dpr[..vis]).zip(&mut pzr[..vis])
                        {
                            let w = (sc - l_at).exp();
                            *pzx = w;
                            // dS, with the scale of the scores folded in.
                            *dx = w * (*dx - d) * scale;
                        }
                    } else {
                        for j in 0..vis {
                            let w = (pr[j] - l_at).exp();
                            let z = keep::<T>(geo, bh, i, j);
                            pzr[j] = w * z;
                            dpr[j] = w * (dpr[j] * z - d) * scale;
                        }
                    }
                }
                gemm_slices(
                    (s, rows, ev),
                    &pz[..n],
                    (1, s),
                    gb,
                    (gr, 1),
                    T::one(),
                    dvb,
                    ev,
                );
                let dq_rows = &mut dqb[i0 * e..];
                gemm_slices(
                    (rows, s, e),
                    &dp[..n],
                    (s, 1),
                    kb,
                    (kr, 1),
                    T::zero(),
                    dq_rows,
                    e,
                );
                gemm_slices(
                    (s, rows, e),
                    &dp[..n],
                    (1, s),
                    qb,
                    (qr, 1),
                    T::one(),
                    dkb,
                    e,
                );
            }
        }
    });
    [dq, dk, dv]
}
