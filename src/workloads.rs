//! The four shared benchmark workloads: one training step each of an MLP, a CNN, an RNN
//! and a small transformer, the same ones `tools/torch_reference.py` runs in PyTorch for
//! the reference numbers. The benchmarks, `examples/gpu_vs_cpu` and the dispatch tests all build them
//! from here, so they time and count exactly the same work.
//!
//! - `mlp`: 784-256-128-10 ReLU MLP, batch 128, softmax cross-entropy, SGD momentum 0.9;
//! - `cnn`: conv(1->16, 3x3, pad 1)-ReLU-maxpool 2 - conv(16->32, 3x3, pad 1)-ReLU-maxpool
//!   2 - linear(1568 -> 10), batch 64 of 28x28;
//! - `rnn`: Elman RNN (tanh), hidden 128, 32 steps of one-hot characters from a vocabulary
//!   of 65, batch 32 (`batch_first`), a linear read-out and cross-entropy at every step;
//! - `transformer`: a decoder-only character model ([`CharTransformer`]): vocabulary 76,
//!   context 64, batch 32, token and learned position embeddings (`d_model` 128), 2
//!   pre-norm encoder layers (4 heads, feed-forward 512, GELU, dropout 0, causal), a final
//!   LayerNorm, a linear head and cross-entropy at every position, AdamW with lr 3e-4.
//!
//! ```
//! use wgrad::prelude::*;
//! use wgrad::workloads::Workload;
//! # fn main() -> wgrad::Result<()> {
//! let dev = Device::cpu();
//! let mut step = Workload::Mlp.build(&dev)?;
//! step.step()?;          // forward, backward, update, synced
//! # Ok(()) }
//! ```

use std::time::Instant;

use crate::device::Device;
use crate::error::Result;
use crate::nn::{
    Conv2d, Embedding, EncoderMasks, Flatten, LayerNorm, Linear, MaxPool2d, Module, ReLU,
    RecurrentOptions, Sequential, TransformerEncoderLayer, TransformerLayerOptions, RNN,
};
use crate::ops::matmul::Act;
use crate::optim::{AdamW, Optimizer, Sgd};
use crate::tensor::{DType, Tensor};

/// One of the shared workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// 784-256-128-10 ReLU MLP, batch 128.
    Mlp,
    /// Two 3x3 convolutions with max pooling and a linear read-out, batch 64 of 28x28.
    Cnn,
    /// Elman RNN, hidden 128, 32 steps of one-hot vocabulary 65, batch 32.
    Rnn,
    /// A decoder-only character transformer ([`CharTransformerConfig::workload`]), batch 32 of
    /// 64 tokens, AdamW.
    Transformer,
}

/// The recurrent workload's sizes.
const VOCAB: usize = 65;
const STEPS: usize = 32;
const BATCH: usize = 32;
const HIDDEN: usize = 128;

impl Workload {
    /// All four: MLP, CNN, RNN, transformer.
    pub const ALL: [Workload; 4] = [
        Workload::Mlp,
        Workload::Cnn,
        Workload::Rnn,
        Workload::Transformer,
    ];

    /// `mlp`, `cnn`, `rnn` or `transformer`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Mlp => "mlp",
            Workload::Cnn => "cnn",
            Workload::Rnn => "rnn",
            Workload::Transformer => "transformer",
        }
    }

    /// A one-line description.
    pub fn description(self) -> &'static str {
        match self {
            Workload::Mlp => "784-256-128-10 ReLU MLP, batch 128, SGD momentum 0.9",
            Workload::Cnn => {
                "conv 1->16, pool, conv 16->32, pool, linear 1568->10; batch 64, 28x28"
            }
            Workload::Rnn => "Elman RNN hidden 128, 32 steps, one-hot vocab 65, batch 32",
            Workload::Transformer => {
                "2-layer pre-norm transformer, d 128, 4 heads, context 64, vocab 76, batch 32, AdamW"
            }
        }
    }

    /// The model, a fixed batch and the optimizer on `device`. Initialisation draws from
    /// the device's generator (seed it with [`Device::manual_seed`] for a repeatable run).
    pub fn build(self, device: &Device) -> Result<TrainStep> {
        match self {
            Workload::Mlp => {
                let model = Sequential::new()
                    .add(Linear::new(device, 784, 256))
                    .add(ReLU)
                    .add(Linear::new(device, 256, 128))
                    .add(ReLU)
                    .add(Linear::new(device, 128, 10));
                TrainStep::random(device, model, &[128, 784])
            }
            Workload::Cnn => {
                let model = Sequential::new()
                    .add(Conv2d::new(device, 1, 16, 3).padding(1))
                    .add(ReLU)
                    .add(MaxPool2d::new(2))
                    .add(Conv2d::new(device, 16, 32, 3).padding(1))
                    .add(ReLU)
                    .add(MaxPool2d::new(2))
                    .add(Flatten::default())
                    .add(Linear::new(device, 32 * 7 * 7, 10));
                TrainStep::random(device, model, &[64, 1, 28, 28])
            }
            Workload::Rnn => {
                let options = RecurrentOptions {
                    batch_first: true,
                    ..Default::default()
                };
                let rnn = RNN::with_options(device, VOCAB, HIDDEN, false, options)?;
                let model = Sequential::new()
                    .add(rnn)
                    .add(Linear::new(device, HIDDEN, VOCAB))
                    .add(Flatten::dims(0, 1));
                // One-hot inputs [B, T, V] and a target character per step.
                let ids: Vec<usize> = (0..BATCH * STEPS).map(|i| (i * 31 + 7) % VOCAB).collect();
                let mut onehot = vec![0.0f32; BATCH * STEPS * VOCAB];
                for (k, &c) in ids.iter().enumerate() {
                    onehot[k * VOCAB + c] = 1.0;
                }
                let x = Tensor::from_vec(onehot, &[BATCH, STEPS, VOCAB], device)?;
                let labels: Vec<u32> = ids.iter().map(|&c| ((c * 7 + 3) % VOCAB) as u32).collect();
                let y = Tensor::from_vec(labels, &[BATCH * STEPS], device)?;
                Ok(TrainStep::new(device, model, x, y))
            }
            Workload::Transformer => {
                let config = CharTransformerConfig::workload();
                let (batch, ctx, vocab) = (32, config.context, config.vocab);
                let model = Sequential::new().add(CharTransformer::new(device, config)?);
                let ids: Vec<u32> = (0..batch * ctx)
                    .map(|i| ((i * 31 + 7) % vocab) as u32)
                    .collect();
                let labels: Vec<u32> = ids.iter().map(|&c| (c * 7 + 3) % vocab as u32).collect();
                let x = Tensor::from_vec(ids, &[batch, ctx], device)?;
                let y = Tensor::from_vec(labels, &[batch * ctx], device)?;
                let opt = AdamW::new(model.parameters(), 3e-4);
                Ok(TrainStep::with_optimizer(
                    device,
                    model,
                    Box::new(opt),
                    x,
                    y,
                ))
            }
        }
    }
}

