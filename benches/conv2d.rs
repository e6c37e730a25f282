//! `conv2d` alone, forward and forward + backward, at a few sizes, on the CPU backend
//! and the default wgpu adapter. Every timed iteration syncs the device before the
//! clock stops. After criterion the bench prints one line per size and pass with the
//! median milliseconds on each device and the GPU/CPU ratio (medians of separate timed
//! runs, measured in the same process).
//!
//! `WGRAD_BENCH_QUICK=1` keeps only the smallest size (a smoke run). Panics if wgpu
//! finds no adapter.

use wgrad_benches as common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use wgrad::ops::conv2d::ConvOptions;
use wgrad::prelude::*;

/// (label, input [N, C, H, W], output channels, kernel, padding, stride).
type Size = (&'static str, [usize; 4], usize, usize, usize, usize);
const SIZES: &[Size] = &[
    ("cnn_conv1", [64, 1, 28, 28], 16, 3, 1, 1),
    ("cnn_conv2", [64, 16, 14, 14], 32, 3, 1, 1),
    ("c64_16x16", [16, 64, 16, 16], 64, 3, 1, 1),
    ("c32_s2_5x5", [32, 32, 32, 32], 64, 5, 2, 2),
];

struct Case {
    x: Tensor,
    w: Tensor,
    b: Tensor,
    opts: ConvOptions,
    dev: Device,
}

impl Case {
    fn new(
        dev: &Device,
        shape: [usize; 4],
        oc: usize,
        k: usize,
        pad: usize,
        stride: usize,
    ) -> Self {
        let x = Tensor::randn_seeded(&shape, 1, dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let w = Tensor::randn_seeded(&[oc, shape[1], k, k], 2, dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::randn_seeded(&[oc], 3, dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let opts = ConvOptions {
            padding: (pad, pad),
            stride: (stride, stride),
            ..Default::default()
        };
        Case {
            x,
            w,
            b,
            opts,
            dev: dev.clone(),
        }
    }

    /// One forward (and backward when asked), synced; the time it took.
    fn run(&self, backward: bool) -> Duration {
        let start = Instant::now();
        if backward {
            let y = self.x.conv2d(&self.w, Some(&self.b), self.opts).unwrap();
            y.sum().unwrap().backward().unwrap();
            for t in [&self.x, &self.w, &self.b] {
                t.zero_grad();
            }
        } else {
            no_grad(|| self.x.conv2d(&self.w, Some(&self.b), self.opts)).unwrap();
        }
        self.dev.sync().unwrap();
        start.elapsed()
    }

    fn median_ms(&self, backward: bool, runs: usize) -> f64 {
        self.run(backward);
        common::median((0..runs).map(|_| self.run(backward)).collect()).as_secs_f64() * 1e3
    }
}

fn bench(c: &mut Criterion) {
    let devices = [Device::cpu(), common::gpu_device("conv2d")];
    let sizes = if common::quick() { &SIZES[..1] } else { SIZES };
    let mut lines = Vec::new();
    for &(label, shape, oc, k, pad, stride) in sizes {
        for backward in [false, true] {
            let pass = if backward { "fwd+bwd" } else { "fwd" };
            let mut group = c.benchmark_group(format!("conv2d_{pass}"));
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(3));
            let mut medians = Vec::new();
            for dev in &devices {
                let case = Case::new(dev, shape, oc, k, pad, stride);
                let id = if dev.is_gpu() { "gpu" } else { "cpu" };
                group.bench_with_input(BenchmarkId::new(id, label), &case, |b, case| {
                    b.iter_custom(|iters| (0..iters).map(|_| case.run(backward)).sum())
                });
                if common::measuring() {
                    medians.push(case.median_ms(backward, if dev.is_gpu() { 5 } else { 20 }));
                }
            }
            group.finish();
            if let [cpu, gpu] = medians[..] {
                lines.push(format!(
                    "conv2d {pass} {label} x{shape:?} -> {oc} ch, {k}x{k}, pad {pad}, stride {stride}: \
                     cpu {cpu:.3} ms, gpu {gpu:.3} ms ({}), GPU/CPU {:.2}",
                    devices[1].name(),
                    gpu / cpu
                ));
            }
        }
    }
    for l in lines {
        println!("{l}");
    }
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
