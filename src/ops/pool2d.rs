//! Pooling over NCHW planes — `max_pool2d` (backward through the saved winner of each
//! window), `avg_pool2d`, `adaptive_avg_pool2d` — and nearest-neighbour upsampling.
//! Backward kernels gather over the windows covering each input element, so they need
//! no atomics and are deterministic.

use crate::autograd::record;
use crate::backend::cpu::{map_float, CpuData, Float};
use crate::backend::cpu::{parallel, pool};
use crate::backend::gpu::params::{params, Params};
use crate::backend::gpu::{Kernel, ShaderFile, Work};
use crate::device::Device;
use crate::error::{arg_err, shape_err, Result};
use crate::ops::{gpu_alloc, groups_1d, kernel, shader};
use crate::shape;
use crate::tensor::{check_float, DType, Tensor};

pub(crate) const FILE: ShaderFile =
    shader("pool2d", include_str!("../../shaders/pool2d.wgsl")).with_params(&[&PoolParams::INFO]);

params! {
    /// Pooling and upsampling over NCHW planes.
    pub(crate) struct PoolParams as pl {
        /// Planes, N C.
        planes: u32,
        /// Input height.
        h: u32,
        /// Input width.
        w: u32,
        /// Output height.
        ho: u32,
        /// Output width.
        wo: u32,
        /// Window height (upsampling: the row factor).
        kh: u32,
        /// Window width (upsampling: the column factor).
        kw: u32,
        /// Row stride.
        sh: u32,
        /// Column stride.
        sw: u32,
        /// Row padding.
        ph: u32,
        /// Column padding.
        pw: u32,
        /// 1: adaptive average pooling's windows.
        adaptive: u32,
    }
}
const MAX_FWD: &Kernel = kernel!(
    FILE,
    "maxpool2d_fwd",
    [X0, Y0, YI],
    loops,
    params = PoolParams
);
const MAX_BWD: &Kernel = kernel!(
    FILE,
    "maxpool2d_bwd",
    [X0, XI, Y0],
    loops,
    params = PoolParams
);
const AVG_FWD: &Kernel = kernel!(FILE, "avgpool2d_fwd", [X0, Y0], loops, params = PoolParams);
const AVG_BWD: &Kernel = kernel!(FILE, "avgpool2d_bwd", [X0, Y0], loops, params = PoolParams);
const UP_FWD: &Kernel = kernel!(FILE, "upsample_nearest_fwd", [X0, Y0], params = PoolParams);
const UP_BWD: &Kernel = kernel!(
    FILE,
    "upsample_nearest_bwd",
    [X0, Y0],
    loops,
    params = PoolParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![MAX_FWD, MAX_BWD, AVG_FWD, AVG_BWD, UP_FWD, UP_BWD]
}

/// The geometry of a pooling over `planes` planes of `h x w` into `ho x wo`.
#[derive(Clone, Copy, Debug)]
struct Pool {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    adaptive: bool,
}

