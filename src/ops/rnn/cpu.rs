//! The CPU recurrences: Elman with its own loops, and a generic recurrence with
//! backpropagation through time for the gated cells.

use super::*;
use crate::ops::matmul::cpu::{gemm_slices, Gemm};

/// The `f32` elements of optional CPU data of that type.
pub(super) fn f32s(d: Option<&CpuData>) -> Option<&[f32]> {
    match d {
        Some(CpuData::F32(v)) => Some(v),
        _ => None,
    }
}

/// The `f64` elements of optional CPU data of that type.
pub(super) fn f64s(d: Option<&CpuData>) -> Option<&[f64]> {
    match d {
        Some(CpuData::F64(v)) => Some(v),
        _ => None,
    }
}

/// One Elman layer's forward on the CPU: `h_t = act(gi_t + b_ih + b_hh + h_{t-1}
/// W_hh^T)`, each step's product added straight into its slot of the output.
#[allow(clippy::too_many_arguments)]
pub(super) fn elman_fwd_cpu<T: Gemm>(
    gi: &[T],
    whh: &[T],
    h0: &[T],
    b_ih: Option<&[T]>,
    b_hh: Option<&[T]>,
    act: crate::ops::matmul::Act,
    (t_len, b, h): (usize, usize, usize),
) -> Vec<T> {
    let step = b * h;
    let mut hs = pool::filled(t_len * step, T::zero());
    if step == 0 {
        return hs;
    }
    // Both biases in one vector, added row by row (no per-element index arithmetic).
    let bias: Vec<T> = (0..h)
        .map(|j| b_ih.map_or(T::zero(), |bb| bb[j]) + b_hh.map_or(T::zero(), |bb| bb[j]))
        .collect();
    for t in 0..t_len {
        let (done, rest) = hs.split_at_mut(t * step);
        let slot = &mut rest[..step];
        for (row, g) in slot
            .chunks_mut(h)
            .zip(gi[t * step..(t + 1) * step].chunks(h))
        {
            for ((v, &gv), &bv) in row.iter_mut().zip(g).zip(&bias) {
                *v = gv + bv;
            }
        }
        let prev: &[T] = if t == 0 { h0 } else { &done[(t - 1) * step..] };
        gemm_slices((b, h, h), prev, (h, 1), whh, (1, h), T::one(), slot, h);
        act.apply_slice(slot);
    }
    hs
}

/// Its backward: from the output gradient `gy` `[T, B, H]`, the gradients of the
/// pre-activations `d` `[T, B, H]` (`d_t = (gy_t + d_{t+1} W_hh) act'(h_t)`) and of `h0`.
pub(super) fn elman_bwd_cpu<T: Gemm>(
    gy: &[T],
    hs: &[T],
    whh: &[T],
    act: crate::ops::matmul::Act,
    (t_len, b, h): (usize, usize, usize),
) -> (Vec<T>, Vec<T>) {
    let step = b * h;
    let mut d = pool::filled(t_len * step, T::zero());
    let mut e = pool::filled(step, T::zero());
    for t in (0..t_len).rev() {
        e.copy_from_slice(&gy[t * step..(t + 1) * step]);
        let (cur, next) = d.split_at_mut((t + 1) * step);
        if t + 1 < t_len {
            gemm_slices(
                (b, h, h),
                &next[..step],
                (h, 1),
                whh,
                (h, 1),
                T::one(),
                &mut e,
                h,
            );
        }
        act.mul_deriv_into(&mut cur[t * step..], &e, &hs[t * step..(t + 1) * step]);
    }
    let mut dh0 = pool::filled(step, T::zero());
    gemm_slices(
        (b, h, h),
        &d[..step],
        (h, 1),
        whh,
        (h, 1),
        T::zero(),
        &mut dh0,
        h,
    );
    (d, dh0)
}

