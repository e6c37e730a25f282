//! `nn::MultiheadAttention` and the sinusoidal position encoding against PyTorch
//! (`tests/fixtures/make_torch_attention_fixture.py` wrote the reference file: state
//! dicts saved by PyTorch, inputs, masks, outputs, weights and query gradients), the GPU
//! against the CPU, and the errors for bad arguments.

mod common;

use common::assert_close;
use wgrad::nn::{
    sinusoidal_position_encoding, AttentionArgs, MultiheadAttention, MultiheadAttentionOptions,
    PositionalEncoding,
};
use wgrad::prelude::*;

type Fixture = Vec<(String, Tensor)>;

fn fixture() -> Fixture {
    common::torch_fixture("torch_attention.safetensors")
}

fn get(f: &Fixture, name: &str, dev: &Device) -> Tensor {
    common::fixture_tensor(f, name, dev)
}

/// A module built with `options` that loaded the PyTorch state dict of `case`.
fn loaded(
    f: &Fixture,
    case: &str,
    options: MultiheadAttentionOptions,
    dev: &Device,
) -> MultiheadAttention {
    let mha = MultiheadAttention::with_options(dev, 16, 4, options).unwrap();
    let state = common::fixture_state(f, &format!("{case}.sd."));
    mha.load_state_dict(&state).unwrap();
    mha
}

