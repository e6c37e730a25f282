//! Shape errors in PyTorch's words: each message names the expected and the actual size
//! of the offending dimension, with a hint where one is obvious. Every check runs before
//! anything is launched, so the CPU shows the messages of both devices.

use wgrad::ops::conv2d::ConvOptions;
use wgrad::prelude::*;

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, &Device::cpu()).unwrap()
}

fn labels(n: usize) -> Tensor {
    Tensor::from_vec(vec![0u32; n], &[n], &Device::cpu()).unwrap()
}

/// The message of a shape error, checking the variant and the op.
fn shape_msg(r: Result<Tensor>, want_op: &str) -> String {
    match r {
        Err(Error::Shape { op, msg }) => {
            assert_eq!(op, want_op, "{msg}");
            msg
        }
        Err(e) => panic!("expected a shape error of {want_op}, got {e}"),
        Ok(t) => panic!(
            "expected a shape error of {want_op}, got a tensor {:?}",
            t.shape()
        ),
    }
}

#[test]
fn conv2d_names_the_expected_and_actual_input_channels() {
    let x = zeros(&[2, 3, 28, 28]);
    let w = zeros(&[16, 1, 3, 3]);
    let msg = shape_msg(x.conv2d(&w, None, ConvOptions::default()), "conv2d");
    assert_eq!(
        msg,
        "given groups=1, weight of size [16, 1, 3, 3], expected input[2, 3, 28, 28] to have 1 channels, but got 3 channels instead"
    );
    // Grouped: the weight's input channels times the groups.
    let o = ConvOptions {
        groups: 2,
        ..ConvOptions::default()
    };
    let msg = shape_msg(
        zeros(&[1, 6, 5, 5]).conv2d(&zeros(&[4, 2, 3, 3]), None, o),
        "conv2d",
    );
    assert_eq!(
        msg,
        "given groups=2, weight of size [4, 2, 3, 3], expected input[1, 6, 5, 5] to have 4 channels, but got 6 channels instead"
    );
    let msg = shape_msg(
        zeros(&[1, 4, 5, 5]).conv2d(&zeros(&[3, 2, 3, 3]), None, o),
        "conv2d",
    );
    assert_eq!(
        msg,
        "given groups=2, expected weight to be divisible by 2 at dimension 0, but got weight of size [3, 2, 3, 3] instead"
    );
    let o = ConvOptions {
        groups: 0,
        ..ConvOptions::default()
    };
    let msg = shape_msg(
        zeros(&[1, 4, 5, 5]).conv2d(&zeros(&[4, 4, 3, 3]), None, o),
        "conv2d",
    );
    assert_eq!(msg, "non-positive groups is not supported (groups = 0)");
}

#[test]
fn the_conv2d_module_gives_the_same_message() {
    let conv = Conv2d::new(&Device::cpu(), 1, 16, 3);
    let err = conv.forward(&zeros(&[2, 3, 28, 28])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "conv2d: given groups=1, weight of size [16, 1, 3, 3], expected input[2, 3, 28, 28] to have 1 channels, but got 3 channels instead"
    );
}

#[test]
fn linear_says_which_shapes_cannot_be_multiplied() {
    let w = zeros(&[128, 9216]);
    let msg = shape_msg(zeros(&[2, 9215]).linear(&w), "linear");
    assert_eq!(
        msg,
        "mat1 and mat2 shapes cannot be multiplied (2x9215 and 9216x128)"
    );
    // An unflattened input whose trailing dimensions hold in_features gets a hint.
    let msg = shape_msg(zeros(&[2, 64, 12, 12]).linear(&w), "linear");
    assert_eq!(
        msg,
        "mat1 and mat2 shapes cannot be multiplied (1536x12 and 9216x128) (input [2, 64, 12, 12], weight [128, 9216]); hint: flatten the input (x.flatten(1, -1)) before Linear"
    );
    // Without the hint where flattening would not help.
    let msg = shape_msg(zeros(&[2, 5, 7]).linear(&zeros(&[4, 6])), "linear");
    assert_eq!(
        msg,
        "mat1 and mat2 shapes cannot be multiplied (10x7 and 6x4) (input [2, 5, 7], weight [4, 6])"
    );
}

