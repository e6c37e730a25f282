//! CPU results do not depend on the thread count: two training steps of the `cnn`
//! workload (products and convolutions large enough to split over the pool) with every
//! thread, in this process, and with one, in a child process of this test binary run
//! with `WGRAD_NUM_THREADS=1`, leave the same parameters within f32 rounding.

use wgrad::prelude::*;
use wgrad::workloads::Workload;

const TEST: &str = "two_steps_agree_with_one_thread_and_with_all";

/// The parameters after two seeded training steps on the CPU.
fn two_steps() -> Vec<f32> {
    let dev = Device::cpu();
    dev.manual_seed(5);
    let mut step = Workload::Cnn.build(&dev).unwrap();
    step.step().unwrap();
    step.step().unwrap();
    step.model()
        .parameters()
        .iter()
        .flat_map(|p| p.to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn two_steps_agree_with_one_thread_and_with_all() {
    if std::env::var_os("WGRAD_THREADS_CHILD").is_some() {
        let bits: Vec<String> = two_steps()
            .iter()
            .map(|x| x.to_bits().to_string())
            .collect();
        println!("VALUES {}", bits.join(","));
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env("WGRAD_THREADS_CHILD", "1")
        .env("WGRAD_NUM_THREADS", "1")
        .output()
        .expect("the test binary runs itself");
    let text = String::from_utf8_lossy(&out.stdout);
    // The harness prints `test NAME ... ` before the test's own output.
    let values = text
        .split_once("VALUES ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the one-thread child printed no values:\n{text}"));
    let one: Vec<f32> = values
        .split(',')
        .map(|b| f32::from_bits(b.parse().unwrap()))
        .collect();
    let all = two_steps();
    assert_eq!(one.len(), all.len());
    for (i, (a, b)) in all.iter().zip(&one).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 + 1e-5 * b.abs(),
            "parameter element {i}: {a} with all threads, {b} with one"
        );
    }
}
