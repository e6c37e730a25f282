//! The GPU recurrences: Elman (a fused product per step), LSTM and GRU (a product and
//! a step kernel per step), forward and backward through time.

use super::*;

pub(super) const LSTM_STEP_FWD: &Kernel = kernel!(FILE, "lstm_step_fwd", [X0, X1, Y0, Y1]);
pub(super) const LSTM_STEP_BWD: &Kernel = kernel!(FILE, "lstm_step_bwd", [X0, X1, X2, Y0, Y1, Y2]);
pub(super) const GRU_STEP_FWD: &Kernel = kernel!(FILE, "gru_step_fwd", [X0, X1, X2, Y0]);
pub(super) const GRU_STEP_BWD: &Kernel =
    kernel!(FILE, "gru_step_bwd", [X0, X1, X2, XI, Y0, Y1, Y2]);

/// An Elman layer on the GPU as one graph node of fused products: forward, the input
/// product with `b_ih` for all steps (one dispatch), then one dispatch per step,
/// `h_t = act(h_{t-1} W_hh^T + gi_t + b_hh)`, that reads `h_{t-1}` from and writes `h_t`
/// into its slot of the output. Backward, one dispatch per step walks back `e_t =
/// gy_t + (e_{t+1} act'(h_{t+1})) W_hh` (the gradient reaching `h_t`, into its slot of one
/// `[T, B, H]` buffer), the derivative applied as the product loads its operand; then
/// two products give `W_hh`'s gradient with `b_hh`'s as their operand's row sums, one gives
/// `W_ih`'s with `b_ih`'s, and one each the input's and `h0`'s where they are needed.
/// No per-step copies, scatters or elementwise passes.
pub(super) fn elman_gpu(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    (t_len, b, i, h): (usize, usize, usize, usize),
) -> Result<LayerOutput> {
    use crate::ops::matmul::{Act, Epi, GpuProduct, MatmulChoice};
    let Device::Gpu(ctx) = x.device() else {
        unreachable!("a GPU layer")
    };
    let act = if mode == RnnMode::Relu {
        Act::Relu
    } else {
        Act::Tanh
    };
    let auto = MatmulChoice::AUTO;
    let rows = t_len * b;
    let step = b * h;
    let x2 = x.detach().reshape(&[rows, i])?;
    let (w_ih, w_hh) = (w.w_ih.detach(), w.w_hh.detach());
    let (b_ih, b_hh) = (w.b_ih.map(Tensor::detach), w.b_hh.map(Tensor::detach));
    let h0d = h0.detach();
    // All steps' input products with b_ih: [T B, H].
    let gi = GpuProduct::plain((rows, h, i), (i, 1), (1, i)).run_epi(
        &x2,
        &w_ih,
        auto,
        &Epi {
            bias: b_ih.as_ref(),
            ..Epi::default()
        },
    )?;
    let hs = Tensor::from_gpu(gpu_alloc(ctx, rows * h)?, vec![t_len, b, h], x.dtype());
    let recurrent = GpuProduct::plain((b, h, h), (h, 1), (1, h));
    for t in 0..t_len {
        let epi = Epi {
            bias: b_hh.as_ref(),
            act,
            addend: Some((&gi, t * step)),
            out: Some((&hs, t * step)),
            a_in_out: t > 0,
            a_off: t.saturating_sub(1) * step,
            ..Epi::default()
        };
        let a = if t == 0 { &h0d } else { &hs };
        recurrent.run_epi(a, &w_hh, auto, &epi)?;
    }
    let mut inputs: Vec<&Tensor> = vec![x, w.w_ih, w.w_hh];
    inputs.extend(w.b_ih);
    inputs.extend(w.b_hh);
    inputs.push(h0);
    let need: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let (has_bih, has_bhh) = (w.b_ih.is_some(), w.b_hh.is_some());
    let saved = hs.detach();
    let y = crate::autograd::record(hs, mode.name(), &inputs, move |gy| {
        let mut need = need.iter().copied();
        let need_x = need.next().unwrap_or(false);
        let need_wih = need.next().unwrap_or(false);
        let need_whh = need.next().unwrap_or(false);
        let need_bih = has_bih && need.next().unwrap_or(false);
        let need_bhh = has_bhh && need.next().unwrap_or(false);
        let need_h0 = need.next().unwrap_or(false);
        let Device::Gpu(ctx) = gy.device() else {
            unreachable!("a GPU layer")
        };
        let new = |n: usize, shape: Vec<usize>| {
            gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
        };
        let pro = Some((&saved, act));
        // e_t for every step, last to first.
        let e = new(rows * h, vec![t_len, b, h])?;
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
        // delta = e * act'(h), as the products below load it; a bias gradient without
        // its weight's (or with nothing to multiply) sums an explicit delta.
        let delta = || act.backward_op(&saved, &e)?.reshape(&[rows, h]);
        let db_hh = if need_bhh && !(need_whh && h > 0) {
            Some(delta()?.sum_dim(&[0], false)?)
        } else {
            need_bhh.then(|| new(h, vec![h])).transpose()?
        };
        let dw_hh = if need_whh {
            let dims = (t_len, b, h, h);
            Some(recurrent_weight_grad(
                &e,
                pro,
                &saved,
                &h0d,
                db_hh.as_ref(),
                dims,
            )?)
        } else {
            None
        };
        let db_ih = if need_bih && !(need_wih && i > 0) {
            Some(delta()?.sum_dim(&[0], false)?)
        } else {
            need_bih.then(|| new(h, vec![h])).transpose()?
        };
        let dw_ih = if need_wih {
            Some(GpuProduct::plain((h, i, rows), (1, h), (i, 1)).run_epi(
                &e,
                &x2,
                auto,
                &Epi {
                    pro,
                    rowsum: db_ih.as_ref().filter(|_| i > 0),
                    ..Epi::default()
                },
            )?)
        } else {
            None
        };
        let dx = if need_x {
            let d = GpuProduct::plain((rows, i, h), (h, 1), (i, 1)).run_epi(
                &e,
                &w_ih,
                auto,
                &Epi {
                    pro,
                    ..Epi::default()
                },
            )?;
            Some(d.reshape(&[t_len, b, i])?)
        } else {
            None
        };
        let dh0 = if need_h0 {
            Some(back.run_epi(
                &e,
                &w_hh,
                auto,
                &Epi {
                    pro,
                    ..Epi::default()
                },
            )?)
        } else {
            None
        };
        let mut grads = vec![dx, dw_ih, dw_hh];
        if has_bih {
            grads.push(db_ih);
        }
        if has_bhh {
            grads.push(db_hh);
        }
        grads.push(dh0);
        Ok(grads)
    });
    let h_last = y.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    Ok((y, h_last, None))
}