fn batch_first() -> MultiheadAttentionOptions {
    MultiheadAttentionOptions {
        batch_first: true,
        ..Default::default()
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[track_caller]
fn assert_matches(got: &Tensor, f: &Fixture, name: &str) {
    let want = get(f, name, &Device::cpu());
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert_close(&values(got), &values(&want), 2e-5, 1e-4, name);
}

/// The query input as a leaf that collects its gradient.
fn leaf(f: &Fixture, name: &str, dev: &Device) -> Tensor {
    get(f, name, dev).requires_grad_(true).unwrap()
}

#[track_caller]
fn assert_grad_matches(x: &Tensor, out: &Tensor, f: &Fixture, name: &str) {
    out.sum().unwrap().backward().unwrap();
    assert_matches(&x.grad().expect("the query has a gradient"), f, name);
}

common::test_device!(
    self_attention_sequence_first_matches_pytorch_cpu,
    self_attention_sequence_first_matches_pytorch_gpu,
    |dev| {
        let f = fixture();
        let mha = loaded(&f, "self_seq", Default::default(), &dev);
        let x = leaf(&f, "self_seq.x", &dev); // [L 5, N 2, E 16]
        let (out, weights) = mha
            .forward_qkv(&x, &x, &x, AttentionArgs::default())
            .unwrap();
        assert_matches(&out, &f, "self_seq.out");
        assert_matches(&weights.unwrap(), &f, "self_seq.weights"); // [N, L, S], averaged
        assert_grad_matches(&x, &out, &f, "self_seq.dq");
        // Module::forward is the same self-attention (without the weights).
        assert_matches(&mha.forward(&x).unwrap(), &f, "self_seq.out");
    }
);

common::test_device!(
    boolean_padding_and_causal_masks_match_pytorch_on_both_paths_cpu,
    boolean_padding_and_causal_masks_match_pytorch_on_both_paths_gpu,
    |dev| {
        let f = fixture();
        let mha = loaded(&f, "masked", batch_first(), &dev);
        let kpm = get(&f, "masked.key_padding_mask", &dev); // U32, 1 = padding
        let causal = get(&f, "masked.attn_mask", &dev); // U32, 1 = not allowed
        assert_eq!(kpm.dtype(), DType::U32);
        let args = AttentionArgs {
            key_padding_mask: Some(&kpm),
            attn_mask: Some(&causal),
            average_attn_weights: false,
            ..Default::default()
        };
        let x = leaf(&f, "masked.x", &dev);
        let (out, weights) = mha.forward_qkv(&x, &x, &x, args).unwrap();
        assert_matches(&out, &f, "masked.out");
        assert_matches(&weights.unwrap(), &f, "masked.weights"); // [N, H, L, S]
        assert_grad_matches(&x, &out, &f, "masked.dq");

        // Without weights: the fused path.
        let x = leaf(&f, "masked.x", &dev);
        let args = AttentionArgs {
            need_weights: false,
            ..args
        };
        let (out, weights) = mha.forward_qkv(&x, &x, &x, args).unwrap();
        assert!(weights.is_none());
        assert_matches(&out, &f, "masked_fast.out");
        assert_grad_matches(&x, &out, &f, "masked_fast.dq");
    }
);

common::test_device!(
    is_causal_matches_pytorch_with_or_without_the_mask_cpu,
    is_causal_matches_pytorch_with_or_without_the_mask_gpu,
    |dev| {
        let f = fixture();
        let mha = loaded(&f, "causal", batch_first(), &dev);
        // PyTorch's float causal mask (-inf above the diagonal) as the hint it requires.
        let upper = get(&f, "masked.attn_mask", &Device::cpu())
            .narrow(0, 0, 5)
            .unwrap();
        let upper = upper.narrow(1, 0, 5).unwrap().to_dtype(DType::F32).unwrap();
        let hint = Tensor::where_cond(
            &upper,
            &Tensor::full(&[], f64::NEG_INFINITY, &Device::cpu()).unwrap(),
            &Tensor::zeros(&[], &Device::cpu()).unwrap(),
        )
        .unwrap()
        .to(&dev)
        .unwrap();
        for (attn_mask, need_weights) in [(Some(&hint), false), (None, false), (None, true)] {
            let x = leaf(&f, "causal.x", &dev);
            let args = AttentionArgs {
                attn_mask,
                need_weights,
                is_causal: true,
                ..Default::default()
            };
            let (out, weights) = mha.forward_qkv(&x, &x, &x, args).unwrap();
            assert_eq!(weights.is_some(), need_weights);
            assert_matches(&out, &f, "causal.out");
            assert_grad_matches(&x, &out, &f, "causal.dq");
        }
    }
);

common::test_device!(
    cross_attention_with_kdim_vdim_and_float_masks_matches_pytorch_cpu,
    cross_attention_with_kdim_vdim_and_float_masks_matches_pytorch_gpu,
    |dev| {
        let f = fixture();
        let options = MultiheadAttentionOptions {
            kdim: Some(12),
            vdim: Some(10),
            batch_first: true,
            ..Default::default()
        };
        let mha = loaded(&f, "cross", options, &dev);
        let names: Vec<String> = mha.state_dict().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "q_proj_weight",
                "k_proj_weight",
                "v_proj_weight",
                "in_proj_bias",
                "out_proj.weight",
                "out_proj.bias"
            ]
        );
        let q = leaf(&f, "cross.query", &dev); // [2, 5, 16]
        let (k, v) = (get(&f, "cross.key", &dev), get(&f, "cross.value", &dev)); // S = 7
        let kpm = get(&f, "cross.key_padding_mask", &dev); // float, added
        let attn_mask = get(&f, "cross.attn_mask", &dev); // [N * H, L, S]
        let args = AttentionArgs {
            key_padding_mask: Some(&kpm),
            attn_mask: Some(&attn_mask),
            ..Default::default()
        };
        let (out, weights) = mha.forward_qkv(&q, &k, &v, args).unwrap();
        assert_matches(&out, &f, "cross.out");
        assert_matches(&weights.unwrap(), &f, "cross.weights");
        assert_grad_matches(&q, &out, &f, "cross.dq");
    }
);

