//! GPU against CPU on the shared benchmark workloads (`wgrad::workloads`, the same steps
//! that `tools/torch_reference.py` times in PyTorch): the `mlp`, `cnn` and `rnn` training
//! steps and f32 matrix products (1024 and 4096 by default), on the GPU and on the CPU
//! backend, the device synced inside every timed region. Prints the adapter, a table of
//! median milliseconds per step (GFLOP/s for products) and dispatches per step, and how
//! much of each step's matrix-product arithmetic is useful (partial tiles waste some);
//! `--json PATH` writes the same figures. `--require-hardware` refuses a software
//! adapter (lavapipe, llvmpipe, WARP), so a run on a GPU machine cannot silently measure
//! a rasteriser. `tools/device_check.sh` builds this for a GPU machine without Rust, and
//! docs/benchmarks.md has the figures measured so far.
//!
//! ```sh
//! cargo run --release --example gpu_vs_cpu                      # defaults
//! cargo run --release --example gpu_vs_cpu -- --matmul 256 1024 # smaller products (software GPUs)
//! cargo run --release --example gpu_vs_cpu -- --profile         # per-kernel tables too
//! cargo run --release --example gpu_vs_cpu -- --dtype amp       # autocast f16 + GradScaler
//! cargo run --release --example gpu_vs_cpu -- --dtype f16 --memory # peak GPU bytes too
//! ```

use std::time::Instant;

use clap::Parser;
use serde_json::{json, Value};
use wgrad::ops::matmul::gpu_plan;
use wgrad::prelude::*;
use wgrad::workloads::{median, Workload};
use wgrad::Profile;

#[derive(Parser, Debug)]
#[command(about = "GPU against CPU on the shared workloads and matrix products")]
struct Args {
    /// Fail unless the GPU is a hardware adapter.
    #[arg(long)]
    require_hardware: bool,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Timed steps per workload and device (after the warm-up steps).
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Sizes n of the n x n x n matrix products.
    #[arg(long, num_args = 0.., default_values_t = [1024usize, 4096])]
    matmul: Vec<usize>,
    /// Which workloads to run (mlp, cnn, rnn, transformer).
    #[arg(long, value_delimiter = ',', default_values_t = ["mlp".to_string(), "cnn".to_string(), "rnn".to_string(), "transformer".to_string()])]
    workloads: Vec<String>,
    /// Print each workload's kernels (dispatches, workgroups, bytes, GPU times), and on
    /// the CPU backend its primitives' wall times and the step's split by family.
    #[arg(long)]
    profile: bool,
    /// Precision of the workloads' steps: f32; f16 or bf16 (the forward under autocast,
    /// f32 master weights); amp (autocast in f16 with a gradient scaler, PyTorch's
    /// recipe).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Also measure the GPU memory of each workload: the peak bytes held by tensors over
    /// one training step and over one inference forward, in `--dtype` against f32
    /// (inference in f16 or bf16 runs the model converted with `to_dtype`).
    #[arg(long)]
    memory: bool,
}

/// The training step of `workload` on `dev` in `dtype` (f32, f16, bf16 or amp).
fn build(
    workload: Workload,
    dtype: &str,
    dev: &Device,
) -> anyhow::Result<wgrad::workloads::TrainStep> {
    Ok(match dtype {
        "f32" => workload.build(dev)?,
        "f16" => workload.build(dev)?.autocast(DType::F16, false)?,
        "bf16" => workload.build(dev)?.autocast(DType::BF16, false)?,
        "amp" => workload.build(dev)?.autocast(DType::F16, true)?,
        other => anyhow::bail!("--dtype takes f32, f16, bf16 or amp, not {other}"),
    })
}

