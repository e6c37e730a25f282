//! The GPU's fused layers: a linear layer or a one-group convolution as one product
//! with its bias and activation forward ([`Product::run_epi`]), and backward the
//! activation's derivative applied as the products load the output gradient, with the
//! bias gradient from the weight gradient's product (the row sums of its operand).

use std::sync::Arc;

use super::kernels::gpu_alloc;
use super::GpuContext;
use crate::backend::matmul::{Act, ConvAct, Epi, LinearAct, MatmulChoice, Product};
use crate::backend::reduce::ReducePlan;
use crate::backend::{Elementwise, Fused, Reduce, Storage};
use crate::error::Result;

/// `dL/dx` of `act` from the saved value `s` and the output gradient `g` (`n` elements
/// each), as the unfused op computes it.
fn act_backward(
    g: &Arc<GpuContext>,
    act: Act,
    s: Option<&Storage>,
    grad: &Storage,
    n: usize,
) -> Result<Storage> {
    match (s, act.op()) {
        (Some(s), Some(op)) => g.unary_backward(op, s, grad, n),
        // The sum that reads it takes f32.
        _ => super::half::f32_of(g, grad, n),
    }
}

impl Fused for Arc<GpuContext> {
    fn linear_act(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        addend: Option<&Storage>,
        l: &LinearAct,
    ) -> Result<(Storage, Option<Storage>)> {
        let (rows, inp, out) = (l.rows, l.inp, l.out);
        // An activation whose backward reads its input has the product write the
        // pre-activation beside the output.
        let pre = (l.act.needs_input() && l.save)
            .then(|| gpu_alloc(self, rows * out).map(Storage::new_gpu))
            .transpose()?;
        let product = Product::plain((rows, out, inp), (inp, 1), (1, inp));
        // The addend is read through the output binding y1 (`run_epi` widens a half one
        // unless the product writes native f16).
        let epi = Epi {
            bias,
            act: l.act,
            pre: pre.as_ref(),
            addend: addend.map(|a| (a, 0)),
            half_out: true,
            ..Epi::default()
        };
        let y = product.run_epi(self, x, w, MatmulChoice::AUTO, &epi)?;
        Ok((y, pre))
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
        let (rows, inp, out, act) = (l.rows, l.inp, l.out, l.act);
        let auto = MatmulChoice::AUTO;
        let pro = saved.map(|y| (y, act));
        let dx = if need_x {
            let product = Product::plain((rows, inp, out), (out, 1), (inp, 1));
            let epi = Epi {
                pro,
                ..Epi::default()
            };
            Some(product.run_epi(self, g, w, auto, &epi)?)
        } else {
            None
        };
        // The bias gradient comes from the weight gradient's product (the row sums of
        // its operand g^T); without a weight gradient (or with no input features) it is
        // a plain column sum.
        let rowsum_ok = need_w && inp > 0 && rows > 0;
        let db = if need_b {
            Some(if rowsum_ok {
                // Written (not added to) by the weight gradient's product.
                Storage::new_gpu(gpu_alloc(self, out)?)
            } else {
                let gp = act_backward(self, act, saved, g, rows * out)?;
                self.sum(
                    &gp,
                    &ReducePlan::new("sum", &[rows, out], &[0], false)?,
                    1.0,
                )?
            })
        } else {
            None
        };
        let dw = if need_w {
            let product = Product::plain((out, inp, rows), (1, out), (inp, 1));
            let epi = Epi {
                pro,
                rowsum: db.as_ref().filter(|_| rowsum_ok),
                ..Epi::default()
            };
            Some(product.run_epi(self, g, x, auto, &epi)?)
        } else {
            None
        };
        Ok([dx, dw, db])
    }

    fn fuses_conv(&self) -> bool {
        true
    }

    fn conv_act(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        c: &ConvAct,
    ) -> Result<(Storage, Option<Storage>)> {
        let (n, oc, hw, kc) = (c.geo.n, c.oc, c.hw(), c.kc());
        let image = c.geo.c * c.geo.h * c.geo.w;
        // The columns are gathered from the image as the product loads them (none in
        // memory).
        let forward = Product {
            m: oc,
            n: hw,
            k: kc,
            batch: vec![n],
            out_batch: vec![n],
            sa: vec![0],
            sb: vec![image],
            a_strides: (kc, 1),
            b_strides: (hw, 1),
            summing: false,
        };
        // An activation whose backward reads its input has the product write the
        // pre-activation beside the output.
        let pre = (c.act.needs_input() && c.save)
            .then(|| gpu_alloc(self, n * oc * hw).map(Storage::new_gpu))
            .transpose()?;
        let epi = Epi {
            bias,
            bias_rows: true,
            act: c.act,
            pre: pre.as_ref(),
            conv: Some((1, c.taps())),
            half_out: true,
            ..Epi::default()
        };
        let y = forward.run_epi(self, w, x, MatmulChoice::AUTO, &epi)?;
        Ok((y, pre))
    }

    fn conv_act_backward(
        &self,
        g: &Storage,
        saved: Option<&Storage>,
        x: &Storage,
        w: &Storage,
        c: &ConvAct,
        [need_x, need_w, need_b]: [bool; 3],
    ) -> Result<[Option<Storage>; 3]> {
        let (n, oc, hw, kc, act) = (c.geo.n, c.oc, c.hw(), c.kc(), c.act);
        let image = c.geo.c * c.geo.h * c.geo.w;
        let auto = MatmulChoice::AUTO;
        let pro = saved.map(|y| (y, act));
        let rowsum_ok = need_w && kc > 0;
        let db = if need_b && !rowsum_ok {
            let gp = act_backward(self, act, saved, g, n * oc * hw)?;
            let plan = ReducePlan::new("sum", &[n, oc, c.geo.ho, c.geo.wo], &[0, 2, 3], false)?;
            Some(self.sum(&gp, &plan, 1.0)?)
        } else {
            need_b
                .then(|| gpu_alloc(self, oc).map(Storage::new_gpu))
                .transpose()?
        };
        let dw = if need_w {
            let product = Product {
                m: oc,
                n: kc,
                k: hw,
                batch: vec![n],
                out_batch: vec![],
                sa: vec![oc * hw],
                sb: vec![image],
                a_strides: (hw, 1),
                b_strides: (1, hw),
                summing: true,
            };
            let epi = Epi {
                pro,
                rowsum: db.as_ref().filter(|_| rowsum_ok),
                conv: Some((2, c.taps())),
                ..Epi::default()
            };
            Some(product.run_epi(self, g, x, auto, &epi)?)
        } else {
            None
        };
        let dx = if need_x {
            // The columns' gradient transposed, [N, Ho Wo, C kh kw]: g^T W per image.
            let product = Product {
                m: hw,
                n: kc,
                k: oc,
                batch: vec![n],
                out_batch: vec![n],
                sa: vec![oc * hw],
                sb: vec![0],
                a_strides: (1, hw),
                b_strides: (kc, 1),
                summing: false,
            };
            let epi = Epi {
                pro,
                ..Epi::default()
            };
            let cols_t = product.run_epi(self, g, w, auto, &epi)?;
            Some(super::conv2d::columns(self, &cols_t, &c.geo, false, true)?)
        } else {
            None
        };
        Ok([dx, dw, db])
    }
}