impl Pool {
    fn planes(&self) -> usize {
        self.n * self.c
    }
    fn params(&self) -> PoolParams {
        let u = |v: usize| v as u32;
        PoolParams {
            planes: u(self.planes()),
            h: u(self.h),
            w: u(self.w),
            ho: u(self.ho),
            wo: u(self.wo),
            kh: u(self.k.0),
            kw: u(self.k.1),
            sh: u(self.s.0),
            sw: u(self.s.1),
            ph: u(self.p.0),
            pw: u(self.p.1),
            adaptive: self.adaptive as u32,
        }
    }
    fn out_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.ho, self.wo]
    }
    /// Inputs one output's window loops over (the forward kernels' serial work).
    fn window_work(&self) -> Work {
        let (kh, kw) = if self.adaptive {
            (self.h.div_ceil(self.ho) + 1, self.w.div_ceil(self.wo) + 1)
        } else {
            self.k
        };
        Work {
            serial: (kh * kw) as u64,
            ..Work::default()
        }
    }
    /// Outputs whose windows the backward kernels visit per input element.
    fn covering_work(&self) -> Work {
        let serial = if self.adaptive {
            self.ho * self.wo
        } else {
            self.k.0.div_ceil(self.s.0) * self.k.1.div_ceil(self.s.1)
        };
        Work {
            serial: serial as u64,
            ..Work::default()
        }
    }
    fn in_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.h, self.w]
    }
    /// `[start, end)` and divisor of output `o`'s window along an axis.
    fn window(&self, o: usize, rows: bool) -> (isize, isize, usize) {
        let (n, n_out, k, s, p) = if rows {
            (self.h, self.ho, self.k.0, self.s.0, self.p.0)
        } else {
            (self.w, self.wo, self.k.1, self.s.1, self.p.1)
        };
        if self.adaptive {
            let a = o * n / n_out;
            let b = ((o + 1) * n).div_ceil(n_out);
            (a as isize, b as isize, b - a)
        } else {
            let a = (o * s) as isize - p as isize;
            (a, a + k as isize, k)
        }
    }
}

fn plan(
    op: &'static str,
    x: &Tensor,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
) -> Result<Pool> {
    check_float(op, x)?;
    if x.rank() != 4 {
        return shape_err(
            op,
            format!("needs NCHW input, got {}", shape::fmt(x.shape())),
        );
    }
    if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 {
        return arg_err(op, "kernel size and stride must be positive");
    }
    if 2 * p.0 > k.0 || 2 * p.1 > k.1 {
        return arg_err(
            op,
            format!("padding {p:?} must be at most half the kernel {k:?}"),
        );
    }
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let out =
        |i: usize, k: usize, s: usize, p: usize| (i + 2 * p).checked_sub(k).map(|v| v / s + 1);
    let (Some(ho), Some(wo)) = (out(h, k.0, s.0, p.0), out(w, k.1, s.1, p.1)) else {
        return shape_err(
            op,
            format!(
                "the {k:?} window is larger than the padded input {}",
                shape::fmt(x.shape())
            ),
        );
    };
    Ok(Pool {
        n,
        c,
        h,
        w,
        ho,
        wo,
        k,
        s,
        p,
        adaptive: false,
    })
}

/// The clipped input range of every output row (`rows`) or column.
fn clipped_windows(g: &Pool, rows: bool) -> Vec<(usize, usize)> {
    let (n_out, n) = if rows { (g.ho, g.h) } else { (g.wo, g.w) };
    (0..n_out)
        .map(|o| {
            let (a, b, _) = g.window(o, rows);
            (a.max(0) as usize, b.min(n as isize) as usize)
        })
        .collect()
}

fn maxpool_cpu<T: Float>(g: &Pool, x: &[T]) -> (Vec<T>, Vec<u32>) {
    let per_plane = g.ho * g.wo;
    let mut vals = pool::filled(g.planes() * per_plane, T::zero());
    let mut idx: Vec<u32> = pool::filled(vals.len(), 0);
    let (rows, cols) = (clipped_windows(g, true), clipped_windows(g, false));
    // One block per plane: its outputs and their argmax side by side in `pairs`.
    let mut pairs: Vec<(&mut T, &mut u32)> = vals.iter_mut().zip(idx.iter_mut()).collect();
    parallel::for_blocks_mut(&mut pairs, g.planes(), x.len(), |first, out| {
        for (p, out) in out.chunks_exact_mut(per_plane).enumerate() {
            let xp = &x[(first + p) * g.h * g.w..(first + p + 1) * g.h * g.w];
            let mut slot = out.iter_mut();
            if g.k == (2, 2) && g.s == (2, 2) && g.p == (0, 0) && !g.adaptive {
                // The common 2 x 2 window, unrolled: the same four elements in the same
                // order and the same strict comparisons as the general loop below.
                for oh in 0..g.ho {
                    let r0 = 2 * oh * g.w;
                    for ow in 0..g.wo {
                        let i0 = r0 + 2 * ow;
                        let (mut best, mut at) = (xp[i0], i0);
                        for i in [i0 + 1, i0 + g.w, i0 + g.w + 1] {
                            let v = xp[i];
                            let better = v > best || v.is_nan();
                            best = if better { v } else { best };
                            at = if better { i } else { at };
                        }
                        let (v, a) = slot.next().expect("one slot per output");
                        **v = best;
                        **a = at as u32;
                    }
                }
                continue;
            }
            for &(h0, h1) in &rows {
                for &(w0, w1) in &cols {
                    // Windows are never empty: padding is at most half the kernel.
                    // Branch-free selects: which element wins is unpredictable. A NaN
                    // always takes over, so the window's last NaN wins (PyTorch's kernel).
                    let mut at = h0 * g.w + w0;
                    let mut best = xp[at];
                    for ih in h0..h1 {
                        let row0 = ih * g.w + w0;
                        for (i, &v) in (row0..).zip(&xp[row0..ih * g.w + w1]) {
                            let better = v > best || v.is_nan();
                            best = if better { v } else { best };
                            at = if better { i } else { at };
                        }
                    }
                    let (v, a) = slot.next().expect("one slot per output");
                    **v = best;
                    **a = at as u32;
                }
            }
        }
    });
    drop(pairs);
    (vals, idx)
}

