//! What the GPU does in the shared training steps, read from the dispatches a profile
//! records (counts are deterministic; timings are not): no thread loops over more than
//! 1,024 elements (a product's workgroup over more than 8,192 values of k, the watchdog
//! bound; whether a long k loop on few workgroups should split K is the planner's cost
//! model's to weigh, tested in `matmul_plan.rs`), no reduction of more than 16K elements
//! runs on one workgroup, and at least 80% of the matrix products' executed arithmetic
//! is useful. And the profiler itself.

mod common;

use wgrad::backend::gpu::matmul_plan::MAX_K_PER_GROUP;
use wgrad::nn::Act;
use wgrad::ops::conv2d::ConvOptions;
use wgrad::prelude::*;
use wgrad::workloads::Workload;

/// A thread's serial loop, at most.
const MAX_SERIAL: u64 = 1024;
/// Elements one workgroup may reduce.
const MAX_PER_GROUP: u64 = 16 * 1024;

#[test]
fn the_training_steps_keep_every_kernel_to_the_shape_rules() {
    let _serial = common::exclusive();
    let gpu = common::gpu();
    for workload in Workload::ALL {
        gpu.manual_seed(0);
        let mut step = workload.build(&gpu).unwrap();
        step.step().unwrap();
        let (done, profile) = gpu.profile(|| step.step()).unwrap();
        done.unwrap();
        let name = workload.name();
        assert!(!profile.dispatches.is_empty());
        for d in &profile.dispatches {
            if d.loops {
                assert!(
                    d.serial > 0,
                    "{name}: {} loops but declared no serial work",
                    d.kernel
                );
            }
            let most = if d.product.is_some() {
                MAX_K_PER_GROUP as u64
            } else {
                MAX_SERIAL
            };
            assert!(
                d.serial <= most,
                "{name}: {} loops over {} elements per thread",
                d.kernel,
                d.serial
            );
            assert!(
                d.reduced <= MAX_PER_GROUP * d.workgroups,
                "{name}: {} reduces {} elements on {} workgroups",
                d.kernel,
                d.reduced,
                d.workgroups
            );
        }
        let useful = profile
            .useful_fraction()
            .expect("the step has matrix products");
        println!(
            "{name}: {} dispatches, {} workgroups, {:.1}% of product FLOPs useful",
            profile.dispatches.len(),
            profile.workgroups(),
            100.0 * useful
        );
        assert!(
            useful >= 0.8,
            "{name}: only {:.1}% of the products' FLOPs are useful",
            100.0 * useful
        );
    }
}

#[test]
fn a_profile_reports_each_kernel_with_its_grid_and_where_possible_its_time() {
    let _serial = common::exclusive();
    let gpu = common::gpu();
    let a = Tensor::rand_seeded(&[64, 48], 1, &gpu).unwrap();
    let b = Tensor::rand_seeded(&[48, 40], 2, &gpu).unwrap();
    let (c, profile) = gpu
        .profile(|| a.matmul(&b).unwrap().relu().unwrap().sum().unwrap())
        .unwrap();
    assert!(c.item().unwrap() > 0.0);
    let names: Vec<&str> = profile
        .dispatches
        .iter()
        .map(|d| d.kernel.as_str())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].starts_with("matmul_"), "{names:?}");
    assert_eq!(names[1], "relu_fwd");
    assert_eq!(names[2], "sum_fwd");
    let product = &profile.dispatches[0];
    assert_eq!(product.product, Some([64, 40, 48, 1]));
    assert_eq!(product.useful_flops, 2 * 64 * 40 * 48);
    assert!(product.executed_flops >= product.useful_flops);
    assert!(profile
        .dispatches
        .iter()
        .all(|d| d.workgroups > 0 && d.bytes_bound > 0));
    let Device::Gpu(ctx) = &gpu else {
        unreachable!()
    };
    assert_eq!(profile.timestamps, ctx.has_timestamps());
    if profile.timestamps {
        assert!(profile.dispatches.iter().all(|d| d.gpu_ns.is_some()));
        assert!(profile.gpu_ns().unwrap() > 0.0);
    } else {
        assert!(profile.dispatches.iter().all(|d| d.gpu_ns.is_none()));
    }
    let by_kernel = profile.by_kernel();
    assert_eq!(by_kernel.len(), 3);
    assert_eq!(by_kernel.iter().map(|k| k.dispatches).sum::<u64>(), 3);
    let table = profile.to_string();
    assert!(
        table.contains("relu_fwd") && table.contains("sum_fwd"),
        "{table}"
    );
    // Work outside the closure is not in the profile, and profiles do not nest.
    let (_, again) = gpu.profile(|| ()).unwrap();
    assert!(again.dispatches.is_empty());
    let nested = gpu.profile(|| gpu.profile(|| ()).map(|_| ()));
    assert!(matches!(nested, Ok((Err(Error::Argument { .. }), _))));
}

