//! A recurrent layer as both recurrence drivers see it (`backend/cpu/rnn.rs`,
//! `backend/gpu/rnn.rs`): its [`Cell`], its sizes ([`Dims`]), its inputs ([`Layer`]),
//! what its forward keeps for its backward ([`Saved`]) and which gradients that backward
//! computes ([`Need`]).

use super::Storage;
// The matrix-product family's fused activation (moving behind the seam in its own step).
use crate::backend::matmul::Act;

/// A recurrent cell: what follows each step's recurrent product and its derivative.
/// Nothing else differs between the layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cell {
    /// `h_t = act(h_{t-1} W_hh^T + gi_t + b_hh)`: the activation follows the product
    /// (on the GPU, in its epilogue; backward, the next product's prologue applies its
    /// derivative).
    Elman(Act),
    /// The product gives the gate pre-activations `h_{t-1} W_hh^T + gi_t + b_hh`
    /// (`[B, 4H]`), and the gate math turns them into `h_t` and the cell state.
    Lstm,
    /// The product gives `gh_t = h_{t-1} W_hh^T + b_hh` (`[B, 3H]`, kept apart from
    /// `gi_t`: the reset gate multiplies its `n` block), and the gate math gives `h_t`.
    Gru,
}

impl Cell {
    /// The activation that follows the product (Elman), else `None`.
    pub(crate) fn fused(self) -> Option<Act> {
        match self {
            Cell::Elman(act) => Some(act),
            _ => None,
        }
    }

    /// Whether the step's product adds `gi_t`, so its output is the whole
    /// pre-activation (all but the GRU).
    pub(crate) fn product_adds_input(self) -> bool {
        self != Cell::Gru
    }

    /// Steps of output: every step's `h`, and for an LSTM its last `c` after them.
    pub(crate) fn y_steps(self, t_len: usize) -> usize {
        if self == Cell::Lstm {
            t_len + 1
        } else {
            t_len
        }
    }
}

/// A layer's sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    /// Steps (at least 1).
    pub t_len: usize,
    /// Batch.
    pub b: usize,
    /// Input size.
    pub i: usize,
    /// Hidden size.
    pub h: usize,
    /// Gate blocks stacked in the weights: 1, 4 or 3.
    pub g: usize,
    /// The reverse direction of a bidirectional layer: the steps run from the last time
    /// step to the first (`h_t` from `h_{t+1}`, the first step from `h0`), and `h_t`
    /// still lands in slot `t` of the output, so the final state is slot 0.
    pub reverse: bool,
}

impl Dims {
    /// The time step that the `s`-th step of the recurrence computes: `s`, or `T - 1 - s`
    /// in the reverse direction.
    pub(crate) fn time(&self, s: usize) -> usize {
        if self.reverse {
            self.t_len - 1 - s
        } else {
            s
        }
    }
}

/// A layer's inputs in PyTorch's layout, of one float dtype: `x` `[T, B, I]`, `w_ih`
/// `[G H, I]`, `w_hh` `[G H, H]`, biases `[G H]`, `h0` and (LSTM) `c0` `[B, H]`. The
/// backward reads all but the biases.
#[derive(Clone, Copy)]
pub(crate) struct Layer<'a> {
    /// The input sequence.
    pub x: &'a Storage,
    /// Input-to-hidden weights.
    pub w_ih: &'a Storage,
    /// Hidden-to-hidden weights.
    pub w_hh: &'a Storage,
    /// Input-to-hidden bias.
    pub b_ih: Option<&'a Storage>,
    /// Hidden-to-hidden bias.
    pub b_hh: Option<&'a Storage>,
    /// The initial hidden state.
    pub h0: &'a Storage,
    /// The initial cell state (LSTM).
    pub c0: Option<&'a Storage>,
}

/// What a layer's forward keeps for its backward, besides its output `y` (`[T (+ 1), B,
/// H]`: every step's `h`, an LSTM's then its last `c`).
#[derive(Clone, Default)]
pub(crate) struct Saved {
    /// The input products with `b_ih`, `[T, B, G H]` (the GRU's backward reads them).
    pub gi: Option<Storage>,
    /// The step products, `[T, B, G H]` (gated cells).
    pub pre: Option<Storage>,
    /// An LSTM's cell states (on the GPU, those before the last step).
    pub cs: Option<Storage>,
}

/// Which of a layer's inputs need a gradient.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Need {
    /// The input sequence.
    pub x: bool,
    /// Input-to-hidden weights.
    pub w_ih: bool,
    /// Hidden-to-hidden weights.
    pub w_hh: bool,
    /// Input-to-hidden bias.
    pub b_ih: bool,
    /// Hidden-to-hidden bias.
    pub b_hh: bool,
    /// The initial hidden state.
    pub h0: bool,
}

/// A layer's gradients `[dx, dW_ih, dW_hh, db_ih, db_hh, dh0, dc0]` (shaped like the
/// inputs), each `None` where not computed.
pub(crate) type Grads = [Option<Storage>; 7];