/// Max pooling with PyTorch's `max_pool2d(x, kernel, stride, padding)` semantics: a window
/// holding NaN gives NaN, and its gradient goes to the window's last NaN.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let g = plan("max_pool2d", x, kernel, stride, padding)?;
    let (y, idx) = match x.device() {
        Device::Cpu => {
            let (v, i) = match &*x.cpu_data() {
                CpuData::F32(d) => {
                    let (v, i) = maxpool_cpu(&g, d);
                    (CpuData::F32(v), i)
                }
                CpuData::F64(d) => {
                    let (v, i) = maxpool_cpu(&g, d);
                    (CpuData::F64(v), i)
                }
                CpuData::U32(_) => unreachable!("dtype checked"),
            };
            (
                Tensor::from_cpu(v, g.out_shape()),
                Tensor::from_cpu(CpuData::U32(i), g.out_shape()),
            )
        }
        Device::Gpu(ctx) => {
            let n = shape::numel(&g.out_shape());
            let (v, i) = (gpu_alloc(ctx, n)?, gpu_alloc(ctx, n)?);
            ctx.launch_with(
                MAX_FWD,
                &g.params(),
                &[x.gpu_buf(), &v, &i],
                groups_1d(n),
                g.window_work(),
            );
            (
                Tensor::from_gpu(v, g.out_shape(), x.dtype()),
                Tensor::from_gpu(i, g.out_shape(), DType::U32),
            )
        }
    };
    Ok(record(y, "max_pool2d", &[x], move |grad| {
        Ok(vec![Some(match grad.device() {
            Device::Cpu => {
                let CpuData::U32(winners) = &*idx.cpu_data() else {
                    unreachable!("u32 winners")
                };
                let winners = winners.clone();
                let out = map_float!(&*grad.cpu_data(), |gv: T| {
                    let mut dx = pool::filled(g.planes() * g.h * g.w, T::zero());
                    for (o, (&gi, &at)) in gv.iter().zip(&winners).enumerate() {
                        let plane = o / (g.ho * g.wo);
                        dx[plane * g.h * g.w + at as usize] += gi;
                    }
                    dx
                });
                Tensor::from_cpu(out, g.in_shape())
            }
            Device::Gpu(ctx) => {
                let n = shape::numel(&g.in_shape());
                let out = gpu_alloc(ctx, n)?;
                ctx.launch_with(
                    MAX_BWD,
                    &g.params(),
                    &[grad.gpu_buf(), idx.gpu_buf(), &out],
                    groups_1d(n),
                    g.covering_work(),
                );
                Tensor::from_gpu(out, g.in_shape(), grad.dtype())
            }
        })])
    }))
}

