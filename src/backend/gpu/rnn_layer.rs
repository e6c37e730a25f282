//! The GPU recurrence: one driver ([`forward`], [`backward`]) for every cell, over
//! whole-sequence buffers. Elman, LSTM and GRU differ only in their [`Cell`]: how many
//! gate blocks, whether the step's product adds the input term, what runs after the
//! product (the product's own activation for Elman, a step kernel for the gated cells)
//! and what those kernels bind.
//!
//! Forward: the input products of all steps with `b_ih` (one dispatch); per step one
//! fused product `h_{t-1} W_hh^T (+ gi_t) + b_hh` that reads `h_{t-1}` from its slot of
//! the output, then the cell's step kernel (none for Elman, whose product applies the
//! activation and writes `h_t` itself). Backward, per step in reverse: the cell's step
//! kernel (gate gradients into slot t, the carried gradients updated in place) and one
//! product carrying the hidden gradient back through `W_hh` (Elman: one product with the
//! activation's derivative in its prologue, adding the output gradient); then two
//! products give `W_hh`'s gradient with `b_hh`'s as their operand's row sums, one
//! `W_ih`'s with `b_ih`'s, and one the input's. No per-step copies, scatters or
//! elementwise passes.
//!
//! The reverse direction of a bidirectional layer ([`Dims::reverse`]) runs the same
//! dispatches with other offsets: step `s` computes time step [`Dims::time`]`(s)` from
//! the state of the time step before it in that order, so `h_t` still lands in slot `t`
//! and nothing is flipped. The two directions of a layer are two calls, one after the
//! other (their products could share dispatches as batched products over both
//! directions' weights, which this driver does not do yet).

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d};
use super::rnn::{StepParams, GRU_STEP_BWD, GRU_STEP_FWD, LSTM_STEP_BWD, LSTM_STEP_FWD, OP};
use super::{GpuBuffer, GpuContext, Kernel};
use crate::backend::matmul::{Act, Epi, MatmulChoice, Product};
use crate::backend::reduce::ReducePlan;
use crate::backend::rnn::{Cell, Dims, Grads, Layer, Need, Saved};
use crate::backend::{Elementwise, Reduce, Storage};
use crate::error::{Error, Result};

/// A GPU storage and its length in elements.
#[derive(Clone)]
struct Buf {
    s: Storage,
    n: usize,
}

impl Buf {
    /// A new (unwritten) buffer of `n` elements.
    fn new(ctx: &Arc<GpuContext>, n: usize) -> Result<Buf> {
        Ok(Buf {
            s: Storage::new_gpu(gpu_alloc(ctx, n)?),
            n,
        })
    }

    /// A storage the caller holds, of `n` elements.
    fn of(s: &Storage, n: usize) -> Buf {
        Buf { s: s.clone(), n }
    }

    /// The buffer, as the step kernels bind it.
    fn gpu(&self) -> Result<&GpuBuffer> {
        self.s.gpu(OP)
    }
}

