//! The CPU backend's layout and indexing primitives: fills, strided copies and scatters
//! (slice copies where the region has long contiguous runs), `index_select`, `gather`,
//! `where` and their backwards.

use super::elementwise::CpuBackend;
use super::pool::{self, CollectPooled, Pooled};
use super::{map_float, strided_offset, CpuData, Float};
use crate::backend::layout::{Fill, Indexed, Pick, Region, WhereGeo};
use crate::backend::{Indexing, Layout, Storage};
use crate::error::{arg_err, Error, Result};
use crate::tensor::DType;

/// Regions whose contiguous runs are at least this long move as slice copies.
const LONG_RUN: usize = 16;

/// Rebuilds CPU data of any dtype by reading the offsets `src` yields, in order.
fn cpu_gather(d: &CpuData, src: impl Iterator<Item = usize>) -> CpuData {
    match d {
        CpuData::F32(v) => CpuData::F32(src.map(|i| v[i]).collect_pooled()),
        CpuData::F64(v) => CpuData::F64(src.map(|i| v[i]).collect_pooled()),
        CpuData::U32(v) => CpuData::U32(src.map(|i| v[i]).collect_pooled()),
    }
}

/// Rebuilds CPU data of any dtype by reading `src(i)` for each output element.
fn cpu_remap(d: &CpuData, n: usize, src: impl Fn(usize) -> usize) -> CpuData {
    match d {
        CpuData::F32(v) => CpuData::F32((0..n).map(|i| v[src(i)]).collect_pooled()),
        CpuData::F64(v) => CpuData::F64((0..n).map(|i| v[src(i)]).collect_pooled()),
        CpuData::U32(v) => CpuData::U32((0..n).map(|i| v[src(i)]).collect_pooled()),
    }
}

/// `index_select`'s output: for each outer position and each index, the picked row of
/// `inner` elements, copied whole.
fn select_rows<T: Pooled>(geo: &Indexed, idx: &[u32], x: &[T]) -> Vec<T> {
    let inner = geo.inner;
    let mut out = pool::with_capacity(geo.out_len());
    for o in 0..geo.outer {
        for &k in &idx[..geo.j] {
            let at = (o * geo.size + k as usize) * inner;
            out.extend_from_slice(&x[at..at + inner]);
        }
    }
    out
}

/// The region `r` of `src` as a contiguous vector, a slice copy per run.
fn gather_runs<T: Pooled + Default>(src: &[T], r: Region) -> Vec<T> {
    let mut out = pool::filled(r.numel(), T::default());
    r.for_each_run(|o, i, run| out[i..i + run].copy_from_slice(&src[r.base + o..r.base + o + run]));
    out
}

/// Writes `src` into the region `r` of `dst`: a slice copy per run when they are long,
/// else element by element.
fn scatter<T: Copy>(dst: &mut [T], src: &[T], r: Region) {
    if r.contiguous_runs().0 >= LONG_RUN {
        r.for_each_run(|o, i, run| {
            dst[r.base + o..r.base + o + run].copy_from_slice(&src[i..i + run])
        });
        return;
    }
    r.offsets()
        .take(src.len())
        .zip(src)
        .for_each(|(k, &x)| dst[k] = x);
}

/// The values of a `u32` index storage.
fn indices<'a>(op: &'static str, d: &'a CpuData) -> Result<&'a [u32]> {
    match d {
        CpuData::U32(v) => Ok(v),
        _ => Err(Error::DType {
            op,
            msg: "the indices are not u32".into(),
        }),
    }
}

/// A float kernel given data it does not take.
fn mismatched<T>(op: &'static str) -> Result<T> {
    Err(Error::DType {
        op,
        msg: "the storages hold different or non-float element types".into(),
    })
}

impl Layout for CpuBackend {
    fn fill(&self, n: usize, value: Fill) -> Result<Storage> {
        let _span = super::profile::span("fill");
        Ok(Storage::new_cpu(match value {
            Fill::F32(v) => CpuData::F32(pool::filled(n, v)),
            Fill::F64(v) => CpuData::F64(pool::filled(n, v)),
            Fill::U32(v) => CpuData::U32(pool::filled(n, v)),
        }))
    }

