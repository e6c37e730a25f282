//! The CPU backend's in-place updates: one pass over `dst`'s storage under its write
//! lock, no new storage, split over threads when large ([`parallel::MIN_WORK`]).

use super::elementwise::CpuBackend;
use super::{parallel, CpuData, Float};
use crate::backend::broadcast::Broadcast;
use crate::backend::inplace::{InplaceOp, MapInplace};
use crate::backend::{Inplace, Storage};
use crate::error::{Error, Result};
use crate::shape;

/// The `f32` or `f64` slice of a storage's data.
trait Elem: Float + Sync {
    fn of(d: &CpuData) -> Option<&[Self]>;
}

impl Elem for f32 {
    fn of(d: &CpuData) -> Option<&[f32]> {
        match d {
            CpuData::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Elem for f64 {
    fn of(d: &CpuData) -> Option<&[f64]> {
        match d {
            CpuData::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// An operand as the loop reads it.
#[derive(Clone, Copy)]
enum Src<'a, T> {
    /// Its own storage.
    Slice(&'a [T]),
    /// `dst`'s storage (same layout): the value before the update.
    Dst,
    /// Not read by the update.
    Unused,
}

/// Where a CPU storage's lock lives (0 for a GPU storage, which `cpu` then refuses).
fn address(s: &Storage) -> usize {
    match s {
        Storage::Cpu(c) => std::sync::Arc::as_ptr(c) as usize,
        Storage::Gpu(_) | Storage::Half(_) => 0,
    }
}

fn dtype_err<T>() -> Result<T> {
    Err(Error::DType {
        op: "inplace update",
        msg: "the updated tensor and its operands must be of one float type".into(),
    })
}

impl Inplace for CpuBackend {
    fn update(
        &self,
        op: InplaceOp,
        dst: &Storage,
        a: Option<&Storage>,
        b: Option<&Storage>,
        geo: &Broadcast,
    ) -> Result<()> {
        let _span = super::profile::span("update");
        let name = "inplace update";
        if shape::numel(&geo.out) == 0 {
            return Ok(());
        }
        // Read locks on the operands other than dst (one when a and b are one storage)
        // and dst's write lock, taken in address order so that two threads updating
        // each other's operands cannot deadlock; an operand that is dst is read
        // through dst's lock.
        let (a_own, b_own) = (a.filter(|s| !s.same_as(dst)), b.filter(|s| !s.same_as(dst)));
        let b_is_a = matches!((a_own, b_own), (Some(x), Some(y)) if x.same_as(y));
        let mut order: Vec<(usize, u8, &Storage)> = vec![(address(dst), 0, dst)];
        order.extend(a_own.map(|s| (address(s), 1, s)));
        order.extend(b_own.filter(|_| !b_is_a).map(|s| (address(s), 2, s)));
        order.sort_by_key(|&(at, which, _)| (at, which));
        let (mut ga, mut gb, mut gd) = (None, None, None);
        for (_, which, s) in order {
            let c = s.cpu(name)?;
            match which {
                0 => gd = Some(c.write()),
                1 => ga = Some(c.read()),
                _ => gb = Some(c.read()),
            }
        }
        let Some(mut gd) = gd else {
            return dtype_err();
        };
        let b_guard = if b_is_a { ga.as_deref() } else { gb.as_deref() };
        match &mut *gd {
            CpuData::F32(d) => run(
                op,
                d,
                operand(ga.as_deref(), a.is_some())?,
                operand(b_guard, b.is_some())?,
                geo,
            ),
            CpuData::F64(d) => run(
                op,
                d,
                operand(ga.as_deref(), a.is_some())?,
                operand(b_guard, b.is_some())?,
                geo,
            ),
            CpuData::U32(_) => dtype_err(),
        }
    }
}

/// The loop's view of an operand: its own data (`guard`), else `dst` itself when
/// `given`, else nothing.
fn operand<T: Elem>(guard: Option<&CpuData>, given: bool) -> Result<Src<'_, T>> {
    match (guard, given) {
        (Some(g), _) => T::of(g).map_or_else(dtype_err, |s| Ok(Src::Slice(s))),
        (None, true) => Ok(Src::Dst),
        (None, false) => Ok(Src::Unused),
    }
}

/// Runs `op` over `d` with the operands `a`, `b` read through `geo`.
fn run<T: Elem>(
    op: InplaceOp,
    d: &mut [T],
    a: Src<'_, T>,
    b: Src<'_, T>,
    geo: &Broadcast,
) -> Result<()> {
    let n = shape::numel(&geo.out);
    if d.len() < n {
        return dtype_err();
    }
    // An operand read from dst or not at all gets strides 0 over a one-element slice,
    // and the loop substitutes dst's value for one read from dst.
    let zero = [T::zero()];
    let view = |s: Src<'_, T>, given: &[usize]| -> Vec<usize> {
        match s {
            Src::Slice(_) => given.to_vec(),
            _ => vec![0; given.len()],
        }
    };
    let g = Broadcast {
        out: geo.out.clone(),
        sa: view(a, &geo.sa),
        sb: view(b, &geo.sb),
    };
    fn data<'a, T>(s: Src<'a, T>, zero: &'a [T]) -> &'a [T] {
        match s {
            Src::Slice(v) => v,
            _ => zero,
        }
    }
    op.map(Loop {
        d: &mut d[..n],
        a: data(a, &zero),
        b: data(b, &zero),
        geo: &g,
        a_dst: matches!(a, Src::Dst),
        b_dst: matches!(b, Src::Dst),
    });
    Ok(())
}

/// The update's loop over `d`.
struct Loop<'a, T> {
    d: &'a mut [T],
    a: &'a [T],
    b: &'a [T],
    geo: &'a Broadcast,
    /// Whether `a` (`b`) is `d` itself.
    a_dst: bool,
    b_dst: bool,
}

impl<T: Elem> MapInplace<T> for Loop<'_, T> {
    type Out = ();
    fn run<F: Fn(T, T, T) -> T + Sync>(self, f: F) {
        let Loop {
            d,
            a,
            b,
            geo,
            a_dst,
            b_dst,
        } = self;
        // One monomorphic loop per aliasing pattern.
        match (a_dst, b_dst) {
            (false, false) => sweep(d, a, b, geo, f),
            (true, false) => sweep(d, a, b, geo, |x, _, y| f(x, x, y)),
            (false, true) => sweep(d, a, b, geo, |x, y, _| f(x, y, x)),
            (true, true) => sweep(d, a, b, geo, |x, _, _| f(x, x, x)),
        }
    }
}

/// `d[i] = f(d[i], a[.], b[.])` over the collapsed geometry, in contiguous runs of
/// `d` (on several threads past [`parallel::MIN_WORK`] elements).
fn sweep<T: Elem, F: Fn(T, T, T) -> T + Sync>(
    d: &mut [T],
    a: &[T],
    b: &[T],
    geo: &Broadcast,
    f: F,
) {
    let (shape_, sa, sb) = geo.collapsed();
    let Some((&inner, outer)) = shape_.split_last() else {
        d[0] = f(d[0], a[0], b[0]);
        return;
    };
    let (ia, ib) = (sa[sa.len() - 1], sb[sb.len() - 1]);
    let (oa, ob) = (&sa[..sa.len() - 1], &sb[..sb.len() - 1]);
    let n = d.len();
    parallel::for_blocks_mut(d, n, n, |start, part| {
        let mut done = 0;
        while done < part.len() {
            let i = start + done;
            let (mut row, k0) = (i / inner, i % inner);
            let len = (inner - k0).min(part.len() - done);
            let (mut ba, mut bb) = (k0 * ia, k0 * ib);
            for dim in (0..outer.len()).rev() {
                let at = row % outer[dim];
                row /= outer[dim];
                ba += at * oa[dim];
                bb += at * ob[dim];
            }
            let out = &mut part[done..done + len];
            match (ia, ib) {
                (1, 1) => {
                    for ((o, &x), &y) in out.iter_mut().zip(&a[ba..ba + len]).zip(&b[bb..bb + len])
                    {
                        *o = f(*o, x, y);
                    }
                }
                (1, 0) => {
                    let y = b[bb];
                    for (o, &x) in out.iter_mut().zip(&a[ba..ba + len]) {
                        *o = f(*o, x, y);
                    }
                }
                (0, 1) => {
                    let x = a[ba];
                    for (o, &y) in out.iter_mut().zip(&b[bb..bb + len]) {
                        *o = f(*o, x, y);
                    }
                }
                (0, 0) => {
                    let (x, y) = (a[ba], b[bb]);
                    for o in out.iter_mut() {
                        *o = f(*o, x, y);
                    }
                }
                _ => {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = f(*o, a[ba + k * ia], b[bb + k * ib]);
                    }
                }
            }
            done += len;
        }
    });
}