/// What a product fuses, over the driver's buffers (the launcher's [`Epi`], whose
/// parts the driver uses).
#[derive(Clone, Copy, Default)]
struct Fused<'a> {
    bias: Option<&'a Buf>,
    act: Act,
    addend: Option<(&'a Buf, usize)>,
    pro: Option<(&'a Buf, Act)>,
    rowsum: Option<&'a Buf>,
    out: Option<(&'a Buf, usize)>,
    a_off: usize,
    b_off: usize,
    a_in_out: bool,
    accumulate: bool,
    empty: bool,
}

/// Runs the product `p` of `a` and `b` with the fused parts `f` (see [`Epi`]): the
/// result (`f.out`'s buffer when given).
fn product(ctx: &Arc<GpuContext>, p: &Product, a: &Buf, b: &Buf, f: &Fused<'_>) -> Result<Buf> {
    let epi = Epi {
        bias: f.bias.map(|x| &x.s),
        act: f.act,
        addend: f.addend.map(|(x, off)| (&x.s, off)),
        pro: f.pro.map(|(x, act)| (&x.s, act)),
        rowsum: f.rowsum.map(|x| &x.s),
        out: f.out.map(|(x, off)| (&x.s, off)),
        a_off: f.a_off,
        b_off: f.b_off,
        a_in_out: f.a_in_out,
        accumulate: f.accumulate,
        empty: f.empty,
        ..Epi::default()
    };
    let y = p.run_epi(ctx, &a.s, &b.s, MatmulChoice::AUTO, &epi)?;
    Ok(match f.out {
        Some((o, _)) => o.clone(),
        None => Buf { s: y, n: p.m * p.n },
    })
}

/// A buffer the driver expected (a wgrad bug: the op checks the layer's inputs).
fn missing(what: &str) -> Error {
    Error::Gpu(format!("{OP}: {what} missing (a wgrad bug)"))
}

/// The buffers of one layer's recurrence, as the step kernels bind them.
struct Seq<'a> {
    /// The input products with `b_ih`, `[T, B, G H]` (kept for the backward by the GRU
    /// only).
    gi: Option<&'a Buf>,
    /// The step products (gated cells), `[T, B, G H]`.
    pre: &'a Buf,
    h0: &'a Buf,
    c0: Option<&'a Buf>,
    /// Every step's `h` (an LSTM's then its last `c`).
    y: &'a Buf,
    /// An LSTM's cell states before the last step.
    cs: Option<&'a Buf>,
}

/// The gradient buffers of the backward's step kernels.
struct SeqGrad<'a> {
    /// The output gradient.
    gy: &'a Buf,
    /// The gradient of `gi` (for an LSTM also of the step products).
    d_in: &'a Buf,
    /// The gradient of the step products (GRU).
    d_rec: &'a Buf,
    /// An LSTM's cell gradient carried between steps.
    dc: Option<&'a Buf>,
    /// The hidden gradient carried between steps.
    carry: &'a Buf,
}

/// The step kernels of a cell, forward and backward (gated cells).
fn step_kernels(cell: Cell) -> Option<(&'static Kernel, &'static Kernel)> {
    match cell {
        Cell::Elman(_) => None,
        Cell::Lstm => Some((LSTM_STEP_FWD, LSTM_STEP_BWD)),
        Cell::Gru => Some((GRU_STEP_FWD, GRU_STEP_BWD)),
    }
}

/// The forward step kernel's bindings, in its slots' order.
fn fwd_bindings<'a>(cell: Cell, s: &Seq<'a>) -> Result<Vec<&'a GpuBuffer>> {
    Ok(match cell {
        Cell::Lstm => {
            let c0 = s.c0.ok_or_else(|| missing("an LSTM's c0"))?;
            let cs = s.cs.ok_or_else(|| missing("an LSTM's states"))?;
            vec![s.pre.gpu()?, c0.gpu()?, s.y.gpu()?, cs.gpu()?]
        }
        _ => {
            let gi = s.gi.ok_or_else(|| missing("the GRU's input products"))?;
            vec![gi.gpu()?, s.pre.gpu()?, s.h0.gpu()?, s.y.gpu()?]
        }
    })
}

/// The backward step kernel's bindings at step `step` (the recurrence's order: the
/// first step reads the initial states).
fn bwd_bindings<'a>(
    cell: Cell,
    s: &Seq<'a>,
    d: &SeqGrad<'a>,
    step: usize,
) -> Result<Vec<&'a GpuBuffer>> {
    Ok(match cell {
        Cell::Lstm => {
            let c_prev = if step == 0 { s.c0 } else { s.cs };
            let c_prev = c_prev.ok_or_else(|| missing("an LSTM's states"))?;
            let dc = d.dc.ok_or_else(|| missing("an LSTM's cell gradient"))?;
            vec![
                s.pre.gpu()?,
                c_prev.gpu()?,
                d.gy.gpu()?,
                d.d_in.gpu()?,
                dc.gpu()?,
                d.carry.gpu()?,
            ]
        }
        _ => {
            let h_prev = if step == 0 { s.h0 } else { s.y };
            let gi = s.gi.ok_or_else(|| missing("the GRU's input products"))?;
            vec![
                gi.gpu()?,
                s.pre.gpu()?,
                h_prev.gpu()?,
                d.gy.gpu()?,
                d.d_in.gpu()?,
                d.d_rec.gpu()?,
                d.carry.gpu()?,
            ]
        }
    })
}

