//! Matrix products on the CPU backend (the `gemm` crate) and on the default wgpu
//! adapter: the square sizes n = 256, 512, 1024 (and 4096: always on a hardware GPU, on
//! a software one only with `WGRAD_BENCH_LARGE=1`, where it takes minutes), and the
//! products inside the shared training workloads: skinny ones (few rows or columns), long-K
//! ones (the weight gradients, whose inner dimension is the batch or the pixels), and
//! batched ones (the convolutions). The GPU runs the planner's choice of kernel (printed
//! with each case: kernel, K splits, useful share of the executed FLOPs); the square
//! sizes also run the naive one-output-per-thread kernel as a baseline.
//!
//! Criterion reports elements/s with `Throughput::Elements(2 M N K batches)`, which is
//! FLOP/s. Every timed iteration records the product and calls `dev.sync()` before the
//! clock stops. After criterion the bench prints one line per case with its own median
//! GFLOP/s (up to 10 timed runs per config, measured separately from criterion's
//! samples) and the GPU/CPU ratio from the same run.
//!
//! `WGRAD_BENCH_QUICK=1` restricts the cases to n = 256 (a smoke run). The defaults are
//! 10 samples, 1 s warm-up and 4 s measurement, because a software adapter such as
//! lavapipe runs at a few GFLOP/s; `--sample-size`, `--warm-up-time` and
//! `--measurement-time` override them. Panics if wgpu finds no adapter.

use wgrad_benches as common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use wgrad::ops::matmul::{gpu_plan, matmul_with, MatmulChoice, MatmulKernel};
use wgrad::prelude::*;

/// Timed runs per config for the printed summary (fewer if they exceed the budget).
const SUMMARY_RUNS: usize = 10;
/// At least this many summary runs, even when one run takes longer than the budget.
const SUMMARY_MIN_RUNS: usize = 3;
/// Stop adding summary runs once this much time was spent on a config.
const SUMMARY_BUDGET: Duration = Duration::from_secs(30);

/// One product: `a` times `b` (batched where they have three dims).
struct Case {
    label: String,
    a: Vec<usize>,
    b: Vec<usize>,
    /// Also run the naive kernel.
    naive: bool,
}

impl Case {
    fn square(n: usize) -> Case {
        Case {
            label: format!("square {n}"),
            a: vec![n, n],
            b: vec![n, n],
            naive: n <= 1024,
        }
    }

    fn workload(label: &str, a: &[usize], b: &[usize]) -> Case {
        Case {
            label: label.into(),
            a: a.to_vec(),
            b: b.to_vec(),
            naive: false,
        }
    }

    /// (M, N, K, batches).
    fn dims(&self) -> (usize, usize, usize, usize) {
        let (ra, rb) = (self.a.len(), self.b.len());
        // The batch dims broadcast: one side's, or the other's where it has none.
        let count = |d: &[usize]| d.iter().product::<usize>();
        let batches = count(&self.a[..ra - 2]).max(count(&self.b[..rb - 2]));
        (self.a[ra - 2], self.b[rb - 1], self.a[ra - 1], batches)
    }

    fn flops(&self) -> f64 {
        let (m, n, k, b) = self.dims();
        2.0 * (m * n * k * b) as f64
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Cpu,
    Gpu,
    GpuNaive,
}

impl Impl {
    const ALL: [Impl; 3] = [Impl::Cpu, Impl::Gpu, Impl::GpuNaive];

    fn label(self) -> &'static str {
        match self {
            Impl::Cpu => "cpu",
            Impl::Gpu => "gpu",
            Impl::GpuNaive => "gpu_naive",
        }
    }
}

/// One product, synced, timed. The result is dropped after the clock stops.
fn timed(imp: Impl, a: &Tensor, b: &Tensor, dev: &Device) -> Duration {
    let start = Instant::now();
    let y = no_grad(|| match imp {
        Impl::Cpu | Impl::Gpu => a.matmul(b),
        Impl::GpuNaive => matmul_with(
            a,
            b,
            MatmulChoice {
                kernel: MatmulKernel::Naive,
                splits: 0,
            },
        ),
    })
    .expect("matmul failed");
    dev.sync().expect("device sync failed");
    let elapsed = start.elapsed();
    drop(y);
    elapsed
}

/// The median of up to [`SUMMARY_RUNS`] timed products after one untimed warm-up run.
fn summary_median(imp: Impl, a: &Tensor, b: &Tensor, dev: &Device) -> (Duration, usize) {
    timed(imp, a, b, dev);
    let start = Instant::now();
    let mut times = Vec::with_capacity(SUMMARY_RUNS);
    while times.len() < SUMMARY_RUNS
        && (times.len() < SUMMARY_MIN_RUNS || start.elapsed() < SUMMARY_BUDGET)
    {
        times.push(timed(imp, a, b, dev));
    }
    let runs = times.len();
    (common::median(times), runs)
}