/// The sizes of a [`CharTransformer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CharTransformerConfig {
    /// Characters in the vocabulary.
    pub vocab: usize,
    /// The longest sequence (the learned position table's rows).
    pub context: usize,
    /// The model width.
    pub d_model: usize,
    /// Attention heads per layer.
    pub heads: usize,
    /// Encoder layers.
    pub layers: usize,
    /// The feed-forward width.
    pub feedforward: usize,
    /// Dropout in the layers.
    pub dropout: f64,
}

impl CharTransformerConfig {
    /// The `transformer` workload's sizes (PyTorch reference: `CharTransformer()` in
    /// `tools/torch_reference.py`): vocabulary 76, context 64, width 128, 4 heads, 2
    /// layers, feed-forward 512, no dropout.
    pub fn workload() -> Self {
        CharTransformerConfig {
            vocab: 76,
            context: 64,
            d_model: 128,
            heads: 4,
            layers: 2,
            feedforward: 512,
            dropout: 0.0,
        }
    }
}

/// A decoder-only character model: token and learned position embeddings, pre-norm
/// causal [`TransformerEncoderLayer`]s with GELU, a final [`LayerNorm`] and a linear head.
/// Its parameter names are those of the PyTorch reference model (`tok`, `pos`,
/// `layers.0.self_attn.in_proj_weight`, ..., `norm`, `head`).
///
/// Its input is token ids `[N, T]` (`U32`, `T <= context`); its output the logits of
/// every position, `[N * T, vocab]`, ready for `cross_entropy`.
#[derive(Debug, Module)]
pub struct CharTransformer {
    /// Token embeddings `[vocab, d_model]`.
    pub tok: Embedding,
    /// Position embeddings `[context, d_model]`.
    pub pos: Embedding,
    /// The layers.
    pub layers: Vec<TransformerEncoderLayer>,
    /// The final norm.
    pub norm: LayerNorm,
    /// The read-out `d_model -> vocab`.
    pub head: Linear,
    #[module(skip)]
    config: CharTransformerConfig,
}

impl CharTransformer {
    /// A model of the given sizes, initialised from the device's generator.
    pub fn new(device: &Device, config: CharTransformerConfig) -> Result<Self> {
        let c = config;
        let options = TransformerLayerOptions {
            dim_feedforward: c.feedforward,
            dropout: c.dropout,
            activation: Act::Gelu,
            batch_first: true,
            norm_first: true,
            ..Default::default()
        };
        let layers = (0..c.layers)
            .map(|_| TransformerEncoderLayer::with_options(device, c.d_model, c.heads, options))
            .collect::<Result<Vec<_>>>()?;
        Ok(CharTransformer {
            tok: Embedding::new(device, c.vocab, c.d_model),
            pos: Embedding::new(device, c.context, c.d_model),
            layers,
            norm: LayerNorm::new(device, &[c.d_model])?,
            head: Linear::new(device, c.d_model, c.vocab),
            config,
        })
    }

