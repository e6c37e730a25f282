//! Helpers shared by the integration tests.
#![allow(dead_code)]

use wgrad::prelude::*;

/// The GPU every GPU test runs on. A machine without an adapter fails the test with a
/// message saying how to get one; it never passes by skipping.
pub fn gpu() -> Device {
    Device::gpu().unwrap_or_else(|e| {
        panic!(
            "this test needs a GPU adapter and found none ({e}). Install one: on Debian/Ubuntu \
             `apt-get install mesa-vulkan-drivers libvulkan1` gives the software Vulkan GPU lavapipe."
        )
    })
}

/// Both devices, CPU first.
pub fn devices() -> Vec<Device> {
    vec![Device::cpu(), gpu()]
}

pub fn scalar(v: f32, dev: &Device) -> Tensor {
    Tensor::scalar(v, dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap()
}

pub fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w} (tolerance {tol})"
        );
    }
}

/// Tests that read the GPU's counters hold this lock so that no other test in the same
/// binary changes them meanwhile.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
