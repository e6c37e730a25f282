//! The CPU recurrences: the LSTM and GRU cells' gate math, and one driver for every
//! layer on slices. Elman, LSTM and GRU differ only in their [`Cell`]: what follows the
//! step's product (the activation, or the gate math) and its derivative. The reverse
//! direction ([`Dims::reverse`]) walks the same slices from the last step to the first.

use std::sync::RwLockReadGuard;

use super::elementwise::CpuBackend;
use super::{map_float2, map_float3, parallel, pool, CpuData, Elem, Float};
use crate::backend::elementwise::sigmoid;
use crate::backend::reduce::ReducePlan;
use crate::backend::rnn::{Cell, Dims, Grads, Layer, Need, Saved};
use crate::backend::{Recurrence, Reduce, Storage};
use crate::error::{Error, Result};
// The matrix-product family's CPU products (moving behind the seam in its own step).
use super::matmul::{gemm_slices, Gemm};

/// The op named in this backend's errors.
const OP: &str = "rnn";

/// The GPU clamps tanh's argument (see the shader); the CPU does the same so both agree.
fn tanh_c<T: Float>(x: T) -> T {
    let lim = T::from_f64(15.0);
    let x = if x > lim {
        lim
    } else if x < -lim {
        -lim
    } else {
        x
    };
    x.tanh()
}

/// The LSTM gates of one element: (i, f, g, o, c, tanh c).
#[inline]
fn lstm_unit<T: Float>(a: &[T], base: usize, h: usize, cp: T) -> (T, T, T, T, T, T) {
    let i = sigmoid(a[base]);
    let f = sigmoid(a[base + h]);
    let g = tanh_c(a[base + 2 * h]);
    let o = sigmoid(a[base + 3 * h]);
    let c = f * cp + i * g;
    (i, f, g, o, c, tanh_c(c))
}

/// One LSTM step into `h_out` and `c_out` (`[B, H]` each): no allocation per step.
fn lstm_fwd_cpu<T: Float>(a: &[T], cp: &[T], h: usize, h_out: &mut [T], c_out: &mut [T]) {
    for (k, (ho, co)) in h_out.iter_mut().zip(c_out.iter_mut()).enumerate() {
        let base = (k / h) * 4 * h + k % h;
        let (_, _, _, o, c, tc) = lstm_unit(a, base, h, cp[k]);
        *ho = o * tc;
        *co = c;
    }
}

/// Its backward from the gradients of `h` (`gh`) and `c` (`gc`): the gates' gradients
/// into `da` and `c_prev`'s into `dcp`.
fn lstm_bwd_cpu<T: Float>(
    a: &[T],
    cp: &[T],
    (gh, gc): (&[T], &[T]),
    h: usize,
    da: &mut [T],
    dcp: &mut [T],
) {
    let one = T::one();
    for (k, d_cp) in dcp.iter_mut().enumerate() {
        let base = (k / h) * 4 * h + k % h;
        let (i, f, g, o, _, tc) = lstm_unit(a, base, h, cp[k]);
        let dh = gh[k];
        let dc = gc[k] + dh * o * (one - tc * tc);
        da[base] = dc * g * i * (one - i);
        da[base + h] = dc * cp[k] * f * (one - f);
        da[base + 2 * h] = dc * i * (one - g * g);
        da[base + 3 * h] = dh * tc * o * (one - o);
        *d_cp = dc * f;
    }
}

/// The GRU gates of one element: (r, z, n).
#[inline]
fn gru_unit<T: Float>(gi: &[T], gh: &[T], base: usize, h: usize) -> (T, T, T) {
    let r = sigmoid(gi[base] + gh[base]);
    let z = sigmoid(gi[base + h] + gh[base + h]);
    let n = tanh_c(gi[base + 2 * h] + r * gh[base + 2 * h]);
    (r, z, n)
}

/// One GRU step: the new hidden state into `out`.
fn gru_fwd_cpu<T: Float>(gi: &[T], gh: &[T], hp: &[T], h: usize, out: &mut [T]) {
    let one = T::one();
    for (k, (o, &p)) in out.iter_mut().zip(hp).enumerate() {
        let (_, z, n) = gru_unit(gi, gh, (k / h) * 3 * h + k % h, h);
        *o = (one - z) * n + z * p;
    }
}

