//! The GPU launcher of the matrix-product family: the kernels of `shaders/matmul.wgsl`,
//! and [`Product::run_epi`], which plans a product (see [`super::matmul_plan`]), fills
//! its parameter block and fused parts, and launches it in as many passes and batch
//! groups as the grid and binding limits need.

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d, groups_rows, kernel, shader_with};
use super::matmul_plan::{self as plan, MatmulKernel, MatmulPlan, PlanLimits, ProductShape};
use super::params::{params, Params, Words4};
use super::{GpuBuffer, GpuContext, Kernel, ShaderFile, Work};
use crate::backend::matmul::{Act, Epi, MatmulChoice, Product};
use crate::backend::reduce::ReducePlan;
use crate::backend::{Buffers, Matmul, Reduce, Storage};
use crate::error::Result;
use crate::shape;

pub(crate) const FILE: ShaderFile = shader_with(
    "matmul",
    include_str!("../../../shaders/matmul.wgsl"),
    crate::backend::gpu::Generated::PerVariant(
        crate::backend::elementwise::wgsl_for_epilogue,
        crate::backend::elementwise::wgsl_functions,
    ),
)
.with_params(&[&MatmulParams::INFO, &SumPartialsParams::INFO]);

params! {
    /// Every product kernel's parameters (`shaders/matmul.wgsl`).
    pub(crate) struct MatmulParams as mm {
        /// Rows of the product.
        m: u32,
        /// Columns.
        n: u32,
        /// The inner dimension.
        k: u32,
        /// Batch dimensions.
        batch_rank: u32,
        /// The batch shape.
        batch: Words4,
        /// A's batch strides (0 where broadcast).
        sa: Words4 @ (batch, batch_rank),
        /// B's batch strides.
        sb: Words4 @ (batch, batch_rank),
        /// A's stride along m.
        a_row: u32,
        /// A's stride along k.
        a_col: u32,
        /// B's stride along k.
        b_row: u32,
        /// B's stride along n.
        b_col: u32,
        /// The launch's first batch.
        first_batch: u32,
        /// Batches of the whole product.
        batches: u32,
        /// Splits of K.
        splits: u32,
        /// K per split.
        k_chunk: u32,
        /// 1: add to the output instead of writing it.
        accumulate: u32,
        /// The launch's first k.
        k_first: u32,
        /// The fused epilogue's flags (bias, bias per row, addend, pre-activation).
        flags: u32,
        /// The activation's first scalar.
        act_a: f32,
        /// The addend's (or pre-activation's) offset in y1.
        addend_off: u32,
        /// The output's offset in y0.
        out_off: u32,
        /// The activation's second scalar.
        act_b: f32,
        /// A's offset in its buffer.
        a_off: u32,
        /// B's offset in its buffer.
        b_off: u32,
        /// Output tiles along n.
        tiles_x: u32,
        /// Output tiles along m.
        tiles_y: u32,
        /// Gathered B (a convolution's columns): the image's channels.
        conv_c: u32,
        /// Its height.
        conv_h: u32,
        /// Its width.
        conv_w: u32,
        /// The convolution's output height.
        conv_ho: u32,
        /// Its output width.
        conv_wo: u32,
        /// Kernel height.
        conv_kh: u32,
        /// Kernel width.
        conv_kw: u32,
        /// Row stride.
        conv_sh: u32,
        /// Column stride.
        conv_sw: u32,
        /// Row padding.
        conv_ph: u32,
        /// Column padding.
        conv_pw: u32,
        /// Row dilation.
        conv_dh: u32,
        /// Column dilation.
        conv_dw: u32,
    }

    /// The sum of a product's partial results (splits, summed batches) and their row sums.
    pub(crate) struct SumPartialsParams as sp {
        /// Partial results.
        count: u32,
        /// Elements of one.
        len: u32,
        /// Row sums of one.
        rows: u32,
        /// Padding.
        _pad: u32,
    }
}
/// The tiled and small-tile kernels bind a bias or saved activation output (`x2`) and
/// an addend or bias gradient (`y1`) for the fused prologue and epilogue; the override
/// `EPI` compiles those parts in or out (a plain product binds stand-ins).
/// Partial products one thread of `matmul_partials_bwd` adds at most (a thread's serial
/// loop stays within 1,024 elements); more are summed by the reduction kernels.
const MAX_PARTIALS_SERIAL: usize = 1024;

