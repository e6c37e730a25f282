//! The GPU backend's reductions (`shaders/reduce*.wgsl`): passes spread over as many
//! workgroups as the work needs, with subgroup operations where the adapter has them.

use std::sync::Arc;

use std::sync::OnceLock;

use super::kernels::{gpu_alloc, groups_1d, groups_rows, kernel, shader_with, subgroup_shader};
use super::params::{params, Dims, Params};
use super::{Generated, GpuBuffer, GpuContext, Kernel, ShaderFile, Work, MAX_GROUP_ELEMENTS};
use crate::backend::reduce::ReducePlan as Plan;
use crate::backend::{Reduce, Storage};
use crate::error::Result;
use crate::shape;
use crate::tensor::DType;

pub(crate) const FILE: ShaderFile = shader_with(
    "reduce",
    concat!(
        include_str!("../../../shaders/reduce_tree.wgsl"),
        include_str!("../../../shaders/reduce.wgsl")
    ),
    Generated::Fixed(reduce_bodies),
)
.with_params(&[&ReduceParams::INFO, &ReduceBwdParams::INFO]);
/// The same reductions with subgroup operations, for adapters that have them.
pub(crate) const SUBGROUP_FILE: ShaderFile = subgroup_shader(
    "reduce_subgroup",
    concat!(
        include_str!("../../../shaders/reduce_subgroup.wgsl"),
        include_str!("../../../shaders/reduce.wgsl")
    ),
)
.with_generated(Generated::Fixed(reduce_bodies))
.with_params(&[&ReduceParams::INFO]);

/// The bodies of the forward reductions (`shaders/reduce.wgsl` describes the passes),
/// written once and rendered per element type: `sum_body` / `max_body` on `f32`, and
/// `sum_u32_body` / `max_u32_body` on `u32` tensors, whose buffers the `f32` slots bind
/// (their bits read and written through `bitcast`).
fn reduce_bodies() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        const SUM: &str = "
fn sum{S}_body(g: u32, t: u32) {
    let s = slot_of(g, t);
    var acc = {ZERO};
    if (s.live) {
        let base = reduce_base(s.o);
        let start = s.split * rp.chunk;
        let stop = min(rp.m, start + rp.chunk);
        for (var j = start + s.lane; j < stop; j = j + s.lanes) {
            acc = acc + {LOAD}(x0[base + reduce_off(j)]);
        }
    }
    let total = combine_sum{S}(acc, t);
    if (s.live && s.lane == 0u) {
        if (rp.partial == 1u) {
            {SUM_OUT}[s.split * rp.outputs + s.o] = total;
        } else {
            {SUM_OUT}[s.o] = {SCALED};
        }
    }
}
";
        // The maximum and its position (row-major within the reduced dims; the first
        // on ties). A first pass reads values and numbers positions itself; later passes
        // (from_partials) read the partial values in x0 and their positions in xi.
        const MAX: &str = "
fn max{S}_body(g: u32, t: u32) {
    let s = slot_of(g, t);
    var best = {ZERO};
    var best_j = NONE;
    if (s.live) {
        let base = reduce_base(s.o);
        let start = s.split * rp.chunk;
        let stop = min(rp.m, start + rp.chunk);
        for (var j = start + s.lane; j < stop; j = j + s.lanes) {
            let at = base + reduce_off(j);
            var pos = j;
            if (rp.from_partials == 1u) { pos = xi[at]; }
            let v = {LOAD}(x0[at]);
            if (max_better{S}(v, pos, best, best_j)) { best = v; best_j = pos; }
        }
    }
    let ow = rp.ow;
    {PART}[t] = best;
    part_idx[t] = best_j;
    workgroupBarrier();
    for (var h = RT / ow / 2u; h > 0u; h = h / 2u) {
        if (t / ow < h) {
            let v = {PART}[t + h * ow];
            let j = part_idx[t + h * ow];
            if (max_better{S}(v, j, {PART}[t], part_idx[t])) { {PART}[t] = v; part_idx[t] = j; }
        }
        workgroupBarrier();
    }
    if (s.live && s.lane == 0u) {
        var at = s.o;
        if (rp.partial == 1u) { at = s.split * rp.outputs + s.o; }
        y0[at] = {STORE}({PART}[t]);
        yi[at] = part_idx[t];
    }
}
";
        let mut text = String::from(
            "// ---- Generated: the reductions' bodies per element type (src/backend/gpu/reduce.rs) ----\n",
        );
        // (suffix, zero, load, store, the max's lane array, the sum's output, the
        // final sum)
        let types = [
            ("", "0.0", "", "", "part", "y0", "total * rp.scale"),
            ("_u32", "0u", "bitcast<u32>", "bitcast<f32>", "part_u32", "yi", "total"),
        ];
        for (suffix, zero, load, store, part, sum_out, scaled) in types {
            for body in [SUM, MAX] {
                text += &body
                    .replace("{S}", suffix)
                    .replace("{ZERO}", zero)
                    .replace("{LOAD}", load)
                    .replace("{STORE}", store)
                    .replace("{PART}", part)
                    .replace("{SUM_OUT}", sum_out)
                    .replace("{SCALED}", scaled);
            }
        }
        text
    })
}

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
const SUM_U32_FWD: &Kernel = kernel!(FILE, "sum_u32_fwd", [X0, YI], loops, params = ReduceParams);
const MAX_U32_FWD: &Kernel = kernel!(
    FILE,
    "max_u32_fwd",
    [X0, XI, Y0, YI],
    loops,
    params = ReduceParams
);
const SUM_BWD: &Kernel = kernel!(FILE, "sum_bwd", [X0, Y0], params = ReduceBwdParams);
const MAX_BWD: &Kernel = kernel!(FILE, "max_bwd", [X0, XI, Y0], params = ReduceBwdParams);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![
        SUM_FWD,
        SUM_FWD_SUBGROUP,
        SUM_U32_FWD,
        MAX_FWD,
        MAX_U32_FWD,
        SUM_BWD,
        MAX_BWD,
    ]
}

