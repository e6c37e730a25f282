//! The `rnn` workload of the shared benchmark workloads: an Elman RNN (tanh, hidden 128) over 32 steps
//! of one-hot characters from a vocabulary of 65, batch 32 (`batch_first`), a linear
//! read-out and cross-entropy on every step, SGD with momentum 0.9: milliseconds per
//! training step on the CPU backend and on the GPU, the device synced inside every
//! timed step. Compare with `tools/torch_reference.py` run right after it on the same machine.

use wgrad_benches as common;

use criterion::{criterion_group, criterion_main, Criterion};
use wgrad::workloads::Workload;

fn bench(c: &mut Criterion) {
    common::bench_training(c, Workload::Rnn, 30);
}

criterion_group!(benches, bench);
criterion_main!(benches);
