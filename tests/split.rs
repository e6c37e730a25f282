//! Work past the GPU's storage-binding limit: on a device whose bindings are
//! capped at 1 MiB (262,144 f32s), elementwise ops, matrix products, linear layers and
//! convolutions on larger tensors cut their work into pieces and give the CPU's
//! results, forward and backward. Without the split every case here fails with
//! `OutOfMemory` at the readback (the last test shows what still cannot be cut).

mod common;

use common::vec_f32;
use wgrad::ops::conv2d::ConvOptions;
use wgrad::ops::matmul::Act;
use wgrad::prelude::*;

/// 1 MiB: the binding cap of these tests.
const CAP: u64 = 1 << 20;

fn capped() -> Device {
    Device::gpu_with(wgrad::GpuOptions {
        max_binding: Some(CAP),
        ..wgrad::GpuOptions::from_env()
    })
    .unwrap()
}

/// `n` values in [-1, 1) from a fixed sequence (the same on every device).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn input(shape: &[usize], seed: u64, dev: &Device, grad: bool) -> Tensor {
    let n = shape.iter().product();
    let t = Tensor::from_vec(values(n, seed), shape, dev).unwrap();
    if grad {
        t.requires_grad_(true).unwrap()
    } else {
        t
    }
}

/// Runs `f` on the CPU and on the capped GPU and compares every tensor it returns.
fn same_on_both(what: &str, tol: f32, f: impl Fn(&Device) -> Vec<Tensor>) {
    let want: Vec<Vec<f32>> = f(&Device::cpu()).iter().map(vec_f32).collect();
    let dev = capped();
    let got: Vec<Vec<f32>> = f(&dev)
        .iter()
        .map(|t| {
            t.to_vec::<f32>()
                .unwrap_or_else(|e| panic!("{what}: the capped GPU failed: {e}"))
        })
        .collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what} #{i}: lengths differ");
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            // Relative past 1: the convolutions' sums reach the thousands.
            assert!(
                (a - b).abs() <= tol * b.abs().max(1.0),
                "{what} #{i}[{j}]: got {a}, want {b} (tolerance {tol})"
            );
        }
    }
}

const BIG: [usize; 2] = [600, 512]; // 307,200 f32s: 1.17 MiB

#[test]
fn elementwise_ops_past_the_binding_limit() {
    same_on_both("unary", 1e-5, |dev| {
        let x = input(&BIG, 1, dev, true);
        let y = x.tanh().unwrap().relu().unwrap();
        y.backward_with(&input(&BIG, 2, dev, false)).unwrap();
        vec![y, x.grad().unwrap()]
    });
    same_on_both("binary, same shapes", 1e-5, |dev| {
        let a = input(&BIG, 3, dev, true);
        let b = input(&BIG, 4, dev, true);
        let y = a.mul(&b).unwrap().div(&b.exp().unwrap()).unwrap();
        y.backward_with(&input(&BIG, 5, dev, false)).unwrap();
        vec![y, a.grad().unwrap(), b.grad().unwrap()]
    });
    same_on_both("broadcasts with leading ones and wide rows", 1e-6, |dev| {
        // [1, 600, 600] and [2, 600, 600]: the leading 1 cannot be cut, and one row of
        // the second is 1.4 MiB (it used to recurse until the stack overflowed).
        let col = input(&[1, 600, 1], 30, dev, false);
        let row = input(&[1, 1, 600], 31, dev, false);
        let two = input(&[2, 600, 1], 32, dev, false);
        let flat = input(&[600], 33, dev, false);
        vec![
            col.sub(&row).unwrap(),
            two.mul(&flat).unwrap(),
            col.lt(&row).unwrap(),
        ]
    });
    same_on_both("binary, broadcast, compare", 1e-6, |dev| {
        let a = input(&BIG, 6, dev, false);
        let row = input(&[512], 7, dev, false);
        let col = input(&[600, 1], 8, dev, false);
        vec![
            a.add(&row).unwrap(),
            a.maximum(&col).unwrap(),
            a.gt(&row).unwrap(),
            row.mul(&a).unwrap(),
        ]
    });
}