/// An Elman layer on the CPU as one graph node: one product for all steps' inputs, then
/// per step one product accumulated into the output's slot and one pass for the biases
/// and the activation; backward one product and one pass per step, then one product
/// each for the weights' and the input's gradients. No per-step tensors.
pub(super) fn elman_cpu(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    (t_len, b, i, h): (usize, usize, usize, usize),
) -> Result<LayerOutput> {
    use crate::ops::matmul::{matmul_raw, Act, MatmulChoice};
    let act = if mode == RnnMode::Relu {
        Act::Relu
    } else {
        Act::Tanh
    };
    let all = [Some(w.w_ih), Some(w.w_hh), w.b_ih, w.b_hh, Some(h0)];
    if all.iter().flatten().any(|t| t.dtype() != x.dtype()) {
        return shape_err(
            mode.name(),
            format!(
                "the weights, biases and state must all be {:?} like the input",
                x.dtype()
            ),
        );
    }
    let auto = MatmulChoice::AUTO;
    let rows = t_len * b;
    let x2 = x.detach().reshape(&[rows, i])?;
    let (w_ih, w_hh) = (w.w_ih.detach(), w.w_hh.detach());
    let gi = matmul_raw(&x2, false, &w_ih, true, auto)?;
    let dims = (t_len, b, h);
    let hs = {
        let (gd, wd, hd) = (gi.cpu_data(), w_hh.cpu_data(), h0.cpu_data());
        let (bi, bh) = (w.b_ih.map(|t| t.cpu_data()), w.b_hh.map(|t| t.cpu_data()));
        let data = match (&*gd, &*wd, &*hd) {
            (CpuData::F32(g), CpuData::F32(wv), CpuData::F32(h0v)) => {
                let (bi, bh) = (f32s(bi.as_deref()), f32s(bh.as_deref()));
                CpuData::F32(elman_fwd_cpu(g, wv, h0v, bi, bh, act, dims))
            }
            (CpuData::F64(g), CpuData::F64(wv), CpuData::F64(h0v)) => {
                let (bi, bh) = (f64s(bi.as_deref()), f64s(bh.as_deref()));
                CpuData::F64(elman_fwd_cpu(g, wv, h0v, bi, bh, act, dims))
            }
            _ => return shape_err(mode.name(), "the input, weights and state differ in dtype"),
        };
        Tensor::from_cpu(data, vec![t_len, b, h])
    };
    let mut inputs: Vec<&Tensor> = vec![x, w.w_ih, w.w_hh];
    inputs.extend(w.b_ih);
    inputs.extend(w.b_hh);
    inputs.push(h0);
    let need: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let (has_bih, has_bhh) = (w.b_ih.is_some(), w.b_hh.is_some());
    let saved = hs.detach();
    let h0d = h0.detach();
    let y = crate::autograd::record(hs, mode.name(), &inputs, move |gy| {
        let mut need = need.iter().copied();
        let need_x = need.next().unwrap_or(false);
        let need_wih = need.next().unwrap_or(false);
        let need_whh = need.next().unwrap_or(false);
        let need_bih = has_bih && need.next().unwrap_or(false);
        let need_bhh = has_bhh && need.next().unwrap_or(false);
        let need_h0 = need.next().unwrap_or(false);
        let (d, dh0) = {
            let (gd, sd, wd) = (gy.cpu_data(), saved.cpu_data(), w_hh.cpu_data());
            match (&*gd, &*sd, &*wd) {
                (CpuData::F32(g), CpuData::F32(s), CpuData::F32(wv)) => {
                    let (d, dh0) = elman_bwd_cpu(g, s, wv, act, dims);
                    (CpuData::F32(d), CpuData::F32(dh0))
                }
                (CpuData::F64(g), CpuData::F64(s), CpuData::F64(wv)) => {
                    let (d, dh0) = elman_bwd_cpu(g, s, wv, act, dims);
                    (CpuData::F64(d), CpuData::F64(dh0))
                }
                _ => unreachable!("dtypes checked in the forward"),
            }
        };
        let d = Tensor::from_cpu(d, vec![rows, h]);
        let dx = need_x
            .then(|| matmul_raw(&d, false, &w_ih, false, auto)?.reshape(&[t_len, b, i]))
            .transpose()?;
        let dw_ih = need_wih
            .then(|| matmul_raw(&d, true, &x2, false, auto))
            .transpose()?;
        let dw_hh = if need_whh {
            // h_{t-1} for every step: h0, then the outputs of all but the last step.
            let prev = Tensor::cat(&[&h0d, &saved.reshape(&[rows, h])?], 0)?.narrow(0, 0, rows)?;
            Some(matmul_raw(&d, true, &prev, false, auto)?)
        } else {
            None
        };
        let db_ih = need_bih.then(|| d.sum_dim(&[0], false)).transpose()?;
        let db_hh = need_bhh.then(|| d.sum_dim(&[0], false)).transpose()?;
        let mut grads = vec![dx, dw_ih, dw_hh];
        if has_bih {
            grads.push(db_ih);
        }
        if has_bhh {
            grads.push(db_hh);
        }
        grads.push(need_h0.then(|| Tensor::from_cpu(dh0, vec![b, h])));
        Ok(grads)
    });
    let h_last = y.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    Ok((y, h_last, None))
}

