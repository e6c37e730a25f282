//! Backends: where a tensor's bytes live and how kernels run on them. The CPU backend
//! runs plain Rust loops directly; the GPU backend records WGSL dispatches and submits
//! them through its scheduler. Nothing above this layer names a wgpu type. The
//! elementwise table ([`elementwise`]) defines the elementwise primitives both backends
//! render: the CPU as monomorphic loops, the GPU as generated WGSL.

pub(crate) mod amp;
pub(crate) mod attention;
pub(crate) mod batchnorm;
pub(crate) mod broadcast;
pub(crate) mod conv2d;
pub mod cpu;
pub mod elementwise;
pub mod gpu;
pub(crate) mod half;
pub(crate) mod inplace;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod optim;
pub(crate) mod pool2d;
pub mod random;
pub(crate) mod reduce;
pub(crate) mod rnn;

/// The GPU's matrix-product planner, which the product's kernel choice names.
pub use gpu::matmul_plan;
pub use gpu::params::ParamsInfo;
pub use gpu::sources::{shader_sources, KernelInfo, ShaderSource};

use std::sync::Arc;

use crate::error::Result;
use broadcast::Broadcast;
use elementwise::binary::{BinaryOp, CompareOp};
pub(crate) use elementwise::PreluGeo;
use elementwise::UnaryOp;
pub(crate) use optim::{
    AdadeltaSlot, AdagradSlot, AdamSlot, Grad, Guard, Optim, RmspropSlot, SgdSlot,
};
pub(crate) use random::{Dist, Masked};

/// The seam between the ops and the backends: the primitives each backend implements
/// fully, one trait per op family (the compiler, not review, holds a backend to every
/// one: `Device::backend` returns a `dyn Backend`, which needs them all). An op checks
/// its arguments, cuts work too large for one binding, calls the primitives through
/// `Device::backend`, wraps the storage in a tensor and records its backward. A new
/// family adds its trait here and to the blanket impl below.
pub(crate) trait Backend:
    Buffers
    + Elementwise
    + Random
    + Softmax
    + Augment
    + Loss
    + Reduce
    + Pool2d
    + Layout
    + Indexing
    + BatchNorm
    + Norm
    + Optim
    + Recurrence
    + Matmul
    + Fused
    + Conv
    + Inplace
    + Attention
    + amp::Amp
{
}

impl<B> Backend for B where
    B: Buffers
        + Elementwise
        + Random
        + Softmax
        + Augment
        + Loss
        + Reduce
        + Pool2d
        + Layout
        + Indexing
        + BatchNorm
        + Norm
        + Optim
        + Recurrence
        + Matmul
        + Fused
        + Conv
        + Inplace
        + Attention
        + amp::Amp
{
}

