//! The `cnn` workload of the shared benchmark workloads: conv(1->16, 3x3, pad 1) - ReLU - maxpool 2 -
//! conv(16->32, 3x3, pad 1) - ReLU - maxpool 2 - linear(1568 -> 10), batch 64 of 28x28,
//! softmax cross-entropy, SGD with momentum 0.9: milliseconds per training step on the
//! CPU backend and on the GPU, the device synced inside every timed step. Compare with
//! `tools/torch_reference.py` run right after it on the same machine.

use wgrad_benches as common;

use criterion::{criterion_group, criterion_main, Criterion};
use wgrad::workloads::Workload;

fn bench(c: &mut Criterion) {
    common::bench_training(c, Workload::Cnn, 30);
}

criterion_group!(benches, bench);
criterion_main!(benches);
