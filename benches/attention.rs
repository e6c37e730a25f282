//! Scaled-dot-product attention, forward plus backward, fused
//! (`Tensor::scaled_dot_product_attention`: on the GPU one forward kernel and three
//! backward kernels, the scores never stored) against the same attention composed of
//! `matmul`, `softmax` and `matmul` (which stores the `[seq, seq]` scores and weights),
//! on the CPU backend and the default wgpu adapter, in one run: batch 1, heads 2,
//! head_dim 64, seq = 256, 1024 and 2048, not causal.
//!
//! Every timed iteration runs the forward, `sum().backward()`, and `dev.sync()` before
//! the clock stops. After criterion the bench prints one line per case with its own
//! median (up to 5 timed runs after a warm-up, measured apart from criterion's samples)
//! and the composed/fused ratio. `WGRAD_BENCH_QUICK=1` runs seq 256 only. The defaults
//! are 10 samples, 1 s warm-up and 3 s measurement (a software adapter such as lavapipe
//! takes seconds per step at seq 2048); the command-line options override them.
//! `WGRAD_BENCH_KERNELS=1` also profiles one GPU step of each case (`Device::profile`)
//! and prints each kernel's dispatches and GPU time, where the adapter has timestamps.

use wgrad_benches as common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use wgrad::prelude::*;

const HEADS: usize = 2;
const HEAD_DIM: usize = 64;
const SUMMARY_RUNS: usize = 5;
const SUMMARY_BUDGET: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Fused,
    Composed,
}

impl Impl {
    fn label(self) -> &'static str {
        match self {
            Impl::Fused => "fused",
            Impl::Composed => "composed",
        }
    }
}

/// One forward and backward step, synced, timed.
fn timed(imp: Impl, [q, k, v]: &[Tensor; 3], dev: &Device) -> Duration {
    let start = Instant::now();
    let out = match imp {
        Impl::Fused => q.scaled_dot_product_attention(k, v, None, 0.0, false, None),
        Impl::Composed => (|| {
            let scale = 1.0 / (HEAD_DIM as f64).sqrt();
            q.matmul(&k.transpose(-2, -1)?)?
                .mul_scalar(scale as _)?
                .softmax(-1)?
                .matmul(v)
        })(),
    }
    .expect("attention forward");
    out.sum()
        .and_then(|s| s.backward())
        .expect("attention backward");
    dev.sync().expect("device sync failed");
    let elapsed = start.elapsed();
    for t in [q, k, v] {
        t.zero_grad();
    }
    elapsed
}

fn inputs(seq: usize, dev: &Device) -> [Tensor; 3] {
    let make = |seed| {
        Tensor::randn_seeded(&[1, HEADS, seq, HEAD_DIM], seed, dev)
            .and_then(|t| t.requires_grad_(true))
            .expect("inputs")
    };
    [make(1), make(2), make(3)]
}

fn main() {
    let gpu = common::gpu_device("attention");
    let adapter = gpu.name();
    let seqs: &[usize] = if common::quick() {
        &[256]
    } else {
        &[256, 1024, 2048]
    };
    println!("attention benchmark (batch 1, heads {HEADS}, head_dim {HEAD_DIM}, forward + backward): cpu vs {adapter}");
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let measure = common::measuring();
    let cpu = Device::cpu();
    let mut summary: Vec<(usize, &str, Impl, f64)> = Vec::new();
    for dev in [&cpu, &gpu] {
        let name = if dev.is_gpu() { "gpu" } else { "cpu" };
        let mut group = c.benchmark_group(format!("attention/{name}"));
        group.sampling_mode(SamplingMode::Flat);
        for &seq in seqs {
            let qkv = inputs(seq, dev);
            dev.sync().expect("device sync failed");
            for imp in [Impl::Fused, Impl::Composed] {
                let mut summarised = false;
                let id = BenchmarkId::new(imp.label(), seq);
                group.bench_function(id, |bench| {
                    if measure && !summarised {
                        summarised = true;
                        timed(imp, &qkv, dev);
                        let start = Instant::now();
                        let mut times = Vec::new();
                        while times.len() < SUMMARY_RUNS
                            && (times.len() < 3 || start.elapsed() < SUMMARY_BUDGET)
                        {
                            times.push(timed(imp, &qkv, dev));
                        }
                        let ms = common::median(times).as_secs_f64() * 1e3;
                        summary.push((seq, name, imp, ms));
                    }
                    bench.iter_custom(|iters| (0..iters).map(|_| timed(imp, &qkv, dev)).sum());
                });
            }
        }
        group.finish();
    }
    if measure && std::env::var("WGRAD_BENCH_KERNELS").is_ok_and(|v| !v.is_empty() && v != "0") {
        kernel_times(seqs, &gpu);
    }
    for &(seq, name, imp, ms) in &summary {
        let other = summary
            .iter()
            .find(|s| s.0 == seq && s.1 == name && s.2 != imp)
            .map_or(String::new(), |s| {
                format!(
                    "; composed/fused {:.2}",
                    if imp == Impl::Fused {
                        s.3 / ms
                    } else {
                        ms / s.3
                    }
                )
            });
        println!(
            "attention seq {seq:>4} {name} {:<8}: {ms:.2} ms per forward + backward{} (adapter: {adapter})",
            imp.label(),
            if imp == Impl::Composed { other } else { String::new() }
        );
    }
}

/// Prints each kernel's dispatches and GPU time over one profiled step of each case.
fn kernel_times(seqs: &[usize], gpu: &Device) {
    for &seq in seqs {
        let qkv = inputs(seq, gpu);
        for imp in [Impl::Fused, Impl::Composed] {
            timed(imp, &qkv, gpu);
            let (_, profile) = gpu
                .profile(|| timed(imp, &qkv, gpu))
                .expect("attention profile");
            for k in profile.by_kernel() {
                let ms = k.gpu_ns.map_or("no timestamps".to_string(), |ns| {
                    format!("{:.2} ms", ns / 1e6)
                });
                println!(
                    "attention seq {seq:>4} gpu {:<8} kernel {:<24} x{:<3} {ms}",
                    imp.label(),
                    k.kernel,
                    k.dispatches
                );
            }
        }
    }
}
