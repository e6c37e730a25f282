//! Autocast (`wgrad::amp`): PyTorch's op lists on both devices, values equal to the
//! same ops on half-rounded inputs, f32 gradients for f32 master weights, the scope's
//! extent, and bad input.

mod common;

use wgrad::amp::{autocast, autocast_dtype, AutocastGuard};
use wgrad::prelude::*;

common::test_device!(
    /// Lower-precision ops give half outputs, f32-list ops f32 outputs, mixed inputs
    /// promote to f32, other ops keep their input's dtype.
    ops_follow_pytorchs_lists_cpu,
    ops_follow_pytorchs_lists_gpu,
    |dev| {
        let x = Tensor::randn_seeded(&[2, 3, 6, 6], 1, &dev).unwrap();
        let w = Tensor::randn_seeded(&[4, 3, 3, 3], 2, &dev).unwrap();
        let a = Tensor::randn_seeded(&[5, 8], 3, &dev).unwrap();
        let b = Tensor::randn_seeded(&[8, 4], 4, &dev).unwrap();
        let labels = Tensor::from_vec(vec![0u32, 3, 1, 2, 0], &[5], &dev).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            autocast(&dev, dtype, || {
                let y = a.matmul(&b).unwrap();
                assert_eq!(y.dtype(), dtype, "matmul");
                let c = x.conv2d(&w, None, Default::default()).unwrap();
                assert_eq!(c.dtype(), dtype, "conv2d");
                assert_eq!(a.linear(&b.transpose(0, 1).unwrap()).unwrap().dtype(), dtype);
                assert_eq!(y.relu().unwrap().dtype(), dtype, "relu keeps its input's");
                assert_eq!(y.softmax(-1).unwrap().dtype(), DType::F32, "softmax");
                assert_eq!(y.exp().unwrap().dtype(), DType::F32, "exp");
                assert_eq!(y.sum().unwrap().dtype(), DType::F32, "sum");
                assert_eq!(y.cross_entropy(&labels).unwrap().dtype(), DType::F32);
                let mixed = y.add(&Tensor::ones(&[5, 4], &dev).unwrap()).unwrap();
                assert_eq!(mixed.dtype(), DType::F32, "half + f32 promotes");
                // f32 ops on f32 inputs are untouched.
                assert_eq!(a.exp().unwrap().dtype(), DType::F32);
                assert_eq!(a.relu().unwrap().dtype(), DType::F32);
            })
            .unwrap();
        }
        // Outside the scope: f32 again, and the mix is an error naming both dtypes.
        assert_eq!(a.matmul(&b).unwrap().dtype(), DType::F32);
        let h = a.half().unwrap();
        let msg = h.add(&a).unwrap_err().to_string();
        assert!(msg.contains("F16") && msg.contains("F32"), "{msg}");
    }
);

common::test_device!(
    /// A product under autocast equals the product of the half-rounded inputs, rounded
    /// once; the f32 weights' gradients arrive in f32 and equal the same computation
    /// written out with explicit conversions.
    values_and_gradients_cpu,
    values_and_gradients_gpu,
    |dev| {
        let x = Tensor::randn_seeded(&[6, 10], 5, &dev).unwrap();
        let make_w = || {
            Tensor::randn_seeded(&[3, 10], 6, &dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap()
        };
        let (w1, w2) = (make_w(), make_w());
        let auto = autocast(&dev, DType::F16, || {
            x.linear(&w1).unwrap().softmax(-1).unwrap().sum().unwrap()
        })
        .unwrap();
        let explicit = x
            .half()
            .unwrap()
            .linear(&w2.half().unwrap())
            .unwrap()
            .float()
            .unwrap()
            .softmax(-1)
            .unwrap()
            .sum()
            .unwrap();
        assert_eq!(auto.item().unwrap(), explicit.item().unwrap());
        auto.backward().unwrap();
        explicit.backward().unwrap();
        let (g1, g2) = (w1.grad().unwrap(), w2.grad().unwrap());
        assert_eq!(g1.dtype(), DType::F32);
        assert_eq!(g1.to_vec::<f32>().unwrap(), g2.to_vec::<f32>().unwrap());
    }
);

#[test]
fn the_scope_is_per_device_and_restored() {
    let cpu = Device::cpu();
    let gpu = common::gpu();
    let a = Tensor::randn_seeded(&[2, 2], 1, &gpu).unwrap();
    {
        let _g = AutocastGuard::new(&cpu, DType::BF16).unwrap();
        assert_eq!(autocast_dtype(&cpu), Some(DType::BF16));
        assert_eq!(autocast_dtype(&gpu), None);
        // GPU tensors are not affected by a CPU scope.
        assert_eq!(a.matmul(&a).unwrap().dtype(), DType::F32);
        autocast(&cpu, DType::F16, || {
            assert_eq!(autocast_dtype(&cpu), Some(DType::F16));
        })
        .unwrap();
        assert_eq!(autocast_dtype(&cpu), Some(DType::BF16));
    }
    assert_eq!(autocast_dtype(&cpu), None);
    let err = autocast(&cpu, DType::F32, || ()).unwrap_err().to_string();
    assert!(err.contains("F32"), "{err}");
    // A panic inside the scope still restores it.
    let caught = std::panic::catch_unwind(|| {
        autocast(&Device::cpu(), DType::F16, || panic!("inside")).ok();
    });
    assert!(caught.is_err());
    assert_eq!(autocast_dtype(&cpu), None);
}

/// A small classifier trains under autocast with f32 master weights: the loss falls as
/// it does in f32 (the data are two Gaussian blobs).
#[test]
fn a_model_trains_under_autocast() {
    let dev = Device::cpu();
    let x = Tensor::randn_seeded(&[64, 4], 7, &dev).unwrap();
    let sign: Vec<f32> = (0..64)
        .map(|i| if i % 2 == 0 { 1.5 } else { -1.5 })
        .collect();
    let shift = Tensor::from_vec(sign.clone(), &[64, 1], &dev).unwrap();
    let x = x.add(&shift).unwrap();
    let labels: Vec<u32> = (0..64).map(|i| (i % 2) as u32).collect();
    let y = Tensor::from_vec(labels, &[64], &dev).unwrap();
    let model = Sequential::new()
        .add(Linear::new(&dev, 4, 16))
        .add(ReLU)
        .add(Linear::new(&dev, 16, 2));
    let mut opt = Sgd::new(model.parameters(), 0.1);
    let mut losses = Vec::new();
    for _ in 0..30 {
        let loss = autocast(&dev, DType::BF16, || model.forward(&x)?.cross_entropy(&y))
            .unwrap()
            .unwrap();
        assert_eq!(loss.dtype(), DType::F32);
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
        losses.push(loss.item().unwrap());
    }
    assert!(losses[29] < 0.5 * losses[0], "{losses:?}");
}

/// The shared workloads' steps under autocast (`gpu_vs_cpu --dtype`): finite losses
/// with and without the scaler; a dtype that is not half is an error.
#[test]
fn workload_steps_run_under_autocast() {
    use wgrad::workloads::Workload;
    let dev = Device::cpu();
    for (dtype, scaler) in [(DType::F16, true), (DType::BF16, false)] {
        let mut step = Workload::Mlp
            .build(&dev)
            .unwrap()
            .autocast(dtype, scaler)
            .unwrap();
        for _ in 0..3 {
            let loss = step.record().unwrap();
            assert_eq!(loss.dtype(), DType::F32);
            assert!(loss.item().unwrap().is_finite());
        }
    }
    assert!(Workload::Mlp
        .build(&dev)
        .unwrap()
        .autocast(DType::U32, false)
        .is_err());
}