const MATMUL_TILE: &Kernel = kernel!(
    FILE,
    "matmul_tile_fwd",
    [X0V, X1V, X2, Y0, Y1],
    loops,
    overrides = ["TT", "A_KMAJOR", "B_KMAJOR", "VEC_A", "VEC_B", "EPI"],
    params = MatmulParams
);
const MATMUL_SMALL: &Kernel = kernel!(
    FILE,
    "matmul_small_fwd",
    [X0, X1, X2, Y0, Y1],
    loops,
    overrides = ["SM", "SN", "EPI", "A_IN_Y0", "B_CONV"],
    params = MatmulParams
);
/// The block kernel binds the vec4 views of both operands (its scalar loads go through
/// them too), like the tiled kernel, and both views of `x2` (a prologue's saved output
/// is read as vec4s along with A).
const MATMUL_BLOCK: &Kernel = kernel!(
    FILE,
    "matmul_block_fwd",
    [X0V, X1V, X2, Y0, Y1, X2V],
    loops,
    overrides = ["BR", "BC", "LAYOUT", "EPI", "A_IN_Y0", "B_CONV"],
    params = MatmulParams
);
const MATMUL_NAIVE: &Kernel = kernel!(
    FILE,
    "matmul_naive_fwd",
    [X0, X1, Y0],
    loops,
    params = MatmulParams
);
const SUM_PARTIALS: &Kernel = kernel!(
    FILE,
    "matmul_partials_bwd",
    [X0, X1, Y0, Y1],
    loops,
    params = SumPartialsParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![
        MATMUL_TILE,
        MATMUL_SMALL,
        MATMUL_BLOCK,
        MATMUL_NAIVE,
        SUM_PARTIALS,
    ]
}

impl Matmul for Arc<GpuContext> {
    fn matmul(
        &self,
        a: &Storage,
        b: &Storage,
        p: &Product,
        choice: MatmulChoice,
    ) -> Result<Storage> {
        let epi = Epi {
            half_out: true,
            ..Epi::default()
        };
        p.run_epi(self, a, b, choice, &epi)
    }

    fn matmul_plan(&self, shape: &ProductShape) -> Option<MatmulPlan> {
        plan::plan(shape, MatmulKernel::Auto, 0, &plan_limits(self))
    }
}

/// The override values of the tiled kernel: thread tile, which axis of each operand
/// is contiguous, and whether a transposed A (contiguous along M) or an
/// untransposed B (contiguous along N) can be read as aligned vec4s (that axis's
/// extent and every other stride a multiple of 4). Operands contiguous along K are
/// read as scalars, coalesced across threads (see `load_a` in the shader).
fn tile_overrides(p: &Product, kernel: MatmulKernel, epi: &Epi) -> [u32; 6] {
    let ((_, a_cs), (b_rs, _)) = (p.a_strides, p.b_strides);
    let all4 = |v: &[usize]| v.iter().all(|x| x.is_multiple_of(4));
    let a_kmajor = a_cs == 1;
    let b_kmajor = b_rs == 1;
    let vec_a = !a_kmajor && all4(&p.sa) && all4(&[p.m, a_cs, epi.a_off]);
    let vec_b = !b_kmajor && all4(&p.sb) && all4(&[p.n, b_rs, epi.b_off]);
    let tt = if kernel == MatmulKernel::Tile128 {
        8
    } else {
        4
    };
    [
        tt,
        a_kmajor as u32,
        b_kmajor as u32,
        vec_a as u32,
        vec_b as u32,
        epi.code(),
    ]
}

