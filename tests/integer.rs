//! `u32` tensors as data (labels, indices, argmax results): comparisons giving `u32`
//! 0 / 1, sums and maxima staying `u32`, layout ops moving `u32` values bit for bit,
//! and PyTorch's accuracy idiom without casts, on the CPU and the GPU. The GPU's
//! results are checked against the same exact values as the CPU's, and against the
//! CPU on seeded random data; the op registry (`tests/gradcheck.rs`) compares the
//! `u32` kernels with the CPU over every broadcasting pattern and reduction shape.

mod common;

use common::test_device;
use wgrad::prelude::*;

fn u32s(v: &[u32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, dev).unwrap()
}

fn read(t: &Tensor) -> Vec<u32> {
    assert_eq!(t.dtype(), DType::U32, "a u32 result");
    t.to_vec::<u32>().unwrap()
}

/// Values whose bit patterns are unusual as f32s: a denormal (1), a NaN pattern
/// (0x7fc0_0001), an infinity's (0x7f80_0000), the largest u32, and integers past f32's
/// 24-bit exactness.
const ODD: [u32; 6] = [1, 0x7fc0_0001, 0x7f80_0000, u32::MAX, 16_777_217, 0];

/// `n` pseudo-random values below `bound` from a fixed sequence.
fn draws(n: usize, bound: u32, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % bound as u64) as u32
        })
        .collect()
}

test_device!(
    comparisons_of_u32_tensors_give_u32_masks_cpu,
    comparisons_of_u32_tensors_give_u32_masks_gpu,
    |dev| {
        let a = u32s(&[1, 5, 7, 0x7fc0_0001, u32::MAX, 3], &[2, 3], &dev);
        let b = u32s(&[5, 5, 16_777_217], &[3], &dev);
        // Broadcasting b over the rows of a.
        assert_eq!(read(&a.eq(&b).unwrap()), [0, 1, 0, 0, 0, 0]);
        assert_eq!(read(&a.ne(&b).unwrap()), [1, 0, 1, 1, 1, 1]);
        assert_eq!(read(&a.lt(&b).unwrap()), [1, 0, 1, 0, 0, 1]);
        assert_eq!(read(&a.le(&b).unwrap()), [1, 1, 1, 0, 0, 1]);
        assert_eq!(read(&a.gt(&b).unwrap()), [0, 0, 0, 1, 1, 0]);
        assert_eq!(read(&a.ge(&b).unwrap()), [0, 1, 0, 1, 1, 0]);
        // A column against a row: [2, 1] x [1, 3] -> [2, 3]; integers past 2^24 stay exact.
        let col = u32s(&[16_777_216, 16_777_217], &[2, 1], &dev);
        let row = u32s(&[16_777_216, 16_777_217, 16_777_218], &[1, 3], &dev);
        let y = col.lt(&row).unwrap();
        assert_eq!(y.shape(), [2, 3]);
        assert_eq!(read(&y), [0, 1, 1, 0, 0, 1]);
        // A scalar operand.
        let two = u32s(&[2], &[], &dev);
        assert_eq!(
            read(&u32s(&[1, 2, 3], &[3], &dev).ge(&two).unwrap()),
            [0, 1, 1]
        );
        assert!(!y.requires_grad());
        // Empty operands give an empty mask.
        let none = u32s(&[], &[0, 3], &dev);
        let e = none.lt(&u32s(&[1, 2, 3], &[3], &dev)).unwrap();
        assert_eq!(e.shape(), [0, 3]);
        assert_eq!(read(&e), [] as [u32; 0]);
    }
);

test_device!(
    float_comparisons_still_give_float_masks_cpu,
    float_comparisons_still_give_float_masks_gpu,
    |dev| {
        let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &dev).unwrap();
        let b = Tensor::from_vec(vec![2.0f32], &[1], &dev).unwrap();
        let y = a.eq(&b).unwrap();
        assert_eq!(y.dtype(), DType::F32);
        assert_eq!(y.to_vec::<f32>().unwrap(), [0.0, 1.0, 0.0]);
    }
);

test_device!(
    mixed_u32_and_float_comparisons_are_typed_errors_cpu,
    mixed_u32_and_float_comparisons_are_typed_errors_gpu,
    |dev| {
        let ints = u32s(&[1, 2], &[2], &dev);
        let floats = Tensor::from_vec(vec![1.0f32, 2.0], &[2], &dev).unwrap();
        for (a, b) in [(&ints, &floats), (&floats, &ints)] {
            let e = a.eq(b).unwrap_err();
            assert!(matches!(e, Error::DType { op: "eq", .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains("U32") && msg.contains("F32"), "{msg}");
            assert!(msg.contains("to_dtype(DType::F32)"), "{msg}");
        }
        // Casting first works, as the message says.
        let y = ints.to_dtype(DType::F32).unwrap().eq(&floats).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), [1.0, 1.0]);
    }
);

