//! The GPU backend's layout and indexing primitives (`shaders/layout.wgsl`): fills,
//! strided copies and scatters (buffer copies where whole runs can move without a
//! kernel), `index_select`, `gather`, `where` and their backwards (scatter-adds chunked
//! over the index's positions: no atomics, deterministic).

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d, kernel, shader};
use super::params::{params, Dims, Params};
use super::{GpuBuffer, GpuContext, Kernel, ShaderFile, Work};
use crate::backend::layout::{Fill, Indexed, Pick, Region, WhereGeo};
use crate::backend::{Buffers, Indexing, Layout, Storage};
use crate::error::{arg_err, Error, Result};
use crate::tensor::DType;

pub(crate) const FILE: ShaderFile = shader("layout", include_str!("../../../shaders/layout.wgsl"))
    .with_params(&[
        &FillParams::INFO,
        &RegionParams::INFO,
        &IndexParams::INFO,
        &WhereParams::INFO,
    ]);

params! {
    /// A fill: `n` elements of `value` (f32) or `bits` (u32).
    pub(crate) struct FillParams as fp {
        /// Elements.
        n: u32,
        /// The f32 value.
        value: f32,
        /// The u32 value.
        bits: u32,
        /// Padding.
        _pad: u32,
    }

    /// A strided region of a buffer: a copy out of it or a scatter into it.
    pub(crate) struct RegionParams as rg {
        /// Elements.
        n: u32,
        /// The region's rank.
        rank: u32,
        /// Its first element's offset.
        base: u32,
        /// Padding.
        _pad: u32,
        /// Its shape.
        shape: Dims,
        /// Its strides in the buffer.
        strides: Dims @ (shape, rank),
    }

    /// `index_select` and `gather` (the indexed dimension viewed as `[outer, size,
    /// inner]`) and their chunked scatter-add backward.
    pub(crate) struct IndexParams as ix {
        /// Threads: the output's elements (forward), the input's (backward).
        n: u32,
        /// The indexed dimension's size in the input.
        size: u32,
        /// Its size in the output (the index's length).
        j: u32,
        /// Elements per position of the dimension.
        inner: u32,
        /// The positions j one backward launch covers: from `start`...
        start: u32,
        /// ... to `end`.
        end: u32,
        /// 1: the launch adds to the earlier chunks' sums.
        accumulate: u32,
        /// Padding.
        _pad: u32,
    }

    /// `where` with broadcasting: the condition (x0), a (x1) and b (x2).
    pub(crate) struct WhereParams as wp {
        /// Output elements.
        n: u32,
        /// The output's rank.
        rank: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
        /// The output's shape.
        shape: Dims,
        /// The condition's strides over it.
        sc: Dims @ (shape, rank),
        /// a's strides.
        sa: Dims @ (shape, rank),
        /// b's strides.
        sb: Dims @ (shape, rank),
    }
}

const FILL: &Kernel = kernel!(FILE, "fill_fwd", [Y0], params = FillParams);
const FILL_U32: &Kernel = kernel!(FILE, "fill_u32_fwd", [YI], params = FillParams);
const CAST_U32_F32: &Kernel = kernel!(FILE, "cast_u32_f32_fwd", [X0, Y0], params = FillParams);
const CAST_F32_U32: &Kernel = kernel!(FILE, "cast_f32_u32_fwd", [X0, YI], params = FillParams);
const STRIDED_COPY: &Kernel = kernel!(FILE, "strided_copy_fwd", [X0, Y0], params = RegionParams);
const STRIDED_SCATTER: &Kernel =
    kernel!(FILE, "strided_scatter_fwd", [X0, Y0], params = RegionParams);
const INDEX_SELECT_FWD: &Kernel = kernel!(
    FILE,
    "index_select_fwd",
    [X0, XI, Y0, YI],
    params = IndexParams
);
const INDEX_SELECT_BWD: &Kernel = kernel!(
    FILE,
    "index_select_bwd",
    [X0, XI, Y0],
    loops,
    params = IndexParams
);
const GATHER_FWD: &Kernel = kernel!(FILE, "gather_fwd", [X0, XI, Y0, YI], params = IndexParams);
const GATHER_BWD: &Kernel = kernel!(
    FILE,
    "gather_bwd",
    [X0, XI, Y0],
    loops,
    params = IndexParams
);
const WHERE_FWD: &Kernel = kernel!(FILE, "where_fwd", [X0, X1, X2, Y0], params = WhereParams);
const WHERE_BWD: &Kernel = kernel!(FILE, "where_bwd", [X0, X2, Y0, Y1], params = WhereParams);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![
        FILL,
        FILL_U32,
        CAST_U32_F32,
        CAST_F32_U32,
        STRIDED_COPY,
        STRIDED_SCATTER,
        INDEX_SELECT_FWD,
        INDEX_SELECT_BWD,
        GATHER_FWD,
        GATHER_BWD,
        WHERE_FWD,
        WHERE_BWD,
    ]
}