/// The step kernels' parameters (the same for every cell) for the recurrence's `s`-th
/// step, which computes time step [`Dims::time`]`(s)` from the state of the step before.
fn step_params(s: usize, dims: Dims, bwd: bool) -> StepParams {
    let Dims { t_len, b, h, g, .. } = dims;
    let (step, step_g) = (b * h, b * g * h);
    let t = dims.time(s);
    let prev = if s == 0 { 0 } else { dims.time(s - 1) };
    let last = s + 1 == t_len;
    let (c_at, flags) = if bwd {
        (t_len * step, last as u32)
    } else {
        let c_at = if last { t_len * step } else { t * step };
        (c_at, (s > 0) as u32 | (last as u32) << 1)
    };
    StepParams {
        b: b as u32,
        h: h as u32,
        gates: (t * step_g) as u32,
        prev: (prev * step) as u32,
        cur: (t * step) as u32,
        cell: c_at as u32,
        flags,
        ..Default::default()
    }
}

/// The layer's inputs as buffers of their lengths.
struct Inputs {
    x: Buf,
    w_ih: Buf,
    w_hh: Buf,
    b_ih: Option<Buf>,
    b_hh: Option<Buf>,
    h0: Buf,
    c0: Option<Buf>,
}

impl Inputs {
    fn of(
        l: &Layer<'_>,
        Dims {
            t_len, b, i, h, g, ..
        }: Dims,
    ) -> Inputs {
        let gh = g * h;
        Inputs {
            x: Buf::of(l.x, t_len * b * i),
            w_ih: Buf::of(l.w_ih, gh * i),
            w_hh: Buf::of(l.w_hh, gh * h),
            b_ih: l.b_ih.map(|s| Buf::of(s, gh)),
            b_hh: l.b_hh.map(|s| Buf::of(s, gh)),
            h0: Buf::of(l.h0, b * h),
            c0: l.c0.map(|s| Buf::of(s, b * h)),
        }
    }
}

/// One recurrent layer's forward on the GPU (see the module's description).
pub(super) fn forward(
    ctx: &Arc<GpuContext>,
    cell: Cell,
    l: &Layer<'_>,
    dims: Dims,
) -> Result<(Storage, Saved)> {
    let Dims {
        t_len, b, i, h, g, ..
    } = dims;
    let (rows, step, step_g) = (t_len * b, b * h, b * g * h);
    let inp = Inputs::of(l, dims);
    // All steps' input products with b_ih: [T B, G H].
    let gi = product(
        ctx,
        &Product::plain((rows, g * h, i), (i, 1), (1, i)),
        &inp.x,
        &inp.w_ih,
        &Fused {
            bias: inp.b_ih.as_ref(),
            ..Fused::default()
        },
    )?;
    let y = Buf::new(ctx, cell.y_steps(t_len) * step)?;
    let pre = match cell.fused() {
        Some(_) => y.clone(),
        None => Buf::new(ctx, t_len * step_g)?,
    };
    let cs = (cell == Cell::Lstm)
        .then(|| Buf::new(ctx, t_len.max(2) * step))
        .transpose()?;
    let seq = Seq {
        gi: Some(&gi),
        pre: &pre,
        h0: &inp.h0,
        c0: inp.c0.as_ref(),
        y: &y,
        cs: cs.as_ref(),
    };
    let recurrent = Product::plain((b, g * h, h), (h, 1), (1, h));
    let cells = groups_1d(step);
    for s in 0..t_len {
        // Step s computes time t from the state of the step before (h0 at the first).
        let t = dims.time(s);
        let fused = cell.fused();
        let f = Fused {
            bias: inp.b_hh.as_ref(),
            act: fused.unwrap_or(Act::Identity),
            addend: cell.product_adds_input().then_some((&gi, t * step_g)),
            out: Some((&pre, t * step_g)),
            // Elman reads the previous state from the buffer it writes.
            a_in_out: fused.is_some() && s > 0,
            a_off: if s == 0 { 0 } else { dims.time(s - 1) * step },
            ..Fused::default()
        };
        product(
            ctx,
            &recurrent,
            if s == 0 { &inp.h0 } else { &y },
            &inp.w_hh,
            &f,
        )?;
        if let Some((fwd, _)) = step_kernels(cell) {
            let params = step_params(s, dims, false);
            ctx.launch(fwd, &params, &fwd_bindings(cell, &seq)?, cells);
        }
    }
    let saved = Saved {
        gi: (cell == Cell::Gru).then_some(gi.s),
        pre: cell.fused().is_none().then_some(pre.s),
        cs: cs.map(|c| c.s),
    };
    Ok((y.s, saved))
}

