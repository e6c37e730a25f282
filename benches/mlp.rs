//! The `mlp` workload of DESIGN section 7: a 784-256-128-10 ReLU MLP, batch 128,
//! softmax cross-entropy, SGD with momentum 0.9; milliseconds per training step on the
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
            .add(Linear::new(dev, 784, 256))
            .add(ReLU)
            .add(Linear::new(dev, 256, 128))
            .add(ReLU)
            .add(Linear::new(dev, 128, 10));
        let opt = Sgd::new(model.parameters(), 0.01).momentum(0.9);
        let x = Tensor::randn_seeded(&[128, 784], 1, dev).unwrap();
        let labels: Vec<u32> = (0..128).map(|i| (i * 7 % 10) as u32).collect();
        let y = Tensor::from_vec(labels, &[128], dev).unwrap();
        Workload {
            model,
            opt,
            x,
            y,
            dev: dev.clone(),
        }
    }

    /// One training step, finished on the device.
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
    for _ in 0..5 {
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
        let steps = if dev.is_gpu() || quick { 10 } else { 200 };
        summary.push((dev.name(), median_ms(&mut w, steps)));
        let mut group = c.benchmark_group("mlp_train_step");
        group.sample_size(10);
        if dev.is_gpu() {
            group.measurement_time(Duration::from_secs(if quick { 2 } else { 10 }));
        }
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
        println!("mlp 784-256-128-10 batch 128 SGD momentum: {ms:.3} ms/step on {name} (median of timed steps after 5 warm-ups)");
    }
    if summary.len() == 2 {
        println!("GPU/CPU time ratio: {:.2}", summary[1].1 / summary[0].1);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