test_device!(
    u32_sums_stay_u32_and_wrap_cpu,
    u32_sums_stay_u32_and_wrap_gpu,
    |dev| {
        let x = u32s(&[1, 2, 3, 4, 5, 6], &[2, 3], &dev);
        let all = x.sum().unwrap();
        assert_eq!(all.shape(), [] as [usize; 0]);
        assert_eq!(read(&all), [21]);
        assert_eq!(all.item().unwrap(), 21.0);
        assert_eq!(read(&x.sum_dim(&[0], false).unwrap()), [5, 7, 9]);
        let rows = x.sum_dim(&[-1], true).unwrap();
        assert_eq!(rows.shape(), [2, 1]);
        assert_eq!(read(&rows), [6, 15]);
        // Past u32::MAX the sum wraps around (PyTorch would give an int64).
        assert_eq!(read(&u32s(&[u32::MAX, 2], &[2], &dev).sum().unwrap()), [1]);
        // Exact past f32's 24 bits.
        assert_eq!(
            read(&u32s(&[16_777_216, 1], &[2], &dev).sum().unwrap()),
            [16_777_217]
        );
        // An empty tensor sums to 0.
        assert_eq!(read(&u32s(&[], &[0, 3], &dev).sum().unwrap()), [0]);
    }
);

test_device!(
    long_u32_sums_match_a_wrapping_sum_cpu,
    long_u32_sums_match_a_wrapping_sum_gpu,
    |dev| {
        // Long enough for several workgroups and a second pass on the GPU, with values
        // large enough to wrap.
        let v = draws(100_003, u32::MAX, 7);
        let want = v.iter().fold(0u32, |a, &b| a.wrapping_add(b));
        assert_eq!(read(&u32s(&v, &[100_003], &dev).sum().unwrap()), [want]);
        // Column sums (outputs adjacent in memory) and row sums of a [301, 65] matrix.
        let v = draws(301 * 65, 1_000_000, 8);
        let x = u32s(&v, &[301, 65], &dev);
        let cols: Vec<u32> = (0..65)
            .map(|c| (0..301).map(|r| v[r * 65 + c]).sum())
            .collect();
        let rows: Vec<u32> = v.chunks(65).map(|r| r.iter().sum()).collect();
        assert_eq!(read(&x.sum_dim(&[0], false).unwrap()), cols);
        assert_eq!(read(&x.sum_dim(&[1], false).unwrap()), rows);
    }
);

test_device!(
    the_mean_of_u32_is_pytorchs_error_cpu,
    the_mean_of_u32_is_pytorchs_error_gpu,
    |dev| {
        let x = u32s(&[1, 2], &[2], &dev);
        for e in [x.mean().unwrap_err(), x.mean_dim(&[0], false).unwrap_err()] {
            assert!(matches!(e, Error::DType { op: "mean", .. }), "{e}");
            let msg = e.to_string();
            assert!(
            msg.contains("could not infer output dtype. Input dtype must be either a floating point or complex dtype. Got: U32"),
            "{msg}"
        );
        }
    }
);

test_device!(
    u32_maxima_and_their_positions_cpu,
    u32_maxima_and_their_positions_gpu,
    |dev| {
        let x = u32s(
            &[3, 16_777_217, 16_777_216, 7, 7, 2, u32::MAX, 0, 0x7fc0_0001],
            &[3, 3],
            &dev,
        );
        let m = x.max().unwrap();
        assert_eq!(read(&m), [u32::MAX]);
        assert!(!m.requires_grad());
        assert_eq!(
            read(&x.max_dim(&[1], false).unwrap()),
            [16_777_217, 7, u32::MAX]
        );
        let (v, i) = x.max_dim_with_indices(0, true).unwrap();
        assert_eq!(v.shape(), [1, 3]);
        assert_eq!(read(&v), [u32::MAX, 16_777_217, 0x7fc0_0001]);
        assert_eq!(read(&i), [2, 0, 2]);
        // Ties: the first position wins, as for floats.
        assert_eq!(read(&x.argmax(1, false).unwrap()), [1, 0, 0]);
        // A long row: several workgroups and a second pass on the GPU.
        let mut v = draws(70_001, 1_000, 9);
        v[12_345] = 5_000;
        v[54_321] = 5_000;
        let long = u32s(&v, &[1, 70_001], &dev);
        let (m, at) = long.max_dim_with_indices(1, false).unwrap();
        assert_eq!((read(&m), read(&at)), (vec![5_000], vec![12_345]));
        assert!(u32s(&[], &[0], &dev).max().is_err());
    }
);

