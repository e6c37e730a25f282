//! The `mlp` workload of DESIGN section 7: a 784-256-128-10 ReLU MLP, batch 128,
//! softmax cross-entropy, SGD with momentum 0.9; milliseconds per training step on the
//! CPU backend and on the GPU, the device synced inside every timed step. Compare with
//! `../shared/bench/torch_reference.py` run in the same session.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use wgrad::workloads::Workload;

fn bench(c: &mut Criterion) {
    common::bench_training(c, Workload::Mlp, 200);
}

criterion_group!(benches, bench);
criterion_main!(benches);