fn avg_fwd_cpu<T: Float>(g: &Pool, x: &[T]) -> Vec<T> {
    let mut out = pool::with_capacity(g.planes() * g.ho * g.wo);
    for plane in 0..g.planes() {
        for oh in 0..g.ho {
            for ow in 0..g.wo {
                let (h0, h1, dh) = g.window(oh, true);
                let (w0, w1, dw) = g.window(ow, false);
                let mut acc = T::zero();
                for ih in h0.max(0)..h1.min(g.h as isize) {
                    for iw in w0.max(0)..w1.min(g.w as isize) {
                        acc += x[(plane * g.h + ih as usize) * g.w + iw as usize];
                    }
                }
                out.push(acc / T::from_f64((dh * dw) as f64));
            }
        }
    }
    out
}

fn avg_bwd_cpu<T: Float>(g: &Pool, gy: &[T]) -> Vec<T> {
    let mut dx = pool::filled(g.planes() * g.h * g.w, T::zero());
    for plane in 0..g.planes() {
        for oh in 0..g.ho {
            for ow in 0..g.wo {
                let (h0, h1, dh) = g.window(oh, true);
                let (w0, w1, dw) = g.window(ow, false);
                let share = gy[(plane * g.ho + oh) * g.wo + ow] / T::from_f64((dh * dw) as f64);
                for ih in h0.max(0)..h1.min(g.h as isize) {
                    for iw in w0.max(0)..w1.min(g.w as isize) {
                        dx[(plane * g.h + ih as usize) * g.w + iw as usize] += share;
                    }
                }
            }
        }
    }
    dx
}

fn avg_pool(x: &Tensor, g: Pool, name: &'static str) -> Result<Tensor> {
    let y = match x.device() {
        Device::Cpu => Tensor::from_cpu(
            map_float!(&*x.cpu_data(), |v: T| avg_fwd_cpu(&g, v)),
            g.out_shape(),
        ),
        Device::Gpu(ctx) => {
            let n = shape::numel(&g.out_shape());
            let out = gpu_alloc(ctx, n)?;
            ctx.launch_with(
                AVG_FWD,
                &g.params(),
                &[x.gpu_buf(), &out],
                groups_1d(n),
                g.window_work(),
            );
            Tensor::from_gpu(out, g.out_shape(), x.dtype())
        }
    };
    Ok(record(y, name, &[x], move |grad| {
        Ok(vec![Some(match grad.device() {
            Device::Cpu => Tensor::from_cpu(
                map_float!(&*grad.cpu_data(), |v: T| avg_bwd_cpu(&g, v)),
                g.in_shape(),
            ),
            Device::Gpu(ctx) => {
                let n = shape::numel(&g.in_shape());
                let out = gpu_alloc(ctx, n)?;
                ctx.launch_with(
                    AVG_BWD,
                    &g.params(),
                    &[grad.gpu_buf(), &out],
                    groups_1d(n),
                    g.covering_work(),
                );
                Tensor::from_gpu(out, g.in_shape(), grad.dtype())
            }
        })])
    }))
}

/// Average pooling, counting padded zeros in the divisor (PyTorch's default).
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let g = plan("avg_pool2d", x, kernel, stride, padding)?;
    avg_pool(x, g, "avg_pool2d")
}

/// Average pooling to a fixed output size (`torch.nn.AdaptiveAvgPool2d`).
pub fn adaptive_avg_pool2d(x: &Tensor, output: (usize, usize)) -> Result<Tensor> {
    check_float("adaptive_avg_pool2d", x)?;
    if x.rank() != 4 || output.0 == 0 || output.1 == 0 {
        return shape_err(
            "adaptive_avg_pool2d",
            format!(
                "needs NCHW input and a positive output size, got {} -> {output:?}",
                shape::fmt(x.shape())
            ),
        );
    }
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    if output == (1, 1) && h * w > 1024 {
        // Global average pooling of a large plane: a mean, which spreads over many
        // workgroups, instead of one thread looping over the whole plane.
        return x.mean_dim(&[2, 3], true);
    }
    let g = Pool {
        n,
        c,
        h,
        w,
        ho: output.0,
        wo: output.1,
        k: (1, 1),
        s: (1, 1),
        p: (0, 0),
        adaptive: true,
    };
    avg_pool(x, g, "adaptive_avg_pool2d")
}