/// Storages as a whole: how much one kernel may bind, and copies of element ranges
/// (the ops cut work past the binding limit into pieces with them; a GPU copy has no
/// binding limit).
pub(crate) trait Buffers {
    /// Elements one kernel may bind (`usize::MAX` where nothing limits it).
    fn binding_elements(&self) -> usize;
    /// Elements `[start, start + len)` of `x` as a new storage of its element type.
    fn take(&self, x: &Storage, start: usize, len: usize) -> Result<Storage>;
    /// A storage of `len` elements of `like`'s element type, every one of which the
    /// caller writes before reading (the GPU leaves it uninitialised).
    fn alloc_like(&self, like: &Storage, len: usize) -> Result<Storage>;
    /// Copies the first `len` elements of `src` into `dst` from element `at`.
    fn put(&self, dst: &Storage, at: usize, src: &Storage, len: usize) -> Result<()>;
    /// An out-of-memory error naming `op` when a new storage of `shape` (`bytes` bytes)
    /// cannot exist here: on the GPU past 32-bit element indices or the adapter's
    /// largest buffer, on the CPU (from 1 GiB) past what the system can reserve.
    fn check_new(&self, op: &'static str, shape: &[usize], bytes: u64) -> Result<()>;
}

/// The elementwise table's primitives, prelu's and the comparisons'.
pub(crate) trait Elementwise {
    /// `op(x)` for each of the `n` elements of `x`.
    fn unary(&self, op: UnaryOp, x: &Storage, n: usize) -> Result<Storage>;
    /// `dL/dx` of `op` from the saved value `s` (its input or output, as `op.needs()`
    /// says) and the output gradient `g`, `n` elements each.
    fn unary_backward(&self, op: UnaryOp, s: &Storage, g: &Storage, n: usize) -> Result<Storage>;
    /// The parametric ReLU of `x` with slopes `w`.
    fn prelu(&self, x: &Storage, w: &Storage, geo: PreluGeo) -> Result<Storage>;
    /// Its backward: `dL/dx` and the per-element contributions to `dL/dw` (each `n`
    /// elements; the op sums the latter per channel).
    fn prelu_backward(
        &self,
        x: &Storage,
        w: &Storage,
        g: &Storage,
        geo: PreluGeo,
    ) -> Result<(Storage, Storage)>;
    /// `op(a, b)` broadcast over `geo`.
    fn binary(&self, op: BinaryOp, a: &Storage, b: &Storage, geo: &Broadcast) -> Result<Storage>;
    /// The gradients of a binary op's inputs in the output's shape (the op sums them
    /// down to the inputs' shapes), for an op without constant gradients.
    fn binary_backward(
        &self,
        op: BinaryOp,
        a: &Storage,
        b: &Storage,
        g: &Storage,
        geo: &Broadcast,
    ) -> Result<(Storage, Storage)>;
    /// 1 where `op(a, b)` holds, else 0, broadcast over `geo`: `dtype` is both inputs'
    /// and the output's (float 1.0 / 0.0, or `u32` 1 / 0 for `u32` inputs).
    fn compare(
        &self,
        op: CompareOp,
        a: &Storage,
        b: &Storage,
        geo: &Broadcast,
        dtype: crate::tensor::DType,
    ) -> Result<Storage>;
}

/// The random primitives (Philox draws: the same numbers on every backend).
pub(crate) trait Random {
    /// `n` numbers of `dist` from the draw `key` (`f32`).
    fn draw(&self, dist: Dist, key: random::RngKey, n: usize) -> Result<Storage>;
    /// `op` applied to `x` (`n` elements) with the draw `key`: the output and the mask
    /// its backward multiplies the gradient by.
    fn masked(
        &self,
        op: Masked,
        x: &Storage,
        key: random::RngKey,
        n: usize,
    ) -> Result<(Storage, Storage)>;
}

/// Softmax rows: a tensor viewed as `[outer, d, inner]`, one row of `d` elements per
/// (outer, inner) pair.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rows {
    /// Positions before the dimension.
    pub outer: usize,
    /// The row length.
    pub d: usize,
    /// Positions after it.
    pub inner: usize,
}

impl Rows {
    /// The flat index of element `j` of row `row`.
    pub fn at(self, row: usize, j: usize) -> usize {
        let (o, i) = (row / self.inner, row % self.inner);
        (o * self.d + j) * self.inner + i
    }
    /// Rows.
    pub fn rows(self) -> usize {
        self.outer * self.inner
    }
}

/// Fused scaled-dot-product attention over `q [bh, L, E]`, `k [bh, S, E]`,
/// `v [bh, S, Ev]` (contiguous), with an optional mask laid out as
/// [`attention::MaskLayout`] says. The forward returns the output `[bh, L, Ev]` and one
/// log-sum-exp of the (masked, scaled) scores per query row (`+inf` for a row that sees
/// no key); the backward recomputes the weights from that log-sum-exp.
pub(crate) trait Attention {
    /// The largest head dimension (of `q`/`k` and of `v`) the fused kernels take.
    fn attention_head_limit(&self) -> usize;
    /// The output (`bh * L * Ev` elements, at the output's layout) and the per-row
    /// log-sum-exp; `q`, `k` and `v` are read at their layouts (they may share a storage).
    fn attention(
        &self,
        qkv: [&Storage; 3],
        mask: Option<&Storage>,
        geo: &attention::AttentionGeometry,
    ) -> Result<(Storage, Storage)>;
    /// Writes the gradients of `q`, `k` and `v` into `grads` at their operands' layouts
    /// (the storages may be one; elements outside the layouts are left as they are),
    /// from the output gradient `dout`, the saved output `out` and log-sum-exp `lse`.
    fn attention_backward(
        &self,
        qkv: [&Storage; 3],
        mask: Option<&Storage>,
        saved: [&Storage; 3],
        geo: &attention::AttentionGeometry,
        grads: [&Storage; 3],
    ) -> Result<()>;
}

