//! Cases found in review: each was a crash or a wrong answer once.

mod common;

use wgrad::prelude::*;

common::test_device!(
    copy_from_a_view_of_itself_is_a_no_op_cpu,
    copy_from_a_view_of_itself_is_a_no_op_gpu,
    |dev| {
        let _serial = common::exclusive();
        let p = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &dev).unwrap();
        p.copy_from(&p.detach()).unwrap();
        p.copy_from(&p.reshape(&[3]).unwrap()).unwrap();
        assert_eq!(p.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
    }
);

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

common::test_device!(
    softmax_and_cross_entropy_handle_rows_near_the_float_limit_cpu,
    softmax_and_cross_entropy_handle_rows_near_the_float_limit_gpu,
    |dev| {
        let _serial = common::exclusive();
        let x = Tensor::from_vec(vec![-3.3e38f32, -3.4e38, -3.39e38], &[1, 3], &dev).unwrap();
        let p = x.softmax(1).unwrap().to_vec::<f32>().unwrap();
        assert!((p[0] - 1.0).abs() < 1e-6 && p[1] == 0.0, "{dev:?}: {p:?}");
        let t = Tensor::from_vec(vec![0u32], &[1], &dev).unwrap();
        let l = x.cross_entropy(&t).unwrap().item().unwrap();
        assert!(l.abs() < 1e-6, "{dev:?}: {l}");
    }
);

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

common::test_device!(
    /// Reductions and products whose result or inner dimension is empty (the GPU planners
    /// divide by workgroup counts that are zero there).
    reductions_and_products_over_empty_dimensions_give_empty_or_zero_results_cpu,
    reductions_and_products_over_empty_dimensions_give_empty_or_zero_results_gpu,
    |dev| {
        let x = Tensor::zeros(&[0, 5], &dev).unwrap();
        let rows = x.sum_dim(&[1], false).unwrap();
        assert_eq!(rows.shape(), [0]);
        assert_eq!(x.max_dim(&[1], false).unwrap().shape(), [0]);
        assert_eq!(
            x.sum_dim(&[0], false).unwrap().to_vec::<f32>().unwrap(),
            vec![0.0; 5]
        );
        assert_eq!(x.sum().unwrap().item().unwrap(), 0.0);
        let y = Tensor::zeros(&[5, 0], &dev).unwrap();
        assert_eq!(y.softmax(1).unwrap().shape(), [5, 0]);
        // Long rows take another path on the GPU; an empty batch of them too.
        let long = Tensor::zeros(&[0, 20_000], &dev).unwrap();
        assert_eq!(long.softmax(1).unwrap().shape(), [0, 20_000]);
        assert_eq!(long.log_softmax(1).unwrap().shape(), [0, 20_000]);
        let none = Tensor::from_vec(Vec::<u32>::new(), &[0], &dev).unwrap();
        let per_sample = wgrad::ops::loss::cross_entropy_per_sample(&long, &none).unwrap();
        assert_eq!(per_sample.shape(), [0]);
        let a = Tensor::ones(&[3, 0], &dev).unwrap();
        let b = Tensor::ones(&[0, 4], &dev).unwrap();
        let c = a.matmul(&b).unwrap();
        assert_eq!(c.to_vec::<f32>().unwrap(), vec![0.0; 12], "{dev:?}");
        assert_eq!(
            b.transpose(0, 1)
                .unwrap()
                .matmul(&a.transpose(0, 1).unwrap())
                .unwrap()
                .shape(),
            [4, 3]
        );
        }
);

common::test_device!(
    /// The column kernels divide by the stride: a zero stride, dilation or kernel size is an
    /// argument error before any launch, through the public column functions too.
    im2col_and_col2im_refuse_zero_strides_cpu,
    im2col_and_col2im_refuse_zero_strides_gpu,
    |dev| {
        use wgrad::ops::conv2d::{col2im, im2col, Geometry};
        let g = Geometry {
            n: 1,
            c: 1,
            h: 4,
            w: 4,
            ho: 4,
            wo: 4,
            k: (1, 1),
            stride: (0, 1),
            padding: (0, 0),
            dilation: (1, 1),
        };
        let x = Tensor::ones(&[1, 1, 4, 4], &dev).unwrap();
        let cols = Tensor::ones(&[1, 1, 16], &dev).unwrap();
        assert!(matches!(im2col(&x, g), Err(Error::Argument { .. })));
        assert!(matches!(col2im(&cols, g), Err(Error::Argument { .. })));
        let g = Geometry {
            stride: (1, 1),
            dilation: (1, 0),
            ..g
        };
        assert!(matches!(col2im(&cols, g), Err(Error::Argument { .. })));
        }
);

common::test_device!(
    /// Fused layers over an empty batch: empty outputs, and weight and bias gradients of
    /// exact zeros on both devices (the GPU's bias gradient comes from the weight
    /// gradient's product, which has nothing to add up).
    fused_layers_over_an_empty_batch_give_zero_gradients_cpu,
    fused_layers_over_an_empty_batch_give_zero_gradients_gpu,
    |dev| {
        use wgrad::nn::{Act, Module, GRU, LSTM, RNN};
        dev.manual_seed(2);
        let grads_of = |params: &[Tensor]| -> Vec<Vec<f32>> {
            params
                .iter()
                .map(|p| p.grad().unwrap().to_vec::<f32>().unwrap())
                .collect()
        };
        // linear_act
        let w = Tensor::randn_seeded(&[4, 3], 1, &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::randn_seeded(&[4], 2, &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let x = Tensor::zeros(&[0, 3], &dev).unwrap();
        let y = x.linear_act(&w, Some(&b), Act::Relu).unwrap();
        assert_eq!(y.shape(), &[0, 4]);
        y.sum().unwrap().backward().unwrap();
        for g in grads_of(&[w, b]) {
            assert!(g.iter().all(|&v| v == 0.0), "{dev:?}: linear_act {g:?}");
        }
        let w = Tensor::randn_seeded(&[3, 2, 3, 3], 3, &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::randn_seeded(&[3], 4, &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let x = Tensor::zeros(&[0, 2, 5, 5], &dev).unwrap();
        let o = wgrad::ops::conv2d::ConvOptions {
            padding: (1, 1),
            ..Default::default()
        };
        let y = x.conv2d_act(&w, Some(&b), o, Act::Tanh).unwrap();
        assert_eq!(y.shape(), &[0, 3, 5, 5]);
        y.sum().unwrap().backward().unwrap();
        for g in grads_of(&[w, b]) {
            assert!(g.iter().all(|&v| v == 0.0), "{dev:?}: conv2d_act {g:?}");
        }
        let layers: Vec<Box<dyn Module>> = vec![
            Box::new(RNN::new(&dev, 3, 4)),
            Box::new(LSTM::new(&dev, 3, 4)),
            Box::new(GRU::new(&dev, 3, 4)),
        ];
        for layer in layers {
            let x = Tensor::zeros(&[5, 0, 3], &dev).unwrap();
            let y = layer.forward(&x).unwrap();
            assert_eq!(y.shape(), &[5, 0, 4]);
            y.sum().unwrap().backward().unwrap();
            for g in grads_of(&layer.parameters()) {
                assert!(g.iter().all(|&v| v == 0.0), "{dev:?}: recurrent {g:?}");
            }
        }
        }
);
