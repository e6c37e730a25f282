//! Backends: where a tensor's bytes live and how kernels run on them. The CPU backend
//! runs plain Rust loops directly; the GPU backend records WGSL dispatches and submits
//! them through its scheduler. Nothing above this layer names a wgpu type. The
//! elementwise table ([`elementwise`]) defines the elementwise primitives both backends
//! render: the CPU as monomorphic loops, the GPU as generated WGSL.

pub mod cpu;
pub mod elementwise;
pub mod gpu;

use std::sync::Arc;

/// The bytes of a tensor: shared by views (reshape), written in place only by optimizers.
#[derive(Clone)]
pub(crate) enum Storage {
    Cpu(Arc<cpu::CpuStorage>),
    Gpu(Arc<gpu::GpuBuffer>),
}

impl Storage {
    /// True when both handles name the same bytes.
    pub(crate) fn same_as(&self, other: &Storage) -> bool {
        match (self, other) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Arc::ptr_eq(a, b),
            (Storage::Gpu(a), Storage::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}