/// Softmax and log-softmax along rows, each with its backward from the saved output.
pub(crate) trait Softmax {
    /// `softmax` (or `log_softmax` when `log`) of each row of `x`.
    fn softmax(&self, x: &Storage, rows: Rows, log: bool) -> Result<Storage>;
    /// Its backward from the saved output `y` and the output gradient `g`.
    fn softmax_backward(&self, y: &Storage, g: &Storage, rows: Rows, log: bool) -> Result<Storage>;
}

/// What happens to one image: crop offsets into the padded image, and flips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageMove {
    /// First row of the crop in the padded image (`0..=H + 2 pad - Ho`).
    pub crop_row: u32,
    /// First column of the crop in the padded image.
    pub crop_col: u32,
    /// Mirror left-right.
    pub hflip: bool,
    /// Mirror top-bottom.
    pub vflip: bool,
}

/// Data augmentation over whole batches.
pub(crate) trait Augment {
    /// Pads each image of the NCHW batch `x` (`dims` = N, C, H, W, Ho, Wo, padding) with
    /// zeros, crops `Ho x Wo` at its move's offsets, then flips it as asked.
    fn geometric(&self, x: &Storage, dims: [usize; 7], moves: &[ImageMove]) -> Result<Storage>;
}

/// The fused softmax cross-entropy of `[n, c]` logits and `u32` targets `[n]`.
pub(crate) trait Loss {
    /// The longest row one fused kernel takes (longer rows compose reductions).
    fn row_limit(&self) -> usize;
    /// Per-row losses `lse - x[target]` and the rows' log-sum-exp `lse`, each `[n]`. A
    /// target `>= c` is an argument error on the CPU, and NaN plus a deferred error on
    /// the GPU (the targets are not on the host).
    fn cross_entropy(
        &self,
        x: &Storage,
        t: &Storage,
        n: usize,
        c: usize,
    ) -> Result<(Storage, Storage)>;
    /// The logits' gradient `g[row] (softmax - onehot)` (`g` one value for every row,
    /// over n, when `mean`).
    #[allow(clippy::too_many_arguments)]
    fn cross_entropy_backward(
        &self,
        x: &Storage,
        lse: &Storage,
        g: &Storage,
        t: &Storage,
        n: usize,
        c: usize,
        mean: bool,
    ) -> Result<Storage>;
    /// The mean loss and the rows' `lse` in one dispatch where the backend has a kernel
    /// for the batch's size; `None` otherwise (per-row losses and a mean then).
    fn cross_entropy_mean(
        &self,
        x: &Storage,
        t: &Storage,
        n: usize,
        c: usize,
    ) -> Result<Option<(Storage, Storage)>>;
}

/// Sums and maxima over chosen dimensions, and their backwards.
pub(crate) trait Reduce {
    /// `scale` times the sum over the plan's reduced dimensions of `x` (floats).
    fn sum(&self, x: &Storage, plan: &reduce::ReducePlan, scale: f64) -> Result<Storage>;
    /// The sum over the plan's reduced dimensions of `u32` data, wrapping past
    /// `u32::MAX`.
    fn sum_u32(&self, x: &Storage, plan: &reduce::ReducePlan) -> Result<Storage>;
    /// The sum's backward: `scale * g[output of i]` for every input element i.
    fn spread(&self, g: &Storage, plan: &reduce::ReducePlan, scale: f64) -> Result<Storage>;
    /// The maximum over the reduced dimensions and its position among them (`u32`; the
    /// first on ties, NaN the largest); the values of `dtype`.
    fn max(
        &self,
        x: &Storage,
        plan: &reduce::ReducePlan,
        dtype: crate::tensor::DType,
    ) -> Result<(Storage, Storage)>;
    /// The maximum's backward: `g` at each saved position, 0 elsewhere.
    fn max_backward(
        &self,
        g: &Storage,
        idx: &Storage,
        plan: &reduce::ReducePlan,
    ) -> Result<Storage>;
}

