//! Ops: each family in one file with its shape rule, its forward (the kernel it
//! launches on each backend), its backward (the kernels that turn the output gradient
//! into input gradients) and the values it saves. The WGSL lives in `shaders/<family>.wgsl`.
//! [`registry`] lists every op so the gradient suite cannot miss one.

pub mod augment;
pub mod binary;
pub mod conv2d;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod pool2d;
pub mod random;
pub mod reduce;
pub mod registry;
pub mod rnn;
pub mod softmax;
pub mod unary;

use std::sync::Arc;

use crate::backend::gpu::{GpuBuffer, GpuContext, ShaderFile};

pub(crate) const fn shader(name: &'static str, source: &'static str) -> ShaderFile {
    ShaderFile { name, source }
}

/// Every shader file, for validation tests and the pipeline warm-up.
pub fn shader_sources() -> Vec<(&'static str, &'static str)> {
    [
        unary::FILE,
        binary::FILE,
        reduce::FILE,
        layout::FILE,
        matmul::FILE,
        softmax::FILE,
        loss::FILE,
        random::FILE,
        optim::FILE,
        conv2d::FILE,
        pool2d::FILE,
        augment::FILE,
        rnn::FILE,
    ]
    .iter()
    .map(|f| (f.name, f.source))
    .collect()
}

/// Defines a `&'static Kernel` from a file, an entry point and the slots it binds.
macro_rules! kernel {
    ($file:expr, $entry:literal, [$($slot:ident),*]) => {
        &$crate::backend::gpu::Kernel {
            file: &$file,
            entry: $entry,
            slots: &[$($crate::backend::gpu::slot::$slot),*],
        }
    };
}
pub(crate) use kernel;

/// Workgroups for a 1-D launch of `n` threads at 256 per group (split over y past 65535).
pub(crate) fn groups_1d(n: usize) -> [u32; 3] {
    groups_rows(n.div_ceil(256))
}

/// Workgroups for a launch with one workgroup per row.
pub(crate) fn groups_rows(rows: usize) -> [u32; 3] {
    let x = rows.min(65_535);
    let y = if x == 0 { 0 } else { rows.div_ceil(x) };
    [x as u32, y as u32, 1]
}

/// A GPU buffer for `n` 32-bit elements.
pub(crate) fn gpu_alloc(g: &Arc<GpuContext>, n: usize) -> GpuBuffer {
    g.alloc((n * 4) as u64)
}

/// Writes `vals` (padded with zeros to `len`) into a parameter block at `at`.
pub(crate) fn put(params: &mut [u32], at: usize, vals: &[usize], len: usize) {
    for i in 0..len {
        params[at + i] = vals.get(i).map_or(0, |&v| v as u32);
    }
}
