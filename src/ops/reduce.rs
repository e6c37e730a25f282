//! Reductions over chosen dimensions (`sum`, `mean`, `max`, with `keepdim`) and their
//! backward: `sum`/`mean` spread the output gradient back over the reduced positions;
//! `max` saves the argmax indices and routes the gradient through them.
//!
//! On the GPU a reduction runs in passes over as many workgroups as the work needs: each
//! workgroup reduces at most [`MAX_GROUP_ELEMENTS`] positions (64 per thread), long
//! reductions split over workgroups that write partial results, and a further pass
//! reduces those (see `plan_pass` and ARCHITECTURE.md).

use crate::autograd::record;
use crate::backend::cpu::pool::{self, CollectPooled};
use crate::backend::cpu::{map_float, strided_offset, CpuData, Float, StridedIter};
use std::sync::Arc;

use crate::backend::gpu::params::{params, Dims, Params};
use crate::backend::gpu::{GpuBuffer, GpuContext, Kernel, ShaderFile, Work};
use crate::device::Device;
use crate::error::Result;
use crate::ops::{gpu_alloc, groups_1d, groups_rows, kernel, shader, split, subgroup_shader};
use crate::shape;
use crate::tensor::{check_float, DType, Tensor};

pub(crate) const FILE: ShaderFile = shader(
    "reduce",
    concat!(
        include_str!("../../shaders/reduce_tree.wgsl"),
        include_str!("../../shaders/reduce.wgsl")
    ),
)
.with_params(&[&ReduceParams::INFO, &ReduceBwdParams::INFO]);
/// The same reductions with subgroup operations, for adapters that have them.
pub(crate) const SUBGROUP_FILE: ShaderFile = subgroup_shader(
    "reduce_subgroup",
    concat!(
        include_str!("../../shaders/reduce_subgroup.wgsl"),
        include_str!("../../shaders/reduce.wgsl")
    ),
)
.with_params(&[&ReduceParams::INFO]);

params! {
    /// One pass of a forward reduction (`shaders/reduce.wgsl`): for each output o, the
    /// reduced positions of one split, `[split * chunk, min(m, (split + 1) * chunk))`.
    pub(crate) struct ReduceParams as rp {
        /// Outputs.
        outputs: u32,
        /// Reduced positions per output.
        m: u32,
        /// Kept dimensions (after merging).
        kept_rank: u32,
        /// Reduced dimensions (after merging).
        red_rank: u32,
        /// Applied by the final pass (a mean's 1 / m).
        scale: f32,
        /// Outputs per workgroup (threads: outputs by 256 / ow lanes).
        ow: u32,
        /// Reduced positions per split.
        chunk: u32,
        /// Splits of each output's positions.
        splits: u32,
        /// 1: the pass writes partial results `y[split * outputs + o]` for a later pass.
        partial: u32,
        /// 1: a max pass reads partial (value, position) pairs.
        from_partials: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
        /// Kept dimensions' sizes.
        kept: Dims,
        /// Their strides in the input.
        kept_strides: Dims @ (kept, kept_rank),
        /// Reduced dimensions' sizes.
        red: Dims,
        /// Their strides in the input.
        red_strides: Dims @ (red, red_rank),
    }

    /// A reduction's backward, one thread per input element.
    pub(crate) struct ReduceBwdParams as rb {
        /// Input elements.
        n: u32,
        /// The input's rank.
        rank: u32,
        /// The gradient's factor (a mean's 1 / m).
        scale: f32,
        /// Padding.
        _pad: u32,
        /// The input's shape.
        shape: Dims,
        /// Its dimensions' strides in the output (0 on reduced dimensions).
        out_strides: Dims @ (shape, rank),
        /// Their strides in the reduced-position space (0 on kept dimensions).
        red_strides: Dims @ (shape, rank),
    }
}

const SUM_FWD: &Kernel = kernel!(FILE, "sum_fwd", [X0, Y0], loops, params = ReduceParams);
const SUM_FWD_SUBGROUP: &Kernel = kernel!(
    SUBGROUP_FILE,
    "sum_fwd",
    [X0, Y0],
    loops,
    params = ReduceParams
);
const MAX_FWD: &Kernel = kernel!(
    FILE,
    "max_fwd",
    [X0, XI, Y0, YI],
    loops,
    params = ReduceParams
);
const SUM_BWD: &Kernel = kernel!(FILE, "sum_bwd", [X0, Y0], params = ReduceBwdParams);
const MAX_BWD: &Kernel = kernel!(FILE, "max_bwd", [X0, XI, Y0], params = ReduceBwdParams);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![SUM_FWD, SUM_FWD_SUBGROUP, MAX_FWD, SUM_BWD, MAX_BWD]
}