fn main() {
    let gpu = common::gpu_device("matmul");
    let adapter = gpu.name();
    let software = match &gpu {
        Device::Gpu(g) => g.adapter().is_software,
        Device::Cpu => true,
    };
    let large = !software || std::env::var("WGRAD_BENCH_LARGE").is_ok_and(|v| v == "1");
    let mut cases: Vec<Case> = if common::quick() {
        vec![Case::square(256)]
    } else {
        let mut v: Vec<Case> = [256, 512, 1024].into_iter().map(Case::square).collect();
        if large {
            v.push(Case::square(4096));
        }
        v
    };
    if !common::quick() {
        cases.extend([
            Case::workload("mlp layer 1 forward", &[128, 784], &[784, 256]),
            Case::workload("mlp layer 1 weight grad", &[256, 128], &[128, 784]),
            Case::workload("cnn conv1 forward", &[16, 9], &[64, 9, 784]),
            Case::workload("cnn conv2 forward", &[32, 144], &[64, 144, 196]),
            Case::workload("cnn conv2 weight grads", &[64, 32, 196], &[64, 196, 144]),
            Case::workload("cnn linear forward", &[64, 1568], &[1568, 10]),
            Case::workload("rnn recurrent step", &[32, 128], &[128, 128]),
            Case::workload("rnn recurrent weight grad", &[128, 1024], &[1024, 128]),
        ]);
    }
    println!("matmul benchmark: cpu vs {adapter}");
    if !large {
        println!("(4096 skipped on a software adapter; WGRAD_BENCH_LARGE=1 runs it)");
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let measure = common::measuring();
    let cpu = Device::cpu();
    let mut summary: Vec<(usize, Impl, f64, usize)> = Vec::new();
    for imp in Impl::ALL {
        let dev = if imp == Impl::Cpu { &cpu } else { &gpu };
        let mut group = c.benchmark_group(format!("matmul/{}", imp.label()));
        group.sampling_mode(SamplingMode::Flat);
        for (i, case) in cases.iter().enumerate() {
            if imp == Impl::GpuNaive && !case.naive {
                continue;
            }
            let a = Tensor::rand_seeded(&case.a, 1, dev).expect("rand a");
            let b = Tensor::rand_seeded(&case.b, 2, dev).expect("rand b");
            dev.sync().expect("device sync failed");
            group.throughput(Throughput::Elements(case.flops() as u64));
            let mut summarised = false;
            let id = BenchmarkId::from_parameter(case.label.replace(' ', "_"));
            group.bench_function(id, |bench| {
                // The summary's own runs happen once, before criterion's warm-up, and
                // only for benchmarks that criterion's filter selects.
                if measure && !summarised {
                    summarised = true;
                    let (t, runs) = summary_median(imp, &a, &b, dev);
                    summary.push((i, imp, case.flops() / t.as_secs_f64() / 1e9, runs));
                }
                bench.iter_custom(|iters| (0..iters).map(|_| timed(imp, &a, &b, dev)).sum());
            });
        }
        group.finish();
    }
    c.final_summary();

    for (i, case) in cases.iter().enumerate() {
        let got = |imp| summary.iter().find(|s| s.0 == i && s.1 == imp).map(|s| s.2);
        let (Some(cpu_g), Some(gpu_g)) = (got(Impl::Cpu), got(Impl::Gpu)) else {
            continue;
        };
        let (m, n, k, batches) = case.dims();
        let plan = gpu_plan(&gpu, m, n, k, batches)
            .map(|p| {
                format!(
                    "{:?}, {} split{}, {} pass{}, {:.0}% useful",
                    p.kernel,
                    p.splits,
                    if p.splits == 1 { "" } else { "s" },
                    p.passes,
                    if p.passes == 1 { "" } else { "es" },
                    100.0 * p.useful_fraction()
                )
            })
            .unwrap_or_default();
        let naive = got(Impl::GpuNaive).map_or(String::new(), |g| format!(", naive {g:.3}"));
        println!(
            "matmul {:<26} {:?} x {:?}: cpu {cpu_g:.3} GFLOP/s, gpu {gpu_g:.3} GFLOP/s ({plan}){naive}; gpu/cpu {:.4} (adapter: {adapter})",
            case.label, case.a, case.b, gpu_g / cpu_g
        );
    }
}
