//! Helpers the benchmarks share: which device to use, medians, and the harness that
//! times whole training steps (DESIGN's `mlp` and `cnn` workloads) on both devices.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use criterion::Criterion;
use wgrad::optim::{Optimizer, Sgd};
use wgrad::prelude::*;

/// True when `WGRAD_BENCH_QUICK` asks for a short smoke run.
pub fn quick() -> bool {
    std::env::var("WGRAD_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// True when criterion measures (`cargo bench`), false under `cargo test --benches`,
/// `--list` or `--profile-time`, where the extra summary runs are skipped.
pub fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a.starts_with("--profile-time"))
}

/// The default wgpu adapter, or a panic that says how to get one.
pub fn gpu_device(bench: &str) -> Device {
    Device::gpu().unwrap_or_else(|e| {
        panic!(
            "the {bench} benchmark needs a GPU adapter and wgpu found none ({e}). Install a \
             Vulkan driver: on Debian/Ubuntu `apt-get install mesa-vulkan-drivers libvulkan1` \
             provides lavapipe, a software Vulkan adapter."
        )
    })
}

/// The median of some timings (the mean of the middle two for an even count).
pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    let m = times.len() / 2;
    if times.len() % 2 == 1 {
        times[m]
    } else {
        (times[m - 1] + times[m]) / 2
    }
}

/// A classifier, one fixed batch and SGD with momentum 0.9: one training step at a time.
pub struct TrainStep {
    model: Sequential,
    opt: Sgd,
    x: Tensor,
    y: Tensor,
    dev: Device,
}

impl TrainStep {
    /// `model` trained on random inputs of `input_shape` and 10 classes.
    pub fn new(dev: &Device, model: Sequential, input_shape: &[usize]) -> TrainStep {
        let opt = Sgd::new(model.parameters(), 0.01).momentum(0.9);
        let x = Tensor::randn_seeded(input_shape, 1, dev).unwrap();
        let labels: Vec<u32> = (0..input_shape[0]).map(|i| (i * 7 % 10) as u32).collect();
        let y = Tensor::from_vec(labels, &[input_shape[0]], dev).unwrap();
        TrainStep {
            model,
            opt,
            x,
            y,
            dev: dev.clone(),
        }
    }

    /// `model` trained on the given inputs and class labels.
    pub fn with_data(dev: &Device, model: Sequential, x: Tensor, y: Tensor) -> TrainStep {
        let opt = Sgd::new(model.parameters(), 0.01).momentum(0.9);
        TrainStep {
            model,
            opt,
            x,
            y,
            dev: dev.clone(),
        }
    }

    /// Forward, cross-entropy, backward, update, and a sync so the work is finished.
    pub fn step(&mut self) {
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

    /// Median milliseconds of `steps` timed steps after `warm` untimed ones.
    pub fn median_ms(&mut self, warm: usize, steps: usize) -> f64 {
        for _ in 0..warm {
            self.step();
        }
        let times = (0..steps)
            .map(|_| {
                let s = Instant::now();
                self.step();
                s.elapsed()
            })
            .collect();
        median(times).as_secs_f64() * 1e3
    }
}

/// Times a training workload on the CPU backend and the GPU: criterion samples per
/// device, plus a printed median of whole steps and the GPU/CPU ratio.
pub fn bench_training(
    c: &mut Criterion,
    name: &str,
    label: &str,
    make: fn(&Device) -> TrainStep,
    cpu_steps: usize,
) {
    let gpu = gpu_device(name);
    let mut summary = Vec::new();
    for dev in [Device::cpu(), gpu] {
        dev.manual_seed(0);
        let mut w = make(&dev);
        let steps = if dev.is_gpu() || quick() {
            5
        } else {
            cpu_steps
        };
        summary.push((dev.name(), w.median_ms(3, steps)));
        let mut group = c.benchmark_group(format!("{name}_train_step"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(if dev.is_gpu() { 20 } else { 5 }));
        group.bench_function(if dev.is_gpu() { "gpu" } else { "cpu" }, |b| {
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
    for (device, ms) in &summary {
        println!("{name} ({label}): {ms:.3} ms/step on {device} (median of timed steps after 3 warm-ups)");
    }
    println!(
        "{name} GPU/CPU time ratio: {:.2}",
        summary[1].1 / summary[0].1
    );
}
