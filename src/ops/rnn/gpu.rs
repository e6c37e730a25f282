//! The GPU recurrence: one driver ([`recurrence_gpu`]) for every cell. Elman, LSTM and
//! GRU differ only in their [`Cell`]: how many gate blocks, whether the step's product
//! adds the input term, what runs after the product (the product's own activation for
//! Elman, a step kernel for the gated cells) and what those kernels bind.

use super::*;
use crate::backend::gpu::GpuBuffer;
use crate::ops::matmul::{Act, Epi, GpuProduct, MatmulChoice};

pub(super) const LSTM_STEP_FWD: &Kernel =
    kernel!(FILE, "lstm_step_fwd", [X0, X1, Y0, Y1], params = StepParams);
pub(super) const LSTM_STEP_BWD: &Kernel = kernel!(
    FILE,
    "lstm_step_bwd",
    [X0, X1, X2, Y0, Y1, Y2],
    params = StepParams
);
pub(super) const GRU_STEP_FWD: &Kernel =
    kernel!(FILE, "gru_step_fwd", [X0, X1, X2, Y0], params = StepParams);
pub(super) const GRU_STEP_BWD: &Kernel = kernel!(
    FILE,
    "gru_step_bwd",
    [X0, X1, X2, XI, Y0, Y1, Y2],
    params = StepParams
);

/// The buffers of one layer's recurrence, as the step kernels bind them.
struct Seq<'a> {
    /// The input products with `b_ih`, `[T, B, G H]` (kept for the backward by the GRU
    /// only).
    gi: Option<&'a Tensor>,
    /// The step products (gated cells), `[T, B, G H]`.
    pre: &'a Tensor,
    h0: &'a Tensor,
    c0: Option<&'a Tensor>,
    /// Every step's `h` (an LSTM's then its last `c`).
    y: &'a Tensor,
    /// An LSTM's cell states before the last step.
    cs: Option<&'a Tensor>,
}

/// The gradient buffers of the backward's step kernels.
struct SeqGrad<'a> {
    /// The output gradient.
    gy: &'a Tensor,
    /// The gradient of `gi` (for an LSTM also of the step products).
    d_in: &'a Tensor,
    /// The gradient of the step products (GRU).
    d_rec: &'a Tensor,
    /// An LSTM's cell gradient carried between steps.
    dc: Option<&'a Tensor>,
    /// The hidden gradient carried between steps.
    carry: &'a Tensor,
}

/// What the GPU driver launches for a cell.
impl Cell {
    /// The step kernels, forward and backward (gated cells).
    fn kernels(self) -> Option<(&'static Kernel, &'static Kernel)> {
        match self {
            Cell::Elman(_) => None,
            Cell::Lstm => Some((LSTM_STEP_FWD, LSTM_STEP_BWD)),
            Cell::Gru => Some((GRU_STEP_FWD, GRU_STEP_BWD)),
        }
    }

    /// The forward step kernel's bindings, in its slots' order.
    fn fwd_bindings<'a>(self, s: &Seq<'a>) -> Vec<&'a GpuBuffer> {
        match self {
            Cell::Lstm => {
                let (c0, cs) = (s.c0.expect("an LSTM's c0"), s.cs.expect("its states"));
                vec![s.pre.gpu_buf(), c0.gpu_buf(), s.y.gpu_buf(), cs.gpu_buf()]
            }
            _ => {
                let gi = s.gi.expect("the GRU's input products");
                vec![gi.gpu_buf(), s.pre.gpu_buf(), s.h0.gpu_buf(), s.y.gpu_buf()]
            }
        }
    }

    /// The backward step kernel's bindings at step `t`.
    fn bwd_bindings<'a>(self, s: &Seq<'a>, d: &SeqGrad<'a>, t: usize) -> Vec<&'a GpuBuffer> {
        match self {
            Cell::Lstm => {
                let c_prev = if t == 0 { s.c0 } else { s.cs }.expect("an LSTM's states");
                let dc = d.dc.expect("an LSTM's cell gradient");
                let (pre, gy, carry) = (s.pre.gpu_buf(), d.gy.gpu_buf(), d.carry.gpu_buf());
                vec![
                    pre,
                    c_prev.gpu_buf(),
                    gy,
                    d.d_in.gpu_buf(),
                    dc.gpu_buf(),
                    carry,
                ]
            }
            _ => {
                let h_prev = if t == 0 { s.h0 } else { s.y };
                vec![
                    s.gi.expect("the GRU's input products").gpu_buf(),
                    s.pre.gpu_buf(),
                    h_prev.gpu_buf(),
                    d.gy.gpu_buf(),
                    d.d_in.gpu_buf(),
                    d.d_rec.gpu_buf(),
                    d.carry.gpu_buf(),
                ]
            }
        }
    }
}