#[test]
fn filling_slicing_and_joining_past_the_binding_limit() {
    same_on_both("fill, narrow, cat", 0.0, |dev| {
        let a = input(&BIG, 9, dev, false);
        let z = Tensor::full(&BIG, 2.5, dev).unwrap();
        let rows = a.narrow(0, 100, 500).unwrap();
        let cols = a.narrow(1, 3, 500).unwrap();
        // Small regions of a large tensor, and small tensors joined into a large one.
        let few = a.narrow(1, 3, 100).unwrap();
        let half = input(&[600, 300], 34, dev, false);
        let wide = Tensor::cat(&[&half, &half], 1).unwrap();
        let joined = Tensor::cat(&[&a, &z], 0).unwrap();
        let side = Tensor::cat(&[&a, &z], 1).unwrap();
        vec![z, rows, cols, joined, side, few, wide]
    });
}

#[test]
fn products_past_the_binding_limit() {
    same_on_both("rows of A", 1e-4, |dev| {
        let a = input(&BIG, 10, dev, true);
        let b = input(&[512, 4], 11, dev, true);
        let y = a.matmul(&b).unwrap();
        y.backward_with(&input(&[600, 4], 12, dev, false)).unwrap();
        // dA = g B^T is [600, 512] (rows cut), dB = A^T g sums over the rows of both.
        vec![y, a.grad().unwrap(), b.grad().unwrap()]
    });
    same_on_both("a batch of A", 1e-4, |dev| {
        let a = input(&[2, 300, 512], 13, dev, false);
        let b = input(&[512, 3], 14, dev, false);
        vec![a.matmul(&b).unwrap()]
    });
    same_on_both("batches alike", 1e-4, |dev| {
        // Each [400, 300] matrix fits; three do not.
        let a = input(&[3, 400, 300], 15, dev, false);
        let b = input(&[3, 300, 8], 16, dev, false);
        // One matrix too large even alone: the batch, then its rows.
        let c = input(&[2, 600, 512], 17, dev, false);
        let d = input(&[2, 512, 2], 18, dev, false);
        vec![a.matmul(&b).unwrap(), c.matmul(&d).unwrap()]
    });
}

#[test]
fn linear_layers_past_the_binding_limit() {
    same_on_both("linear_act", 1e-4, |dev| {
        let x = input(&[700, 400], 19, dev, true); // 1.07 MiB
        let w = input(&[16, 400], 20, dev, true);
        let b = input(&[16], 21, dev, true);
        let y = x.linear_act(&w, Some(&b), Act::Relu).unwrap();
        y.backward_with(&input(&[700, 16], 22, dev, false)).unwrap();
        vec![y, x.grad().unwrap(), w.grad().unwrap(), b.grad().unwrap()]
    });
}

#[test]
fn convolutions_past_the_binding_limit() {
    // The input and output fit; the columns ([8, 72, 576]: 331,776 f32s) do not.
    let o = ConvOptions {
        padding: (1, 1),
        ..ConvOptions::default()
    };
    same_on_both("conv2d_act", 1e-4, |dev| {
        let x = input(&[8, 8, 24, 24], 23, dev, true);
        let w = input(&[4, 8, 3, 3], 24, dev, true);
        let b = input(&[4], 25, dev, true);
        let y = x.conv2d_act(&w, Some(&b), o, Act::Tanh).unwrap();
        y.backward_with(&input(&[8, 4, 24, 24], 26, dev, false))
            .unwrap();
        vec![y, x.grad().unwrap(), w.grad().unwrap(), b.grad().unwrap()]
    });
    same_on_both("grouped conv2d and conv_transpose2d", 1e-4, |dev| {
        let x = input(&[8, 8, 24, 24], 27, dev, true);
        let w = input(&[4, 4, 3, 3], 28, dev, true);
        let grouped = ConvOptions { groups: 2, ..o };
        let y = x.conv2d(&w, None, grouped).unwrap();
        let wt = input(&[8, 2, 3, 3], 29, dev, true);
        let t = x.conv_transpose2d(&wt, None, o).unwrap();
        let loss = y.sum().unwrap().add(&t.mul(&t).unwrap().sum().unwrap());
        loss.unwrap().backward().unwrap();
        vec![
            y,
            t,
            x.grad().unwrap(),
            w.grad().unwrap(),
            wt.grad().unwrap(),
        ]
    });
}

