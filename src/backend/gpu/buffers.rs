//! The GPU backend's whole-storage primitives: the binding limit, and range copies in
//! queue order (`copy_buffer_to_buffer`, which no binding limit constrains).

use std::sync::Arc;

use super::kernels::gpu_alloc;
use super::pool::fmt_bytes;
use super::GpuContext;
use crate::backend::{Buffers, Storage};
use crate::error::{arg_err, oom_err, Result};

/// Checks that `[start, start + len)` lies in a buffer of `bytes` bytes.
fn range(op: &'static str, start: usize, len: usize, bytes: u64) -> Result<()> {
    let total = (bytes / 4) as usize;
    match start.checked_add(len) {
        Some(end) if end <= total => Ok(()),
        _ => arg_err(
            op,
            format!("elements {start}..{start}+{len} of a buffer of {total}"),
        ),
    }
}

impl Buffers for Arc<GpuContext> {
    fn binding_elements(&self) -> usize {
        (self.binding_cap() / 4) as usize
    }

    fn take(&self, x: &Storage, start: usize, len: usize) -> Result<Storage> {
        let src = x.gpu("take")?;
        range("take", start, len, src.buffer.size())?;
        let out = gpu_alloc(self, len)?;
        self.copy_range(src, start as u64 * 4, &out, 0, len as u64 * 4);
        Ok(Storage::new_gpu(out))
    }

    fn alloc_like(&self, like: &Storage, len: usize) -> Result<Storage> {
        like.gpu("alloc")?;
        Ok(Storage::new_gpu(gpu_alloc(self, len)?))
    }

    fn check_new(&self, op: &'static str, shape: &[usize], bytes: u64) -> Result<()> {
        let n = crate::shape::numel(shape);
        if n > u32::MAX as usize {
            return oom_err(
                op,
                format!(
                    "{} has {n} elements; GPU kernels index at most 2^32 - 1",
                    crate::shape::fmt(shape)
                ),
            );
        }
        if bytes > self.max_buffer() {
            return oom_err(
                op,
                format!(
                    "{} ({}) is larger than the largest buffer of {} ({})",
                    crate::shape::fmt(shape),
                    fmt_bytes(bytes),
                    self.adapter().name,
                    fmt_bytes(self.max_buffer())
                ),
            );
        }
        Ok(())
    }

    fn put(&self, dst: &Storage, at: usize, src: &Storage, len: usize) -> Result<()> {
        if dst.same_as(src) {
            return arg_err("put", "a buffer cannot be copied into itself");
        }
        let (d, s) = (dst.gpu("put")?, src.gpu("put")?);
        range("put", 0, len, s.buffer.size())?;
        range("put", at, len, d.buffer.size())?;
        self.copy_range(s, 0, d, at as u64 * 4, len as u64 * 4);
        Ok(())
    }
}