test_device!(
    layout_ops_move_u32_values_bit_for_bit_cpu,
    layout_ops_move_u32_values_bit_for_bit_gpu,
    |dev| {
        let x = u32s(&ODD, &[2, 3], &dev);
        assert_eq!(read(&x.reshape(&[3, 2]).unwrap()), ODD);
        assert_eq!(read(&x.view(&[-1]).unwrap()), ODD);
        let t = x.transpose(0, 1).unwrap();
        assert_eq!(t.shape(), [3, 2]);
        let want_t = [ODD[0], ODD[3], ODD[1], ODD[4], ODD[2], ODD[5]];
        assert_eq!(read(&t), want_t);
        assert_eq!(read(&x.permute(&[1, 0]).unwrap().contiguous()), want_t);
        assert_eq!(
            read(&x.narrow(1, 1, 2).unwrap()),
            [ODD[1], ODD[2], ODD[4], ODD[5]]
        );
        let b = x.narrow(0, 1, 1).unwrap().broadcast_to(&[2, 2, 3]).unwrap();
        assert_eq!(
            read(&b),
            [&ODD[3..], &ODD[3..], &ODD[3..], &ODD[3..]].concat()
        );
        let idx = u32s(&[2, 0, 2], &[3], &dev);
        assert_eq!(
            read(&x.index_select(1, &idx).unwrap()),
            [ODD[2], ODD[0], ODD[2], ODD[5], ODD[3], ODD[5]]
        );
        let g = u32s(&[1, 1, 0, 0, 0, 1], &[2, 3], &dev);
        assert_eq!(
            read(&x.gather(0, &g).unwrap()),
            [ODD[3], ODD[4], ODD[2], ODD[0], ODD[1], ODD[5]]
        );
        let y = u32s(&[9, 8, 7], &[1, 3], &dev);
        let c = Tensor::cat(&[&x, &y], 0).unwrap();
        assert_eq!(c.shape(), [3, 3]);
        assert_eq!(read(&c), [&ODD[..], &[9, 8, 7]].concat());
        let s = Tensor::stack(&[&x, &x], 2).unwrap();
        assert_eq!(s.shape(), [2, 3, 2]);
        assert_eq!(
            read(&s),
            ODD.iter().flat_map(|&v| [v, v]).collect::<Vec<_>>()
        );
        // In place: copy_from overwrites a u32 tensor.
        let dst = u32s(&[0; 6], &[2, 3], &dev);
        dst.copy_from(&x).unwrap();
        assert_eq!(read(&dst), ODD);
        // A float and a u32 tensor do not concatenate.
        let f = Tensor::zeros(&[1, 3], &dev).unwrap();
        assert!(matches!(
            Tensor::cat(&[&x, &f], 0).unwrap_err(),
            Error::DType { op: "cat", .. }
        ));
    }
);

test_device!(
    u32_and_f32_convert_on_both_devices_cpu,
    u32_and_f32_convert_on_both_devices_gpu,
    |dev| {
        let x = u32s(&[0, 1, 7, 16_777_216, 3_000_000_000], &[5], &dev);
        let f = x.to_dtype(DType::F32).unwrap();
        assert_eq!(f.dtype(), DType::F32);
        assert_eq!(
            f.to_vec::<f32>().unwrap(),
            [0.0, 1.0, 7.0, 16_777_216.0, 3e9]
        );
        let back = Tensor::from_vec(
            vec![
                -3.5f32,
                -0.5,
                0.0,
                0.99,
                1.0,
                2.7,
                16_777_216.0,
                5e9,
                f32::NAN,
                f32::INFINITY,
            ],
            &[10],
            &dev,
        )
        .unwrap()
        .requires_grad_(true)
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap();
        assert!(!back.requires_grad());
        // As Rust's `as`: toward zero, saturating, NaN to 0.
        assert_eq!(
            read(&back),
            [0, 0, 0, 0, 1, 2, 16_777_216, u32::MAX, 0, u32::MAX]
        );
        assert_eq!(
            read(
                &u32s(&[], &[0], &dev)
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_dtype(DType::U32)
                    .unwrap()
            ),
            [] as [u32; 0]
        );
        if dev.is_gpu() {
            assert!(matches!(
                x.to_dtype(DType::F64).unwrap_err(),
                Error::DType { op: "to_dtype", .. }
            ));
        }
    }
);

