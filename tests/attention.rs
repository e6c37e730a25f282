//! Fused scaled-dot-product attention: the registry's cases on their own (finite
//! differences in f64, the GPU against the CPU), PyTorch's values, memory on the GPU,
//! dropout, and bad input.

mod common;

use wgrad::ops::registry::check::{compare, draw, make_inputs, projection, run_case, slack};
use wgrad::ops::registry::{registry, OpEntry};
use wgrad::prelude::*;

fn entry() -> OpEntry {
    registry()
        .into_iter()
        .find(|e| e.name == "scaled_dot_product_attention")
        .expect("the registry lists attention")
}

/// The registry's attention cases against central differences in f64 on the CPU.
#[test]
fn registry_cases_pass_finite_differences() {
    let entry = entry();
    let mut failures = Vec::new();
    for (k, case) in entry.cases.iter().enumerate() {
        let (values, mut rng) = draw(&entry, k);
        let dev = Device::cpu();
        let loss = |vals: &[Vec<f64>], w: &[f64]| -> f64 {
            let inputs = make_inputs(case, vals, DType::F64, &dev, false).unwrap();
            let out = (case.run)(&inputs, &dev).unwrap().to_f64_vec().unwrap();
            out.iter().zip(w).map(|(a, b)| a * b).sum()
        };
        let inputs = make_inputs(case, &values, DType::F64, &dev, true).unwrap();
        let out = (case.run)(&inputs, &dev).unwrap();
        let w = projection(&mut rng, out.numel());
        let wt = Tensor::from_vec(w.clone(), out.shape(), &dev).unwrap();
        out.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
        for i in 0..3 {
            let analytic = inputs[i].grad().unwrap().to_f64_vec().unwrap();
            for j in 0..values[i].len() {
                let h = 1e-6;
                let mut plus = values.clone();
                plus[i][j] += h;
                let mut minus = values.clone();
                minus[i][j] -= h;
                let numeric = (loss(&plus, &w) - loss(&minus, &w)) / (2.0 * h);
                if (analytic[j] - numeric).abs() > 1e-6 + 1e-4 * numeric.abs() {
                    failures.push(format!(
                        "{}: input {i}[{j}] analytic {} numeric {numeric}",
                        case.label, analytic[j]
                    ));
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The registry's attention cases on the GPU against the CPU.
#[test]
fn registry_cases_match_the_cpu_on_the_gpu() {
    let entry = entry();
    let gpu = common::gpu();
    let mut failures = Vec::new();
    for (k, case) in entry.cases.iter().enumerate() {
        let cpu = run_case(&entry, k, &Device::cpu()).unwrap();
        let got = run_case(&entry, k, &gpu).unwrap();
        compare(&case.label, &got, &cpu, slack(&entry), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn fixture(dev: &Device) -> Vec<(String, Tensor)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch_sdpa.safetensors");
    wgrad::io::read_safetensors(&path, dev).unwrap()
}

fn get(file: &[(String, Tensor)], name: &str) -> Tensor {
    file.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from the fixture"))
        .1
        .clone()
}

common::test_device!(
    /// PyTorch's `F.scaled_dot_product_attention` outputs and q/k/v gradients
    /// (`tests/fixtures/make_torch_sdpa_fixture.py`): cross-attention with
    /// `S != L` and `Ev != E`, causal with `L != S` (upper-left) and over two row blocks,
    /// a 0/1 mask broadcast over heads with a fully masked row, an additive mask with
    /// `-inf` and a custom scale, and logits near ±1000.
    attention_matches_pytorch_cpu,
    attention_matches_pytorch_gpu,
    |dev| {
        let file = fixture(&dev);
        for name in [
            "cross",
            "causal",
            "causal_long",
            "bool_mask",
            "additive_mask",
            "large_logits",
        ] {
            let t = |n: &str| get(&file, &format!("{name}.{n}"));
            let (q, k, v) = (
                t("q").requires_grad_(true).unwrap(),
                t("k").requires_grad_(true).unwrap(),
                t("v").requires_grad_(true).unwrap(),
            );
            let mask = match name {
                "bool_mask" | "additive_mask" => Some(t("mask")),
                _ => None,
            };
            let causal = name.starts_with("causal");
            let scale = (name == "additive_mask").then_some(0.3);
            let out = q
                .scaled_dot_product_attention(&k, &v, mask.as_ref(), 0.0, causal, scale)
                .unwrap();
            out.mul(&t("w")).unwrap().sum().unwrap().backward().unwrap();
            // Logits near ±1000 leave f32 scores with absolute rounding of about 1e-4
            // (on both sides), which the near-one-hot weights pass on to the gradients.
            let atol = if name == "large_logits" { 2e-3 } else { 2e-5 };
            let v32 = |x: &Tensor| x.to_vec::<f32>().unwrap();
            common::assert_close(&v32(&out), &v32(&t("out")), 2e-5, 1e-4, &format!("{name} out"));
            for (x, g) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
                let got = v32(&x.grad().unwrap());
                common::assert_close(&got, &v32(&t(g)), atol, 1e-3, &format!("{name} {g}"));
            }
        }
    }
);

/// Attention's inputs on `dev`: q `[lead.., l, e]`, k `[lead.., s, e]`, v `[lead.., s, ev]`.
fn qkv(dev: &Device, lead: &[usize], l: usize, s: usize, e: usize, ev: usize) -> [Tensor; 3] {
    let make = |rows: usize, cols: usize, seed: u64| {
        let shape = [lead, &[rows, cols]].concat();
        Tensor::randn_seeded(&shape, seed, dev).unwrap()
    };
    [make(l, e, 1), make(s, e, 2), make(s, ev, 3)]
}

common::test_device!(
    /// Wrong shapes, dtypes and arguments are errors that name the op, before any work.
    bad_arguments_are_errors_cpu,
    bad_arguments_are_errors_gpu,
    |dev| {
        let [q, k, v] = qkv(&dev, &[2, 3], 5, 7, 8, 6);
        let sdpa = |q: &Tensor, k: &Tensor, v: &Tensor, m: Option<&Tensor>, p: f64, c: bool, s: Option<f64>| {
            q.scaled_dot_product_attention(k, v, m, p, c, s)
        };
        let fails = |r: Result<Tensor>, what: &str| {
            let e = r.expect_err(what).to_string();
            assert!(e.contains("scaled_dot_product_attention"), "{what}: {e}");
        };
        let [_, k4, _] = qkv(&dev, &[2, 3], 5, 7, 4, 6);
        fails(sdpa(&q, &k4, &v, None, 0.0, false, None), "head dims differ");
        let [_, _, v9] = qkv(&dev, &[2, 3], 5, 9, 8, 6);
        fails(sdpa(&q, &k, &v9, None, 0.0, false, None), "k and v lengths differ");
        let [_, k2, v2] = qkv(&dev, &[2, 4], 5, 7, 8, 6);
        fails(sdpa(&q, &k2, &v2, None, 0.0, false, None), "batch dims differ");
        let flat = Tensor::randn_seeded(&[8], 4, &dev).unwrap();
        fails(sdpa(&flat, &flat, &flat, None, 0.0, false, None), "rank 1");
        let bad_mask = Tensor::zeros(&[5, 6], &dev).unwrap();
        fails(sdpa(&q, &k, &v, Some(&bad_mask), 0.0, false, None), "mask of the wrong shape");
        let heads_mask = Tensor::zeros(&[4, 5, 7], &dev).unwrap();
        fails(sdpa(&q, &k, &v, Some(&heads_mask), 0.0, false, None), "mask over 4 heads");
        let mask = Tensor::zeros(&[5, 7], &dev).unwrap();
        fails(sdpa(&q, &k, &v, Some(&mask), 0.0, true, None), "mask and is_causal");
        fails(sdpa(&q, &k, &v, None, 1.0, false, None), "dropout 1");
        fails(sdpa(&q, &k, &v, None, f64::NAN, false, None), "dropout NaN");
        fails(sdpa(&q, &k, &v, None, 0.0, false, Some(f64::NAN)), "scale NaN");
        let [q0, k0, v0] = qkv(&dev, &[2], 3, 3, 0, 2);
        fails(sdpa(&q0, &k0, &v0, None, 0.0, false, None), "head dimension 0");
        let idx = Tensor::from_vec(vec![1u32; 6], &[1, 2, 3], &dev).unwrap();
        fails(sdpa(&idx, &idx, &idx, None, 0.0, false, None), "u32 inputs");
        // The GPU's fused kernels hold head rows of at most 128 floats.
        let [qb, kb, vb] = qkv(&dev, &[1], 3, 3, 130, 4);
        let r = sdpa(&qb, &kb, &vb, None, 0.0, false, None);
        if dev.is_gpu() {
            fails(r, "head dimension 130 on the GPU");
        } else {
            assert_eq!(r.unwrap().shape(), [1, 3, 4]);
        }
        dev.sync().unwrap();
    }
);

common::test_device!(
    /// Empty sequences as PyTorch: `L = 0` gives an empty output, `S = 0` zeros (and
    /// zero gradients).
    empty_sequences_cpu,
    empty_sequences_gpu,
    |dev| {
        let [q, k, v] = qkv(&dev, &[2, 1], 0, 4, 3, 5);
        let out = q.scaled_dot_product_attention(&k, &v, None, 0.0, false, None).unwrap();
        assert_eq!(out.shape(), [2, 1, 0, 5]);
        let [q, k, v] = qkv(&dev, &[2, 1], 3, 0, 3, 5);
        let q = q.requires_grad_(true).unwrap();
        let out = q.scaled_dot_product_attention(&k, &v, None, 0.0, false, None).unwrap();
        assert_eq!(out.shape(), [2, 1, 3, 5]);
        assert!(out.to_vec::<f32>().unwrap().iter().all(|&x| x == 0.0));
        out.sum().unwrap().backward().unwrap();
        assert!(q.grad().unwrap().to_vec::<f32>().unwrap().iter().all(|&x| x == 0.0));
    }
);

/// With q = k = 0 every weight is 1 / S, and v the identity makes output (i, j) the
/// dropout factor of weight (i, j) over S: the mask itself. It drops about p of the
/// weights, the same ones on the CPU and the GPU for one key (the generator's
/// (batch-head, row, column) counters), and the backward drops the same ones (v's
/// gradient under an upstream gradient of ones holds the column sums of the mask / S).
#[test]
fn dropout_masks_agree_between_devices_and_passes() {
    use wgrad::backend::random::RngKey;
    use wgrad::ops::attention::scaled_dot_product_attention_with_key;
    let (bh, l, s, p) = (2, 40, 50, 0.3);
    let key = RngKey { seed: 5, offset: 7 };
    let mut masks = Vec::new();
    for dev in common::devices() {
        let q = Tensor::zeros(&[bh, l, 4], &dev).unwrap();
        let k = Tensor::zeros(&[bh, s, 4], &dev).unwrap();
        let mut eye = vec![0f32; bh * s * s];
        for b in 0..bh {
            for j in 0..s {
                eye[(b * s + j) * s + j] = 1.0;
            }
        }
        let v = Tensor::from_vec(eye, &[bh, s, s], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let out =
            scaled_dot_product_attention_with_key(&q, &k, &v, None, p, false, None, key).unwrap();
        let mask: Vec<f32> = out
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|x| x * s as f32)
            .collect();
        out.sum().unwrap().backward().unwrap();
        let dv = v.grad().unwrap().to_vec::<f32>().unwrap();
        for b in 0..bh {
            for j in 0..s {
                let col: f32 = (0..l).map(|i| mask[(b * l + i) * s + j]).sum::<f32>() / s as f32;
                for c in 0..s {
                    assert!(
                        (dv[(b * s + j) * s + c] - col).abs() < 1e-5,
                        "dv ({b}, {j}, {c})"
                    );
                }
            }
        }
        masks.push(mask);
    }
    let kept = masks[0].iter().filter(|&&x| x > 0.5).count() as f64 / masks[0].len() as f64;
    assert!((kept - (1.0 - p)).abs() < 0.03, "kept {kept}");
    for (c, g) in masks[0].iter().zip(&masks[1]) {
        assert!(
            (c - g).abs() < 1e-4,
            "the GPU's mask differs from the CPU's"
        );
        assert!(*c == 0.0 || (c - 1.0 / (1.0 - p as f32)).abs() < 1e-4);
    }
}

common::test_device!(
    /// Dropout draws from the device's seeded generator: a new mask per call, the same
    /// masks again after `manual_seed`; `dropout_p = 0` is deterministic.
    dropout_follows_the_device_generator_cpu,
    dropout_follows_the_device_generator_gpu,
    |dev| {
        let [q, k, v] = qkv(&dev, &[1, 2], 6, 9, 4, 3);
        let run = |p: f64| {
            q.scaled_dot_product_attention(&k, &v, None, p, false, None)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
        };
        dev.manual_seed(3);
        let (a, b) = (run(0.5), run(0.5));
        assert_ne!(a, b);
        dev.manual_seed(3);
        assert_eq!(run(0.5), a);
        assert_eq!(run(0.0), run(0.0));
    }
);

/// `batch 1, heads 2, seq 2048, head_dim 64` on the GPU (q is 1 MiB; the scores alone
/// would be 32 MiB): forward plus backward raise the device's peak bytes by at most
/// 8 times q's size. Causal, to halve the time on a software GPU; the buffers are the
/// same either way.
#[test]
fn attention_memory_stays_within_eight_times_q_on_the_gpu() {
    let dev = Device::gpu_with(wgrad::GpuOptions::from_env()).expect("a GPU adapter (lavapipe)");
    let [q, k, v] = qkv(&dev, &[1, 2], 2048, 2048, 64, 64);
    let (q, k, v) = (
        q.requires_grad_(true).unwrap(),
        k.requires_grad_(true).unwrap(),
        v.requires_grad_(true).unwrap(),
    );
    dev.sync().unwrap();
    let Device::Gpu(ctx) = &dev else {
        panic!("gpu_with opened a GPU")
    };
    ctx.reset_peak_bytes();
    let before = dev.counters().bytes_in_use;
    let out = q
        .scaled_dot_product_attention(&k, &v, None, 0.0, true, None)
        .unwrap();
    out.sum().unwrap().backward().unwrap();
    dev.sync().unwrap();
    let rise = dev.counters().peak_bytes - before;
    let q_bytes = (q.numel() * 4) as u64;
    assert!(
        rise <= 8 * q_bytes,
        "peak rose by {rise} bytes, q is {q_bytes}"
    );
    println!(
        "attention at seq 2048: peak rose by {:.2} x q",
        rise as f64 / q_bytes as f64
    );
    let g = q.grad().unwrap().to_vec::<f32>().unwrap();
    assert!(g.iter().all(|x| x.is_finite()));
}

/// One wide case: the leading shape, `l`, `s`, `e`, `ev`, causal, the mask (none, 0/1
/// or additive, `[l, s]` broadcast over batch and heads) and the dropout probability.
type WideCase = (&'static [usize], usize, usize, usize, usize, bool, u8, f64);

/// Head dimensions the registry's small cases leave out (the GPU kernels are written
/// out per head dimension): 32, 64 and 128 (aligned rows), 34 (a partial last `vec4`),
/// rows crossing several workgroup blocks, causal, masks, dropout; the GPU against
/// the CPU, forward and backward, with the software adapter's row kernels and the
/// hardware kernels both.
#[test]
fn wide_heads_match_the_cpu_on_the_gpu() {
    use wgrad::backend::random::RngKey;
    use wgrad::ops::attention::scaled_dot_product_attention_with_key;
    let cases: &[WideCase] = &[
        (&[1, 2], 300, 300, 64, 64, false, 2, 0.0),
        (&[1, 1], 300, 300, 32, 32, true, 0, 0.1),
        (&[2], 37, 45, 34, 20, false, 1, 0.2),
        (&[1, 1], 70, 70, 128, 96, true, 0, 0.1),
    ];
    let run = |dev: &Device, &(lead, l, s, e, ev, causal, mask, p): &WideCase| {
        let [q, k, v] = qkv(dev, lead, l, s, e, ev);
        let (q, k, v) = (
            q.mul_scalar(0.5).unwrap().requires_grad_(true).unwrap(),
            k.requires_grad_(true).unwrap(),
            v.requires_grad_(true).unwrap(),
        );
        // About a quarter of the pairs masked out; the additive mask's others get -1..1.
        let seen = |i: usize, j: usize| !(i * 7 + j * 13).is_multiple_of(4);
        let mask = match mask {
            1 => {
                let m: Vec<u32> = (0..l * s).map(|x| seen(x / s, x % s) as u32).collect();
                Some(Tensor::from_vec(m, &[l, s], dev).unwrap())
            }
            2 => {
                let m: Vec<f32> = (0..l * s)
                    .map(|x| match seen(x / s, x % s) {
                        true => (x % 3) as f32 - 1.0,
                        false => f32::NEG_INFINITY,
                    })
                    .collect();
                Some(Tensor::from_vec(m, &[l, s], dev).unwrap())
            }
            _ => None,
        };
        let key = RngKey { seed: 4, offset: 2 };
        let out =
            scaled_dot_product_attention_with_key(&q, &k, &v, mask.as_ref(), p, causal, None, key)
                .unwrap();
        let w = Tensor::randn_seeded(out.shape(), 8, dev).unwrap();
        out.mul(&w).unwrap().sum().unwrap().backward().unwrap();
        let v32 = |x: &Tensor| x.to_vec::<f32>().unwrap();
        [
            v32(&out),
            v32(&q.grad().unwrap()),
            v32(&k.grad().unwrap()),
            v32(&v.grad().unwrap()),
        ]
    };
    let software = Device::gpu_with(wgrad::GpuOptions::from_env()).expect("a GPU adapter");
    let hardware = Device::gpu_with(wgrad::GpuOptions {
        software_kernels: false,
        ..wgrad::GpuOptions::from_env()
    })
    .expect("a GPU adapter");
    for case in cases {
        let want = run(&Device::cpu(), case);
        for (kernels, gpu) in [("software", &software), ("hardware", &hardware)] {
            let got = run(gpu, case);
            for (i, what) in ["out", "dq", "dk", "dv"].iter().enumerate() {
                common::assert_close(
                    &got[i],
                    &want[i],
                    1e-4,
                    1e-3,
                    &format!("{case:?} {what} ({kernels} kernels)"),
                );
            }
        }
    }
}