/// `(d_in, d_rec, the prologue's activation, d h0, d c0)`, for [`finish`].
type Walked = (Buf, Buf, Option<Act>, Option<Buf>, Option<Buf>);

/// One recurrent layer's backward on the GPU from its output `y`, what its forward
/// saved and the output gradient `gy` (see the module's description).
pub(super) fn backward(
    ctx: &Arc<GpuContext>,
    cell: Cell,
    l: &Layer<'_>,
    (y, saved, gy): (&Storage, &Saved, &Storage),
    need: Need,
    dims: Dims,
) -> Result<Grads> {
    let Dims { t_len, b, h, g, .. } = dims;
    let (rows, step, step_g) = (t_len * b, b * h, b * g * h);
    let inp = Inputs::of(l, dims);
    let y = Buf::of(y, cell.y_steps(t_len) * step);
    let gy = Buf::of(gy, cell.y_steps(t_len) * step);
    let gi = saved.gi.as_ref().map(|s| Buf::of(s, t_len * step_g));
    let pre = match &saved.pre {
        Some(s) => Buf::of(s, t_len * step_g),
        None => y.clone(),
    };
    let cs = saved.cs.as_ref().map(|s| Buf::of(s, t_len.max(2) * step));
    let seq = Seq {
        gi: gi.as_ref(),
        pre: &pre,
        h0: &inp.h0,
        c0: inp.c0.as_ref(),
        y: &y,
        cs: cs.as_ref(),
    };
    let cells = groups_1d(step);
    // The gradients of the input products (d_in) and of the step products (d_rec),
    // with the prologue that completes them where they are not explicit (Elman: the
    // gradient reaching h_t, times act'(h_t) as the products load it).
    let walked: Walked = match cell.fused() {
        Some(act) => {
            // e_t = gy_t + (e_n act'(h_n)) W_hh with n the time step computed after t
            // (t + 1, or t - 1 in reverse), last step to first.
            let e = Buf::new(ctx, rows * h)?;
            let pro = Some((&y, act));
            let back = Product::plain((b, h, h), (h, 1), (h, 1));
            for s in (0..t_len).rev() {
                let (t, last) = (dims.time(s), s + 1 == t_len);
                let f = Fused {
                    pro,
                    addend: Some((&gy, t * step)),
                    out: Some((&e, t * step)),
                    a_in_out: true,
                    a_off: if last { 0 } else { dims.time(s + 1) * step },
                    empty: last,
                    ..Fused::default()
                };
                product(ctx, &back, &e, &inp.w_hh, &f)?;
            }
            let dh0 = need
                .h0
                .then(|| {
                    let f = Fused {
                        pro,
                        a_off: dims.time(0) * step,
                        ..Fused::default()
                    };
                    product(ctx, &back, &e, &inp.w_hh, &f)
                })
                .transpose()?;
            (e.clone(), e, Some(act), dh0, None)
        }
        None => {
            let (_, bwd) = step_kernels(cell).ok_or_else(|| missing("a step kernel"))?;
            let d_in = Buf::new(ctx, t_len * step_g)?;
            let d_rec = match cell {
                Cell::Gru => Buf::new(ctx, t_len * step_g)?,
                _ => d_in.clone(),
            };
            let dc = (cell == Cell::Lstm)
                .then(|| Buf::new(ctx, step))
                .transpose()?;
            let carry = Buf::new(ctx, step)?;
            let grads = SeqGrad {
                gy: &gy,
                d_in: &d_in,
                d_rec: &d_rec,
                dc: dc.as_ref(),
                carry: &carry,
            };
            let back = Product::plain((b, h, g * h), (g * h, 1), (h, 1));
            for s in (0..t_len).rev() {
                let t = dims.time(s);
                let params = step_params(s, dims, true);
                ctx.launch(bwd, &params, &bwd_bindings(cell, &seq, &grads, s)?, cells);
                // The GRU's step kernel leaves the direct part of d h_{t-1} in the
                // carry and the product adds to it (binding carry as both addend and
                // output is an alias WebGPU refuses); the LSTM's product replaces it.
                let f = Fused {
                    out: Some((&carry, 0)),
                    accumulate: cell == Cell::Gru,
                    a_off: t * step_g,
                    ..Fused::default()
                };
                product(ctx, &back, &d_rec, &inp.w_hh, &f)?;
            }
            (d_in, d_rec, None, Some(carry), dc)
        }
    };
    finish(ctx, &seq, walked, need, (&inp.x, &inp.w_ih), dims)
}