/// Pooling and nearest upsampling over NCHW planes, and their backwards (gathers over
/// the windows covering each input element: no atomics, deterministic).
pub(crate) trait Pool2d {
    /// The maximum of each window and its winner's index in its plane (`u32`).
    /// (`positions`: whether a backward will read the positions; without, a backend
    /// may leave them unwritten.)
    fn max_pool(
        &self,
        x: &Storage,
        g: &pool2d::Pool,
        positions: bool,
    ) -> Result<(Storage, Storage)>;
    /// The maximum's backward through the saved winners.
    fn max_pool_backward(&self, gy: &Storage, idx: &Storage, g: &pool2d::Pool) -> Result<Storage>;
    /// The mean of each window (fixed windows count the padding).
    fn avg_pool(&self, x: &Storage, g: &pool2d::Pool) -> Result<Storage>;
    /// Its backward.
    fn avg_pool_backward(&self, gy: &Storage, g: &pool2d::Pool) -> Result<Storage>;
    /// Nearest upsampling by the factors `g.k`.
    fn upsample(&self, x: &Storage, g: &pool2d::Pool) -> Result<Storage>;
    /// Its backward: the sum of each element's block.
    fn upsample_backward(&self, gy: &Storage, g: &pool2d::Pool) -> Result<Storage>;
}

/// New storages and strided copies: the layout ops (`full`, `permute`, `narrow`,
/// `broadcast_to`, `cat`, `copy_from`) write contiguous tensors through these.
pub(crate) trait Layout {
    /// `n` elements of `value`, a storage of its element type (the GPU holds no `f64`: a
    /// dtype error naming `full`).
    fn fill(&self, n: usize, value: layout::Fill) -> Result<Storage>;
    /// The region `r` of `x` (a storage of `x_len` elements) as a new contiguous storage
    /// of `x`'s element type.
    fn copy_region(&self, x: &Storage, x_len: usize, r: layout::Region) -> Result<Storage>;
    /// Writes the contiguous `src` (`r.numel()` elements) into the region `r` of `dst`
    /// (a storage of `dst_len` elements), in place. `dst` and `src` are different
    /// storages of one element type.
    fn scatter_region(
        &self,
        dst: &Storage,
        dst_len: usize,
        src: &Storage,
        r: layout::Region,
    ) -> Result<()>;
    /// The `n` elements of `x` (of `from`) converted to `to`, as Rust's `as`: floats to
    /// `u32` round toward zero and saturate (NaN to 0). The GPU holds no `f64`: a dtype
    /// error.
    fn cast(
        &self,
        x: &Storage,
        n: usize,
        from: crate::tensor::DType,
        to: crate::tensor::DType,
    ) -> Result<Storage>;
}

/// Reads through `u32` indices (`index_select`, `gather`) and picks by a condition
/// (`where`), with the backwards that scatter (add) gradients back.
pub(crate) trait Indexing {
    /// `x` read through `idx` as `geo` says. An index `>= geo.size` is an argument error
    /// on the CPU, and NaN plus a deferred error on the GPU (the indices are not on the
    /// host).
    fn index(&self, x: &Storage, idx: &Storage, geo: &layout::Indexed) -> Result<Storage>;
    /// Its backward: the output gradient `g` added into a zeroed input-shaped storage at
    /// the positions the forward read (the GPU in chunks of positions, deterministic).
    fn index_backward(&self, g: &Storage, idx: &Storage, geo: &layout::Indexed) -> Result<Storage>;
    /// `a` where `cond != 0`, else `b`, broadcast over `geo.out` (all of one float type).
    fn where_cond(
        &self,
        cond: &Storage,
        a: &Storage,
        b: &Storage,
        geo: &layout::WhereGeo,
    ) -> Result<Storage>;
    /// Its backward in the output's shape: `g` where `cond != 0` (for `a`) and `g`
    /// elsewhere (for `b`), 0 otherwise; the op sums them down to the inputs' shapes.
    fn where_backward(
        &self,
        cond: &Storage,
        g: &Storage,
        geo: &layout::WhereGeo,
    ) -> Result<(Storage, Storage)>;
}

