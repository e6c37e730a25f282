//! The GPU backend's pooling and upsampling (`shaders/pool2d.wgsl`): one thread per
//! output forward, one per input element backward (gathers over covering windows).

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d, kernel, shader};
use super::params::{params, Params};
use super::{half_io, GpuContext, Kernel, ShaderFile, Work};
use crate::backend::pool2d::Pool;
use crate::backend::{Pool2d, Storage};
use crate::error::Result;
use crate::shape;

pub(crate) const FILE: ShaderFile = shader("pool2d", include_str!("../../../shaders/pool2d.wgsl"))
    .with_params(&[&PoolParams::INFO]);

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
        /// 1: max pooling writes each maximum's position (a backward reads them).
        positions: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
        /// Padding.
        _pad2: u32,
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

/// The kernels' parameters.
fn params(g: &Pool) -> PoolParams {
    let u = |v: usize| v as u32;
    PoolParams {
        planes: u(g.planes()),
        h: u(g.h),
        w: u(g.w),
        ho: u(g.ho),
        wo: u(g.wo),
        kh: u(g.k.0),
        kw: u(g.k.1),
        sh: u(g.s.0),
        sw: u(g.s.1),
        ph: u(g.p.0),
        pw: u(g.p.1),
        adaptive: g.adaptive as u32,
        positions: 1,
        ..Default::default()
    }
}

/// Inputs one output's window loops over (the forward kernels' serial work).
fn window_work(g: &Pool) -> Work {
    let (kh, kw) = if g.adaptive {
        (g.h.div_ceil(g.ho) + 1, g.w.div_ceil(g.wo) + 1)
    } else {
        g.k
    };
    Work {
        serial: (kh * kw) as u64,
        ..Work::default()
    }
}
/// Outputs whose windows the backward kernels visit per input element.
fn covering_work(g: &Pool) -> Work {
    let serial = if g.adaptive {
        g.ho * g.wo
    } else {
        g.k.0.div_ceil(g.s.0) * g.k.1.div_ceil(g.s.1)
    };
    Work {
        serial: serial as u64,
        ..Work::default()
    }
}

impl Pool2d for Arc<GpuContext> {
    fn max_pool(&self, x: &Storage, g: &Pool, positions: bool) -> Result<(Storage, Storage)> {
        let n = shape::numel(&g.out_shape());
        // A half input is read as it is; a native f16 one gives a native f16 output (a
        // maximum is one of the inputs: exact).
        let (ins, io) = half_io::inputs("pool2d", &[x])?;
        let (v, io) = half_io::output(self, io, n)?;
        // Inference skips the positions: a one-word stand-in is bound, never written.
        let i = gpu_alloc(self, if positions { n } else { 1 })?;
        let bufs = [ins[0], v.buffer("pool2d")?, &i];
        let work = Work {
            io,
            ..window_work(g)
        };
        let p = PoolParams {
            positions: positions as u32,
            ..params(g)
        };
        self.launch_with(MAX_FWD, &p, &bufs, groups_1d(n), work);
        Ok((v, Storage::new_gpu(i)))
    }

    fn max_pool_backward(&self, gy: &Storage, idx: &Storage, g: &Pool) -> Result<Storage> {
        let n = shape::numel(&g.in_shape());
        let out = gpu_alloc(self, n)?;
        let (ins, io) = half_io::inputs("pool2d", &[gy])?;
        let bufs = [ins[0], idx.gpu("pool2d")?, &out];
        let work = Work {
            io,
            ..covering_work(g)
        };
        self.launch_with(MAX_BWD, &params(g), &bufs, groups_1d(n), work);
        Ok(Storage::new_gpu(out))
    }

    fn avg_pool(&self, x: &Storage, g: &Pool) -> Result<Storage> {
        let n = shape::numel(&g.out_shape());
        let out = gpu_alloc(self, n)?;
        let bufs = [x.gpu("pool2d")?, &out];
        self.launch_with(AVG_FWD, &params(g), &bufs, groups_1d(n), window_work(g));
        Ok(Storage::new_gpu(out))
    }

    fn avg_pool_backward(&self, gy: &Storage, g: &Pool) -> Result<Storage> {
        let n = shape::numel(&g.in_shape());
        let out = gpu_alloc(self, n)?;
        let bufs = [gy.gpu("pool2d")?, &out];
        self.launch_with(AVG_BWD, &params(g), &bufs, groups_1d(n), covering_work(g));
        Ok(Storage::new_gpu(out))
    }

    fn upsample(&self, x: &Storage, g: &Pool) -> Result<Storage> {
        let n = shape::numel(&g.out_shape());
        let out = gpu_alloc(self, n)?;
        self.launch(UP_FWD, &params(g), &[x.gpu("pool2d")?, &out], groups_1d(n));
        Ok(Storage::new_gpu(out))
    }

    fn upsample_backward(&self, gy: &Storage, g: &Pool) -> Result<Storage> {
        let n = shape::numel(&g.in_shape());
        let out = gpu_alloc(self, n)?;
        let work = Work {
            serial: (g.k.0 * g.k.1) as u64,
            ..Work::default()
        };
        self.launch_with(
            UP_BWD,
            &params(g),
            &[gy.gpu("pool2d")?, &out],
            groups_1d(n),
            work,
        );
        Ok(Storage::new_gpu(out))
    }
}