fn region_params(r: Region) -> RegionParams {
    RegionParams {
        n: r.numel() as u32,
        rank: r.shape.len() as u32,
        base: r.base as u32,
        shape: Dims::of(r.shape),
        strides: Dims::of(r.strides),
        ..Default::default()
    }
}

/// The runs of region `r` as `(region offset, flat offset, run)`, when buffer copies
/// should move it instead of a kernel: one run (a contiguous region), or at most 4,096
/// runs when the region or the buffer it is cut from or put into (`whole` elements,
/// which the kernel would bind whole) is too large for a kernel to bind.
fn copy_runs(g: &Arc<GpuContext>, r: Region, whole: usize) -> Option<Vec<(usize, usize, usize)>> {
    let n = r.numel();
    let (run, _) = r.contiguous_runs();
    let cap = g.binding_elements();
    let big = n > cap || whole > cap;
    if n == 0 || (run != n && !(big && n / run.max(1) <= 4096)) {
        return None;
    }
    let mut runs = Vec::new();
    r.for_each_run(|o, i, len| runs.push((o, i, len)));
    Some(runs)
}

/// Positions j one launch of a chunked scatter-add covers: no thread loops longer.
const SCATTER_CHUNK: usize = 1024;

/// Launches a scatter-add backward (`index_select_bwd`, `gather_bwd`) over the `j`
/// positions in chunks of [`SCATTER_CHUNK`], each after the first adding to the sums.
/// `p` gives the geometry; the chunks are set here.
fn scatter_add_chunks(
    ctx: &Arc<GpuContext>,
    kernel: &'static Kernel,
    mut p: IndexParams,
    bufs: &[&GpuBuffer; 3],
    n_in: usize,
    j: usize,
) {
    // One launch even for j = 0, so the result is written (as zeros).
    for (chunk, start) in (0..j.max(1)).step_by(SCATTER_CHUNK).enumerate() {
        let end = (start + SCATTER_CHUNK).min(j);
        p.start = start as u32;
        p.end = end as u32;
        p.accumulate = (chunk > 0) as u32;
        let work = Work {
            serial: (end - start).max(1) as u64,
            ..Work::default()
        };
        ctx.launch_with(kernel, &p, bufs, groups_1d(n_in), work);
    }
}

/// The index kernels' geometry over `n` threads (no backward chunk set).
fn index_params(n: usize, geo: &Indexed) -> IndexParams {
    IndexParams {
        n: n as u32,
        size: geo.size as u32,
        j: geo.j as u32,
        inner: geo.inner as u32,
        ..Default::default()
    }
}

fn where_params(geo: &WhereGeo) -> WhereParams {
    WhereParams {
        n: geo.n() as u32,
        rank: geo.out.len() as u32,
        shape: Dims::of(&geo.out),
        sc: Dims::of(&geo.sc),
        sa: Dims::of(&geo.sa),
        sb: Dims::of(&geo.sb),
        ..Default::default()
    }
}

impl Layout for Arc<GpuContext> {
    fn cast(&self, x: &Storage, n: usize, from: DType, to: DType) -> Result<Storage> {
        let kernel = match (from, to) {
            (DType::U32, DType::F32) => CAST_U32_F32,
            (DType::F32, DType::U32) => CAST_F32_U32,
            _ => {
                return Err(Error::DType {
                    op: "to_dtype",
                    msg: format!("GPU tensors hold f32 or u32: {from:?} -> {to:?}"),
                })
            }
        };
        let out = gpu_alloc(self, n)?;
        let p = FillParams {
            n: n as u32,
            ..Default::default()
        };
        self.launch(kernel, &p, &[x.gpu("to_dtype")?, &out], groups_1d(n));
        Ok(Storage::new_gpu(out))
    }

