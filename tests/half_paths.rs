//! The GPU's two ways of reading half-precision inputs: as WGSL's `f16` (native, where
//! the adapter has `SHADER_F16`, as lavapipe does) and as packed pairs widened with
//! integer operations (every adapter; `GpuOptions::native_f16 = false`). Both widen
//! exactly and compute in f32, so every product kernel, the fused layers and the
//! elementwise table give bit-identical outputs and gradients on both paths; and the
//! products read half operands themselves, so no f32 copy of a weight is made.
//! `tests/half_registry.rs` holds every op to the CPU's results on the default path.

mod common;

use wgrad::ops::conv2d::{conv2d_act, ConvOptions};
use wgrad::ops::matmul::{matmul_with, Act, MatmulChoice, MatmulKernel};
use wgrad::prelude::*;
use wgrad::GpuOptions;

/// Half tensors of `shape` from seeded normal values, tracking gradients.
fn input(shape: &[usize], seed: u64, dtype: DType, dev: &Device) -> Tensor {
    Tensor::randn_seeded(shape, seed, &Device::cpu())
        .unwrap()
        .to(dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
        .requires_grad_(true)
        .unwrap()
}

/// The bits of `y` and of the gradients of `inputs` after `y.sum().backward()`.
fn bits_of(y: &Tensor, inputs: &[&Tensor]) -> Vec<Vec<f32>> {
    y.sum().unwrap().backward().unwrap();
    let mut out = vec![y.float().unwrap().to_vec::<f32>().unwrap()];
    for t in inputs {
        let g = t.grad().expect("a gradient");
        assert_eq!(g.dtype(), t.dtype());
        out.push(g.float().unwrap().to_vec::<f32>().unwrap());
    }
    out
}

/// Every case's outputs and gradients on `dev` in `dtype`, with a name each.
fn cases(dev: &Device, dtype: DType) -> Vec<(String, Vec<Vec<f32>>)> {
    let mut all = Vec::new();
    let kernels = [
        MatmulKernel::Tile128,
        MatmulKernel::Tile64,
        MatmulKernel::Small32x32,
        MatmulKernel::Small16x16,
        MatmulKernel::Block16,
        MatmulKernel::Block64x16,
        MatmulKernel::Naive,
    ];
    // Odd extents (no vec4 loads, a pair straddling rows) and aligned ones (vec4 loads).
    for (m, k, n) in [(33, 21, 19), (32, 64, 16)] {
        for kernel in kernels {
            let a = input(&[2, m, k], 1, dtype, dev);
            let b = input(&[k, n], 2, dtype, dev);
            let choice = MatmulChoice { kernel, splits: 0 };
            let y = matmul_with(&a, &b, choice).unwrap();
            all.push((
                format!("matmul {kernel:?} {m}x{k}x{n}"),
                bits_of(&y, &[&a, &b]),
            ));
        }
    }
    for act in [Act::Relu, Act::Gelu] {
        let x = input(&[7, 12], 3, dtype, dev);
        let w = input(&[9, 12], 4, dtype, dev);
        let b = input(&[9], 5, dtype, dev);
        let y = x.linear_act(&w, Some(&b), act).unwrap();
        all.push((format!("linear_act {act:?}"), bits_of(&y, &[&x, &w, &b])));
    }
    let x = input(&[2, 3, 9, 9], 6, dtype, dev);
    let w = input(&[4, 3, 3, 3], 7, dtype, dev);
    let b = input(&[4], 8, dtype, dev);
    let o = ConvOptions {
        padding: (1, 1),
        ..ConvOptions::default()
    };
    let y = conv2d_act(&x, &w, Some(&b), o, Act::Relu).unwrap();
    all.push(("conv2d_act".into(), bits_of(&y, &[&x, &w, &b])));
    let x = input(&[5, 7], 9, dtype, dev);
    for (name, f) in [
        ("tanh", Tensor::tanh as fn(&Tensor) -> Result<Tensor>),
        ("sigmoid", Tensor::sigmoid),
        ("exp", Tensor::exp),
        ("gelu", Tensor::gelu),
    ] {
        x.zero_grad();
        let y = f(&x).unwrap();
        all.push((name.into(), bits_of(&y, &[&x])));
    }
    let a = input(&[5, 7], 10, dtype, dev);
    let b = input(&[7], 11, dtype, dev);
    let y = a.mul(&b).unwrap().div(&a.exp().unwrap()).unwrap();
    all.push(("mul, div broadcast".into(), bits_of(&y, &[&a, &b])));
    all
}

#[test]
fn native_and_packed_reads_agree_bit_for_bit() {
    let native = common::gpu();
    let Device::Gpu(ctx) = &native else {
        unreachable!("common::gpu is a GPU")
    };
    let packed = Device::gpu_with(GpuOptions {
        native_f16: false,
        ..GpuOptions::from_env()
    })
    .unwrap();
    let Device::Gpu(pctx) = &packed else {
        unreachable!("gpu_with is a GPU")
    };
    assert!(!pctx.native_f16(), "native f16 was turned off");
    println!("native f16 on {}: {}", native.name(), ctx.native_f16());
    for dtype in [DType::F16, DType::BF16] {
        let (a, b) = (cases(&native, dtype), cases(&packed, dtype));
        let cpu = cases(&Device::cpu(), dtype);
        assert_eq!(a.len(), b.len());
        for (((name, x), (_, y)), (_, c)) in a.iter().zip(&b).zip(&cpu) {
            for (i, ((u, v), w)) in x.iter().zip(y).zip(c).enumerate() {
                let same = u.iter().zip(v).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(
                    same,
                    "{name} {dtype:?} result {i}: native and packed differ"
                );
                // And both near the CPU's (f32 arithmetic in another order, then one
                // rounding: a few units in the last place of the half type).
                let tol = if dtype == DType::F16 { 4e-3 } else { 3e-2 };
                for (p, q) in u.iter().zip(w) {
                    assert!(
                        (p - q).abs() <= tol * (1.0 + q.abs()),
                        "{name} {dtype:?} result {i}: GPU {p} CPU {q}"
                    );
                }
            }
        }
    }
}

#[test]
fn half_kernels_match_with_shader_checks_on() {
    // The checked-against-unchecked comparison of `tests/gradcheck.rs`, for the kernels
    // compiled with half inputs (both paths: f16 native where the adapter has it, bf16
    // packed).
    let checked = Device::gpu_with(GpuOptions {
        shader_checks: true,
        ..GpuOptions::from_env()
    })
    .unwrap();
    let unchecked = Device::gpu_with(GpuOptions {
        shader_checks: false,
        ..GpuOptions::from_env()
    })
    .unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let (a, b) = (cases(&unchecked, dtype), cases(&checked, dtype));
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                let same = u.iter().zip(v).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(
                    same,
                    "{name} {dtype:?} result {i}: checked and unchecked differ"
                );
            }
        }
    }
}

