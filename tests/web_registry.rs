//! The op registry in a browser: every case runs on WebGPU and on the wasm CPU backend
//! inside headless Chromium, and the two must agree as natively (the GPU-against-CPU
//! rule in ARCHITECTURE.md), in f32 and with half-precision inputs. Compiled for `wasm32-unknown-unknown` only; run with
//! `cargo test --target wasm32-unknown-unknown --test web_registry` (see
//! docs/testing.md, "The browser tests"). In a browser nothing may block, so the GPU's
//! results are awaited.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
use wgrad::ops::registry::check::{
    compare, compare_half, half_skip, run_case, run_case_async, run_case_half_async,
    run_case_rounded, slack,
};
use wgrad::ops::registry::registry;
use wgrad::prelude::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The registry's entries `part` of `parts` (in order), each case on WebGPU against
/// the CPU; returns the number of cases.
async fn registry_part(part: usize, parts: usize) -> usize {
    let gpu = Device::gpu_async()
        .await
        .unwrap_or_else(|e| panic!("the browser must offer WebGPU: {e}"));
    let entries = registry();
    let per = entries.len().div_ceil(parts);
    let mut failures = Vec::new();
    let mut cases = 0;
    for entry in entries.iter().skip(part * per).take(per) {
        for (k, case) in entry.cases.iter().enumerate() {
            cases += 1;
            let what = format!("{} {}", entry.name, case.label);
            let cpu = run_case(entry, k, &Device::cpu()).unwrap_or_else(|e| panic!("{what}: {e}"));
            let got = run_case_async(entry, k, &gpu)
                .await
                .unwrap_or_else(|e| panic!("{what} on WebGPU: {e}"));
            compare(&what, &got, &cpu, slack(entry), &mut failures);
        }
    }
    let adapter = match &gpu {
        Device::Gpu(g) => g.adapter().name,
        Device::Cpu => unreachable!(),
    };
    console_log!(
        "registry part {}/{parts}: {cases} cases on WebGPU ({adapter}), {} mismatches",
        part + 1,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches on WebGPU:\n{}",
        failures.len(),
        failures.join("\n")
    );
    cases
}

#[wasm_bindgen_test]
async fn registry_part_1_matches_the_cpu_on_webgpu() {
    assert!(registry_part(0, 4).await > 0);
}

#[wasm_bindgen_test]
async fn registry_part_2_matches_the_cpu_on_webgpu() {
    assert!(registry_part(1, 4).await > 0);
}

#[wasm_bindgen_test]
async fn registry_part_3_matches_the_cpu_on_webgpu() {
    assert!(registry_part(2, 4).await > 0);
}

#[wasm_bindgen_test]
async fn registry_part_4_matches_the_cpu_on_webgpu() {
    assert!(registry_part(3, 4).await > 0);
}

/// The registry's entries `part` of `parts` with their float inputs in f16 and bf16 on
/// WebGPU (16-bit storage; kernels read it as `f16` where the browser offers
/// `shader-f16`, else as packed pairs, SwiftShader's case) against
/// the wasm CPU backend's f32 run on the rounded inputs, as `tests/half_registry.rs`
/// natively; returns the number of cases.
async fn half_registry_part(part: usize, parts: usize) -> usize {
    let gpu = Device::gpu_async()
        .await
        .unwrap_or_else(|e| panic!("the browser must offer WebGPU: {e}"));
    let entries = registry();
    let per = entries.len().div_ceil(parts);
    let mut failures = Vec::new();
    let mut cases = 0;
    for entry in entries.iter().skip(part * per).take(per) {
        for dtype in [DType::F16, DType::BF16] {
            for (k, case) in entry.cases.iter().enumerate() {
                if half_skip(entry.name, &case.label).is_some() {
                    continue;
                }
                cases += 1;
                let what = format!("{} [{}] {dtype:?}", entry.name, case.label);
                let want = run_case_rounded(entry, k, &Device::cpu(), dtype)
                    .unwrap_or_else(|e| panic!("{what}: reference: {e}"));
                let got = run_case_half_async(entry, k, &gpu, dtype)
                    .await
                    .unwrap_or_else(|e| panic!("{what} on WebGPU: {e}"));
                compare_half(&what, &got, &want, dtype, slack(entry), &mut failures);
            }
        }
    }
    console_log!(
        "half registry part {}/{parts}: {cases} cases on WebGPU, {} mismatches",
        part + 1,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches on WebGPU:\n{}",
        failures.len(),
        failures.join("\n")
    );
    cases
}

#[wasm_bindgen_test]
async fn half_registry_part_1_matches_the_cpu_on_webgpu() {
    assert!(half_registry_part(0, 2).await > 0);
}

#[wasm_bindgen_test]
async fn half_registry_part_2_matches_the_cpu_on_webgpu() {
    assert!(half_registry_part(1, 2).await > 0);
}

/// Nothing blocks in a browser: the blocking calls return an error that names the
/// async one instead of hanging the page, and the async ones work.
#[wasm_bindgen_test]
async fn blocking_calls_are_errors_in_the_browser() {
    let gpu = Device::gpu_async().await.unwrap();
    assert_eq!(
        Device::gpu().unwrap(),
        gpu,
        "gpu() returns the device gpu_async opened"
    );
    let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0], &[3], &gpu).unwrap();
    let y = x.relu().unwrap();
    let blocked = y.to_vec::<f32>().unwrap_err().to_string();
    assert!(blocked.contains("to_vec_async"), "{blocked}");
    assert!(gpu.sync().is_err());
    assert!(Device::gpu_with(wgrad::GpuOptions::from_env()).is_err());
    assert_eq!(y.to_vec_async::<f32>().await.unwrap(), [1.0, 0.0, 3.0]);
    assert_eq!(y.sum().unwrap().item_async().await.unwrap(), 4.0);
    gpu.sync_async().await.unwrap();
}
