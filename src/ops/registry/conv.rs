//! Convolutions (plain and fused with an activation) and transposed convolutions.

use super::*;

/// conv2d, conv2d_act and conv_transpose2d.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use crate::ops::conv2d::ConvOptions;
    use Domain::*;
    let conv_cases: Vec<(&[usize], &[usize], ConvOptions)> = vec![
        (&[1, 1, 5, 5], &[2, 1, 3, 3], ConvOptions::default()),
        (
            &[2, 3, 7, 6],
            &[4, 3, 3, 3],
            ConvOptions {
                stride: (2, 2),
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            &[1, 2, 9, 8],
            &[3, 2, 3, 2],
            ConvOptions {
                dilation: (2, 1),
                padding: (2, 0),
                stride: (1, 2),
                ..Default::default()
            },
        ),
        (
            &[2, 4, 6, 6],
            &[6, 2, 3, 3],
            ConvOptions {
                groups: 2,
                padding: (1, 1),
                ..Default::default()
            },
        ),
        (&[3, 1, 4, 4], &[1, 1, 1, 1], ConvOptions::default()),
    ];
    ops.push(OpEntry {
        name: "conv2d",
        differentiable: true,
        kernels: &["im2col_fwd", "col2im_fwd", "matmul_small_fwd"],
        cases: conv_cases
            .iter()
            .map(|&(x, w, o)| {
                let oc = w[0];
                case(
                    format!("{x:?} by {w:?} {o:?}"),
                    vec![spec(x, Any), spec(w, Any), spec(&[oc], Any)],
                    move |t, _| t[0].conv2d(&t[1], Some(&t[2]), o),
                )
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "conv2d_act",
        differentiable: true,
        kernels: &["col2im_fwd", "matmul_small_fwd", "matmul_partials_bwd"],
        cases: {
            use crate::ops::matmul::Act;
            let acts = [
                Act::Identity,
                Act::Relu,
                Act::Tanh,
                Act::Sigmoid,
                Act::LeakyRelu(0.2),
            ];
            // The activations whose backward reads the pre-activation, each on one
            // shape (with and without padding).
            let mut cases: Vec<OpCase> = [
                Act::Gelu,
                Act::GeluTanh,
                Act::Silu,
                Act::Mish,
                Act::LeakyRelu(-0.3),
            ]
            .into_iter()
            .enumerate()
            .map(|(k, act)| {
                let o = ConvOptions {
                    padding: (k % 2, k % 2),
                    ..ConvOptions::default()
                };
                case(
                    format!("{act:?} [2, 3, 5, 6] by [4, 3, 3, 3] {o:?}"),
                    vec![
                        spec(&[2, 3, 5, 6], Any),
                        spec(&[4, 3, 3, 3], Any),
                        spec(&[4], Any),
                    ],
                    move |t, _| t[0].conv2d_act(&t[1], Some(&t[2]), o, act),
                )
            })
            .collect();
            for (k, &(x, w, o)) in conv_cases.iter().enumerate() {
                if o.groups != 1 {
                    continue;
                }
                let act = acts[k % acts.len()];
                let oc = w[0];
                for bias in [true, false] {
                    let mut inputs = vec![spec(x, Any), spec(w, Any)];
                    if bias {
                        inputs.push(spec(&[oc], Any));
                    }
                    cases.push(case(
                        format!("{act:?} {x:?} by {w:?} {o:?}, bias {bias}"),
                        inputs,
                        move |t, _| t[0].conv2d_act(&t[1], t.get(2), o, act),
                    ));
                }
            }
            cases
        },
    });
    let convt_cases: Vec<(&[usize], &[usize], ConvOptions)> = vec![
        (
            &[1, 2, 3, 3],
            &[2, 3, 3, 3],
            ConvOptions {
                stride: (2, 2),
                padding: (1, 1),
                output_padding: (1, 1),
                ..Default::default()
            },
        ),
        (
            &[2, 4, 3, 2],
            &[4, 1, 2, 2],
            ConvOptions {
                stride: (2, 2),
                groups: 2,
                ..Default::default()
            },
        ),
        (
            &[1, 3, 4, 4],
            &[3, 2, 3, 3],
            ConvOptions {
                padding: (1, 1),
                ..Default::default()
            },
        ),
    ];
    ops.push(OpEntry {
        name: "conv_transpose2d",
        differentiable: true,
        kernels: &["col2im_fwd", "im2col_fwd", "matmul_small_fwd"],
        cases: convt_cases
            .iter()
            .map(|&(x, w, o)| {
                let oc = w[1] * o.groups;
                case(
                    format!("{x:?} by {w:?} {o:?}"),
                    vec![spec(x, Any), spec(w, Any), spec(&[oc], Any)],
                    move |t, _| t[0].conv_transpose2d(&t[1], Some(&t[2]), o),
                )
            })
            .collect(),
    });
    ops
}
