//! The CPU backend's whole-storage primitives: nothing limits a binding, and range
//! copies are slice copies.

use super::elementwise::CpuBackend;
use super::{pool, CpuData};
use crate::backend::gpu::fmt_bytes;
use crate::backend::{Buffers, Storage};
use crate::error::{arg_err, oom_err, Result};

/// `[start, start + len)` of a storage of `total` elements, or an argument error.
fn range(op: &'static str, start: usize, len: usize, total: usize) -> Result<()> {
    match start.checked_add(len) {
        Some(end) if end <= total => Ok(()),
        _ => arg_err(
            op,
            format!("elements {start}..{start}+{len} of a storage of {total}"),
        ),
    }
}

impl Buffers for CpuBackend {
    fn binding_elements(&self) -> usize {
        usize::MAX
    }

    fn take(&self, x: &Storage, start: usize, len: usize) -> Result<Storage> {
        let _span = super::profile::span("take");
        let d = x.cpu("take")?.read();
        range("take", start, len, d.len())?;
        Ok(Storage::new_cpu(match &*d {
            CpuData::F32(v) => CpuData::F32(v[start..start + len].to_vec()),
            CpuData::F64(v) => CpuData::F64(v[start..start + len].to_vec()),
            CpuData::U32(v) => CpuData::U32(v[start..start + len].to_vec()),
        }))
    }

    fn alloc_like(&self, like: &Storage, len: usize) -> Result<Storage> {
        let _span = super::profile::span("alloc_like");
        Ok(Storage::new_cpu(match &*like.cpu("alloc")?.read() {
            CpuData::F32(_) => CpuData::F32(pool::filled(len, 0.0)),
            CpuData::F64(_) => CpuData::F64(pool::filled(len, 0.0)),
            CpuData::U32(_) => CpuData::U32(pool::filled(len, 0)),
        }))
    }

    fn check_new(&self, op: &'static str, shape: &[usize], bytes: u64) -> Result<()> {
        if bytes >= 1 << 30 {
            // Reserve (address space only: nothing is touched) and release at once, so a
            // size the system cannot give is an error here, not an abort later.
            let mut probe: Vec<u8> = Vec::new();
            if usize::try_from(bytes).map_or(true, |b| probe.try_reserve_exact(b).is_err()) {
                return oom_err(
                    op,
                    format!(
                        "{} ({}) is more than the system can allocate",
                        crate::shape::fmt(shape),
                        fmt_bytes(bytes)
                    ),
                );
            }
        }
        Ok(())
    }

    fn put(&self, dst: &Storage, at: usize, src: &Storage, len: usize) -> Result<()> {
        let _span = super::profile::span("put");
        if dst.same_as(src) {
            return arg_err("put", "a storage cannot be copied into itself");
        }
        let s = src.cpu("put")?.read();
        let mut d = dst.cpu("put")?.write();
        range("put", 0, len, s.len())?;
        range("put", at, len, d.len())?;
        match (&mut *d, &*s) {
            (CpuData::F32(d), CpuData::F32(s)) => d[at..at + len].copy_from_slice(&s[..len]),
            (CpuData::F64(d), CpuData::F64(s)) => d[at..at + len].copy_from_slice(&s[..len]),
            (CpuData::U32(d), CpuData::U32(s)) => d[at..at + len].copy_from_slice(&s[..len]),
            _ => {
                return Err(crate::error::Error::DType {
                    op: "put",
                    msg: "the two storages hold different element types".into(),
                })
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_alloc_put_round_trip() {
        let b = CpuBackend;
        let x = Storage::new_cpu(CpuData::F32(vec![1.0, 2.0, 3.0, 4.0]));
        let t = b.take(&x, 1, 2).unwrap();
        assert_eq!(t.cpu("t").unwrap().read().len(), 2);
        let o = b.alloc_like(&x, 5).unwrap();
        b.put(&o, 3, &t, 2).unwrap();
        match &*o.cpu("t").unwrap().read() {
            CpuData::F32(v) => assert_eq!(v, &[0.0, 0.0, 0.0, 2.0, 3.0]),
            _ => panic!("f32 expected"),
        }
        assert!(b.take(&x, 3, 2).is_err());
        assert!(b.put(&o, 4, &t, 2).is_err());
        let u = Storage::new_cpu(CpuData::U32(vec![1, 2]));
        assert!(b.put(&o, 0, &u, 2).is_err());
    }
}
