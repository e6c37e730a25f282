//! Batched matrix products with broadcasting over batch dimensions (PyTorch's `matmul`,
//! including 1-D operands), and `linear`. On the GPU a planner ([`plan`]) picks a kernel
//! of the family in `shaders/matmul.wgsl` by shape (a register-tiled kernel with 128 or
//! 64 wide tiles, or a small-tile kernel for skinny products) and splits long inner
//! dimensions over workgroups (split-K) whose partial products a reduction pass adds.
//! The CPU uses `matrixmultiply` (`cpu`). Transposed operands are read through
//! strides, so the backward products `dA = dC B^T` and `dB = A^T dC` need no transpose
//! copies.

pub(crate) mod cpu;
pub mod plan;

use crate::autograd::{no_grad, record};
use crate::backend::cpu::CpuData;
use crate::backend::gpu::{Kernel, ShaderFile, Work};
use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::ops::unary::{Needs, UnaryOp};
use crate::ops::{gpu_alloc, kernel, put, shader_with, split};
use crate::shape::{self, broadcast_strides};
use crate::tensor::{check_pair, DType, Tensor};
use cpu::CpuGemm;
pub use plan::{MatmulKernel, MatmulPlan, PlanLimits, ProductShape};

pub(crate) const FILE: ShaderFile = shader_with(
    "matmul",
    include_str!("../../../shaders/matmul.wgsl"),
    crate::backend::gpu::Generated::PerVariant(
        crate::ops::elementwise::wgsl_for_epilogue,
        crate::ops::elementwise::wgsl_functions,
    ),
);
/// The tiled and small-tile kernels bind a bias or saved activation output (`x2`) and
/// an addend or bias gradient (`y1`) for the fused prologue and epilogue; the override
/// `EPI` compiles those parts in or out (a plain product binds stand-ins).
const MATMUL_TILE: &Kernel = kernel!(
    FILE,
    "matmul_tile_fwd",
    [X0V, X1V, X2, Y0, Y1],
    loops,
    overrides = ["TT", "A_KMAJOR", "B_KMAJOR", "VEC_A", "VEC_B", "EPI"]
);
const MATMUL_SMALL: &Kernel = kernel!(
    FILE,
    "matmul_small_fwd",
    [X0, X1, X2, Y0, Y1],
    loops,
    overrides = ["SM", "SN", "EPI", "A_IN_Y0", "B_CONV"]
);
/// The block kernel binds the vec4 views of both operands (its scalar loads go through
/// them too), like the tiled kernel, and both views of `x2` (a prologue's saved output
/// is read as vec4s along with A).
const MATMUL_BLOCK: &Kernel = kernel!(
    FILE,
    "matmul_block_fwd",
    [X0V, X1V, X2, Y0, Y1, X2V],
    loops,
    overrides = ["BR", "BC", "LAYOUT", "EPI", "A_IN_Y0", "B_CONV"]
);
const MATMUL_NAIVE: &Kernel = kernel!(FILE, "matmul_naive_fwd", [X0, X1, Y0], loops);
const SUM_PARTIALS: &Kernel = kernel!(FILE, "matmul_partials_bwd", [X0, X1, Y0, Y1], loops);