/// Peak MiB held by tensors on the GPU `dev`: over one training step of `workload` in
/// `dtype` (after one step, so the optimizer's state exists), and over one inference
/// forward of a fresh model, converted to the half dtype for f16, bf16 and amp.
fn peak_mib(workload: Workload, dtype: &str, dev: &Device) -> anyhow::Result<[f64; 2]> {
    let Device::Gpu(ctx) = dev else {
        anyhow::bail!("memory is measured on the GPU")
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    dev.manual_seed(0);
    let train = {
        let mut step = build(workload, dtype, dev)?;
        step.step()?;
        ctx.reset_peak_bytes();
        step.step()?;
        mib(dev.counters().peak_bytes)
    };
    dev.sync()?;
    let (model, x, _) = workload.build(dev)?.into_parts();
    let half = match dtype {
        "f16" | "amp" => Some(DType::F16),
        "bf16" => Some(DType::BF16),
        _ => None,
    };
    // The f32 batch is dropped once converted: half inference holds only its half copy.
    let x = match half {
        Some(h) if x.dtype().is_float() => {
            model.to_dtype(h)?;
            let converted = x.to_dtype(h)?;
            drop(x);
            converted
        }
        Some(h) => {
            model.to_dtype(h)?;
            x
        }
        None => x,
    };
    dev.sync()?;
    ctx.reset_peak_bytes();
    let y = no_grad(|| model.forward(&x))?;
    dev.sync()?;
    drop(y);
    Ok([train, mib(dev.counters().peak_bytes)])
}

/// Median milliseconds of one synced product, over up to 10 runs (at least 3, stopping
/// after 30 s), after one warm-up.
fn time_matmul(a: &Tensor, b: &Tensor, dev: &Device) -> anyhow::Result<f64> {
    let run = || -> anyhow::Result<f64> {
        let start = Instant::now();
        let c = no_grad(|| a.matmul(b))?;
        dev.sync()?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        drop(c);
        Ok(ms)
    };
    run()?;
    let begun = Instant::now();
    let mut times = Vec::new();
    while times.len() < 10 && (times.len() < 3 || begun.elapsed().as_secs() < 30) {
        times.push(run()?);
    }
    Ok(median(&mut times))
}

/// One step's matrix products: the kernel chosen, the product's size, useful share.
fn print_products(name: &str, profile: &Profile) {
    let (useful, executed) = profile.flops();
    if executed == 0 {
        return;
    }
    println!(
        "  {name}: matrix products {:.1} of {:.1} MFLOP useful ({:.1}%)",
        useful as f64 / 1e6,
        executed as f64 / 1e6,
        100.0 * useful as f64 / executed as f64
    );
    // Consecutive dispatches of the same product (an RNN's steps) print as one line.
    let products: Vec<_> = profile
        .dispatches
        .iter()
        .filter(|d| d.executed_flops > 0)
        .collect();
    let mut i = 0;
    while i < products.len() {
        let d = products[i];
        let same = products[i..]
            .iter()
            .take_while(|e| e.kernel == d.kernel && e.product == d.product)
            .count();
        let [m, n, k, b] = d.product.unwrap_or_default();
        let times = if same > 1 {
            format!("{same} x ")
        } else {
            String::new()
        };
        println!(
            "    {times}{:<44} {m:>5} x {n:>5} x {k:>5} x {b:>3} batches {:>6} groups {:>6.1}% useful",
            d.kernel,
            d.workgroups,
            100.0 * d.useful_flops as f64 / d.executed_flops as f64
        );
        i += same;
    }
}

/// The family a CPU primitive belongs to, for the time split.
fn family(kernel: &str) -> &'static str {
    match kernel {
        "gemm" => "products",
        "im2col" | "col2im" => "im2col / col2im",
        k if k.contains("pool") || k.starts_with("upsample") => "pooling",
        "alloc" | "free" => "buffer requests and releases",
        k if k.starts_with("conv_act") => "fused convolutions (their products included)",
        k if k.starts_with("linear_act") => "bias and activation of linear layers",
        k if k.ends_with("_step") || k == "count_steps" || k.starts_with("clip_grad") => {
            "optimizer"
        }
        k if k.starts_with("unary")
            || k.starts_with("binary")
            || k.starts_with("prelu")
            || k == "compare"
            || k == "masked"
            || k.starts_with("where") =>
        {
            "elementwise"
        }
        k if k.starts_with("softmax") || k.starts_with("cross_entropy") => "softmax and loss",
        k if k.starts_with("sum") || k == "spread" || k.starts_with("max") => "reductions",
        k if k.starts_with("recurrence") || k.contains("cell") => "recurrent cells",
        k if k.starts_with("attention") => "attention (its products included)",
        k if k.contains("norm") => "normalisation",
        _ => "layout, copies and the rest",
    }
}

