//! What a product fuses around its arithmetic: the activation ([`Act`], a row of the
//! elementwise table) and the epilogue and prologue description ([`Epi`]) that the GPU
//! launcher turns into the kernels' `EPI` override and parameter words.

use crate::error::Result;
use crate::ops::unary::{Needs, UnaryOp};
use crate::tensor::Tensor;

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
    pub(super) fn code(self) -> u32 {
        self.op().map_or(0, |op| op.code())
    }
    /// The row's scalar parameters as the shader reads them.
    pub(super) fn scalars(self) -> [f32; 2] {
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

    /// The same activation as an unfused op.
    pub(crate) fn apply_op(self, x: &Tensor) -> Result<Tensor> {
        match self.op() {
            None => Ok(x.clone()),
            Some(op) => x.unary(op),
        }
    }

    /// `dL/dx` from the output gradient and the saved value, as an op (no graph).
    pub(crate) fn backward_op(self, saved: &Tensor, g: &Tensor) -> Result<Tensor> {
        match self.op() {
            None => Ok(g.clone()),
            Some(op) => crate::ops::unary::unary_backward(op, saved, g),
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
    pub(super) fn code(&self) -> u32 {
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
    pub(super) fn direct(&self) -> bool {
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

    pub(super) fn active(&self) -> bool {
        self.direct() || self.pro.is_some() || self.rowsum.is_some() || self.conv.is_some()
    }
}
