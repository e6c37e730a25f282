//! Memory-bound elementwise ops on 1M-element (`1 << 20`) f32 tensors, CPU backend vs
//! the default wgpu adapter: `add` (reads two tensors, writes one: 3 * 4 * n bytes) and
//! `relu` (reads one, writes one: 2 * 4 * n bytes).
//!
//! Criterion reports bytes/s with `Throughput::Bytes`. Every timed iteration records the
//! op and calls `dev.sync()` before the clock stops. After criterion the bench prints one
//! line per op and device with its own median GB/s (up to 10 timed runs, measured
//! separately from criterion's samples).
//!
//! Defaults: 10 samples, 1 s warm-up, 4 s measurement (overridable on the command
//! line). Panics if wgpu finds no adapter.

use wgrad_benches as common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use wgrad::prelude::*;

/// Elements per tensor.
const N: usize = 1 << 20;
/// Timed runs per config for the printed summary (fewer if they exceed the budget).
const SUMMARY_RUNS: usize = 10;
/// At least this many summary runs, even when one run takes longer than the budget.
const SUMMARY_MIN_RUNS: usize = 3;
/// Stop adding summary runs once this much time was spent on a config.
const SUMMARY_BUDGET: Duration = Duration::from_secs(20);

#[derive(Clone, Copy)]
enum Op {
    Add,
    Relu,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Relu => "relu",
        }
    }

    /// Bytes read plus bytes written by one op over `N` f32 elements.
    fn bytes(self) -> u64 {
        let tensors = match self {
            Op::Add => 3,
            Op::Relu => 2,
        };
        tensors * 4 * N as u64
    }
}

/// One op, synced, timed. The result is dropped after the clock stops.
fn timed_op(op: Op, x: &Tensor, y: &Tensor, dev: &Device) -> Duration {
    let start = Instant::now();
    let out = no_grad(|| match op {
        Op::Add => x.add(y),
        Op::Relu => x.relu(),
    })
    .expect("elementwise op failed");
    dev.sync().expect("device sync failed");
    let elapsed = start.elapsed();
    drop(out);
    elapsed
}

/// The median of up to [`SUMMARY_RUNS`] timed ops after one untimed warm-up run.
fn summary_median(op: Op, x: &Tensor, y: &Tensor, dev: &Device) -> (Duration, usize) {
    timed_op(op, x, y, dev);
    let start = Instant::now();
    let mut times = Vec::with_capacity(SUMMARY_RUNS);
    while times.len() < SUMMARY_RUNS
        && (times.len() < SUMMARY_MIN_RUNS || start.elapsed() < SUMMARY_BUDGET)
    {
        times.push(timed_op(op, x, y, dev));
    }
    let runs = times.len();
    (common::median(times), runs)
}

fn main() {
    let gpu = common::gpu_device("elementwise");
    let cpu = Device::cpu();
    println!("elementwise benchmark: n = {N} f32, cpu vs {}", gpu.name());

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let measure = common::measuring();
    let mut summary = Vec::new();
    for op in [Op::Add, Op::Relu] {
        let mut group = c.benchmark_group(format!("elementwise/{}", op.label()));
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Bytes(op.bytes()));
        for dev in [&cpu, &gpu] {
            let label = if dev.is_gpu() { "gpu" } else { "cpu" };
            let x = Tensor::rand_seeded(&[N], 1, dev)
                .and_then(|t| t.affine(2.0, -1.0)) // [-1, 1): relu keeps about half
                .expect("rand x");
            let y = Tensor::rand_seeded(&[N], 2, dev).expect("rand y");
            dev.sync().expect("device sync failed");
            let mut summarised = false;
            group.bench_function(BenchmarkId::from_parameter(label), |bench| {
                // The summary's own runs happen once, before criterion's warm-up, and
                // only for benchmarks that criterion's filter selects.
                if measure && !summarised {
                    summarised = true;
                    let (t, runs) = summary_median(op, &x, &y, dev);
                    summary.push((op, dev.name(), t, runs));
                }
                bench.iter_custom(|iters| (0..iters).map(|_| timed_op(op, &x, &y, dev)).sum());
            });
        }
        group.finish();
    }
    c.final_summary();

    for (op, name, t, runs) in summary {
        let gbs = op.bytes() as f64 / t.as_secs_f64() / 1e9;
        println!(
            "elementwise {} n={N} {name}: {gbs:.3} GB/s ({:.1} us, median of {runs} runs)",
            op.label(),
            t.as_secs_f64() * 1e6
        );
    }
}