/// The geometry of one reduction.
#[derive(Clone)]
struct Plan {
    input: Vec<usize>,
    reduced: Vec<bool>,
    keep_shape: Vec<usize>,
    out_shape: Vec<usize>,
    kept_sizes: Vec<usize>,
    kept_strides: Vec<usize>,
    red_sizes: Vec<usize>,
    red_strides: Vec<usize>,
}

impl Plan {
    fn new(op: &'static str, input: &[usize], dims: &[isize], keepdim: bool) -> Result<Plan> {
        let dims = shape::normalize_dims(op, dims, input.len())?;
        let strides = shape::contiguous_strides(input);
        let reduced: Vec<bool> = (0..input.len()).map(|d| dims.contains(&d)).collect();
        let mut p = Plan {
            input: input.to_vec(),
            reduced: reduced.clone(),
            keep_shape: Vec::new(),
            out_shape: Vec::new(),
            kept_sizes: Vec::new(),
            kept_strides: Vec::new(),
            red_sizes: Vec::new(),
            red_strides: Vec::new(),
        };
        for d in 0..input.len() {
            if reduced[d] {
                p.keep_shape.push(1);
                p.red_sizes.push(input[d]);
                p.red_strides.push(strides[d]);
                if keepdim {
                    p.out_shape.push(1);
                }
            } else {
                p.keep_shape.push(input[d]);
                p.kept_sizes.push(input[d]);
                p.kept_strides.push(strides[d]);
                p.out_shape.push(input[d]);
            }
        }
        Ok(p)
    }

    fn outputs(&self) -> usize {
        shape::numel(&self.kept_sizes)
    }

    fn m(&self) -> usize {
        shape::numel(&self.red_sizes)
    }

    /// The GPU geometry of the forward pass (dims merged where contiguous).
    fn geometry(&self) -> Geometry {
        let zip = |sizes: &[usize], strides: &[usize]| -> Vec<(usize, usize)> {
            sizes.iter().copied().zip(strides.iter().copied()).collect()
        };
        Geometry {
            kept: merge_dims(&zip(&self.kept_sizes, &self.kept_strides)),
            red: merge_dims(&zip(&self.red_sizes, &self.red_strides)),
        }
    }

    /// For each input dim: its stride in the output (0 if reduced) and in the
    /// reduced-position space (0 if kept).
    fn bwd_strides(&self) -> (Vec<usize>, Vec<usize>) {
        let out_strides = shape::contiguous_strides(&self.keep_shape);
        let red_space = shape::contiguous_strides(&self.red_sizes);
        let (mut so, mut sr) = (Vec::new(), Vec::new());
        let mut r = 0;
        for (&reduced, &out_stride) in self.reduced.iter().zip(&out_strides) {
            if reduced {
                so.push(0);
                sr.push(red_space[r]);
                r += 1;
            } else {
                so.push(out_stride);
                sr.push(0);
            }
        }
        (so, sr)
    }

    fn bwd_params(&self, scale: f32) -> ReduceBwdParams {
        let (so, sr) = self.bwd_strides();
        ReduceBwdParams {
            n: shape::numel(&self.input) as u32,
            rank: self.input.len() as u32,
            scale,
            shape: Dims::of(&self.input),
            out_strides: Dims::of(&so),
            red_strides: Dims::of(&sr),
            ..Default::default()
        }
    }

    fn base(&self, o: usize) -> usize {
        strided_offset(o, &self.kept_sizes, &self.kept_strides)
    }

    fn offset(&self, j: usize) -> usize {
        strided_offset(j, &self.red_sizes, &self.red_strides)
    }
}