common::test_device!(
    unbatched_input_without_biases_matches_pytorch_cpu,
    unbatched_input_without_biases_matches_pytorch_gpu,
    |dev| {
        let f = fixture();
        let options = MultiheadAttentionOptions {
            bias: false,
            ..Default::default()
        };
        let mha = loaded(&f, "unbatched", options, &dev);
        assert_eq!(mha.state_dict().len(), 2); // in_proj_weight, out_proj.weight
        let x = leaf(&f, "unbatched.x", &dev); // [L 4, E 16]
        let attn_mask = get(&f, "unbatched.attn_mask", &dev);
        let args = AttentionArgs {
            attn_mask: Some(&attn_mask),
            ..Default::default()
        };
        let (out, weights) = mha.forward_qkv(&x, &x, &x, args).unwrap();
        assert_matches(&out, &f, "unbatched.out");
        assert_matches(&weights.unwrap(), &f, "unbatched.weights"); // [L, S]
        assert_grad_matches(&x, &out, &f, "unbatched.dq");
    }
);

common::test_device!(
    fully_padded_keys_give_pytorchs_zeros_or_nan_by_path_cpu,
    fully_padded_keys_give_pytorchs_zeros_or_nan_by_path_gpu,
    |dev| {
        let f = fixture();
        let mha = loaded(&f, "padded", batch_first(), &dev);
        let x = get(&f, "padded.x", &dev);
        let kpm = get(&f, "padded.key_padding_mask", &dev); // batch 1 all padding
        let args = AttentionArgs {
            key_padding_mask: Some(&kpm),
            need_weights: false,
            ..Default::default()
        };
        let (out, _) = mha.forward_qkv(&x, &x, &x, args).unwrap();
        assert_matches(&out, &f, "padded.out_fast");
        let args = AttentionArgs {
            need_weights: true,
            ..args
        };
        let (out, weights) = mha.forward_qkv(&x, &x, &x, args).unwrap();
        for (got, name) in [(out, "padded.out"), (weights.unwrap(), "padded.weights")] {
            let want = values(&get(&f, name, &Device::cpu()));
            let got = values(&got);
            assert_eq!(got.len(), want.len());
            assert!(want.iter().any(|v| v.is_nan()), "{name}: PyTorch gives NaN");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.is_nan(), w.is_nan(), "{name}[{i}]: got {g}, want {w}");
                if !w.is_nan() {
                    assert!(
                        (g - w).abs() <= 2e-5 + 1e-4 * w.abs(),
                        "{name}[{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }
);

#[test]
fn gpu_matches_cpu_forward_and_gradients() {
    let cpu = Device::cpu();
    let gpu = common::gpu();
    cpu.manual_seed(7);
    let options = MultiheadAttentionOptions {
        kdim: Some(6),
        vdim: Some(5),
        ..Default::default()
    };
    let on_cpu = MultiheadAttention::with_options(&cpu, 8, 2, options).unwrap();
    // Built on the CPU and moved: to_device reaches both weight sets and out_proj.
    let on_gpu = MultiheadAttention::with_options(&cpu, 8, 2, options).unwrap();
    on_gpu.load_state_dict(&on_cpu.state_dict()).unwrap();
    on_gpu.to_device(&gpu).unwrap();
    assert!(on_gpu.parameters().iter().all(|p| p.device() == &gpu));
    let q = Tensor::randn(&[3, 2, 8], &cpu).unwrap(); // [L, N, E]
    let k = Tensor::randn(&[4, 2, 6], &cpu).unwrap();
    let v = Tensor::randn(&[4, 2, 5], &cpu).unwrap();
    let kpm = Tensor::from_vec(vec![0u32, 0, 0, 1, 0, 1, 0, 0], &[2, 4], &cpu).unwrap();
    let run = |mha: &MultiheadAttention, dev: &Device| {
        let q = q.to(dev).unwrap().requires_grad_(true).unwrap();
        let (k, v, kpm) = (k.to(dev).unwrap(), v.to(dev).unwrap(), kpm.to(dev).unwrap());
        let args = AttentionArgs {
            key_padding_mask: Some(&kpm),
            is_causal: true,
            average_attn_weights: false,
            ..Default::default()
        };
        let (out, w) = mha.forward_qkv(&q, &k, &v, args).unwrap();
        out.sum().unwrap().backward().unwrap();
        let params: Vec<Vec<f32>> = mha
            .parameters()
            .iter()
            .map(|p| values(&p.grad().unwrap()))
            .collect();
        (
            values(&out),
            values(&w.unwrap()),
            values(&q.grad().unwrap()),
            params,
        )
    };
    let (c, g) = (run(&on_cpu, &cpu), run(&on_gpu, &gpu));
    assert_close(&g.0, &c.0, 1e-5, 1e-4, "output");
    assert_close(&g.1, &c.1, 1e-5, 1e-4, "weights");
    assert_close(&g.2, &c.2, 1e-5, 1e-4, "query gradient");
    for (i, (pg, pc)) in g.3.iter().zip(&c.3).enumerate() {
        assert_close(pg, pc, 1e-5, 1e-4, &format!("parameter {i} gradient"));
    }
}

#[test]
fn parameters_are_created_and_initialised_as_pytorchs() {
    let dev = Device::cpu();
    let mha = MultiheadAttention::new(&dev, 32, 4).unwrap();
    let state = mha.state_dict();
    let shapes: Vec<(&str, &[usize])> =
        state.iter().map(|(n, t)| (n.as_str(), t.shape())).collect();
    assert_eq!(
        shapes,
        [
            ("in_proj_weight", &[96, 32][..]),
            ("in_proj_bias", &[96][..]),
            ("out_proj.weight", &[32, 32][..]),
            ("out_proj.bias", &[32][..])
        ]
    );
    // Xavier uniform on [96, 32]: bound sqrt(6 / 128); a uniform's spread nearly reaches it.
    let bound = (6.0f32 / 128.0).sqrt();
    let w = values(&state[0].1);
    let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        max <= bound && max > 0.95 * bound,
        "max |w| {max}, bound {bound}"
    );
    assert!(values(&state[1].1).iter().all(|&v| v == 0.0));
    assert!(values(&state[3].1).iter().all(|&v| v == 0.0));
    // out_proj's weight: Linear's uniform in ±1/sqrt(32).
    let w = values(&state[2].1);
    assert!(w.iter().all(|v| v.abs() <= 1.0 / 32f32.sqrt()));
    assert_eq!(
        (mha.embed_dim(), mha.num_heads(), mha.head_dim()),
        (32, 4, 8)
    );
    assert!(!mha.batch_first());
}

#[test]
fn dropout_drops_weights_in_training_only() {
    let dev = Device::cpu();
    let options = MultiheadAttentionOptions {
        dropout: 0.5,
        batch_first: true,
        ..Default::default()
    };
    let dropping = MultiheadAttention::with_options(&dev, 8, 2, options).unwrap();
    let plain = MultiheadAttention::with_options(&dev, 8, 2, batch_first()).unwrap();
    plain.load_state_dict(&dropping.state_dict()).unwrap();
    let x = Tensor::randn(&[2, 6, 8], &dev).unwrap();
    let args = AttentionArgs {
        average_attn_weights: false,
        ..Default::default()
    };
    let (_, w) = dropping.forward_qkv(&x, &x, &x, args).unwrap();
    let (_, w_plain) = plain.forward_qkv(&x, &x, &x, args).unwrap();
    let (w, w_plain) = (values(&w.unwrap()), values(&w_plain.unwrap()));
    // Kept weights are scaled by 1 / (1 - p) = 2; about half are dropped.
    let dropped = w.iter().filter(|&&v| v == 0.0).count();
    assert!(
        dropped > w.len() / 4 && dropped < 3 * w.len() / 4,
        "{dropped} of {}",
        w.len()
    );
    for (d, p) in w.iter().zip(&w_plain) {
        assert!(*d == 0.0 || (d - 2.0 * p).abs() <= 1e-6, "{d} vs 2 * {p}");
    }
    dropping.eval();
    let (_, w) = dropping.forward_qkv(&x, &x, &x, args).unwrap();
    assert_close(&values(&w.unwrap()), &w_plain, 0.0, 0.0, "eval weights");
}

#[test]
fn bad_arguments_are_errors() {
    let dev = Device::cpu();
    let err = |r: wgrad::Result<MultiheadAttention>| r.unwrap_err().to_string();
    assert!(err(MultiheadAttention::new(&dev, 10, 4)).contains("divisible by num_heads"));
    assert!(err(MultiheadAttention::new(&dev, 0, 1)).contains("greater than 0"));
    assert!(err(MultiheadAttention::new(&dev, 8, 0)).contains("greater than 0"));
    let p1 = MultiheadAttentionOptions {
        dropout: 1.0,
        ..Default::default()
    };
    assert!(err(MultiheadAttention::with_options(&dev, 8, 2, p1)).contains("dropout"));
    let nan = MultiheadAttentionOptions {
        dropout: f64::NAN,
        ..Default::default()
    };
    assert!(err(MultiheadAttention::with_options(&dev, 8, 2, nan)).contains("dropout"));

    let mha = MultiheadAttention::new(&dev, 8, 2).unwrap();
    let t = |shape: &[usize]| Tensor::zeros(shape, &dev).unwrap();
    let call = |q: &Tensor, k: &Tensor, v: &Tensor, args: AttentionArgs| {
        mha.forward_qkv(q, k, v, args).unwrap_err().to_string()
    };
    let none = AttentionArgs::default();
    let x = t(&[3, 2, 8]);
    // Key and value of different lengths.
    let e = call(&x, &t(&[4, 2, 8]), &t(&[5, 2, 8]), none);
    assert!(e.contains("same batch size and length"), "{e}");
    // Wrong feature counts, ranks, batch sizes.
    assert!(call(&t(&[3, 2, 7]), &x, &x, none).contains("8 features"));
    assert!(call(&t(&[3, 2, 2, 8]), &x, &x, none).contains("rank 4"));
    assert!(call(&t(&[3, 8]), &x, &x, none).contains("all unbatched"));
    assert!(call(&x, &t(&[3, 1, 8]), &t(&[3, 1, 8]), none).contains("batch sizes"));
    // Masks of the wrong shape.
    let bad_kpm = t(&[2, 4]);
    let args = AttentionArgs {
        key_padding_mask: Some(&bad_kpm),
        ..none
    };
    let e = call(&x, &x, &x, args);
    assert!(
        e.contains("key_padding_mask has shape [2, 4], expected [2, 3]"),
        "{e}"
    );
    let bad_mask = t(&[3, 4]);
    let args = AttentionArgs {
        attn_mask: Some(&bad_mask),
        ..none
    };
    let e = call(&x, &x, &x, args);
    assert!(
        e.contains("attn_mask has shape [3, 4], expected [3, 3] or [4, 3, 3]"),
        "{e}"
    );
    let mask_3d = t(&[2, 3, 3]); // needs N * H = 4
    let args = AttentionArgs {
        attn_mask: Some(&mask_3d),
        ..none
    };
    assert!(call(&x, &x, &x, args).contains("attn_mask has shape [2, 3, 3]"));
    // A float mask of another dtype.
    let f64_mask = Tensor::zeros(&[3, 3], &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let args = AttentionArgs {
        attn_mask: Some(&f64_mask),
        ..none
    };
    assert!(call(&x, &x, &x, args).contains("dtype"));
}

#[test]
fn empty_sequences_give_empty_results_or_the_bias_as_pytorch() {
    let dev = Device::cpu();
    let mha = MultiheadAttention::new(&dev, 8, 2).unwrap();
    let bias = Tensor::randn(&[8], &dev).unwrap();
    mha.out_proj
        .bias
        .as_ref()
        .unwrap()
        .tensor()
        .copy_from(&bias)
        .unwrap();
    for need_weights in [true, false] {
        let args = AttentionArgs {
            need_weights,
            ..Default::default()
        };
        // L = 0: an empty output [0, N, E] and weights [N, 0, S].
        let (q, kv) = (
            Tensor::zeros(&[0, 2, 8], &dev).unwrap(),
            Tensor::randn(&[4, 2, 8], &dev).unwrap(),
        );
        let (out, w) = mha.forward_qkv(&q, &kv, &kv, args).unwrap();
        assert_eq!(out.shape(), [0, 2, 8]);
        assert_eq!(
            w.map(|w| w.shape().to_vec()),
            need_weights.then(|| vec![2, 0, 4])
        );
        // S = 0: nothing to attend to, so the output projection's bias (PyTorch: zeros
        // before the projection) and weights [N, L, 0].
        let (q, kv) = (
            Tensor::randn(&[3, 2, 8], &dev).unwrap(),
            Tensor::zeros(&[0, 2, 8], &dev).unwrap(),
        );
        let (out, w) = mha.forward_qkv(&q, &kv, &kv, args).unwrap();
        assert_eq!(out.shape(), [3, 2, 8]);
        let want: Vec<f32> = (0..6).flat_map(|_| values(&bias)).collect();
        assert_close(&values(&out), &want, 1e-6, 0.0, "S = 0 output");
        assert_eq!(
            w.map(|w| w.shape().to_vec()),
            need_weights.then(|| vec![2, 3, 0])
        );
        // N = 0: an empty batch.
        let x = Tensor::zeros(&[3, 0, 8], &dev).unwrap();
        let (out, w) = mha.forward_qkv(&x, &x, &x, args).unwrap();
        assert_eq!(out.shape(), [3, 0, 8]);
        assert_eq!(
            w.map(|w| w.shape().to_vec()),
            need_weights.then(|| vec![0, 3, 3])
        );
    }
}

common::test_device!(
    sinusoidal_position_encoding_matches_the_pytorch_tutorial_cpu,
    sinusoidal_position_encoding_matches_the_pytorch_tutorial_gpu,
    |dev| {
        let f = fixture();
        for (seq, d) in [(50, 16), (9, 7)] {
            let pe = sinusoidal_position_encoding(seq, d, &dev).unwrap();
            assert_eq!(pe.device(), &dev);
            assert_matches(&pe, &f, &format!("pe.{seq}x{d}"));
        }
        assert_eq!(
            sinusoidal_position_encoding(0, 4, &dev).unwrap().shape(),
            [0, 4]
        );
        let e = sinusoidal_position_encoding(3, 0, &dev)
            .unwrap_err()
            .to_string();
        assert!(e.contains("d_model must be greater than 0"), "{e}");
    }
);

#[test]
fn positional_encoding_moves_to_the_gpu() {
    let (cpu, gpu) = (Device::cpu(), common::gpu());
    let pe = PositionalEncoding::new(&cpu, 6, 0.0, 10).unwrap();
    pe.to_device(&gpu).unwrap();
    assert_eq!(pe.pe.tensor().device(), &gpu);
    let x = Tensor::randn(&[4, 2, 6], &cpu).unwrap();
    let want = values(
        &pe.pe
            .tensor()
            .to(&cpu)
            .unwrap()
            .narrow(0, 0, 4)
            .unwrap()
            .add(&x)
            .unwrap(),
    );
    let got = pe.forward(&x.to(&gpu).unwrap()).unwrap();
    assert_close(&values(&got), &want, 0.0, 0.0, "on the GPU");
}

#[test]
fn positional_encoding_module_adds_the_table() {
    let dev = Device::cpu();
    let f = fixture();
    let pe = PositionalEncoding::new(&dev, 16, 0.1, 50).unwrap();
    assert_eq!(pe.max_len(), 50);
    let state = pe.state_dict();
    assert_eq!(state.len(), 1);
    assert_eq!(
        (state[0].0.as_str(), state[0].1.shape()),
        ("pe", &[50, 1, 16][..])
    );
    pe.eval();
    let x = Tensor::randn(&[7, 3, 16], &dev).unwrap(); // [L, N, d]
    let table = get(&f, "pe.50x16", &dev);
    let want = x
        .add(&table.narrow(0, 0, 7).unwrap().unsqueeze(1).unwrap())
        .unwrap();
    assert_close(
        &values(&pe.forward(&x).unwrap()),
        &values(&want),
        1e-6,
        1e-6,
        "sequence first",
    );
    let pe = pe.batch_first();
    let xb = x.transpose(0, 1).unwrap(); // [N, L, d]
    let got = pe.forward(&xb).unwrap().transpose(0, 1).unwrap();
    assert_close(&values(&got), &values(&want), 1e-6, 1e-6, "batch first");
    let e = pe
        .forward(&Tensor::zeros(&[3, 51, 16], &dev).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("L <= 50"), "{e}");
    assert!(pe
        .forward(&Tensor::zeros(&[3, 5, 8], &dev).unwrap())
        .is_err());
    assert!(PositionalEncoding::new(&dev, 16, 1.0, 10).is_err());
    // In training mode dropout is applied to the sum.
    pe.train();
    let y = values(
        &pe.forward(&Tensor::ones(&[4, 50, 16], &dev).unwrap())
            .unwrap(),
    );
    assert!(y.contains(&0.0));
    // The tutorial's state dict (its table computed in f32 by PyTorch) loads, and its
    // values are ours to f32 rounding of the angles.
    let tutorial = get(&f, "tutorial_pe.sd.pe", &dev);
    let ours = values(&pe.pe.tensor());
    assert_close(&values(&tutorial), &ours, 1e-5, 0.0, "tutorial pe");
    pe.load_state_dict(&[("pe".to_string(), tutorial.clone())])
        .unwrap();
    assert_eq!(values(&pe.pe.tensor()), values(&tutorial));
}

#[test]
fn the_guides_example_runs() {
    // docs/guide.md, "Attention and position encodings", with the shapes it states.
    let dev = Device::cpu();
    let opts = MultiheadAttentionOptions {
        batch_first: true,
        ..Default::default()
    };
    let mha = MultiheadAttention::with_options(&dev, 16, 4, opts).unwrap();
    let x = Tensor::randn(&[2, 5, 16], &dev).unwrap();
    assert_eq!(mha.forward(&x).unwrap().shape(), [2, 5, 16]);
    let padding = Tensor::from_vec(vec![0u32, 0, 0, 1, 1, 0, 0, 0, 0, 0], &[2, 5], &dev).unwrap();
    let args = AttentionArgs {
        key_padding_mask: Some(&padding),
        is_causal: true,
        ..Default::default()
    };
    let (y, weights) = mha.forward_qkv(&x, &x, &x, args).unwrap();
    assert_eq!(y.shape(), [2, 5, 16]);
    let weights = values(&weights.unwrap()); // [2, 5, 5]
                                             // Padding keys 3 and 4 of the first sequence, and keys after each query, get 0.
    for (i, w) in weights.iter().enumerate() {
        let (n, query, key) = (i / 25, (i / 5) % 5, i % 5);
        if key > query || (n == 0 && key >= 3) {
            assert_eq!(*w, 0.0, "weight {i}");
        }
    }
    let cross = MultiheadAttention::with_options(
        &dev,
        16,
        4,
        MultiheadAttentionOptions {
            kdim: Some(12),
            vdim: Some(10),
            batch_first: true,
            ..Default::default()
        },
    )
    .unwrap();
    let memory = Tensor::randn(&[2, 7, 12], &dev).unwrap();
    let vals = Tensor::randn(&[2, 7, 10], &dev).unwrap();
    let no_weights = AttentionArgs {
        need_weights: false,
        ..Default::default()
    };
    let (z, w) = cross.forward_qkv(&x, &memory, &vals, no_weights).unwrap();
    assert_eq!(z.shape(), [2, 5, 16]);
    assert!(w.is_none());
    let pe = sinusoidal_position_encoding(50, 16, &dev).unwrap();
    assert_eq!(pe.shape(), [50, 16]);
    let add_positions = PositionalEncoding::new(&dev, 16, 0.1, 512)
        .unwrap()
        .batch_first();
    let h = mha.forward(&add_positions.forward(&x).unwrap()).unwrap();
    assert_eq!(h.shape(), [2, 5, 16]);
}
