//! What both backends read of a matrix product: its geometry ([`Product`]), the
//! activation a fused product applies ([`Act`], a row of the elementwise table), the
//! fused prologue and epilogue ([`Epi`], which the GPU launcher turns into the kernels'
//! `EPI` override and parameter words), the kernel choice a caller may force
//! ([`MatmulKernel`], [`MatmulChoice`]), and the sizes of the fused layers ([`LinearAct`], [`ConvAct`]).

use crate::backend::conv2d::Geometry;
use crate::backend::elementwise::{Needs, UnaryOp};
use crate::backend::Storage;

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
    LeakyRelu(f64),
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
            Act::LeakyRelu(s) => UnaryOp::LeakyRelu { slope: s },
            Act::Sigmoid => UnaryOp::Sigmoid,
            Act::Tanh => UnaryOp::Tanh,
            Act::Gelu => UnaryOp::Gelu,
            Act::GeluTanh => UnaryOp::GeluTanh,
            Act::Silu => UnaryOp::Silu,
            Act::Mish => UnaryOp::Mish,
        })
    }
    /// The shader's code for this activation (0 the identity).
    pub(crate) fn code(self) -> u32 {
        self.op().map_or(0, |op| op.code())
    }
    /// The row's scalar parameters as the shader reads them.
    pub(crate) fn scalars(self) -> [f32; 2] {
        self.op()
            .map_or([0.0; 2], |op| op.scalars().map(|v| v as f32))
    }
    /// True when the backward reads the pre-activation (which a fused forward then
    /// saves) rather than the output.
    pub(crate) fn needs_input(self) -> bool {
        self.op().is_some_and(|op| op.needs() == Needs::Input)
    }
}

/// A kernel of the matmul family, or `Auto` to let the planner choose (the planner,
/// `matmul_plan`, knows their tiles and rates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// The planner's choice (what `matmul`, `linear` and the convolutions use).
    Auto,
    /// Register-tiled, 128 x 128 tiles, 8 x 8 outputs per thread, 8-deep slices.
    Tile128,
    /// Register-tiled, 64 x 64 tiles, 4 x 4 outputs per thread, 16-deep slices.
    Tile64,
    /// 16 x 16 tiles, 2 x 2 outputs per thread, straight from global memory.
    Small16x16,
    /// 16 x 32 tiles (rows x columns), 2 x 4 outputs per thread.
    Small16x32,
    /// 32 x 16 tiles, 4 x 2 outputs per thread.
    Small32x16,
    /// 32 x 32 tiles, 4 x 4 outputs per thread.
    Small32x32,
    /// One output per thread, straight from global memory (the benchmarks' baseline).
    Naive,
    /// For software adapters: 64 x 64 tiles, 16 x 16 outputs per thread, operands read
    /// straight from memory as aligned vec4s where the layout allows.
    Block64,
    /// For software adapters: 32 x 32 tiles, 8 x 8 outputs per thread.
    Block32,
    /// For software adapters: 16 x 64 tiles (rows x columns), 4 x 16 outputs per thread.
    Block16x64,
    /// For software adapters: 64 x 16 tiles, 16 x 4 outputs per thread.
    Block64x16,
    /// For software adapters: 16 x 16 tiles, 4 x 4 outputs per thread.
    Block16,
}

/// A kernel and split count to force (tests and benchmarks); `Auto` and 0 let the
/// planner choose. The CPU ignores it.
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

/// A batched product `op(A) op(B)`: sizes, batch shapes and strides. Operands are read
/// through element strides, so transposed operands need no copies.
#[derive(Clone, Debug)]
pub(crate) struct Product {
    /// Rows of the result.
    pub m: usize,
    /// Columns of the result.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    /// The (broadcast) batch shape.
    pub batch: Vec<usize>,
    /// The batch shape of the result: `batch`, or what a summing product reduces it to.
    pub out_batch: Vec<usize>,
    /// A's element offset per batch dimension (0 where broadcast).
    pub sa: Vec<usize>,
    /// B's element offset per batch dimension.
    pub sb: Vec<usize>,
    /// Element strides `(row, column)` of op(A) `[m, k]` within one matrix.
    pub a_strides: (usize, usize),
    /// Element strides of op(B) `[k, n]`.
    pub b_strides: (usize, usize),
    /// The batches' products are summed into `out_batch`'s (a broadcast operand's
    /// gradient).
    pub summing: bool,
}