#[test]
fn work_that_cannot_be_cut_is_an_error_at_the_next_readback() {
    // One row of A and all of B are over the cap: no piece fits.
    let dev = capped();
    let a = Tensor::ones(&[1, 300_000], &dev).unwrap();
    let b = Tensor::ones(&[300_000, 1], &dev).unwrap();
    let r = a.matmul(&b).and_then(|y| y.to_vec::<f32>());
    assert!(matches!(r, Err(Error::OutOfMemory { .. })), "{r:?}");
    // The error is reported once; the device goes on working.
    let small = Tensor::ones(&[4, 4], &dev)
        .unwrap()
        .matmul(&Tensor::ones(&[4, 2], &dev).unwrap())
        .unwrap();
    assert_eq!(vec_f32(&small), vec![4.0; 8]);
}

#[test]
fn one_image_too_large_for_a_binding_is_cut_by_output_rows() {
    // One image whose columns ([1, 18, 60,000]: 1,080,000 f32s) are over the cap: the
    // convolution runs on bands of output rows, each reading its input rows with the
    // kernel's halo and the padding's zero rows, forward and backward.
    for (stride, padding, dilation) in [(1, 1, 1), (1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 4, 1)] {
        let o = ConvOptions {
            stride: (stride, stride),
            padding: (padding, padding),
            dilation: (dilation, dilation),
            ..ConvOptions::default()
        };
        same_on_both(&format!("conv2d cut by rows, {o:?}"), 1e-4, |dev| {
            let x = input(&[1, 2, 240, 250], 30, dev, true);
            let w = input(&[3, 2, 3, 3], 31, dev, true);
            let b = input(&[3], 32, dev, true);
            let y = x.conv2d(&w, Some(&b), o).unwrap();
            let gy = input(y.shape(), 33, dev, false);
            y.backward_with(&gy).unwrap();
            vec![y, x.grad().unwrap(), w.grad().unwrap(), b.grad().unwrap()]
        });
    }
    let o = ConvOptions {
        padding: (1, 1),
        ..ConvOptions::default()
    };
    same_on_both("conv2d_act cut by rows", 1e-4, |dev| {
        let x = input(&[1, 2, 240, 250], 34, dev, true);
        let w = input(&[3, 2, 3, 3], 35, dev, true);
        let b = input(&[3], 36, dev, true);
        let y = x.conv2d_act(&w, Some(&b), o, Act::Relu).unwrap();
        let gy = input(y.shape(), 37, dev, false);
        y.backward_with(&gy).unwrap();
        vec![y, x.grad().unwrap(), w.grad().unwrap(), b.grad().unwrap()]
    });
}

#[test]
fn sums_and_means_past_the_binding_limit() {
    // Cut along the first long dimension: added where it is reduced, joined where kept;
    // a [2, 600, 512] tensor's one slice along dimension 0 is itself over the cap.
    same_on_both("sum and mean past the cap", 1e-4, |dev| {
        let x = input(&[2, BIG[0], BIG[1]], 50, dev, true);
        let all = x.sum().unwrap();
        let rows = x.sum_dim(&[2], false).unwrap();
        let cols = x.mean_dim(&[0, 1], true).unwrap();
        let loss = all
            .add(
                &rows
                    .mul(&input(rows.shape(), 51, dev, false))
                    .unwrap()
                    .sum()
                    .unwrap(),
            )
            .unwrap()
            .add(
                &cols
                    .mul(&input(cols.shape(), 52, dev, false))
                    .unwrap()
                    .sum()
                    .unwrap(),
            )
            .unwrap();
        loss.backward().unwrap();
        vec![all, rows, cols, x.grad().unwrap()]
    });
}

