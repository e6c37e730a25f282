//! The CPU's fused layers: a product, then one pass for the bias and activation
//! forward, and one for the activation's derivative backward. The fused convolution
//! (`super::conv_fused`) works one image at a time, its columns kept in cache.

use super::conv_fused;
use super::elementwise::CpuBackend;
use super::{map_float2, pool, CpuData, Elem, Float};
use crate::backend::half::cpu_f32;
use crate::backend::matmul::{Act, ConvAct, LinearAct, MatmulChoice, Product};
use crate::backend::reduce::ReducePlan;
use crate::backend::{Fused, Matmul, Reduce, Storage};
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

/// The error for mixed or integer operands of `op`'s float kernel.
fn mixed(op: &'static str) -> Error {
    Error::DType {
        op,
        msg: "mixed or integer dtypes reached a float kernel".into(),
    }
}

/// `d`'s elements as `T`, or [`mixed`].
fn els<'a, T: Elem>(d: &'a CpuData, op: &'static str) -> Result<&'a [T]> {
    T::of(d).ok_or_else(|| mixed(op))
}

/// The fused convolution's forward in `T`: the output, and the pre-activation when the
/// activation reads its input (then applied row by row into a buffer of its own, as
/// [`bias_act_into`] does for linear layers).
fn conv_forward<T: Elem>(
    c: &ConvAct,
    [x, w]: [&CpuData; 2],
    bias: Option<&CpuData>,
) -> Result<(CpuData, Option<CpuData>)> {
    let (x, w) = (els::<T>(x, "conv2d")?, els::<T>(w, "conv2d")?);
    let bias = bias.map(|b| els::<T>(b, "conv2d")).transpose()?;
    if c.act.needs_input() && c.save {
        let mut pre = conv_fused::forward(c, x, w, bias, Act::Identity);
        let y = bias_act_into(&mut pre, None, c.act, c.hw());
        return Ok((T::data(y), Some(T::data(pre))));
    }
    Ok((T::data(conv_fused::forward(c, x, w, bias, c.act)), None))
}

/// The fused convolution's backward in `T`.
fn conv_backward<T: Elem>(
    c: &ConvAct,
    [g, x, w]: [&CpuData; 3],
    saved: Option<&CpuData>,
    need: [bool; 3],
) -> Result<[Option<Storage>; 3]> {
    let op = "conv2d";
    let (g, x, w) = (els::<T>(g, op)?, els::<T>(x, op)?, els::<T>(w, op)?);
    let saved = saved.map(|s| els::<T>(s, op)).transpose()?;
    let grads = conv_fused::backward(c, g, saved, x, w, need);
    Ok(grads.map(|o| o.map(|v| Storage::new_cpu(T::data(v)))))
}

/// Work units per element of [`bias_act_into`] when splitting rows over threads (the
/// activations that read their input are the costly ones: GELU, SiLU, Mish).
const BIAS_ACT_WORK: usize = 16;

