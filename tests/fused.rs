//! The fused layers (`linear_act`, `conv2d_act`) against the same ops unfused, on both
//! devices, at sizes that reach the tiled kernels; and what careless callers get.

mod common;

use wgrad::nn::Act;
use wgrad::ops::conv2d::ConvOptions;
use wgrad::prelude::*;

const ACTS: [Act; 10] = [
    Act::Identity,
    Act::Relu,
    Act::LeakyRelu(0.1),
    Act::Sigmoid,
    Act::Tanh,
    Act::LeakyRelu(-0.5),
    Act::Gelu,
    Act::GeluTanh,
    Act::Silu,
    Act::Mish,
];

/// The activations a case runs: all of them where `all`; elsewhere GELU stands for the
/// rows whose backward reads the pre-activation (each kernel variant costs seconds to
/// compile on a software adapter).
fn acts_for(all: bool) -> impl Iterator<Item = Act> {
    ACTS.into_iter()
        .filter(move |a| all || !matches!(a, Act::GeluTanh | Act::Silu | Act::Mish))
}

/// The activations of the largest product: one that reads its output and one that reads
/// its pre-activation, besides none. Its 128-wide tiles unroll every store, so each
/// activation's kernels take seconds to compile on a software adapter; the epilogue code
/// is shared with the smaller tiles, where every activation runs.
const LARGEST: [Act; 3] = [Act::Identity, Act::Relu, Act::Gelu];

fn unfused(y: Tensor, act: Act) -> Tensor {
    match act {
        Act::Identity => y,
        Act::Relu => y.relu().unwrap(),
        Act::LeakyRelu(s) => y.leaky_relu(s).unwrap(),
        Act::Sigmoid => y.sigmoid().unwrap(),
        Act::Tanh => y.tanh().unwrap(),
        Act::Gelu => y.gelu().unwrap(),
        Act::GeluTanh => y.gelu_tanh().unwrap(),
        Act::Silu => y.silu().unwrap(),
        Act::Mish => y.mish().unwrap(),
    }
}

/// Output and the gradients of every input, after `sum(out * w)` for a fixed `w`.
fn run(inputs: &[Tensor], f: &dyn Fn(&[Tensor]) -> Tensor) -> Vec<Vec<f32>> {
    let out = f(inputs);
    let w = Tensor::rand_seeded(out.shape(), 99, out.device()).unwrap();
    out.mul(&w).unwrap().sum().unwrap().backward().unwrap();
    let mut all = vec![common::vec_f32(&out)];
    all.extend(inputs.iter().map(|t| common::vec_f32(&t.grad().unwrap())));
    all
}

fn leaves(shapes: &[&[usize]], dev: &Device) -> Vec<Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Tensor::randn_seeded(s, 10 + i as u64, dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap()
        })
        .collect()
}

fn assert_all_close(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let scale = w.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        common::assert_close(g, w, 2e-4 * scale, 0.0, &format!("{what}, tensor {k}"));
    }
}

#[test]
fn linear_act_matches_the_unfused_ops_on_both_devices() {
    let _serial = common::exclusive();
    // Tile128, Tile64 with and without vec4 loads, and small tiles.
    let shapes: [(usize, usize, usize); 4] =
        [(256, 256, 128), (96, 64, 72), (33, 17, 5), (2, 3, 1)];
    let cpu = Device::cpu();
    let gpu = common::gpu();
    for (case, (rows, inp, out)) in shapes.into_iter().enumerate() {
        let acts: Vec<Act> = if case == 0 {
            LARGEST.to_vec()
        } else {
            acts_for(case == 2).collect()
        };
        for act in acts {
            let shapes: [&[usize]; 3] = [&[rows, inp], &[out, inp], &[out]];
            let reference = run(&leaves(&shapes, &cpu), &|t| {
                unfused(t[0].linear(&t[1]).unwrap().add(&t[2]).unwrap(), act)
            });
            for dev in [&cpu, &gpu] {
                let got = run(&leaves(&shapes, dev), &|t| {
                    t[0].linear_act(&t[1], Some(&t[2]), act).unwrap()
                });
                assert_all_close(
                    &got,
                    &reference,
                    &format!("{dev:?} {act:?} {rows}x{inp}x{out}"),
                );
            }
        }
    }
}