    fn cast(&self, x: &Storage, _n: usize, _from: DType, to: DType) -> Result<Storage> {
        let _span = super::profile::span("cast");
        let v = x.cpu("to_dtype")?.read().to_f64_vec();
        Ok(Storage::new_cpu(match to {
            DType::F32 => CpuData::F32(v.iter().map(|&x| x as f32).collect_pooled()),
            DType::F64 => CpuData::F64(v),
            DType::U32 => CpuData::U32(v.iter().map(|&x| x as u32).collect_pooled()),
            DType::F16 | DType::BF16 => return crate::backend::half::not_yet("cast", to),
        }))
    }

    fn copy_region(&self, x: &Storage, _x_len: usize, r: Region) -> Result<Storage> {
        let _span = super::profile::span("copy_region");
        let d = x.cpu("strided_copy")?.read();
        if r.contiguous_runs().0 < LONG_RUN {
            return Ok(Storage::new_cpu(cpu_gather(&d, r.offsets())));
        }
        // Long contiguous runs: slice copies.
        Ok(Storage::new_cpu(match &*d {
            CpuData::F32(v) => CpuData::F32(gather_runs(v, r)),
            CpuData::F64(v) => CpuData::F64(gather_runs(v, r)),
            CpuData::U32(v) => CpuData::U32(gather_runs(v, r)),
        }))
    }

    fn scatter_region(
        &self,
        dst: &Storage,
        _dst_len: usize,
        src: &Storage,
        r: Region,
    ) -> Result<()> {
        let _span = super::profile::span("scatter_region");
        if dst.same_as(src) {
            return arg_err(
                "strided_scatter",
                "a storage cannot be scattered into itself",
            );
        }
        let s = src.cpu("strided_scatter")?.read();
        let mut d = dst.cpu("strided_scatter")?.write();
        match (&mut *d, &*s) {
            (CpuData::F32(o), CpuData::F32(v)) => scatter(o, v, r),
            (CpuData::F64(o), CpuData::F64(v)) => scatter(o, v, r),
            (CpuData::U32(o), CpuData::U32(v)) => scatter(o, v, r),
            _ => {
                return Err(Error::DType {
                    op: "strided_scatter",
                    msg: "the two storages hold different element types".into(),
                })
            }
        }
        Ok(())
    }
}

impl Indexing for CpuBackend {
    fn index(&self, x: &Storage, idx: &Storage, geo: &Indexed) -> Result<Storage> {
        let _span = super::profile::span("index");
        let op = geo.name();
        let id = idx.cpu(op)?.read();
        let iv = indices(op, &id)?;
        if let Some(&bad) = iv.iter().find(|&&k| k as usize >= geo.size) {
            return arg_err(
                op,
                format!("index {bad} is out of range for size {}", geo.size),
            );
        }
        let xd = x.cpu(op)?.read();
        let out = match (geo.pick, &*xd) {
            // Whole rows of `inner` elements: a copy per picked row.
            (Pick::Select, CpuData::F32(v)) => CpuData::F32(select_rows(geo, iv, v)),
            (Pick::Select, CpuData::F64(v)) => CpuData::F64(select_rows(geo, iv, v)),
            (Pick::Select, CpuData::U32(v)) => CpuData::U32(select_rows(geo, iv, v)),
            _ => cpu_remap(&xd, geo.out_len(), |i| geo.source(i, iv)),
        };
        Ok(Storage::new_cpu(out))
    }

    fn index_backward(&self, g: &Storage, idx: &Storage, geo: &Indexed) -> Result<Storage> {
        let _span = super::profile::span("index_backward");
        let op = geo.name();
        let id = idx.cpu(op)?.read();
        let iv = indices(op, &id)?;
        let gd = g.cpu(op)?.read();
        if matches!(&*gd, CpuData::U32(_)) {
            return mismatched(op);
        }
        Ok(Storage::new_cpu(map_float!(&*gd, |gv: T| {
            let mut dx = pool::filled(geo.in_len(), T::zero());
            if geo.pick == Pick::Select {
                // Each output row adds into its picked input row, in output order.
                let inner = geo.inner.max(1);
                for (r, grow) in gv.chunks_exact(inner).enumerate() {
                    let (o, jj) = (r / geo.j, r % geo.j);
                    let at = (o * geo.size + iv[jj] as usize) * inner;
                    for (d, &v) in dx[at..at + inner].iter_mut().zip(grow) {
                        *d += v;
                    }
                }
            } else {
                for (i, &gi) in gv.iter().enumerate() {
                    dx[geo.source(i, iv)] += gi;
                }
            }
            dx
        })))
    }