pub use crate::backend::gpu::MAX_GROUP_ELEMENTS;
/// A reduction is split further (down to this many elements per workgroup) while it has
/// fewer than [`TARGET_GROUPS`] workgroups, so that it fills a large GPU.
const MIN_GROUP_ELEMENTS: usize = 4_096;
/// Workgroups a pass aims for: enough to occupy every core of a large GPU (132 SMs and
/// several workgroups each) when there is that much work.
const TARGET_GROUPS: usize = 512;
/// Outputs per workgroup for column sums (outputs adjacent in memory): 32 neighbouring
/// floats per lane row, one 128-byte line.
const COLUMN_OUTPUTS: usize = 32;
/// Threads per reduction workgroup (`RT` in `shaders/reduce.wgsl`).
const REDUCE_THREADS: usize = 256;

/// Drops dims of size 1 and merges neighbours that are contiguous in memory, keeping
/// the row-major numbering of the positions.
fn merge_dims(dims: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &(size, stride) in dims {
        if size == 1 {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.1 == size * stride => {
                last.0 *= size;
                last.1 = stride;
            }
            _ => out.push((size, stride)),
        }
    }
    out
}

/// A GPU reduction's addressing: the kept dims (one output per position) and the reduced
/// dims (summed per output), each as (size, stride) pairs into the input buffer.
#[derive(Clone, Debug)]
struct Geometry {
    kept: Vec<(usize, usize)>,
    red: Vec<(usize, usize)>,
}

/// How one pass spreads a reduction over workgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pass {
    /// Outputs per workgroup (1, or up to [`COLUMN_OUTPUTS`] for column sums).
    pub ow: usize,
    /// Reduced positions per split.
    pub chunk: usize,
    /// Splits of each output's positions (1: this pass writes the result).
    pub splits: usize,
}

impl Pass {
    fn lanes(self) -> usize {
        REDUCE_THREADS / self.ow
    }
    fn blocks(self, outputs: usize) -> usize {
        outputs.div_ceil(self.ow)
    }
}

impl Geometry {
    /// Summing a `[rows, cols]` buffer over its rows.
    fn columns(rows: usize, cols: usize) -> Geometry {
        Geometry {
            kept: merge_dims(&[(cols, 1)]),
            red: merge_dims(&[(rows, cols)]),
        }
    }

    fn outputs(&self) -> usize {
        self.kept.iter().map(|d| d.0).product()
    }

    fn m(&self) -> usize {
        self.red.iter().map(|d| d.0).product()
    }

    fn params(&self, pass: Pass, scale: f32, partial: bool, from_partials: bool) -> ReduceParams {
        let (ks, kt): (Vec<usize>, Vec<usize>) = self.kept.iter().copied().unzip();
        let (rs, rt): (Vec<usize>, Vec<usize>) = self.red.iter().copied().unzip();
        ReduceParams {
            outputs: self.outputs() as u32,
            m: self.m() as u32,
            kept_rank: ks.len() as u32,
            red_rank: rs.len() as u32,
            scale,
            ow: pass.ow as u32,
            chunk: pass.chunk as u32,
            splits: pass.splits as u32,
            partial: partial as u32,
            from_partials: from_partials as u32,
            kept: Dims::of(&ks),
            kept_strides: Dims::of(&kt),
            red: Dims::of(&rs),
            red_strides: Dims::of(&rt),
            ..Default::default()
        }
    }
}

/// How a pass over `geo` spreads its work. Neighbouring threads read neighbouring
/// elements: lanes along the reduced positions when the reduced dims are innermost
/// (`ow = 1`), outputs along the threads when the kept dims are (column sums). Each
/// output's positions split into chunks of at most [`MAX_GROUP_ELEMENTS`] per workgroup,
/// and further (down to [`MIN_GROUP_ELEMENTS`]) until there are [`TARGET_GROUPS`]
/// workgroups.
fn plan_pass(geo: &Geometry) -> Pass {
    let (outputs, m) = (geo.outputs(), geo.m());
    let inner_kept = geo.kept.last().is_some_and(|d| d.1 == 1);
    let inner_red = geo.red.last().is_some_and(|d| d.1 == 1);
    let ow = if inner_kept && !inner_red {
        outputs.next_power_of_two().min(COLUMN_OUTPUTS)
    } else {
        1
    };
    let lanes = REDUCE_THREADS / ow;
    if m == 0 {
        return Pass {
            ow,
            chunk: lanes,
            splits: 1,
        };
    }
    let blocks = outputs.div_ceil(ow).max(1);
    let most = m.div_ceil((MAX_GROUP_ELEMENTS / ow).max(lanes));
    let fill = m.div_ceil((MIN_GROUP_ELEMENTS / ow).max(lanes));
    let splits = most.max(TARGET_GROUPS.div_ceil(blocks).min(fill));
    let chunk = m.div_ceil(splits).next_multiple_of(lanes);
    Pass {
        ow,
        chunk,
        splits: m.div_ceil(chunk),
    }
}

