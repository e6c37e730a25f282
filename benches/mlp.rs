//! The `mlp` workload of the shared benchmark workloads: a 784-256-128-10 ReLU MLP, batch 128,
//! softmax cross-entropy, SGD with momentum 0.9; milliseconds per training step on the
//! CPU backend and on the GPU, the device synced inside every timed step. Compare with
//! `tools/torch_reference.py` run right after it on the same machine.

use wgrad_benches as common;

use criterion::{criterion_group, criterion_main, Criterion};
use wgrad::workloads::Workload;

fn bench(c: &mut Criterion) {
    common::bench_training(c, Workload::Mlp, 200);
}

criterion_group!(benches, bench);
criterion_main!(benches);