/// Its backward (`d h_prev` through `z` only) into `[d gi, d gh, d h_prev]`.
fn gru_bwd_cpu<T: Float>(
    gi: &[T],
    gh: &[T],
    hp: &[T],
    gy: &[T],
    h: usize,
    [dgi, dgh, dhp]: [&mut [T]; 3],
) {
    let one = T::one();
    for k in 0..hp.len() {
        let base = (k / h) * 3 * h + k % h;
        let (r, z, n) = gru_unit(gi, gh, base, h);
        let dh = gy[k];
        let dn = dh * (one - z) * (one - n * n);
        let dz = dh * (hp[k] - n) * z * (one - z);
        let dr = dn * gh[base + 2 * h] * r * (one - r);
        dgi[base] = dr;
        dgi[base + h] = dz;
        dgi[base + 2 * h] = dn;
        dgh[base] = dr;
        dgh[base + h] = dz;
        dgh[base + 2 * h] = dn * r;
        dhp[k] = dh * z;
    }
}

/// The elements as `T`, or a dtype error (the op checks that all are one float type).
fn els<T: Elem>(d: &CpuData) -> Result<&[T]> {
    T::of(d).ok_or_else(|| Error::DType {
        op: OP,
        msg: "the weights, biases and states must all be of the input's float dtype".into(),
    })
}

/// The CPU data of a storage.
fn read(s: &Storage) -> Result<RwLockReadGuard<'_, CpuData>> {
    Ok(s.cpu(OP)?.read())
}

/// An LSTM has an initial cell state and the other cells none (the op checks it).
fn check_c0(cell: Cell, c0: Option<&Storage>) -> Result<()> {
    if (cell == Cell::Lstm) != c0.is_some() {
        return Err(Error::Shape {
            op: OP,
            msg: "an LSTM needs c0 and the other cells take none".into(),
        });
    }
    Ok(())
}

/// [`els`] of optional data, empty when absent.
fn opt_els<T: Elem>(d: Option<&CpuData>) -> Result<&[T]> {
    d.map_or(Ok(&[]), els)
}

/// Slot `cur` of `v` to write and slot `prev` to read (slots of `step` elements; two
/// different slots).
fn slots<T>(v: &mut [T], cur: usize, prev: usize, step: usize) -> (&mut [T], &[T]) {
    if prev < cur {
        let (done, rest) = v.split_at_mut(cur * step);
        (&mut rest[..step], &done[prev * step..(prev + 1) * step])
    } else {
        let (head, later) = v.split_at_mut(prev * step);
        (&mut head[cur * step..(cur + 1) * step], &later[..step])
    }
}