/// The step kernels' parameters (the same for every cell).
fn step_params(t: usize, t_len: usize, b: usize, h: usize, g: usize, bwd: bool) -> StepParams {
    let (step, step_g) = (b * h, b * g * h);
    let last = t + 1 == t_len;
    let (c_at, flags) = if bwd {
        (t_len * step, last as u32)
    } else {
        let c_at = if last { t_len * step } else { t * step };
        (c_at, (t > 0) as u32 | (last as u32) << 1)
    };
    StepParams {
        b: b as u32,
        h: h as u32,
        gates: (t * step_g) as u32,
        prev: (t.saturating_sub(1) * step) as u32,
        cur: (t * step) as u32,
        cell: c_at as u32,
        flags,
        ..Default::default()
    }
}

/// One recurrent layer on the GPU as one graph node over whole-sequence buffers, for
/// every cell.
///
/// Forward: the input products of all steps with `b_ih` (one dispatch); per step one
/// fused product `h_{t-1} W_hh^T (+ gi_t) + b_hh` that reads `h_{t-1}` from its slot of
/// the output, then the cell's step kernel (none for Elman, whose product applies the
/// activation and writes `h_t` itself). Backward, per step in reverse: the cell's step
/// kernel (gate gradients into slot t, the carried gradients updated in place) and one
/// product carrying the hidden gradient back through `W_hh` (Elman: one product with the
/// activation's derivative in its prologue, adding the output gradient); then two
/// products give `W_hh`'s gradient with `b_hh`'s as their operand's row sums, one
/// `W_ih`'s with `b_ih`'s, and one the input's. No per-step copies, scatters or
/// elementwise passes.
pub(super) fn recurrence_gpu(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    c0: Option<&Tensor>,
    (t_len, b, i, h): (usize, usize, usize, usize),
) -> Result<LayerOutput> {
    let Device::Gpu(ctx) = x.device() else {
        unreachable!("a GPU layer")
    };
    let cell = Cell::of(mode);
    let g = mode.gates();
    let auto = MatmulChoice::AUTO;
    let (rows, step, step_g) = (t_len * b, b * h, b * g * h);
    let new = |n: usize, shape: Vec<usize>| {
        gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
    };
    let x2 = x.detach().reshape(&[rows, i])?;
    let (w_ih, w_hh) = (w.w_ih.detach(), w.w_hh.detach());
    let (b_ih, b_hh) = (w.b_ih.map(Tensor::detach), w.b_hh.map(Tensor::detach));
    let (h0d, c0d) = (h0.detach(), c0.map(Tensor::detach));
    // All steps' input products with b_ih: [T B, G H].
    let gi = GpuProduct::plain((rows, g * h, i), (i, 1), (1, i)).run_epi(
        &x2,
        &w_ih,
        auto,
        &Epi {
            bias: b_ih.as_ref(),
            ..Epi::default()
        },
    )?;
    let y_steps = if cell == Cell::Lstm { t_len + 1 } else { t_len };
    let y = new(y_steps * step, vec![y_steps, b, h])?;
    let pre = match cell.fused() {
        Some(_) => y.clone(),
        None => new(t_len * step_g, vec![t_len, b, g * h])?,
    };
    let cs = (cell == Cell::Lstm)
        .then(|| new(t_len.max(2) * step, vec![t_len.max(2), b, h]))
        .transpose()?;
    let seq = Seq {
        gi: Some(&gi),
        pre: &pre,
        h0: &h0d,
        c0: c0d.as_ref(),
        y: &y,
        cs: cs.as_ref(),
    };
    let recurrent = GpuProduct::plain((b, g * h, h), (h, 1), (1, h));
    let cells = crate::ops::groups_1d(step);
    for t in 0..t_len {
        let fused = cell.fused();
        let epi = Epi {
            bias: b_hh.as_ref(),
            act: fused.unwrap_or(Act::Identity),
            addend: cell.product_adds_input().then_some((&gi, t * step_g)),
            out: Some((&pre, t * step_g)),
            // Elman reads h_{t-1} from the buffer it writes.
            a_in_out: fused.is_some() && t > 0,
            a_off: t.saturating_sub(1) * step,
            ..Epi::default()
        };
        recurrent.run_epi(if t == 0 { &h0d } else { &y }, &w_hh, auto, &epi)?;
        if let Some((fwd, _)) = cell.kernels() {
            let params = step_params(t, t_len, b, h, g, false);
            ctx.launch(fwd, &params, &cell.fwd_bindings(&seq), cells);
        }
    }
    let (inputs, need) = Need::of(x, w, h0, c0);
    let saved_y = y.detach();
    let gi_saved = (cell == Cell::Gru).then_some(gi);
    let node = crate::autograd::record(y, mode.name(), &inputs, move |gy| {
        let Device::Gpu(ctx) = gy.device() else {
            unreachable!("a GPU layer")
        };
        let new = |n: usize, shape: Vec<usize>| {
            gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
        };
        let seq = Seq {
            gi: gi_saved.as_ref(),
            pre: &pre,
            h0: &h0d,
            c0: c0d.as_ref(),
            y: &saved_y,
            cs: cs.as_ref(),
        };
        // The gradients of the input products (d_in) and of the step products (d_rec),
        // with the prologue that completes them where they are not explicit (Elman: the
        // gradient reaching h_t, times act'(h_t) as the products load it).
        let (d_in, d_rec, pro, dh0, dc0) = match cell.fused() {
            Some(act) => {
                // e_t = gy_t + (e_{t+1} act'(h_{t+1})) W_hh, last to first.
                let e = new(rows * h, vec![t_len, b, h])?;
                let pro = Some((&saved_y, act));
                let back = GpuProduct::plain((b, h, h), (h, 1), (h, 1));
                for t in (0..t_len).rev() {
                    let last = t + 1 == t_len;
                    let epi = Epi {
                        pro,
                        addend: Some((gy, t * step)),
                        out: Some((&e, t * step)),
                        a_in_out: true,
                        a_off: if last { 0 } else { (t + 1) * step },
                        empty: last,
                        ..Epi::default()
                    };
                    back.run_epi(&e, &w_hh, auto, &epi)?;
                }
                let dh0 = need
                    .h0
                    .then(|| {
                        let epi = Epi {
                            pro,
                            ..Epi::default()
                        };
                        back.run_epi(&e, &w_hh, auto, &epi)
                    })
                    .transpose()?;
                (e.clone(), e, Some(act), dh0, None)
            }
            None => {
                let (_, bwd) = cell.kernels().expect("a gated cell has step kernels");
                let d_in = new(t_len * step_g, vec![t_len, b, g * h])?;
                let d_rec = match cell {
                    Cell::Gru => new(t_len * step_g, vec![t_len, b, g * h])?,
                    _ => d_in.clone(),
                };
                let dc = (cell == Cell::Lstm)
                    .then(|| new(step, vec![b, h]))
                    .transpose()?;
                let carry = new(step, vec![b, h])?;
                let grads = SeqGrad {
                    gy,
                    d_in: &d_in,
                    d_rec: &d_rec,
                    dc: dc.as_ref(),
                    carry: &carry,
                };
                let back = GpuProduct::plain((b, h, g * h), (g * h, 1), (h, 1));
                for t in (0..t_len).rev() {
                    let params = step_params(t, t_len, b, h, g, true);
                    ctx.launch(bwd, &params, &cell.bwd_bindings(&seq, &grads, t), cells);
                    // The GRU's step kernel leaves the direct part of d h_{t-1} in the
                    // carry and the product adds to it (binding carry as both addend and
                    // output is an alias WebGPU refuses); the LSTM's product replaces it.
                    let epi = Epi {
                        out: Some((&carry, 0)),
                        accumulate: cell == Cell::Gru,
                        a_off: t * step_g,
                        ..Epi::default()
                    };
                    back.run_epi(&d_rec, &w_hh, auto, &epi)?;
                }
                (d_in, d_rec, None, Some(carry), dc)
            }
        };
        finish(
            &seq,
            (d_in, d_rec, pro, dh0, dc0),
            need,
            (&x2, &w_ih),
            (t_len, b, i, h, g),
        )
    });
    let h_all = if cell == Cell::Lstm {
        node.narrow(0, 0, t_len)?
    } else {
        node.clone()
    };
    let h_last = node.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    let c_last = (cell == Cell::Lstm)
        .then(|| node.narrow(0, t_len, 1)?.reshape(&[b, h]))
        .transpose()?;
    Ok((h_all, h_last, c_last))
}

