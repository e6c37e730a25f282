//! The op registry's tests: every differentiable op's CPU backward agrees with central
//! finite differences in f64, and every op's GPU forward and backward agree with the CPU
//! in f32, on every shape and broadcasting pattern the registry lists.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::SeedableRng;
use wgrad::ops::registry::check::{compare, draw, make_inputs, projection, run_case, slack};
use wgrad::ops::registry::{registry, Domain, OpCase};
use wgrad::prelude::*;
use wgrad::GpuOptions;

fn loss_f64(case: &OpCase, values: &[Vec<f64>], w: &[f64]) -> f64 {
    let dev = Device::cpu();
    let inputs = make_inputs(case, values, DType::F64, &dev, false).unwrap();
    let out = (case.run)(&inputs, &dev).unwrap();
    let o = out.to_f64_vec().unwrap();
    o.iter().zip(w).map(|(a, b)| a * b).sum()
}

#[test]
fn every_differentiable_op_passes_finite_differences_in_f64() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for entry in registry().iter().filter(|e| e.differentiable) {
        for (k, case) in entry.cases.iter().enumerate() {
            let (values, mut rng) = draw(entry, k);
            let dev = Device::cpu();
            let inputs = make_inputs(case, &values, DType::F64, &dev, true).unwrap();
            let out = (case.run)(&inputs, &dev)
                .unwrap_or_else(|e| panic!("{} {}: {e}", entry.name, case.label));
            assert_eq!(
                out.dtype(),
                DType::F64,
                "{} {}: the CPU kernel must run in f64",
                entry.name,
                case.label
            );
            let w = projection(&mut rng, out.numel());
            let wt = Tensor::from_vec(w.clone(), out.shape(), &dev).unwrap();
            out.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
            for (i, spec) in case.inputs.iter().enumerate() {
                if !spec.differentiable() {
                    continue;
                }
                let analytic = inputs[i]
                    .grad()
                    .unwrap_or_else(|| {
                        panic!("{} {}: input {i} got no gradient", entry.name, case.label)
                    })
                    .to_f64_vec()
                    .unwrap();
                let h = 1e-6;
                for j in 0..values[i].len() {
                    let mut plus = values.clone();
                    plus[i][j] += h;
                    let mut minus = values.clone();
                    minus[i][j] -= h;
                    let numeric =
                        (loss_f64(case, &plus, &w) - loss_f64(case, &minus, &w)) / (2.0 * h);
                    checked += 1;
                    if (analytic[j] - numeric).abs() > 1e-6 + 1e-4 * numeric.abs() {
                        failures.push(format!(
                            "{} {}: d/d input{i}[{j}] analytic {} numeric {numeric}",
                            entry.name, case.label, analytic[j]
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} gradient entries disagree:\n{}",
        failures.len(),
        failures[..failures.len().min(30)].join("\n")
    );
    assert!(
        checked > 10_000,
        "only {checked} gradient entries were checked"
    );
    println!("finite differences: {checked} gradient entries agree");
}

/// The kernels each registry entry launched on the GPU (from `Device::profile`, variants
/// folded into their entry point), merged over the GPU configurations run so far, and
/// how many have run.
type Launched = BTreeMap<&'static str, BTreeSet<String>>;
static LAUNCHED: Mutex<(usize, Launched)> = Mutex::new((0, BTreeMap::new()));

/// Every registry case on `gpu` against the CPU (the rule in ARCHITECTURE.md, "How every
/// number is trusted"; see `wgrad::ops::registry::check::compare`); returns the number of
/// cases. The dispatches each case makes are recorded: once both GPU configurations
/// (the defaults, and no subgroups with hardware plans) have run, every kernel an entry
/// claims must have been launched by its cases in one of them.
fn registry_matches_the_cpu(gpu: &Device) -> usize {
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut launched = Launched::new();
    for entry in registry() {
        for (k, case) in entry.cases.iter().enumerate() {
            cases += 1;
            let what = format!("{} {}", entry.name, case.label);
            let cpu = run_case(&entry, k, &Device::cpu()).unwrap_or_else(|e| panic!("{what}: {e}"));
            let (gpu_r, profile) = gpu
                .profile(|| run_case(&entry, k, gpu))
                .unwrap_or_else(|e| panic!("{what}: profile: {e}"));
            let gpu_r = gpu_r.unwrap_or_else(|e| panic!("{what}: {e}"));
            launched.entry(entry.name).or_default().extend(
                profile
                    .dispatches
                    .iter()
                    .map(|d| d.kernel.split('[').next().unwrap_or_default().to_string()),
            );
            compare(&what, &gpu_r, &cpu, slack(&entry), &mut failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches on {}:\n{}",
        failures.len(),
        gpu.name(),
        failures.join("\n")
    );
    assert!(cases > 150, "only {cases} cases ran");
    let mut all = LAUNCHED.lock().unwrap_or_else(|e| e.into_inner());
    all.0 += 1;
    for (name, kernels) in launched {
        all.1.entry(name).or_default().extend(kernels);
    }
    if all.0 == 2 {
        let mut unlaunched = Vec::new();
        for e in registry() {
            let got = all.1.get(e.name).cloned().unwrap_or_default();
            for k in e.kernels.iter().filter(|k| !got.contains(**k)) {
                unlaunched.push(format!("{} claims {k} (launched {got:?})", e.name));
            }
        }
        assert!(
            unlaunched.is_empty(),
            "registry entries claim kernels their cases never launch: {unlaunched:?}"
        );
    }
    cases
}

#[test]
fn every_op_matches_the_cpu_on_the_gpu_forward_and_backward() {
    let gpu = common::gpu();
    let cases = registry_matches_the_cpu(&gpu);
    println!("GPU vs CPU: {cases} cases agree on {}", gpu.name());
}

/// The other side of the GPU options that choose between kernels: reductions that
/// combine through workgroup memory instead of subgroup operations, and, on a software
/// adapter, matrix products planned as on a hardware GPU (the tiled and small kernels,
/// with their fused parts, instead of the block kernels). The default test above runs
/// the defaults; this one must agree with the CPU as well.
#[test]
fn every_op_matches_the_cpu_without_subgroups_and_with_hardware_plans() {
    let options = GpuOptions {
        subgroups: false,
        software_kernels: false,
        ..GpuOptions::from_env()
    };
    let gpu = Device::gpu_with(options).unwrap_or_else(|e| panic!("a GPU device: {e}"));
    let Device::Gpu(ctx) = &gpu else {
        unreachable!()
    };
    assert!(!ctx.uses_subgroups());
    let cases = registry_matches_the_cpu(&gpu);
    println!(
        "no subgroups, hardware matmul plans: {cases} cases agree on {}",
        gpu.name()
    );
}

/// Shader modules are created without naga's runtime checks (bounds clamps, loop
/// counters, guarded division) because every kernel guards its own indices; with the
/// checks on, every registry case must give bit-identical results.
#[test]
fn every_op_gives_identical_results_with_and_without_shader_checks() {
    let open = |shader_checks| {
        Device::gpu_with(GpuOptions {
            shader_checks,
            ..GpuOptions::from_env()
        })
        .unwrap_or_else(|e| panic!("a GPU device: {e}"))
    };
    let (checked, unchecked) = (open(true), open(false));
    let mut cases = 0;
    let mut failures = Vec::new();
    for entry in registry() {
        for (k, case) in entry.cases.iter().enumerate() {
            cases += 1;
            let a = run_case(&entry, k, &checked).unwrap();
            let b = run_case(&entry, k, &unchecked).unwrap();
            let same = a.shape == b.shape
                && a.values.len() == b.values.len()
                && a.values.iter().zip(&b.values).all(|(x, y)| {
                    x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
                });
            if !same {
                failures.push(format!("{} {}", entry.name, case.label));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "results differ with and without shader checks:\n{}",
        failures.join("\n")
    );
    println!("{cases} cases bit-identical with and without shader runtime checks");
}

common::test_device!(
    huge_logits_give_finite_cross_entropy_on_both_devices_cpu,
    huge_logits_give_finite_cross_entropy_on_both_devices_gpu,
    |dev| {
        let mut rng = StdRng::seed_from_u64(5);
        let spec = wgrad::ops::registry::InputSpec {
            shape: vec![6, 9],
            domain: Domain::Huge,
        };
        let mut v: Vec<f32> = spec.values(&mut rng).iter().map(|&x| x as f32).collect();
        v[0] = 1000.0;
        v[1] = -1000.0;
        let logits = Tensor::from_vec(v.clone(), &[6, 9], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let t = Tensor::from_vec(vec![0u32, 1, 8, 3, 4, 5], &[6], &dev).unwrap();
        let loss = logits.cross_entropy(&t).unwrap();
        loss.backward().unwrap();
        let l = loss.item().unwrap();
        // Reference in f64 by log-sum-exp.
        let mut want = 0.0;
        for (r, row) in v.chunks(9).enumerate() {
            let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            want += lse - row[[0, 1, 8, 3, 4, 5][r]] as f64;
        }
        want /= 6.0;
        assert!(
            l.is_finite() && (l - want).abs() <= 1e-3 + 1e-5 * want.abs(),
            "{dev:?}: {l} vs {want}"
        );
        let g = logits.grad().unwrap().to_vec::<f32>().unwrap();
        assert!(
            g.iter().all(|x| x.is_finite()),
            "{dev:?}: non-finite gradient"
        );
        for row in g.chunks(9) {
            assert!(
                row.iter().sum::<f32>().abs() < 1e-5,
                "softmax - onehot sums to 0 in each row"
            );
        }
    }
);

#[test]
fn the_registry_covers_every_shader_entry_point() {
    let listed: Vec<&str> = registry()
        .iter()
        .flat_map(|e| e.kernels.iter().copied())
        .collect();
    let mut missing = Vec::new();
    for shader in wgrad::ops::shader_sources() {
        let (file, src) = (shader.name, shader.source);
        let mut lines = src.lines().peekable();
        while let Some(line) = lines.next() {
            if line.trim_start().starts_with("@compute") {
                let next = lines.next().unwrap_or_default();
                let name = next
                    .trim_start()
                    .trim_start_matches("fn ")
                    .split('(')
                    .next()
                    .unwrap()
                    .to_string();
                if !listed.contains(&name.as_str()) {
                    missing.push(format!("{file}::{name}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "entry points no registry op exercises: {missing:?}"
    );
}
