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
    for (x, y) in g.iter().zip(&c) {
        assert!((x - y).abs() < 2e-3, "{g:?} vs {c:?}");
    }
}