/// `(d_in, d_rec, the prologue's activation, d h0, d c0)`, for [`finish`].
type Grads = (Tensor, Tensor, Option<Act>, Option<Tensor>, Option<Tensor>);

/// The weight, bias, input and state gradients of [`recurrence_gpu`]'s node, in its
/// inputs' order `[x, W_ih, W_hh, (b_ih), (b_hh), h0, (c0)]`, from the gradients of the
/// input products `d_in` and of the step products `d_rec` (`[T, B, G H]`, through the
/// activation's derivative `pro` when given) and those of `h0` and `c0`.
fn finish(
    seq: &Seq<'_>,
    (d_in, d_rec, pro, dh0, dc0): Grads,
    need: Need,
    (x2, w_ih): (&Tensor, &Tensor),
    (t_len, b, i, h, g): (usize, usize, usize, usize, usize),
) -> Result<Vec<Option<Tensor>>> {
    let Device::Gpu(ctx) = d_in.device() else {
        unreachable!("a GPU layer")
    };
    let auto = MatmulChoice::AUTO;
    let (rows, gh) = (t_len * b, g * h);
    let pro = pro.map(|act| (seq.y, act));
    let zeros = |n: usize| gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, vec![n], DType::F32));
    // A bias gradient is its weight product's row sums; without that product (or with
    // nothing to multiply) it sums the explicit gradient.
    let explicit = |d: &Tensor| -> Result<Tensor> {
        let d = match pro {
            Some((ys, act)) => act.backward_op(ys, d)?,
            None => d.clone(),
        };
        d.reshape(&[rows, gh])?.sum_dim(&[0], false)
    };
    let db_hh = if need.b_hh && !(need.w_hh && h > 0) {
        Some(explicit(&d_rec)?)
    } else {
        need.b_hh.then(|| zeros(gh)).transpose()?
    };
    let dw_hh = need
        .w_hh
        .then(|| {
            let dims = (t_len, b, gh, h);
            recurrent_weight_grad(&d_rec, pro, seq.y, seq.h0, db_hh.as_ref(), dims)
        })
        .transpose()?;
    let db_ih = if need.b_ih && !(need.w_ih && i > 0) {
        Some(explicit(&d_in)?)
    } else {
        need.b_ih.then(|| zeros(gh)).transpose()?
    };
    let dw_ih = need
        .w_ih
        .then(|| {
            let epi = Epi {
                pro,
                rowsum: db_ih.as_ref().filter(|_| i > 0),
                ..Epi::default()
            };
            GpuProduct::plain((gh, i, rows), (1, gh), (i, 1)).run_epi(&d_in, x2, auto, &epi)
        })
        .transpose()?;
    let dx = need
        .x
        .then(|| {
            let epi = Epi {
                pro,
                ..Epi::default()
            };
            GpuProduct::plain((rows, i, gh), (gh, 1), (i, 1))
                .run_epi(&d_in, w_ih, auto, &epi)?
                .reshape(&[t_len, b, i])
        })
        .transpose()?;
    Ok(need.order([dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0]))
}