/// The forward on slices: `[y, gi, pre, cs]` with `y` every step's `h` (an LSTM's then
/// its last `c`), `[T (+ 1), B, H]`, the input products with `b_ih`, the step products
/// (gated cells) and an LSTM's cell states. The steps run in [`Dims::time`]'s order.
#[allow(clippy::too_many_arguments)]
fn forward<T: Elem>(
    cell: Cell,
    x: &[T],
    wih: &[T],
    whh: &[T],
    b_ih: Option<&[T]>,
    b_hh: Option<&[T]>,
    h0: &[T],
    c0: &[T],
    dims: Dims,
) -> [Vec<T>; 4] {
    let Dims {
        t_len, b, i, h, g, ..
    } = dims;
    let (rows, gh) = (t_len * b, g * h);
    let (step, step_g) = (b * h, b * gh);
    // All steps' input products with b_ih: [T B, G H].
    let mut gi = pool::filled(rows * gh, T::zero());
    gemm_slices(
        (rows, i, gh),
        x,
        (i, 1),
        wih,
        (1, i),
        T::zero(),
        &mut gi,
        gh,
    );
    if let Some(bias) = b_ih {
        for row in gi.chunks_mut(gh.max(1)) {
            row.iter_mut().zip(bias).for_each(|(v, &bv)| *v += bv);
        }
    }
    let mut y = pool::filled(cell.y_steps(t_len) * step, T::zero());
    let mut pre = match cell {
        Cell::Elman(_) => Vec::new(),
        _ => pool::filled(t_len * step_g, T::zero()),
    };
    let mut cs = match cell {
        Cell::Lstm => pool::filled(t_len * step, T::zero()),
        _ => Vec::new(),
    };
    if step == 0 {
        return [y, gi, pre, cs];
    }
    // The step's product `h_{t-1} W_hh^T + b_hh`, onto `gi_t` where the cell adds it.
    let bias: Vec<T> = (0..gh)
        .map(|j| b_hh.map_or(T::zero(), |bb| bb[j]))
        .collect();
    let adds_input = cell.product_adds_input();
    let product = |slot: &mut [T], prev: &[T], t: usize| {
        let gi_t = &gi[t * step_g..(t + 1) * step_g];
        for (row, g_row) in slot.chunks_mut(gh).zip(gi_t.chunks(gh)) {
            if adds_input {
                for ((v, &gv), &bv) in row.iter_mut().zip(g_row).zip(&bias) {
                    *v = gv + bv;
                }
            } else {
                row.copy_from_slice(&bias);
            }
        }
        gemm_slices((b, h, gh), prev, (h, 1), whh, (1, h), T::one(), slot, gh);
    };
    for s in 0..t_len {
        // Step s computes time t from the state of time pt (the step before it).
        let t = dims.time(s);
        let pt = (s > 0).then(|| dims.time(s - 1));
        let (h_t, prev) = match pt {
            None => (&mut y[t * step..(t + 1) * step], h0),
            Some(pt) => slots(&mut y, t, pt, step),
        };
        match cell {
            Cell::Elman(act) => {
                product(h_t, prev, t);
                act.apply_slice(h_t);
            }
            Cell::Lstm => {
                let a = &mut pre[t * step_g..(t + 1) * step_g];
                product(a, prev, t);
                let (c_t, c_prev) = match pt {
                    None => (&mut cs[t * step..(t + 1) * step], c0),
                    Some(pt) => slots(&mut cs, t, pt, step),
                };
                lstm_fwd_cpu(a, c_prev, h, h_t, c_t);
            }
            Cell::Gru => {
                let gh_t = &mut pre[t * step_g..(t + 1) * step_g];
                product(gh_t, prev, t);
                let gi_t = &gi[t * step_g..(t + 1) * step_g];
                gru_fwd_cpu(gi_t, gh_t, prev, h, h_t);
            }
        }
    }
    if cell == Cell::Lstm {
        let last = dims.time(t_len - 1);
        y[t_len * step..].copy_from_slice(&cs[last * step..(last + 1) * step]);
    }
    [y, gi, pre, cs]
}

/// Backpropagation through time on slices: from the output gradient `gy`, the
/// gradients of the input products `d_in` and of the step products `d_rec` (`[T, B, G
/// H]`; the same for all but the GRU, so empty then), of `h0` and (LSTM) of `c0`. The
/// steps run in the reverse of [`Dims::time`]'s order.
fn backward<T: Elem>(
    cell: Cell,
    gy: &[T],
    (y, gi, pre, cs): (&[T], &[T], &[T], &[T]),
    whh: &[T],
    h0: &[T],
    c0: &[T],
    dims: Dims,
) -> [Vec<T>; 4] {
    let Dims { t_len, b, h, g, .. } = dims;
    let gh = g * h;
    let (step, step_g) = (b * h, b * gh);
    let mut d_in = pool::filled(t_len * step_g, T::zero());
    let mut d_rec = match cell {
        Cell::Gru => pool::filled(t_len * step_g, T::zero()),
        _ => Vec::new(),
    };
    let mut carry = pool::filled(step, T::zero());
    let mut dc = match cell {
        Cell::Lstm => gy[t_len * step..(t_len + 1) * step].to_vec(),
        _ => Vec::new(),
    };
    let mut dh = pool::filled(step, T::zero());
    // The LSTM's c_prev gradient of the step being done, swapped into `dc` after it.
    let mut dc_prev = match cell {
        Cell::Lstm => pool::filled(step, T::zero()),
        _ => Vec::new(),
    };
    for s in (0..t_len).rev() {
        let t = dims.time(s);
        let pt = (s > 0).then(|| dims.time(s - 1));
        // The gradient reaching h_t: the output's and the one carried from the next step.
        for ((d, &gv), &cv) in dh.iter_mut().zip(&gy[t * step..]).zip(&carry) {
            *d = gv + cv;
        }
        let prev = match pt {
            None => h0,
            Some(pt) => &y[pt * step..(pt + 1) * step],
        };
        let d_t = &mut d_in[t * step_g..(t + 1) * step_g];
        // d_t W_hh, the hidden gradient carried to the step before (onto its direct part).
        let mut beta = T::zero();
        match cell {
            Cell::Elman(act) => act.mul_deriv_into(d_t, &dh, &y[t * step..(t + 1) * step]),
            Cell::Lstm => {
                let c_prev = match pt {
                    None => c0,
                    Some(pt) => &cs[pt * step..(pt + 1) * step],
                };
                let a = &pre[t * step_g..(t + 1) * step_g];
                lstm_bwd_cpu(a, c_prev, (&dh, &dc), h, d_t, &mut dc_prev);
                std::mem::swap(&mut dc, &mut dc_prev);
            }
            Cell::Gru => {
                let at = t * step_g..(t + 1) * step_g;
                let (gi_t, gh_t) = (&gi[at.clone()], &pre[at.clone()]);
                let d_rec_t = &mut d_rec[at];
                gru_bwd_cpu(gi_t, gh_t, prev, &dh, h, [d_t, d_rec_t, &mut carry]);
                beta = T::one();
            }
        }
        let d_t = match cell {
            Cell::Gru => &d_rec[t * step_g..(t + 1) * step_g],
            _ => &d_in[t * step_g..(t + 1) * step_g],
        };
        gemm_slices((b, gh, h), d_t, (gh, 1), whh, (h, 1), beta, &mut carry, h);
    }
    [d_in, d_rec, carry, dc]
}

