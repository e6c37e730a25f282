//! The CPU recurrence: one driver ([`recurrence_cpu`]) for every cell, on slices. Elman,
//! LSTM and GRU differ only in their [`Cell`]: what follows the step's product (the
//! activation, or the gate math of `cell.rs`) and its derivative.

use super::*;
use crate::backend::cpu::matmul::{gemm_slices, Gemm};
use crate::ops::matmul::{matmul_raw, MatmulChoice};

/// A float type's slices out of CPU data, and back.
pub(super) trait Elem: Gemm {
    /// The elements, when `d` holds this type.
    fn of(d: &CpuData) -> Option<&[Self]>;
    /// The elements as CPU data.
    fn data(v: Vec<Self>) -> CpuData;
}

impl Elem for f32 {
    fn of(d: &CpuData) -> Option<&[f32]> {
        match d {
            CpuData::F32(v) => Some(v),
            _ => None,
        }
    }
    fn data(v: Vec<f32>) -> CpuData {
        CpuData::F32(v)
    }
}

impl Elem for f64 {
    fn of(d: &CpuData) -> Option<&[f64]> {
        match d {
            CpuData::F64(v) => Some(v),
            _ => None,
        }
    }
    fn data(v: Vec<f64>) -> CpuData {
        CpuData::F64(v)
    }
}

/// What the forward keeps for the backward (besides its output).
struct Kept {
    /// The input products with `b_ih`, `[T, B, G H]` (the GRU's backward reads them).
    gi: Option<Tensor>,
    /// The step products, `[T, B, G H]` (gated cells).
    pre: Option<Tensor>,
    /// An LSTM's cell state after each step, `[T, B, H]`.
    cs: Option<Tensor>,
}

/// `(steps, batch, input, hidden, gate blocks)`.
type Dims = (usize, usize, usize, usize, usize);

/// The forward on slices: `(y, kept)` with `y` every step's `h` (an LSTM's then its last
/// `c`), `[T (+ 1), B, H]`.
#[allow(clippy::too_many_arguments)]
fn forward<T: Elem>(
    cell: Cell,
    x: &[T],
    wih: &[T],
    whh: &[T],
    b_ih: Option<&[T]>,
    b_hh: Option<&[T]>,
    h0: &[T],
    c0: Option<&[T]>,
    (t_len, b, i, h, g): Dims,
) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
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
    let y_steps = if cell == Cell::Lstm { t_len + 1 } else { t_len };
    let mut y = pool::filled(y_steps * step, T::zero());
    let mut pre = match cell {
        Cell::Elman(_) => Vec::new(),
        _ => pool::filled(t_len * step_g, T::zero()),
    };
    let mut cs = match cell {
        Cell::Lstm => pool::filled(t_len * step, T::zero()),
        _ => Vec::new(),
    };
    if step == 0 {
        return (y, gi, pre, cs);
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
    for t in 0..t_len {
        let (done, rest) = y.split_at_mut(t * step);
        let prev: &[T] = if t == 0 { h0 } else { &done[(t - 1) * step..] };
        let h_t = &mut rest[..step];
        match cell {
            Cell::Elman(act) => {
                product(h_t, prev, t);
                act.apply_slice(h_t);
            }
            Cell::Lstm => {
                let a = &mut pre[t * step_g..(t + 1) * step_g];
                product(a, prev, t);
                let c_prev = match t {
                    0 => c0.expect("an LSTM has c0"),
                    _ => &cs[(t - 1) * step..t * step],
                };
                let out = lstm_fwd_cpu(a, c_prev, h);
                h_t.copy_from_slice(&out[..step]);
                cs[t * step..(t + 1) * step].copy_from_slice(&out[step..]);
            }
            Cell::Gru => {
                let gh_t = &mut pre[t * step_g..(t + 1) * step_g];
                product(gh_t, prev, t);
                let gi_t = &gi[t * step_g..(t + 1) * step_g];
                h_t.copy_from_slice(&gru_fwd_cpu(gi_t, gh_t, prev, h));
            }
        }
    }
    if cell == Cell::Lstm {
        y[t_len * step..].copy_from_slice(&cs[(t_len - 1) * step..]);
    }
    (y, gi, pre, cs)
}

