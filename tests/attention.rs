//! Fused scaled-dot-product attention: the registry's cases on their own (finite
//! differences in f64, the GPU against the CPU), PyTorch's values, memory on the GPU,
//! dropout, and bad input.

mod common;

use wgrad::ops::registry::check::{compare, draw, make_inputs, projection, run_case, slack};
use wgrad::ops::registry::{registry, OpEntry};
use wgrad::prelude::*;

fn entry() -> OpEntry {
    registry()
        .into_iter()
        .find(|e| e.name == "scaled_dot_product_attention")
        .expect("the registry lists attention")
}

/// The registry's attention cases against central differences in f64 on the CPU.
#[test]
fn registry_cases_pass_finite_differences() {
    let entry = entry();
    let mut failures = Vec::new();
    for (k, case) in entry.cases.iter().enumerate() {
        let (values, mut rng) = draw(&entry, k);
        let dev = Device::cpu();
        let loss = |vals: &[Vec<f64>], w: &[f64]| -> f64 {
            let inputs = make_inputs(case, vals, DType::F64, &dev, false).unwrap();
            let out = (case.run)(&inputs, &dev).unwrap().to_f64_vec().unwrap();
            out.iter().zip(w).map(|(a, b)| a * b).sum()
        };
        let inputs = make_inputs(case, &values, DType::F64, &dev, true).unwrap();
        let out = (case.run)(&inputs, &dev).unwrap();
        let w = projection(&mut rng, out.numel());
        let wt = Tensor::from_vec(w.clone(), out.shape(), &dev).unwrap();
        out.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
        for i in 0..3 {
            let analytic = inputs[i].grad().unwrap().to_f64_vec().unwrap();
            for j in 0..values[i].len() {
                let h = 1e-6;
                let mut plus = values.clone();
                plus[i][j] += h;
                let mut minus = values.clone();
                minus[i][j] -= h;
                let numeric = (loss(&plus, &w) - loss(&minus, &w)) / (2.0 * h);
                if (analytic[j] - numeric).abs() > 1e-6 + 1e-4 * numeric.abs() {
                    failures.push(format!(
                        "{}: input {i}[{j}] analytic {} numeric {numeric}",
                        case.label, analytic[j]
                    ));
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The registry's attention cases on the GPU against the CPU.
#[test]
fn registry_cases_match_the_cpu_on_the_gpu() {
    let entry = entry();
    let gpu = common::gpu();
    let mut failures = Vec::new();
    for (k, case) in entry.cases.iter().enumerate() {
        let cpu = run_case(&entry, k, &Device::cpu()).unwrap();
        let got = run_case(&entry, k, &gpu).unwrap();
        compare(&case.label, &got, &cpu, slack(&entry), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