test_device!(
    the_accuracy_idiom_needs_no_cast_cpu,
    the_accuracy_idiom_needs_no_cast_gpu,
    |dev| {
        let logits = Tensor::from_vec(
            vec![
                0.1f32, 0.7, 0.2, 0.9, 0.05, 0.05, 0.3, 0.3, 0.4, 0.2, 0.5, 0.3,
            ],
            &[4, 3],
            &dev,
        )
        .unwrap()
        .requires_grad_(true)
        .unwrap();
        let labels = u32s(&[1, 0, 1, 1], &[4], &dev);
        let correct = logits
            .argmax(1, false)
            .unwrap()
            .eq(&labels)
            .unwrap()
            .sum()
            .unwrap();
        assert_eq!(correct.dtype(), DType::U32);
        assert!(
            !correct.requires_grad(),
            "integer results never require grad"
        );
        assert_eq!(correct.item().unwrap(), 3.0);
        // Integers have no gradient: neither backward through them nor asking for one works.
        assert!(correct.backward().is_err());
        assert!(labels.requires_grad_(true).is_err());
    }
);

/// The GPU's comparisons, sums and maxima against the CPU's on seeded data, and the
/// accuracy idiom on a batch of random logits.
#[test]
fn gpu_u32_results_match_the_cpu() {
    let (cpu, gpu) = (Device::cpu(), common::gpu());
    let a = draws(33 * 65, 3, 11);
    let b = draws(65, 3, 12);
    let run = |dev: &Device| -> Vec<Vec<u32>> {
        let (x, y) = (u32s(&a, &[33, 65], dev), u32s(&b, &[65], dev));
        let mask = x.le(&y).unwrap();
        let (v, i) = x.max_dim_with_indices(0, false).unwrap();
        vec![
            read(&mask),
            read(&mask.sum_dim(&[1], false).unwrap()),
            read(&x.sum().unwrap()),
            read(&v),
            read(&i),
        ]
    };
    assert_eq!(run(&cpu), run(&gpu));
    let logits: Vec<f32> = draws(257 * 10, 1_000_000, 13)
        .iter()
        .map(|&v| v as f32 / 1e6)
        .collect();
    let labels = draws(257, 10, 14);
    let accuracy = |dev: &Device| -> f64 {
        let x = Tensor::from_vec(logits.clone(), &[257, 10], dev).unwrap();
        let t = u32s(&labels, &[257], dev);
        x.argmax(1, false)
            .unwrap()
            .eq(&t)
            .unwrap()
            .sum()
            .unwrap()
            .item()
            .unwrap()
    };
    let want = (0..257)
        .filter(|&r| {
            let row = &logits[r * 10..r * 10 + 10];
            let best = (0..10).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            best as u32 == labels[r]
        })
        .count() as f64;
    assert_eq!(accuracy(&cpu), want);
    assert_eq!(accuracy(&gpu), want);
}

/// Past the GPU's storage-binding limit (capped here at 1 MiB, 262,144 elements),
/// `u32` comparisons and sums cut their work into pieces and give exact results.
#[test]
fn u32_comparisons_and_sums_past_the_binding_limit() {
    let dev = Device::gpu_with(wgrad::GpuOptions {
        max_binding: Some(1 << 20),
        ..wgrad::GpuOptions::from_env()
    })
    .unwrap();
    let n = 300_007;
    let a = draws(n, 4, 21);
    let b = draws(n, 4, 22);
    let (x, y) = (u32s(&a, &[n], &dev), u32s(&b, &[n], &dev));
    let mask = x.eq(&y).unwrap();
    let want: Vec<u32> = a.iter().zip(&b).map(|(p, q)| u32::from(p == q)).collect();
    assert_eq!(read(&mask), want);
    assert_eq!(read(&mask.sum().unwrap()), [want.iter().sum::<u32>()]);
    let big = draws(n, u32::MAX, 23);
    let total = big.iter().fold(0u32, |s, &v| s.wrapping_add(v));
    assert_eq!(read(&u32s(&big, &[n], &dev).sum().unwrap()), [total]);
    // Kept dimensions: the pieces' sums are joined, not added.
    let m = u32s(&a[..300_000], &[3, 100_000], &dev);
    let rows: Vec<u32> = a[..300_000]
        .chunks(100_000)
        .map(|r| r.iter().sum())
        .collect();
    assert_eq!(read(&m.sum_dim(&[1], false).unwrap()), rows);
}