/// The work of one pass, for profiles and the dispatch tests.
fn pass_work(geo: &Geometry, pass: Pass) -> Work {
    Work {
        serial: pass.chunk.div_ceil(pass.lanes()) as u64,
        reduced: (geo.outputs() * geo.m()) as u64,
        ..Work::default()
    }
}

/// `scale` times the sum over `geo`'s reduced positions of `x`, one value per output.
fn gpu_sum(ctx: &Arc<GpuContext>, x: &GpuBuffer, geo: &Geometry, scale: f32) -> Result<GpuBuffer> {
    let outputs = geo.outputs();
    let kernel = if ctx.uses_subgroups() {
        SUM_FWD_SUBGROUP
    } else {
        SUM_FWD
    };
    let mut geo = geo.clone();
    let mut partials: Option<GpuBuffer> = None;
    loop {
        let pass = plan_pass(&geo);
        let last = pass.splits == 1;
        let out = gpu_alloc(ctx, if last { outputs } else { pass.splits * outputs })?;
        ctx.launch_with(
            kernel,
            &geo.params(pass, if last { scale } else { 1.0 }, !last, false),
            &[partials.as_ref().unwrap_or(x), &out],
            groups_rows(pass.blocks(outputs) * pass.splits),
            pass_work(&geo, pass),
        );
        if last {
            return Ok(out);
        }
        geo = Geometry::columns(pass.splits, outputs);
        partials = Some(out);
    }
}

/// The maximum over `geo`'s reduced positions of `x` and its position, per output.
fn gpu_max(ctx: &Arc<GpuContext>, x: &GpuBuffer, geo: &Geometry) -> Result<(GpuBuffer, GpuBuffer)> {
    let outputs = geo.outputs();
    let mut geo = geo.clone();
    let mut partials: Option<(GpuBuffer, GpuBuffer)> = None;
    loop {
        let pass = plan_pass(&geo);
        let last = pass.splits == 1;
        let n = if last { outputs } else { pass.splits * outputs };
        let (vals, idx) = (gpu_alloc(ctx, n)?, gpu_alloc(ctx, n)?);
        // A first pass numbers positions itself: its index slot holds the input, unread.
        let (src, src_idx) = match &partials {
            Some((v, i)) => (v, i),
            None => (x, x),
        };
        ctx.launch_with(
            MAX_FWD,
            &geo.params(pass, 1.0, !last, partials.is_some()),
            &[src, src_idx, &vals, &idx],
            groups_rows(pass.blocks(outputs) * pass.splits),
            pass_work(&geo, pass),
        );
        if last {
            return Ok((vals, idx));
        }
        geo = Geometry::columns(pass.splits, outputs);
        partials = Some((vals, idx));
    }
}