/// The override values of a block kernel: outputs per thread, the layout bits (1 A
/// contiguous along K, 2 B contiguous along K, 4 / 8 A / B read as aligned vec4s
/// along that axis: its unit stride, every other stride, batch stride and offset a
/// multiple of 4, and along M or N that extent too), and the fused parts.
fn block_overrides(p: &Product, kernel: MatmulKernel, epi: &Epi) -> [u32; 6] {
    let (rows, cols) = kernel.block().expect("a block kernel");
    let ((a_rs, a_cs), (b_rs, b_cs)) = (p.a_strides, p.b_strides);
    let all4 = |v: &[usize]| v.iter().all(|x| x.is_multiple_of(4));
    // An operand whose other axis (M or N, of `extent`) has stride `outer` and whose
    // K axis has stride `inner`: vec4s along whichever is contiguous.
    let vec_ok = |outer: usize, inner: usize, extent: usize, batch: &[usize], off: usize| {
        all4(batch)
            && off.is_multiple_of(4)
            && if inner == 1 {
                outer.is_multiple_of(4)
            } else {
                outer == 1 && all4(&[inner, extent])
            }
    };
    let a_kmajor = a_cs == 1;
    let b_kmajor = b_rs == 1;
    let vec_a = !epi.a_in_out && vec_ok(a_rs, a_cs, p.m, &p.sa, epi.a_off);
    let vec_b = epi.conv.is_none() && vec_ok(b_cs, b_rs, p.n, &p.sb, epi.b_off);
    let layout =
        a_kmajor as u32 | (b_kmajor as u32) << 1 | (vec_a as u32) << 2 | (vec_b as u32) << 3;
    [
        rows as u32,
        cols as u32,
        layout,
        epi.code(),
        epi.a_in_out as u32,
        epi.conv.map_or(0, |(mode, _)| mode),
    ]
}

