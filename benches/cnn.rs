//! The `cnn` workload of DESIGN section 7: conv(1->16, 3x3, pad 1) - ReLU - maxpool 2 -
//! conv(16->32, 3x3, pad 1) - ReLU - maxpool 2 - linear(1568 -> 10), batch 64 of 28x28,
//! softmax cross-entropy, SGD with momentum 0.9: milliseconds per training step on the
//! CPU backend and on the GPU, the device synced inside every timed step. Compare with
//! `../shared/bench/torch_reference.py` run in the same session.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use wgrad::prelude::*;

fn workload(dev: &Device) -> common::TrainStep {
    let model = Sequential::new()
        .add(Conv2d::new(dev, 1, 16, 3).padding(1))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(dev, 16, 32, 3).padding(1))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Flatten::default())
        .add(Linear::new(dev, 32 * 7 * 7, 10));
    common::TrainStep::new(dev, model, &[64, 1, 28, 28])
}

fn bench(c: &mut Criterion) {
    common::bench_training(c, "cnn", "DESIGN workload, batch 64, 28x28", workload, 30);
}

criterion_group!(benches, bench);
criterion_main!(benches);
