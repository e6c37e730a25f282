//! A character-level language model on the bundled Shakespeare corpus (the lecture's
//! recurrent networks):
//!
//! ```text
//! chars -> Embedding(V, 64) -> LSTM(64, 256) -> Linear(256, V)   (or --kind gru / rnn)
//! ```
//!
//! trained with Adam on the next character by truncated backpropagation through time:
//! the corpus is laid out as `--batch` parallel streams read in chunks of `--seq-len`
//! characters, and the recurrent state is carried, detached, from chunk to chunk. Every
//! tenth block of 10,000 characters is held out for validation; after each epoch the validation
//! loss is reported in bits per character. Samples (with `--temperature`, seeded by
//! `--seed`) are printed before and after training; the model is saved to
//! `out/char_rnn.safetensors` with PyTorch-style names (`rnn.weight_ih_l0`, ...).
//!
//! ```text
//! cargo run --release --example char_rnn -- --device cpu
//! cargo run --release --example char_rnn -- --kind gru --epochs 2 --minutes 5
//! ```

mod common;

use std::time::Instant;

use clap::{Parser, ValueEnum};
use rand::SeedableRng;
use wgrad::data::text::{self, CharVocab, SequenceBatches};
use wgrad::nn::{Embedding, Recurrent, RecurrentOptions, RecurrentState, GRU, LSTM, RNN};
use wgrad::optim::clip_grad_norm;
use wgrad::prelude::*;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Lstm,
    Gru,
    Rnn,
}

#[derive(Parser)]
#[command(about = "A character-level recurrent language model on Shakespeare")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// The recurrent layer.
    #[arg(long, value_enum, default_value_t = Kind::Lstm)]
    kind: Kind,
    /// Passes over the training text.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Stop training after this many minutes (checked after every chunk).
    #[arg(long, default_value_t = 9.5)]
    minutes: f64,
    /// Hidden units per layer.
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Stacked recurrent layers.
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Embedding width.
    #[arg(long, default_value_t = 64)]
    embed: usize,
    /// Parallel streams per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Characters per truncated-BPTT chunk.
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Sampling temperature (lower is more conservative).
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Characters per sample.
    #[arg(long, default_value_t = 400)]
    sample_len: usize,
}

/// The recurrent core, whichever kind.
enum Core {
    Lstm(LSTM),
    Gru(GRU),
    Rnn(RNN),
}

impl Core {
    fn rec(&self) -> &Recurrent {
        match self {
            Core::Lstm(m) => m,
            Core::Gru(m) => m,
            Core::Rnn(m) => m,
        }
    }
    fn module(&self) -> &dyn Module {
        match self {
            Core::Lstm(m) => m,
            Core::Gru(m) => m,
            Core::Rnn(m) => m,
        }
    }
}

/// By hand: `#[derive(Module)]` takes structs, and `Core` is an enum. Its parameters
/// are the layer's own (`weight_ih_l0`, no variant name in between).
impl Module for Core {
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        self.module().forward(x)
    }
    fn local_parameters(&self) -> Vec<(&'static str, &wgrad::nn::Parameter)> {
        self.module().local_parameters()
    }
    fn set_local_training(&self, training: bool) {
        self.module().set_local_training(training)
    }
}

/// Children `embedding`, `rnn` and `head`; `run` returns the state too, so the derived
/// `Module::forward` calls `logits` (`#[module(forward = ...)]`).
#[derive(Module)]
#[module(forward = "logits")]
struct CharModel {
    embedding: Embedding,
    rnn: Core,
    head: Linear,
}

impl CharModel {
    /// Logits `[T B, V]` for inputs `[T, B]`, and the state after the last step.
    fn run(
        &self,
        x: &Tensor,
        state: Option<&RecurrentState>,
    ) -> wgrad::Result<(Tensor, RecurrentState)> {
        let (t, b) = (x.shape()[0], x.shape()[1]);
        let e = self.embedding.forward(x)?;
        let (out, state) = self.rnn.rec().forward_with_state(&e, state)?;
        let h = self.rnn.rec().hidden_size();
        Ok((self.head.forward(&out.reshape(&[t * b, h])?)?, state))
    }

    /// `len` characters continuing `prime`, drawn with `temperature` from a seeded generator.
    fn sample(
        &self,
        vocab: &CharVocab,
        prime: &str,
        len: usize,
        temperature: f64,
        seed: u64,
        dev: &Device,
    ) -> anyhow::Result<String> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        self.rnn.eval();
        let ids = vocab.encode(prime)?;
        let mut out = prime.to_string();
        no_grad(|| -> anyhow::Result<()> {
            let x = Tensor::from_vec(ids.clone(), &[ids.len(), 1], dev)?;
            let (logits, mut state) = self.run(&x, None)?;
            let mut last = logits
                .narrow(0, ids.len() - 1, 1)?
                .reshape(&[vocab.len()])?;
            for _ in 0..len {
                let next = text::sample_logits(&last, temperature, &mut rng)?;
                out.push_str(&vocab.decode(&[next])?);
                let x = Tensor::from_vec(vec![next], &[1, 1], dev)?;
                let (logits, s) = self.run(&x, Some(&state))?;
                state = s;
                last = logits.reshape(&[vocab.len()])?;
            }
            Ok(())
        })?;
        self.rnn.train();
        Ok(out)
    }
}

