//! Recurrent layers with PyTorch's semantics, parameter names and layouts: [`RNN`]
//! (tanh or ReLU), [`LSTM`] (gates i, f, g, o) and [`GRU`] (gates r, z, n), with several
//! layers, `batch_first`, initial states in and final states out, and dropout between
//! layers; the single-step cells [`RNNCell`], [`LSTMCell`], [`GRUCell`]; and
//! [`Embedding`]. Layer `k`'s parameters are `weight_ih_l{k}` `[G H, in]`,
//! `weight_hh_l{k}` `[G H, H]`, `bias_ih_l{k}` and `bias_hh_l{k}` `[G H]`, all initialised
//! uniform in `±1/sqrt(H)` as PyTorch does. See [`crate::ops::rnn`] for the kernels and
//! how backpropagation through time runs.

use std::collections::HashSet;
use std::sync::Mutex;

use super::{init, Module, Parameter, TrainFlag};
use crate::device::Device;
use crate::error::{arg_err, shape_err, Result};
use crate::ops::rnn::{gru_cell, lstm_cell, rnn_layer, LayerWeights, RnnMode};
use crate::tensor::Tensor;

/// `'static` parameter names made at run time (`weight_ih_l3`): each distinct name is
/// allocated once for the whole process.
fn intern(name: String) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(&s) = set.get(name.as_str()) {
        return s;
    }
    let s: &'static str = Box::leak(name.into_boxed_str());
    set.insert(s);
    s
}

/// Settings of a recurrent layer stack (PyTorch's constructor arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentOptions {
    /// Stacked layers.
    pub num_layers: usize,
    /// Whether the layers have biases.
    pub bias: bool,
    /// Inputs and outputs are `[B, T, features]` instead of `[T, B, features]`.
    pub batch_first: bool,
    /// Dropout on each layer's output except the last, in training mode.
    pub dropout: f64,
}

impl Default for RecurrentOptions {
    fn default() -> Self {
        RecurrentOptions {
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
        }
    }
}

/// One layer's parameters.
#[derive(Debug)]
struct LayerParams {
    w_ih: Parameter,
    w_hh: Parameter,
    b_ih: Option<Parameter>,
    b_hh: Option<Parameter>,
    names: [&'static str; 4],
}

/// Recurrent state: `h` `[L, B, H]` and, for an LSTM, `c` `[L, B, H]`.
#[derive(Clone, Debug)]
pub struct RecurrentState {
    /// Hidden state of every layer.
    pub h: Tensor,
    /// Cell state of every layer (LSTM only).
    pub c: Option<Tensor>,
}

impl RecurrentState {
    /// The same state cut from the graph: truncated backpropagation through time
    /// carries it into the next chunk without backpropagating into the previous one.
    pub fn detach(&self) -> RecurrentState {
        RecurrentState {
            h: self.h.detach(),
            c: self.c.as_ref().map(Tensor::detach),
        }
    }
}

/// The shared machinery of [`RNN`], [`LSTM`] and [`GRU`] (each dereferences to it): a
/// stack of layers run over whole sequences, with the state in and out.
///
/// ```
/// use wgrad::nn::{RecurrentOptions, LSTM};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let opts = RecurrentOptions { num_layers: 2, ..Default::default() };
/// let lstm = LSTM::with_options(&dev, 8, 16, opts)?;
/// let x = Tensor::randn_seeded(&[5, 3, 8], 0, &dev)?; // [T, B, I]
/// let (out, state) = lstm.forward_with_state(&x, None)?;
/// assert_eq!(out.shape(), [5, 3, 16]);
/// assert_eq!(state.h.shape(), [2, 3, 16]);
/// // The next chunk starts from the detached state: truncated BPTT.
/// let (next, _) = lstm.forward_with_state(&x, Some(&state.detach()))?;
/// next.sum()?.backward()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Recurrent {
    mode: RnnMode,
    input_size: usize,
    hidden_size: usize,
    options: RecurrentOptions,
    layers: Vec<LayerParams>,
    training: TrainFlag,
}

