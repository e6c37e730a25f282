//! Arithmetic operators on tensors (`&a + &b`, `&x * 2.0`, `1.0 - &x`, `-&x`) and the
//! `*_like` constructors, on both devices: values against plain Rust arithmetic,
//! gradients against the derivatives by hand, and errors (never panics) for mismatches.

mod common;

use common::assert_close;
use wgrad::prelude::*;

const XS: [f32; 5] = [-3.0, -0.5, 0.25, 2.0, 8.0];

fn x_on(dev: &Device) -> Tensor {
    Tensor::from_vec(XS.to_vec(), &[5], dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

common::test_device!(
    scalar_operators_match_rust_arithmetic_cpu,
    scalar_operators_match_rust_arithmetic_gpu,
    |dev| {
        let x = x_on(&dev);
        // (expression, expected values, expected d/dx)
        let cases: Vec<(&str, Tensor, Vec<f32>, f32)> = vec![
            (
                "x + 2",
                (&x + 2.0).unwrap(),
                XS.map(|v| v + 2.0).to_vec(),
                1.0,
            ),
            (
                "x - 2",
                (&x - 2.0).unwrap(),
                XS.map(|v| v - 2.0).to_vec(),
                1.0,
            ),
            (
                "x * 3",
                (&x * 3.0).unwrap(),
                XS.map(|v| v * 3.0).to_vec(),
                3.0,
            ),
            (
                "x / 3",
                (&x / 3.0).unwrap(),
                XS.map(|v| v / 3.0).to_vec(),
                1.0 / 3.0,
            ),
            (
                "2 + x",
                (2.0 + &x).unwrap(),
                XS.map(|v| 2.0 + v).to_vec(),
                1.0,
            ),
            (
                "1 - x",
                (1.0 - &x).unwrap(),
                XS.map(|v| 1.0 - v).to_vec(),
                -1.0,
            ),
            (
                "3 * x",
                (3.0 * &x).unwrap(),
                XS.map(|v| 3.0 * v).to_vec(),
                3.0,
            ),
            ("-x", (-&x).unwrap(), XS.map(|v| -v).to_vec(), -1.0),
        ];
        for (what, y, want, slope) in cases {
            assert_close(&values(&y), &want, 1e-6, 1e-6, what);
            x.zero_grad();
            y.sum().unwrap().backward().unwrap();
            let g = values(&x.grad().unwrap());
            assert_close(&g, &[slope; 5], 1e-6, 1e-6, &format!("d/dx {what}"));
        }
        // A scalar over a tensor: 2 / x, and d/dx = -2 / x^2.
        let y = (2.0 / &x).unwrap();
        assert_close(&values(&y), &XS.map(|v| 2.0 / v), 1e-6, 1e-6, "2 / x");
        x.zero_grad();
        y.sum().unwrap().backward().unwrap();
        let g = values(&x.grad().unwrap());
        assert_close(&g, &XS.map(|v| -2.0 / (v * v)), 1e-6, 1e-5, "d/dx 2 / x");
    }
);

common::test_device!(
    tensor_operators_broadcast_and_record_gradients_cpu,
    tensor_operators_broadcast_and_record_gradients_gpu,
    |dev| {
        let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::from_vec(vec![10.0f32, 20.0, 40.0], &[3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let sum = (&a + &b).unwrap();
        assert_eq!(values(&sum), [11.0, 22.0, 43.0, 14.0, 25.0, 46.0]);
        assert_eq!(
            values(&(&a - &b).unwrap()),
            [-9.0, -18.0, -37.0, -6.0, -15.0, -34.0]
        );
        assert_eq!(
            values(&(&a * &b).unwrap()),
            [10.0, 40.0, 120.0, 40.0, 100.0, 240.0]
        );
        assert_eq!(
            values(&(&b / &a).unwrap()),
            [10.0, 10.0, 40.0 / 3.0, 2.5, 4.0, 20.0 / 3.0]
        );
        // By value too, and chained: ((a * b) - a).sum(); d/da = b - 1, d/db = column sums of a.
        let y = (((a.clone() * b.clone()).unwrap() - &a).unwrap())
            .sum()
            .unwrap();
        y.backward().unwrap();
        assert_eq!(
            values(&a.grad().unwrap()),
            [9.0, 19.0, 39.0, 9.0, 19.0, 39.0]
        );
        assert_eq!(values(&b.grad().unwrap()), [5.0, 7.0, 9.0]);
    }
);

common::test_device!(
    operator_mismatches_are_errors_cpu,
    operator_mismatches_are_errors_gpu,
    |dev| {
        let a = Tensor::ones(&[2, 3], &dev).unwrap();
        let b = Tensor::ones(&[4], &dev).unwrap();
        assert!(matches!(&a + &b, Err(Error::Shape { .. })), "shapes");
        let other = if dev.is_gpu() {
            Device::cpu()
        } else {
            common::gpu()
        };
        let c = Tensor::ones(&[2, 3], &other).unwrap();
        assert!((&a * &c).is_err(), "devices");
        let idx = Tensor::from_vec(vec![1u32, 2], &[2], &dev).unwrap();
        assert!((&idx * 2.0).is_err(), "u32 scalar product");
        assert!((1.0 / &idx).is_err(), "u32 divisor");
    }
);

common::test_device!(
    like_constructors_keep_shape_dtype_and_device_cpu,
    like_constructors_keep_shape_dtype_and_device_gpu,
    |dev| {
        let x = Tensor::zeros(&[3, 4], &dev).unwrap();
        let ones = x.ones_like().unwrap();
        assert_eq!(ones.shape(), [3, 4]);
        assert_eq!(values(&ones), [1.0; 12]);
        let u = x.rand_like().unwrap();
        assert_eq!(
            (u.shape(), u.dtype(), u.device().is_gpu()),
            (&[3, 4][..], DType::F32, dev.is_gpu())
        );
        assert!(values(&u).iter().all(|v| (0.0..1.0).contains(v)));
        let n = x.randn_like().unwrap();
        assert_eq!(n.shape(), [3, 4]);
        assert!(values(&n).iter().all(|v| v.is_finite()));
        // Seeded: the same draws as rand() of the shape.
        dev.manual_seed(5);
        let a = values(&x.rand_like().unwrap());
        dev.manual_seed(5);
        let b = values(&Tensor::rand(&[3, 4], &dev).unwrap());
        assert_eq!(a, b);
        let idx = Tensor::from_vec(vec![1u32, 2], &[2], &dev).unwrap();
        assert!(matches!(idx.rand_like(), Err(Error::DType { .. })));
        assert!(matches!(idx.randn_like(), Err(Error::DType { .. })));
        assert_eq!(idx.ones_like().unwrap().to_vec::<u32>().unwrap(), [1, 1]);
    }
);

#[test]
fn like_constructors_keep_f64_on_the_cpu() {
    let x = Tensor::zeros(&[2], &Device::cpu())
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    assert_eq!(x.rand_like().unwrap().dtype(), DType::F64);
    assert_eq!(x.ones_like().unwrap().to_vec::<f64>().unwrap(), [1.0, 1.0]);
    // An f64 scalar stays f64 in an f64 tensor: 0.1 is not rounded to f32.
    let y = (&x.ones_like().unwrap() * 0.1).unwrap();
    assert_eq!(y.to_vec::<f64>().unwrap(), [0.1, 0.1]);
}