#[test]
fn products_read_half_weights_without_an_f32_copy() {
    // A [256, 256] f16 weight is 128 KiB; an f32 copy would be 256 KiB more at the peak.
    let dev = common::gpu();
    let Device::Gpu(ctx) = &dev else {
        unreachable!("common::gpu is a GPU")
    };
    let w = Tensor::randn_seeded(&[256, 256], 1, &dev)
        .unwrap()
        .half()
        .unwrap();
    let x = Tensor::randn_seeded(&[4, 256], 2, &dev)
        .unwrap()
        .half()
        .unwrap();
    dev.sync().unwrap();
    ctx.reset_peak_bytes();
    let before = dev.counters().bytes_in_use;
    let y = no_grad(|| x.linear(&w)).unwrap();
    dev.sync().unwrap();
    let rise = dev.counters().peak_bytes - before;
    assert_eq!(y.dtype(), DType::F16);
    assert!(rise < 64 * 1024, "peak rose by {rise} bytes");
}

/// A product whose f16 output lands on the edges of the format: past 65504 plus half a
/// step (infinity), a near-tie, a subnormal, an exact value; written directly as native
/// `f16` by the kernel, it has the CPU's bits (round to nearest even, subnormals kept).
#[test]
fn native_f16_outputs_round_exactly_at_the_edges() {
    // A device of its own: no other test's dispatches in its counters.
    let gpu = Device::gpu_with(GpuOptions {
        native_f16: true,
        ..GpuOptions::from_env()
    })
    .expect("a GPU adapter");
    let Device::Gpu(ctx) = &gpu else {
        unreachable!()
    };
    // Without the adapter's `SHADER_F16` the product writes f32 and a pass rounds it.
    let want_dispatches = if ctx.native_f16() { 1 } else { 2 };
    let cpu = Device::cpu();
    let y = |dev: &Device| {
        let a = Tensor::from_vec(vec![1.0f32 + 1.0 / 1024.0, -1.0], &[2, 1], dev)
            .unwrap()
            .half()
            .unwrap();
        let w = [65472.0f32, 6e-8, 1.0, 2048.0, 3.0 * 5.960_464_5e-8, 0.0]
            .iter()
            .map(|&v| wgrad::half::f16::from_f32(v))
            .collect::<Vec<_>>();
        let b = Tensor::from_vec(w, &[1, 6], dev).unwrap();
        let before = dev.counters().dispatches;
        let out = no_grad(|| a.matmul(&b)).unwrap();
        let dispatches = dev.counters().dispatches - before;
        assert_eq!(out.dtype(), DType::F16);
        let bits = out
            .to_vec::<wgrad::half::f16>()
            .unwrap()
            .iter()
            .map(|h| h.to_bits())
            .collect::<Vec<u16>>();
        (bits, dispatches)
    };
    let ((g, dispatches), (c, _)) = (y(&gpu), y(&cpu));
    // The same bits, but for a zero's sign: `-1 x 0` is `-0` as one product and `+0`
    // added onto a zero accumulator (the GPU's kernel); the CPU's GEMM library starts
    // from the first product. Both are IEEE results of the sum.
    let unsigned_zero =
        |v: &[u16]| -> Vec<u16> { v.iter().map(|&b| if b == 0x8000 { 0 } else { b }).collect() };
    assert_eq!(unsigned_zero(&g), unsigned_zero(&c));
    assert_eq!(
        dispatches, want_dispatches,
        "native f16 is written by the product itself"
    );
    assert_eq!(c[0], 0x7c00, "65472 x (1 + 2^-10) overflows to infinity");
    assert_eq!(c[6], 0xfbfe, "-65472");
}

