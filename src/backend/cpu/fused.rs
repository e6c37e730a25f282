//! The CPU's fused layers: a product, then one pass for the bias and activation
//! forward, and one for the activation's derivative backward (no fused kernels). The
//! CPU has no fused convolution: the op composes one from `conv2d` and the activation.

use super::elementwise::CpuBackend;
use super::{map_float2, pool, CpuData, Float};
use crate::backend::half::cpu_f32;
use crate::backend::matmul::{Act, ConvAct, LinearAct, MatmulChoice, Product};
use crate::backend::reduce::ReducePlan;
use crate::backend::{Elementwise, Fused, Matmul, Reduce, Storage};
use crate::error::{Error, Result};

impl Act {
    /// The activation on the CPU over a slice in place.
    pub(crate) fn apply_slice<T: Float>(self, y: &mut [T]) {
        if let Some(op) = self.op() {
            op.forward_in_place(y);
        }
    }
    /// `out = dL/dx` elementwise on the CPU from the output gradient `g` and the saved
    /// value `s` (the output, or the pre-activation where [`Act::needs_input`]).
    pub(crate) fn mul_deriv_into<T: Float>(self, out: &mut [T], g: &[T], s: &[T]) {
        match self.op() {
            Some(op) => op.backward_into(out, g, s),
            None => out.copy_from_slice(g),
        }
    }
}

fn add_into<T: Float>(y: &mut [T], a: &[T]) {
    for (v, &a) in y.iter_mut().zip(a) {
        *v += a;
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
fn deriv_cpu(g: &Storage, s: &Storage, act: Act) -> Result<Storage> {
    let (gd, sd) = (g.cpu("linear_act")?.read(), s.cpu("linear_act")?.read());
    Ok(Storage::new_cpu(map_float2!(&*gd, &*sd, |gv, sv: T| {
        let mut out = pool::filled(gv.len(), T::zero());
        act.mul_deriv_into(&mut out, gv, sv);
        out
    })))
}

/// The CPU has no fused convolution (ops ask [`Fused::fuses_conv`] first).
fn no_fused_conv<T>() -> Result<T> {
    Err(Error::Gpu(
        "conv2d_act: the CPU has no fused convolution (a wgrad bug)".into(),
    ))
}

impl Fused for CpuBackend {
    fn linear_act(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        addend: Option<&Storage>,
        l: &LinearAct,
    ) -> Result<(Storage, Option<Storage>)> {
        let (rows, inp, out) = (l.rows, l.inp, l.out);
        let (bias, addend) = (bias.map(cpu_f32), addend.map(cpu_f32));
        let (bias, addend) = (bias.as_deref(), addend.as_deref());
        let product = Product::plain((rows, out, inp), (inp, 1), (1, inp));
        let y = self.matmul(x, w, &product, MatmulChoice::AUTO)?;
        let needs_input = l.act.needs_input() && l.save;
        let in_place = if needs_input { Act::Identity } else { l.act };
        {
            let bias = bias.map(|b| b.cpu("linear_act")).transpose()?;
            let bias_data = bias.map(|b| b.read());
            let mut yd = y.cpu("linear_act")?.write();
            if let Some(a) = addend {
                // The residual before the bias and activation, as the GPU's epilogue.
                match (&mut *yd, &*a.cpu("linear_act")?.read()) {
                    (CpuData::F32(v), CpuData::F32(a)) => add_into(v, a),
                    (CpuData::F64(v), CpuData::F64(a)) => add_into(v, a),
                    _ => {
                        return Err(Error::DType {
                            op: "linear_act",
                            msg: "the residual's dtype differs from the product's".into(),
                        })
                    }
                }
            }
            match (&mut *yd, bias_data.as_deref()) {
                (CpuData::F32(v), Some(CpuData::F32(b))) => bias_act_cpu(v, Some(b), in_place, out),
                (CpuData::F64(v), Some(CpuData::F64(b))) => bias_act_cpu(v, Some(b), in_place, out),
                (CpuData::F32(v), None) => bias_act_cpu::<f32>(v, None, in_place, out),
                (CpuData::F64(v), None) => bias_act_cpu::<f64>(v, None, in_place, out),
                _ => {
                    return Err(Error::DType {
                        op: "linear_act",
                        msg: "mixed or integer dtypes reached a float kernel".into(),
                    })
                }
            }
        }
        // An activation that reads its input keeps the pre-activation for the backward.
        match l.act.op().filter(|_| needs_input) {
            Some(op) => Ok((self.unary(op, &y, rows * out)?, Some(y))),
            None => Ok((y, None)),
        }
    }

    fn linear_act_backward(
        &self,
        g: &Storage,
        saved: Option<&Storage>,
        x: &Storage,
        w: &Storage,
        l: &LinearAct,
        [need_x, need_w, need_b]: [bool; 3],
    ) -> Result<[Option<Storage>; 3]> {
        let (rows, inp, out) = (l.rows, l.inp, l.out);
        let auto = MatmulChoice::AUTO;
        let g = &*cpu_f32(g);
        let gp = match saved {
            Some(s) => deriv_cpu(g, &cpu_f32(s), l.act)?,
            None => g.clone(),
        };
        let dx = need_x
            .then(|| {
                let product = Product::plain((rows, inp, out), (out, 1), (inp, 1));
                self.matmul(&gp, w, &product, auto)
            })
            .transpose()?;
        let dw = need_w
            .then(|| {
                let product = Product::plain((out, inp, rows), (1, out), (inp, 1));
                self.matmul(&gp, x, &product, auto)
            })
            .transpose()?;
        let db = need_b
            .then(|| {
                let plan = ReducePlan::new("sum", &[rows, out], &[0], false)?;
                self.sum(&gp, &plan, 1.0)
            })
            .transpose()?;
        Ok([dx, dw, db])
    }

    fn fuses_conv(&self) -> bool {
        false
    }

    fn conv_act(
        &self,
        _x: &Storage,
        _w: &Storage,
        _bias: Option<&Storage>,
        _c: &ConvAct,
    ) -> Result<(Storage, Option<Storage>)> {
        no_fused_conv()
    }

    fn conv_act_backward(
        &self,
        _g: &Storage,
        _saved: Option<&Storage>,
        _x: &Storage,
        _w: &Storage,
        _c: &ConvAct,
        _need: [bool; 3],
    ) -> Result<[Option<Storage>; 3]> {
        no_fused_conv()
    }
}