impl Recurrent {
    fn new(
        device: &Device,
        mode: RnnMode,
        input_size: usize,
        hidden_size: usize,
        options: RecurrentOptions,
    ) -> Result<Recurrent> {
        let op = "recurrent layer";
        if hidden_size == 0 || input_size == 0 || options.num_layers == 0 {
            return arg_err(
                op,
                "input_size, hidden_size and num_layers must be positive",
            );
        }
        if !(0.0..1.0).contains(&options.dropout) {
            return arg_err(
                op,
                format!("dropout must be in [0, 1), got {}", options.dropout),
            );
        }
        let g = mode.gates() * hidden_size;
        let bound = 1.0 / (hidden_size as f64).sqrt();
        let u = |shape: &[usize]| Parameter::new(init::uniform(shape, -bound, bound, device));
        let layers = (0..options.num_layers)
            .map(|k| {
                let inp = if k == 0 { input_size } else { hidden_size };
                LayerParams {
                    w_ih: u(&[g, inp]),
                    w_hh: u(&[g, hidden_size]),
                    b_ih: options.bias.then(|| u(&[g])),
                    b_hh: options.bias.then(|| u(&[g])),
                    names: [
                        intern(format!("weight_ih_l{k}")),
                        intern(format!("weight_hh_l{k}")),
                        intern(format!("bias_ih_l{k}")),
                        intern(format!("bias_hh_l{k}")),
                    ],
                }
            })
            .collect();
        Ok(Recurrent {
            mode,
            input_size,
            hidden_size,
            options,
            layers,
            training: TrainFlag::default(),
        })
    }

    /// Input features.
    pub fn input_size(&self) -> usize {
        self.input_size
    }
    /// Hidden units per layer.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    /// The settings it was built with.
    pub fn options(&self) -> RecurrentOptions {
        self.options
    }

    /// Zero initial state for a batch of `batch` sequences.
    pub fn zero_state(&self, batch: usize, device: &Device) -> Result<RecurrentState> {
        let shape = [self.options.num_layers, batch, self.hidden_size];
        Ok(RecurrentState {
            h: Tensor::zeros(&shape, device)?,
            c: if self.mode == RnnMode::Lstm {
                Some(Tensor::zeros(&shape, device)?)
            } else {
                None
            },
        })
    }