/// `W_hh`'s gradient `[G, H]` on the GPU: the sum over steps of `d_t^T h_{t-1}` for the
/// per-step gradients `d` (`[T, B, G]`, through the prologue `pro` when given), the saved
/// outputs `ys` (`h_t` in the first T slots of `[.., B, H]`) and `h0`, as two products
/// (steps 1.. against `h_0 .. h_{T-2}`, then step 0 against `h0`, adding) whose operand's
/// row sums are the bias gradient, written into `db` when given.
pub(super) fn recurrent_weight_grad(
    d: &Tensor,
    pro: Option<(&Tensor, crate::ops::matmul::Act)>,
    ys: &Tensor,
    h0: &Tensor,
    db: Option<&Tensor>,
    (t_len, b, g, h): (usize, usize, usize, usize),
) -> Result<Tensor> {
    use crate::ops::matmul::{Epi, GpuProduct, MatmulChoice};
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

/// The gradients of `W_hh` and (when the layer has one) `b_hh` that `need` (the node's
/// inputs' flags: the gate input, `W_hh`, `b_hh`...) asks for, from the per-step gate
/// gradients `d` `[T, B, G]`.
pub(super) fn hidden_weight_grads(
    d: &Tensor,
    need: &[bool],
    has_bias: bool,
    ys: &Tensor,
    h0: &Tensor,
    (t_len, b, g, h): (usize, usize, usize, usize),
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let Device::Gpu(ctx) = d.device() else {
        unreachable!("a GPU layer")
    };
    let need_w = need.get(1).copied().unwrap_or(false);
    let need_b = has_bias && need.get(2).copied().unwrap_or(false);
    let db = if need_b && !(need_w && h > 0) {
        Some(d.reshape(&[t_len * b, g])?.sum_dim(&[0], false)?)
    } else {
        need_b
            .then(|| gpu_alloc(ctx, g).map(|buf| Tensor::from_gpu(buf, vec![g], DType::F32)))
            .transpose()?
    };
    let dw = if need_w {
        let dims = (t_len, b, g, h);
        Some(recurrent_weight_grad(d, None, ys, h0, db.as_ref(), dims)?)
    } else {
        None
    };
    Ok((dw, db))
}

/// An LSTM's recurrence on the GPU as one graph node over whole-sequence buffers: per
/// step forward one fused product writes the gate pre-activations `h_{t-1} W_hh^T +
/// gi_t + b_hh` into slot t of `[T, B, 4H]` (reading `h_{t-1}` from its slot of the
/// output) and one kernel turns them into `h_t` and `c_t` in their slots; per step
/// backward one kernel gives the gate gradients (slot t) and the cell gradient carried
/// back, and one product the hidden gradient carried back (`h0`'s after the first
/// step). Two products give `W_hh`'s gradient with `b_hh`'s as their row sums. The
/// output is `[T + 1, B, H]`: every step's `h`, then the last `c`.
pub(super) fn lstm_gpu(
    gi_all: &Tensor,
    w_hh: &Tensor,
    b_hh: Option<&Tensor>,
    h0: &Tensor,
    c0: &Tensor,
    (t_len, b, h): (usize, usize, usize),
) -> Result<LayerOutput> {
    use crate::ops::matmul::{Epi, GpuProduct, MatmulChoice};
    let Device::Gpu(ctx) = gi_all.device() else {
        unreachable!("a GPU layer")
    };
    let auto = MatmulChoice::AUTO;
    let (g4, step) = (4 * h, b * h);
    let step_g = b * g4;
    let new = |n: usize, shape: Vec<usize>| {
        gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
    };
    let (whh, bhh) = (w_hh.detach(), b_hh.map(Tensor::detach));
    let (h0d, c0d) = (h0.detach(), c0.detach());
    let gates = new(t_len * step_g, vec![t_len, b, g4])?;
    let y = new((t_len + 1) * step, vec![t_len + 1, b, h])?;
    let cs = new(t_len.max(2) * step, vec![t_len.max(2), b, h])?;
    let recurrent = GpuProduct::plain((b, g4, h), (h, 1), (1, h));
    let cells = crate::ops::groups_1d(step);
    for t in 0..t_len {
        let epi = Epi {
            bias: bhh.as_ref(),
            addend: Some((gi_all, t * step_g)),
            out: Some((&gates, t * step_g)),
            a_off: t.saturating_sub(1) * step,
            ..Epi::default()
        };
        recurrent.run_epi(if t == 0 { &h0d } else { &y }, &whh, auto, &epi)?;
        let last = t + 1 == t_len;
        let params = [
            b as u32,
            h as u32,
            (t * step_g) as u32,
            (t.saturating_sub(1) * step) as u32,
            (t * step) as u32,
            if last { t_len * step } else { t * step } as u32,
            (t > 0) as u32 | (last as u32) << 1,
        ];
        let bufs = [gates.gpu_buf(), c0d.gpu_buf(), y.gpu_buf(), cs.gpu_buf()];
        ctx.launch(LSTM_STEP_FWD, &params, &bufs, cells);
    }
    let mut inputs: Vec<&Tensor> = vec![gi_all, w_hh];
    inputs.extend(b_hh);
    inputs.push(h0);
    inputs.push(c0);
    let need: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let has_bias = b_hh.is_some();
    let saved_y = y.detach();
    let out = crate::autograd::record(y, "lstm", &inputs, move |gy| {
        let Device::Gpu(ctx) = gy.device() else {
            unreachable!("a GPU layer")
        };
        let new = |n: usize, shape: Vec<usize>| {
            gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
        };
        let da = new(t_len * step_g, vec![t_len, b, g4])?;
        let dc = new(step, vec![b, h])?;
        let dh = new(step, vec![b, h])?;
        let carry = GpuProduct::plain((b, h, g4), (g4, 1), (h, 1));
        for t in (0..t_len).rev() {
            let last = t + 1 == t_len;
            let params = [
                b as u32,
                h as u32,
                (t * step_g) as u32,
                (t.saturating_sub(1) * step) as u32,
                (t * step) as u32,
                (t_len * step) as u32,
                last as u32,
            ];
            let c_prev = if t == 0 { &c0d } else { &cs };
            let bufs = [
                gates.gpu_buf(),
                c_prev.gpu_buf(),
                gy.gpu_buf(),
                da.gpu_buf(),
                dc.gpu_buf(),
                dh.gpu_buf(),
            ];
            ctx.launch(LSTM_STEP_BWD, &params, &bufs, cells);
            let epi = Epi {
                out: Some((&dh, 0)),
                a_off: t * step_g,
                ..Epi::default()
            };
            carry.run_epi(&da, &whh, auto, &epi)?;
        }
        let (dw, db) =
            hidden_weight_grads(&da, &need, has_bias, &saved_y, &h0d, (t_len, b, g4, h))?;
        let mut grads = vec![Some(da), dw];
        if has_bias {
            grads.push(db);
        }
        grads.push(Some(dh));
        grads.push(Some(dc));
        Ok(grads)
    });
    let h_all = out.narrow(0, 0, t_len)?;
    let h_last = out.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    let c_last = out.narrow(0, t_len, 1)?.reshape(&[b, h])?;
    Ok((h_all, h_last, Some(c_last)))
}

/// A GRU's recurrence on the GPU as one graph node over whole-sequence buffers: per step
/// forward one fused product writes `h_{t-1} W_hh^T + b_hh` into slot t of `[T, B, 3H]`
/// (reading `h_{t-1}` from its slot of the output) and one kernel writes `h_t` into its
/// slot; per step backward one kernel gives the gate gradients (slot t) and the direct
/// part of the hidden gradient, and one product adds `d gh_t W_hh` to it (`h0`'s
/// gradient after the first step). Two products give `W_hh`'s gradient with `b_hh`'s as
/// their row sums.
pub(super) fn gru_gpu(
    gi_all: &Tensor,
    w_hh: &Tensor,
    b_hh: Option<&Tensor>,
    h0: &Tensor,
    (t_len, b, h): (usize, usize, usize),
) -> Result<LayerOutput> {
    use crate::ops::matmul::{Epi, GpuProduct, MatmulChoice};
    let Device::Gpu(ctx) = gi_all.device() else {
        unreachable!("a GPU layer")
    };
    let auto = MatmulChoice::AUTO;
    let (g3, step) = (3 * h, b * h);
    let step_g = b * g3;
    let new = |n: usize, shape: Vec<usize>| {
        gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
    };
    let (whh, bhh) = (w_hh.detach(), b_hh.map(Tensor::detach));
    let (gi, h0d) = (gi_all.detach(), h0.detach());
    let gh = new(t_len * step_g, vec![t_len, b, g3])?;
    let y = new(t_len * step, vec![t_len, b, h])?;
    let recurrent = GpuProduct::plain((b, g3, h), (h, 1), (1, h));
    let cells = crate::ops::groups_1d(step);
    for t in 0..t_len {
        let epi = Epi {
            bias: bhh.as_ref(),
            out: Some((&gh, t * step_g)),
            a_off: t.saturating_sub(1) * step,
            ..Epi::default()
        };
        recurrent.run_epi(if t == 0 { &h0d } else { &y }, &whh, auto, &epi)?;
        let params = [
            b as u32,
            h as u32,
            (t * step_g) as u32,
            (t.saturating_sub(1) * step) as u32,
            (t * step) as u32,
            (t > 0) as u32,
        ];
        let bufs = [gi.gpu_buf(), gh.gpu_buf(), h0d.gpu_buf(), y.gpu_buf()];
        ctx.launch(GRU_STEP_FWD, &params, &bufs, cells);
    }
    let mut inputs: Vec<&Tensor> = vec![gi_all, w_hh];
    inputs.extend(b_hh);
    inputs.push(h0);
    let need: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let has_bias = b_hh.is_some();
    let saved_y = y.detach();
    let out = crate::autograd::record(y, "gru", &inputs, move |gy| {
        let Device::Gpu(ctx) = gy.device() else {
            unreachable!("a GPU layer")
        };
        let new = |n: usize, shape: Vec<usize>| {
            gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
        };
        let dgi = new(t_len * step_g, vec![t_len, b, g3])?;
        let dgh = new(t_len * step_g, vec![t_len, b, g3])?;
        let carry = new(step, vec![b, h])?;
        let back = GpuProduct::plain((b, h, g3), (g3, 1), (h, 1));
        for t in (0..t_len).rev() {
            let params = [
                b as u32,
                h as u32,
                (t * step_g) as u32,
                (t.saturating_sub(1) * step) as u32,
                (t * step) as u32,
                (t + 1 == t_len) as u32,
            ];
            let h_prev = if t == 0 { &h0d } else { &saved_y };
            let bufs = [
                gi.gpu_buf(),
                gh.gpu_buf(),
                h_prev.gpu_buf(),
                gy.gpu_buf(),
                dgi.gpu_buf(),
                dgh.gpu_buf(),
                carry.gpu_buf(),
            ];
            ctx.launch(GRU_STEP_BWD, &params, &bufs, cells);
            // carry += dgh_t W_hh (accumulated in place: binding carry as both the
            // addend and the output is an alias WebGPU refuses).
            let epi = Epi {
                out: Some((&carry, 0)),
                accumulate: true,
                a_off: t * step_g,
                ..Epi::default()
            };
            back.run_epi(&dgh, &whh, auto, &epi)?;
        }
        let (dw, db) =
            hidden_weight_grads(&dgh, &need, has_bias, &saved_y, &h0d, (t_len, b, g3, h))?;
        let mut grads = vec![Some(dgi), dw];
        if has_bias {
            grads.push(db);
        }
        grads.push(Some(carry));
        Ok(grads)
    });
    let h_last = out.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    Ok((out, h_last, None))
}
