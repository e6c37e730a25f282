//! The graph: accumulation, no_grad, deep chains, freeing saved values, misuse errors.

mod common;

use wgrad::prelude::*;

fn leaf(v: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap()
}

common::test_device!(
    a_tensor_used_twice_accumulates_both_gradients_cpu,
    a_tensor_used_twice_accumulates_both_gradients_gpu,
    |dev| {
        let _serial = common::exclusive();
        let x = leaf(&[3.0], &[], &dev);
        // y = x * x + x  =>  dy/dx = 2x + 1 = 7
        let y = x.mul(&x).unwrap().add(&x).unwrap();
        y.backward().unwrap();
        assert_eq!(x.grad().unwrap().item().unwrap(), 7.0, "{dev:?}");
        // A second graph adds to the leaf's gradient, as in PyTorch.
        x.mul_scalar(2.0).unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().item().unwrap(), 9.0, "{dev:?}");
        x.zero_grad();
        assert!(x.grad().is_none());
    }
);

#[test]
fn no_grad_records_nothing() {
    let _serial = common::exclusive();
    let x = leaf(&[1.0, 2.0], &[2], &Device::cpu());
    let y = no_grad(|| x.exp().unwrap());
    assert!(!y.requires_grad() && y.grad_fn().is_none());
    assert!(wgrad::is_grad_enabled());
    let z = x.exp().unwrap();
    assert_eq!(z.grad_fn().unwrap().name(), "exp");
}

#[test]
fn a_chain_of_100_000_ops_backpropagates_and_drops_without_overflow() {
    let _serial = common::exclusive();
    // Test threads have small stacks: recursion over 100,000 nodes would overflow.
    let x = leaf(&[0.5], &[], &Device::cpu());
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = y.affine(1.0, 0.0).unwrap();
    }
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().item().unwrap(), 1.0);
    drop(y); // unlinks the 100,000 nodes iteratively
}

#[test]
fn backward_twice_through_freed_values_is_an_error() {
    let _serial = common::exclusive();
    let x = leaf(&[1.0], &[], &Device::cpu());
    let y = x.exp().unwrap();
    y.backward().unwrap();
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("second time"), "{err}");
}

#[test]
fn backward_needs_a_scalar_or_an_explicit_gradient() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let x = leaf(&[1.0, 2.0, 3.0], &[3], &dev);
    let y = x.mul(&x).unwrap();
    assert!(y.backward().unwrap_err().to_string().contains("scalar"));
    let g = Tensor::from_vec(vec![1.0f32, 0.5, 0.0], &[3], &dev).unwrap();
    y.backward_with(&g).unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![2.0, 2.0, 0.0]
    );
}

#[test]
fn detach_stops_the_gradient() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let x = leaf(&[2.0], &[], &dev);
    let y = x.mul(&x.detach()).unwrap();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().item().unwrap(), 2.0);
}

#[test]
fn saved_values_are_freed_once_backward_has_used_them() {
    let _serial = common::exclusive();
    let dev = common::gpu();
    let x = leaf(&vec![0.1; 4096], &[4096], &dev);
    let before = dev.counters().bytes_in_use;
    let a = x.exp().unwrap();
    let b = a.exp().unwrap();
    let c = b.sum().unwrap();
    drop((a, b));
    // The intermediates are alive only as saved values of c's graph.
    let held = dev.counters().bytes_in_use;
    assert!(
        held >= before + 2 * 4096 * 4,
        "intermediates are held: {before} -> {held}"
    );
    c.backward().unwrap();
    x.zero_grad();
    let after = dev.counters().bytes_in_use;
    assert!(
        after + 2 * 4096 * 4 <= held,
        "backward freed the saved values: {held} -> {after}"
    );
}
