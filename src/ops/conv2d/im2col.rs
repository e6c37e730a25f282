//! The column transforms of a convolution: `im2col` gathers each output position's
//! receptive field into a column, `col2im` folds columns back, summing overlaps. They are
//! adjoint, so each one's backward is the other's kernel. The CPU loops and the GPU
//! launches live here; `mod.rs` builds convolutions from them and the matrix product.

use super::FILE;
use crate::autograd::record;
use crate::backend::cpu::{map_float, Float};
use crate::backend::cpu::{parallel, pool};
use crate::backend::gpu::params::params;
use crate::backend::gpu::{Kernel, Work};
use crate::device::Device;
use crate::error::{arg_err, shape_err, Result};
use crate::ops::{gpu_alloc, kernel};
use crate::shape;
use crate::tensor::{check_float, Tensor};

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

/// Sizes of one convolution: image `[n, c, h, w]`, output plane `ho x wo`, kernel,
/// stride, padding and dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Batch.
    pub n: usize,
    /// Image channels.
    pub c: usize,
    /// Image height and width.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// Kernel size.
    pub k: (usize, usize),
    /// Stride.
    pub stride: (usize, usize),
    /// Zero padding.
    pub padding: (usize, usize),
    /// Dilation.
    pub dilation: (usize, usize),
}

/// Kernel size, stride and dilation must be positive: the column kernels divide by them.
pub(super) fn check_positive(
    op: &'static str,
    k: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
) -> Result<()> {
    if [k.0, k.1, stride.0, stride.1, dilation.0, dilation.1].contains(&0) {
        return arg_err(op, "kernel size, stride and dilation must be positive");
    }
    Ok(())
}

impl Geometry {
    fn params(&self) -> ConvParams {
        let u = |v: usize| v as u32;
        ConvParams {
            n: u(self.n),
            c: u(self.c),
            h: u(self.h),
            w: u(self.w),
            ho: u(self.ho),
            wo: u(self.wo),
            kh: u(self.k.0),
            kw: u(self.k.1),
            sh: u(self.stride.0),
            sw: u(self.stride.1),
            ph: u(self.padding.0),
            pw: u(self.padding.1),
            dh: u(self.dilation.0),
            dw: u(self.dilation.1),
            ..Default::default()
        }
    }
    pub(super) fn kk(&self) -> usize {
        self.k.0 * self.k.1
    }
    pub(super) fn check(&self, op: &'static str) -> Result<()> {
        check_positive(op, self.k, self.stride, self.dilation)
    }
    pub(super) fn cols_shape(&self) -> Vec<usize> {
        vec![self.n, self.c * self.kk(), self.ho * self.wo]
    }
    pub(super) fn image_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.h, self.w]
    }
    /// The output size of a convolution along one axis.
    pub fn out_size(
        input: usize,
        k: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Option<usize> {
        let span = dilation.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
        input
            .checked_add(padding.checked_mul(2)?)?
            .checked_sub(span)
            .map(|v| v / stride + 1)
    }
}

