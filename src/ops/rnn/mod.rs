//! Recurrent layers over whole sequences ([`rnn_layer`]) and the cells' gate math, one
//! fused kernel per time step forward and one backward. On the GPU a layer runs on
//! `[T, ...]` buffers: the input products of all steps are one fused product (with
//! `b_ih`), and each step is one fused product (Elman: the recurrent product, `b_hh`,
//! the input term and the activation) or a product and a gate kernel (LSTM, GRU) that
//! read and write their slots in place, with no per-step copies. The CPU composes the
//! cells with ordinary ops. The modules in `crate::nn` (`RNN`, `LSTM`, `GRU`) use
//! these.
//!
//! LSTM (PyTorch's gate order i, f, g, o): from the pre-activations `a = [a_i, a_f, a_g,
//! a_o]`, `c = s(a_f) c_prev + s(a_i) tanh(a_g)` and `h = s(a_o) tanh(c)`.
//! GRU (order r, z, n): from `gi = x W_ih^T + b_ih` and `gh = h_prev W_hh^T + b_hh`,
//! `r = s(gi_r + gh_r)`, `z = s(gi_z + gh_z)`, `n = tanh(gi_n + r gh_n)` and
//! `h = (1 - z) n + z h_prev`.

use crate::autograd::record;
use crate::backend::cpu::{map_float2, map_float3, pool, CpuData, Float};
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
    crate::backend::gpu::Generated::Fixed(crate::ops::elementwise::wgsl_functions),
);

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
    if matches!(x.device(), Device::Cpu) && matches!(mode, RnnMode::Tanh | RnnMode::Relu) {
        return elman_cpu(mode, x, w, h0, (t_len, b, i, h));
    }
    if matches!(x.device(), Device::Gpu(_)) {
        match (mode, c0) {
            (RnnMode::Tanh | RnnMode::Relu, _) => {
                return elman_gpu(mode, x, w, h0, (t_len, b, i, h));
            }
            (RnnMode::Gru, None) => {
                let gi_all = x.linear_act(w.w_ih, w.b_ih, crate::ops::matmul::Act::Identity)?;
                return gru_gpu(&gi_all, w.w_hh, w.b_hh, h0, (t_len, b, h));
            }
            (RnnMode::Lstm, Some(c0)) => {
                let gi_all = x.linear_act(w.w_ih, w.b_ih, crate::ops::matmul::Act::Identity)?;
                return lstm_gpu(&gi_all, w.w_hh, w.b_hh, h0, c0, (t_len, b, h));
            }
            _ => {}
        }
    }
    // The CPU's LSTM and GRU (Elman layers and the GPU returned above). All steps'
    // input products at once: [T, B, G H]. Where the two biases only ever appear summed
    // (LSTM), b_hh joins them here once instead of every step; the GRU needs b_hh inside
    // the reset gate's product.
    let mut gi_all = x.linear(w.w_ih)?;
    if let Some(bias) = w.b_ih {
        gi_all = gi_all.add(bias)?;
    }
    let mut b_hh = w.b_hh;
    if mode != RnnMode::Gru {
        if let Some(bias) = b_hh.take() {
            gi_all = gi_all.add(bias)?;
        }
    }
    recurrence(mode, &gi_all, w.w_hh, b_hh, h0, c0, (t_len, b, h))
}

/// Kept here too for existing callers; the op lives in [`crate::ops::embedding`].
pub use super::embedding::embedding;