    fn where_cond(
        &self,
        cond: &Storage,
        a: &Storage,
        b: &Storage,
        geo: &WhereGeo,
    ) -> Result<Storage> {
        let _span = super::profile::span("where_cond");
        let (cd, ad, bd) = (
            cond.cpu("where")?.read(),
            a.cpu("where")?.read(),
            b.cpu("where")?.read(),
        );
        let c = cd.to_f64_vec();
        let (out, n) = (&geo.out, geo.n());
        let pick = |i: usize| c[strided_offset(i, out, &geo.sc)] != 0.0;
        fn select<T: Copy>(
            n: usize,
            pick: impl Fn(usize) -> bool,
            x: &[T],
            z: &[T],
            geo: &WhereGeo,
        ) -> Vec<T> {
            (0..n)
                .map(|i| {
                    if pick(i) {
                        x[strided_offset(i, &geo.out, &geo.sa)]
                    } else {
                        z[strided_offset(i, &geo.out, &geo.sb)]
                    }
                })
                .collect()
        }
        let data = match (&*ad, &*bd) {
            (CpuData::F32(x), CpuData::F32(z)) => CpuData::F32(select(n, pick, x, z, geo)),
            (CpuData::F64(x), CpuData::F64(z)) => CpuData::F64(select(n, pick, x, z, geo)),
            _ => return mismatched("where"),
        };
        Ok(Storage::new_cpu(data))
    }

    fn where_backward(
        &self,
        cond: &Storage,
        g: &Storage,
        geo: &WhereGeo,
    ) -> Result<(Storage, Storage)> {
        let _span = super::profile::span("where_backward");
        let c = cond.cpu("where")?.read().to_f64_vec();
        let n = geo.n();
        let keep: Vec<f64> = (0..n)
            .map(|i| (c[strided_offset(i, &geo.out, &geo.sc)] != 0.0) as u8 as f64)
            .collect();
        let gd = g.cpu("where")?.read();
        if matches!(&*gd, CpuData::U32(_)) {
            return mismatched("where");
        }
        let da = map_float!(&*gd, |gv: T| (0..n)
            .map(|i| gv[i] * T::from_f64(keep[i]))
            .collect());
        let db = map_float!(&*gd, |gv: T| (0..n)
            .map(|i| gv[i] * T::from_f64(1.0 - keep[i]))
            .collect());
        Ok((Storage::new_cpu(da), Storage::new_cpu(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_copies_and_scatters_round_trip() {
        let b = CpuBackend;
        // A 2 x 3 block of a 4 x 20 matrix (short runs) and a 2 x 20 one (long runs).
        let x = Storage::new_cpu(CpuData::F32((0..80).map(|v| v as f32).collect()));
        for (shape, base, runs) in [([2usize, 3usize], 21usize, (3, 1)), ([2, 20], 20, (40, 0))] {
            let r = Region {
                shape: &shape,
                strides: &[20, 1],
                base,
            };
            assert_eq!(r.contiguous_runs(), runs);
            let part = b.copy_region(&x, 80, r).unwrap();
            let want: Vec<f32> = r.offsets().map(|o| o as f32).collect();
            match &*part.cpu("t").unwrap().read() {
                CpuData::F32(v) => assert_eq!(v, &want),
                _ => panic!("f32 expected"),
            }
            let dst = b.fill(80, Fill::F32(-1.0)).unwrap();
            b.scatter_region(&dst, 80, &part, r).unwrap();
            match &*dst.cpu("t").unwrap().read() {
                CpuData::F32(v) => {
                    for (k, &e) in v.iter().enumerate() {
                        let inside = r.offsets().any(|o| o == k);
                        assert_eq!(e, if inside { k as f32 } else { -1.0 });
                    }
                }
                _ => panic!("f32 expected"),
            }
            assert!(b.scatter_region(&dst, 80, &dst, r).is_err());
        }
    }
}
