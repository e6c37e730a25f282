//! Recurrent layers over whole sequences ([`rnn_layer`]) and the cells' gate math. One
//! driver per backend runs every layer (`cpu.rs`, `gpu.rs`); Elman, LSTM and GRU differ
//! only in their `Cell`. A layer is one graph node: the input products of all steps
//! are one product (with `b_ih`), and each step is one product (`h_{t-1} W_hh^T + b_hh`,
//! plus `gi_t` for Elman and the LSTM) followed by the cell's math (Elman: the
//! activation, fused into the product on the GPU; LSTM, GRU: one step kernel), reading
//! and writing slots of whole-sequence buffers with no per-step copies. The modules in
//! `crate::nn` (`RNN`, `LSTM`, `GRU`) use these.
//!
//! LSTM (PyTorch's gate order i, f, g, o): from the pre-activations `a = [a_i, a_f, a_g,
//! a_o]`, `c = s(a_f) c_prev + s(a_i) tanh(a_g)` and `h = s(a_o) tanh(c)`.
//! GRU (order r, z, n): from `gi = x W_ih^T + b_ih` and `gh = h_prev W_hh^T + b_hh`,
//! `r = s(gi_r + gh_r)`, `z = s(gi_z + gh_z)`, `n = tanh(gi_n + r gh_n)` and
//! `h = (1 - z) n + z h_prev`.

use crate::autograd::record;
use crate::backend::cpu::{map_float2, map_float3, pool, CpuData, Float};
use crate::backend::gpu::params::{params, Params};
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::ops::unary::sigmoid;
use crate::ops::{gpu_alloc, groups_1d, kernel};
use crate::tensor::{check_float, check_pair, DType, Tensor};

mod cell;
mod cpu;
mod gpu;
use cell::*;
pub use cell::{gru_cell, lstm_cell};
use cpu::*;
use gpu::*;

pub(crate) const FILE: ShaderFile = crate::ops::shader_with(
    "rnn",
    include_str!("../../../shaders/rnn.wgsl"),
    crate::backend::gpu::Generated::Fixed(crate::backend::elementwise::wgsl_functions),
)
.with_params(&[&CellParams::INFO, &StepParams::INFO]);

params! {
    /// One cell step's kernels (`lstm_cell_*`, `gru_cell_*`).
    pub(crate) struct CellParams as cp {
        /// Batch.
        b: u32,
        /// Hidden size.
        h: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
    }

    /// The whole-sequence step kernels (`lstm_step_*`, `gru_step_*`): offsets into the
    /// `[T, ...]` buffers.
    pub(crate) struct StepParams as st {
        /// Batch.
        b: u32,
        /// Hidden size.
        h: u32,
        /// Offset of step t's gates (and of their gradients).
        gates: u32,
        /// Offset of h_{t-1} and c_{t-1}.
        prev: u32,
        /// Offset of h_t (forward) or of its gradient (backward).
        cur: u32,
        /// Offset of the cell state written (forward) or of the last cell state's
        /// gradient (backward).
        cell: u32,
        /// Forward: 1 = not the first step, 2 = the last; backward: 1 = the last step.
        flags: u32,
        /// Padding.
        _pad: u32,
    }
}

/// Which recurrence a layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RnnMode {
    /// Elman RNN, `h = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`.
    Tanh,
    /// Elman RNN with ReLU instead of tanh.
    Relu,
    /// Long short-term memory (gates i, f, g, o).
    Lstm,
    /// Gated recurrent unit (gates r, z, n).
    Gru,
}

impl RnnMode {
    /// Gate blocks stacked in the weights: 1, 4 or 3.
    pub fn gates(self) -> usize {
        match self {
            RnnMode::Tanh | RnnMode::Relu => 1,
            RnnMode::Lstm => 4,
            RnnMode::Gru => 3,
        }
    }
    fn name(self) -> &'static str {
        match self {
            RnnMode::Tanh => "rnn_tanh",
            RnnMode::Relu => "rnn_relu",
            RnnMode::Lstm => "lstm",
            RnnMode::Gru => "gru",
        }
    }
}