/// The per-channel tensors of a forward (`[C]` each, the counter one value), each
/// optional; the running statistics and the counter are updated in place in training
/// mode.
#[derive(Clone, Copy)]
pub(crate) struct BnChannels<'a> {
    /// Per-channel scale.
    pub weight: Option<&'a Storage>,
    /// Per-channel shift.
    pub bias: Option<&'a Storage>,
    /// Running mean (given exactly when `running_var` is, and always in evaluation mode).
    pub running_mean: Option<&'a Storage>,
    /// Running variance.
    pub running_var: Option<&'a Storage>,
    /// `num_batches_tracked`.
    pub count: Option<&'a Storage>,
}

/// Batch normalisation of an input viewed as `[N, C, L]`, over every dimension but the
/// channels (the plan says which of the optional tensors are given and whether the call
/// trains).
pub(crate) trait BatchNorm {
    /// Per-channel statistics `[4, C]` in the input's type: mean, invstd, scale (invstd
    /// times the weight) and shift (the bias). In training mode the batch's, with the
    /// running statistics (given the unbiased variance) and the counter of `ch` updated
    /// in place; otherwise from the running statistics.
    fn batch_norm_stats(&self, x: &Storage, ch: BnChannels, p: &batchnorm::Plan)
        -> Result<Storage>;
    /// `y = (x - mean) scale + shift` from the statistics.
    fn batch_norm(&self, x: &Storage, stats: &Storage, p: &batchnorm::Plan) -> Result<Storage>;
    /// The gradients of the input, the weight and the bias from the output gradient `g`
    /// and the saved statistics, each only where `need` says so (evaluation mode drops
    /// the batch-statistics terms).
    fn batch_norm_backward(
        &self,
        x: &Storage,
        stats: &Storage,
        g: &Storage,
        p: &batchnorm::Plan,
        need: [bool; 3],
    ) -> Result<[Option<Storage>; 3]>;
}

/// Row normalisations (`layer_norm`, `rms_norm`, `group_norm`): rows of `D` contiguous
/// elements normalised by their own mean and variance (or mean square), then an affine
/// map whose values the geometry indexes (`backend/norm.rs`). Rows of at most
/// [`norm::MAX_ROW`] elements.
pub(crate) trait Norm {
    /// The normalised output and the per-row statistics `[2, R]` in the input's type:
    /// the mean (0 for `rms_norm`) and `rstd = 1 / sqrt(var + eps)`.
    fn norm_rows(
        &self,
        x: &Storage,
        weight: Option<&Storage>,
        bias: Option<&Storage>,
        geo: &norm::NormGeo,
    ) -> Result<(Storage, Storage)>;
    /// The input's gradient from the output gradient `g`, the saved statistics and the
    /// weight.
    fn norm_rows_backward(
        &self,
        x: &Storage,
        stats: &Storage,
        g: &Storage,
        weight: Option<&Storage>,
        geo: &norm::NormGeo,
    ) -> Result<Storage>;
    /// Partial gradients of the weight (`sum g xhat`) and the bias (`sum g`), `[chunks,
    /// A]` each (`geo.chunks()`; the caller adds the chunks), each only where `need`
    /// says so.
    fn norm_affine_backward(
        &self,
        x: &Storage,
        stats: &Storage,
        g: &Storage,
        geo: &norm::NormGeo,
        need: [bool; 2],
    ) -> Result<[Option<Storage>; 2]>;
}