impl Product {
    /// Runs the product on the GPU `g` with a fused prologue and epilogue `epi`: one
    /// launch per pass and per group of at most 65,535 (batch, split) pairs, then the
    /// reduction of the splits and of a summed batch. Returns the result, `[out
    /// batch..., M, N]` elements (`epi.out` itself when given). With an epilogue
    /// ([`Epi::direct`]) the product runs without splits of K (passes apply it on the
    /// last one); a prologue or row sums alone allow splits and summed batches (their
    /// partials are added by one pass).
    pub(crate) fn run_epi(
        &self,
        g: &Arc<GpuContext>,
        a: &Storage,
        b: &Storage,
        choice: MatmulChoice,
        epi: &Epi,
    ) -> Result<Storage> {
        let fused = epi.active();
        let direct = epi.direct();
        let (m, n, k) = (self.m, self.n, self.k);
        let batches = shape::numel(&self.batch);
        let final_len = self.out_len();
        debug_assert!(!(direct && self.summing), "no epilogue on a summed batch");
        debug_assert!(
            epi.rowsum.is_none() || (n > 0 && (batches == 1 || self.out_batch.is_empty())),
            "row sums come from one matrix with columns, or a batch summed to one"
        );
        if m * n * batches == 0 || (k == 0 && !fused) {
            // An empty product, or an empty inner dimension: all zeros (row sums over an
            // empty batch too).
            let rows = match (epi.rowsum, epi.accumulate) {
                (Some(rows), false) if m * batches == 0 || n == 0 => Some(rows),
                _ => None,
            };
            let out = match epi.out {
                Some((t, _)) => t.clone(),
                None => Storage::new_gpu(gpu_alloc(g, final_len)?),
            };
            let len = if epi.out.is_some() { 0 } else { final_len };
            zeros(g, (&out, len), rows.map(|r| (r, m)))?;
            return Ok(out);
        }
        let product = ProductShape {
            m,
            n,
            k: k.max(1),
            batches,
            summing: self.summing,
        };
        let limits = plan_limits(g);
        let mut kernel_choice = choice.kernel;
        if fused && kernel_choice == MatmulKernel::Naive {
            kernel_choice = MatmulKernel::Auto;
        }
        // A half output is written directly: one split, no reduction after.
        let want_half = epi.half_out
            && epi.out.is_none()
            && !epi.accumulate
            && !epi.a_in_out
            && epi.rowsum.is_none()
            && !self.summing
            && self.batch == self.out_batch;
        let splits_choice = if direct || want_half {
            1
        } else {
            choice.splits
        };
        // Never `None` since grids fold (one split always fits); kept as an error, not a
        // panic.
        let no_plan = || crate::Error::Shape {
            op: "matmul",
            msg: format!("no kernel can run a {m} x {n} x {k} product"),
        };
        let mut plan =
            plan::plan(&product, kernel_choice, splits_choice, &limits).ok_or_else(no_plan)?;
        let small_only = epi.a_in_out || epi.conv.is_some();
        if small_only && matches!(plan.kernel, MatmulKernel::Tile128 | MatmulKernel::Tile64) {
            // Only the small-tile and block kernels read A from the output binding or
            // gather B.
            plan = plan::plan(&product, MatmulKernel::Small32x32, splits_choice, &limits)
                .ok_or_else(no_plan)?;
        }
        let splits = plan.splits;
        let u = |v: usize| v as u32;
        let mut p = MatmulParams {
            m: u(m),
            n: u(n),
            k: u(k),
            batch_rank: u(self.batch.len()),
            batch: Words4::of(&self.batch),
            sa: Words4::of(&self.sa),
            sb: Words4::of(&self.sb),
            a_row: u(self.a_strides.0),
            a_col: u(self.a_strides.1),
            b_row: u(self.b_strides.0),
            b_col: u(self.b_strides.1),
            batches: u(batches),
            splits: u(splits),
            k_chunk: u(plan.k_chunk),
            ..Default::default()
        };
        let (kernel, overrides) = match plan.kernel {
            MatmulKernel::Tile128 | MatmulKernel::Tile64 => {
                (MATMUL_TILE, tile_overrides(self, plan.kernel, epi))
            }
            MatmulKernel::Naive => (MATMUL_NAIVE, [0; 6]),
            block if block.is_block() => (MATMUL_BLOCK, block_overrides(self, block, epi)),
            small => {
                let (rows, cols, _) = small.tile();
                (
                    MATMUL_SMALL,
                    [
                        rows as u32 / 8,
                        cols as u32 / 8,
                        epi.code(),
                        epi.a_in_out as u32,
                        epi.conv.map_or(0, |(mode, _)| mode),
                        0,
                    ],
                )
            }
        };
        if fused {
            let mut flags = 0;
            if epi.bias.is_some() {
                flags |= 1 | if epi.bias_rows { 2 } else { 0 };
            }
            if epi.addend.is_some() {
                flags |= 4;
            }
            if epi.pre.is_some() {
                debug_assert!(
                    epi.addend.is_none(),
                    "the pre-activation takes the addend's binding"
                );
                flags |= 8;
            }
            // One pair of scalar words serves both activations; no product fuses two
            // activations with parameters.
            let pro_scalars = epi.pro.map_or([0.0; 2], |(_, act)| act.scalars());
            debug_assert!(
                pro_scalars == [0.0; 2] || epi.act.scalars() == [0.0; 2],
                "a prologue and an epilogue with parameters in one product"
            );
            let [sa, sb] = if epi.act == Act::Identity {
                pro_scalars
            } else {
                epi.act.scalars()
            };
            p.act_a = sa;
            p.act_b = sb;
            p.flags = flags;
            p.addend_off = epi.addend.map_or(0, |(_, off)| u(off));
            p.out_off = epi.out.map_or(0, |(_, off)| u(off));
            p.a_off = u(epi.a_off);
            p.b_off = u(epi.b_off);
            if let Some((_, g)) = epi.conv {
                [
                    p.conv_c, p.conv_h, p.conv_w, p.conv_ho, p.conv_wo, p.conv_kh, p.conv_kw,
                    p.conv_sh, p.conv_sw, p.conv_ph, p.conv_pw, p.conv_dh, p.conv_dw,
                ] = g.map(u);
            }
        }
        let (bm, bn, bk) = plan.kernel.tile();
        // The tiles, folded into x and y past 65,535 workgroups (the kernels recover each
        // tile from the flat workgroup index and the tiles along n, and skip the spares).
        let tiles = (n.div_ceil(bn), m.div_ceil(bm));
        p.tiles_x = u(tiles.0);
        p.tiles_y = u(tiles.1);
        let grid = groups_rows(tiles.0 * tiles.1);
        // The extra bindings of a fused kernel: x2 (bias or saved output; A when
        // unused) and y1 (addend or bias gradient; the output when unused).
        let x2 = epi.bias.or(epi.pro.map(|(t, _)| t)).unwrap_or(a);
        let x0 = if epi.a_in_out { b } else { a };
        // The operands and x2 may hold half-precision elements (read through
        // `half_io`'s loaders); the output is f32, or native f16 (see `Epi::half_out`).
        let naive = plan.kernel == MatmulKernel::Naive;
        let ins: &[&Storage] = if naive { &[x0, b] } else { &[x0, b, x2] };
        let (ins, mut io) = super::half_io::inputs("matmul", ins)?;
        let half_out =
            want_half && splits == 1 && plan.passes == 1 && super::half_io::native_operands(io);
        // A half addend is read through y1 as native f16 on the native output path, and
        // widened to f32 otherwise.
        let widened_addend = match epi.addend {
            Some((a @ Storage::Half(_), off)) if !half_out => {
                Some(super::half::f32_of(g, a, off + batches * m * n)?)
            }
            _ => None,
        };
        let addend = match (&widened_addend, epi.addend) {
            (Some(w), Some((_, off))) => Some((w, off)),
            (_, a) => a,
        };
        if matches!(addend, Some((Storage::Half(_), _))) {
            io = super::half_io::with_native_y1(io);
        }
        let out = match epi.out {
            Some((t, _)) => t.clone(),
            None if half_out => {
                io = super::half_io::with_native_out(io);
                let words = (batches * m * n).div_ceil(2);
                crate::backend::half::HalfStorage::gpu(
                    crate::tensor::DType::F16,
                    gpu_alloc(g, words)?,
                )
            }
            None => Storage::new_gpu(gpu_alloc(g, splits * batches * m * n)?),
        };
        // Row sums of several (split, batch) pairs go to partials summed at the end.
        let partial_rows = (epi.rowsum.is_some() && splits * batches > 1)
            .then(|| gpu_alloc(g, splits * batches * m).map(Storage::new_gpu))
            .transpose()?;
        // An unused y1 gets a buffer of its own: WebGPU refuses a buffer bound twice
        // where either binding is writable.
        let unused = match (
            epi.addend.or(epi.pre.map(|t| (t, 0))),
            &partial_rows,
            epi.rowsum,
        ) {
            (None, None, None) if plan.kernel != MatmulKernel::Naive => {
                Some(Storage::new_gpu(gpu_alloc(g, 1)?))
            }
            _ => None,
        };
        let y1 = addend
            .map(|(t, _)| t)
            .or(epi.pre)
            .or(partial_rows.as_ref())
            .or(epi.rowsum)
            .or(unused.as_ref())
            .unwrap_or(&out);
        let gpu = storage_buffer;
        let all = [
            ins[0],
            ins[1],
            ins.get(2).copied().unwrap_or(ins[0]),
            gpu(&out)?,
            gpu(y1)?,
        ];
        // Batches per launch: the grid's z holds (batch, split) pairs.
        let per_launch = (plan::MAX_GROUPS / splits).max(1);
        for pass in 0..plan.passes {
            let k_lo = pass * plan.k_chunk;
            let k_len = if plan.passes == 1 {
                k
            } else {
                plan.k_chunk.min(k - k_lo)
            };
            p.accumulate = (pass > 0 || epi.accumulate) as u32;
            p.k_first = if epi.empty { u(k) } else { u(k_lo) };
            for first in (0..batches).step_by(per_launch) {
                let count = (batches - first).min(per_launch);
                p.first_batch = u(first);
                let executed = if plan.passes == 1 {
                    plan.executed_flops / batches as u64 * count as u64
                } else {
                    let padded = |x: usize, t: usize| {
                        if plan.kernel == MatmulKernel::Naive {
                            x
                        } else {
                            x.next_multiple_of(t)
                        }
                    };
                    2 * (padded(m, bm) * padded(n, bn) * k_len.next_multiple_of(bk) * count) as u64
                };
                let bufs: &[&GpuBuffer] = if plan.kernel == MatmulKernel::Naive {
                    &[all[0], all[1], all[3]]
                } else if plan.kernel.is_block() {
                    &[all[0], all[1], all[2], all[3], all[4], all[2]]
                } else {
                    &all
                };
                g.launch_with(
                    kernel,
                    &p,
                    bufs,
                    [grid[0], grid[1], (count * splits) as u32],
                    Work {
                        overrides,
                        serial: plan.k_chunk.min(k) as u64,
                        useful_flops: 2 * (m * n * k_len * count) as u64,
                        executed_flops: executed,
                        product: Some([m as u64, n as u64, k_len as u64, count as u64]),
                        io,
                        ..Work::default()
                    },
                );
            }
        }
        if direct || half_out {
            return Ok(out);
        }
        if let (Some(rows), Some(rowsum)) = (&partial_rows, epi.rowsum) {
            // Everything summed to one [M, N] product and its [M] row sums.
            let s = splits * batches;
            if s <= MAX_PARTIALS_SERIAL {
                let total = gpu_alloc(g, m * n)?;
                let bufs = [gpu(&out)?, gpu(rows)?, &total, gpu(rowsum)?];
                sum_partials(g, &bufs, s, m * n, m);
                return Ok(Storage::new_gpu(total));
            }
            let sums = g.sum(rows, &ReducePlan::new("sum", &[s, m], &[0], false)?, 1.0)?;
            g.put(rowsum, 0, &sums, m)?;
            return g.sum(&out, &ReducePlan::new("sum", &[s, m, n], &[0], false)?, 1.0);
        }
        let mut full_shape = vec![splits];
        full_shape.extend(&self.batch);
        full_shape.extend([m, n]);
        // Sum the splits (dim 0) and the batch dims the result reduces.
        let lead = self.batch.len() - self.out_batch.len();
        let mut dims: Vec<isize> = Vec::new();
        if splits > 1 {
            dims.push(0);
        }
        for (d, &size) in self.batch.iter().enumerate() {
            if d < lead || (self.out_batch[d - lead] == 1 && size != 1) {
                dims.push(d as isize + 1);
            }
        }
        if dims.is_empty() {
            Ok(out)
        } else {
            g.sum(
                &out,
                &ReducePlan::new("sum", &full_shape, &dims, true)?,
                1.0,
            )
        }
    }
}