#[test]
fn the_linear_module_gives_the_same_messages_with_the_hint() {
    let dev = Device::cpu();
    let fc = Linear::new(&dev, 9216, 128);
    let err = fc.forward(&zeros(&[2, 9215])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "linear: mat1 and mat2 shapes cannot be multiplied (2x9215 and 9216x128)"
    );
    let err = fc.forward(&zeros(&[2, 64, 12, 12])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "linear: mat1 and mat2 shapes cannot be multiplied (1536x12 and 9216x128) (input [2, 64, 12, 12], weight [128, 9216]); hint: flatten the input (x.flatten(1, -1)) before Linear"
    );
    // Following the hint works.
    let y = fc
        .forward(&zeros(&[2, 64, 12, 12]).flatten(1, -1).unwrap())
        .unwrap();
    assert_eq!(y.shape(), [2, 128]);
}

#[test]
fn matmul_names_the_matrices_and_the_batch_dimensions() {
    let msg = shape_msg(zeros(&[32, 64]).matmul(&zeros(&[65, 10])), "matmul");
    assert_eq!(
        msg,
        "mat1 and mat2 shapes cannot be multiplied (32x64 and 65x10)"
    );
    let msg = shape_msg(zeros(&[2, 3, 4]).matmul(&zeros(&[2, 5, 6])), "matmul");
    assert_eq!(
        msg,
        "mat1 and mat2 shapes cannot be multiplied (3x4 and 5x6) (batched: [2, 3, 4] and [2, 5, 6])"
    );
    let msg = shape_msg(zeros(&[2, 3, 4]).matmul(&zeros(&[5, 4, 6])), "matmul");
    assert_eq!(
        msg,
        "batch dimensions [2] of [2, 3, 4] and [5] of [5, 4, 6] do not broadcast: the size of tensor a (2) must match the size of tensor b (5) at non-singleton dimension 0"
    );
}

#[test]
fn cross_entropy_compares_the_batch_sizes() {
    let msg = shape_msg(zeros(&[3, 5]).cross_entropy(&labels(2)), "cross_entropy");
    assert_eq!(
        msg,
        "expected input batch_size (3) to match target batch_size (2) (logits [3, 5], targets [2])"
    );
    let msg = shape_msg(zeros(&[3, 5]).nll_loss(&labels(4)), "nll_loss");
    assert_eq!(
        msg,
        "expected input batch_size (3) to match target batch_size (4) (input [3, 5], target [4])"
    );
}

#[test]
fn cat_names_the_tensor_and_the_dimension_that_differ() {
    let (a, b, c) = (zeros(&[2, 3]), zeros(&[1, 3]), zeros(&[2, 4]));
    let msg = shape_msg(Tensor::cat(&[&a, &b, &c], 0), "cat");
    assert_eq!(
        msg,
        "sizes of tensors must match except in dimension 0: expected size 3 but got size 4 in dimension 1 for tensor number 2 in the list ([2, 3] and [2, 4])"
    );
    let msg = shape_msg(Tensor::cat(&[&a, &zeros(&[2, 3, 1])], -1), "cat");
    assert_eq!(
        msg,
        "tensors must have same number of dimensions: got 2 and 3 for tensor number 1 in the list ([2, 3] and [2, 3, 1])"
    );
}

#[test]
fn broadcasting_names_the_last_non_singleton_dimension_that_differs() {
    let msg = shape_msg(zeros(&[2, 3]).add(&zeros(&[2, 4])), "add");
    assert_eq!(
        msg,
        "the size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1 (shapes [2, 3] and [2, 4])"
    );
    // As PyTorch, the last dimension that does not fit, counted in the broadcast shape.
    let msg = shape_msg(zeros(&[5, 2, 3]).mul(&zeros(&[3, 4])), "mul");
    assert_eq!(
        msg,
        "the size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 2 (shapes [5, 2, 3] and [3, 4])"
    );
    let msg = shape_msg(&zeros(&[4, 1]) - &zeros(&[3, 2]), "sub");
    assert_eq!(
        msg,
        "the size of tensor a (4) must match the size of tensor b (3) at non-singleton dimension 0 (shapes [4, 1] and [3, 2])"
    );
}