/// The output columns `ow` whose tap `kj` reads inside the image (not padding), as a
/// half-open range.
fn valid_outputs(
    out: usize,
    size: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
) -> (usize, usize) {
    let shift = k * dil;
    // ow stride + shift - pad must lie in [0, size).
    let lo = pad.saturating_sub(shift).div_ceil(stride);
    let hi = if size + pad > shift {
        ((size + pad - shift - 1) / stride + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Calls `f(first column index, first image index, length)` for every run of column
/// entries that read the image (entries reading padding are skipped): within a run the
/// column index steps by 1 and the image index by the column stride. For one image:
/// callers pass a geometry with `n = 1` and offset by the image themselves.
fn for_each_run(g: &Geometry, mut f: impl FnMut(usize, usize, usize)) {
    let pp = g.ho * g.wo;
    let spans: Vec<(usize, usize)> = (0..g.k.1)
        .map(|kj| valid_outputs(g.wo, g.w, kj, g.stride.1, g.padding.1, g.dilation.1))
        .collect();
    for c in 0..g.c {
        let plane = c * g.h * g.w;
        for ki in 0..g.k.0 {
            for (kj, &(lo, hi)) in spans.iter().enumerate() {
                let row = (c * g.k.0 + ki) * g.k.1 + kj;
                let col_base = row * pp;
                if lo >= hi {
                    continue;
                }
                let iw0 = lo * g.stride.1 + kj * g.dilation.1 - g.padding.1;
                for oh in 0..g.ho {
                    let ih = (oh * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
                    if ih < 0 || ih as usize >= g.h {
                        continue;
                    }
                    let img = plane + ih as usize * g.w + iw0;
                    f(col_base + oh * g.wo + lo, img, hi - lo);
                }
            }
        }
    }
}

fn im2col_cpu<T: Float>(g: &Geometry, x: &[T]) -> Vec<T> {
    let mut out = pool::filled(g.n * g.c * g.kk() * g.ho * g.wo, T::zero());
    let (sw, image) = (g.stride.1, g.c * g.h * g.w);
    let one = Geometry { n: 1, ..*g };
    parallel::for_blocks_mut(&mut out, g.n, x.len() * g.kk(), |first, part| {
        let per = (g.c * g.kk() * g.ho * g.wo).max(1);
        for (i, cols) in part.chunks_exact_mut(per).enumerate() {
            let x = &x[(first + i) * image..(first + i + 1) * image];
            for_each_run(&one, |col, img, len| {
                let dst = &mut cols[col..col + len];
                if sw == 1 {
                    dst.copy_from_slice(&x[img..img + len]);
                } else {
                    for (t, d) in dst.iter_mut().enumerate() {
                        *d = x[img + t * sw];
                    }
                }
            });
        }
    });
    out
}

fn col2im_cpu<T: Float>(g: &Geometry, cols: &[T]) -> Vec<T> {
    let mut out = pool::filled(g.n * g.c * g.h * g.w, T::zero());
    let (sw, per) = (g.stride.1, g.c * g.kk() * g.ho * g.wo);
    let one = Geometry { n: 1, ..*g };
    parallel::for_blocks_mut(&mut out, g.n, cols.len(), |first, part| {
        for (i, img_out) in part.chunks_exact_mut((g.c * g.h * g.w).max(1)).enumerate() {
            let cols = &cols[(first + i) * per..(first + i + 1) * per];
            for_each_run(&one, |col, img, len| {
                let src = &cols[col..col + len];
                if sw == 1 {
                    for (d, &v) in img_out[img..img + len].iter_mut().zip(src) {
                        *d += v;
                    }
                } else {
                    for (t, &v) in src.iter().enumerate() {
                        img_out[img + t * sw] += v;
                    }
                }
            });
        }
    });
    out
}

fn run(x: &Tensor, g: Geometry, to_cols: bool) -> Result<Tensor> {
    run_with(x, g, to_cols, false)
}

/// [`run`]; `transposed` (GPU, folding only) reads columns stored `[N, Ho Wo, C kh kw]`.
pub(super) fn run_with(x: &Tensor, g: Geometry, to_cols: bool, transposed: bool) -> Result<Tensor> {
    let out_shape = if to_cols {
        g.cols_shape()
    } else {
        g.image_shape()
    };
    match x.device() {
        Device::Cpu => {
            let out = map_float!(&*x.cpu_data(), |v: T| if to_cols {
                im2col_cpu(&g, v)
            } else {
                col2im_cpu(&g, v)
            });
            Ok(Tensor::from_cpu(out, out_shape))
        }
        Device::Gpu(ctx) => {
            let out = gpu_alloc(ctx, shape::numel(&out_shape))?;
            // Grid: pixel groups of the plane the kernel writes, rows, images.
            let (kernel, pixels, rows, serial) = if to_cols {
                (IM2COL, g.ho * g.wo, g.c * g.kk(), 0)
            } else {
                (COL2IM, g.h * g.w, g.c, g.kk() as u64)
            };
            let mut p = g.params();
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
                        ctx.launch_with(kernel, &p, &[x.gpu_buf(), &out], grid, work);
                    }
                }
            }
            Ok(Tensor::from_gpu(out, out_shape, x.dtype()))
        }
    }
}

/// Unfolds image patches into columns `[N, C kh kw, Ho Wo]`: one matrix per image, so a
/// convolution is one batched matrix product (the weight broadcast over the batch) whose
/// result is already NCHW.
pub fn im2col(x: &Tensor, g: Geometry) -> Result<Tensor> {
    check_float("im2col", x)?;
    g.check("im2col")?;
    if x.shape() != g.image_shape().as_slice() {
        return shape_err(
            "im2col",
            format!(
                "input {:?} does not match the geometry {:?}",
                x.shape(),
                g.image_shape()
            ),
        );
    }
    let y = run(x, g, true)?;
    Ok(record(y, "im2col", &[x], move |grad| {
        Ok(vec![Some(run(grad, g, false)?)])
    }))
}

/// Folds columns `[N, C kh kw, Ho Wo]` back into images, summing overlaps.
pub fn col2im(cols: &Tensor, g: Geometry) -> Result<Tensor> {
    check_float("col2im", cols)?;
    g.check("col2im")?;
    if cols.shape() != g.cols_shape().as_slice() {
        return shape_err(
            "col2im",
            format!(
                "columns {:?} do not match the geometry {:?}",
                cols.shape(),
                g.cols_shape()
            ),
        );
    }
    let y = run(cols, g, false)?;
    Ok(record(y, "col2im", &[cols], move |grad| {
        Ok(vec![Some(run(grad, g, true)?)])
    }))
}
