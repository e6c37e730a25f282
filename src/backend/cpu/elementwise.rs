//! The CPU backend's elementwise primitives: the elementwise table's rows as
//! monomorphic loops (one per row, the match outside the loop), in `f32` or `f64`.

use super::pool;
use super::{map_float, map_float2, CpuData, Float};
use crate::backend::broadcast::Broadcast;
use crate::backend::elementwise::binary::{BinaryOp, CompareOp, MapBackward2, MapForward2};
use crate::backend::elementwise::UnaryOp;
use crate::backend::half::cpu_f32;
use crate::backend::{Elementwise, PreluGeo, Storage};
use crate::error::Result;

/// The CPU backend (its state is the process's: threads and the buffer pool).
pub(crate) struct CpuBackend;

/// Runs `f` on the matching `f32` or `f64` slices of three buffers.
macro_rules! float3 {
    ($a:expr, $b:expr, $c:expr, |$x:ident, $y:ident, $z:ident: $T:ident| $body:expr) => {
        match ($a, $b, $c) {
            (CpuData::F32($x), CpuData::F32($y), CpuData::F32($z)) => {
                #[allow(dead_code)]
                type $T = f32;
                let (p, q) = $body;
                (CpuData::F32(p), CpuData::F32(q))
            }
            (CpuData::F64($x), CpuData::F64($y), CpuData::F64($z)) => {
                #[allow(dead_code)]
                type $T = f64;
                let (p, q) = $body;
                (CpuData::F64(p), CpuData::F64(q))
            }
            _ => {
                return Err(crate::error::Error::DType {
                    op: "backward",
                    msg: "mixed or integer dtypes reached a float kernel".into(),
                })
            }
        }
    };
}

impl Elementwise for CpuBackend {
    fn unary(&self, op: UnaryOp, x: &Storage, _n: usize) -> Result<Storage> {
        let _span = super::profile::span("unary");
        let x = cpu_f32(x);
        let x = x.cpu(op.name())?.read();
        Ok(Storage::new_cpu(map_float!(&*x, |v: T| op.forward_vec(v))))
    }

    fn unary_backward(&self, op: UnaryOp, s: &Storage, g: &Storage, _n: usize) -> Result<Storage> {
        let _span = super::profile::span("unary_backward");
        let (s, g) = (cpu_f32(s), cpu_f32(g));
        let (s, g) = (s.cpu(op.name())?.read(), g.cpu(op.name())?.read());
        Ok(Storage::new_cpu(
            map_float2!(&*g, &*s, |gv, sv: T| op.backward_vec(gv, sv))
        ))
    }

    fn prelu(&self, x: &Storage, w: &Storage, geo: PreluGeo) -> Result<Storage> {
        let _span = super::profile::span("prelu");
        let (x, w) = (x.cpu("prelu")?.read(), w.cpu("prelu")?.read());
        let channel = channel_of(geo);
        Ok(Storage::new_cpu(map_float2!(&*x, &*w, |xv, wv: T| {
            xv.iter()
                .enumerate()
                .map(|(i, &a)| if a > T::zero() { a } else { wv[channel(i)] * a })
                .collect()
        })))
    }

    fn prelu_backward(
        &self,
        x: &Storage,
        w: &Storage,
        g: &Storage,
        geo: PreluGeo,
    ) -> Result<(Storage, Storage)> {
        let _span = super::profile::span("prelu_backward");
        let (x, w, g) = (
            x.cpu("prelu")?.read(),
            w.cpu("prelu")?.read(),
            g.cpu("prelu")?.read(),
        );
        let channel = channel_of(geo);
        let (dx, dw) = float3!(&*x, &*w, &*g, |xv, wv, gv: T| {
            xv.iter()
                .zip(gv.iter())
                .enumerate()
                .map(|(i, (&a, &gi))| {
                    if a > T::zero() {
                        (gi, T::zero())
                    } else {
                        (wv[channel(i)] * gi, gi * a)
                    }
                })
                .unzip::<T, T, Vec<T>, Vec<T>>()
        });
        Ok((Storage::new_cpu(dx), Storage::new_cpu(dw)))
    }

