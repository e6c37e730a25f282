//! Elementwise binary ops with NumPy broadcasting: `add`, `sub`, `mul`, `div`, `pow`,
//! `maximum`, `minimum`, and comparisons (no gradient). Backward kernels compute both
//! input gradients in the output's shape; `sum_to_shape` then reduces them over the
//! broadcast dimensions. Each op saves both inputs.

use std::sync::OnceLock;

use crate::autograd::record;
use crate::backend::cpu::pool::{self, CollectPooled};
use crate::backend::cpu::{map_float2, CpuData, Float, StridedIter};
use crate::backend::elementwise::binary::{MapBackward2, MapForward2};
use crate::backend::gpu::params::{params, Dims, Params};
use crate::backend::gpu::{slot, Kernel, ShaderFile};
use crate::device::Device;
use crate::error::Result;
use crate::ops::{gpu_alloc, groups_1d, kernel, shader_with, split};
use crate::shape;
use crate::tensor::{check_pair, Tensor};

pub(crate) const FILE: ShaderFile = shader_with(
    "binary",
    include_str!("../../shaders/binary.wgsl"),
    crate::backend::gpu::Generated::Fixed(crate::backend::elementwise::binary::wgsl),
)
.with_params(&[&BinaryParams::INFO]);

params! {
    /// The parameters of every kernel in `shaders/binary.wgsl`.
    pub(crate) struct BinaryParams as bp {
        /// Output elements.
        n: u32,
        /// Rank of the collapsed geometry; 0: both inputs are read at the output's own
        /// index.
        rank: u32,
        /// The comparison's code (`CMP_<NAME>`).
        code: u32,
        /// Padding.
        _pad: u32,
        /// The collapsed output shape.
        shape: Dims,
        /// a's strides over it (0 on broadcast dimensions).
        sa: Dims @ (shape, rank),
        /// b's strides over it.
        sb: Dims @ (shape, rank),
    }
}

pub use crate::backend::elementwise::binary::{BinaryOp, CompareOp};

impl BinaryOp {
    /// The op's generated forward and backward kernels.
    /// (The backward is `None` for a row with constant gradients.)
    fn kernels(self) -> (&'static Kernel, Option<&'static Kernel>) {
        static KERNELS: OnceLock<Vec<(Kernel, Option<Kernel>)>> = OnceLock::new();
        let all = KERNELS.get_or_init(|| {
            let make = |entry: String, slots: &'static [u32]| Kernel {
                file: &FILE,
                entry: Box::leak(entry.into_boxed_str()),
                slots,
                extra: &[],
                overrides: &[],
                loops: false,
                params: BinaryParams::INFO.name,
            };
            BinaryOp::ROWS
                .iter()
                .map(|op| {
                    (
                        make(
                            format!("{}_fwd", op.name()),
                            &[slot::X0, slot::X1, slot::Y0],
                        ),
                        op.constant_grads().is_none().then(|| {
                            make(
                                format!("{}_bwd", op.name()),
                                &[slot::X0, slot::X1, slot::X2, slot::Y0, slot::Y1],
                            )
                        }),
                    )
                })
                .collect()
        });
        let at = BinaryOp::ROWS.iter().position(|&r| r == self);
        let (f, b) = &all[at.expect("every variant is a row")];
        (f, b.as_ref())
    }
}

/// Broadcast geometry: output shape and both inputs' strides, as the kernels want them.
struct Broadcast {
    out: Vec<usize>,
    sa: Vec<usize>,
    sb: Vec<usize>,
}

impl Broadcast {
    fn new(op: &'static str, a: &[usize], b: &[usize]) -> Result<Broadcast> {
        let out = shape::broadcast(op, a, b)?;
        shape::check_rank(op, &out)?;
        Ok(Broadcast {
            sa: shape::broadcast_strides(a, &out),
            sb: shape::broadcast_strides(b, &out),
            out,
        })
    }