/// An activation a fused product applies to its result, or whose derivative a fused
/// backward applies to an operand as it loads it. Each is a row of the elementwise table
/// ([`UnaryOp`]), so fused and unfused models compute the same values. Its backward reads
/// the saved output, or, for the activations whose derivative needs the input (GELU,
/// SiLU, Mish, a negative leaky slope), the pre-activation, which the fused forward then
/// writes beside its output.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Act {
    /// No activation.
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x > 0`, else `slope * x`.
    LeakyRelu(f32),
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// GELU, exact (`x Phi(x)`).
    Gelu,
    /// GELU, tanh approximation.
    GeluTanh,
    /// SiLU, `x sigmoid(x)`.
    Silu,
    /// Mish, `x tanh(softplus(x))`.
    Mish,
}

impl Act {
    /// The elementwise-table row of this activation (`None` for the identity).
    pub fn op(self) -> Option<UnaryOp> {
        Some(match self {
            Act::Identity => return None,
            Act::Relu => UnaryOp::Relu,
            Act::LeakyRelu(s) => UnaryOp::LeakyRelu { slope: s as f64 },
            Act::Sigmoid => UnaryOp::Sigmoid,
            Act::Tanh => UnaryOp::Tanh,
            Act::Gelu => UnaryOp::Gelu,
            Act::GeluTanh => UnaryOp::GeluTanh,
            Act::Silu => UnaryOp::Silu,
            Act::Mish => UnaryOp::Mish,
        })
    }
    /// The shader's code for this activation (0 the identity).
    fn code(self) -> u32 {
        self.op().map_or(0, |op| op.code())
    }
    /// The row's scalar parameters as the shader reads them.
    fn scalars(self) -> [f32; 2] {
        self.op()
            .map_or([0.0; 2], |op| op.scalars().map(|v| v as f32))
    }
    /// True when the backward reads the pre-activation (which a fused forward then
    /// saves) rather than the output.
    pub(crate) fn needs_input(self) -> bool {
        self.op().is_some_and(|op| op.needs() == Needs::Input)
    }
    /// The activation on the CPU over a slice in place.
    pub(crate) fn apply_slice<T: crate::backend::cpu::Float>(self, y: &mut [T]) {
        if let Some(op) = self.op() {
            op.forward_in_place(y);
        }
    }
    /// `out = dL/dx` elementwise on the CPU from the output gradient `g` and the saved
    /// value `s` (the output, or the pre-activation where [`Act::needs_input`]).
    pub(crate) fn mul_deriv_into<T: crate::backend::cpu::Float>(
        self,
        out: &mut [T],
        g: &[T],
        s: &[T],
    ) {
        match self.op() {
            Some(op) => op.backward_into(out, g, s),
            None => out.copy_from_slice(g),
        }
    }
}

/// What a product fuses around its arithmetic (all optional; the default is a plain
/// product). Offsets are in elements of the buffer named.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epi<'a> {
    /// A bias added to every column (`[N]`), or with `bias_rows` every row (`[M]`).
    pub bias: Option<&'a Tensor>,
    pub bias_rows: bool,
    /// Applied last.
    pub act: Act,
    /// A tensor added to the result, read at the result's index plus this offset.
    pub addend: Option<(&'a Tensor, usize)>,
    /// Each element of A (an output gradient) becomes the activation's backward at the
    /// saved value (the output, or the pre-activation for an activation that needs its
    /// input; laid out like A's buffer).
    pub pro: Option<(&'a Tensor, Act)>,
    /// Write the value before the activation (after the bias and addend) here too,
    /// laid out like the output: the saved value of an activation that needs its input.
    pub pre: Option<&'a Tensor>,
    /// The row sums of A (after the prologue), `[M]`: a bias gradient, from the same
    /// product as the weight gradient.
    pub rowsum: Option<&'a Tensor>,
    /// Write into this tensor at this offset instead of a new one.
    pub out: Option<(&'a Tensor, usize)>,
    /// Offsets of A and B in their buffers.
    pub a_off: usize,
    pub b_off: usize,
    /// A is read from the output tensor (`out`), as the recurrent step does.
    pub a_in_out: bool,
    /// Add to the output instead of overwriting it.
    pub accumulate: bool,
    /// The product over an empty range of k: only the epilogue runs (the last step of
    /// a recurrence's backward, which has no later step to add).
    pub empty: bool,
    /// B is a convolution's columns gathered from the image B's buffer holds (1: im2col,
    /// 2: its transpose) with this geometry: C, H, W, Ho, Wo, kh, kw, stride, padding,
    /// dilation (rows then columns). The small-tile kernel runs it.
    pub conv: Option<(u32, [usize; 13])>,
}

impl Epi<'_> {
    /// The shader's `EPI` override: 1 the epilogue, 2 the prologue, 4 the row sums,
    /// bits 8-15 the prologue's activation, bits 16-23 the epilogue's (table codes).
    fn code(&self) -> u32 {
        const _: () = assert!(UnaryOp::ROWS.len() < 256, "codes fit in 8 bits");
        if !self.active() {
            return 0;
        }
        let pro = self.pro.map_or(0, |(_, act)| 2 | act.code() << 8);
        1 | pro | if self.rowsum.is_some() { 4 } else { 0 } | self.act.code() << 16
    }

    /// True when the product must run as one split writing its output directly: every
    /// part but the prologue and the row sums (which work on split and summed products
    /// too) applies where the last k is added.
    fn direct(&self) -> bool {
        self.bias.is_some()
            || self.act != Act::Identity
            || self.pre.is_some()
            || self.addend.is_some()
            || self.out.is_some()
            || self.a_off != 0
            || self.b_off != 0
            || self.a_in_out
            || self.accumulate
            || self.empty
    }

    fn active(&self) -> bool {
        self.direct() || self.pro.is_some() || self.rowsum.is_some() || self.conv.is_some()
    }
}

/// Batch dims the GPU kernel supports (the rest of the parameter block holds strides).
const MAX_BATCH_RANK: usize = 4;

/// A kernel and split count to force (tests and benchmarks); `Auto` and 0 let the
/// planner choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulChoice {
    /// The kernel.
    pub kernel: MatmulKernel,
    /// Parallel splits of K; 0 for the planner's choice.
    pub splits: usize,
}

impl MatmulChoice {
    /// The planner's choice of both.
    pub const AUTO: MatmulChoice = MatmulChoice {
        kernel: MatmulKernel::Auto,
        splits: 0,
    };
}

/// `op(a) @ op(b)` where `op` transposes the last two dims when asked; no graph.
/// Returns a tensor of shape `[broadcast batch..., M, N]`.
pub(crate) fn matmul_raw(
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    choice: MatmulChoice,
) -> Result<Tensor> {
    matmul_raw_sum(a, ta, b, tb, choice, None)
}

/// [`matmul_raw`] whose per-batch products are summed down to the batch shape `sum_to`
/// (a shape the broadcast batch reduces to, as in `sum_to_shape`): the backward of a
/// broadcast operand. The CPU accumulates each product straight into its target
/// (`C += A B`), so no `[batch, M, N]` intermediate exists; the GPU reduces after.
fn matmul_raw_sum(
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    choice: MatmulChoice,
    sum_to: Option<&[usize]>,
) -> Result<Tensor> {
    let (ar, br) = (a.rank(), b.rank());
    let (a_rows, a_cols) = (a.shape()[ar - 2], a.shape()[ar - 1]);
    let (b_rows, b_cols) = (b.shape()[br - 2], b.shape()[br - 1]);
    let (m, k) = if ta {
        (a_cols, a_rows)
    } else {
        (a_rows, a_cols)
    };
    let (k2, n) = if tb {
        (b_cols, b_rows)
    } else {
        (b_rows, b_cols)
    };
    if k != k2 {
        return shape_err(
            "matmul",
            format!(
                "{} x {}: inner dimensions differ ({k} vs {k2})",
                shape::fmt(a.shape()),
                shape::fmt(b.shape())
            ),
        );
    }
    let (a_batch, b_batch) = (&a.shape()[..ar - 2], &b.shape()[..br - 2]);
    let batch = shape::broadcast("matmul", a_batch, b_batch)?;
    if batch.len() > MAX_BATCH_RANK {
        return shape_err(
            "matmul",
            format!("at most {MAX_BATCH_RANK} batch dimensions are supported"),
        );
    }
    let sa: Vec<usize> = broadcast_strides(a_batch, &batch)
        .iter()
        .map(|s| s * a_rows * a_cols)
        .collect();
    let sb: Vec<usize> = broadcast_strides(b_batch, &batch)
        .iter()
        .map(|s| s * b_rows * b_cols)
        .collect();
    // Element strides of op(A)[m, k] and op(B)[k, n] within one matrix.
    let (a_rs, a_cs) = if ta { (1, a_cols) } else { (a_cols, 1) };
    let (b_rs, b_cs) = if tb { (1, b_cols) } else { (b_cols, 1) };
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    crate::ops::check_out("matmul", &out_shape, a.dtype(), a.device())?;
    // Where each batch's product goes: its own matrix, or (summing) a shared one.
    let out_batch: Vec<usize> = sum_to.map_or(batch.clone(), |t| t[..t.len() - 2].to_vec());
    let so: Vec<usize> = broadcast_strides(&out_batch, &batch)
        .iter()
        .map(|s| s * m * n)
        .collect();
    let summing = sum_to.is_some_and(|t| t != out_shape.as_slice());
    Ok(match a.device() {
        Device::Cpu => {
            let (ad, bd) = (a.cpu_data(), b.cpu_data());
            let mut out = ad.float_like(shape::numel(&out_batch) * m * n, 0.0);
            let geo = CpuGemm {
                m,
                k,
                n,
                batch: &batch,
                sa: &sa,
                sb: &sb,
                so: &so,
                a_strides: (a_rs, a_cs),
                b_strides: (b_rs, b_cs),
                summing,
            };
            match (&*ad, &*bd, &mut out) {
                (CpuData::F32(x), CpuData::F32(y), CpuData::F32(c)) => geo.run(x, y, c),
                (CpuData::F64(x), CpuData::F64(y), CpuData::F64(c)) => geo.run(x, y, c),
                _ => unreachable!("matmul dtypes checked"),
            }
            let mut shape = out_batch;
            shape.extend([m, n]);
            Tensor::from_cpu(out, shape).reshape(sum_to.unwrap_or(&out_shape))?
        }
        Device::Gpu(_) => {
            if !summing {
                if let Some(y) = split_product(a, ta, b, tb, choice, (m, k, n), &batch)? {
                    return y.reshape(&out_shape);
                }
            }
            let geo = GpuProduct {
                m,
                n,
                k,
                batch,
                out_batch,
                sa,
                sb,
                a_strides: (a_rs, a_cs),
                b_strides: (b_rs, b_cs),
                summing,
            };
            let full = geo.run(a, b, choice)?;
            full.reshape(sum_to.unwrap_or(&out_shape))?
        }
    })
}

/// A GPU product with an operand or result too large for one storage binding, in pieces
/// (see [`crate::ops::split`]): rows of A and C when A is untransposed and B is one
/// matrix (A's batch folds into the rows); the inner dimension, the pieces' products
/// summed, when both are single matrices and only A is transposed (`dW = g^T x`); the
/// batch, when the operands are batched alike or A is one matrix (a piece still too
/// large recurses into the first two). `None` when everything fits or no cut applies
/// (both operands transposed; a single operand too large to bind whole), and then the
/// launch reports the error.
fn split_product(
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    choice: MatmulChoice,
    (m, k, n): (usize, usize, usize),
    batch: &[usize],
) -> Result<Option<Tensor>> {
    let Device::Gpu(g) = a.device() else {
        return Ok(None);
    };
    let batches = shape::numel(batch);
    if m * n * batches == 0 || (!split::any_over(&[a, b]) && !split::over(g, batches * m * n)) {
        return Ok(None);
    }
    let (ar, br) = (a.rank(), b.rank());
    let (a_rows, a_cols) = (a.shape()[ar - 2], a.shape()[ar - 1]);
    let (b_rows, b_cols) = (b.shape()[br - 2], b.shape()[br - 1]);
    let a_batch = shape::numel(&a.shape()[..ar - 2]);
    let b_batch = shape::numel(&b.shape()[..br - 2]);
    let (ad, bd) = (a.detach(), b.detach());
    let product = |p: &[Tensor]| Ok(vec![matmul_raw(&p[0], ta, &p[1], tb, choice)?]);
    if b_batch == 1 && !ta {
        let a2 = ad.reshape(&[a_batch * m, k])?;
        let b2 = bd.reshape(&[b_rows, b_cols])?;
        let parts = [split::Part::Rows(&a2), split::Part::Whole(&b2)];
        let out = split::rows(&parts, &[a_batch * m, n], 1, a.dtype(), product)?;
        return Ok(out.map(|mut o| o.remove(0)));
    }
    if a_batch == 1 && b_batch == 1 && ta && !tb {
        if split::over(g, m * n) {
            return Ok(None);
        }
        let (a2, b2) = (ad.reshape(&[k, m])?, bd.reshape(&[k, n])?);
        let per = ((g.binding_cap() / 4) as usize / m.max(n)).max(1);
        let mut sum: Option<Tensor> = None;
        for first in (0..k).step_by(per) {
            let len = per.min(k - first);
            let pa = split::take(&a2, first * m, vec![len, m])?;
            let pb = split::take(&b2, first * n, vec![len, n])?;
            let c = matmul_raw(&pa, true, &pb, false, choice)?;
            sum = Some(match sum {
                None => c,
                Some(s) => no_grad(|| s.add(&c))?,
            });
        }
        return Ok(sum);
    }
    let alike = |t: usize| t == batches || t == 1;
    if batches > 1 && alike(a_batch) && alike(b_batch) {
        // One matrix is passed whole to every piece (broadcast over the batch).
        let shaped = |t: &Tensor, count: usize, rows: usize, cols: usize| {
            if count == 1 {
                t.reshape(&[rows, cols])
            } else {
                t.reshape(&[count, rows, cols])
            }
        };
        let a3 = shaped(&ad, a_batch, a_rows, a_cols)?;
        let b3 = shaped(&bd, b_batch, b_rows, b_cols)?;
        let parts = [(&a3, a_batch), (&b3, b_batch)].map(|(t, count)| {
            if count == 1 {
                split::Part::Whole(t)
            } else {
                split::Part::Rows(t)
            }
        });
        let out = split::rows(&parts, &[batches, m, n], 1, a.dtype(), product)?;
        return Ok(out.map(|mut o| o.remove(0)));
    }
    Ok(None)
}

/// A batched product on the GPU: sizes, batch shapes and strides.
pub(crate) struct GpuProduct {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) batch: Vec<usize>,
    /// The batch shape of the result: `batch`, or what a summing product reduces it to.
    pub(crate) out_batch: Vec<usize>,
    pub(crate) sa: Vec<usize>,
    pub(crate) sb: Vec<usize>,
    pub(crate) a_strides: (usize, usize),
    pub(crate) b_strides: (usize, usize),
    pub(crate) summing: bool,
}

impl GpuProduct {
    /// A single `[m, k] x [k, n]` product whose operands' element strides are given
    /// (`(row, column)` of op(A) and op(B)).
    pub(crate) fn plain(
        (m, n, k): (usize, usize, usize),
        a_strides: (usize, usize),
        b_strides: (usize, usize),
    ) -> GpuProduct {
        GpuProduct {
            m,
            n,
            k,
            batch: vec![],
            out_batch: vec![],
            sa: vec![],
            sb: vec![],
            a_strides,
            b_strides,
            summing: false,
        }
    }

    /// The override values of the tiled kernel: thread tile, which axis of each operand
    /// is contiguous, and whether a transposed A (contiguous along M) or an
    /// untransposed B (contiguous along N) can be read as aligned vec4s (that axis's
    /// extent and every other stride a multiple of 4). Operands contiguous along K are
    /// read as scalars, coalesced across threads (see `load_a` in the shader).
    fn tile_overrides(&self, kernel: MatmulKernel, epi: &Epi) -> [u32; 6] {
        let ((_, a_cs), (b_rs, _)) = (self.a_strides, self.b_strides);
        let all4 = |v: &[usize]| v.iter().all(|x| x.is_multiple_of(4));
        let a_kmajor = a_cs == 1;
        let b_kmajor = b_rs == 1;
        let vec_a = !a_kmajor && all4(&self.sa) && all4(&[self.m, a_cs, epi.a_off]);
        let vec_b = !b_kmajor && all4(&self.sb) && all4(&[self.n, b_rs, epi.b_off]);
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
    fn block_overrides(&self, kernel: MatmulKernel, epi: &Epi) -> [u32; 6] {
        let (rows, cols) = kernel.block().expect("a block kernel");
        let ((a_rs, a_cs), (b_rs, b_cs)) = (self.a_strides, self.b_strides);
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
        let vec_a = !epi.a_in_out && vec_ok(a_rs, a_cs, self.m, &self.sa, epi.a_off);
        let vec_b = epi.conv.is_none() && vec_ok(b_cs, b_rs, self.n, &self.sb, epi.b_off);
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

    /// Runs the product: one launch per pass and per group of at most 65,535
    /// (batch, split) pairs, then the reduction of the splits and of a summed batch.
    /// Returns the result with shape `[1 or splits, out batch..., M, N]` reduced to
    /// `[out batch..., M, N]` elements.
    fn run(&self, a: &Tensor, b: &Tensor, choice: MatmulChoice) -> Result<Tensor> {
        self.run_epi(a, b, choice, &Epi::default())
    }

    /// [`GpuProduct::run`] with a fused prologue and epilogue, returning the result
    /// shaped `[out batch..., M, N]` (`epi.out` itself when given). With an epilogue
    /// ([`Epi::direct`]) the product runs without splits of K (passes apply it on the last
    /// one); a prologue or row sums alone allow splits and summed batches (their
    /// partials are added by one pass).
    pub(crate) fn run_epi(
        &self,
        a: &Tensor,
        b: &Tensor,
        choice: MatmulChoice,
        epi: &Epi,
    ) -> Result<Tensor> {
        let Device::Gpu(g) = a.device() else {
            unreachable!("a GPU product")
        };
        let fused = epi.active();
        let direct = epi.direct();
        let (m, n, k) = (self.m, self.n, self.k);
        let batches = shape::numel(&self.batch);
        let mut final_shape = self.out_batch.clone();
        final_shape.extend([m, n]);
        debug_assert!(!(direct && self.summing), "no epilogue on a summed batch");
        debug_assert!(
            epi.rowsum.is_none() || (n > 0 && (batches == 1 || self.out_batch.is_empty())),
            "row sums come from one matrix with columns, or a batch summed to one"
        );
        if m * n * batches == 0 || (k == 0 && !fused) {
            // An empty product, or an empty inner dimension: all zeros (row sums over an
            // empty batch too).
            if let (Some(rows), false) = (epi.rowsum, epi.accumulate) {
                if m * batches == 0 || n == 0 {
                    rows.copy_from(&Tensor::zeros(rows.shape(), a.device())?)?;
                }
            }
            return match epi.out {
                Some((t, _)) => Ok(t.clone()),
                None => Tensor::zeros(&final_shape, a.device()),
            };
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
        let splits_choice = if direct { 1 } else { choice.splits };
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
        let mut p = [0u32; 51];
        p[0] = m as u32;
        p[1] = n as u32;
        p[2] = k as u32;
        p[3] = self.batch.len() as u32;
        put(&mut p, 4, &self.batch, MAX_BATCH_RANK);
        put(&mut p, 8, &self.sa, MAX_BATCH_RANK);
        put(&mut p, 12, &self.sb, MAX_BATCH_RANK);
        p[16] = self.a_strides.0 as u32;
        p[17] = self.a_strides.1 as u32;
        p[18] = self.b_strides.0 as u32;
        p[19] = self.b_strides.1 as u32;
        p[21] = batches as u32;
        p[22] = splits as u32;
        p[23] = plan.k_chunk as u32;
        let (kernel, overrides) = match plan.kernel {
            MatmulKernel::Tile128 | MatmulKernel::Tile64 => {
                (MATMUL_TILE, self.tile_overrides(plan.kernel, epi))
            }
            MatmulKernel::Naive => (MATMUL_NAIVE, [0; 6]),
            block if block.is_block() => (MATMUL_BLOCK, self.block_overrides(block, epi)),
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
            p[27] = sa.to_bits();
            p[30] = sb.to_bits();
            p[26] = flags;
            p[28] = epi.addend.map_or(0, |(_, off)| off as u32);
            p[29] = epi.out.map_or(0, |(_, off)| off as u32);
            p[31] = epi.a_off as u32;
            p[32] = epi.b_off as u32;
            if let Some((_, geo)) = epi.conv {
                put(&mut p, 36, &geo, 13);
            }
        }
        let (bm, bn, bk) = plan.kernel.tile();
        // The tiles, folded into x and y past 65,535 workgroups (the kernels recover each
        // tile from the flat workgroup index and P[49], and skip the spares).
        let tiles = (n.div_ceil(bn), m.div_ceil(bm));
        p[49] = tiles.0 as u32;
        p[50] = tiles.1 as u32;
        let grid = crate::ops::groups_rows(tiles.0 * tiles.1);
        let out = match epi.out {
            Some((t, _)) => t.clone(),
            None => Tensor::from_gpu(
                gpu_alloc(g, splits * batches * m * n)?,
                vec![splits * batches * m * n],
                DType::F32,
            ),
        };
        // The extra bindings of a fused kernel: x2 (bias or saved output; A when
        // unused) and y1 (addend or bias gradient; the output when unused).
        let x2 = epi.bias.or(epi.pro.map(|(t, _)| t)).unwrap_or(a);
        // Row sums of several (split, batch) pairs go to partials summed at the end.
        let partial_rows = (epi.rowsum.is_some() && splits * batches > 1)
            .then(|| {
                let len = splits * batches * m;
                gpu_alloc(g, len).map(|b| Tensor::from_gpu(b, vec![len], DType::F32))
            })
            .transpose()?;
        // An unused y1 gets a buffer of its own: WebGPU refuses a buffer bound twice
        // where either binding is writable.
        let unused = match (
            epi.addend.or(epi.pre.map(|t| (t, 0))),
            &partial_rows,
            epi.rowsum,
        ) {
            (None, None, None) if plan.kernel != MatmulKernel::Naive => {
                Some(Tensor::from_gpu(gpu_alloc(g, 1)?, vec![1], DType::F32))
            }
            _ => None,
        };
        let y1 = epi
            .addend
            .map(|(t, _)| t)
            .or(epi.pre)
            .or(partial_rows.as_ref())
            .or(epi.rowsum)
            .or(unused.as_ref())
            .unwrap_or(&out);
        let x0 = if epi.a_in_out { b } else { a };
        // Batches per launch: the grid's z holds (batch, split) pairs.
        let per_launch = (plan::MAX_GROUPS / splits).max(1);
        for pass in 0..plan.passes {
            let k_lo = pass * plan.k_chunk;
            let k_len = if plan.passes == 1 {
                k
            } else {
                plan.k_chunk.min(k - k_lo)
            };
            p[24] = (pass > 0 || epi.accumulate) as u32;
            p[25] = if epi.empty { k as u32 } else { k_lo as u32 };
            for first in (0..batches).step_by(per_launch) {
                let count = (batches - first).min(per_launch);
                p[20] = first as u32;
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
                let bufs = [
                    x0.gpu_buf(),
                    b.gpu_buf(),
                    x2.gpu_buf(),
                    out.gpu_buf(),
                    y1.gpu_buf(),
                ];
                let bufs: &[&crate::backend::gpu::GpuBuffer] = if plan.kernel == MatmulKernel::Naive
                {
                    &[bufs[0], bufs[1], bufs[3]]
                } else if plan.kernel.is_block() {
                    &[bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[2]]
                } else {
                    &bufs
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
                        ..Work::default()
                    },
                );
            }
        }
        if direct {
            return if epi.out.is_some() {
                Ok(out)
            } else {
                out.reshape(&final_shape)
            };
        }
        if let (Some(rows), Some(rowsum)) = (&partial_rows, epi.rowsum) {
            // Everything summed to one [M, N] product and its [M] row sums.
            let s = splits * batches;
            if s <= plan::MAX_K_SHORT {
                let total = gpu_alloc(g, m * n)?;
                g.launch_with(
                    SUM_PARTIALS,
                    &[s as u32, (m * n) as u32, m as u32],
                    &[out.gpu_buf(), rows.gpu_buf(), &total, rowsum.gpu_buf()],
                    crate::ops::groups_1d(m * n + m),
                    Work {
                        serial: s as u64,
                        ..Work::default()
                    },
                );
                return Ok(Tensor::from_gpu(total, final_shape, DType::F32));
            }
            let sums = no_grad(|| rows.reshape(&[s, m])?.sum_dim(&[0], false))?;
            rowsum.copy_from(&sums)?;
            return no_grad(|| out.reshape(&[s, m, n])?.sum_dim(&[0], false));
        }
        let mut full_shape = vec![splits];
        full_shape.extend(&self.batch);
        full_shape.extend([m, n]);
        let full = out.reshape(&full_shape)?;
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
        let summed = if dims.is_empty() {
            full
        } else {
            no_grad(|| full.sum_dim(&dims, true))?
        };
        summed.reshape(&final_shape)
    }
}

/// Matrix product with PyTorch's `matmul` rules, recording the backward.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_with(a, b, MatmulChoice::AUTO)
}

/// [`matmul`] through a chosen GPU kernel and split count, forward and backward (the
/// tests reach every kernel of the family this way; benchmarks compare them). The CPU
/// ignores the choice.
pub fn matmul_with(a: &Tensor, b: &Tensor, choice: MatmulChoice) -> Result<Tensor> {
    check_pair("matmul", a, b)?;
    if a.rank() == 0 || b.rank() == 0 {
        return shape_err(
            "matmul",
            format!(
                "{} x {}: both operands need at least one dimension",
                shape::fmt(a.shape()),
                shape::fmt(b.shape())
            ),
        );
    }
    if a.rank() == 1 && b.rank() == 1 {
        return matmul_with(&a.unsqueeze(0)?, &b.unsqueeze(-1)?, choice)?.reshape(&[]);
    }
    if a.rank() == 1 {
        return matmul_with(&a.unsqueeze(0)?, b, choice)?.squeeze(-2);
    }
    if b.rank() == 1 {
        return matmul_with(a, &b.unsqueeze(-1)?, choice)?.squeeze(-1);
    }
    let y = matmul_raw(a, false, b, false, choice)?;
    let (sa, sb) = (a.detach(), b.detach());
    let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
    Ok(record(y, "matmul", &[a, b], move |g| {
        let da = if need_a {
            Some(matmul_raw_sum(
                g,
                false,
                &sb,
                true,
                choice,
                Some(sa.shape()),
            )?)
        } else {
            None
        };
        let db = if need_b {
            Some(matmul_raw_sum(
                &sa,
                true,
                g,
                false,
                choice,
                Some(sb.shape()),
            )?)
        } else {
            None
        };
        Ok(vec![da, db])
    }))
}

/// The planner's limits on one device.
fn plan_limits(g: &crate::backend::gpu::GpuContext) -> PlanLimits {
    PlanLimits {
        max_binding: g.max_binding(),
        full_groups: g.full_groups(),
        software: g.is_software() && g.options().software_kernels,
    }
}

/// The plan the GPU would run for a product of `batches` `[m, k] x [k, n]` matrices on
/// `device` (`None` on the CPU): which kernel, how many splits, useful and executed
/// FLOPs. For benchmarks and curious users.
pub fn gpu_plan(
    device: &Device,
    m: usize,
    n: usize,
    k: usize,
    batches: usize,
) -> Option<MatmulPlan> {
    let Device::Gpu(g) = device else {
        return None;
    };
    let shape = ProductShape {
        m,
        n,
        k,
        batches,
        summing: false,
    };
    let limits = plan_limits(g);
    plan::plan(&shape, MatmulKernel::Auto, 0, &limits)
}

impl Tensor {
    /// Matrix product with broadcasting over batch dimensions (`torch.matmul`).
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        matmul(self, other)
    }
}

/// Checks `linear`'s operands: the same device, `x` `[..., in]` and `weight` `[out, in]`.
pub(crate) fn check_linear(x: &Tensor, weight: &Tensor) -> Result<()> {
    check_pair("linear", x, weight)?;
    if weight.rank() != 2 || x.rank() == 0 || x.shape()[x.rank() - 1] != weight.shape()[1] {
        return shape_err(
            "linear",
            format!(
                "input {} and weight {}: expected [..., in] and [out, in]",
                shape::fmt(x.shape()),
                shape::fmt(weight.shape())
            ),
        );
    }
    Ok(())
}

/// `x @ weight^T` for `x` of shape `[..., in]` and `weight` `[out, in]` (PyTorch's
/// `Linear` layout), reading the weight transposed through strides: no copy forward or
/// backward. `dx = g @ W`, `dW = g^T @ x` over the flattened leading dims.
pub fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    check_linear(x, weight)?;
    let (inp, out) = (weight.shape()[1], weight.shape()[0]);
    let rows = x.numel() / inp.max(1);
    let x2 = x.detach().reshape(&[rows, inp])?;
    let y2 = matmul_raw(&x2, false, weight, true, MatmulChoice::AUTO)?;
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank >= 1") = out;
    let y = y2.reshape(&out_shape)?;
    let (ws, need_x, need_w) = (weight.detach(), x.requires_grad(), weight.requires_grad());
    let x_shape = x.shape().to_vec();
    Ok(record(y, "linear", &[x, weight], move |g| {
        let g2 = g.reshape(&[rows, out])?;
        let dx = if need_x {
            Some(matmul_raw(&g2, false, &ws, false, MatmulChoice::AUTO)?.reshape(&x_shape)?)
        } else {
            None
        };
        let dw = if need_w {
            Some(matmul_raw(&g2, true, &x2, false, MatmulChoice::AUTO)?)
        } else {
            None
        };
        Ok(vec![dx, dw])
    }))
}

impl Tensor {
    /// `self @ weight^T` with `weight` in PyTorch's `[out, in]` layout.
    pub fn linear(&self, weight: &Tensor) -> Result<Tensor> {
        linear(self, weight)
    }
}