    /// Runs the stack over `x` (`[T, B, I]`, or `[B, T, I]` with `batch_first`) from
    /// `state` (zeros when `None`): every step's top-layer output and the final state
    /// of every layer, as `torch.nn.LSTM` returns `(output, (h_n, c_n))`.
    pub fn forward_with_state(
        &self,
        x: &Tensor,
        state: Option<&RecurrentState>,
    ) -> Result<(Tensor, RecurrentState)> {
        let op = "recurrent layer";
        if x.rank() != 3 || x.shape()[2] != self.input_size {
            return shape_err(
                op,
                format!(
                    "input {:?}: expected [{}, {}, {}]",
                    x.shape(),
                    if self.options.batch_first { "B" } else { "T" },
                    if self.options.batch_first { "T" } else { "B" },
                    self.input_size
                ),
            );
        }
        let seq = if self.options.batch_first {
            x.transpose(0, 1)?
        } else {
            x.clone()
        };
        let batch = seq.shape()[1];
        let zero;
        let state = match state {
            Some(s) => s,
            None => {
                zero = self.zero_state(batch, x.device())?;
                &zero
            }
        };
        let want = [self.options.num_layers, batch, self.hidden_size];
        if state.h.shape() != want || state.c.as_ref().is_some_and(|c| c.shape() != want) {
            return shape_err(
                op,
                format!(
                    "state h {:?}: expected {want:?} (layers, batch, hidden)",
                    state.h.shape()
                ),
            );
        }
        let mut input = seq;
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        for (k, layer) in self.layers.iter().enumerate() {
            let (w_ih, w_hh) = (layer.w_ih.tensor(), layer.w_hh.tensor());
            let (b_ih, b_hh) = (
                layer.b_ih.as_ref().map(Parameter::tensor),
                layer.b_hh.as_ref().map(Parameter::tensor),
            );
            let h0 = state.h.narrow(0, k, 1)?.squeeze(0)?;
            let c0 = match &state.c {
                Some(c) => Some(c.narrow(0, k, 1)?.squeeze(0)?),
                None => None,
            };
            let (out, h_n, c_n) = rnn_layer(
                self.mode,
                &input,
                LayerWeights {
                    w_ih: &w_ih,
                    w_hh: &w_hh,
                    b_ih: b_ih.as_ref(),
                    b_hh: b_hh.as_ref(),
                },
                &h0,
                c0.as_ref(),
            )?;
            hs.push(h_n);
            cs.extend(c_n);
            let last = k + 1 == self.layers.len();
            input = if !last && self.options.dropout > 0.0 {
                out.dropout(self.options.dropout, self.training.get())?
            } else {
                out
            };
        }
        let stack = |v: &[Tensor]| {
            let refs: Vec<&Tensor> = v.iter().collect();
            Tensor::stack(&refs, 0)
        };
        let out = if self.options.batch_first {
            input.transpose(0, 1)?
        } else {
            input
        };
        let c = if cs.is_empty() {
            None
        } else {
            Some(stack(&cs)?)
        };
        Ok((out, RecurrentState { h: stack(&hs)?, c }))
    }
}

impl Module for Recurrent {
    /// The top layer's output at every step, from a zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_state(x, None)?.0)
    }
    fn local_parameters(&self) -> Vec<(&'static str, &Parameter)> {
        let mut v = Vec::new();
        for l in &self.layers {
            v.push((l.names[0], &l.w_ih));
            v.push((l.names[1], &l.w_hh));
            if let (Some(bi), Some(bh)) = (&l.b_ih, &l.b_hh) {
                v.push((l.names[2], bi));
                v.push((l.names[3], bh));
            }
        }
        v
    }
    fn set_local_training(&self, training: bool) {
        self.training.set(training)
    }
}

macro_rules! recurrent_layer {
    ($name:ident, $doc:literal, $mode:expr) => {
        #[doc = $doc]
        #[derive(Debug)]
        pub struct $name(Recurrent);

        impl $name {
            /// One layer with PyTorch's defaults.
            pub fn new(device: &Device, input_size: usize, hidden_size: usize) -> Self {
                Self::with_options(device, input_size, hidden_size, RecurrentOptions::default())
                    .expect("the default options are valid")
            }
            /// A stack with other settings.
            pub fn with_options(
                device: &Device,
                input_size: usize,
                hidden_size: usize,
                options: RecurrentOptions,
            ) -> Result<Self> {
                Ok($name(Recurrent::new(
                    device,
                    $mode,
                    input_size,
                    hidden_size,
                    options,
                )?))
            }
        }

        impl std::ops::Deref for $name {
            type Target = Recurrent;
            fn deref(&self) -> &Recurrent {
                &self.0
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                self.0.forward(x)
            }
            fn local_parameters(&self) -> Vec<(&'static str, &Parameter)> {
                self.0.local_parameters()
            }
            fn set_local_training(&self, training: bool) {
                self.0.set_local_training(training)
            }
        }
    };
}

recurrent_layer!(
    LSTM,
    "Long short-term memory (`torch.nn.LSTM`); gates i, f, g, o.",
    RnnMode::Lstm
);
recurrent_layer!(
    GRU,
    "Gated recurrent unit (`torch.nn.GRU`); gates r, z, n.",
    RnnMode::Gru
);

/// Elman RNN (`torch.nn.RNN`), tanh by default.
#[derive(Debug)]
pub struct RNN(Recurrent);