    /// The same geometry with adjacent dimensions merged wherever both inputs step
    /// through them contiguously (or both broadcast them), so the index arithmetic per
    /// element is as short as possible. Equal shapes collapse to rank 1 with unit strides.
    fn collapsed(&self) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let (mut out, mut sa, mut sb): (Vec<usize>, Vec<usize>, Vec<usize>) =
            (vec![], vec![], vec![]);
        for d in 0..self.out.len() {
            if self.out[d] == 1 {
                continue;
            }
            if let (Some(&a), Some(&b)) = (sa.last(), sb.last()) {
                if a == self.sa[d] * self.out[d] && b == self.sb[d] * self.out[d] {
                    *out.last_mut().unwrap() *= self.out[d];
                    *sa.last_mut().unwrap() = self.sa[d];
                    *sb.last_mut().unwrap() = self.sb[d];
                    continue;
                }
            }
            out.push(self.out[d]);
            sa.push(self.sa[d]);
            sb.push(self.sb[d]);
        }
        (out, sa, sb)
    }

    /// The kernels' parameters (rank 0 tells them both inputs are read at the output's
    /// own index).
    fn params(&self, code: u32) -> BinaryParams {
        let (out, sa, sb) = self.collapsed();
        let direct = out.len() <= 1 && sa.iter().chain(&sb).all(|&s| s == 1);
        BinaryParams {
            n: shape::numel(&self.out) as u32,
            rank: if direct { 0 } else { out.len() as u32 },
            code,
            shape: Dims::of(&out),
            sa: Dims::of(&sa),
            sb: Dims::of(&sb),
            ..Default::default()
        }
    }

    fn map<T: Float>(&self, a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> Vec<T> {
        if a.len() == b.len() && self.sa == self.sb && a.len() == shape::numel(&self.out) {
            return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect_pooled();
        }
        let mut out = pool::with_capacity(shape::numel(&self.out));
        let (shape, sa, sb) = self.collapsed();
        let Some((&inner, outer)) = shape.split_last() else {
            out.push(f(a[0], b[0]));
            return out;
        };
        let (ia, ib) = (sa[sa.len() - 1], sb[sb.len() - 1]);
        let (oa, ob) = (&sa[..sa.len() - 1], &sb[..sb.len() - 1]);
        // Runs along the innermost dimension as slice loops (they vectorise): both inputs
        // contiguous, or one of them broadcast (a bias).
        for (base_a, base_b) in StridedIter::new(outer, oa).zip(StridedIter::new(outer, ob)) {
            match (ia, ib) {
                (1, 1) => out.extend(
                    a[base_a..base_a + inner]
                        .iter()
                        .zip(&b[base_b..base_b + inner])
                        .map(|(&x, &y)| f(x, y)),
                ),
                (1, 0) => {
                    let y = b[base_b];
                    out.extend(a[base_a..base_a + inner].iter().map(|&x| f(x, y)));
                }
                (0, 1) => {
                    let x = a[base_a];
                    out.extend(b[base_b..base_b + inner].iter().map(|&y| f(x, y)));
                }
                _ => out.extend((0..inner).map(|k| f(a[base_a + k * ia], b[base_b + k * ib]))),
            }
        }
        out
    }

    /// Calls `f(offset in a, offset in b)` for every output element in order: an
    /// odometer over the merged outer dimensions and a plain loop over the innermost one
    /// (where broadcasting a bias is a stride of 0).
    fn for_each_offset(&self, mut f: impl FnMut(usize, usize)) {
        let (out, sa, sb) = self.collapsed();
        let Some((&inner, outer)) = out.split_last() else {
            f(0, 0);
            return;
        };
        let (ia, ib) = (sa[sa.len() - 1], sb[sb.len() - 1]);
        let (oa, ob) = (&sa[..sa.len() - 1], &sb[..sb.len() - 1]);
        for (base_a, base_b) in StridedIter::new(outer, oa).zip(StridedIter::new(outer, ob)) {
            for k in 0..inner {
                f(base_a + k * ia, base_b + k * ib);
            }
        }
    }
}

/// Applies a broadcasting binary op, recording the backward.
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    check_pair(op.name(), a, b)?;
    let geo = Broadcast::new(op.name(), a.shape(), b.shape())?;
    crate::ops::check_out(op.name(), &geo.out, a.dtype(), a.device())?;
    let y = match a.device() {
        Device::Cpu => {
            // One monomorphic loop per row of the table (the match is outside the loop).
            struct Loop<'a, T>(&'a Broadcast, &'a [T], &'a [T]);
            impl<T: Float> MapForward2<T> for Loop<'_, T> {
                type Out = Vec<T>;
                fn run<F: Fn(T, T) -> T>(self, f: F) -> Vec<T> {
                    self.0.map(self.1, self.2, f)
                }
            }
            let out = map_float2!(&*a.cpu_data(), &*b.cpu_data(), |av, bv: T| op
                .map_forward(Loop(&geo, av, bv)));
            Tensor::from_cpu(out, geo.out.clone())
        }
        Device::Gpu(_) => binary_gpu(a, b, &geo, op)?,
    };
    let (sa, sb) = (a.detach(), b.detach());
    Ok(record(y, op.name(), &[a, b], move |g| {
        let (da, db) = match op.constant_grads() {
            Some((ca, cb)) => (scaled(g, ca)?, scaled(g, cb)?),
            None => binary_backward(op, &geo, &sa, &sb, g)?,
        };
        Ok(vec![
            Some(da.sum_to_shape(sa.shape())?),
            Some(db.sum_to_shape(sb.shape())?),
        ])
    }))
}