/// A profile holds the profiling thread's dispatches only, even while another thread
/// keeps the same device busy.
#[test]
fn a_profile_ignores_other_threads_work() {
    let _serial = common::exclusive();
    let gpu = common::gpu();
    let x = Tensor::ones(&[64], &gpu).unwrap();
    let started = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let busy = s.spawn(|| {
            started.wait();
            for _ in 0..200 {
                let y = x.exp().unwrap().mul(&x).unwrap();
                gpu.sync().unwrap();
                drop(y);
            }
        });
        started.wait();
        let seen: Vec<Vec<String>> = (0..20)
            .map(|_| {
                let (_, p) = gpu.profile(|| x.sum().unwrap()).unwrap();
                p.dispatches.into_iter().map(|d| d.kernel).collect()
            })
            .collect();
        busy.join().unwrap();
        for kernels in seen {
            assert_eq!(kernels, ["sum_fwd"]);
        }
    });
}

/// A CPU profile records each backend primitive the calling thread ran, with its own
/// wall time: a product with its FLOPs, a fused convolution with its products', the
/// buffer requests; it refuses to nest, and a panic inside one does not wedge the next.
#[test]
fn a_cpu_profile_times_each_primitive() {
    let cpu = Device::cpu();
    let x = Tensor::ones(&[10], &cpu).unwrap();
    let (s, p) = cpu.profile(|| x.sum().unwrap()).unwrap();
    assert_eq!(s.item().unwrap(), 10.0);
    assert!(p.timestamps);
    let ops = |p: &wgrad::Profile| -> Vec<String> {
        p.dispatches
            .iter()
            .filter(|d| !["alloc", "free"].contains(&d.kernel.as_str()))
            .map(|d| d.kernel.clone())
            .collect()
    };
    assert_eq!(ops(&p), ["sum"], "{p}");
    assert!(p
        .dispatches
        .iter()
        .all(|d| d.gpu_ns.is_some_and(|ns| ns >= 0.0)));
    assert_eq!(p.useful_fraction(), None);

    let img = Tensor::randn_seeded(&[4, 3, 10, 10], 1, &cpu).unwrap();
    let k = Tensor::randn_seeded(&[8, 3, 3, 3], 2, &cpu)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let a = Tensor::randn_seeded(&[16, 32], 3, &cpu).unwrap();
    let b = Tensor::randn_seeded(&[32, 8], 4, &cpu).unwrap();
    let o = ConvOptions {
        padding: (1, 1),
        ..ConvOptions::default()
    };
    let ((), p) = cpu
        .profile(|| {
            let y = wgrad::ops::conv2d::conv2d_act(&img, &k, None, o, Act::Relu).unwrap();
            y.max_pool2d((2, 2), (2, 2), (0, 0))
                .unwrap()
                .sum()
                .unwrap()
                .backward()
                .unwrap();
            drop(a.matmul(&b).unwrap());
        })
        .unwrap();
    let kernels: Vec<&str> = p.dispatches.iter().map(|d| d.kernel.as_str()).collect();
    for want in [
        "conv_act",
        "conv_act_backward",
        "max_pool",
        "max_pool_backward",
        "gemm",
    ] {
        assert!(kernels.contains(&want), "{want} missing from {kernels:?}");
    }
    let flops = |name: &str| -> u64 {
        p.dispatches
            .iter()
            .filter(|d| d.kernel == name)
            .map(|d| d.useful_flops)
            .sum()
    };
    // 8 x 100 outputs of 27 taps per image, 4 images; the backward needs only dW.
    assert_eq!(flops("conv_act"), 2 * 8 * 100 * 27 * 4);
    assert_eq!(flops("conv_act_backward"), 2 * 8 * 100 * 27 * 4);
    assert_eq!(flops("gemm"), 2 * 16 * 32 * 8);
    assert!(p.dispatches.iter().all(|d| d.gpu_ns.is_some()));
    assert!(p.to_string().contains("CPU ms"), "{p}");

    let nested = cpu.profile(|| cpu.profile(|| ()).map(|_| ())).unwrap().0;
    assert!(nested.is_err(), "CPU profiles do not nest");
    let panicked =
        std::panic::catch_unwind(|| Device::cpu().profile(|| panic!("inside a profile")));
    assert!(panicked.is_err());
    let ((), p) = cpu.profile(|| drop(x.sum().unwrap())).unwrap();
    assert_eq!(ops(&p), ["sum"], "a profile after a panic records again");
}

