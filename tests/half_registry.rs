//! Every op of the registry with its float inputs in f16 and in bf16, on the CPU and
//! the GPU: the output and the input gradients (in the half type) against the same case
//! run in f32 from the rounded inputs on the CPU, its results rounded to the half type
//! (`check::compare_half` states the tolerances; `check::half_skip` the cases left out
//! and why). `tests/web_registry.rs` runs the same in a browser.

mod common;

use wgrad::ops::registry::check::{
    compare_half, half_skip, run_case_half, run_case_rounded, slack,
};
use wgrad::ops::registry::registry;
use wgrad::prelude::*;

fn check(dev: &Device, dtypes: &[DType]) {
    let mut failures = Vec::new();
    let mut cases = 0;
    for entry in registry() {
        for &dtype in dtypes {
            for (k, case) in entry.cases.iter().enumerate() {
                if half_skip(entry.name, &case.label).is_some() {
                    continue;
                }
                cases += 1;
                let what = format!("{} [{}] {dtype:?}", entry.name, case.label);
                let want = match run_case_rounded(&entry, k, &Device::cpu(), dtype) {
                    Ok(w) => w,
                    Err(e) => {
                        failures.push(format!("{what}: reference: {e}"));
                        continue;
                    }
                };
                match run_case_half(&entry, k, dev, dtype) {
                    Ok(got) => {
                        compare_half(&what, &got, &want, dtype, slack(&entry), &mut failures)
                    }
                    Err(e) => failures.push(format!("{what}: {e}")),
                }
            }
        }
    }
    println!("{cases} half-precision cases on {}", dev.name());
    assert!(cases > 500 * dtypes.len(), "{cases} cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_op_takes_half_inputs_on_the_cpu() {
    check(&Device::cpu(), &[DType::F16, DType::BF16]);
}

// One test per dtype on the GPU: each compiles its own kernel variants (the products
// read f16 natively and bf16 as packed pairs), minutes on a software adapter's first
// run, so the two run side by side.

#[test]
fn every_op_takes_f16_inputs_on_the_gpu() {
    check(&common::gpu(), &[DType::F16]);
}

#[test]
fn every_op_takes_bf16_inputs_on_the_gpu() {
    check(&common::gpu(), &[DType::BF16]);
}
