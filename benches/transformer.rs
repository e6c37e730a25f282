//! The `transformer` workload of the shared benchmark workloads: a decoder-only character
//! model (vocabulary 76, context 64, batch 32, token and learned position embeddings of
//! width 128, 2 pre-norm causal layers with 4 heads, feed-forward 512 with GELU, a final
//! LayerNorm, a linear head and cross-entropy on every position, AdamW lr 3e-4):
//! milliseconds per training step on the CPU backend and on the GPU, the device synced
//! inside every timed step. Compare with `tools/torch_reference.py` run right after it on
//! the same machine.

use wgrad_benches as common;

use criterion::{criterion_group, criterion_main, Criterion};
use wgrad::workloads::Workload;

fn bench(c: &mut Criterion) {
    common::bench_training(c, Workload::Transformer, 20);
}

criterion_group!(benches, bench);
criterion_main!(benches);
