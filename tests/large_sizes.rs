//! Sizes that broke the GPU kernels when a thread looped over them serially: Mesa's
//! software Vulkan (lavapipe) stops any shader loop after 65,535 iterations, and other
//! drivers have watchdogs. Reductions now spread over many workgroups and long matrix
//! products split their inner dimension, so these must agree with the CPU.

mod common;

use wgrad::prelude::*;

/// Values in [-0.5, 0.5) drawn on the CPU, and the same values on the GPU.
fn pair(n: usize, seed: u64, gpu: &Device) -> (Vec<f32>, Tensor) {
    let cpu = Tensor::rand_seeded(&[n], seed, &Device::cpu())
        .unwrap()
        .add_scalar(-0.5)
        .unwrap();
    let v = cpu.to_vec::<f32>().unwrap();
    let t = Tensor::from_vec(v.clone(), &[n], gpu).unwrap();
    (v, t)
}

#[test]
fn the_sum_of_three_million_values_matches_an_f64_sum() {
    let gpu = common::gpu();
    let (v, t) = pair(3_000_000, 11, &gpu);
    let want: f64 = v.iter().map(|&x| x as f64).sum();
    let got = t.sum().unwrap().item().unwrap();
    // f32 partial sums of +-0.5 values: rounding stays far below 0.05.
    assert!((got - want).abs() < 0.05, "sum {got}, want {want}");
    let mean = t.mean().unwrap().item().unwrap();
    assert!((mean - want / 3e6).abs() < 1e-7, "mean {mean}");
}

#[test]
fn ones_of_three_thousand_by_one_thousand_sum_to_three_million() {
    let gpu = common::gpu();
    let ones = Tensor::ones(&[3000, 1000], &gpu).unwrap();
    assert_eq!(ones.sum().unwrap().item().unwrap(), 3_000_000.0);
    let rows = ones.sum_dim(&[1], false).unwrap().to_vec::<f32>().unwrap();
    assert!(rows.iter().all(|&r| r == 1000.0));
    let cols = ones.sum_dim(&[0], false).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(cols.len(), 1000);
    assert!(cols.iter().all(|&c| c == 3000.0));
}

#[test]
fn the_max_of_three_million_values_and_its_position_are_found() {
    let gpu = common::gpu();
    let (mut v, _) = pair(3_000_000, 12, &gpu);
    // One clear winner near the end, and a tie for second place before it.
    v[2_999_001] = 7.0;
    v[17] = 6.0;
    v[2_000_000] = 6.0;
    let t = Tensor::from_vec(v.clone(), &[3_000_000], &gpu).unwrap();
    let (m, i) = t.max_dim_with_indices(0, false).unwrap();
    assert_eq!(m.item().unwrap(), 7.0);
    assert_eq!(i.to_vec::<u32>().unwrap(), vec![2_999_001]);
    v[2_999_001] = 0.0;
    let t = Tensor::from_vec(v, &[3_000_000], &gpu).unwrap();
    let (m, i) = t.max_dim_with_indices(0, false).unwrap();
    assert_eq!(m.item().unwrap(), 6.0);
    assert_eq!(
        i.to_vec::<u32>().unwrap(),
        vec![17],
        "the first of a tie wins"
    );
}

#[test]
fn a_product_with_an_inner_dimension_of_seventy_thousand_is_right() {
    let gpu = common::gpu();
    for k in [60_000usize, 70_000] {
        let a = Tensor::ones(&[4, k], &gpu).unwrap();
        let b = Tensor::ones(&[k, 3], &gpu).unwrap();
        let c = a.matmul(&b).unwrap().to_vec::<f32>().unwrap();
        assert!(c.iter().all(|&x| x == k as f32), "K = {k}: {c:?}");
    }
    // And with values, against the CPU.
    let k = 65_537;
    let (av, _) = pair(2 * k, 13, &gpu);
    let (bv, _) = pair(k * 3, 14, &gpu);
    let run = |dev: &Device| {
        let a = Tensor::from_vec(av.clone(), &[2, k], dev).unwrap();
        let b = Tensor::from_vec(bv.clone(), &[k, 3], dev).unwrap();
        a.matmul(&b).unwrap().to_vec::<f32>().unwrap()
    };
    let (g, c) = (run(&gpu), run(&Device::cpu()));
    common::assert_close(&g, &c, 2e-3, 0.0, "gpu vs cpu");
}