#[test]
fn conv2d_act_matches_the_unfused_ops_on_both_devices() {
    let _serial = common::exclusive();
    let cpu = Device::cpu();
    let gpu = common::gpu();
    let cases: [(&[usize], &[usize], ConvOptions); 3] = [
        (
            &[3, 4, 9, 8],
            &[6, 4, 3, 3],
            ConvOptions {
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            &[2, 3, 11, 7],
            &[5, 3, 3, 2],
            ConvOptions {
                stride: (2, 1),
                padding: (1, 0),
                dilation: (1, 2),
                ..Default::default()
            },
        ),
        (
            &[1, 2, 6, 6],
            &[4, 1, 3, 3],
            ConvOptions {
                groups: 2,
                ..Default::default()
            },
        ),
    ];
    for (case, (x, w, o)) in cases.into_iter().enumerate() {
        let oc = w[0];
        let shapes: [&[usize]; 3] = [x, w, &[oc]];
        for act in acts_for(case == 0) {
            let reference = run(&leaves(&shapes, &cpu), &|t| {
                unfused(t[0].conv2d(&t[1], Some(&t[2]), o).unwrap(), act)
            });
            for dev in [&cpu, &gpu] {
                let got = run(&leaves(&shapes, dev), &|t| {
                    t[0].conv2d_act(&t[1], Some(&t[2]), o, act).unwrap()
                });
                assert_all_close(&got, &reference, &format!("{dev:?} {act:?} {x:?} {o:?}"));
            }
        }
    }
}

#[test]
fn fused_layers_refuse_what_the_unfused_ones_refuse() {
    let gpu = common::gpu();
    let cpu = Device::cpu();
    let x = Tensor::ones(&[4, 3], &gpu).unwrap();
    let w = Tensor::ones(&[5, 3], &gpu).unwrap();
    // A bias of the wrong length, on the wrong device, and a weight of the wrong shape.
    let bad_bias = Tensor::ones(&[4], &gpu).unwrap();
    let e = x.linear_act(&w, Some(&bad_bias), Act::Relu).unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
    let cpu_bias = Tensor::ones(&[5], &cpu).unwrap();
    assert!(x.linear_act(&w, Some(&cpu_bias), Act::Relu).is_err());
    let e = x
        .linear_act(&Tensor::ones(&[5, 4], &gpu).unwrap(), None, Act::Tanh)
        .unwrap_err();
    assert!(e.to_string().contains("linear"), "{e}");
    // A convolution whose kernel exceeds the padded input, or with a bad bias.
    let img = Tensor::ones(&[1, 2, 3, 3], &gpu).unwrap();
    let k5 = Tensor::ones(&[4, 2, 5, 5], &gpu).unwrap();
    assert!(img
        .conv2d_act(&k5, None, ConvOptions::default(), Act::Relu)
        .is_err());
    let k3 = Tensor::ones(&[4, 2, 3, 3], &gpu).unwrap();
    let e = img
        .conv2d_act(
            &k3,
            Some(&bad_bias.narrow(0, 0, 3).unwrap()),
            ConvOptions::default(),
            Act::Relu,
        )
        .unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
}

common::test_device!(
    nan_and_infinity_pass_through_the_fused_layers_as_through_the_unfused_ones_cpu,
    nan_and_infinity_pass_through_the_fused_layers_as_through_the_unfused_ones_gpu,
    |dev| {
        let _serial = common::exclusive();
        let x = Tensor::from_vec(vec![f32::NAN, 1.0, f32::INFINITY, -2.0], &[2, 2], &dev).unwrap();
        let w = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], &[2, 2], &dev).unwrap();
        let b = Tensor::zeros(&[2], &dev).unwrap();
        for act in [Act::Identity, Act::Sigmoid, Act::Tanh] {
            let fused = common::vec_f32(&x.linear_act(&w, Some(&b), act).unwrap());
            let plain = common::vec_f32(&unfused(x.linear(&w).unwrap().add(&b).unwrap(), act));
            for (f, p) in fused.iter().zip(&plain) {
                assert!(
                    (f.is_nan() && p.is_nan()) || f == p,
                    "{dev:?} {act:?}: fused {fused:?}, unfused {plain:?}"
                );
            }
        }
    }
);