/// `c g` for a constant gradient factor: `g` itself for 1, no launch.
fn scaled(g: &Tensor, c: f64) -> Result<Tensor> {
    if c == 1.0 {
        Ok(g.clone())
    } else if c == -1.0 {
        g.neg()
    } else {
        g.affine(c as f32, 0.0)
    }
}

/// The GPU forward of a binary op (without the graph), in pieces past the binding limit.
fn binary_gpu(a: &Tensor, b: &Tensor, geo: &Broadcast, op: BinaryOp) -> Result<Tensor> {
    let Device::Gpu(g) = a.device() else {
        unreachable!("a GPU op")
    };
    if let Some(mut o) = split::broadcast2(a, b, &[], &geo.out, 1, |p| {
        let piece = Broadcast::new(op.name(), p[0].shape(), p[1].shape())?;
        Ok(vec![binary_gpu(&p[0], &p[1], &piece, op)?])
    })? {
        return Ok(o.remove(0));
    }
    let out = gpu_alloc(g, shape::numel(&geo.out))?;
    g.launch(
        op.kernels().0,
        &geo.params(0),
        &[a.gpu_buf(), b.gpu_buf(), &out],
        groups_1d(shape::numel(&geo.out)),
    );
    Ok(Tensor::from_gpu(out, geo.out.clone(), a.dtype()))
}

fn binary_backward(
    op: BinaryOp,
    geo: &Broadcast,
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let n = shape::numel(&geo.out);
    match a.device() {
        Device::Cpu => {
            let ad = a.cpu_data();
            let bd = b.cpu_data();
            let gd = g.cpu_data();
            let (da, db) = match (&*ad, &*bd, &*gd) {
                (CpuData::F32(x), CpuData::F32(y), CpuData::F32(gv)) => {
                    let (p, q) = backward_loop(op, geo, x, y, gv);
                    (CpuData::F32(p), CpuData::F32(q))
                }
                (CpuData::F64(x), CpuData::F64(y), CpuData::F64(gv)) => {
                    let (p, q) = backward_loop(op, geo, x, y, gv);
                    (CpuData::F64(p), CpuData::F64(q))
                }
                _ => unreachable!("binary dtypes checked"),
            };
            Ok((
                Tensor::from_cpu(da, geo.out.clone()),
                Tensor::from_cpu(db, geo.out.clone()),
            ))
        }
        Device::Gpu(ctx) => {
            if let Some(o) = split::broadcast2(a, b, &[g], &geo.out, 2, |p| {
                let piece = Broadcast::new(op.name(), p[0].shape(), p[1].shape())?;
                let (da, db) = binary_backward(op, &piece, &p[0], &p[1], &p[2])?;
                Ok(vec![da, db])
            })? {
                let [da, db]: [Tensor; 2] = o.try_into().expect("two outputs");
                return Ok((da, db));
            }
            let (da, db) = (gpu_alloc(ctx, n)?, gpu_alloc(ctx, n)?);
            let k = op
                .kernels()
                .1
                .expect("rows without constant gradients have one");
            ctx.launch(
                k,
                &geo.params(0),
                &[a.gpu_buf(), b.gpu_buf(), g.gpu_buf(), &da, &db],
                groups_1d(n),
            );
            Ok((
                Tensor::from_gpu(da, geo.out.clone(), a.dtype()),
                Tensor::from_gpu(db, geo.out.clone(), a.dtype()),
            ))
        }
    }
}