/// `A B` `[m, n]` for operands with the given (row, column) element strides, split over
/// threads by rows of the result as the matrix-product op splits a single product.
fn product<T: Gemm>(
    (m, k, n): (usize, usize, usize),
    a: &[T],
    a_strides: (usize, usize),
    b: &[T],
    b_strides: (usize, usize),
) -> Vec<T> {
    let mut c = pool::filled(m * n, T::zero());
    if m * n == 0 {
        return c;
    }
    parallel::for_blocks_mut(&mut c, m, m * n * k, |first, rows| {
        let a = &a[first * a_strides.0..];
        gemm_slices(
            (rows.len() / n, k, n),
            a,
            a_strides,
            b,
            b_strides,
            T::zero(),
            rows,
            n,
        );
    });
    c
}

/// The layer's whole backward on slices: `[d_in, d_rec, dh0, dc0, dx, dW_ih, dW_hh]`
/// (`d_rec` empty but for the GRU, whose step products differ from its input products;
/// the products' gradients empty where not needed).
fn layer_backward<T: Elem>(
    cell: Cell,
    [gy, y, x, wih, whh, h0]: [&CpuData; 6],
    [gi, pre, cs, c0]: [Option<&CpuData>; 4],
    need: Need,
    dims: Dims,
) -> Result<[Vec<T>; 7]> {
    let Dims {
        t_len, b, i, h, g, ..
    } = dims;
    let (rows, gh) = (t_len * b, g * h);
    let (y, wih, whh, h0) = (els::<T>(y)?, els::<T>(wih)?, els::<T>(whh)?, els::<T>(h0)?);
    let c0 = opt_els::<T>(c0)?;
    let kept = (y, opt_els(gi)?, opt_els(pre)?, opt_els(cs)?);
    let [d_in, d_rec, dh0, dc0] = backward::<T>(cell, els(gy)?, kept, whh, h0, c0, dims);
    let d_r = if cell == Cell::Gru { &d_rec } else { &d_in };
    let dx = match need.x {
        true => product((rows, gh, i), &d_in, (gh, 1), wih, (i, 1)),
        false => Vec::new(),
    };
    let dw_ih = match need.w_ih {
        true => product((gh, rows, i), &d_in, (1, gh), els::<T>(x)?, (i, 1)),
        false => Vec::new(),
    };
    let dw_hh = match need.w_hh {
        true => {
            // The state each time step started from, in time order: h0, then the
            // outputs of all but the last step (reversed: the outputs from time 1, then
            // h0).
            let mut prev = pool::with_capacity(rows * h);
            if dims.reverse {
                prev.extend_from_slice(&y[b * h..t_len * b * h]);
                prev.extend_from_slice(h0);
            } else {
                prev.extend_from_slice(h0);
                prev.extend_from_slice(&y[..(t_len - 1) * b * h]);
            }
            product((gh, rows, h), d_r, (1, gh), &prev, (h, 1))
        }
        false => Vec::new(),
    };
    Ok([d_in, d_rec, dh0, dc0, dx, dw_ih, dw_hh])
}