/// The kernels (with their override values) that the registry's products, the fused
/// layers' cases and two larger fused layers dispatch on `gpu`.
fn matmul_variants_run(gpu: &Device) -> Vec<String> {
    let gpu = gpu.clone();
    let mut seen: Vec<String> = Vec::new();
    for entry in wgrad::ops::registry::registry() {
        let fused = ["linear_act", "rnn_tanh", "rnn_relu"];
        if !(entry.name.starts_with("matmul")
            || entry.name == "linear"
            || fused.contains(&entry.name))
        {
            continue;
        }
        for case in &entry.cases {
            let inputs: Vec<Tensor> = case
                .inputs
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    Tensor::rand_seeded(&spec.shape, i as u64, &gpu)
                        .unwrap()
                        .requires_grad_(true)
                        .unwrap()
                })
                .collect();
            let (_, profile) = gpu
                .profile(|| {
                    let y = (case.run)(&inputs, &gpu).unwrap();
                    y.sum().unwrap().backward().unwrap();
                })
                .unwrap();
            seen.extend(profile.dispatches.into_iter().map(|d| d.kernel));
        }
    }
    // Fused layers big enough for the tiled kernels (the registry's cases are small).
    for (rows, inp, out) in [(256usize, 256usize, 256usize), (128, 192, 128)] {
        let x = Tensor::rand_seeded(&[rows, inp], 1, &gpu).unwrap();
        let w = Tensor::rand_seeded(&[out, inp], 2, &gpu)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::rand_seeded(&[out], 3, &gpu)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let w2 = Tensor::rand_seeded(&[out, out], 4, &gpu)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let (_, profile) = gpu
            .profile(|| {
                let y = x.linear_act(&w, Some(&b), Act::Tanh).unwrap();
                y.linear_act(&w2, None, Act::Relu)
                    .unwrap()
                    .sum()
                    .unwrap()
                    .backward()
                    .unwrap();
            })
            .unwrap();
        seen.extend(profile.dispatches.into_iter().map(|d| d.kernel));
    }
    seen
}