/// The recurrences (Elman, LSTM, GRU; see [`rnn::Cell`]): a whole layer over a sequence
/// as one forward and one backward (backpropagation through time), run by one driver
/// per backend for every cell, and the LSTM and GRU cells' gate math for one step.
pub(crate) trait Recurrence {
    /// One layer over the whole sequence: every step's `h` (an LSTM's then its last
    /// `c`), `[T (+ 1), B, H]`, and what the backward reads besides.
    fn recurrence(
        &self,
        cell: rnn::Cell,
        layer: &rnn::Layer<'_>,
        dims: rnn::Dims,
    ) -> Result<(Storage, rnn::Saved)>;
    /// The layer's backward from its inputs (biases unread), its output `y`, what its
    /// forward saved and the output gradient `gy`: the gradients `need` asks for (the
    /// initial states' whenever the walk computes them anyway).
    #[allow(clippy::too_many_arguments)]
    fn recurrence_backward(
        &self,
        cell: rnn::Cell,
        layer: &rnn::Layer<'_>,
        y: &Storage,
        saved: &rnn::Saved,
        gy: &Storage,
        need: rnn::Need,
        dims: rnn::Dims,
    ) -> Result<rnn::Grads>;
    /// One LSTM step: the gate pre-activations `gates` `[B, 4H]` and the cell state
    /// `c_prev` `[B, H]` give `[2, B, H]`, `h` then `c`.
    fn lstm_cell(&self, gates: &Storage, c_prev: &Storage, b: usize, h: usize) -> Result<Storage>;
    /// Its backward from the gradient `g` `[2, B, H]` of `(h, c)`: the gradients of the
    /// gates `[B, 4H]` and of `c_prev` `[B, H]`.
    fn lstm_cell_backward(
        &self,
        gates: &Storage,
        c_prev: &Storage,
        g: &Storage,
        b: usize,
        h: usize,
    ) -> Result<(Storage, Storage)>;
    /// One GRU step: the input and recurrent products `gi`, `gh` `[B, 3H]` (with their
    /// biases) and `h_prev` `[B, H]` give the new hidden state `[B, H]`.
    fn gru_cell(
        &self,
        gi: &Storage,
        gh: &Storage,
        h_prev: &Storage,
        b: usize,
        h: usize,
    ) -> Result<Storage>;
    /// Its backward from the gradient `g` `[B, H]`: `[d gi, d gh, d h_prev]` (the last
    /// through `z` only; the recurrent product's share is the caller's).
    fn gru_cell_backward(
        &self,
        gi: &Storage,
        gh: &Storage,
        h_prev: &Storage,
        g: &Storage,
        b: usize,
        h: usize,
    ) -> Result<[Storage; 3]>;
}

/// Batched matrix products (the CPU's `gemm` kernels, the GPU's planned kernel family).
pub(crate) trait Matmul {
    /// The product `p` of `a` and `b`: `[out batch..., M, N]` elements, the batches a
    /// summing product reduces added together. `choice` forces a GPU kernel and split
    /// count (the CPU ignores it).
    fn matmul(
        &self,
        a: &Storage,
        b: &Storage,
        p: &matmul::Product,
        choice: matmul::MatmulChoice,
    ) -> Result<Storage>;
    /// The plan the GPU runs for a product of `shape` with the planner's choices (`None`
    /// on the CPU, which has no planner).
    fn matmul_plan(&self, shape: &matmul_plan::ProductShape) -> Option<matmul_plan::MatmulPlan>;
}

/// Fused layers: a product with its bias and activation, and its backward with the
/// activation's derivative and the bias gradient. The saved value a backward reads is
/// the output, or the pre-activation (returned beside the output) for an activation
/// whose derivative needs its input ([`matmul::Act::needs_input`]).
pub(crate) trait Fused {
    /// `act(x W^T + b + addend)` for `x` `[rows, inp]`, `W` `[out, inp]`, `b` `[out]` and
    /// `addend` `[rows, out]` (a residual connection, added where the product is
    /// written): the output and, where the activation needs its input, the
    /// pre-activation.
    fn linear_act(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        addend: Option<&Storage>,
        l: &matmul::LinearAct,
    ) -> Result<(Storage, Option<Storage>)>;
    /// Its backward from the output gradient `g` and the saved value (`None` for the
    /// identity): the gradients of `x`, `W` and `b` where `need` asks for them.
    fn linear_act_backward(
        &self,
        g: &Storage,
        saved: Option<&Storage>,
        x: &Storage,
        w: &Storage,
        l: &matmul::LinearAct,
        need: [bool; 3],
    ) -> Result<[Option<Storage>; 3]>;
    /// True when [`Fused::conv_act`] runs here (both backends do; a backend without it
    /// would have the op compose the convolution from the unfused ops).
    fn fuses_conv(&self) -> bool;
    /// `act(conv2d(x, W) + b)` for one group, the columns gathered as the product loads
    /// them: the output `[N, O, Ho, Wo]` and, where the activation needs its input, the
    /// pre-activation.
    fn conv_act(
        &self,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        c: &matmul::ConvAct,
    ) -> Result<(Storage, Option<Storage>)>;
    /// Its backward: the gradients of `x` (the image), `W` and `b` where `need` asks.
    fn conv_act_backward(
        &self,
        g: &Storage,
        saved: Option<&Storage>,
        x: &Storage,
        w: &Storage,
        c: &matmul::ConvAct,
        need: [bool; 3],
    ) -> Result<[Option<Storage>; 3]>;
}