    fn binary(&self, op: BinaryOp, a: &Storage, b: &Storage, geo: &Broadcast) -> Result<Storage> {
        let _span = super::profile::span("binary");
        let (a, b) = (cpu_f32(a), cpu_f32(b));
        let (a, b) = (a.cpu(op.name())?.read(), b.cpu(op.name())?.read());
        // One monomorphic loop per row of the table (the match is outside the loop).
        struct Loop<'a, T>(&'a Broadcast, &'a [T], &'a [T]);
        impl<T: Float> MapForward2<T> for Loop<'_, T> {
            type Out = Vec<T>;
            fn run<F: Fn(T, T) -> T>(self, f: F) -> Vec<T> {
                self.0.map(self.1, self.2, f)
            }
        }
        Ok(Storage::new_cpu(
            map_float2!(&*a, &*b, |av, bv: T| op.map_forward(Loop(geo, av, bv)))
        ))
    }

    fn binary_backward(
        &self,
        op: BinaryOp,
        a: &Storage,
        b: &Storage,
        g: &Storage,
        geo: &Broadcast,
    ) -> Result<(Storage, Storage)> {
        let _span = super::profile::span("binary_backward");
        let name = op.name();
        let (a, b, g) = (cpu_f32(a), cpu_f32(b), cpu_f32(g));
        let (a, b, g) = (
            a.cpu(name)?.read(),
            b.cpu(name)?.read(),
            g.cpu(name)?.read(),
        );
        struct Loop<'a, T>(&'a Broadcast, &'a [T], &'a [T], &'a [T]);
        impl<T: Float> MapBackward2<T> for Loop<'_, T> {
            type Out = (Vec<T>, Vec<T>);
            fn run<F: Fn(T, T, T) -> (T, T)>(self, f: F) -> (Vec<T>, Vec<T>) {
                let Loop(geo, a, b, g) = self;
                let mut da = pool::with_capacity(g.len());
                let mut db = pool::with_capacity(g.len());
                let mut i = 0;
                geo.for_each_offset(|ia, ib| {
                    let (x, y) = f(g[i], a[ia], b[ib]);
                    da.push(x);
                    db.push(y);
                    i += 1;
                });
                (da, db)
            }
        }
        let (da, db) = float3!(&*a, &*b, &*g, |av, bv, gv: T| op
            .map_backward(Loop(geo, av, bv, gv)));
        Ok((Storage::new_cpu(da), Storage::new_cpu(db)))
    }

    fn compare(
        &self,
        op: CompareOp,
        a: &Storage,
        b: &Storage,
        geo: &Broadcast,
        _dtype: crate::tensor::DType,
    ) -> Result<Storage> {
        let _span = super::profile::span("compare");
        let (a, b) = (a.cpu("compare")?.read(), b.cpu("compare")?.read());
        if let (CpuData::U32(av), CpuData::U32(bv)) = (&*a, &*b) {
            let mut out = pool::with_capacity(crate::shape::numel(&geo.out));
            geo.for_each_offset(|ia, ib| out.push(u32::from(op.test(av[ia], bv[ib]))));
            return Ok(Storage::new_cpu(CpuData::U32(out)));
        }
        Ok(Storage::new_cpu(map_float2!(&*a, &*b, |av, bv: T| geo
            .map(av, bv, |x, y| {
                if op.test(x, y) {
                    T::one()
                } else {
                    T::zero()
                }
            }))))
    }
}

/// The slope index of element `i`.
fn channel_of(geo: PreluGeo) -> impl Fn(usize) -> usize {
    move |i| {
        if geo.slopes == 1 {
            0
        } else {
            (i / geo.plane) % geo.channels
        }
    }
}