fn sum_cpu<T: Float>(plan: &Plan, x: &[T], scale: f64) -> Vec<T> {
    // Reducing leading dimensions only (a bias gradient: [rows, features] -> [features]):
    // add whole rows in memory order instead of striding down each column.
    let lead = plan.reduced.iter().take_while(|&&r| r).count();
    if lead > 0 && plan.reduced[lead..].iter().all(|&r| !r) {
        let inner: usize = plan.input[lead..].iter().product();
        let mut out = pool::filled(inner, T::zero());
        if inner > 0 {
            for row in x.chunks_exact(inner) {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
        }
        if scale != 1.0 {
            let s = T::from_f64(scale);
            out.iter_mut().for_each(|o| *o = *o * s);
        }
        return out;
    }
    let offsets: Vec<usize> = StridedIter::new(&plan.red_sizes, &plan.red_strides).collect();
    StridedIter::new(&plan.kept_sizes, &plan.kept_strides)
        .map(|base| {
            let mut acc = T::zero();
            for &j in &offsets {
                acc += x[base + j];
            }
            acc * T::from_f64(scale)
        })
        .collect_pooled()
}

fn max_cpu<T: Float>(plan: &Plan, x: &[T]) -> (Vec<T>, Vec<u32>) {
    (0..plan.outputs())
        .map(|o| {
            let base = plan.base(o);
            let mut best = (x[base + plan.offset(0)], 0u32);
            for j in 1..plan.m() {
                let v = x[base + plan.offset(j)];
                if v.beats_nan(best.0) {
                    best = (v, j as u32);
                }
            }
            best
        })
        .unzip()
}

/// Spreads `g` (output shape) back over the input: `scale * g[output of i]`.
fn spread(plan: &Plan, g: &Tensor, scale: f64) -> Result<Tensor> {
    let n = shape::numel(&plan.input);
    match g.device() {
        Device::Cpu => {
            let (so, _) = plan.bwd_strides();
            let out = map_float!(&*g.cpu_data(), |gv: T| StridedIter::new(&plan.input, &so)
                .map(|o| gv[o] * T::from_f64(scale))
                .collect_pooled());
            Ok(Tensor::from_cpu(out, plan.input.clone()))
        }
        Device::Gpu(ctx) => {
            let out = gpu_alloc(ctx, n)?;
            ctx.launch(
                SUM_BWD,
                &plan.bwd_params(scale as f32),
                &[g.gpu_buf(), &out],
                groups_1d(n),
            );
            Ok(Tensor::from_gpu(out, plan.input.clone(), g.dtype()))
        }
    }
}

/// A GPU sum of a tensor too large for one binding, in pieces that fit: cut along its
/// first dimension longer than 1 (a piece that is one slice and still too large is cut
/// again, along its next), each piece summed keeping its dimensions; the pieces' sums
/// are added where that dimension is reduced and joined along it where it is kept.
/// Slicing, adding and joining are differentiable, so the backward runs in the same
/// pieces.
fn sum_in_pieces(
    g: &GpuContext,
    x: &Tensor,
    plan: &Plan,
    dims: &[isize],
    scale: f64,
) -> Result<Tensor> {
    let d = plan
        .input
        .iter()
        .position(|&s| s > 1)
        .expect("a tensor over the binding cap has a dimension longer than 1");
    let size = plan.input[d];
    // Every dimension before d is 1, so the whole is `size * inner` and fewer than
    // `size` rows fit: each piece is smaller than the whole.
    let inner = shape::numel(&plan.input[d + 1..]);
    let per = split::rows_per_piece(g, inner).min(size - 1).max(1);
    let mut parts = Vec::with_capacity(size.div_ceil(per));
    for start in (0..size).step_by(per) {
        let piece = x.narrow(d as isize, start, per.min(size - start))?;
        parts.push(sum_like(&piece, dims, true, false)?);
    }
    let joined = if plan.reduced[d] {
        let mut parts = parts.into_iter();
        let first = parts.next().expect("at least one piece");
        parts.try_fold(first, |acc, p| acc.add(&p))?
    } else {
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), d as isize)?
    };
    let y = joined.reshape(&plan.out_shape)?;
    if scale == 1.0 {
        Ok(y)
    } else {
        y.affine(scale as f32, 0.0)
    }
}

fn sum_like(x: &Tensor, dims: &[isize], keepdim: bool, mean: bool) -> Result<Tensor> {
    let op = if mean { "mean" } else { "sum" };
    check_float(op, x)?;
    let plan = Plan::new(op, x.shape(), dims, keepdim)?;
    // The mean of no elements is 0 / 0 = NaN, as PyTorch (the sum stays 0).
    let scale = if mean { 1.0 / plan.m() as f64 } else { 1.0 };
    if plan.red_sizes.is_empty() {
        return x.reshape(&plan.out_shape);
    }
    if let Device::Gpu(g) = x.device() {
        if split::over(g, x.numel()) {
            return sum_in_pieces(g, x, &plan, dims, scale);
        }
    }
    let y = match x.device() {
        Device::Cpu => {
            let out = map_float!(&*x.cpu_data(), |v: T| sum_cpu(&plan, v, scale));
            Tensor::from_cpu(out, plan.out_shape.clone())
        }
        Device::Gpu(g) => {
            let out = gpu_sum(g, x.gpu_buf(), &plan.geometry(), scale as f32)?;
            Tensor::from_gpu(out, plan.out_shape.clone(), x.dtype())
        }
    };
    Ok(record(y, op, &[x], move |g| {
        Ok(vec![Some(spread(&plan, g, scale)?)])
    }))
}

