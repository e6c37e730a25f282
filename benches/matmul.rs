//! Square matrix products, `n x n @ n x n` for n = 256, 512, 1024, on the CPU backend
//! (`matrixmultiply`) and on the default wgpu adapter with the register-tiled kernel
//! (the one `Tensor::matmul` uses) and the naive one-output-per-thread kernel.
//!
//! Criterion reports elements/s with `Throughput::Elements(2 n^3)`, which is FLOP/s.
//! Every timed iteration records the product and calls `dev.sync()` before the clock
//! stops, so GPU numbers include the kernel, not just its recording. After criterion
//! the bench prints one line per size with its own median GFLOP/s (up to 10 timed runs
//! per config, measured separately from criterion's samples).
//!
//! `WGRAD_BENCH_QUICK=1` restricts the sizes to n = 256 (a smoke run). The defaults are
//! 10 samples, 1 s warm-up and 4 s measurement, because a software adapter such as
//! lavapipe runs well under 1 GFLOP/s; `--sample-size`, `--warm-up-time` and
//! `--measurement-time` override them. Panics if wgpu finds no adapter.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use wgrad::ops::matmul::{matmul_with_kernel, MatmulKernel};
use wgrad::prelude::*;

/// Timed runs per config for the printed summary (fewer if they exceed the budget).
const SUMMARY_RUNS: usize = 10;
/// At least this many summary runs, even when one run takes longer than the budget.
const SUMMARY_MIN_RUNS: usize = 3;
/// Stop adding summary runs once this much time was spent on a config.
const SUMMARY_BUDGET: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Cpu,
    GpuTiled,
    GpuNaive,
}

impl Impl {
    const ALL: [Impl; 3] = [Impl::Cpu, Impl::GpuTiled, Impl::GpuNaive];

    fn label(self) -> &'static str {
        match self {
            Impl::Cpu => "cpu",
            Impl::GpuTiled => "gpu_tiled",
            Impl::GpuNaive => "gpu_naive",
        }
    }

    fn index(self) -> usize {
        match self {
            Impl::Cpu => 0,
            Impl::GpuTiled => 1,
            Impl::GpuNaive => 2,
        }
    }
}

/// One product, synced, timed. The result is dropped after the clock stops.
fn timed_matmul(imp: Impl, a: &Tensor, b: &Tensor, dev: &Device) -> Duration {
    let start = Instant::now();
    let y = no_grad(|| match imp {
        Impl::Cpu | Impl::GpuTiled => a.matmul(b),
        Impl::GpuNaive => matmul_with_kernel(a, b, MatmulKernel::Naive),
    })
    .expect("matmul failed");
    dev.sync().expect("device sync failed");
    let elapsed = start.elapsed();
    drop(y);
    elapsed
}

/// The median of up to [`SUMMARY_RUNS`] timed products after one untimed warm-up run.
fn summary_median(imp: Impl, a: &Tensor, b: &Tensor, dev: &Device) -> (Duration, usize) {
    timed_matmul(imp, a, b, dev);
    let start = Instant::now();
    let mut times = Vec::with_capacity(SUMMARY_RUNS);
    while times.len() < SUMMARY_RUNS
        && (times.len() < SUMMARY_MIN_RUNS || start.elapsed() < SUMMARY_BUDGET)
    {
        times.push(timed_matmul(imp, a, b, dev));
    }
    let runs = times.len();
    (common::median(times), runs)
}

fn gflops(n: usize, t: Duration) -> f64 {
    2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9
}

/// Median GFLOP/s and run count per size, per [`Impl::index`].
type Summary = BTreeMap<usize, [Option<(f64, usize)>; 3]>;

fn bench_matmul(c: &mut Criterion, gpu: &Device, sizes: &[usize], summary: &mut Summary) {
    let cpu = Device::cpu();
    let measure = common::measuring();
    for imp in Impl::ALL {
        let dev = if imp == Impl::Cpu { &cpu } else { gpu };
        let mut group = c.benchmark_group(format!("matmul/{}", imp.label()));
        group.sampling_mode(SamplingMode::Flat);
        for &n in sizes {
            let a = Tensor::rand_seeded(&[n, n], 1, dev).expect("rand a");
            let b = Tensor::rand_seeded(&[n, n], 2, dev).expect("rand b");
            dev.sync().expect("device sync failed");
            group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
            let mut summarised = false;
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, &n| {
                // The summary's own runs happen once, before criterion's warm-up, and
                // only for benchmarks that criterion's filter selects.
                if measure && !summarised {
                    summarised = true;
                    let (t, runs) = summary_median(imp, &a, &b, dev);
                    summary.entry(n).or_default()[imp.index()] = Some((gflops(n, t), runs));
                }
                bench.iter_custom(|iters| (0..iters).map(|_| timed_matmul(imp, &a, &b, dev)).sum());
            });
        }
        group.finish();
    }
}

fn main() {
    let gpu = common::gpu_device("matmul");
    let adapter = gpu.name();
    let sizes: &[usize] = if common::quick() {
        &[256]
    } else {
        &[256, 512, 1024]
    };
    println!("matmul benchmark: cpu vs {adapter}; sizes {sizes:?}");

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let mut summary = Summary::new();
    bench_matmul(&mut c, &gpu, sizes, &mut summary);
    c.final_summary();

    for (n, row) in &summary {
        let mut line = format!("matmul n={n}");
        let mut runs = Vec::new();
        for imp in Impl::ALL {
            match row[imp.index()] {
                Some((g, r)) => {
                    line += &format!(" {} {g:.3} GFLOP/s", imp.label());
                    runs.push(r);
                }
                None => line += &format!(" {} - GFLOP/s", imp.label()),
            }
        }
        let (lo, hi) = (runs.iter().min(), runs.iter().max());
        let runs = match (lo, hi) {
            (Some(lo), Some(hi)) if lo == hi => format!("median of {lo} runs"),
            (Some(lo), Some(hi)) => format!("median of {lo}-{hi} runs"),
            _ => "no runs".into(),
        };
        println!("{line} (adapter: {adapter}; {runs})");
    }
}