/// Inference keeps no pre-activation: under `no_grad` (or with nothing that requires a
/// gradient) a fused GELU layer and convolution allocate only their outputs, and with
/// gradients their results and gradients are unchanged by the saving.
#[test]
fn inference_saves_no_pre_activation() {
    // A device of its own: no other test's tensors in its counters.
    let dev = Device::gpu_with(wgrad::GpuOptions::from_env()).expect("a GPU adapter");
    let Device::Gpu(ctx) = &dev else {
        unreachable!()
    };
    let x = Tensor::randn_seeded(&[64, 96], 1, &dev).unwrap();
    let w = Tensor::randn_seeded(&[128, 96], 2, &dev).unwrap();
    let img = Tensor::randn_seeded(&[2, 3, 16, 16], 3, &dev).unwrap();
    let k = Tensor::randn_seeded(&[8, 3, 3, 3], 4, &dev).unwrap();
    let o = ConvOptions {
        padding: (1, 1),
        ..ConvOptions::default()
    };
    let rise = |f: &dyn Fn() -> Tensor| {
        dev.sync().unwrap();
        let held = dev.counters().bytes_in_use;
        ctx.reset_peak_bytes();
        let y = f();
        dev.sync().unwrap();
        let r = dev.counters().peak_bytes - held;
        drop(y);
        r
    };
    let lin = || x.linear_act(&w, None, Act::Gelu).unwrap();
    let conv = || wgrad::ops::conv2d::conv2d_act(&img, &k, None, o, Act::Gelu).unwrap();
    // The output alone (64 x 128 and 2 x 8 x 16 x 16 f32: powers of two, as the pool's
    // buffer sizes; and the product's small scratch buffers), not twice that.
    let (lin_out, conv_out) = (64 * 128 * 4u64, 2 * 8 * 256 * 4u64);
    let small = 4096;
    let r = rise(&|| no_grad(lin));
    assert!(
        (lin_out..lin_out + small).contains(&r),
        "linear, inference: {r}"
    );
    let r = rise(&|| no_grad(conv));
    assert!(
        (conv_out..conv_out + small).contains(&r),
        "convolution, inference: {r}"
    );
    let r = rise(&lin);
    assert!(
        (lin_out..lin_out + small).contains(&r),
        "nothing requires a gradient: {r}"
    );
    let wg = w.detach().requires_grad_(true).unwrap();
    let kg = k.detach().requires_grad_(true).unwrap();
    let r = rise(&|| x.linear_act(&wg, None, Act::Gelu).unwrap());
    assert!(r >= 2 * lin_out, "training keeps the pre-activation: {r}");
    let r = rise(&|| wgrad::ops::conv2d::conv2d_act(&img, &kg, None, o, Act::Gelu).unwrap());
    assert!(r >= 2 * conv_out, "training keeps the pre-activation: {r}");
    // Same values either way, on both devices.
    let a = no_grad(lin).to_vec::<f32>().unwrap();
    let b = x
        .linear_act(&wg, None, Act::Gelu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
    let cpu = Device::cpu();
    let (xc, wc) = (x.to(&cpu).unwrap(), w.to(&cpu).unwrap());
    let a = no_grad(|| xc.linear_act(&wc, None, Act::Gelu)).unwrap();
    let wcg = wc.detach().requires_grad_(true).unwrap();
    let b = xc.linear_act(&wcg, None, Act::Gelu).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
}