/// The forward on CPU data (of one float type, `T`).
fn layer_forward<T: Elem>(
    cell: Cell,
    [x, wi, wh, h0]: [&CpuData; 4],
    [bi, bh, c0]: [Option<&CpuData>; 3],
    dims: Dims,
) -> Result<[CpuData; 4]> {
    let (bi, bh) = (bi.map(els).transpose()?, bh.map(els).transpose()?);
    let c0 = opt_els::<T>(c0)?;
    let (x, wi, wh, h0) = (els::<T>(x)?, els(wi)?, els(wh)?, els(h0)?);
    Ok(forward::<T>(cell, x, wi, wh, bi, bh, h0, c0, dims).map(T::data))
}

impl Recurrence for CpuBackend {
    /// One product for all steps' inputs; per step one product accumulated into its
    /// slot (of the output for Elman, of the gate buffer for the gated cells) and one
    /// pass of the cell's math. No per-step buffers.
    fn recurrence(&self, cell: Cell, l: &Layer<'_>, dims: Dims) -> Result<(Storage, Saved)> {
        let _span = super::profile::span("recurrence");
        check_c0(cell, l.c0)?;
        let (x, wi, wh, h0) = (read(l.x)?, read(l.w_ih)?, read(l.w_hh)?, read(l.h0)?);
        let bi = l.b_ih.map(read).transpose()?;
        let bh = l.b_hh.map(read).transpose()?;
        let c0 = l.c0.map(read).transpose()?;
        let dense = [&*x, &*wi, &*wh, &*h0];
        let opt = [bi.as_deref(), bh.as_deref(), c0.as_deref()];
        let [y, gi, pre, cs] = match &*x {
            CpuData::F64(_) => layer_forward::<f64>(cell, dense, opt, dims)?,
            _ => layer_forward::<f32>(cell, dense, opt, dims)?,
        };
        let saved = Saved {
            gi: (cell == Cell::Gru).then(|| Storage::new_cpu(gi)),
            pre: cell.fused().is_none().then(|| Storage::new_cpu(pre)),
            cs: (cell == Cell::Lstm).then(|| Storage::new_cpu(cs)),
        };
        Ok((Storage::new_cpu(y), saved))
    }

    /// Backward one pass and one product per step, then one product each for the
    /// weights' and the input's gradients, and the biases' as sums.
    fn recurrence_backward(
        &self,
        cell: Cell,
        l: &Layer<'_>,
        y: &Storage,
        saved: &Saved,
        gy: &Storage,
        need: Need,
        dims: Dims,
    ) -> Result<Grads> {
        let _span = super::profile::span("recurrence_backward");
        check_c0(cell, l.c0)?;
        let grads = {
            let (gd, yd, xd) = (read(gy)?, read(y)?, read(l.x)?);
            let (wi, wh, h0) = (read(l.w_ih)?, read(l.w_hh)?, read(l.h0)?);
            let kept = [&saved.gi, &saved.pre, &saved.cs].map(|s| s.as_ref().map(read));
            let [gi, pre, cs] = kept.map(Option::transpose);
            let (gi, pre, cs, c0) = (gi?, pre?, cs?, l.c0.map(read).transpose()?);
            let dense = [&*gd, &*yd, &*xd, &*wi, &*wh, &*h0];
            let opt = [gi.as_deref(), pre.as_deref(), cs.as_deref(), c0.as_deref()];
            match &*gd {
                CpuData::F64(_) => {
                    layer_backward::<f64>(cell, dense, opt, need, dims)?.map(f64::data)
                }
                _ => layer_backward::<f32>(cell, dense, opt, need, dims)?.map(f32::data),
            }
        };
        let [d_in, d_rec, dh0, dc0, dx, dw_ih, dw_hh] = grads.map(Storage::new_cpu);
        let d_rec = if cell == Cell::Gru {
            d_rec
        } else {
            d_in.clone()
        };
        let gh = dims.g * dims.h;
        let plan = ReducePlan::new("sum", &[dims.t_len * dims.b, gh], &[0], false)?;
        let db_ih = need.b_ih.then(|| self.sum(&d_in, &plan, 1.0)).transpose()?;
        let db_hh = need
            .b_hh
            .then(|| self.sum(&d_rec, &plan, 1.0))
            .transpose()?;
        Ok([
            need.x.then_some(dx),
            need.w_ih.then_some(dw_ih),
            need.w_hh.then_some(dw_hh),
            db_ih,
            db_hh,
            need.h0.then_some(dh0),
            (cell == Cell::Lstm).then_some(dc0),
        ])
    }