/// The GPU buffer of a product's storage (a native `f16` output's too).
fn storage_buffer(s: &Storage) -> Result<&GpuBuffer> {
    s.buffer("matmul")
}

/// Adds `count` partial results of `len` elements (`bufs[0]`) and their `rows` row sums
/// (`bufs[1]`) into `bufs[2]` and `bufs[3]`: with no partials, zeros (the value of an
/// empty product and its row sums).
fn sum_partials(
    g: &Arc<GpuContext>,
    bufs: &[&GpuBuffer; 4],
    count: usize,
    len: usize,
    rows: usize,
) {
    g.launch_with(
        SUM_PARTIALS,
        &SumPartialsParams {
            count: count as u32,
            len: len as u32,
            rows: rows as u32,
            ..Default::default()
        },
        bufs,
        groups_1d(len + rows),
        Work {
            serial: count as u64,
            ..Work::default()
        },
    );
}

/// Writes zeros to the first `len` elements of `out` and the first `rows` of the row
/// sums, when given: the sum of no partials.
fn zeros(
    g: &Arc<GpuContext>,
    (out, len): (&Storage, usize),
    row_sums: Option<(&Storage, usize)>,
) -> Result<()> {
    let rows = row_sums.map_or(0, |(_, rows)| rows);
    if len + rows == 0 {
        return Ok(());
    }
    // Stand-ins for the unread partials and an absent row-sum output (a buffer is never
    // bound twice).
    let spare = || gpu_alloc(g, 1).map(Storage::new_gpu);
    let (x0, x1) = (spare()?, spare()?);
    let y1 = match row_sums {
        Some((r, _)) => r.clone(),
        None => spare()?,
    };
    let gpu = storage_buffer;
    sum_partials(
        g,
        &[gpu(&x0)?, gpu(&x1)?, gpu(out)?, gpu(&y1)?],
        0,
        len,
        rows,
    );
    Ok(())
}

/// The planner's limits on one device.
pub(super) fn plan_limits(g: &GpuContext) -> PlanLimits {
    PlanLimits {
        max_binding: g.max_binding(),
        full_groups: g.full_groups(),
        software: g.is_software() && g.options().software_kernels,
    }
}