/// The unary op whose backward rule is the activation's.
/// What the forward keeps for the backward, per step.
pub(super) enum Saved {
    /// LSTM: gate pre-activations and the previous cell state.
    Lstm(Vec<(Tensor, Tensor)>),
    /// GRU: the input and recurrent gate products.
    Gru(Vec<(Tensor, Tensor)>),
}

pub(super) fn recurrence(
    mode: RnnMode,
    gi_all: &Tensor,
    w_hh: &Tensor,
    b_hh: Option<&Tensor>,
    h0: &Tensor,
    c0: Option<&Tensor>,
    (t_len, b, h): (usize, usize, usize),
) -> Result<LayerOutput> {
    let g = mode.gates();
    let (whh, bhh) = (w_hh.detach(), b_hh.map(Tensor::detach));
    let h0d = h0.detach();
    let (y, hs, saved) = crate::autograd::no_grad(|| -> Result<_> {
        let mut hs: Vec<Tensor> = Vec::with_capacity(t_len);
        let mut saved = match mode {
            RnnMode::Lstm => Saved::Lstm(Vec::with_capacity(t_len)),
            _ => Saved::Gru(Vec::with_capacity(t_len)),
        };
        let mut hprev = h0d.clone();
        let mut cprev = c0.map(Tensor::detach);
        for t in 0..t_len {
            let gi = gi_all.narrow(0, t, 1)?.reshape(&[b, g * h])?;
            let mut gh = hprev.linear(&whh)?;
            if let Some(bias) = &bhh {
                gh = gh.add(bias)?;
            }
            let hnew = match &mut saved {
                Saved::Lstm(steps) => {
                    let gates = gi.add(&gh)?;
                    let cp = cprev.take().expect("an LSTM has a cell state");
                    let y = lstm_forward_raw(&gates, &cp, b, h)?;
                    cprev = Some(y.narrow(0, 1, 1)?.reshape(&[b, h])?);
                    steps.push((gates, cp));
                    y.narrow(0, 0, 1)?.reshape(&[b, h])?
                }
                Saved::Gru(steps) => {
                    let hn = gru_forward_raw(&gi, &gh, &hprev, b, h)?;
                    steps.push((gi, gh));
                    hn
                }
            };
            hs.push(hnew.clone());
            hprev = hnew;
        }
        let refs: Vec<&Tensor> = hs.iter().collect();
        let mut y = Tensor::stack(&refs, 0)?;
        if let Some(c) = &cprev {
            y = Tensor::cat(&[&y, &c.unsqueeze(0)?], 0)?;
        }
        Ok((y, hs, saved))
    })?;
    let mut inputs: Vec<&Tensor> = vec![gi_all, w_hh];
    inputs.extend(b_hh);
    inputs.push(h0);
    inputs.extend(c0);
    let needs: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let has_bias = b_hh.is_some();
    let y = crate::autograd::record(y, mode.name(), &inputs, move |gy| {
        crate::autograd::no_grad(|| {
            bptt(
                mode,
                gy,
                &whh,
                &h0d,
                &hs,
                &saved,
                (t_len, b, h),
                has_bias,
                &needs,
            )
        })
    });
    let out = y.narrow(0, 0, t_len)?;
    let h_last = y.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    let c_last = if mode == RnnMode::Lstm {
        Some(y.narrow(0, t_len, 1)?.reshape(&[b, h])?)
    } else {
        None
    };
    Ok((out, h_last, c_last))
}

