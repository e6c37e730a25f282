//! The lecture's worked examples, on both devices.

mod common;

use common::{assert_close, scalar, vec_f32};
use wgrad::prelude::*;

common::test_device!(
    add_then_multiply_gives_the_slides_gradients_cpu,
    add_then_multiply_gives_the_slides_gradients_gpu,
    |dev| {
        let (x, y, z) = (scalar(-2.0, &dev), scalar(5.0, &dev), scalar(-4.0, &dev));
        let q = x.add(&y).unwrap();
        let f = q.mul(&z).unwrap();
        f.backward().unwrap();
        assert_eq!(q.item().unwrap(), 3.0, "{dev:?}: q = x + y");
        assert_eq!(f.item().unwrap(), -12.0, "{dev:?}: f = q z");
        assert_eq!(x.grad().unwrap().item().unwrap(), -4.0, "{dev:?}: df/dx");
        assert_eq!(y.grad().unwrap().item().unwrap(), -4.0, "{dev:?}: df/dy");
        assert_eq!(z.grad().unwrap().item().unwrap(), 3.0, "{dev:?}: df/dz");
    }
);

common::test_device!(
    the_sigmoid_neuron_has_the_classic_gradients_cpu,
    the_sigmoid_neuron_has_the_classic_gradients_gpu,
    |dev| {
        let w = Tensor::from_vec(vec![2.0f32, -3.0, -3.0], &[3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let x = Tensor::from_vec(vec![-1.0f32, -2.0], &[2], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let one = Tensor::from_vec(vec![1.0f32], &[1], &dev).unwrap();
        let xa = Tensor::cat(&[&x, &one], 0).unwrap();
        let f = w.mul(&xa).unwrap().sum().unwrap().sigmoid().unwrap();
        f.backward().unwrap();
        let fv = f.item().unwrap() as f32;
        assert!((fv - 0.7311).abs() < 1e-4, "{dev:?}: f = {fv}");
        // sigma' = (1 - sigma) sigma is the local gradient every input gradient carries.
        let local = (1.0 - fv) * fv;
        assert!((local - 0.1966).abs() < 1e-4);
        assert_close(
            &vec_f32(&w.grad().unwrap()),
            &[-0.1966, -0.3932, 0.1966],
            1e-4,
            0.0,
            "df/dw",
        );
        assert_close(
            &vec_f32(&x.grad().unwrap()),
            &[0.3932, -0.5898],
            1e-4,
            0.0,
            "df/dx",
        );
    }
);
