//! Helpers the benchmarks share: which device to use, medians, and the harness that
//! times whole training steps (the shared workloads, from `wgrad::workloads`) on both
//! devices.

use std::time::{Duration, Instant};

use criterion::Criterion;
use wgrad::prelude::*;
use wgrad::workloads::Workload;

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
pub fn median(times: Vec<Duration>) -> Duration {
    let mut secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    Duration::from_secs_f64(wgrad::workloads::median(&mut secs))
}

/// Times one of the shared workloads on the CPU backend and the GPU: criterion
/// samples per device, plus a printed median of whole steps and the GPU/CPU ratio.
pub fn bench_training(c: &mut Criterion, workload: Workload, cpu_steps: usize) {
    let name = workload.name();
    let gpu = gpu_device(name);
    let mut summary = Vec::new();
    for dev in [Device::cpu(), gpu] {
        dev.manual_seed(0);
        let mut w = workload.build(&dev).expect("building the workload");
        let steps = if dev.is_gpu() || quick() {
            5
        } else {
            cpu_steps
        };
        summary.push((dev.name(), w.median_ms(3, steps).expect("a training step")));
        let mut group = c.benchmark_group(format!("{name}_train_step"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(if dev.is_gpu() { 20 } else { 5 }));
        group.bench_function(if dev.is_gpu() { "gpu" } else { "cpu" }, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    w.step().expect("a training step");
                }
                start.elapsed()
            })
        });
        group.finish();
    }
    let label = workload.description();
    for (device, ms) in &summary {
        println!("{name} ({label}): {ms:.3} ms/step on {device} (median of timed steps after 3 warm-ups)");
    }
    println!(
        "{name} GPU/CPU time ratio: {:.2}",
        summary[1].1 / summary[0].1
    );
}
