//! Cases found in review: each was a crash or a wrong answer once.

mod common;

use wgrad::prelude::*;

#[test]
fn copy_from_a_view_of_itself_is_a_no_op() {
    let _serial = common::exclusive();
    for dev in common::devices() {
        let p = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &dev).unwrap();
        p.copy_from(&p.detach()).unwrap();
        p.copy_from(&p.reshape(&[3]).unwrap()).unwrap();
        assert_eq!(p.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
    }
}

#[test]
fn zero_dimensional_tensors_reject_dimension_arguments() {
    let s = Tensor::scalar(1.0, &Device::cpu()).unwrap();
    assert!(s.narrow(0, 0, 1).is_err());
    assert!(s.squeeze(0).is_err());
    assert!(s.transpose(0, 0).is_err());
    assert!(Tensor::cat(&[&s, &s], 0).is_err());
    // softmax of a scalar is defined (one row of one element), as in PyTorch.
    assert_eq!(s.softmax(-1).unwrap().item().unwrap(), 1.0);
}

#[test]
fn softmax_and_cross_entropy_handle_rows_near_the_float_limit() {
    let _serial = common::exclusive();
    for dev in common::devices() {
        let x = Tensor::from_vec(vec![-3.3e38f32, -3.4e38, -3.39e38], &[1, 3], &dev).unwrap();
        let p = x.softmax(1).unwrap().to_vec::<f32>().unwrap();
        assert!((p[0] - 1.0).abs() < 1e-6 && p[1] == 0.0, "{dev:?}: {p:?}");
        let t = Tensor::from_vec(vec![0u32], &[1], &dev).unwrap();
        let l = x.cross_entropy(&t).unwrap().item().unwrap();
        assert!(l.abs() < 1e-6, "{dev:?}: {l}");
    }
}

#[test]
fn matmul_with_more_batches_than_one_grid_dimension_holds() {
    let _serial = common::exclusive();
    let dev = common::gpu();
    let batches = 65_535 + 7;
    let a: Vec<f32> = (0..batches * 2).map(|i| (i % 5) as f32).collect();
    let b: Vec<f32> = (0..batches * 2).map(|i| (i % 3) as f32).collect();
    let ta = Tensor::from_vec(a.clone(), &[batches, 1, 2], &dev).unwrap();
    let tb = Tensor::from_vec(b.clone(), &[batches, 2, 1], &dev).unwrap();
    let c = ta.matmul(&tb).unwrap().to_vec::<f32>().unwrap();
    for i in [0, 1, 65_534, 65_535, 65_536, batches - 1] {
        let want = a[2 * i] * b[2 * i] + a[2 * i + 1] * b[2 * i + 1];
        assert_eq!(c[i], want, "batch {i}");
    }
}