/// `W_hh`'s gradient `[G, H]` on the GPU: the sum over steps of `d_t^T h_{t-1}` for the
/// per-step gradients `d` (`[T, B, G]`, through the prologue `pro` when given), the saved
/// outputs `ys` (`h_t` in the first T slots of `[.., B, H]`) and `h0`, as two products
/// (steps 1.. against `h_0 .. h_{T-2}`, then step 0 against `h0`, adding) whose operand's
/// row sums are the bias gradient, written into `db` when given.
pub(super) fn recurrent_weight_grad(
    d: &Tensor,
    pro: Option<(&Tensor, Act)>,
    ys: &Tensor,
    h0: &Tensor,
    db: Option<&Tensor>,
    (t_len, b, g, h): (usize, usize, usize, usize),
) -> Result<Tensor> {
    let Device::Gpu(ctx) = d.device() else {
        unreachable!("a GPU layer")
    };
    let dw = Tensor::from_gpu(gpu_alloc(ctx, g * h)?, vec![g, h], DType::F32);
    let rowsum = db.filter(|_| h > 0);
    let later = (t_len - 1) * b;
    if later > 0 {
        GpuProduct::plain((g, h, later), (1, g), (h, 1)).run_epi(
            d,
            ys,
            MatmulChoice::AUTO,
            &Epi {
                pro,
                rowsum,
                out: Some((&dw, 0)),
                a_off: b * g,
                ..Epi::default()
            },
        )?;
    }
    GpuProduct::plain((g, h, b), (1, g), (h, 1)).run_epi(
        d,
        h0,
        MatmulChoice::AUTO,
        &Epi {
            pro,
            rowsum,
            out: Some((&dw, 0)),
            accumulate: later > 0,
            ..Epi::default()
        },
    )?;
    Ok(dw)
}
