//! The GPU's column transforms of a convolution (`shaders/conv2d.wgsl`): `im2col` one
//! thread per column entry, `col2im` one per image element (a gather over the columns
//! that read it: no atomics). A launch covers at most 65,535 workgroups along each grid
//! dimension; larger transforms run in several.

use std::sync::Arc;

use super::kernels::{gpu_alloc, kernel, shader};
use super::params::{params, Params};
use super::{GpuContext, Kernel, ShaderFile, Work};
use crate::backend::conv2d::Geometry;
use crate::backend::{Conv, Storage};
use crate::error::Result;
use crate::shape;

pub(crate) const FILE: ShaderFile = shader("conv2d", include_str!("../../../shaders/conv2d.wgsl"))
    .with_params(&[&ConvParams::INFO]);

/// Workgroups a grid dimension may hold.
const MAX_GROUPS: usize = 65_535;
const IM2COL: &Kernel = kernel!(FILE, "im2col_fwd", [X0, Y0], params = ConvParams);
const COL2IM: &Kernel = kernel!(FILE, "col2im_fwd", [X0, Y0], loops, params = ConvParams);

/// The kernels of `shaders/conv2d.wgsl`, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![IM2COL, COL2IM]
}

params! {
    /// `im2col` and `col2im`: one convolution's geometry, and where a launch's grid
    /// starts (a launch covers at most 65,535 workgroups along each grid dimension).
    pub(crate) struct ConvParams as cv {
        /// Images.
        n: u32,
        /// Channels.
        c: u32,
        /// Image height.
        h: u32,
        /// Image width.
        w: u32,
        /// Output height.
        ho: u32,
        /// Output width.
        wo: u32,
        /// Kernel height.
        kh: u32,
        /// Kernel width.
        kw: u32,
        /// Row stride.
        sh: u32,
        /// Column stride.
        sw: u32,
        /// Row padding.
        ph: u32,
        /// Column padding.
        pw: u32,
        /// Row dilation.
        dh: u32,
        /// Column dilation.
        dw: u32,
        /// The launch's first row of columns (im2col) or channel (col2im).
        row0: u32,
        /// Its first image.
        image0: u32,
        /// Its first group of 256 pixels.
        group0: u32,
        /// 1: the columns are stored transposed, `[N, Ho Wo, C kh kw]`.
        transposed: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
    }
}

fn conv_params(g: &Geometry) -> ConvParams {
    let u = |v: usize| v as u32;
    ConvParams {
        n: u(g.n),
        c: u(g.c),
        h: u(g.h),
        w: u(g.w),
        ho: u(g.ho),
        wo: u(g.wo),
        kh: u(g.k.0),
        kw: u(g.k.1),
        sh: u(g.stride.0),
        sw: u(g.stride.1),
        ph: u(g.padding.0),
        pw: u(g.padding.1),
        dh: u(g.dilation.0),
        dw: u(g.dilation.1),
        ..Default::default()
    }
}

/// `im2col` (`to_cols`) or `col2im` of `x`; `transposed` (folding only) reads columns
/// stored `[N, Ho Wo, C kh kw]`, as the fused convolution's backward writes them.
pub(crate) fn columns(
    ctx: &Arc<GpuContext>,
    x: &Storage,
    g: &Geometry,
    to_cols: bool,
    transposed: bool,
) -> Result<Storage> {
    let out_shape = if to_cols {
        g.cols_shape()
    } else {
        g.image_shape()
    };
    let x = x.gpu(if to_cols { "im2col" } else { "col2im" })?;
    let out = gpu_alloc(ctx, shape::numel(&out_shape))?;
    // Grid: pixel groups of the plane the kernel writes, rows, images.
    let (kernel, pixels, rows, serial) = if to_cols {
        (IM2COL, g.ho * g.wo, g.c * g.kk(), 0)
    } else {
        (COL2IM, g.h * g.w, g.c, g.kk() as u64)
    };
    let mut p = conv_params(g);
    p.transposed = transposed as u32;
    for x0 in (0..pixels.div_ceil(256)).step_by(MAX_GROUPS) {
        for y0 in (0..rows).step_by(MAX_GROUPS) {
            for z0 in (0..g.n).step_by(MAX_GROUPS) {
                (p.group0, p.row0, p.image0) = (x0 as u32, y0 as u32, z0 as u32);
                let grid = [
                    (pixels.div_ceil(256) - x0).min(MAX_GROUPS) as u32,
                    (rows - y0).min(MAX_GROUPS) as u32,
                    (g.n - z0).min(MAX_GROUPS) as u32,
                ];
                let work = Work {
                    serial,
                    ..Work::default()
                };
                ctx.launch_with(kernel, &p, &[x, &out], grid, work);
            }
        }
    }
    Ok(Storage::new_gpu(out))
}

impl Conv for Arc<GpuContext> {
    fn im2col(&self, x: &Storage, g: &Geometry) -> Result<Storage> {
        columns(self, x, g, true, false)
    }

    fn col2im(&self, cols: &Storage, g: &Geometry) -> Result<Storage> {
        columns(self, cols, g, false, false)
    }
}