/// A recurrent cell, as both recurrence drivers (`cpu.rs`, `gpu.rs`) see it: what
/// follows each step's recurrent product and its derivative. Nothing else differs
/// between the layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Cell {
    /// `h_t = act(h_{t-1} W_hh^T + gi_t + b_hh)`: the activation follows the product
    /// (on the GPU, in its epilogue; backward, the next product's prologue applies its
    /// derivative).
    Elman(crate::ops::matmul::Act),
    /// The product gives the gate pre-activations `h_{t-1} W_hh^T + gi_t + b_hh`
    /// (`[B, 4H]`), and the gate math turns them into `h_t` and the cell state.
    Lstm,
    /// The product gives `gh_t = h_{t-1} W_hh^T + b_hh` (`[B, 3H]`, kept apart from
    /// `gi_t`: the reset gate multiplies its `n` block), and the gate math gives `h_t`.
    Gru,
}

impl Cell {
    pub(super) fn of(mode: RnnMode) -> Cell {
        use crate::ops::matmul::Act;
        match mode {
            RnnMode::Tanh => Cell::Elman(Act::Tanh),
            RnnMode::Relu => Cell::Elman(Act::Relu),
            RnnMode::Lstm => Cell::Lstm,
            RnnMode::Gru => Cell::Gru,
        }
    }

    /// The activation that follows the product (Elman), else `None`.
    pub(super) fn fused(self) -> Option<crate::ops::matmul::Act> {
        match self {
            Cell::Elman(act) => Some(act),
            _ => None,
        }
    }

    /// Whether the step's product adds `gi_t`, so its output is the whole
    /// pre-activation (all but the GRU).
    pub(super) fn product_adds_input(self) -> bool {
        self != Cell::Gru
    }
}

/// A layer's graph node, shared by both drivers: its inputs in the order `[x, W_ih,
/// W_hh, (b_ih), (b_hh), h0, (c0)]` and which of them need a gradient.
#[derive(Clone, Copy, Debug)]
pub(super) struct Need {
    pub x: bool,
    pub w_ih: bool,
    pub w_hh: bool,
    pub b_ih: bool,
    pub b_hh: bool,
    pub h0: bool,
    has_bih: bool,
    has_bhh: bool,
    has_c0: bool,
}

impl Need {
    /// The node's inputs and the gradients they need.
    pub(super) fn of<'a>(
        x: &'a Tensor,
        w: LayerWeights<'a>,
        h0: &'a Tensor,
        c0: Option<&'a Tensor>,
    ) -> (Vec<&'a Tensor>, Need) {
        let mut inputs: Vec<&Tensor> = vec![x, w.w_ih, w.w_hh];
        inputs.extend(w.b_ih);
        inputs.extend(w.b_hh);
        inputs.push(h0);
        inputs.extend(c0);
        let g = |t: Option<&Tensor>| t.is_some_and(Tensor::requires_grad);
        let need = Need {
            x: x.requires_grad(),
            w_ih: w.w_ih.requires_grad(),
            w_hh: w.w_hh.requires_grad(),
            b_ih: g(w.b_ih),
            b_hh: g(w.b_hh),
            h0: h0.requires_grad(),
            has_bih: w.b_ih.is_some(),
            has_bhh: w.b_hh.is_some(),
            has_c0: c0.is_some(),
        };
        (inputs, need)
    }

    /// The gradients `[dx, dW_ih, dW_hh, db_ih, db_hh, dh0, dc0]` in the node's input
    /// order (absent inputs dropped).
    pub(super) fn order(self, grads: [Option<Tensor>; 7]) -> Vec<Option<Tensor>> {
        let present = [
            true,
            true,
            true,
            self.has_bih,
            self.has_bhh,
            true,
            self.has_c0,
        ];
        grads
            .into_iter()
            .zip(present)
            .filter_map(|(g, p)| p.then_some(g))
            .collect()
    }
}