/// Backpropagation through time for [`recurrence`]: gradients for `[gi_all, w_hh,
/// (b_hh), h0, (c0)]` from the gradient of `[outputs..., (c_T)]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn bptt(
    mode: RnnMode,
    gy: &Tensor,
    whh: &Tensor,
    h0: &Tensor,
    hs: &[Tensor],
    saved: &Saved,
    (t_len, b, h): (usize, usize, usize),
    has_bias: bool,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let g = mode.gates();
    let mut dh_carry: Option<Tensor> = None;
    let mut dc_carry = if mode == RnnMode::Lstm {
        Some(gy.narrow(0, t_len, 1)?.reshape(&[b, h])?)
    } else {
        None
    };
    let mut dgi_steps: Vec<Tensor> = Vec::with_capacity(t_len);
    let mut dgh_steps: Vec<Tensor> = Vec::new();
    for t in (0..t_len).rev() {
        let mut dh = gy.narrow(0, t, 1)?.reshape(&[b, h])?;
        if let Some(c) = &dh_carry {
            dh = dh.add(c)?;
        }
        let hprev = if t == 0 { h0 } else { &hs[t - 1] };
        let (dgi, dgh, direct) = match saved {
            Saved::Lstm(steps) => {
                let (gates, cp) = &steps[t];
                let dc = dc_carry.take().expect("an LSTM carries a cell gradient");
                let g2 = Tensor::stack(&[&dh, &dc], 0)?;
                let (da, dcp) = lstm_backward_raw(gates, cp, &g2, b, h)?;
                dc_carry = Some(dcp);
                (da.clone(), da, None)
            }
            Saved::Gru(steps) => {
                let (gi, gh) = &steps[t];
                let [dgi, dgh, dhp] = gru_backward_raw(gi, gh, hprev, &dh, b, h)?;
                (dgi, dgh, Some(dhp))
            }
        };
        let mut carry = dgh.matmul(whh)?;
        if let Some(d) = direct {
            carry = carry.add(&d)?;
        }
        dh_carry = Some(carry);
        dgi_steps.push(dgi);
        if mode == RnnMode::Gru {
            dgh_steps.push(dgh);
        }
    }
    dgi_steps.reverse();
    dgh_steps.reverse();
    let refs: Vec<&Tensor> = dgi_steps.iter().collect();
    let dgi_all = Tensor::stack(&refs, 0)?;
    let dgh_all = if mode == RnnMode::Gru {
        let refs: Vec<&Tensor> = dgh_steps.iter().collect();
        Tensor::stack(&refs, 0)?
    } else {
        dgi_all.clone()
    };
    let rows = t_len * b;
    let dgh2 = dgh_all.reshape(&[rows, g * h])?;
    let mut grads = vec![Some(dgi_all)];
    let w_index = 1;
    grads.push(if needs[w_index] {
        // One product over all steps: sum_t dgh_t^T h_{t-1}.
        let mut prev: Vec<&Tensor> = vec![h0];
        prev.extend(hs[..t_len - 1].iter());
        let hprev_all = Tensor::stack(&prev, 0)?.reshape(&[rows, h])?;
        Some(crate::ops::matmul::matmul_raw(
            &dgh2,
            true,
            &hprev_all,
            false,
            crate::ops::matmul::MatmulChoice::AUTO,
        )?)
    } else {
        None
    });
    if has_bias {
        grads.push(Some(dgh2.sum_dim(&[0], false)?));
    }
    grads.push(dh_carry);
    if mode == RnnMode::Lstm {
        grads.push(dc_carry);
    }
    Ok(grads)
}