#[test]
fn a_sum_over_sixteen_million_values_spreads_over_many_workgroups() {
    let gpu = common::gpu();
    let x = Tensor::ones(&[16 << 20], &gpu).unwrap();
    let (sum, profile) = gpu.profile(|| x.sum()).unwrap();
    assert_eq!(sum.unwrap().item().unwrap(), (16u64 << 20) as f64);
    let passes: Vec<_> = profile
        .dispatches
        .iter()
        .filter(|d| d.kernel == "sum_fwd")
        .collect();
    assert!(
        passes[0].workgroups >= 256,
        "the first pass ran on {} workgroups",
        passes[0].workgroups
    );
    for p in &passes {
        assert!(p.serial <= 64, "{p:?}");
        assert!(p.reduced <= 16_384 * p.workgroups, "{p:?}");
    }
    println!("16M sum: {passes:?}");
}

/// Softmax, log-softmax and cross-entropy over rows longer than one workgroup reduces:
/// the GPU composes them from reductions over many workgroups; forward and backward
/// must match the CPU's fused loops.
#[test]
fn softmax_and_cross_entropy_over_rows_of_a_hundred_thousand_match_the_cpu() {
    let gpu = common::gpu();
    let (n, c) = (3, 100_000);
    let (v, _) = pair(n * c, 21, &gpu);
    let v: Vec<f32> = v.iter().map(|x| x * 20.0).collect();
    let targets = [5u32, 99_999, 41_000];
    let run = |dev: &Device, which: usize| {
        let x = Tensor::from_vec(v.clone(), &[n, c], dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = match which {
            0 => x.softmax(1).unwrap(),
            1 => x.log_softmax(1).unwrap(),
            _ => {
                let t = Tensor::from_vec(targets.to_vec(), &[n], dev).unwrap();
                x.cross_entropy(&t).unwrap().reshape(&[1]).unwrap()
            }
        };
        // A projection that weighs every output differently.
        let w: Vec<f32> = (0..y.numel())
            .map(|i| ((i % 7) as f32 - 3.0) * 0.5)
            .collect();
        let wt = Tensor::from_vec(w, y.shape(), dev).unwrap();
        y.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
        (
            y.to_vec::<f32>().unwrap(),
            x.grad().unwrap().to_vec::<f32>().unwrap(),
        )
    };
    for which in 0..3 {
        let (gy, gg) = run(&gpu, which);
        let (cy, cg) = run(&Device::cpu(), which);
        for (what, g, c) in [("output", &gy, &cy), ("gradient", &gg, &cg)] {
            common::assert_close(
                g,
                c,
                1e-5,
                1e-3,
                &format!("case {which} {what}, gpu vs cpu"),
            );
        }
    }
}

/// A product whose output tiles number more than 65,535 (the workgroups a grid
/// dimension holds) runs on a grid folded into two dimensions, with every kernel: a
/// `[2, 3] x [3, 1,100,003]` product has 68,751 tiles of 16 columns and more of 8, so
/// the folded grid has spare workgroups, which must write nothing.
#[test]
fn a_product_with_more_than_65535_output_tiles_folds_its_grid() {
    use wgrad::ops::matmul::{matmul_with, MatmulChoice, MatmulKernel};
    let gpu = common::gpu();
    let n = 1_100_003;
    let a: Vec<f32> = vec![1.0, 2.0, -1.0, 0.5, 0.25, 3.0];
    let b: Vec<f32> = (0..3 * n).map(|i| ((i % 7) as f32) - 3.0).collect();
    let want: Vec<f32> = (0..2 * n)
        .map(|i| {
            let (r, c) = (i / n, i % n);
            (0..3).map(|k| a[r * 3 + k] * b[k * n + c]).sum()
        })
        .collect();
    let at = Tensor::from_vec(a, &[2, 3], &gpu).unwrap();
    let bt = Tensor::from_vec(b, &[3, n], &gpu).unwrap();
    for kernel in [
        MatmulKernel::Auto,
        MatmulKernel::Naive,
        MatmulKernel::Small16x16,
        MatmulKernel::Small32x32,
        MatmulKernel::Tile64,
        MatmulKernel::Tile128,
        MatmulKernel::Block16,
        MatmulKernel::Block64x16,
    ] {
        let choice = MatmulChoice { kernel, splits: 1 };
        let got = matmul_with(&at, &bt, choice)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(got.len(), want.len());
        let bad = got
            .iter()
            .zip(&want)
            .position(|(g, w)| (g - w).abs() > 1e-4);
        assert!(bad.is_none(), "{kernel:?}: element {bad:?} differs");
    }
}
