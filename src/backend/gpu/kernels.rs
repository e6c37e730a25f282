//! What every GPU launcher is built from: shader files (`shader`, `shader_with`,
//! `subgroup_shader`), kernel constants (`kernel!`), grids (`groups_1d`, `groups_rows`)
//! and output buffers (`gpu_alloc`).

use std::sync::Arc;

use super::{Generated, GpuBuffer, GpuContext, ShaderFile};

/// A shader file whose every index and divisor is guarded in the shader (see
/// [`ShaderFile::guarded`]): all of wgrad's files are reviewed to this rule.
pub(crate) const fn shader(name: &'static str, source: &'static str) -> ShaderFile {
    ShaderFile {
        name,
        source,
        guarded: true,
        subgroups: false,
        generated: Generated::None,
        params: &[],
    }
}

/// [`shader`] with generated WGSL between the prelude and `source`.
pub(crate) const fn shader_with(
    name: &'static str,
    source: &'static str,
    generated: Generated,
) -> ShaderFile {
    ShaderFile {
        name,
        source,
        guarded: true,
        subgroups: false,
        generated,
        params: &[],
    }
}

/// [`shader`] for a file that uses subgroup operations.
pub(crate) const fn subgroup_shader(name: &'static str, source: &'static str) -> ShaderFile {
    ShaderFile {
        name,
        source,
        guarded: true,
        subgroups: true,
        generated: Generated::None,
        params: &[],
    }
}

/// Defines a `&'static Kernel` from a file, an entry point and the slots it binds;
/// `loops` marks a kernel whose threads loop over a data-dependent number of elements
/// (its launches declare that number), and `overrides = [...]` names the WGSL override
/// constants its launches set.
macro_rules! kernel {
    ($file:expr, $entry:literal, [$($slot:ident),*] $(, params = $p:ident)?) => {
        $crate::backend::gpu::kernels::kernel!(@make $file, $entry, [$($slot),*], false, [] $(, $p)?)
    };
    ($file:expr, $entry:literal, [$($slot:ident),*], loops $(, params = $p:ident)?) => {
        $crate::backend::gpu::kernels::kernel!(@make $file, $entry, [$($slot),*], true, [] $(, $p)?)
    };
    ($file:expr, $entry:literal, [$($slot:ident),*], loops, overrides = [$($o:literal),*]
     $(, params = $p:ident)?) => {
        $crate::backend::gpu::kernels::kernel!(@make $file, $entry, [$($slot),*], true, [$($o),*] $(, $p)?)
    };
    (@make $file:expr, $entry:literal, [$($slot:ident),*], $loops:expr, [$($o:literal),*]
     $(, $p:ident)?) => {
        &$crate::backend::gpu::Kernel {
            file: &$file,
            entry: $entry,
            slots: &[$($crate::backend::gpu::slot::$slot),*],
            extra: &[],
            overrides: &[$($o),*],
            loops: $loops,
            params: {
                #[allow(unused_mut, unused_assignments)]
                let mut name = "";
                $(name = <$p as $crate::backend::gpu::params::Params>::INFO.name;)?
                name
            },
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

/// A GPU buffer for `n` 32-bit elements, or [`crate::Error::OutOfMemory`] when the
/// device cannot hold it or the kernels' 32-bit element indices cannot address it.
pub(crate) fn gpu_alloc(g: &Arc<GpuContext>, n: usize) -> crate::error::Result<GpuBuffer> {
    if n > u32::MAX as usize {
        return crate::error::oom_err(
            "alloc",
            format!("{n} elements: GPU kernels index at most 2^32 - 1 elements of one tensor"),
        );
    }
    g.alloc(n as u64 * 4)
}

/// Threads per row for the row-wise kernels (softmax, cross-entropy), which reduce each
/// of `rows` rows of `len` elements on one workgroup: 64, or 256 for rows of 2048
/// elements or more, so each thread loops over at most `len / threads`.
pub(crate) fn row_work(rows: usize, len: usize) -> super::Work {
    let threads = if len >= 2048 { 256 } else { 64 };
    super::Work {
        overrides: [threads as u32, 0, 0, 0, 0, 0],
        serial: len.div_ceil(threads).max(1) as u64,
        reduced: (rows * len) as u64,
        ..Default::default()
    }
}
