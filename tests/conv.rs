//! Convolutions and pooling against numbers computed by hand and by PyTorch itself
//! (`tests/fixtures/make_torch_conv_fixture.py` wrote the reference file).

mod common;

use std::path::PathBuf;

use wgrad::ops::conv2d::ConvOptions;
use wgrad::prelude::*;

common::test_device!(
    a_hand_computed_convolution_cpu,
    a_hand_computed_convolution_gpu,
    |dev| {
        // x = 1..16 in a 4x4 image; the kernel [[1, 0], [0, -1]] takes x[i, j] - x[i+1, j+1] = -5.
        let x =
            Tensor::from_vec((1..=16).map(|v| v as f32).collect(), &[1, 1, 4, 4], &dev).unwrap();
        let w = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, -1.0], &[1, 1, 2, 2], &dev).unwrap();
        let b = Tensor::from_vec(vec![1.0f32], &[1], &dev).unwrap();
        let y = x.conv2d(&w, Some(&b), ConvOptions::default()).unwrap();
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![-4.0; 9], "{dev:?}");
        // Stride 2 and padding 1 with a 3x3 kernel of ones: sums of the 3x3 windows
        // centred on (0, 0), (0, 2), (2, 0), (2, 2), zeros outside.
        let ones = Tensor::ones(&[1, 1, 3, 3], &dev).unwrap();
        let o = ConvOptions {
            stride: (2, 2),
            padding: (1, 1),
            ..Default::default()
        };
        let y = x.conv2d(&ones, None, o).unwrap().to_vec::<f32>().unwrap();
        let want = [
            1.0 + 2.0 + 5.0 + 6.0,
            2.0 + 3.0 + 4.0 + 6.0 + 7.0 + 8.0,
            5.0 + 6.0 + 9.0 + 10.0 + 13.0 + 14.0,
            6.0 + 7.0 + 8.0 + 10.0 + 11.0 + 12.0 + 14.0 + 15.0 + 16.0,
        ];
        assert_eq!(y, want.to_vec(), "{dev:?}");
    }
);

/// One op applied to the fixture's input.
type OpUnderTest<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;

fn fixture() -> Vec<(String, Tensor)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_conv.safetensors");
    wgrad::io::read_safetensors(path, &Device::cpu()).unwrap()
}

common::test_device!(
    convolutions_and_pooling_match_pytorch_forward_and_backward_cpu,
    convolutions_and_pooling_match_pytorch_forward_and_backward_gpu,
    |dev| {
        let _serial = common::exclusive();
        let f = fixture();
        let get = |k: &str| {
            f.iter()
                .find(|(n, _)| n == k)
                .unwrap_or_else(|| panic!("{k}"))
                .1
                .to(&dev)
                .unwrap()
        };
        let cases: Vec<(&str, OpUnderTest)> = vec![
            (
                "conv",
                Box::new(|x: &Tensor| {
                    let o = ConvOptions {
                        stride: (2, 1),
                        padding: (1, 1),
                        dilation: (1, 2),
                        groups: 2,
                        ..Default::default()
                    };
                    x.conv2d(&get("conv.w"), Some(&get("conv.b")), o).unwrap()
                }),
            ),
            (
                "convt",
                Box::new(|x: &Tensor| {
                    let o = ConvOptions {
                        stride: (2, 2),
                        padding: (1, 1),
                        output_padding: (1, 1),
                        groups: 2,
                        ..Default::default()
                    };
                    x.conv_transpose2d(&get("convt.w"), Some(&get("convt.b")), o)
                        .unwrap()
                }),
            ),
            (
                "maxpool",
                Box::new(|x: &Tensor| x.max_pool2d((3, 3), (2, 2), (1, 1)).unwrap()),
            ),
            (
                "avgpool",
                Box::new(|x: &Tensor| x.avg_pool2d((3, 3), (2, 2), (1, 1)).unwrap()),
            ),
            (
                "adaptive",
                Box::new(|x: &Tensor| x.adaptive_avg_pool2d((3, 2)).unwrap()),
            ),
        ];
        for (name, op) in cases {
            let x = get(&format!("{name}.x")).requires_grad_(true).unwrap();
            let y = op(&x);
            let want = get(&format!("{name}.out"));
            assert_eq!(y.shape(), want.shape(), "{name} on {dev:?}");
            let what = format!("{name} output on {dev:?}");
            common::assert_close(
                &y.to_vec::<f32>().unwrap(),
                &want.to_vec::<f32>().unwrap(),
                1e-4,
                0.0,
                &what,
            );
            y.mul(&get(&format!("{name}.proj")))
                .unwrap()
                .sum()
                .unwrap()
                .backward()
                .unwrap();
            let what = format!("{name} input gradient on {dev:?}");
            common::assert_close(
                &x.grad().unwrap().to_vec::<f32>().unwrap(),
                &get(&format!("{name}.dx")).to_vec::<f32>().unwrap(),
                1e-4,
                0.0,
                &what,
            );
        }
    }
);

#[test]
fn bad_convolution_arguments_are_errors() {
    let dev = Device::cpu();
    let x = Tensor::zeros(&[1, 3, 5, 5], &dev).unwrap();
    let w = Tensor::zeros(&[4, 2, 3, 3], &dev).unwrap();
    let err = x
        .conv2d(&w, None, ConvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conv2d") && err.contains("[1, 3, 5, 5]") && err.contains("[4, 2, 3, 3]"),
        "{err}"
    );
    let big = Tensor::zeros(&[4, 3, 7, 7], &dev).unwrap();
    assert!(x
        .conv2d(&big, None, ConvOptions::default())
        .unwrap_err()
        .to_string()
        .contains("larger"));
    assert!(
        x.max_pool2d((2, 2), (2, 2), (2, 2)).is_err(),
        "padding above half the window"
    );
    assert!(Tensor::zeros(&[3, 5, 5], &dev)
        .unwrap()
        .max_pool2d((2, 2), (2, 2), (0, 0))
        .is_err());
}
