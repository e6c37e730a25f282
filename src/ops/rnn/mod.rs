//! Recurrent layers over whole sequences ([`rnn_layer`], and in reverse for
//! bidirectional layers [`rnn_layer_reverse`]) and the cells' gate math
//! ([`lstm_cell`], [`gru_cell`]): their checks, graph nodes and backwards. One driver
//! per backend runs every layer (`backend/cpu/rnn.rs`, `backend/gpu/rnn_layer.rs`, behind
//! the `Recurrence` primitives); Elman, LSTM and GRU differ only in their `Cell`. A layer is one graph node: the input products of all steps
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
use crate::backend::rnn::{Cell, Dims, Layer, Need};
use crate::error::{shape_err, Result};
use crate::ops::matmul::Act;
use crate::tensor::{check_float, check_pair, Tensor};

mod cell;
pub use cell::{gru_cell, lstm_cell};

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
    /// The cell both backends' drivers run for this mode.
    fn cell(self) -> Cell {
        match self {
            RnnMode::Tanh => Cell::Elman(Act::Tanh),
            RnnMode::Relu => Cell::Elman(Act::Relu),
            RnnMode::Lstm => Cell::Lstm,
            RnnMode::Gru => Cell::Gru,
        }
    }
}

/// A layer's graph node: its inputs in the order `[x, W_ih, W_hh, (b_ih), (b_hh), h0,
/// (c0)]` and which of them need a gradient.
#[derive(Clone, Copy, Debug)]
struct Node {
    need: Need,
    has_bih: bool,
    has_bhh: bool,
    has_c0: bool,
}

impl Node {
    /// The node's inputs and the gradients they need.
    fn of<'a>(
        x: &'a Tensor,
        w: LayerWeights<'a>,
        h0: &'a Tensor,
        c0: Option<&'a Tensor>,
    ) -> (Vec<&'a Tensor>, Node) {
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
        };
        let node = Node {
            need,
            has_bih: w.b_ih.is_some(),
            has_bhh: w.b_hh.is_some(),
            has_c0: c0.is_some(),
        };
        (inputs, node)
    }

    /// The gradients `[dx, dW_ih, dW_hh, db_ih, db_hh, dh0, dc0]` in the node's input
    /// order (absent inputs dropped).
    fn order(self, grads: impl Iterator<Item = Option<Tensor>>) -> Vec<Option<Tensor>> {
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
/// `h0` (and `c0` for an LSTM), each `[B, H]`; [`rnn_layer_reverse`] runs it from the
/// last step to the first.
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
    layer(mode, x, w, h0, c0, false)
}

/// The reverse direction of a bidirectional layer (PyTorch's `*_reverse` weights): the
/// recurrence of [`rnn_layer`] run from the last time step to the first, `h_t` computed
/// from `h_{t+1}` and `x_t` (`h_{T-1}` from `h0`). The output is still in time order,
/// `[T, B, H]` with `h_t` at step `t`, so the final state is step 0's. The drivers walk
/// the steps backwards over the same buffers: nothing is flipped or copied.
pub fn rnn_layer_reverse(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    c0: Option<&Tensor>,
) -> Result<LayerOutput> {
    layer(mode, x, w, h0, c0, true)
}

/// [`rnn_layer`] or, with `reverse`, [`rnn_layer_reverse`].
fn layer(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    c0: Option<&Tensor>,
    reverse: bool,
) -> Result<LayerOutput> {
    // Half inputs (or autocast): the layer in f32, its outputs rounded back.
    let ins = crate::ops::half::with_optional(&[x, w.w_ih, w.w_hh, h0], &[w.b_ih, w.b_hh, c0]);
    if let Some(r) = crate::ops::half::widened("rnn_layer", &ins, |t| {
        let (f, o) = crate::ops::half::split_optional(t, 4, &[w.b_ih, w.b_hh, c0]);
        let lw = LayerWeights {
            w_ih: &f[1],
            w_hh: &f[2],
            b_ih: o[0],
            b_hh: o[1],
        };
        layer(mode, &f[0], lw, &f[3], o[2], reverse)
    }) {
        return r;
    }
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
    let cell = mode.cell();
    let dims = Dims {
        t_len,
        b,
        i,
        h,
        g,
        reverse,
    };
    let layer = Layer {
        x: x.storage(),
        w_ih: w.w_ih.storage(),
        w_hh: w.w_hh.storage(),
        b_ih: w.b_ih.map(Tensor::storage),
        b_hh: w.b_hh.map(Tensor::storage),
        h0: h0.storage(),
        c0: c0.map(Tensor::storage),
    };
    let (y, saved) = x.device().backend().recurrence(cell, &layer, dims)?;
    let y_steps = cell.y_steps(t_len);
    let y = Tensor::like(y, vec![y_steps, b, h], x);
    let (inputs, graph) = Node::of(x, w, h0, c0);
    // What the backward reads: the inputs but the biases, and the output.
    let kept = [x, w.w_ih, w.w_hh, h0].map(Tensor::detach);
    let c0d = c0.map(Tensor::detach);
    let saved_y = y.detach();
    let node = record(y, op, &inputs, move |gy| {
        let [x, w_ih, w_hh, h0] = &kept;
        let layer = Layer {
            x: x.storage(),
            w_ih: w_ih.storage(),
            w_hh: w_hh.storage(),
            b_ih: None,
            b_hh: None,
            h0: h0.storage(),
            c0: c0d.as_ref().map(Tensor::storage),
        };
        let grads = gy.device().backend().recurrence_backward(
            cell,
            &layer,
            saved_y.storage(),
            &saved,
            gy.storage(),
            graph.need,
            dims,
        )?;
        let gh = g * h;
        let shapes = [
            vec![t_len, b, i],
            vec![gh, i],
            vec![gh, h],
            vec![gh],
            vec![gh],
            vec![b, h],
            vec![b, h],
        ];
        let grads = grads
            .into_iter()
            .zip(shapes)
            .map(|(d, shape)| d.map(|d| Tensor::like(d, shape, gy)));
        Ok(graph.order(grads))
    });
    let h_all = match cell {
        Cell::Lstm => node.narrow(0, 0, t_len)?,
        _ => node.clone(),
    };
    let last = if reverse { 0 } else { t_len - 1 };
    let h_last = node.narrow(0, last, 1)?.reshape(&[b, h])?;
    let c_last = (cell == Cell::Lstm)
        .then(|| node.narrow(0, t_len, 1)?.reshape(&[b, h]))
        .transpose()?;
    Ok((h_all, h_last, c_last))
}

/// Kept here too for existing callers; the op lives in [`crate::ops::embedding`].
pub use super::embedding::embedding;
