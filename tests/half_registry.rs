//! Every op of the registry with its float inputs in f16 and in bf16, on the CPU and
//! the GPU: the output and the input gradients (in the half type) against the same case
//! run in f32 from the rounded inputs on the CPU, its results rounded to the half type.
//! An op that computes in f32 and rounds once matches that to within the f32 run's own
//! device differences plus one rounding: one unit in the last place of the half type
//! (2^-10 for f16, 2^-7 for bf16) relative for outputs, four for gradients, on top of
//! the f32 registry's absolute tolerance. A case made of several ops (a stacked RNN,
//! logits scaled inside the case) rounds between them, as PyTorch's half ops do, so
//! each result vector also allows 8 units of its largest magnitude.

mod common;

use wgrad::ops::registry::check::{run_case_half, run_case_rounded, slack};
use wgrad::ops::registry::registry;
use wgrad::prelude::*;

/// Entries that take no half inputs yet, and why: in-place updates of half tensors
/// (optimizer steps, gradient clipping, the in-place ops) are not built; mixed precision
/// keeps f32 master weights, as PyTorch's AMP does (so the gradient scaler unscales f32
/// gradients only).
const SKIP: &[&str] = &[
    "grad_scaler",
    "inplace_updates",
    "clip_grad_norm",
    "sgd_step",
    "sgd_plain_step",
    "sgd_nesterov_step",
    "adam_step",
    "adamw_step",
    "adagrad_step",
    "adadelta_step",
    "rmsprop_step",
    "rmsprop_momentum_step",
    "rmsprop_centered_step",
    "rmsprop_centered_momentum_step",
];

/// Cases whose half semantics differ from their f32 reference by design: `rms_norm`
/// with `eps: None` takes the input dtype's epsilon (PyTorch's `finfo(dtype).eps`), and
/// attention's "logits x100" case scales q and k by 10 inside the case, which in half
/// precision rounds the scaled inputs before the near-one-hot softmax (PyTorch's half
/// ops round there too), so its gradients follow other keys.
fn differs_by_design(entry: &str, label: &str) -> bool {
    (entry == "rms_norm" && label.contains("eps None"))
        || (entry == "scaled_dot_product_attention" && label.contains("logits x100"))
}

fn close(got: f64, want: f64, rtol: f64, atol: f64) -> bool {
    if got.is_nan() || want.is_nan() {
        return got.is_nan() && want.is_nan();
    }
    if got.is_infinite() || want.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= atol + rtol * want.abs()
}

fn check(dev: &Device) {
    let mut failures = Vec::new();
    let mut cases = 0;
    for entry in registry() {
        if SKIP.contains(&entry.name) {
            continue;
        }
        for dtype in [DType::F16, DType::BF16] {
            let rtol = match dtype {
                DType::F16 => 2f64.powi(-10),
                _ => 2f64.powi(-7),
            };
            let atol = 1e-4 * slack(&entry);
            for (k, case) in entry.cases.iter().enumerate() {
                if differs_by_design(entry.name, &case.label) {
                    continue;
                }
                cases += 1;
                let want = match run_case_rounded(&entry, k, &Device::cpu(), dtype) {
                    Ok(w) => w,
                    Err(e) => {
                        failures.push(format!("{} {dtype:?}: reference: {e}", case.label));
                        continue;
                    }
                };
                let got = match run_case_half(&entry, k, dev, dtype) {
                    Ok(g) => g,
                    Err(e) => {
                        failures.push(format!("{} [{}] {dtype:?}: {e}", entry.name, case.label));
                        continue;
                    }
                };
                if got.shape != want.shape {
                    failures.push(format!(
                        "{} {dtype:?}: shape {:?} vs {:?}",
                        case.label, got.shape, want.shape
                    ));
                    continue;
                }
                'values: for (i, (g, w)) in got.values.iter().zip(&want.values).enumerate() {
                    let largest = w
                        .iter()
                        .filter(|x| x.is_finite())
                        .fold(0f64, |m, x| m.max(x.abs()));
                    let tol = atol + 8.0 * rtol * largest;
                    for (j, (&a, &b)) in g.iter().zip(w).enumerate() {
                        let r = if i == 0 { rtol } else { 4.0 * rtol };
                        if !close(a, b, r, tol) {
                            failures.push(format!(
                                "{} [{}] {dtype:?} result {i}[{j}]: {a} vs {b}",
                                entry.name, case.label
                            ));
                            break 'values;
                        }
                    }
                }
            }
        }
    }
    println!("{cases} half-precision cases on {}", dev.name());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_op_takes_half_inputs_on_the_cpu() {
    check(&Device::cpu());
}

#[test]
fn every_op_takes_half_inputs_on_the_gpu() {
    check(&common::gpu());
}