#[test]
fn one_image_too_large_for_a_binding_is_cut_by_input_rows_in_a_transposed_convolution() {
    // One image whose columns ([1, 3 k k, 120 * 250]) and output are over the cap: the
    // transposed convolution runs on bands of input rows whose outputs overlap (kernel
    // taller than the stride: added), abut, or leave zero rows between them (shorter),
    // with the padding cut and the output padding joined afterwards.
    // (stride, padding, dilation, output padding, kernel)
    for (stride, padding, dilation, out_pad, k) in [
        (2, 1, 1, 1, 3),
        (1, 1, 1, 0, 3),
        (3, 0, 1, 2, 2),
        (2, 2, 2, 1, 3),
        (2, 0, 1, 0, 2),
    ] {
        let o = ConvOptions {
            stride: (stride, stride),
            padding: (padding, padding),
            dilation: (dilation, dilation),
            output_padding: (out_pad, out_pad),
            ..ConvOptions::default()
        };
        // The weight gradient sums 120,000 products per element in f32: a workgroup
        // loops over up to 8,192 of them serially, so the sums differ from the CPU's by
        // up to about 2e-4 (terms of order 1); a wrong cut would differ by far more.
        same_on_both(
            &format!("conv_transpose2d cut by rows, {o:?}, k {k}"),
            5e-4,
            |dev| {
                let x = input(&[1, 2, 120, 250], 40, dev, true);
                let w = input(&[2, 3, k, k], 41, dev, true);
                let b = input(&[3], 42, dev, true);
                let y = x.conv_transpose2d(&w, Some(&b), o).unwrap();
                let gy = input(y.shape(), 43, dev, false);
                y.backward_with(&gy).unwrap();
                vec![y, x.grad().unwrap(), w.grad().unwrap(), b.grad().unwrap()]
            },
        );
    }
}

/// A `[1, 1, 6200, 6200]` image with a 3x3 kernel: 38M outputs, whose 346M columns are
/// over any binding limit (lavapipe's is 128 MiB) and whose column tiles are far more
/// than the 65,535 workgroups of one grid dimension. The GPU cuts it by output rows and
/// its sum agrees with the CPU's (taken in two halves: the 153 MB output is itself over
/// lavapipe's limit, and reductions do not cut).
#[test]
fn a_6200_by_6200_image_convolves_on_the_gpu() {
    let side = 6200;
    let xv = values(side * side, 40);
    let wv = values(9, 41);
    // Padding 1 (padding 0 cuts the same way, without the zero rows).
    let o = ConvOptions {
        padding: (1, 1),
        ..ConvOptions::default()
    };
    let sum = |dev: &Device| -> f64 {
        let x = Tensor::from_vec(xv.clone(), &[1, 1, side, side], dev).unwrap();
        let w = Tensor::from_vec(wv.clone(), &[1, 1, 3, 3], dev).unwrap();
        let y = x.conv2d(&w, None, o).unwrap();
        let rows = y.shape()[2];
        let top = y.narrow(2, 0, rows / 2).unwrap().sum().unwrap();
        let bottom = y.narrow(2, rows / 2, rows - rows / 2).unwrap();
        top.item().unwrap() + bottom.sum().unwrap().item().unwrap()
    };
    let started = std::time::Instant::now();
    let want = sum(&Device::cpu());
    let cpu_time = started.elapsed();
    let gpu = common::gpu();
    let started = std::time::Instant::now();
    let got = sum(&gpu);
    let gpu_time = started.elapsed();
    eprintln!("6200x6200 conv: CPU sum {want} ({cpu_time:.1?}), GPU sum {got} ({gpu_time:.1?})");
    // 38M outputs of about +-1 (their absolute values sum to about 3e7), summed in f32
    // in different orders: within 1e-6 of that scale (lavapipe: 0.2 apart, 9.9 s; the
    // CPU 1.5 s).
    assert!((got - want).abs() < 30.0, "{got} vs {want}");
}