/// One profiled CPU step of `step`: its time split by primitive family (own wall time,
/// with the rest of `step_ms` as graph bookkeeping above the backend), and the profile.
fn cpu_split(
    step: &mut wgrad::workloads::TrainStep,
    cpu: &Device,
    step_ms: f64,
) -> anyhow::Result<(String, Profile)> {
    // The median of 5 profiled steps per family (a profiled step runs as a plain one).
    let mut runs = Vec::new();
    let mut last = Profile::default();
    for _ in 0..5 {
        let (done, p) = cpu.profile(|| step.step())?;
        done?;
        let mut fam: std::collections::BTreeMap<&'static str, f64> = Default::default();
        for d in &p.dispatches {
            *fam.entry(family(&d.kernel)).or_default() += d.gpu_ns.unwrap_or(0.0) / 1e6;
        }
        runs.push(fam);
        last = p;
    }
    let mut names: Vec<&'static str> = runs.iter().flat_map(|f| f.keys().copied()).collect();
    names.sort();
    names.dedup();
    let mut rows: Vec<(&str, f64)> = names
        .iter()
        .map(|n| {
            let mut v: Vec<f64> = runs.iter().map(|f| *f.get(n).unwrap_or(&0.0)).collect();
            (*n, median(&mut v))
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let inside: f64 = rows.iter().map(|r| r.1).sum();
    let mut out = String::new();
    for (n, ms) in rows.iter().copied().chain([(
        "graph bookkeeping above the backend",
        (step_ms - inside).max(0.0),
    )]) {
        out += &format!("  {n:<46} {ms:>8.3} ms {:>5.1}%\n", 100.0 * ms / step_ms);
    }
    let (useful, _) = last.flops();
    out += &format!(
        "  (step {step_ms:.3} ms median; products {:.1} MFLOP, {:.1} GFLOP/s over the step)\n",
        useful as f64 / 1e6,
        useful as f64 / (step_ms * 1e6)
    );
    Ok((out, last))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let gpu = Device::gpu()?;
    let Device::Gpu(ctx) = &gpu else {
        unreachable!("Device::gpu opens a GPU")
    };
    let adapter = ctx.adapter();
    println!(
        "GPU: {} ({}, {}; driver {})",
        adapter.name, adapter.backend, adapter.device_type, adapter.driver
    );
    println!(
        "     timestamp queries: {}; subgroups in reductions: {}; native f16: {}; shader runtime checks: {}",
        if ctx.has_timestamps() { "yes" } else { "no" },
        if ctx.uses_subgroups() { "yes" } else { "no" },
        if ctx.native_f16() { "yes" } else { "no" },
        if ctx.options().shader_checks {
            "on"
        } else {
            "off"
        }
    );
    if adapter.is_software {
        if args.require_hardware {
            anyhow::bail!(
                "--require-hardware: wgpu's best adapter, {}, is a software rasteriser; \
                 install the GPU's Vulkan/Metal/DX12 driver (or point VK_DRIVER_FILES at it)",
                adapter.name
            );
        }
        println!("     (a software adapter: it runs on the CPU, so expect it to lose to the CPU backend)");
    }
    let cpu = Device::cpu();
    let mut rows: Vec<Value> = Vec::new();
    println!(
        "\n{:<12} {:>14} {:>14} {:>9} {:>16} {:>14}",
        "workload", "CPU", "GPU", "GPU/CPU", "dispatches/step", "useful FLOPs"
    );
    let mut details = Vec::new();
    let mut cpu_profiles = Vec::new();
    for name in &args.workloads {
        let workload = Workload::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .ok_or_else(|| {
                anyhow::anyhow!("unknown workload {name} (mlp, cnn, rnn, transformer)")
            })?;
        let mut ms = [0.0f64; 2];
        let mut dispatches = 0;
        let mut profile = Profile::default();
        for (i, dev) in [&cpu, &gpu].into_iter().enumerate() {
            dev.manual_seed(0);
            let mut step = build(workload, &args.dtype, dev)?;
            ms[i] = step.median_ms(args.warmup, args.steps)?;
            if !dev.is_gpu() && args.profile {
                cpu_profiles.push((workload.name(), cpu_split(&mut step, &cpu, ms[0])?));
            }
            if dev.is_gpu() {
                let before = dev.counters().dispatches;
                step.step()?;
                dispatches = dev.counters().dispatches - before;
                let (done, p) = dev.profile(|| step.step())?;
                done?;
                profile = p;
            }
        }
        let useful = profile.useful_fraction();
        println!(
            "{:<12} {:>11.3} ms {:>11.3} ms {:>8.2}x {:>16} {:>13}",
            workload.name(),
            ms[0],
            ms[1],
            ms[1] / ms[0],
            dispatches,
            useful.map_or("-".into(), |u| format!("{:.1}%", 100.0 * u))
        );
        rows.push(json!({
            "workload": workload.name(),
            "dtype": args.dtype,
            "description": workload.description(),
            "cpu_ms": ms[0],
            "gpu_ms": ms[1],
            "gpu_over_cpu": ms[1] / ms[0],
            "dispatches_per_step": dispatches,
            "workgroups_per_step": profile.workgroups(),
            "useful_flop_fraction": useful,
            "gpu_kernel_ms": profile.gpu_ns().map(|ns| ns / 1e6),
        }));
        details.push((workload.name(), profile));
    }
    let mut memory = Vec::new();
    if args.memory {
        println!(
            "\nGPU memory, peak MiB held by tensors ({} against f32):\n{:<12} {:>10} {:>10} {:>7} {:>12} {:>12} {:>7}",
            args.dtype, "workload", "train f32", "train", "ratio", "infer f32", "infer", "ratio"
        );
        for name in &args.workloads {
            let Some(workload) = Workload::ALL.into_iter().find(|w| w.name() == name) else {
                continue;
            };
            let [t32, i32_] = peak_mib(workload, "f32", &gpu)?;
            let [t, i] = peak_mib(workload, &args.dtype, &gpu)?;
            println!(
                "{:<12} {:>10.2} {:>10.2} {:>6.2}x {:>12.2} {:>12.2} {:>6.2}x",
                name,
                t32,
                t,
                t / t32,
                i32_,
                i,
                i / i32_
            );
            memory.push(json!({
                "workload": name,
                "dtype": args.dtype,
                "train_f32_mib": t32,
                "train_mib": t,
                "infer_f32_mib": i32_,
                "infer_mib": i,
            }));
        }
    }
    let mut products = Vec::new();
    for &n in &args.matmul {
        let flop = 2.0 * (n as f64).powi(3);
        let mut gflops = [0.0f64; 2];
        let mut dispatches = 0;
        for (i, dev) in [&cpu, &gpu].into_iter().enumerate() {
            let a = Tensor::rand_seeded(&[n, n], 1, dev)?;
            let b = Tensor::rand_seeded(&[n, n], 2, dev)?;
            dev.sync()?;
            let before = dev.counters().dispatches;
            drop(no_grad(|| a.matmul(&b))?);
            dispatches = dev.counters().dispatches - before;
            gflops[i] = flop / (time_matmul(&a, &b, dev)? * 1e-3) / 1e9;
        }
        let plan = gpu_plan(&gpu, n, n, n, 1);
        println!(
            "{:<12} {:>8.1} GFLOP/s {:>8.1} GFLOP/s {:>8.2}x {:>16} {:>13}",
            format!("matmul {n}"),
            gflops[0],
            gflops[1],
            gflops[0] / gflops[1],
            dispatches,
            plan.map_or("-".into(), |p| format!(
                "{:.1}%",
                100.0 * p.useful_fraction()
            ))
        );
        products.push(json!({
            "n": n,
            "cpu_gflops": gflops[0],
            "gpu_gflops": gflops[1],
            "dispatches": dispatches,
            "kernel": plan.map(|p| format!("{:?}", p.kernel)),
            "splits": plan.map(|p| p.splits),
        }));
    }
    println!("\n(GPU/CPU: time ratio for workloads, CPU over GPU throughput for products; above 1 the CPU is faster)");
    println!(
        "\nmatrix products per training step on the GPU (kernel chosen, M x N x K x batches):"
    );
    for (name, profile) in &details {
        print_products(name, profile);
        if args.profile {
            println!("{profile}");
        }
    }
    for (name, (split, profile)) in &cpu_profiles {
        println!("\n{name} on the CPU backend, where a step's wall time goes:\n{split}{profile}");
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "adapter": {
                "name": adapter.name,
                "backend": adapter.backend,
                "device_type": adapter.device_type,
                "driver": adapter.driver,
                "software": adapter.is_software,
                "timestamps": ctx.has_timestamps(),
                "subgroups": ctx.uses_subgroups(),
                "native_f16": ctx.native_f16(),
            },
            "steps": args.steps,
            "warmup": args.warmup,
            "workloads": rows,
            "matmul": products,
            "memory": memory,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