    fn fill(&self, n: usize, value: Fill) -> Result<Storage> {
        let out = gpu_alloc(self, n)?;
        match value {
            Fill::F32(value) => {
                let p = FillParams {
                    n: n as u32,
                    value,
                    ..Default::default()
                };
                self.launch(FILL, &p, &[&out], groups_1d(n))
            }
            Fill::U32(bits) => {
                let p = FillParams {
                    n: n as u32,
                    bits,
                    ..Default::default()
                };
                self.launch(FILL_U32, &p, &[&out], groups_1d(n))
            }
            Fill::F64(_) => {
                return Err(Error::DType {
                    op: "full",
                    msg: "GPU tensors hold f32 or u32, not f64".into(),
                })
            }
        }
        Ok(Storage::new_gpu(out))
    }

    fn copy_region(&self, x: &Storage, x_len: usize, r: Region) -> Result<Storage> {
        let src = x.gpu("strided_copy")?;
        let n = r.numel();
        let out = gpu_alloc(self, n)?;
        if let Some(runs) = copy_runs(self, r, x_len) {
            // Whole runs move as buffer copies (no kernel, no binding limit).
            for (o, i, run) in runs {
                self.copy_range(
                    src,
                    (r.base + o) as u64 * 4,
                    &out,
                    i as u64 * 4,
                    run as u64 * 4,
                );
            }
            return Ok(Storage::new_gpu(out));
        }
        self.launch(STRIDED_COPY, &region_params(r), &[src, &out], groups_1d(n));
        Ok(Storage::new_gpu(out))
    }

    fn scatter_region(
        &self,
        dst: &Storage,
        dst_len: usize,
        src: &Storage,
        r: Region,
    ) -> Result<()> {
        if dst.same_as(src) {
            return arg_err(
                "strided_scatter",
                "a buffer cannot be scattered into itself",
            );
        }
        let (d, s) = (dst.gpu("strided_scatter")?, src.gpu("strided_scatter")?);
        match copy_runs(self, r, dst_len) {
            Some(runs) => {
                for (o, i, run) in runs {
                    self.copy_range(s, i as u64 * 4, d, (r.base + o) as u64 * 4, run as u64 * 4);
                }
            }
            None => self.launch(
                STRIDED_SCATTER,
                &region_params(r),
                &[s, d],
                groups_1d(r.numel()),
            ),
        }
        Ok(())
    }
}

impl Indexing for Arc<GpuContext> {
    fn index(&self, x: &Storage, idx: &Storage, geo: &Indexed) -> Result<Storage> {
        let op = geo.name();
        let (xb, ib) = (x.gpu(op)?, idx.gpu(op)?);
        let n = geo.out_len();
        let out = gpu_alloc(self, n)?;
        let flag = self.error_flag()?;
        let kernel = match geo.pick {
            Pick::Select => INDEX_SELECT_FWD,
            Pick::Gather => GATHER_FWD,
        };
        self.launch(
            kernel,
            &index_params(n, geo),
            &[xb, ib, &out, &flag],
            groups_1d(n),
        );
        Ok(Storage::new_gpu(out))
    }

    fn index_backward(&self, g: &Storage, idx: &Storage, geo: &Indexed) -> Result<Storage> {
        let op = geo.name();
        let (gb, ib) = (g.gpu(op)?, idx.gpu(op)?);
        let n_in = geo.in_len();
        let out = gpu_alloc(self, n_in)?;
        let kernel = match geo.pick {
            Pick::Select => INDEX_SELECT_BWD,
            Pick::Gather => GATHER_BWD,
        };
        let p = index_params(n_in, geo);
        scatter_add_chunks(self, kernel, p, &[gb, ib, &out], n_in, geo.j);
        Ok(Storage::new_gpu(out))
    }

    fn where_cond(
        &self,
        cond: &Storage,
        a: &Storage,
        b: &Storage,
        geo: &WhereGeo,
    ) -> Result<Storage> {
        let bufs = [cond.gpu("where")?, a.gpu("where")?, b.gpu("where")?];
        let n = geo.n();
        let out = gpu_alloc(self, n)?;
        self.launch(
            WHERE_FWD,
            &where_params(geo),
            &[bufs[0], bufs[1], bufs[2], &out],
            groups_1d(n),
        );
        Ok(Storage::new_gpu(out))
    }

    fn where_backward(
        &self,
        cond: &Storage,
        g: &Storage,
        geo: &WhereGeo,
    ) -> Result<(Storage, Storage)> {
        let (cb, gb) = (cond.gpu("where")?, g.gpu("where")?);
        let n = geo.n();
        let (da, db) = (gpu_alloc(self, n)?, gpu_alloc(self, n)?);
        self.launch(
            WHERE_BWD,
            &where_params(geo),
            &[cb, gb, &da, &db],
            groups_1d(n),
        );
        Ok((Storage::new_gpu(da), Storage::new_gpu(db)))
    }
}