/// A convolution's column transforms, adjoint to each other.
pub(crate) trait Conv {
    /// The columns `[N, C kh kw, Ho Wo]` of the images `x` (`[N, C, H, W]`).
    fn im2col(&self, x: &Storage, g: &conv2d::Geometry) -> Result<Storage>;
    /// Columns folded back into images, overlaps summed.
    fn col2im(&self, cols: &Storage, g: &conv2d::Geometry) -> Result<Storage>;
}

/// In-place updates `dst = op(dst, a, b)` of a contiguous `dst` in one pass (one
/// dispatch on the GPU), the operands broadcast to `dst`'s shape (`geo.out`, with `a`'s
/// and `b`'s strides over it; an operand the update does not read is `None`). An operand
/// that is `dst`'s own storage has `dst`'s layout (the op layer checks it: a same-storage
/// tensor that broadcasts to `dst`'s shape has its size) and is read as the value before
/// the update. Nothing is done for an empty `dst`.
pub(crate) trait Inplace {
    /// Updates `dst` in place.
    fn update(
        &self,
        op: inplace::InplaceOp,
        dst: &Storage,
        a: Option<&Storage>,
        b: Option<&Storage>,
        geo: &Broadcast,
    ) -> Result<()>;
}

/// A storage of the other backend reached this one: a wgrad bug (ops check devices
/// before calling the seam), reported as an error rather than a panic.
pub(crate) fn wrong_backend<T>(op: &'static str) -> Result<T> {
    Err(crate::error::Error::Gpu(format!(
        "{op}: a tensor of another device reached this backend (a wgrad bug)"
    )))
}

/// The bytes of a tensor: shared by views (reshape), written in place only by optimizers.
#[derive(Clone)]
pub(crate) enum Storage {
    Cpu(Arc<cpu::CpuStorage>),
    Gpu(Arc<gpu::GpuBuffer>),
    /// `F16` or `BF16` elements on either device ([`half`]): no f32 kernel reads it.
    Half(Arc<half::HalfStorage>),
}

impl Storage {
    /// CPU storage holding `d`.
    pub(crate) fn new_cpu(d: cpu::CpuData) -> Storage {
        Storage::Cpu(Arc::new(cpu::CpuStorage::new(d)))
    }

    /// GPU storage holding `b`.
    pub(crate) fn new_gpu(b: gpu::GpuBuffer) -> Storage {
        Storage::Gpu(Arc::new(b))
    }

    /// The CPU data, or an error naming `op` for GPU storage (a wgrad bug: ops check
    /// devices before calling the seam).
    pub(crate) fn cpu(&self, op: &'static str) -> Result<&cpu::CpuStorage> {
        match self {
            Storage::Cpu(c) => Ok(c),
            Storage::Gpu(_) => wrong_backend(op),
            Storage::Half(h) => half::not_yet(op, h.dtype),
        }
    }

    /// The GPU buffer, or an error naming `op` for CPU storage.
    pub(crate) fn gpu(&self, op: &'static str) -> Result<&gpu::GpuBuffer> {
        match self {
            Storage::Gpu(b) => Ok(b),
            Storage::Cpu(_) => wrong_backend(op),
            Storage::Half(h) => half::not_yet(op, h.dtype),
        }
    }

    /// The GPU buffer of `f32` or half storage (a kernel's native `f16` output), or an
    /// error naming `op` for CPU storage.
    pub(crate) fn buffer(&self, op: &'static str) -> Result<&gpu::GpuBuffer> {
        match self {
            Storage::Half(h) => match &h.data {
                half::HalfData::Gpu(b) => Ok(b),
                half::HalfData::Cpu(_) => wrong_backend(op),
            },
            _ => self.gpu(op),
        }
    }

    /// True when both handles name the same bytes.
    pub(crate) fn same_as(&self, other: &Storage) -> bool {
        match (self, other) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Arc::ptr_eq(a, b),
            (Storage::Gpu(a), Storage::Gpu(b)) => Arc::ptr_eq(a, b),
            (Storage::Half(a), Storage::Half(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}
