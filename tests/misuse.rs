//! The mistakes and accidents a user can make, one case per category: each
//! must come back as a typed error or PyTorch's result, never a panic, an abort, a
//! segfault or a silently wrong value. Every case runs on both devices unless it says
//! otherwise.

mod common;

use common::vec_f32;
use wgrad::ops::conv2d::ConvOptions;
use wgrad::prelude::*;

fn t(v: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_slice(v, shape, dev).unwrap()
}

fn idx(v: &[u32], dev: &Device) -> Tensor {
    Tensor::from_slice(v, &[v.len()], dev).unwrap()
}

fn is_oom(r: Result<Tensor>) -> bool {
    matches!(r, Err(Error::OutOfMemory { .. }))
}

// ---- empty tensors (the CPU used to segfault or panic) -------------------------------

common::test_device!(
    products_with_a_zero_sized_dimension_are_empty_or_zero_cpu,
    products_with_a_zero_sized_dimension_are_empty_or_zero_gpu,
    |dev| {
        let a = Tensor::zeros(&[0, 2, 3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::ones(&[3, 4], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = a.matmul(&b).unwrap();
        assert_eq!(y.shape(), [0, 2, 4], "{dev:?}");
        y.sum().unwrap().backward().unwrap();
        assert_eq!(a.grad().unwrap().shape(), [0, 2, 3]);
        assert_eq!(vec_f32(&b.grad().unwrap()), vec![0.0; 12], "{dev:?}");
        // K = 0: a [2, 4] of zeros, as PyTorch.
        let a = Tensor::zeros(&[2, 0], &dev).unwrap();
        let b = Tensor::zeros(&[0, 4], &dev).unwrap();
        assert_eq!(vec_f32(&a.matmul(&b).unwrap()), vec![0.0; 8], "{dev:?}");
        let x = Tensor::zeros(&[0, 3], &dev).unwrap();
        let w = Tensor::ones(&[5, 3], &dev).unwrap();
        assert_eq!(x.linear(&w).unwrap().shape(), [0, 5]);
    }
);

common::test_device!(
    convolutions_and_pools_of_an_empty_batch_are_empty_cpu,
    convolutions_and_pools_of_an_empty_batch_are_empty_gpu,
    |dev| {
        let x = Tensor::zeros(&[0, 1, 8, 8], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let w = Tensor::ones(&[4, 1, 3, 3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = x.conv2d(&w, None, ConvOptions::default()).unwrap();
        assert_eq!(y.shape(), [0, 4, 6, 6], "{dev:?}");
        y.sum().unwrap().backward().unwrap();
        assert_eq!(vec_f32(&w.grad().unwrap()), vec![0.0; 36], "{dev:?}");
        let p = x.max_pool2d((2, 2), (2, 2), (0, 0)).unwrap();
        assert_eq!(p.shape(), [0, 1, 4, 4]);
        let wt = Tensor::ones(&[1, 2, 3, 3], &dev).unwrap();
        let z = x
            .conv_transpose2d(&wt, None, ConvOptions::default())
            .unwrap();
        assert_eq!(z.shape(), [0, 2, 10, 10]);
    }
);

common::test_device!(
    softmax_and_losses_of_empty_tensors_cpu,
    softmax_and_losses_of_empty_tensors_gpu,
    |dev| {
        let x = Tensor::zeros(&[0, 5], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let s = x.softmax(-1).unwrap();
        assert_eq!(s.shape(), [0, 5]);
        s.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), [0, 5]);
        assert_eq!(x.log_softmax(-1).unwrap().shape(), [0, 5]);
    }
);

// ---- huge sizes and overflowing element counts --------------------------------------

common::test_device!(
    huge_tensors_are_out_of_memory_errors_cpu,
    huge_tensors_are_out_of_memory_errors_gpu,
    |dev| {
        assert!(
            is_oom(Tensor::zeros(&[1 << 40], &dev)),
            "{dev:?}: 2^40 elements"
        );
        // 1 TiB of f32: more than any test machine has.
        assert!(is_oom(Tensor::zeros(&[65536, 65536, 64], &dev)), "{dev:?}");
        assert!(is_oom(Tensor::rand(&[1 << 20, 1 << 20], &dev)), "{dev:?}");
        assert!(
            is_oom(Tensor::full(&[1 << 31, 1 << 31, 8], 1.0, &dev)),
            "{dev:?}"
        );
        if let Device::Gpu(_) = dev {
            assert!(is_oom(Tensor::zeros(&[1 << 62], &dev)));
            dev.sync().unwrap();
            // Over 2^32 elements: more than the GPU kernels' 32-bit indices reach.
            assert!(is_oom(Tensor::zeros(&[1 << 32], &dev)));
        }
    }
);

common::test_device!(
    element_counts_that_overflow_are_errors_cpu,
    element_counts_that_overflow_are_errors_gpu,
    |dev| {
        let r = Tensor::from_vec(Vec::<f32>::new(), &[1 << 32, 1 << 32], &dev);
        assert!(is_oom(r), "{dev:?}");
        assert!(is_oom(Tensor::zeros(&[1 << 32, 1 << 32], &dev)), "{dev:?}");
        let e = Tensor::zeros(&[0], &dev).unwrap();
        assert!(e.reshape(&[1 << 32, 1 << 32]).is_err());
        // A zero dimension makes any shape empty (PyTorch allows it).
        assert_eq!(Tensor::zeros(&[0, 1 << 40], &dev).unwrap().numel(), 0);
        let a = Tensor::zeros(&[1 << 20, 1], &dev).unwrap();
        let b = Tensor::zeros(&[1, 1 << 20], &dev).unwrap();
        // The broadcast result has 2^40 elements.
        assert!(is_oom(a.add(&b)), "{dev:?}");
        assert!(is_oom(a.matmul(&b)), "{dev:?}");
    }
);

// ---- out-of-range indices ------------------------------------------------------------

#[test]
fn out_of_range_indices_are_errors_on_both_devices() {
    // A GPU of its own: the device-side flag is reported at the device's next readback,
    // which on the shared default GPU could be another test's.
    let own = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    for dev in [Device::cpu(), own] {
        let x = t(&[1., 2., 3., 4., 5., 6.], &[3, 2], &dev);
        let bad = idx(&[0, 3], &dev);
        let r = x.index_select(0, &bad).and_then(|y| y.to_vec::<f32>());
        assert!(
            matches!(r, Err(Error::Argument { .. })),
            "{dev:?} index_select: {r:?}"
        );
        let gi = Tensor::from_slice(&[0u32, 5, 1, 0, 0, 1], &[3, 2], &dev).unwrap();
        let r = x.gather(1, &gi).and_then(|y| y.to_vec::<f32>());
        assert!(
            matches!(r, Err(Error::Argument { .. })),
            "{dev:?} gather: {r:?}"
        );
        let emb = wgrad::nn::Embedding::new(&dev, 4, 2);
        let r = emb
            .forward(&idx(&[1, 4], &dev))
            .and_then(|y| y.to_vec::<f32>());
        assert!(
            matches!(r, Err(Error::Argument { .. })),
            "{dev:?} embedding: {r:?}"
        );
        let logits = t(&[0.1, 0.2, 0.3, 0.4], &[2, 2], &dev);
        let r = logits
            .cross_entropy(&idx(&[1, 2], &dev))
            .and_then(|y| y.item());
        assert!(
            matches!(r, Err(Error::Argument { .. })),
            "{dev:?} cross_entropy: {r:?}"
        );
        // The device is still usable afterwards, and good indices work.
        let ok = x.index_select(0, &idx(&[2, 0], &dev)).unwrap();
        assert_eq!(vec_f32(&ok), vec![5., 6., 1., 2.]);
        assert!(logits
            .cross_entropy(&idx(&[1, 0], &dev))
            .unwrap()
            .item()
            .is_ok());
    }
}

// ---- unchecked arguments -------------------------------------------------------------

common::test_device!(
    convolution_arguments_are_checked_cpu,
    convolution_arguments_are_checked_gpu,
    |dev| {
        let x = Tensor::ones(&[1, 1, 4, 4], &dev).unwrap();
        let w = Tensor::ones(&[1, 1, 3, 3], &dev).unwrap();
        let stride0 = ConvOptions {
            stride: (0, 1),
            ..ConvOptions::default()
        };
        let dil0 = ConvOptions {
            dilation: (1, 0),
            ..ConvOptions::default()
        };
        for o in [stride0, dil0] {
            assert!(matches!(
                x.conv_transpose2d(&w, None, o),
                Err(Error::Argument { .. })
            ));
            assert!(matches!(x.conv2d(&w, None, o), Err(Error::Argument { .. })));
        }
        let w0 = Tensor::ones(&[1, 1, 0, 0], &dev).unwrap();
        assert!(x
            .conv_transpose2d(&w0, None, ConvOptions::default())
            .is_err());
        assert!(x.conv2d(&w0, None, ConvOptions::default()).is_err());
    }
);

common::test_device!(
    layout_arguments_are_checked_cpu,
    layout_arguments_are_checked_gpu,
    |dev| {
        let x = Tensor::ones(&[2, 3], &dev).unwrap();
        let r = x.broadcast_to(&[1, 1, 1, 1, 1, 2, 3]);
        assert!(matches!(r, Err(Error::Shape { .. })), "{dev:?}: {r:?}");
        let r = x.narrow(1, usize::MAX - 1, 2);
        assert!(matches!(r, Err(Error::Shape { .. })), "{dev:?}: {r:?}");
        let r = x.narrow(1, 1, usize::MAX);
        assert!(matches!(r, Err(Error::Shape { .. })), "{dev:?}: {r:?}");
        let u = idx(&[1, 2], &dev);
        assert!(matches!(u.requires_grad_(true), Err(Error::DType { .. })));
        assert!(!u.requires_grad_(false).unwrap().requires_grad());
    }
);

// ---- GPU binding limits --------------------------------------------------------------
// In tests/split.rs: work past the binding limit runs in pieces, and work no piece can
// hold is an `OutOfMemory` error at the next readback.