/// Backpropagation through time on slices: from the output gradient `gy`, the
/// gradients of the input products `d_in` and of the step products `d_rec` (`[T, B, G
/// H]`; the same for all but the GRU, so empty then), of `h0` and (LSTM) of `c0`.
#[allow(clippy::too_many_arguments)]
fn backward<T: Elem>(
    cell: Cell,
    gy: &[T],
    (y, gi, pre, cs): (&[T], &[T], &[T], &[T]),
    whh: &[T],
    h0: &[T],
    c0: Option<&[T]>,
    (t_len, b, _, h, g): Dims,
) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
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
    for t in (0..t_len).rev() {
        // The gradient reaching h_t: the output's and the one carried from step t + 1.
        for ((d, &gv), &cv) in dh.iter_mut().zip(&gy[t * step..]).zip(&carry) {
            *d = gv + cv;
        }
        let prev = if t == 0 {
            h0
        } else {
            &y[(t - 1) * step..t * step]
        };
        let d_t = &mut d_in[t * step_g..(t + 1) * step_g];
        // d_t W_hh, the hidden gradient carried to step t - 1 (onto its direct part).
        let mut beta = T::zero();
        match cell {
            Cell::Elman(act) => act.mul_deriv_into(d_t, &dh, &y[t * step..(t + 1) * step]),
            Cell::Lstm => {
                let c_prev = match t {
                    0 => c0.expect("an LSTM has c0"),
                    _ => &cs[(t - 1) * step..t * step],
                };
                let mut g2 = dh.clone();
                g2.extend_from_slice(&dc);
                let (da, dcp) = lstm_bwd_cpu(&pre[t * step_g..(t + 1) * step_g], c_prev, &g2, h);
                d_t.copy_from_slice(&da);
                dc = dcp;
            }
            Cell::Gru => {
                let at = t * step_g..(t + 1) * step_g;
                let (gi_t, gh_t) = (&gi[at.clone()], &pre[at]);
                let (dgi, dgh, direct) = gru_bwd_cpu(gi_t, gh_t, prev, &dh, h);
                d_t.copy_from_slice(&dgi);
                d_rec[t * step_g..(t + 1) * step_g].copy_from_slice(&dgh);
                carry.copy_from_slice(&direct);
                beta = T::one();
            }
        }
        let d_t = match cell {
            Cell::Gru => &d_rec[t * step_g..(t + 1) * step_g],
            _ => &d_in[t * step_g..(t + 1) * step_g],
        };
        gemm_slices((b, gh, h), d_t, (gh, 1), whh, (h, 1), beta, &mut carry, h);
    }
    (d_in, d_rec, carry, dc)
}

/// The tensor's elements as `T` (its dtype was checked).
fn els<T: Elem>(d: &CpuData) -> &[T] {
    T::of(d).expect("the recurrence's dtypes are checked")
}