impl Product {
    /// A single `[m, k] x [k, n]` product whose operands' element strides are given
    /// (`(row, column)` of op(A) and op(B)).
    pub(crate) fn plain(
        (m, n, k): (usize, usize, usize),
        a_strides: (usize, usize),
        b_strides: (usize, usize),
    ) -> Product {
        Product {
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

    /// Elements of the result, `[out batch..., M, N]`.
    pub(crate) fn out_len(&self) -> usize {
        crate::shape::numel(&self.out_batch) * self.m * self.n
    }
}

/// What a product fuses around its arithmetic (all optional; the default is a plain
/// product). Offsets are in elements of the storage named.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epi<'a> {
    /// A bias added to every column (`[N]`), or with `bias_rows` every row (`[M]`).
    pub bias: Option<&'a Storage>,
    /// The bias is per row.
    pub bias_rows: bool,
    /// Applied last.
    pub act: Act,
    /// A storage added to the result, read at the result's index plus this offset.
    pub addend: Option<(&'a Storage, usize)>,
    /// Each element of A (an output gradient) becomes the activation's backward at the
    /// saved value (the output, or the pre-activation for an activation that needs its
    /// input; laid out like A's storage).
    pub pro: Option<(&'a Storage, Act)>,
    /// Write the value before the activation (after the bias and addend) here too,
    /// laid out like the output: the saved value of an activation that needs its input.
    pub pre: Option<&'a Storage>,
    /// The row sums of A (after the prologue), `[M]`: a bias gradient, from the same
    /// product as the weight gradient.
    pub rowsum: Option<&'a Storage>,
    /// Write into this storage at this offset instead of a new one.
    pub out: Option<(&'a Storage, usize)>,
    /// Offset of A in its storage.
    pub a_off: usize,
    /// Offset of B in its storage.
    pub b_off: usize,
    /// A is read from the output storage (`out`), as the recurrent step does.
    pub a_in_out: bool,
    /// Add to the output instead of overwriting it.
    pub accumulate: bool,
    /// The product over an empty range of k: only the epilogue runs (the last step of
    /// a recurrence's backward, which has no later step to add).
    pub empty: bool,
    /// B is a convolution's columns gathered from the image B's storage holds (1:
    /// im2col, 2: its transpose) with this geometry: C, H, W, Ho, Wo, kh, kw, stride,
    /// padding, dilation (rows then columns). The small-tile kernel runs it.
    pub conv: Option<(u32, [usize; 13])>,
    /// Write the result as native `f16` when both operands are native `f16` and the
    /// product runs as one pass of one split into a new storage (GPU only; the caller
    /// rounds an `f32` result to its half dtype anyway, to the same bits).
    pub half_out: bool,
}

impl Epi<'_> {
    /// The shader's `EPI` override: 1 the epilogue, 2 the prologue, 4 the row sums,
    /// bits 8-15 the prologue's activation, bits 16-23 the epilogue's (table codes).
    pub(crate) fn code(&self) -> u32 {
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
    pub(crate) fn direct(&self) -> bool {
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

    /// True when any part is fused (a plain product otherwise).
    pub(crate) fn active(&self) -> bool {
        self.direct() || self.pro.is_some() || self.rowsum.is_some() || self.conv.is_some()
    }
}

/// A fused linear layer `act(x W^T + b)`: `rows` inputs of `inp` features, `out`
/// outputs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinearAct {
    /// Input rows (the flattened leading dimensions).
    pub rows: usize,
    /// Input features.
    pub inp: usize,
    /// Output features.
    pub out: usize,
    /// The activation.
    pub act: Act,
    /// A backward will run: write the pre-activation where the activation's backward
    /// reads its input (inference skips it).
    pub save: bool,
}

/// A fused one-group convolution `act(conv2d(x, W) + b)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvAct {
    /// The convolution's geometry (the image is the input).
    pub geo: Geometry,
    /// Output channels.
    pub oc: usize,
    /// The activation.
    pub act: Act,
    /// A backward will run: write the pre-activation where the activation's backward
    /// reads its input (inference skips it).
    pub save: bool,
}

impl ConvAct {
    /// Elements of one weight row, `C kh kw`.
    pub(crate) fn kc(&self) -> usize {
        self.geo.c * self.geo.kk()
    }
    /// Output positions per image, `Ho Wo`.
    pub(crate) fn hw(&self) -> usize {
        self.geo.ho * self.geo.wo
    }
    /// The taps the product's gather reads: C, H, W, Ho, Wo, kh, kw, stride, padding,
    /// dilation.
    pub(crate) fn taps(&self) -> [usize; 13] {
        let g = &self.geo;
        [
            g.c,
            g.h,
            g.w,
            g.ho,
            g.wo,
            g.k.0,
            g.k.1,
            g.stride.0,
            g.stride.1,
            g.padding.0,
            g.padding.1,
            g.dilation.0,
            g.dilation.1,
        ]
    }
}
