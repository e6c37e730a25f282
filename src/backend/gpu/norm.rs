//! The GPU backend's row normalisations (`shaders/norm.wgsl`): `layer_norm`,
//! `rms_norm` and `group_norm` share three kernels. The forward is one dispatch (a
//! segment of 32 to 256 threads per row, several short rows per workgroup: the
//! statistics by Welford's update and Chan's combination, then the normalised, scaled
//! and shifted row); the backward is at most two (`dx` per row segment, and the
//! weight's and bias's sums as a column reduction, whole columns of up to 2,048 rows
//! per workgroup; the op adds the partial sums of longer columns).

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_rows, kernel, shader};
use super::params::{params, Params};
use super::{GpuBuffer, GpuContext, Kernel, ShaderFile, Work};
use crate::backend::norm::{NormGeo, THREADS};
use crate::backend::{Norm, Storage};
use crate::error::Result;

pub(crate) const FILE: ShaderFile =
    shader("norm", include_str!("../../../shaders/norm.wgsl")).with_params(&[&NormParams::INFO]);

params! {
    /// Every row normalisation kernel's parameters (`backend/norm.rs`).
    pub(crate) struct NormParams as nm {
        /// Rows R.
        rows: u32,
        /// Elements per row D.
        d: u32,
        /// Row r's affine values start at (r mod groups) D / l.
        groups: u32,
        /// Consecutive elements of a row sharing one affine value.
        l: u32,
        /// RMS, WEIGHT, BIAS.
        flags: u32,
        /// Variance epsilon.
        eps: f32,
        /// 1 / D.
        inv_d: f32,
        /// Affine values A = groups D / l.
        affine: u32,
        /// Elements per affine value, (R / groups) l.
        per_affine: u32,
        /// Affine values per workgroup of the affine backward (1 or 32).
        cols: u32,
        /// Elements of each affine value per workgroup of the affine backward.
        chunk: u32,
        /// Chunks per affine value.
        chunks: u32,
        /// Threads per row of the per-row kernels (32 to 256, a power of two).
        tpr: u32,
    }
}

const FWD: &Kernel = kernel!(
    FILE,
    "norm_fwd",
    [X0, X1, X2, Y0, Y1],
    loops,
    params = NormParams
);
const BWD: &Kernel = kernel!(
    FILE,
    "norm_bwd",
    [X0, X1, X2, XI, Y0],
    loops,
    params = NormParams
);
const AFFINE_BWD: &Kernel = kernel!(
    FILE,
    "norm_affine_bwd",
    [X0, X1, X2, Y0, Y1],
    loops,
    params = NormParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![FWD, BWD, AFFINE_BWD]
}

const OP: &str = "norm";

fn params(geo: &NormGeo) -> NormParams {
    let (chunk, chunks) = geo.chunks();
    NormParams {
        rows: geo.rows as u32,
        d: geo.d as u32,
        groups: geo.groups as u32,
        l: geo.l as u32,
        flags: geo.flags,
        eps: geo.eps as f32,
        inv_d: (1.0 / geo.d.max(1) as f64) as f32,
        affine: geo.affine() as u32,
        per_affine: geo.per_affine() as u32,
        cols: geo.cols() as u32,
        chunk: chunk as u32,
        chunks: chunks as u32,
        tpr: geo.threads_per_row() as u32,
    }
}

/// The declared work of the per-row kernels: each thread reads its share of a row.
fn row_work(geo: &NormGeo) -> Work {
    Work {
        serial: geo.d.div_ceil(geo.threads_per_row()) as u64,
        reduced: geo.numel() as u64,
        ..Default::default()
    }
}

/// The per-row kernels' grid: `256 / threads_per_row` rows per workgroup.
fn row_groups(geo: &NormGeo) -> [u32; 3] {
    groups_rows(geo.rows.div_ceil(THREADS / geo.threads_per_row()))
}

/// The buffer of `t`, or `or` when there is none (an unread read-only slot).
fn buf_or<'a>(t: Option<&'a Storage>, or: &'a GpuBuffer) -> Result<&'a GpuBuffer> {
    t.map_or(Ok(or), |t| t.gpu(OP))
}

impl Norm for Arc<GpuContext> {
    fn norm_rows(
        &self,
        x: &Storage,
        weight: Option<&Storage>,
        bias: Option<&Storage>,
        geo: &NormGeo,
    ) -> Result<(Storage, Storage)> {
        // Half inputs (inference) are read as they are; a native f16 input gives a
        // native f16 output. An absent weight or bias binds the input.
        let ins = [x, weight.unwrap_or(x), bias.unwrap_or(x)];
        let (ins, io) = super::half_io::inputs(OP, &ins)?;
        let (y, io) = super::half_io::output(self, io, geo.numel())?;
        let stats = gpu_alloc(self, 2 * geo.rows)?;
        let bufs = [ins[0], ins[1], ins[2], y.buffer(OP)?, &stats];
        let work = Work {
            io,
            ..row_work(geo)
        };
        self.launch_with(FWD, &params(geo), &bufs, row_groups(geo), work);
        Ok((y, Storage::new_gpu(stats)))
    }

    fn norm_rows_backward(
        &self,
        x: &Storage,
        stats: &Storage,
        g: &Storage,
        weight: Option<&Storage>,
        geo: &NormGeo,
    ) -> Result<Storage> {
        let (xb, sb, gb) = (x.gpu(OP)?, stats.gpu(OP)?, g.gpu(OP)?);
        let w = buf_or(weight, xb)?;
        let dx = gpu_alloc(self, geo.numel())?;
        self.launch_with(
            BWD,
            &params(geo),
            &[xb, gb, sb, w, &dx],
            row_groups(geo),
            row_work(geo),
        );
        Ok(Storage::new_gpu(dx))
    }

    fn norm_affine_backward(
        &self,
        x: &Storage,
        stats: &Storage,
        g: &Storage,
        geo: &NormGeo,
        need: [bool; 2],
    ) -> Result<[Option<Storage>; 2]> {
        let (xb, sb, gb) = (x.gpu(OP)?, stats.gpu(OP)?, g.gpu(OP)?);
        let (chunk, chunks) = geo.chunks();
        let cols = geo.cols();
        let dw = gpu_alloc(self, chunks * geo.affine())?;
        let db = gpu_alloc(self, chunks * geo.affine())?;
        self.launch_with(
            AFFINE_BWD,
            &params(geo),
            &[xb, gb, sb, &dw, &db],
            groups_rows(geo.affine().div_ceil(cols) * chunks),
            Work {
                serial: chunk.min(geo.per_affine()).div_ceil(THREADS / cols) as u64,
                reduced: geo.numel() as u64,
                ..Default::default()
            },
        );
        Ok([
            need[0].then(|| Storage::new_gpu(dw)),
            need[1].then(|| Storage::new_gpu(db)),
        ])
    }
}