/// Maximum over `dims` and the flat position of the maximum within the reduced
/// dimensions (row-major over them; the first on ties). NaN is the largest value, as in
/// PyTorch: a slice holding NaN gives NaN and the position of its first NaN.
pub fn max_with_indices(x: &Tensor, dims: &[isize], keepdim: bool) -> Result<(Tensor, Tensor)> {
    check_float("max", x)?;
    let plan = Plan::new("max", x.shape(), dims, keepdim)?;
    if plan.m() == 0 {
        // PyTorch's errors: an empty tensor needs a reduction dim, and that dim must
        // not be empty (an empty tensor reduced over a non-empty dim is empty).
        let what = if plan.red_sizes.len() == plan.input.len() {
            "expected reduction dims to be specified for an empty input"
        } else {
            "expected the reduction dims to have non-zero size"
        };
        return crate::error::shape_err("max", what);
    }
    let (y, idx) = match x.device() {
        Device::Cpu => {
            let (vals, idx) = match &*x.cpu_data() {
                CpuData::F32(v) => {
                    let (a, b) = max_cpu(&plan, v);
                    (CpuData::F32(a), b)
                }
                CpuData::F64(v) => {
                    let (a, b) = max_cpu(&plan, v);
                    (CpuData::F64(a), b)
                }
                CpuData::U32(_) => unreachable!("max dtype checked"),
            };
            (
                Tensor::from_cpu(vals, plan.out_shape.clone()),
                Tensor::from_cpu(CpuData::U32(idx), plan.out_shape.clone()),
            )
        }
        Device::Gpu(g) => {
            let (out, idx) = gpu_max(g, x.gpu_buf(), &plan.geometry())?;
            (
                Tensor::from_gpu(out, plan.out_shape.clone(), x.dtype()),
                Tensor::from_gpu(idx, plan.out_shape.clone(), DType::U32),
            )
        }
    };
    let saved = idx.clone();
    let y = record(y, "max", &[x], move |g| {
        let n = shape::numel(&plan.input);
        let dx = match g.device() {
            Device::Cpu => {
                let (so, sr) = plan.bwd_strides();
                let idx = saved.cpu_data();
                let CpuData::U32(idx) = &*idx else {
                    unreachable!("argmax is u32")
                };
                let out = map_float!(&*g.cpu_data(), |gv: T| (0..n)
                    .map(|i| {
                        let o = strided_offset(i, &plan.input, &so);
                        if idx[o] as usize == strided_offset(i, &plan.input, &sr) {
                            gv[o]
                        } else {
                            T::zero()
                        }
                    })
                    .collect_pooled());
                Tensor::from_cpu(out, plan.input.clone())
            }
            Device::Gpu(ctx) => {
                let out = gpu_alloc(ctx, n)?;
                ctx.launch(
                    MAX_BWD,
                    &plan.bwd_params(1.0),
                    &[g.gpu_buf(), saved.gpu_buf(), &out],
                    groups_1d(n),
                );
                Tensor::from_gpu(out, plan.input.clone(), g.dtype())
            }
        };
        Ok(vec![Some(dx)])
    });
    Ok((y, idx))
}

impl Tensor {
    /// Sum of all elements (a 0-dimensional tensor).
    pub fn sum(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        sum_like(self, &all, false, false)
    }
    /// Sum over `dims` (negative dims count from the end).
    pub fn sum_dim(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        sum_like(self, dims, keepdim, false)
    }
    /// Mean of all elements; NaN for an empty tensor (0 / 0, as PyTorch).
    pub fn mean(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        sum_like(self, &all, false, true)
    }
    /// Mean over `dims`; NaN where they hold no elements.
    pub fn mean_dim(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        sum_like(self, dims, keepdim, true)
    }
    /// Maximum of all elements: NaN if any is NaN; a shape error for an empty tensor.
    pub fn max(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        Ok(max_with_indices(self, &all, false)?.0)
    }
    /// Maximum over `dims`; the gradient flows to the (first) maximal element.
    pub fn max_dim(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        Ok(max_with_indices(self, dims, keepdim)?.0)
    }
    /// Maximum over one dimension and its position along it (`u32`), like `torch.max(x, dim)`.
    pub fn max_dim_with_indices(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        max_with_indices(self, &[dim], keepdim)
    }
    /// Position of the maximum along `dim` (`u32`; the first NaN's where there is one).
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        Ok(crate::autograd::no_grad(|| max_with_indices(self, &[dim], keepdim))?.1)
    }
}