impl RNN {
    /// One tanh layer with PyTorch's defaults.
    pub fn new(device: &Device, input_size: usize, hidden_size: usize) -> Self {
        Self::with_options(
            device,
            input_size,
            hidden_size,
            false,
            RecurrentOptions::default(),
        )
        .expect("the default options are valid")
    }
    /// A stack with other settings; `relu` picks ReLU over tanh (`nonlinearity='relu'`).
    pub fn with_options(
        device: &Device,
        input_size: usize,
        hidden_size: usize,
        relu: bool,
        options: RecurrentOptions,
    ) -> Result<Self> {
        let mode = if relu { RnnMode::Relu } else { RnnMode::Tanh };
        Ok(RNN(Recurrent::new(
            device,
            mode,
            input_size,
            hidden_size,
            options,
        )?))
    }
}

impl std::ops::Deref for RNN {
    type Target = Recurrent;
    fn deref(&self) -> &Recurrent {
        &self.0
    }
}

impl Module for RNN {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x)
    }
    fn local_parameters(&self) -> Vec<(&'static str, &Parameter)> {
        self.0.local_parameters()
    }
    fn set_local_training(&self, training: bool) {
        self.0.set_local_training(training)
    }
}

/// The parameters of a single-step cell: `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.
#[derive(Debug)]
struct CellParams {
    w_ih: Parameter,
    w_hh: Parameter,
    b_ih: Option<Parameter>,
    b_hh: Option<Parameter>,
}

impl CellParams {
    fn new(device: &Device, gates: usize, input: usize, hidden: usize, bias: bool) -> Self {
        let bound = 1.0 / (hidden.max(1) as f64).sqrt();
        let u = |shape: &[usize]| Parameter::new(init::uniform(shape, -bound, bound, device));
        CellParams {
            w_ih: u(&[gates * hidden, input]),
            w_hh: u(&[gates * hidden, hidden]),
            b_ih: bias.then(|| u(&[gates * hidden])),
            b_hh: bias.then(|| u(&[gates * hidden])),
        }
    }
    fn hidden(&self) -> usize {
        self.w_hh.tensor().shape()[1]
    }
    /// `(x W_ih^T + b_ih, h W_hh^T + b_hh)`.
    fn products(&self, x: &Tensor, h: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut gi = x.linear(&self.w_ih.tensor())?;
        let mut gh = h.linear(&self.w_hh.tensor())?;
        if let (Some(bi), Some(bh)) = (&self.b_ih, &self.b_hh) {
            gi = gi.add(&bi.tensor())?;
            gh = gh.add(&bh.tensor())?;
        }
        Ok((gi, gh))
    }
    fn named(&self) -> Vec<(&'static str, &Parameter)> {
        let mut v = vec![("weight_ih", &self.w_ih), ("weight_hh", &self.w_hh)];
        if let (Some(bi), Some(bh)) = (&self.b_ih, &self.b_hh) {
            v.push(("bias_ih", bi));
            v.push(("bias_hh", bh));
        }
        v
    }
    fn zeros(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::zeros(&[x.shape()[0], self.hidden()], x.device())
    }
    /// The starting hidden state (zeros when `None`) and both gate products.
    fn start(&self, x: &Tensor, h: Option<&Tensor>) -> Result<(Tensor, Tensor, Tensor)> {
        let h0 = match h {
            Some(h) => h.clone(),
            None => self.zeros(x)?,
        };
        let (gi, gh) = self.products(x, &h0)?;
        Ok((h0, gi, gh))
    }
}

/// One step of an Elman RNN (`torch.nn.RNNCell`):
/// `h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)` (or ReLU).
#[derive(Debug)]
pub struct RNNCell {
    p: CellParams,
    relu: bool,
}