/// One recurrent layer on the CPU as one graph node, for every cell: one product for
/// all steps' inputs; per step one product accumulated into its slot (of the output for
/// Elman, of the gate buffer for the gated cells) and one pass of the cell's math;
/// backward one pass and one product per step, then one product each for the weights'
/// and the input's gradients. No per-step tensors.
pub(super) fn recurrence_cpu(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    c0: Option<&Tensor>,
    (t_len, b, i, h): (usize, usize, usize, usize),
) -> Result<LayerOutput> {
    let all = [Some(w.w_ih), Some(w.w_hh), w.b_ih, w.b_hh, Some(h0), c0];
    if all.iter().flatten().any(|t| t.dtype() != x.dtype()) {
        return shape_err(
            mode.name(),
            format!(
                "the weights, biases and state must all be {:?} like the input",
                x.dtype()
            ),
        );
    }
    let cell = Cell::of(mode);
    let g = mode.gates();
    let dims = (t_len, b, i, h, g);
    let (rows, gh) = (t_len * b, g * h);
    let (w_ih, w_hh) = (w.w_ih.detach(), w.w_hh.detach());
    let (h0d, c0d) = (h0.detach(), c0.map(Tensor::detach));
    let x2 = x.detach().reshape(&[rows, i])?;
    let (y, gi, pre, cs) = {
        let (xd, wi, wh, hd) = (
            x.cpu_data(),
            w_ih.cpu_data(),
            w_hh.cpu_data(),
            h0.cpu_data(),
        );
        let (bi, bh) = (w.b_ih.map(|t| t.cpu_data()), w.b_hh.map(|t| t.cpu_data()));
        let cd = c0.map(|t| t.cpu_data());
        fn run<T: Elem>(
            cell: Cell,
            [x, wi, wh, h0]: [&CpuData; 4],
            [bi, bh, c0]: [Option<&CpuData>; 3],
            dims: Dims,
        ) -> [CpuData; 4] {
            let (bi, bh, c0) = (bi.map(els), bh.map(els), c0.map(els));
            let (y, gi, pre, cs) =
                forward::<T>(cell, els(x), els(wi), els(wh), bi, bh, els(h0), c0, dims);
            [T::data(y), T::data(gi), T::data(pre), T::data(cs)]
        }
        let dense = [&*xd, &*wi, &*wh, &*hd];
        let opt = [bi.as_deref(), bh.as_deref(), cd.as_deref()];
        let [y, gi, pre, cs] = match x.dtype() {
            DType::F64 => run::<f64>(cell, dense, opt, dims),
            _ => run::<f32>(cell, dense, opt, dims),
        };
        let y_steps = if cell == Cell::Lstm { t_len + 1 } else { t_len };
        let flat = |d: CpuData| {
            let n = d.len();
            Tensor::from_cpu(d, vec![n])
        };
        (
            Tensor::from_cpu(y, vec![y_steps, b, h]),
            flat(gi),
            flat(pre),
            flat(cs),
        )
    };
    let kept = Kept {
        gi: (cell == Cell::Gru).then_some(gi),
        pre: cell.fused().is_none().then_some(pre),
        cs: (cell == Cell::Lstm).then_some(cs),
    };
    let (inputs, need) = Need::of(x, w, h0, c0);
    let saved = y.detach();
    let node = crate::autograd::record(y, mode.name(), &inputs, move |gy| {
        let [d_in, d_rec, dh0, dc0] = {
            let (gd, yd, wd, hd) = (
                gy.cpu_data(),
                saved.cpu_data(),
                w_hh.cpu_data(),
                h0d.cpu_data(),
            );
            let cd = c0d.as_ref().map(|t| t.cpu_data());
            let kept_data =
                [&kept.gi, &kept.pre, &kept.cs].map(|t| t.as_ref().map(|t| t.cpu_data()));
            fn run<T: Elem>(
                cell: Cell,
                [gy, y, wh, h0]: [&CpuData; 4],
                [gi, pre, cs, c0]: [Option<&CpuData>; 4],
                dims: Dims,
            ) -> [CpuData; 4] {
                let none: &[T] = &[];
                let [gi, pre, cs] = [gi, pre, cs].map(|d| d.map_or(none, els));
                let kept = (els(y), gi, pre, cs);
                let (d_in, d_rec, dh0, dc0) =
                    backward::<T>(cell, els(gy), kept, els(wh), els(h0), c0.map(els), dims);
                [T::data(d_in), T::data(d_rec), T::data(dh0), T::data(dc0)]
            }
            let [kg, kp, kc] = &kept_data;
            let opt = [kg.as_deref(), kp.as_deref(), kc.as_deref(), cd.as_deref()];
            let dense = [&*gd, &*yd, &*wd, &*hd];
            match gy.dtype() {
                DType::F64 => run::<f64>(cell, dense, opt, dims),
                _ => run::<f32>(cell, dense, opt, dims),
            }
        };
        let auto = MatmulChoice::AUTO;
        let d_in = Tensor::from_cpu(d_in, vec![rows, gh]);
        let d_rec = match cell {
            Cell::Gru => Tensor::from_cpu(d_rec, vec![rows, gh]),
            _ => d_in.clone(),
        };
        let dx = need
            .x
            .then(|| matmul_raw(&d_in, false, &w_ih, false, auto)?.reshape(&[t_len, b, i]))
            .transpose()?;
        let dw_ih = need
            .w_ih
            .then(|| matmul_raw(&d_in, true, &x2, false, auto))
            .transpose()?;
        let dw_hh = if need.w_hh {
            // h_{t-1} for every step: h0, then the outputs of all but the last step.
            let hs = saved.reshape(&[saved.shape()[0] * b, h])?;
            let prev = Tensor::cat(&[&h0d, &hs], 0)?.narrow(0, 0, rows)?;
            Some(matmul_raw(&d_rec, true, &prev, false, auto)?)
        } else {
            None
        };
        let db_ih = need.b_ih.then(|| d_in.sum_dim(&[0], false)).transpose()?;
        let db_hh = need.b_hh.then(|| d_rec.sum_dim(&[0], false)).transpose()?;
        let dh0 = need.h0.then(|| Tensor::from_cpu(dh0, vec![b, h]));
        let dc0 = (cell == Cell::Lstm).then(|| Tensor::from_cpu(dc0, vec![b, h]));
        Ok(need.order([dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0]))
    });
    let h_all = match cell {
        Cell::Lstm => node.narrow(0, 0, t_len)?,
        _ => node.clone(),
    };
    let h_last = node.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    let c_last = (cell == Cell::Lstm)
        .then(|| node.narrow(0, t_len, 1)?.reshape(&[b, h]))
        .transpose()?;
    Ok((h_all, h_last, c_last))
}