impl CharModel {
    /// The logits from a zero state.
    fn logits(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        Ok(self.run(x, None)?.0)
    }
}

/// Mean validation loss in bits per character, the state carried across chunks.
fn bits_per_char(model: &CharModel, val: &SequenceBatches, dev: &Device) -> anyhow::Result<f64> {
    model.rnn.eval();
    let mut state: Option<RecurrentState> = None;
    let (mut total, mut count) = (0.0, 0usize);
    no_grad(|| -> anyhow::Result<()> {
        for k in 0..val.len() {
            let (x, y) = val.tensors(k, dev)?;
            let n = y.numel();
            let (logits, s) = model.run(&x, state.as_ref())?;
            state = Some(s);
            total += logits.cross_entropy(&y.reshape(&[n])?)?.item()? * n as f64;
            count += n;
        }
        Ok(())
    })?;
    model.rnn.train();
    Ok(total / count as f64 / std::f64::consts::LN_2)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;
    let seed = args.common.seed;

    let corpus = text::load_shakespeare()?;
    let vocab = CharVocab::from_text(&corpus);
    let tokens = vocab.encode(&corpus)?;
    // Every tenth block of 10,000 characters is held out (see `block_split`).
    let (train_ids, val_ids) = text::block_split(&tokens, 10_000, 10)?;
    let train = SequenceBatches::new(&train_ids, args.batch, args.seq_len)?;
    let val = SequenceBatches::new(&val_ids, 16, 256)?;
    println!(
        "corpus: {} characters, vocabulary {}, {} training / {} validation; {} chunks of {}x{} per epoch",
        tokens.len(),
        vocab.len(),
        train_ids.len(),
        val_ids.len(),
        train.len(),
        args.seq_len,
        args.batch
    );

    let opts = RecurrentOptions {
        num_layers: args.layers,
        dropout: if args.layers > 1 { 0.2 } else { 0.0 },
        ..Default::default()
    };
    let (e, h) = (args.embed, args.hidden);
    let rnn = match args.kind {
        Kind::Lstm => Core::Lstm(LSTM::with_options(&dev, e, h, opts)?),
        Kind::Gru => Core::Gru(GRU::with_options(&dev, e, h, opts)?),
        Kind::Rnn => Core::Rnn(RNN::with_options(&dev, e, h, false, opts)?),
    };
    let model = CharModel {
        embedding: Embedding::new(&dev, vocab.len(), e),
        rnn,
        head: Linear::new(&dev, h, vocab.len()),
    };
    println!(
        "model ({:?}): {} parameters",
        args.kind,
        model.num_parameters()
    );
    let prime = "ROMEO:\n";
    println!(
        "\n--- sample before training ---\n{}\n",
        model.sample(&vocab, prime, 200, args.temperature, seed, &dev)?
    );

    let params = model.parameters();
    let mut opt = Adam::new(params.clone(), args.lr);
    let budget = args.minutes * 60.0;
    let start = Instant::now();
    let bar = common::progress((args.epochs * train.len()) as u64, "training");
    let mut history = Vec::new();
    let mut stopped = false;
    let mut steps = 0usize;
    for epoch in 1..=args.epochs {
        let mut state: Option<RecurrentState> = None;
        let epoch_start = Instant::now();
        for k in 0..train.len() {
            let (x, y) = train.tensors(k, &dev)?;
            let (logits, s) = model.run(&x, state.as_ref())?;
            let loss = logits.cross_entropy(&y.reshape(&[y.numel()])?)?;
            opt.zero_grad();
            loss.backward()?;
            clip_grad_norm(&params, 5.0)?;
            opt.step()?;
            // Truncated BPTT: carry the state, not its history.
            state = Some(s.detach());
            steps += 1;
            bar.inc(1);
            if k % 50 == 0 {
                bar.set_message(format!(
                    "epoch {epoch}: loss {:.3} bits/char",
                    loss.item()? / std::f64::consts::LN_2
                ));
            }
            if start.elapsed().as_secs_f64() > budget {
                stopped = true;
                break;
            }
        }
        let bpc = bits_per_char(&model, &val, &dev)?;
        let secs = epoch_start.elapsed().as_secs_f64();
        let line = format!(
            "epoch {epoch}: validation {bpc:.3} bits/char ({:.3} nats), {secs:.0} s{}",
            bpc * std::f64::consts::LN_2,
            if stopped {
                " (time budget reached mid-epoch)"
            } else {
                ""
            }
        );
        bar.suspend(|| println!("{line}"));
        history.push(bpc);
        if stopped {
            break;
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "trained {steps} steps in {secs:.0} s ({:.1} ms per step) on {}: validation {:.3} bits per character",
        1e3 * secs / steps.max(1) as f64,
        dev.name(),
        history.last().copied().unwrap_or(f64::NAN)
    );
    let path = common::out_dir()?.join("char_rnn.safetensors");
    wgrad::io::save(&model, &path)?;
    println!("saved the model to {}", path.display());
    println!(
        "\n--- sample after training (temperature {}) ---\n{}",
        args.temperature,
        model.sample(&vocab, prime, args.sample_len, args.temperature, seed, &dev)?
    );
    Ok(())
}