/// The GPU geometry of a plan's forward pass (dims merged where contiguous).
fn geometry(plan: &Plan) -> Geometry {
    let zip = |sizes: &[usize], strides: &[usize]| -> Vec<(usize, usize)> {
        sizes.iter().copied().zip(strides.iter().copied()).collect()
    };
    Geometry {
        kept: merge_dims(&zip(&plan.kept_sizes, &plan.kept_strides)),
        red: merge_dims(&zip(&plan.red_sizes, &plan.red_strides)),
    }
}

/// The backward kernels' parameters.
fn bwd_params(plan: &Plan, scale: f32) -> ReduceBwdParams {
    let (so, sr) = plan.bwd_strides();
    ReduceBwdParams {
        n: shape::numel(&plan.input) as u32,
        rank: plan.input.len() as u32,
        scale,
        shape: Dims::of(&plan.input),
        out_strides: Dims::of(&so),
        red_strides: Dims::of(&sr),
        ..Default::default()
    }
}

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
/// On `u32` data (`integer`) the sums wrap past `u32::MAX` and `scale` is ignored.
fn gpu_sum(
    ctx: &Arc<GpuContext>,
    x: &GpuBuffer,
    geo: &Geometry,
    scale: f32,
    integer: bool,
) -> Result<GpuBuffer> {
    let outputs = geo.outputs();
    let kernel = if integer {
        SUM_U32_FWD
    } else if ctx.uses_subgroups() {
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
/// On `u32` data when `integer`.
fn gpu_max(
    ctx: &Arc<GpuContext>,
    x: &GpuBuffer,
    geo: &Geometry,
    integer: bool,
) -> Result<(GpuBuffer, GpuBuffer)> {
    let kernel = if integer { MAX_U32_FWD } else { MAX_FWD };
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
            kernel,
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

impl Reduce for Arc<GpuContext> {
    fn sum(&self, x: &Storage, plan: &Plan, scale: f64) -> Result<Storage> {
        let out = gpu_sum(self, x.gpu("reduce")?, &geometry(plan), scale as f32, false)?;
        Ok(Storage::Gpu(Arc::new(out)))
    }

    fn sum_u32(&self, x: &Storage, plan: &Plan) -> Result<Storage> {
        let out = gpu_sum(self, x.gpu("reduce")?, &geometry(plan), 1.0, true)?;
        Ok(Storage::Gpu(Arc::new(out)))
    }

    fn spread(&self, g: &Storage, plan: &Plan, scale: f64) -> Result<Storage> {
        let n = shape::numel(&plan.input);
        let out = gpu_alloc(self, n)?;
        let p = bwd_params(plan, scale as f32);
        self.launch(SUM_BWD, &p, &[g.gpu("reduce")?, &out], groups_1d(n));
        Ok(Storage::Gpu(Arc::new(out)))
    }

    fn max(&self, x: &Storage, plan: &Plan, dtype: DType) -> Result<(Storage, Storage)> {
        let integer = dtype == DType::U32;
        let (out, idx) = gpu_max(self, x.gpu("reduce")?, &geometry(plan), integer)?;
        Ok((Storage::Gpu(Arc::new(out)), Storage::Gpu(Arc::new(idx))))
    }

    fn max_backward(&self, g: &Storage, idx: &Storage, plan: &Plan) -> Result<Storage> {
        let n = shape::numel(&plan.input);
        let out = gpu_alloc(self, n)?;
        let p = bwd_params(plan, 1.0);
        self.launch(
            MAX_BWD,
            &p,
            &[g.gpu("reduce")?, idx.gpu("reduce")?, &out],
            groups_1d(n),
        );
        Ok(Storage::Gpu(Arc::new(out)))
    }
}