/// Adds the bias to each row of `pre` (rows of `n`) in place and returns `act` of it,
/// row by row while the row is in cache, rows split over threads.
fn bias_act_into<T: Float>(pre: &mut [T], bias: Option<&[T]>, act: Act, n: usize) -> Vec<T> {
    let n = n.max(1);
    let rows = pre.len() / n;
    let mut y: Vec<T> = pool::with_capacity(pre.len());
    let yp = super::parallel::SendPtr(y.as_mut_ptr());
    let work = pre.len().saturating_mul(BIAS_ACT_WORK);
    super::parallel::for_blocks_mut(pre, rows, work, |first, block| {
        // The whole wrapper (not its raw-pointer field) is what the parts share.
        let yp = &yp;
        for (r, row) in block.chunks_exact_mut(n).enumerate() {
            if let Some(b) = bias {
                for (v, &bv) in row.iter_mut().zip(b) {
                    *v += bv;
                }
            }
            // SAFETY: `y` has room for every row; each row (so each block of rows) is
            // written by one part only, and the copy initialises it before the slice
            // over it is formed.
            let out = unsafe {
                let at = yp.0.add((first + r) * n);
                std::ptr::copy_nonoverlapping(row.as_ptr(), at, n);
                std::slice::from_raw_parts_mut(at, n)
            };
            act.apply_slice(out);
        }
    });
    // SAFETY: every row was copied in above.
    unsafe { y.set_len(rows * n) };
    y
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

impl Fused for CpuBackend {
    fn linear_act(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        addend: Option<&Storage>,
        l: &LinearAct,
    ) -> Result<(Storage, Option<Storage>)> {
        let _span = super::profile::span("linear_act");
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
            if needs_input {
                // An activation that reads its input keeps the pre-activation for the
                // backward: the bias added, each row copied into the output and the
                // activation applied there while the row is in cache (one pass, not a
                // bias pass, a copy and an activation pass over the whole output).
                let act_out = match (&mut *yd, bias_data.as_deref()) {
                    (CpuData::F32(v), Some(CpuData::F32(b))) => {
                        CpuData::F32(bias_act_into(v, Some(b), l.act, out))
                    }
                    (CpuData::F64(v), Some(CpuData::F64(b))) => {
                        CpuData::F64(bias_act_into(v, Some(b), l.act, out))
                    }
                    (CpuData::F32(v), None) => CpuData::F32(bias_act_into(v, None, l.act, out)),
                    (CpuData::F64(v), None) => CpuData::F64(bias_act_into(v, None, l.act, out)),
                    _ => return Err(mixed("linear_act")),
                };
                drop(yd);
                return Ok((Storage::new_cpu(act_out), Some(y)));
            }
            match (&mut *yd, bias_data.as_deref()) {
                (CpuData::F32(v), Some(CpuData::F32(b))) => bias_act_cpu(v, Some(b), in_place, out),
                (CpuData::F64(v), Some(CpuData::F64(b))) => bias_act_cpu(v, Some(b), in_place, out),
                (CpuData::F32(v), None) => bias_act_cpu::<f32>(v, None, in_place, out),
                (CpuData::F64(v), None) => bias_act_cpu::<f64>(v, None, in_place, out),
                _ => return Err(mixed("linear_act")),
            }
        }
        Ok((y, None))
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
        let _span = super::profile::span("linear_act_backward");
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
        true
    }

    fn conv_act(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        c: &ConvAct,
    ) -> Result<(Storage, Option<Storage>)> {
        let mut span = super::profile::span("conv_act");
        span.product(c.oc, c.hw(), c.kc(), c.geo.n);
        let (x, w, bias) = (cpu_f32(x), cpu_f32(w), bias.map(cpu_f32));
        let (xd, wd) = (x.cpu("conv2d")?.read(), w.cpu("conv2d")?.read());
        let bd = bias.as_deref().map(|b| b.cpu("conv2d")).transpose()?;
        let bd = bd.as_ref().map(|b| b.read());
        let (y, pre) = match &*xd {
            CpuData::F64(_) => conv_forward::<f64>(c, [&xd, &wd], bd.as_deref())?,
            _ => conv_forward::<f32>(c, [&xd, &wd], bd.as_deref())?,
        };
        Ok((Storage::new_cpu(y), pre.map(Storage::new_cpu)))
    }

    fn conv_act_backward(
        &self,
        g: &Storage,
        saved: Option<&Storage>,
        x: &Storage,
        w: &Storage,
        c: &ConvAct,
        need: [bool; 3],
    ) -> Result<[Option<Storage>; 3]> {
        // The products: one for the weight's gradient, one for the columns'.
        let mut span = super::profile::span("conv_act_backward");
        let products = need[0] as usize + need[1] as usize;
        span.product(c.oc, c.hw(), c.kc(), c.geo.n * products);
        let (g, x, w, saved) = (cpu_f32(g), cpu_f32(x), cpu_f32(w), saved.map(cpu_f32));
        let (gd, xd, wd) = (
            g.cpu("conv2d")?.read(),
            x.cpu("conv2d")?.read(),
            w.cpu("conv2d")?.read(),
        );
        let sd = saved.as_deref().map(|s| s.cpu("conv2d")).transpose()?;
        let sd = sd.as_ref().map(|s| s.read());
        match &*gd {
            CpuData::F64(_) => conv_backward::<f64>(c, [&gd, &xd, &wd], sd.as_deref(), need),
            _ => conv_backward::<f32>(c, [&gd, &xd, &wd], sd.as_deref(), need),
        }
    }
}
