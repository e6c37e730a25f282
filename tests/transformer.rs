//! The transformer layers against PyTorch (`tests/fixtures/make_torch_transformer_fixture.py`
//! wrote the reference file: state dicts saved by PyTorch, inputs, outputs in eval mode
//! and input gradients), the GPU against the CPU, and bad arguments.

mod common;

use common::assert_close;
use wgrad::nn::{
    DecoderMasks, EncoderMasks, LayerNorm, Module, TransformerDecoderLayer, TransformerEncoder,
    TransformerEncoderLayer, TransformerLayerOptions,
};
use wgrad::ops::matmul::Act;
use wgrad::prelude::*;

type Fixture = Vec<(String, Tensor)>;

fn fixture() -> Fixture {
    common::torch_fixture("torch_transformer.safetensors")
}

fn get(f: &Fixture, name: &str, dev: &Device) -> Tensor {
    common::fixture_tensor(f, name, dev)
}

fn load(m: &dyn Module, f: &Fixture, case: &str) {
    let state = common::fixture_state(f, &format!("{case}.sd."));
    let ours: Vec<String> = m.state_dict().into_iter().map(|(n, _)| n).collect();
    let mut theirs: Vec<String> = state.iter().map(|(n, _)| n.clone()).collect();
    let mut sorted = ours.clone();
    sorted.sort();
    theirs.sort();
    assert_eq!(sorted, theirs, "{case}: the parameter names are PyTorch's");
    m.load_state_dict(&state).unwrap();
}

#[track_caller]
fn assert_matches(got: &Tensor, f: &Fixture, name: &str) {
    let want = get(f, name, &Device::cpu());
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    assert_close(&g, &w, 5e-5, 2e-4, name);
}

fn options(norm_first: bool, act: Act, batch_first: bool) -> TransformerLayerOptions {
    TransformerLayerOptions {
        dim_feedforward: 24,
        activation: act,
        batch_first,
        norm_first,
        ..Default::default()
    }
}

fn encoder_case(dev: &Device, case: &str, norm_first: bool, act: Act, bf: bool, causal: bool) {
    let f = fixture();
    let layer =
        TransformerEncoderLayer::with_options(dev, 16, 4, options(norm_first, act, bf)).unwrap();
    load(&layer, &f, case);
    layer.eval();
    let x = get(&f, &format!("{case}.x"), dev)
        .requires_grad_(true)
        .unwrap();
    let masks = EncoderMasks {
        is_causal: causal,
        ..Default::default()
    };
    let y = layer.forward_with(&x, masks).unwrap();
    assert_matches(&y, &f, &format!("{case}.out"));
    y.sum().unwrap().backward().unwrap();
    assert_matches(&x.grad().unwrap(), &f, &format!("{case}.dx"));
}

common::test_device!(
    encoder_layers_match_pytorch_cpu,
    encoder_layers_match_pytorch_gpu,
    |dev| {
        encoder_case(&dev, "enc_post_relu", false, Act::Relu, false, false);
        encoder_case(&dev, "enc_pre_gelu", true, Act::Gelu, true, false);
        encoder_case(&dev, "enc_post_gelu_causal", false, Act::Gelu, true, true);
        encoder_case(&dev, "enc_pre_relu_causal", true, Act::Relu, false, true);
    }
);

common::test_device!(
    encoder_stack_with_final_norm_matches_pytorch_cpu,
    encoder_stack_with_final_norm_matches_pytorch_gpu,
    |dev| {
        let f = fixture();
        let opts = TransformerLayerOptions {
            dropout: 0.0,
            ..options(true, Act::Gelu, true)
        };
        let stack = TransformerEncoder::build(
            2,
            |_| TransformerEncoderLayer::with_options(&dev, 16, 4, opts),
            Some(LayerNorm::new(&dev, &[16]).unwrap()),
        )
        .unwrap();
        load(&stack, &f, "stack");
        let x = get(&f, "stack.x", &dev).requires_grad_(true).unwrap();
        let masks = EncoderMasks {
            is_causal: true,
            ..Default::default()
        };
        let y = stack.forward_with(&x, masks).unwrap();
        assert_matches(&y, &f, "stack.out");
        y.sum().unwrap().backward().unwrap();
        assert_matches(&x.grad().unwrap(), &f, "stack.dx");
    }
);

common::test_device!(
    decoder_layers_match_pytorch_cpu,
    decoder_layers_match_pytorch_gpu,
    |dev| {
        let f = fixture();
        for (case, norm_first) in [("dec_post", false), ("dec_pre", true)] {
            let layer = TransformerDecoderLayer::with_options(
                &dev,
                16,
                4,
                options(norm_first, Act::Relu, true),
            )
            .unwrap();
            load(&layer, &f, case);
            layer.eval();
            let tgt = get(&f, &format!("{case}.tgt"), &dev)
                .requires_grad_(true)
                .unwrap();
            let memory = get(&f, &format!("{case}.memory"), &dev)
                .requires_grad_(true)
                .unwrap();
            let masks = DecoderMasks {
                tgt_is_causal: true,
                ..Default::default()
            };
            let y = layer.forward_with(&tgt, &memory, masks).unwrap();
            assert_matches(&y, &f, &format!("{case}.out"));
            y.sum().unwrap().backward().unwrap();
            assert_matches(&tgt.grad().unwrap(), &f, &format!("{case}.dtgt"));
            assert_matches(&memory.grad().unwrap(), &f, &format!("{case}.dmemory"));
            // Module::forward has no memory: an error, not a panic.
            assert!(layer.forward(&tgt).is_err());
        }
    }
);

#[test]
fn dropout_is_on_in_training_and_off_in_eval() {
    let dev = Device::cpu();
    let opts = TransformerLayerOptions {
        dropout: 0.5,
        ..options(false, Act::Relu, true)
    };
    let layer = TransformerEncoderLayer::with_options(&dev, 16, 4, opts).unwrap();
    let x = Tensor::randn(&[2, 5, 16], &dev).unwrap();
    layer.eval();
    let a = layer.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let b = layer.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(a, b, "eval mode is deterministic");
    layer.train();
    let c = layer.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(a, c, "training mode drops");
}

#[test]
fn bad_arguments_are_errors() {
    let dev = Device::cpu();
    let bad = |o: TransformerLayerOptions, d: usize, h: usize| {
        TransformerEncoderLayer::with_options(&dev, d, h, o).is_err()
            && TransformerDecoderLayer::with_options(&dev, d, h, o).is_err()
    };
    let ok = options(false, Act::Relu, true);
    assert!(bad(ok, 16, 3), "nhead must divide d_model");
    assert!(bad(ok, 0, 1), "d_model 0");
    assert!(bad(
        TransformerLayerOptions {
            dim_feedforward: 0,
            ..ok
        },
        16,
        4
    ));
    assert!(bad(TransformerLayerOptions { dropout: 1.0, ..ok }, 16, 4));
    let layer = TransformerEncoderLayer::with_options(&dev, 16, 4, ok).unwrap();
    let wrong_width = Tensor::zeros(&[2, 5, 12], &dev).unwrap();
    let err = layer.forward(&wrong_width).unwrap_err().to_string();
    assert!(err.contains("16"), "{err}");
    // An empty sequence gives an empty result.
    let empty = Tensor::zeros(&[2, 0, 16], &dev).unwrap();
    assert_eq!(layer.forward(&empty).unwrap().shape(), [2, 0, 16]);
}