/// One layer's weights in PyTorch's layout: `w_ih [G H, I]`, `w_hh [G H, H]`, biases
/// `[G H]`, with `G` gate blocks.
#[derive(Clone, Copy, Debug)]
pub struct LayerWeights<'a> {
    /// Input-to-hidden weights.
    pub w_ih: &'a Tensor,
    /// Hidden-to-hidden weights.
    pub w_hh: &'a Tensor,
    /// Input-to-hidden bias.
    pub b_ih: Option<&'a Tensor>,
    /// Hidden-to-hidden bias.
    pub b_hh: Option<&'a Tensor>,
}

/// A layer's outputs: every step's hidden state `[T, B, H]`, the last hidden state
/// `[B, H]` and, for an LSTM, the last cell state.
pub type LayerOutput = (Tensor, Tensor, Option<Tensor>);

/// One recurrent layer over a whole sequence `x` `[T, B, I]` from the initial states
/// `h0` (and `c0` for an LSTM), each `[B, H]`.
///
/// The input products of all steps are one matrix product; the recurrence is then one
/// graph node whose forward runs, per step, the recurrent product and the fused gate
/// kernel, and whose backward walks the steps in reverse with the fused backward kernel
/// (backpropagation through time), finishing with one product each for the recurrent
/// weights' and bias's gradients. The graph stays a few nodes long however long the
/// sequence, so thousands of steps need no deep recursion and only the per-step
/// activations are kept.
pub fn rnn_layer(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    c0: Option<&Tensor>,
) -> Result<LayerOutput> {
    let op = mode.name();
    check_pair(op, x, w.w_ih)?;
    check_pair(op, x, w.w_hh)?;
    check_pair(op, x, h0)?;
    check_float(op, x)?;
    let (t_len, b, i) = match x.shape() {
        &[t, b, i] if t > 0 => (t, b, i),
        _ => {
            return shape_err(
                op,
                format!("input {:?}: expected [T, B, I] with T >= 1", x.shape()),
            )
        }
    };
    let g = mode.gates();
    let h = w.w_hh.shape().get(1).copied().unwrap_or(0);
    let gh_size = g * h;
    let bias_ok = |bias: Option<&Tensor>| bias.is_none_or(|t| t.shape() == [gh_size]);
    if w.w_ih.shape() != [gh_size, i]
        || w.w_hh.shape() != [gh_size, h]
        || !bias_ok(w.b_ih)
        || !bias_ok(w.b_hh)
        || h0.shape() != [b, h]
        || (mode == RnnMode::Lstm) != c0.is_some()
        || c0.is_some_and(|c| c.shape() != [b, h])
    {
        return shape_err(
            op,
            format!(
                "input {:?}, w_ih {:?}, w_hh {:?}, h0 {:?}{}: expected w_ih [{g}H, I], \
                 w_hh [{g}H, H], biases [{g}H], h0 [B, H]{}",
                x.shape(),
                w.w_ih.shape(),
                w.w_hh.shape(),
                h0.shape(),
                c0.map_or(String::new(), |c| format!(", c0 {:?}", c.shape())),
                if mode == RnnMode::Lstm {
                    " and c0 [B, H]"
                } else {
                    " and no c0"
                }
            ),
        );
    }
    for t in [w.b_ih, w.b_hh, c0].into_iter().flatten() {
        check_pair(op, x, t)?;
    }
    match x.device() {
        Device::Cpu => recurrence_cpu(mode, x, w, h0, c0, (t_len, b, i, h)),
        Device::Gpu(_) => recurrence_gpu(mode, x, w, h0, c0, (t_len, b, i, h)),
    }
}

/// Kept here too for existing callers; the op lives in [`crate::ops::embedding`].
pub use super::embedding::embedding;

/// The kernels of `shaders/rnn.wgsl`, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![
        LSTM_FWD,
        LSTM_BWD,
        GRU_FWD,
        GRU_BWD,
        LSTM_STEP_FWD,
        LSTM_STEP_BWD,
        GRU_STEP_FWD,
        GRU_STEP_BWD,
    ]
}