fn backward_loop<T: Float>(
    op: BinaryOp,
    geo: &Broadcast,
    a: &[T],
    b: &[T],
    g: &[T],
) -> (Vec<T>, Vec<T>) {
    struct Loop<'a, T>(&'a Broadcast, &'a [T], &'a [T], &'a [T]);
    impl<T: Float> MapBackward2<T> for Loop<'_, T> {
        type Out = (Vec<T>, Vec<T>);
        fn run<F: Fn(T, T, T) -> (T, T)>(self, f: F) -> (Vec<T>, Vec<T>) {
            let Loop(geo, a, b, g) = self;
            let (mut da, mut db) = (pool::with_capacity(g.len()), pool::with_capacity(g.len()));
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
    op.map_backward(Loop(geo, a, b, g))
}

const COMPARE: &Kernel = kernel!(FILE, "compare_fwd", [X0, X1, Y0], params = BinaryParams);

/// The kernels of this file, for the entry-point test: each row's, and the comparison.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    let mut all = vec![COMPARE];
    for op in BinaryOp::ROWS {
        let (f, b) = op.kernels();
        all.push(f);
        all.extend(b);
    }
    all
}

/// Elementwise comparison with broadcasting: 1.0 where it holds, else 0.0. No gradient.
pub fn compare(a: &Tensor, b: &Tensor, op: CompareOp) -> Result<Tensor> {
    check_pair("compare", a, b)?;
    let geo = Broadcast::new("compare", a.shape(), b.shape())?;
    crate::ops::check_out("compare", &geo.out, a.dtype(), a.device())?;
    Ok(match a.device() {
        Device::Cpu => {
            let out = map_float2!(&*a.cpu_data(), &*b.cpu_data(), |av, bv: T| geo.map(
                av,
                bv,
                |x, y| {
                    if op.test(x, y) {
                        T::one()
                    } else {
                        T::zero()
                    }
                }
            ));
            Tensor::from_cpu(out, geo.out.clone())
        }
        Device::Gpu(g) => {
            if let Some(mut o) = split::broadcast2(a, b, &[], &geo.out, 1, |p| {
                Ok(vec![compare(&p[0], &p[1], op)?])
            })? {
                return Ok(o.remove(0));
            }
            let n = shape::numel(&geo.out);
            let out = gpu_alloc(g, n)?;
            g.launch(
                COMPARE,
                &geo.params(op.code()),
                &[a.gpu_buf(), b.gpu_buf(), &out],
                groups_1d(n),
            );
            Tensor::from_gpu(out, geo.out.clone(), a.dtype())
        }
    })
}

impl Tensor {
    /// Elementwise `self + other`, broadcasting (NumPy's rules).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2], &dev)?;
    /// let b = Tensor::from_vec(vec![10.0f32, 20.0], &[2], &dev)?; // added to every row
    /// assert_eq!(a.add(&b)?.to_vec::<f32>()?, [11.0, 22.0, 13.0, 24.0]);
    /// # Ok(()) }
    /// ```
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Add)
    }
    /// Elementwise `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Sub)
    }
    /// Elementwise `self * other`, broadcasting (NumPy's rules).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &dev)?;
    /// assert_eq!(a.mul(&Tensor::scalar(2.0, &dev)?)?.to_vec::<f32>()?, [2.0, 4.0, 6.0]);
    /// # Ok(()) }
    /// ```
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Mul)
    }
    /// Elementwise `self / other`, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Div)
    }
    /// Elementwise `self ^ other`, broadcasting.
    pub fn pow(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Pow)
    }
    /// Elementwise maximum (ties share the gradient).
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Maximum)
    }
    /// Elementwise minimum (ties share the gradient).
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Minimum)
    }
    /// 1.0 where `self == other`.
    pub fn eq(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Eq)
    }
    /// 1.0 where `self != other`.
    pub fn ne(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Ne)
    }
    /// 1.0 where `self < other`.
    pub fn lt(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Lt)
    }
    /// 1.0 where `self <= other`.
    pub fn le(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Le)
    }
    /// 1.0 where `self > other`.
    pub fn gt(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Gt)
    }
    /// 1.0 where `self >= other`.
    pub fn ge(&self, other: &Tensor) -> Result<Tensor> {
        compare(self, other, CompareOp::Ge)
    }
    /// Sums a broadcast gradient back down to `shape` (no-op when already that shape).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let lead = self.rank() - shape.len();
        let dims: Vec<isize> = (0..self.rank())
            .filter(|&d| d < lead || (shape[d - lead] == 1 && self.shape()[d] != 1))
            .map(|d| d as isize)
            .collect();
        self.sum_dim(&dims, true)?.reshape(shape)
    }
}