    fn lstm_cell(&self, gates: &Storage, c_prev: &Storage, _b: usize, h: usize) -> Result<Storage> {
        let _span = super::profile::span("lstm_cell");
        let out = map_float2!(
            &*gates.cpu(OP)?.read(),
            &*c_prev.cpu(OP)?.read(),
            |a, cp: T| {
                // `[2, B, H]`: h then c.
                let n = cp.len();
                let mut out = pool::filled(2 * n, T::zero());
                let (ho, co) = out.split_at_mut(n);
                lstm_fwd_cpu(a, cp, h, ho, co);
                out
            }
        );
        Ok(Storage::new_cpu(out))
    }

    fn lstm_cell_backward(
        &self,
        gates: &Storage,
        c_prev: &Storage,
        g: &Storage,
        _b: usize,
        h: usize,
    ) -> Result<(Storage, Storage)> {
        let _span = super::profile::span("lstm_cell_backward");
        fn run<T: Elem>(a: &CpuData, c: &CpuData, g: &CpuData, h: usize) -> Result<[CpuData; 2]> {
            let (a, c, g) = (els::<T>(a)?, els(c)?, els(g)?);
            let n = c.len();
            let (mut da, mut dc) = (pool::filled(4 * n, T::zero()), pool::filled(n, T::zero()));
            lstm_bwd_cpu(a, c, g.split_at(n), h, &mut da, &mut dc);
            Ok([T::data(da), T::data(dc)])
        }
        let (a, c, gd) = (
            gates.cpu(OP)?.read(),
            c_prev.cpu(OP)?.read(),
            g.cpu(OP)?.read(),
        );
        let [da, dc] = match &*gd {
            CpuData::F64(_) => run::<f64>(&a, &c, &gd, h)?,
            _ => run::<f32>(&a, &c, &gd, h)?,
        };
        Ok((Storage::new_cpu(da), Storage::new_cpu(dc)))
    }

    fn gru_cell(
        &self,
        gi: &Storage,
        gh: &Storage,
        h_prev: &Storage,
        _b: usize,
        h: usize,
    ) -> Result<Storage> {
        let _span = super::profile::span("gru_cell");
        let out = map_float3!(
            &*gi.cpu(OP)?.read(),
            &*gh.cpu(OP)?.read(),
            &*h_prev.cpu(OP)?.read(),
            |a, c, p: T| {
                let mut out = pool::filled(p.len(), T::zero());
                gru_fwd_cpu(a, c, p, h, &mut out);
                out
            }
        );
        Ok(Storage::new_cpu(out))
    }

    fn gru_cell_backward(
        &self,
        gi: &Storage,
        gh: &Storage,
        h_prev: &Storage,
        g: &Storage,
        _b: usize,
        h: usize,
    ) -> Result<[Storage; 3]> {
        let _span = super::profile::span("gru_cell_backward");
        fn run<T: Elem>(d: [&CpuData; 4], h: usize) -> Result<[CpuData; 3]> {
            let (gi, gh, hp, g) = (els::<T>(d[0])?, els(d[1])?, els(d[2])?, els(d[3])?);
            let (mut x, mut y) = (
                pool::filled(gi.len(), T::zero()),
                pool::filled(gi.len(), T::zero()),
            );
            let mut z = pool::filled(hp.len(), T::zero());
            gru_bwd_cpu(gi, gh, hp, g, h, [&mut x, &mut y, &mut z]);
            Ok([T::data(x), T::data(y), T::data(z)])
        }
        let (a, c, p, gd) = (read(gi)?, read(gh)?, read(h_prev)?, read(g)?);
        let grads = match &*gd {
            CpuData::F64(_) => run::<f64>([&a, &c, &p, &gd], h)?,
            _ => run::<f32>([&a, &c, &p, &gd], h)?,
        };
        Ok(grads.map(Storage::new_cpu))
    }
}