impl RNNCell {
    /// A tanh cell with biases.
    pub fn new(device: &Device, input_size: usize, hidden_size: usize) -> Self {
        RNNCell {
            p: CellParams::new(device, 1, input_size, hidden_size, true),
            relu: false,
        }
    }
    /// The same cell with ReLU.
    pub fn relu(mut self) -> Self {
        self.relu = true;
        self
    }
    /// One step from `h` (`[B, H]`; zeros when `None`) on input `x` `[B, I]`.
    pub fn step(&self, x: &Tensor, h: Option<&Tensor>) -> Result<Tensor> {
        let (_, gi, gh) = self.p.start(x, h)?;
        let pre = gi.add(&gh)?;
        if self.relu {
            pre.relu()
        } else {
            pre.tanh()
        }
    }
}

impl Module for RNNCell {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.step(x, None)
    }
    fn local_parameters(&self) -> Vec<(&'static str, &Parameter)> {
        self.p.named()
    }
}

/// One LSTM step (`torch.nn.LSTMCell`), with the fused gate kernel.
#[derive(Debug)]
pub struct LSTMCell {
    p: CellParams,
}

impl LSTMCell {
    /// A cell with biases.
    pub fn new(device: &Device, input_size: usize, hidden_size: usize) -> Self {
        LSTMCell {
            p: CellParams::new(device, 4, input_size, hidden_size, true),
        }
    }
    /// One step from `(h, c)` (zeros when `None`) on input `x` `[B, I]`: the new `(h, c)`.
    pub fn step(&self, x: &Tensor, state: Option<(&Tensor, &Tensor)>) -> Result<(Tensor, Tensor)> {
        let (_, gi, gh) = self.p.start(x, state.map(|(h, _)| h))?;
        let c0 = match state {
            Some((_, c)) => c.clone(),
            None => self.p.zeros(x)?,
        };
        lstm_cell(&gi.add(&gh)?, &c0)
    }
}

impl Module for LSTMCell {
    /// The new hidden state from a zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.step(x, None)?.0)
    }
    fn local_parameters(&self) -> Vec<(&'static str, &Parameter)> {
        self.p.named()
    }
}

/// One GRU step (`torch.nn.GRUCell`), with the fused gate kernel.
#[derive(Debug)]
pub struct GRUCell {
    p: CellParams,
}

impl GRUCell {
    /// A cell with biases.
    pub fn new(device: &Device, input_size: usize, hidden_size: usize) -> Self {
        GRUCell {
            p: CellParams::new(device, 3, input_size, hidden_size, true),
        }
    }
    /// One step from `h` (zeros when `None`) on input `x` `[B, I]`.
    pub fn step(&self, x: &Tensor, h: Option<&Tensor>) -> Result<Tensor> {
        let (h0, gi, gh) = self.p.start(x, h)?;
        gru_cell(&gi, &gh, &h0)
    }
}

impl Module for GRUCell {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.step(x, None)
    }
    fn local_parameters(&self) -> Vec<(&'static str, &Parameter)> {
        self.p.named()
    }
}

/// A lookup table (`torch.nn.Embedding`): `u32` indices of any shape pick rows of
/// `weight` `[num_embeddings, dim]` (initialised N(0, 1) as in PyTorch). The backward
/// scatter-adds into the rows that were picked (`index_select`'s backward).
#[derive(Debug, Module)]
pub struct Embedding {
    /// `[num_embeddings, embedding_dim]`.
    pub weight: Parameter,
}

impl Embedding {
    /// A table of `num_embeddings` rows of `embedding_dim`.
    pub fn new(device: &Device, num_embeddings: usize, embedding_dim: usize) -> Self {
        Embedding {
            weight: Parameter::new(init::normal(
                &[num_embeddings, embedding_dim],
                0.0,
                1.0,
                device,
            )),
        }
    }
}

/// What the derived `Module` impl calls.
impl Embedding {
    /// Indices `[...]` give `[..., embedding_dim]`.
    fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        crate::ops::embedding::embedding(idx, &self.weight.tensor())
    }
}
