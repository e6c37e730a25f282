//! The `cnn` workload of DESIGN section 7: conv(1->16, 3x3, pad 1) - ReLU - maxpool 2 -
//! conv(16->32, 3x3, pad 1) - ReLU - maxpool 2 - linear(1568 -> 10), batch 64 of 28x28,
//! softmax cross-entropy, SGD with momentum 0.9: milliseconds per training step on the
//! CPU backend and on the GPU, the device synced inside every timed step. Compare with
//! `../shared/bench/torch_reference.py` run in the same session.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::prelude::*;

struct Workload {
    model: Sequential,
    opt: Sgd,
    x: Tensor,
    y: Tensor,
    dev: Device,
}

impl Workload {
    fn new(dev: &Device) -> Workload {
        dev.manual_seed(0);
        let model = Sequential::new()
            .add(Conv2d::new(dev, 1, 16, 3).padding(1))
            .add(ReLU)
            .add(MaxPool2d::new(2))
            .add(Conv2d::new(dev, 16, 32, 3).padding(1))
            .add(ReLU)
            .add(MaxPool2d::new(2))
            .add(Flatten::default())
            .add(Linear::new(dev, 32 * 7 * 7, 10));
        let opt = Sgd::new(model.parameters(), 0.01).momentum(0.9);
        let x = Tensor::randn_seeded(&[64, 1, 28, 28], 1, dev).unwrap();
        let labels: Vec<u32> = (0..64).map(|i| (i * 7 % 10) as u32).collect();
        let y = Tensor::from_vec(labels, &[64], dev).unwrap();
        Workload {
            model,
            opt,
            x,
            y,
            dev: dev.clone(),
        }
    }

    fn step(&mut self) {
        self.opt.zero_grad();
        let loss = self
            .model
            .forward(&self.x)
            .unwrap()
            .cross_entropy(&self.y)
            .unwrap();
        loss.backward().unwrap();
        self.opt.step().unwrap();
        self.dev.sync().unwrap();
    }
}

fn median_ms(w: &mut Workload, steps: usize) -> f64 {
    for _ in 0..3 {
        w.step();
    }
    let mut t: Vec<f64> = (0..steps)
        .map(|_| {
            let s = Instant::now();
            w.step();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn bench(c: &mut Criterion) {
    let gpu = Device::gpu().unwrap_or_else(|e| {
        panic!("the GPU side of this benchmark needs an adapter ({e}); install mesa-vulkan-drivers for a software one")
    });
    let quick = std::env::var("WGRAD_BENCH_QUICK").is_ok();
    let mut summary = Vec::new();
    for dev in [Device::cpu(), gpu] {
        let mut w = Workload::new(&dev);
        let steps = if dev.is_gpu() || quick { 5 } else { 30 };
        summary.push((dev.name(), median_ms(&mut w, steps)));
        let mut group = c.benchmark_group("cnn_train_step");
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(if dev.is_gpu() { 20 } else { 5 }));
        let id = if dev.is_gpu() { "gpu" } else { "cpu" };
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    w.step();
                }
                start.elapsed()
            })
        });
        group.finish();
    }
    for (name, ms) in &summary {
        println!("cnn (DESIGN workload, batch 64, 28x28): {ms:.2} ms/step on {name} (median after 3 warm-ups)");
    }
    if summary.len() == 2 {
        println!("GPU/CPU time ratio: {:.2}", summary[1].1 / summary[0].1);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
