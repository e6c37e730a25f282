//! The `rnn` workload of DESIGN section 7: an Elman RNN (tanh, hidden 128) over 32 steps
//! of one-hot characters from a vocabulary of 65, batch 32 (`batch_first`), a linear
//! read-out and cross-entropy on every step, SGD with momentum 0.9: milliseconds per
//! training step on the CPU backend and on the GPU, the device synced inside every
//! timed step. Compare with `../shared/bench/torch_reference.py` run in the same session.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use wgrad::nn::{RecurrentOptions, RNN};
use wgrad::prelude::*;

const VOCAB: usize = 65;
const STEPS: usize = 32;
const BATCH: usize = 32;
const HIDDEN: usize = 128;

fn workload(dev: &Device) -> common::TrainStep {
    let rnn = RNN::with_options(
        dev,
        VOCAB,
        HIDDEN,
        false,
        RecurrentOptions {
            batch_first: true,
            ..Default::default()
        },
    )
    .unwrap();
    let model = Sequential::new()
        .add(rnn)
        .add(Linear::new(dev, HIDDEN, VOCAB))
        .add(Flatten::dims(0, 1));
    // One-hot inputs [B, T, V] and a target character per step.
    let ids: Vec<usize> = (0..BATCH * STEPS).map(|i| (i * 31 + 7) % VOCAB).collect();
    let mut onehot = vec![0.0f32; BATCH * STEPS * VOCAB];
    for (k, &c) in ids.iter().enumerate() {
        onehot[k * VOCAB + c] = 1.0;
    }
    let x = Tensor::from_vec(onehot, &[BATCH, STEPS, VOCAB], dev).unwrap();
    let labels: Vec<u32> = ids.iter().map(|&c| ((c * 7 + 3) % VOCAB) as u32).collect();
    let y = Tensor::from_vec(labels, &[BATCH * STEPS], dev).unwrap();
    common::TrainStep::with_data(dev, model, x, y)
}

fn bench(c: &mut Criterion) {
    common::bench_training(
        c,
        "rnn",
        "DESIGN workload, Elman hidden 128, 32 steps, vocab 65, batch 32",
        workload,
        30,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