/// The extraction of a kernel's `EPI=` override value from its profile name.
fn epi_of(k: &str) -> Option<u32> {
    let at = k.find("EPI=")? + 4;
    k[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Every variant of the matmul family is reached by the op registry's product entries
/// (whose values `tests/gradcheck.rs` checks, planned both ways): both thread tiles of
/// the tiled kernel with each operand read along either axis, with and without vec4
/// loads, every small tile, every block with every layout, the fused parts, split-K with
/// its reduction, and sequential K passes (a single split past 8,192 values of k).
#[test]
fn the_registry_reaches_every_variant_of_the_matmul_family() {
    let _serial = common::exclusive();
    // Planned as on a hardware GPU (on lavapipe too): the tiled and small kernels.
    let hardware_plans = Device::gpu_with(wgrad::GpuOptions {
        software_kernels: false,
        ..wgrad::GpuOptions::from_env()
    })
    .unwrap();
    let seen = matmul_variants_run(&hardware_plans);
    let has = |part: &str| seen.iter().any(|k| k.contains(part));
    // vec4 loads apply along M for A and N for B (a K-contiguous operand is read as
    // scalars), so each layout is reached with the vec4 loads it can have.
    for tt in ["TT=8", "TT=4"] {
        let combos = [
            ("A_KMAJOR=1", "VEC_A=0"),
            ("A_KMAJOR=0", "VEC_A=0"),
            ("A_KMAJOR=0", "VEC_A=1"),
            ("B_KMAJOR=1", "VEC_B=0"),
            ("B_KMAJOR=0", "VEC_B=0"),
            ("B_KMAJOR=0", "VEC_B=1"),
        ];
        for (layout, vec) in combos {
            let ok = seen
                .iter()
                .any(|k| k.contains(tt) && k.contains(layout) && k.contains(vec));
            assert!(
                ok,
                "no product ran matmul_tile_fwd with {tt}, {layout}, {vec}"
            );
        }
    }
    for (sm, sn) in [(2, 2), (2, 4), (4, 2), (4, 4)] {
        assert!(
            has(&format!("matmul_small_fwd[SM={sm},SN={sn},")),
            "no product ran the {sm} x {sn} small tile"
        );
    }
    assert!(has("matmul_naive_fwd") && has("sum_fwd"));
    // The fused prologue (bit 2), row sums (bit 4) and epilogue activations (bits 8-11)
    // of both kernels, and the recurrent step's A read from the output.
    for kernel in ["matmul_tile_fwd", "matmul_small_fwd"] {
        for (bits, what) in [(2, "prologue"), (4, "row sums"), (4 << 8, "tanh epilogue")] {
            let ok = seen
                .iter()
                .filter(|k| k.starts_with(kernel))
                .any(|k| epi_of(k).is_some_and(|e| e & bits == bits));
            assert!(ok, "no product ran {kernel} with the fused {what}");
        }
    }
    assert!(has("A_IN_Y0=1"), "no recurrent step read A from its output");

    // The block kernels: forced by the registry on any adapter (every layout, with and
    // without vec4 loads), and planned on a software one with their fused parts.
    let gpu = common::gpu();
    let seen = matmul_variants_run(&gpu);
    let block: Vec<&String> = seen
        .iter()
        .filter(|k| k.starts_with("matmul_block_fwd"))
        .collect();
    let layout_of = |k: &str| -> u32 {
        let at = k.find("LAYOUT=").unwrap() + 7;
        k[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // LAYOUT bits: 1 A contiguous along K, 2 B along K, 4 / 8 vec4 loads of A / B.
    for (mask, want, what) in [
        (5, 5, "A along K with vec4 loads"),
        (5, 1, "A along K with scalar loads"),
        (5, 4, "A along M with vec4 loads"),
        (5, 0, "A along M with scalar loads"),
        (10, 10, "B along K with vec4 loads"),
        (10, 2, "B along K with scalar loads"),
        (10, 8, "B along N with vec4 loads"),
        (10, 0, "B along N with scalar loads"),
    ] {
        assert!(
            block.iter().any(|k| layout_of(k) & mask == want),
            "no product ran matmul_block_fwd with {what}"
        );
    }
    for (br, bc) in [(16, 16), (8, 8), (4, 16), (16, 4), (4, 4)] {
        assert!(
            block
                .iter()
                .any(|k| k.contains(&format!("[BR={br},BC={bc},"))),
            "no product ran the {br} x {bc} block"
        );
    }
    let Device::Gpu(ctx) = &gpu else {
        unreachable!()
    };
    if ctx.is_software() {
        for (bits, what) in [(2, "prologue"), (4, "row sums"), (4 << 8, "tanh epilogue")] {
            assert!(
                block
                    .iter()
                    .any(|k| epi_of(k).is_some_and(|e| e & bits == bits)),
                "no product ran matmul_block_fwd with the fused {what}"
            );
        }
        assert!(
            block.iter().any(|k| k.contains("A_IN_Y0=1")),
            "no recurrent step ran on a block kernel"
        );
    }
}

/// The budgets: dispatches per training step of the three shared workloads (each
/// below PyTorch CUDA's kernel count for the same step), counted on a device of this
/// test's own so that no other test's work lands in the count; and the steady state
/// creates no buffers, pipelines or bind groups.
#[test]
fn the_training_steps_keep_to_their_dispatch_budgets() {
    let gpu = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    for (workload, most) in [
        (Workload::Mlp, 12),
        (Workload::Cnn, 18),
        (Workload::Rnn, 100),
        // The bound is 80: q, k and v come from one product, the heads are
        // read in place, the residual adds ride in the products' epilogues, the weight
        // gradients are one dispatch each and the norms' affine gradients one.
        (Workload::Transformer, 68),
    ] {
        gpu.manual_seed(0);
        let mut step = workload.build(&gpu).unwrap();
        for _ in 0..3 {
            step.step().unwrap();
        }
        let before = gpu.counters();
        step.step().unwrap();
        let after = gpu.counters();
        let dispatches = after.dispatches - before.dispatches;
        println!("{}: {dispatches} dispatches per step", workload.name());
        assert!(
            dispatches <= most,
            "{}: {dispatches} dispatches per step, the budget is {most}",
            workload.name()
        );
        assert_eq!(
            (
                after.buffers_created,
                after.pipelines_created,
                after.bind_groups_created
            ),
            (
                before.buffers_created,
                before.pipelines_created,
                before.bind_groups_created
            ),
            "{}: a steady step created GPU objects",
            workload.name()
        );
    }
}
