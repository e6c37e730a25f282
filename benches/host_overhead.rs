//! Host-side cost of recording ops on the GPU device: a chain of 31 small elementwise
//! ops (`y = y.add(&x)` and `y = y.relu()`, alternating, on 64-element tensors) is
//! recorded without flushing inside the timed region; `dev.sync()` runs after the clock
//! stops. 31 stays under the scheduler's chunk (`SUBMIT_CHUNK`, 32 dispatches), past
//! which it hands the work to the queue (on a software adapter that submit can cost
//! more than the recording itself), and the bench checks that no submit happened while
//! timing.
//!
//! The same chain on the CPU device is measured for comparison; there each op also
//! computes its result.
//!
//! Criterion reports elements/s with `Throughput::Elements(OPS)`, which is ops/s. After
//! criterion the bench prints `host overhead: X us/op (median of N runs of 31 ops)`
//! per device, from its own timed runs measured separately from criterion's samples.
//! Panics if wgpu finds no adapter.

use wgrad_benches as common;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use wgrad::prelude::*;

/// Ops recorded per timed run (below the scheduler's chunk, so nothing is submitted).
const OPS: usize = wgrad::backend::gpu::SUBMIT_CHUNK - 1;
/// Elements per tensor: small, so GPU recording cost dominates.
const LEN: usize = 64;
/// Timed runs per device for the printed summary.
const SUMMARY_RUNS: usize = 500;

/// Records [`OPS`] ops and returns the time spent recording them. Pending work is
/// flushed before the clock starts and synced after it stops.
fn timed_chain(x: &Tensor, dev: &Device) -> Duration {
    dev.sync().expect("device sync failed");
    let before = dev.counters();
    let start = Instant::now();
    let y = no_grad(|| {
        let mut y = x.clone();
        for i in 0..OPS {
            y = if i % 2 == 0 { y.add(x) } else { y.relu() }?;
        }
        Ok::<_, wgrad::Error>(y)
    })
    .expect("elementwise op failed");
    let elapsed = start.elapsed();
    if dev.is_gpu() {
        let after = dev.counters();
        assert_eq!(
            after.submits, before.submits,
            "the scheduler flushed while {OPS} ops were being recorded; the timing would \
             include GPU work"
        );
        assert_eq!(
            after.dispatches - before.dispatches,
            OPS as u64,
            "expected one dispatch per op"
        );
    }
    drop(y);
    dev.sync().expect("device sync failed");
    elapsed
}

fn main() {
    let gpu = common::gpu_device("host_overhead");
    let cpu = Device::cpu();
    println!(
        "host overhead benchmark: {OPS} ops on {LEN}-element tensors, {} vs cpu",
        gpu.name()
    );

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let measure = common::measuring();
    let mut summary = Vec::new();
    let mut group = c.benchmark_group("host_overhead");
    group.throughput(Throughput::Elements(OPS as u64));
    for dev in [&gpu, &cpu] {
        let label = if dev.is_gpu() {
            "gpu_record_31_ops"
        } else {
            "cpu_31_ops"
        };
        let x = Tensor::rand_seeded(&[LEN], 1, dev).expect("rand x");
        dev.sync().expect("device sync failed");
        let mut summarised = false;
        group.bench_function(BenchmarkId::from_parameter(label), |bench| {
            // The summary's own runs happen once, before criterion's warm-up, and only
            // for benchmarks that criterion's filter selects.
            if measure && !summarised {
                summarised = true;
                timed_chain(&x, dev); // warm-up: pipelines, bind groups, pooled buffers
                let times: Vec<Duration> =
                    (0..SUMMARY_RUNS).map(|_| timed_chain(&x, dev)).collect();
                summary.push((dev.name(), common::median(times)));
            }
            bench.iter_custom(|iters| (0..iters).map(|_| timed_chain(&x, dev)).sum());
        });
    }
    group.finish();
    c.final_summary();

    for (name, t) in summary {
        let what = if name == "cpu" {
            "includes compute"
        } else {
            "recording only"
        };
        println!(
            "host overhead: {:.3} us/op (median of {SUMMARY_RUNS} runs of {OPS} ops) [{name}, {what}]",
            t.as_secs_f64() * 1e6 / OPS as f64
        );
    }
}
