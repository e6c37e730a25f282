//! Fused layers: a matrix product with its bias and activation in one kernel forward,
//! and the activation's derivative folded into the backward products' loads (no
//! separate elementwise passes), with the bias gradient from the same product as the
//! weight gradient (the row sums of that product's operand).
//!
//! `Linear` followed by an activation module in a `Sequential` runs through
//! [`linear_act`] on its own: forward is one dispatch, backward two (the weight and bias
//! gradients together, and the input gradient) where the unfused layer takes five.
//! The CPU runs the same arithmetic with one pass for the bias and activation and one
//! for the derivative.

use crate::autograd::record;
use crate::backend::matmul::{Act, LinearAct};
use crate::error::{shape_err, Result};
use crate::ops::split;
use crate::shape;
use crate::tensor::{check_pair, Tensor};

/// Checks a fused layer's bias: on `x`'s device and `[outputs]`.
pub(crate) fn check_bias(
    op: &'static str,
    x: &Tensor,
    bias: Option<&Tensor>,
    outputs: usize,
) -> Result<()> {
    if let Some(b) = bias {
        check_pair(op, x, b)?;
        if b.shape() != [outputs] {
            return shape_err(
                op,
                format!(
                    "bias {} for {outputs} outputs: expected [{outputs}]",
                    shape::fmt(b.shape())
                ),
            );
        }
    }
    Ok(())
}

/// `act(x @ weight^T + bias)` for `x` `[..., in]`, `weight` `[out, in]` and `bias`
/// `[out]`: one fused product forward, two backward. An activation whose backward reads
/// its input (GELU, SiLU, Mish, a negative leaky slope) has the product write the
/// pre-activation too, in the same kernel.
pub fn linear_act(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, act: Act) -> Result<Tensor> {
    linear_add(x, weight, bias, act, None)
}

/// [`linear_act`] with a residual `addend` (the output's shape) added in the product's
/// epilogue, `x @ weight^T + bias + addend`, which then costs no pass of its own (the
/// addend's gradient is the output's). Only with the identity activation.
pub(crate) fn linear_add(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Act,
    addend: Option<&Tensor>,
) -> Result<Tensor> {
    let ins = crate::ops::half::with_optional(&[x, weight], &[bias, addend]);
    match crate::ops::half::direct("linear", &ins, |w| {
        let (f, o) = crate::ops::half::split_optional(w, 2, &[bias, addend]);
        linear_add_recorded(&f[0], &f[1], o[0], act, o[1])
    }) {
        Some(r) => r,
        None => linear_add_recorded(x, weight, bias, act, addend),
    }
}

/// [`linear_add`] on inputs of one dtype (half ones read as they are).
fn linear_add_recorded(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Act,
    addend: Option<&Tensor>,
) -> Result<Tensor> {
    crate::ops::matmul::check_linear(x, weight)?;
    let (inp, out) = (weight.shape()[1], weight.shape()[0]);
    check_bias("linear", x, bias, out)?;
    let rows = x.numel() / inp.max(1);
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank >= 1") = out;
    let dev = x.device();
    if let Some(a) = addend {
        check_pair("linear", x, a)?;
        if a.shape() != out_shape.as_slice() || act != Act::Identity {
            return shape_err(
                "linear",
                format!(
                    "a residual {} for an output {} (the identity activation only)",
                    shape::fmt(a.shape()),
                    shape::fmt(&out_shape)
                ),
            );
        }
    }
    if rows > 1 && (split::over(dev, rows * inp) || split::over(dev, rows * out)) {
        // Too large for one binding: the rows in pieces, then any residual added.
        let per = split::rows_per_piece(dev, inp.max(out));
        let x2 = x.reshape(&[rows, inp])?;
        let y = split::map_rows(&x2, per, |p| linear_act(p, weight, bias, act))?;
        let y = y.reshape(&out_shape)?;
        return match addend {
            Some(a) => y.add(a),
            None => Ok(y),
        };
    }
    crate::ops::check_out("matmul", &[rows, out], x.dtype(), x.device())?;
    let x2 = x.detach().reshape(&[rows, inp])?;
    // Under no_grad, or with nothing to differentiate, no backward will read a
    // pre-activation.
    let save = crate::autograd::is_grad_enabled()
        && [Some(x), Some(weight), bias, addend]
            .iter()
            .flatten()
            .any(|t| t.requires_grad());
    let l = LinearAct {
        rows,
        inp,
        out,
        act,
        save,
    };
    // The output, and the pre-activation where the backward reads it.
    let (y, pre) = dev.backend().linear_act(
        x2.storage(),
        weight.storage(),
        bias.map(Tensor::storage),
        addend.map(Tensor::storage),
        &l,
    )?;
    let like = crate::ops::half::like;
    let y = like(y, vec![rows, out], x)?.reshape(&out_shape)?;
    // What the backward reads: the pre-activation, or the output (nothing for none).
    let saved_y = match pre {
        Some(p) => Some(like(p, vec![rows, out], x)?),
        None => (act != Act::Identity).then(|| y.detach()),
    };
    let ws = weight.detach();
    let need = [
        x.requires_grad(),
        weight.requires_grad(),
        bias.is_some_and(|b| b.requires_grad()),
    ];
    let x_shape = x.shape().to_vec();
    let w_shape = weight.shape().to_vec();
    let has_bias = bias.is_some();
    let has_addend = addend.is_some();
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    inputs.extend(addend);
    Ok(record(y, "linear_act", &inputs, move |g| {
        let [dx, dw, db] = g.device().backend().linear_act_backward(
            g.storage(),
            saved_y.as_ref().map(Tensor::storage),
            x2.storage(),
            ws.storage(),
            &l,
            need,
        )?;
        let mut grads = vec![
            dx.map(|d| like(d, x_shape.clone(), g)).transpose()?,
            dw.map(|d| like(d, w_shape.clone(), g)).transpose()?,
        ];
        if has_bias {
            grads.push(db.map(|d| like(d, vec![out], g)).transpose()?);
        }
        if has_addend {
            grads.push(Some(g.clone()));
        }
        Ok(grads)
    }))
}

impl Tensor {
    /// `act(self @ weight^T + bias)` in one fused kernel (see [`linear_act`]).
    pub fn linear_act(&self, weight: &Tensor, bias: Option<&Tensor>, act: Act) -> Result<Tensor> {
        linear_act(self, weight, bias, act)
    }
}
