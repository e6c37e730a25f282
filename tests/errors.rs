//! Bad input gives clear errors, found before any GPU work.

mod common;

use wgrad::prelude::*;

#[test]
fn a_shape_mismatch_names_the_op_and_both_shapes_before_any_gpu_work() {
    let _serial = common::exclusive();
    let dev = common::gpu();
    let a = Tensor::zeros(&[32, 64], &dev).unwrap();
    let b = Tensor::zeros(&[65, 10], &dev).unwrap();
    let before = dev.counters().dispatches;
    let err = a.matmul(&b).unwrap_err().to_string();
    assert_eq!(dev.counters().dispatches, before, "no kernel was recorded");
    assert!(
        err.starts_with("matmul:") && err.contains("(32x64 and 65x10)"),
        "{err}"
    );
    let err = a.add(&b).unwrap_err().to_string();
    assert!(
        err.starts_with("add:") && err.contains("[32, 64]") && err.contains("[65, 10]"),
        "{err}"
    );
    assert_eq!(dev.counters().dispatches, before);
}

#[test]
fn mixing_devices_is_a_clear_error() {
    let _serial = common::exclusive();
    let gpu = common::gpu();
    let a = Tensor::zeros(&[3], &gpu).unwrap();
    let b = Tensor::zeros(&[3], &Device::cpu()).unwrap();
    let err = a.mul(&b).unwrap_err();
    assert!(matches!(err, Error::DeviceMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("mul") && msg.contains("cpu") && msg.contains("gpu") && msg.contains(".to("),
        "{msg}"
    );
    // Moving one fixes it.
    assert_eq!(
        a.mul(&b.to(&gpu).unwrap())
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![0.0; 3]
    );
}

#[test]
fn wrong_dtypes_and_arguments_are_errors() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let x = Tensor::zeros(&[2, 3], &dev).unwrap();
    assert!(x.to_vec::<u32>().unwrap_err().to_string().contains("F32"));
    assert!(x
        .sum_dim(&[2], false)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(x.reshape(&[4]).unwrap_err().to_string().contains("[2, 3]"));
    assert!(x.dropout(1.5, true).is_err());
    let idx = Tensor::from_vec(vec![0u32, 5], &[2], &dev).unwrap();
    assert!(x
        .index_select(1, &idx)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    let t = Tensor::from_vec(vec![0u32, 3], &[2], &dev).unwrap();
    assert!(x
        .cross_entropy(&t)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(Tensor::from_vec(vec![1.0f64], &[1], &common::gpu()).is_err());
    assert!(Tensor::from_vec(vec![1.0f32; 5], &[2, 3], &dev)
        .unwrap_err()
        .to_string()
        .contains("5 values"));
}

/// Run in a child process with an adapter filter that matches nothing: the GPU helper
/// must fail, naming the package that provides a GPU. The child is this same test
/// binary running only `child_gpu_lookup`.
#[test]
fn a_gpu_test_without_an_adapter_fails_and_says_how_to_get_one() {
    let _serial = common::exclusive();
    if std::env::var("WGRAD_CHILD").is_ok() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_gpu_lookup",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WGPU_ADAPTER_NAME", "no-such-adapter-anywhere")
        .env("WGRAD_CHILD", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the child must fail:\n{text}");
    assert!(
        text.contains("mesa-vulkan-drivers"),
        "the failure says how to get an adapter:\n{text}"
    );
}

#[test]
fn child_gpu_lookup() {
    let _serial = common::exclusive();
    // In the parent run this finds the real adapter; in the child it must panic.
    let _ = common::gpu();
}