/// Nearest-neighbour upsampling by integer factors (`nn.Upsample(scale_factor, 'nearest')`).
pub fn upsample_nearest(x: &Tensor, scale: (usize, usize)) -> Result<Tensor> {
    check_float("upsample_nearest", x)?;
    if x.rank() != 4 || scale.0 == 0 || scale.1 == 0 {
        return shape_err(
            "upsample_nearest",
            format!(
                "needs NCHW input and positive factors, got {} and {scale:?}",
                shape::fmt(x.shape())
            ),
        );
    }
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let g = Pool {
        n,
        c,
        h,
        w,
        ho: h * scale.0,
        wo: w * scale.1,
        k: scale,
        s: (1, 1),
        p: (0, 0),
        adaptive: false,
    };
    let y = match x.device() {
        Device::Cpu => {
            let out = map_float!(&*x.cpu_data(), |v: T| {
                let mut o = pool::with_capacity(g.planes() * g.ho * g.wo);
                for plane in 0..g.planes() {
                    for oh in 0..g.ho {
                        for ow in 0..g.wo {
                            o.push(v[(plane * g.h + oh / scale.0) * g.w + ow / scale.1]);
                        }
                    }
                }
                o
            });
            Tensor::from_cpu(out, g.out_shape())
        }
        Device::Gpu(ctx) => {
            let n = shape::numel(&g.out_shape());
            let out = gpu_alloc(ctx, n)?;
            ctx.launch(UP_FWD, &g.params(), &[x.gpu_buf(), &out], groups_1d(n));
            Tensor::from_gpu(out, g.out_shape(), x.dtype())
        }
    };
    Ok(record(y, "upsample_nearest", &[x], move |grad| {
        Ok(vec![Some(match grad.device() {
            Device::Cpu => {
                let out = map_float!(&*grad.cpu_data(), |v: T| {
                    let mut dx = pool::filled(g.planes() * g.h * g.w, T::zero());
                    for plane in 0..g.planes() {
                        for oh in 0..g.ho {
                            for ow in 0..g.wo {
                                dx[(plane * g.h + oh / scale.0) * g.w + ow / scale.1] +=
                                    v[(plane * g.ho + oh) * g.wo + ow];
                            }
                        }
                    }
                    dx
                });
                Tensor::from_cpu(out, g.in_shape())
            }
            Device::Gpu(ctx) => {
                let n = shape::numel(&g.in_shape());
                let out = gpu_alloc(ctx, n)?;
                let work = Work {
                    serial: (g.k.0 * g.k.1) as u64,
                    ..Work::default()
                };
                ctx.launch_with(
                    UP_BWD,
                    &g.params(),
                    &[grad.gpu_buf(), &out],
                    groups_1d(n),
                    work,
                );
                Tensor::from_gpu(out, g.in_shape(), grad.dtype())
            }
        })])
    }))
}

impl Tensor {
    /// Max pooling, see [`max_pool2d`].
    pub fn max_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        max_pool2d(self, kernel, stride, padding)
    }
    /// Average pooling, see [`avg_pool2d`].
    pub fn avg_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        avg_pool2d(self, kernel, stride, padding)
    }
    /// Adaptive average pooling, see [`adaptive_avg_pool2d`].
    pub fn adaptive_avg_pool2d(&self, output: (usize, usize)) -> Result<Tensor> {
        adaptive_avg_pool2d(self, output)
    }
    /// Nearest upsampling, see [`upsample_nearest`].
    pub fn upsample_nearest(&self, scale: (usize, usize)) -> Result<Tensor> {
        upsample_nearest(self, scale)
    }
}