/// Half attention in inference reads its sources as they are (and on the native path
/// writes f16 itself): the same bits as the widened path a backward takes, on both GPU
/// paths and in bf16, without the widened path's f32 copies.
#[test]
fn half_attention_inference_reads_half_sources() {
    for (native, dtype) in [(true, DType::F16), (false, DType::F16), (true, DType::BF16)] {
        let dev = Device::gpu_with(GpuOptions {
            native_f16: native,
            ..GpuOptions::from_env()
        })
        .expect("a GPU adapter");
        let Device::Gpu(ctx) = &dev else {
            unreachable!()
        };
        let mha = wgrad::nn::MultiheadAttention::new(&dev, 32, 4).unwrap();
        mha.to_dtype(dtype).unwrap();
        let x = Tensor::randn_seeded(&[4, 16, 32], 5, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let q = Tensor::randn_seeded(&[4, 2, 16, 8], 6, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let mask = Tensor::from_vec(
            (0..16 * 16)
                .map(|i| (i % 3 != 0) as u32)
                .collect::<Vec<_>>(),
            &[16, 16],
            &dev,
        )
        .unwrap();
        let peak = |f: &dyn Fn() -> Tensor| {
            dev.sync().unwrap();
            let held = dev.counters().bytes_in_use;
            ctx.reset_peak_bytes();
            let y = f();
            dev.sync().unwrap();
            let rise = dev.counters().peak_bytes - held;
            (y.float().unwrap().to_vec::<f32>().unwrap(), rise)
        };
        let infer_mha = || no_grad(|| mha.forward(&x)).unwrap();
        // With a gradient to compute, the half sources are widened.
        let xg = x.detach().requires_grad_(true).unwrap();
        let train_mha = || mha.forward(&xg).unwrap();
        let sdpa = |q: &Tensor| {
            q.scaled_dot_product_attention(q, q, Some(&mask), 0.0, false, None)
                .unwrap()
        };
        let qg = q.detach().requires_grad_(true).unwrap();
        let (a, rise_a) = peak(&infer_mha);
        let (b, rise_b) = peak(&train_mha);
        assert_eq!(a, b, "multi-head attention, native {native} {dtype:?}");
        assert!(rise_a < rise_b, "no f32 copies: {rise_a} vs {rise_b} bytes");
        let (a, _) = peak(&|| no_grad(|| sdpa(&q)));
        let (b, _) = peak(&|| sdpa(&qg));
        assert_eq!(
            a, b,
            "scaled-dot-product attention with a mask, native {native} {dtype:?}"
        );
    }
}

/// Half layer norm in inference reads its input and affine as they are (and on the
/// native path writes f16 itself): the same bits as the widened path, on both GPU paths,
/// with and without the affine.
#[test]
fn half_layer_norm_inference_reads_half_inputs() {
    for native in [true, false] {
        let dev = Device::gpu_with(GpuOptions {
            native_f16: native,
            ..GpuOptions::from_env()
        })
        .expect("a GPU adapter");
        for dtype in [DType::F16, DType::BF16] {
            let x = Tensor::randn_seeded(&[6, 10, 33], 7, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let w = Tensor::randn_seeded(&[33], 8, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let b = Tensor::randn_seeded(&[33], 9, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let xg = x.detach().requires_grad_(true).unwrap();
            for affine in [false, true] {
                let (w, b) = if affine {
                    (Some(&w), Some(&b))
                } else {
                    (None, None)
                };
                let run = |x: &Tensor| {
                    x.layer_norm(&[33], w, b, 1e-5)
                        .unwrap()
                        .float()
                        .unwrap()
                        .to_vec::<f32>()
                        .unwrap()
                };
                let direct = no_grad(|| run(&x));
                assert_eq!(
                    direct,
                    run(&xg),
                    "native {native} {dtype:?} affine {affine}"
                );
            }
        }
    }
}

/// The transformer workload's f16 inference, whose every op reads half inputs (norms,
/// attention, the residual added inside the products' epilogue) and on the native path
/// writes f16 itself: bit-identical on both GPU paths, and near the CPU's.
#[test]
fn half_transformer_inference_agrees_on_both_paths() {
    let run = |dev: &Device| {
        dev.manual_seed(3);
        let (model, x, _) = wgrad::workloads::Workload::Transformer
            .build(dev)
            .unwrap()
            .into_parts();
        model.to_dtype(DType::F16).unwrap();
        let y = no_grad(|| model.forward(&x)).unwrap();
        assert_eq!(y.dtype(), DType::F16);
        y.float().unwrap().to_vec::<f32>().unwrap()
    };
    let gpu = |native| {
        Device::gpu_with(GpuOptions {
            native_f16: native,
            ..GpuOptions::from_env()
        })
        .expect("a GPU adapter")
    };
    let (native, packed, cpu) = (run(&gpu(true)), run(&gpu(false)), run(&Device::cpu()));
    assert_eq!(native, packed);
    let worst = native
        .iter()
        .zip(&cpu)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0f32, f32::max);
    assert!(worst < 0.05, "largest difference from the CPU: {worst}");
}

/// Max pooling without a backward to run writes no positions: the same values as with
/// them, in f32 and f16, and a backward still finds its positions when it runs.
#[test]
fn max_pooling_for_inference_skips_the_positions() {
    let dev = common::gpu();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let x = Tensor::randn_seeded(&[2, 3, 9, 8], 4, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let pool = |x: &Tensor| x.max_pool2d((3, 2), (2, 2), (1, 0)).unwrap();
        let a = no_grad(|| pool(&x))
            .float()
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let xg = x.detach().requires_grad_(true).unwrap();
        let y = pool(&xg);
        assert_eq!(a, y.float().unwrap().to_vec::<f32>().unwrap(), "{dtype:?}");
        y.sum().unwrap().backward().unwrap();
        let g = xg.grad().unwrap().float().unwrap().to_vec::<f32>().unwrap();
        assert_eq!(
            g.iter().sum::<f32>(),
            (2 * 3 * 5 * 4) as f32,
            "{dtype:?}: one per window"
        );
    }
}