/// The weight, bias, input and state gradients of the layer, from the gradients of the
/// input products `d_in` and of the step products `d_rec` (`[T, B, G H]`, through the
/// activation's derivative `pro` when given) and those of `h0` and `c0`.
fn finish(
    ctx: &Arc<GpuContext>,
    seq: &Seq<'_>,
    (d_in, d_rec, pro, dh0, dc0): Walked,
    need: Need,
    (x, w_ih): (&Buf, &Buf),
    dims: Dims,
) -> Result<Grads> {
    let Dims {
        t_len, b, i, h, g, ..
    } = dims;
    let (rows, gh) = (t_len * b, g * h);
    let pro = pro.map(|act| (seq.y, act));
    let zeros = |n: usize| Buf::new(ctx, n);
    // A bias gradient is its weight product's row sums; without that product (or with
    // nothing to multiply) it sums the explicit gradient.
    let explicit = |d: &Buf| -> Result<Buf> {
        let d = match pro.and_then(|(ys, act)| Some((ys, act.op()?))) {
            Some((ys, op)) => ctx.unary_backward(op, &ys.s, &d.s, ys.n)?,
            None => d.s.clone(),
        };
        let plan = ReducePlan::new("sum", &[rows, gh], &[0], false)?;
        Ok(Buf {
            s: ctx.sum(&d, &plan, 1.0)?,
            n: gh,
        })
    };
    let db_hh = if need.b_hh && !(need.w_hh && h > 0) {
        Some(explicit(&d_rec)?)
    } else {
        need.b_hh.then(|| zeros(gh)).transpose()?
    };
    let dw_hh = need
        .w_hh
        .then(|| {
            let sizes = (t_len, b, gh, h, dims.reverse);
            recurrent_weight_grad(ctx, &d_rec, pro, seq.y, seq.h0, db_hh.as_ref(), sizes)
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
            let f = Fused {
                pro,
                rowsum: db_ih.as_ref().filter(|_| i > 0),
                ..Fused::default()
            };
            let p = Product::plain((gh, i, rows), (1, gh), (i, 1));
            product(ctx, &p, &d_in, x, &f)
        })
        .transpose()?;
    let dx = need
        .x
        .then(|| {
            let f = Fused {
                pro,
                ..Fused::default()
            };
            let p = Product::plain((rows, i, gh), (gh, 1), (i, 1));
            product(ctx, &p, &d_in, w_ih, &f)
        })
        .transpose()?;
    Ok([dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0].map(|b| b.map(|b| b.s)))
}

/// `W_hh`'s gradient `[G, H]`: the sum over steps of `d_t^T h_{t-1}` for the per-step
/// gradients `d` (`[T, B, G]`, through the prologue `pro` when given), the saved outputs
/// `ys` (`h_t` in the first T slots of `[.., B, H]`) and `h0`, as two products (steps 1..
/// against `h_0 .. h_{T-2}`, then step 0 against `h0`, adding; in `reverse`, steps ..T-2
/// against `h_1 .. h_{T-1}`, then step T-1 against `h0`) whose operand's row sums are the
/// bias gradient, written into `db` when given.
fn recurrent_weight_grad(
    ctx: &Arc<GpuContext>,
    d: &Buf,
    pro: Option<(&Buf, Act)>,
    ys: &Buf,
    h0: &Buf,
    db: Option<&Buf>,
    (t_len, b, g, h, reverse): (usize, usize, usize, usize, bool),
) -> Result<Buf> {
    let dw = Buf::new(ctx, g * h)?;
    let rowsum = db.filter(|_| h > 0);
    let later = (t_len - 1) * b;
    if later > 0 {
        let f = Fused {
            pro,
            rowsum,
            out: Some((&dw, 0)),
            a_off: if reverse { 0 } else { b * g },
            b_off: if reverse { b * h } else { 0 },
            ..Fused::default()
        };
        product(
            ctx,
            &Product::plain((g, h, later), (1, g), (h, 1)),
            d,
            ys,
            &f,
        )?;
    }
    let f = Fused {
        pro,
        rowsum,
        out: Some((&dw, 0)),
        accumulate: later > 0,
        a_off: if reverse { later * g } else { 0 },
        ..Fused::default()
    };
    product(ctx, &Product::plain((g, h, b), (1, g), (h, 1)), d, h0, &f)?;
    Ok(dw)
}
