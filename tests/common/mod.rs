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

/// One test per device from one body: `test_device!(name_cpu, name_gpu, |dev| { ... })`
/// defines the tests `name_cpu`, whose body runs with `dev` the CPU, and `name_gpu`, with
/// `dev` the GPU of [`gpu`]. Each device's result is its own test, so a failure on one
/// never hides the other's. Doc comments go first, inside the parentheses.
#[allow(unused_macros)]
macro_rules! test_device {
    ($(#[$attr:meta])* $cpu:ident, $gpu:ident, |$dev:ident| $body:block) => {
        $(#[$attr])*
        #[test]
        fn $cpu() {
            let $dev = ::wgrad::Device::cpu();
            $body
        }

        $(#[$attr])*
        #[test]
        fn $gpu() {
            let $dev = $crate::common::gpu();
            $body
        }
    };
}
#[allow(unused_imports)]
pub(crate) use test_device;

pub fn scalar(v: f64, dev: &Device) -> Tensor {
    Tensor::scalar(v, dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap()
}

pub fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// Asserts that `got` and `want` have the same length and that every element is within
/// `atol + rtol * |want|` of the wanted one (computed in `f64`); a failure names `what`,
/// the index, both values and the tolerance.
#[track_caller]
pub fn assert_close<T: Copy + Into<f64> + std::fmt::Display>(
    got: &[T],
    want: &[T],
    atol: impl Into<f64>,
    rtol: impl Into<f64>,
    what: &str,
) {
    let (atol, rtol) = (atol.into(), rtol.into());
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: lengths differ (got {}, want {})",
        got.len(),
        want.len()
    );
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g64, w64) = (g.into(), w.into());
        let tol = atol + rtol * w64.abs();
        let diff = (g64 - w64).abs();
        assert!(
            diff <= tol,
            "{what}[{i}]: got {g}, want {w}: difference {diff:e} over the tolerance {tol:e} \
             (atol {atol:e} + rtol {rtol:e} * |want|)"
        );
    }
}

/// Tests that read the GPU's counters hold this lock so that no other test in the same
/// binary changes them meanwhile.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tensors of `tests/fixtures/<file>` (each written by the `make_torch_*.py` script
/// beside it, with PyTorch), on the CPU.
pub fn torch_fixture(file: &str) -> Vec<(String, Tensor)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    wgrad::io::read_safetensors(&path, &Device::cpu())
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Tensor `name` of a fixture, on `dev`.
pub fn fixture_tensor(fixture: &[(String, Tensor)], name: &str, dev: &Device) -> Tensor {
    fixture
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not in the fixture"))
        .1
        .to(dev)
        .unwrap()
}

/// The entries of a fixture whose names start with `prefix`, without it (a state dict
/// stored as `case.sd.weight`, ...).
pub fn fixture_state(fixture: &[(String, Tensor)], prefix: &str) -> Vec<(String, Tensor)> {
    let state: Vec<(String, Tensor)> = fixture
        .iter()
        .filter_map(|(n, t)| n.strip_prefix(prefix).map(|k| (k.to_string(), t.clone())))
        .collect();
    assert!(
        !state.is_empty(),
        "no entries under {prefix} in the fixture"
    );
    state
}