    /// The sizes it was built with.
    pub fn config(&self) -> CharTransformerConfig {
        self.config
    }

    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let op = "CharTransformer";
        let (n, t) = match ids.shape() {
            &[n, t] => (n, t),
            other => {
                return crate::error::shape_err(
                    op,
                    format!("expected token ids [N, T], got {other:?}"),
                )
            }
        };
        if t > self.config.context {
            return crate::error::shape_err(
                op,
                format!(
                    "a sequence of {t} tokens is longer than the context of {}",
                    self.config.context
                ),
            );
        }
        // The first `t` rows of the position table: the embedding of 0..t.
        let positions = self.pos.weight.tensor().narrow(0, 0, t)?;
        let mut h = self.tok.forward(ids)?.add(&positions)?;
        let masks = EncoderMasks {
            is_causal: true,
            ..Default::default()
        };
        for layer in &self.layers {
            h = layer.forward_with(&h, masks)?;
        }
        let logits = self.head.forward(&self.norm.forward(&h)?)?;
        logits.reshape(&[n * t, self.config.vocab])
    }
}

/// A classifier, one fixed batch and its optimizer (SGD with momentum 0.9 unless built
/// with another): one training step at a time.
pub struct TrainStep {
    model: Sequential,
    opt: Box<dyn Optimizer>,
    x: Tensor,
    y: Tensor,
    device: Device,
    /// Mixed precision: the forward's autocast dtype, and the loss scaler (F16).
    amp: Option<(DType, crate::amp::GradScaler)>,
}

impl TrainStep {
    /// `model` trained on the given inputs and class labels.
    pub fn new(device: &Device, model: Sequential, x: Tensor, y: Tensor) -> TrainStep {
        let opt = Sgd::new(model.parameters(), 0.01).momentum(0.9);
        TrainStep::with_optimizer(device, model, Box::new(opt), x, y)
    }

    /// `model` trained by `opt` (which holds `model`'s parameters).
    pub fn with_optimizer(
        device: &Device,
        model: Sequential,
        opt: Box<dyn Optimizer>,
        x: Tensor,
        y: Tensor,
    ) -> TrainStep {
        TrainStep {
            model,
            opt,
            x,
            y,
            device: device.clone(),
            amp: None,
        }
    }

    /// `model` trained on seeded normal inputs of `input_shape` and 10 classes.
    pub fn random(device: &Device, model: Sequential, input_shape: &[usize]) -> Result<TrainStep> {
        let x = Tensor::randn_seeded(input_shape, 1, device)?;
        let labels: Vec<u32> = (0..input_shape[0]).map(|i| (i * 7 % 10) as u32).collect();
        let y = Tensor::from_vec(labels, &[input_shape[0]], device)?;
        Ok(TrainStep::new(device, model, x, y))
    }

    /// The step in mixed precision: the forward under [`crate::amp::autocast`] in
    /// `dtype` (`F16` or `BF16`), with a [`crate::amp::GradScaler`] when `scaler` (the
    /// parameters stay f32). `F32` turns it off.
    pub fn autocast(mut self, dtype: DType, scaler: bool) -> Result<TrainStep> {
        if dtype == DType::F32 {
            self.amp = None;
            return Ok(self);
        }
        // Checks the dtype now rather than at the first step.
        crate::amp::AutocastGuard::new(&self.device, dtype)?;
        let scaler = crate::amp::GradScaler::new().enabled(scaler);
        self.amp = Some((dtype, scaler));
        Ok(self)
    }

    /// Forward, cross-entropy, backward and update, recorded but not waited for (a
    /// mixed-precision step's skip test reads one value back).
    pub fn record(&mut self) -> Result<Tensor> {
        self.opt.zero_grad();
        let (model, x, y) = (&self.model, &self.x, &self.y);
        let forward = || model.forward(x)?.cross_entropy(y);
        let Some((dtype, scaler)) = &mut self.amp else {
            let loss = forward()?;
            loss.backward()?;
            self.opt.step()?;
            return Ok(loss);
        };
        let loss = crate::amp::autocast(&self.device, *dtype, forward)??;
        scaler.scale(&loss)?.backward()?;
        scaler.step(self.opt.as_mut())?;
        scaler.update()?;
        Ok(loss)
    }

    /// One step, and a sync so the work is finished.
    pub fn step(&mut self) -> Result<()> {
        self.record()?;
        self.device.sync()
    }

    /// Median milliseconds of `steps` timed steps after `warm` untimed ones, the device
    /// synced inside every timed step.
    pub fn median_ms(&mut self, warm: usize, steps: usize) -> Result<f64> {
        for _ in 0..warm {
            self.step()?;
        }
        let mut times = Vec::with_capacity(steps);
        for _ in 0..steps {
            let start = Instant::now();
            self.step()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok(median(&mut times))
    }

    /// The model, its inputs and its labels (to train them another way, for instance
    /// data-parallel).
    pub fn into_parts(self) -> (Sequential, Tensor, Tensor) {
        (self.model, self.x, self.y)
    }

    /// The model being trained.
    pub fn model(&self) -> &Sequential {
        &self.model
    }

    /// The device it trains on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// The median of some numbers (the mean of the middle two for an even count; NaN for
/// none).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let m = values.len() / 2;
    if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    }
}
