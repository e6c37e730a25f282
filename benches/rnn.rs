//! The `rnn` workload of DESIGN section 7: an Elman RNN (tanh, hidden 128) over 32 steps
//! of one-hot characters from a vocabulary of 65, batch 32 (`batch_first`), a linear
//! read-out and cross-entropy on every step, SGD with momentum 0.9: milliseconds per
//! training step on the CPU backend and on the GPU, the device synced inside every
//! timed step. Compare with `../shared/bench/torch_reference.py` run in the same session.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use wgrad::workloads::Workload;

fn bench(c: &mut Criterion) {
    common::bench_training(c, Workload::Rnn, 30);
}

criterion_group!(benches, bench);
criterion_main!(benches);
