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
use crate::backend::cpu::{CpuData, Float};
use crate::backend::Storage;
use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::ops::matmul::{matmul_raw, Act, Epi, GpuProduct, MatmulChoice};
use crate::ops::{gpu_alloc, split};
use crate::shape;
use crate::tensor::{check_pair, DType, Tensor};

/// Runs `f` on a CPU tensor's data in place (a tensor this module just made).
fn cpu_in_place(t: &Tensor, f: impl FnOnce(&mut CpuData)) {
    match t.storage() {
        Storage::Cpu(c) => f(&mut c.write()),
        Storage::Gpu(_) => unreachable!("a CPU tensor"),
    }
}

fn bias_act_cpu<T: Float>(y: &mut [T], bias: Option<&[T]>, act: Act, n: usize) {
    match bias {
        Some(b) => {
            for row in y.chunks_mut(n.max(1)) {
                for (v, &bv) in row.iter_mut().zip(b) {
                    *v += bv;
                }
                act.apply_slice(row);
            }
        }
        None => act.apply_slice(y),
    }
}

/// `dL/dx` from the output gradient `g` and the saved value `s`, elementwise.
fn deriv_cpu(g: &Tensor, s: &Tensor, act: Act) -> Tensor {
    let out = crate::backend::cpu::map_float2!(&*g.cpu_data(), &*s.cpu_data(), |gv, sv: T| {
        let mut out = crate::backend::cpu::pool::filled(gv.len(), T::zero());
        act.mul_deriv_into(&mut out, gv, sv);
        out
    });
    Tensor::from_cpu(out, g.shape().to_vec())
}

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
    crate::ops::matmul::check_linear(x, weight)?;
    let (inp, out) = (weight.shape()[1], weight.shape()[0]);
    check_bias("linear", x, bias, out)?;
    let rows = x.numel() / inp.max(1);
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank >= 1") = out;
    let dev = x.device();
    if rows > 1 && (split::over(dev, rows * inp) || split::over(dev, rows * out)) {
        // Too large for one binding: the rows in pieces.
        let per = split::rows_per_piece(dev, inp.max(out));
        let x2 = x.reshape(&[rows, inp])?;
        let y = split::map_rows(&x2, per, |p| linear_act(p, weight, bias, act))?;
        return y.reshape(&out_shape);
    }
    let x2 = x.detach().reshape(&[rows, inp])?;
    let needs_input = act.needs_input();
    // The output, and the pre-activation where the backward reads it.
    let (y, pre) = match x.device() {
        Device::Cpu => {
            let y = matmul_raw(&x2, false, weight, true, MatmulChoice::AUTO)?;
            let bias_data = bias.map(|b| b.cpu_data());
            let in_place = if needs_input { Act::Identity } else { act };
            cpu_in_place(&y, |yd| match (yd, bias_data.as_deref()) {
                (CpuData::F32(v), Some(CpuData::F32(b))) => bias_act_cpu(v, Some(b), in_place, out),
                (CpuData::F64(v), Some(CpuData::F64(b))) => bias_act_cpu(v, Some(b), in_place, out),
                (CpuData::F32(v), None) => bias_act_cpu::<f32>(v, None, in_place, out),
                (CpuData::F64(v), None) => bias_act_cpu::<f64>(v, None, in_place, out),
                _ => unreachable!("dtypes checked"),
            });
            if needs_input {
                let op = act.op().expect("an activation that reads its input");
                (crate::ops::unary::unary_forward(&y, op)?, Some(y))
            } else {
                (y, None)
            }
        }
        Device::Gpu(g) => {
            let pre = needs_input
                .then(|| {
                    gpu_alloc(g, rows * out)
                        .map(|b| Tensor::from_gpu(b, vec![rows, out], DType::F32))
                })
                .transpose()?;
            let product = GpuProduct::plain((rows, out, inp), (inp, 1), (1, inp));
            let epi = Epi {
                bias,
                act,
                pre: pre.as_ref(),
                ..Epi::default()
            };
            (product.run_epi(&x2, weight, MatmulChoice::AUTO, &epi)?, pre)
        }
    };
    let y = y.reshape(&out_shape)?;
    // What the backward reads: the pre-activation, or the output (nothing for none).
    let saved_y = match pre {
        Some(p) => Some(p),
        None => (act != Act::Identity).then(|| y.detach()),
    };
    let ws = weight.detach();
    let (need_x, need_w) = (x.requires_grad(), weight.requires_grad());
    let need_b = bias.is_some_and(|b| b.requires_grad());
    let x_shape = x.shape().to_vec();
    let has_bias = bias.is_some();
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    Ok(record(y, "linear_act", &inputs, move |g| {
        let g2 = g.reshape(&[rows, out])?;
        let y2 = saved_y
            .as_ref()
            .map(|y| y.reshape(&[rows, out]))
            .transpose()?;
        let (dx, dw, db) = match g.device() {
            Device::Cpu => {
                let gp = match &y2 {
                    Some(y) => deriv_cpu(&g2, y, act),
                    None => g2,
                };
                let dx = need_x
                    .then(|| matmul_raw(&gp, false, &ws, false, MatmulChoice::AUTO))
                    .transpose()?;
                let dw = need_w
                    .then(|| matmul_raw(&gp, true, &x2, false, MatmulChoice::AUTO))
                    .transpose()?;
                let db = need_b.then(|| gp.sum_dim(&[0], false)).transpose()?;
                (dx, dw, db)
            }
            Device::Gpu(ctx) => {
                let pro = y2.as_ref().map(|y| (y, act));
                let dx = if need_x {
                    let product = GpuProduct::plain((rows, inp, out), (out, 1), (inp, 1));
                    let epi = Epi {
                        pro,
                        ..Epi::default()
                    };
                    Some(product.run_epi(&g2, &ws, MatmulChoice::AUTO, &epi)?)
                } else {
                    None
                };
                // The bias gradient comes from the weight gradient's product (the row
                // sums of its operand g^T); without a weight gradient (or with no input
                // features) it is a plain column sum.
                let rowsum_ok = need_w && inp > 0 && rows > 0;
                let db = if need_b {
                    Some(if rowsum_ok {
                        // Written (not added to) by the weight gradient's product.
                        Tensor::from_gpu(gpu_alloc(ctx, out)?, vec![out], DType::F32)
                    } else {
                        let gp = match &y2 {
                            Some(s) => act.backward_op(s, &g2)?,
                            None => g2.clone(),
                        };
                        gp.sum_dim(&[0], false)?
                    })
                } else {
                    None
                };
                let dw = if need_w {
                    let product = GpuProduct::plain((out, inp, rows), (1, out), (inp, 1));
                    let epi = Epi {
                        pro,
                        rowsum: db.as_ref().filter(|_| rowsum_ok),
                        ..Epi::default()
                    };
                    Some(product.run_epi(&g2, &x2, MatmulChoice::AUTO, &epi)?)
                } else {
                    None
                };
                (dx, dw, db)
            }
        };
        let mut grads = vec![dx.map(|d| d.reshape(&x_shape)).transpose()?, dw];
        if has_bias {
            grads.push(db);
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
