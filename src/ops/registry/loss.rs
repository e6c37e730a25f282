//! Losses: cross-entropy (with and without label smoothing), mean squared error, binary
//! cross-entropy on logits and on probabilities, and the negative log-likelihood.

use super::*;

/// Every loss with its cases.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use Domain::*;
    ops.push(OpEntry {
        name: "cross_entropy",
        differentiable: true,
        kernels: &[
            "cross_entropy_fwd",
            "cross_entropy_mean_fwd",
            "cross_entropy_bwd",
        ],
        // Up to 16K logits the GPU's mean loss is one dispatch; [260, 65] takes the
        // per-sample kernel and a mean.
        cases: [
            (1usize, 3usize),
            (7, 5),
            (33, 10),
            (4, 65),
            (3, 257),
            (260, 65),
        ]
        .iter()
        .map(|&(n, c)| {
            case(
                format!("[{n}, {c}]"),
                vec![spec(&[n, c], Any), spec(&[n], Index(c))],
                |x, _| x[0].cross_entropy(&x[1]),
            )
        })
        .collect(),
    });
    ops.push(OpEntry {
        name: "mse_loss",
        differentiable: true,
        kernels: &["sub_fwd", "mul_fwd", "mul_bwd", "sum_fwd", "sum_bwd"],
        cases: [&[7][..], &[3, 7], &[257]]
            .iter()
            .map(|s| {
                case(
                    format!("{s:?}"),
                    vec![spec(s, Any), spec(s, Any)],
                    |x, _| x[0].mse_loss(&x[1]),
                )
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "bce_with_logits",
        differentiable: true,
        kernels: &[
            "softplus_fwd",
            "softplus_bwd",
            "neg_fwd",
            "affine_fwd",
            "mul_fwd",
            "add_fwd",
        ],
        cases: [&[7][..], &[3, 5], &[257]]
            .iter()
            .map(|s| {
                case(
                    format!("{s:?}"),
                    vec![spec(s, Any), spec(s, Mask)],
                    |t, _| crate::nn::BCEWithLogitsLoss::default().forward(&t[0], &t[1]),
                )
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "bce_with_logits_pos_weight",
        differentiable: true,
        kernels: &[
            "softplus_fwd",
            "softplus_bwd",
            "mul_fwd",
            "mul_bwd",
            "add_fwd",
        ],
        cases: [(&[3, 5][..], &[5][..]), (&[2, 3, 4], &[4]), (&[6], &[1])]
            .iter()
            .map(|&(s, w)| {
                case(
                    format!("{s:?} pos_weight {w:?}, sum"),
                    vec![spec(s, Any), spec(s, Mask), spec(w, Positive)],
                    |t, _| {
                        crate::nn::BCEWithLogitsLoss {
                            reduction: crate::nn::Reduction::Sum,
                            pos_weight: Some(t[2].clone()),
                        }
                        .forward(&t[0], &t[1])
                    },
                )
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "cross_entropy_label_smoothing",
        differentiable: true,
        kernels: &["cross_entropy_fwd", "log_softmax_fwd", "log_softmax_bwd"],
        cases: [(7usize, 5usize), (2, 33)]
            .iter()
            .map(|&(n, c)| {
                case(
                    format!("[{n}, {c}] s = 0.1, sum"),
                    vec![spec(&[n, c], Any), spec(&[n], Index(c))],
                    |t, _| {
                        crate::nn::CrossEntropyLoss {
                            reduction: crate::nn::Reduction::Sum,
                            label_smoothing: 0.1,
                        }
                        .forward(&t[0], &t[1])
                    },
                )
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "nll_loss",
        differentiable: true,
        kernels: &["gather_fwd", "neg_fwd"],
        cases: [(1usize, 3usize), (7, 5), (33, 10), (3, 257)]
            .iter()
            .map(|&(n, c)| {
                case(
                    format!("[{n}, {c}]"),
                    vec![spec(&[n, c], Any), spec(&[n], Index(c))],
                    |x, _| x[0].nll_loss(&x[1]),
                )
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "nll_loss_options",
        differentiable: true,
        kernels: &["gather_fwd", "where_fwd", "where_bwd", "div_fwd", "div_bwd"],
        // The weighted mean differentiates through its divisor (the weight gets a
        // gradient); class 1 is ignored, which some of the random targets hit.
        cases: vec![
            case(
                "[7, 5] weight, ignore 1, mean",
                vec![
                    spec(&[7, 5], Any),
                    spec(&[7], Index(5)),
                    spec(&[5], Positive),
                ],
                |t, _| {
                    crate::nn::NLLLoss::default()
                        .weight(t[2].clone())
                        .ignore_index(1)
                        .forward(&t[0], &t[1])
                },
            ),
            case(
                "[9, 3] weight, mean",
                vec![
                    spec(&[9, 3], Any),
                    spec(&[9], Index(3)),
                    spec(&[3], Positive),
                ],
                |t, _| t[0].nll_loss_with(&t[1], Some(&t[2]), None, crate::nn::Reduction::Mean),
            ),
            case(
                "[6, 4] ignore 0, none",
                vec![spec(&[6, 4], Any), spec(&[6], Index(4))],
                |t, _| t[0].nll_loss_with(&t[1], None, Some(0), crate::nn::Reduction::None),
            ),
            case(
                "[33, 65] weight, sum",
                vec![
                    spec(&[33, 65], Any),
                    spec(&[33], Index(65)),
                    spec(&[65], Positive),
                ],
                |t, _| t[0].nll_loss_with(&t[1], Some(&t[2]), None, crate::nn::Reduction::Sum),
            ),
        ],
    });
    ops.push(OpEntry {
        name: "binary_cross_entropy",
        differentiable: true,
        kernels: &["log_fwd", "maximum_fwd", "affine_fwd", "div_fwd"],
        // Probabilities and soft targets through a sigmoid, in (0.11, 0.89): away from the
        // clamps, where the gradient is the derivative of the loss.
        cases: [&[7][..], &[3, 5], &[257]]
            .iter()
            .map(|s| {
                case(
                    format!("{s:?} soft targets"),
                    vec![spec(s, Any), spec(s, Any)],
                    |t, _| t[0].sigmoid()?.binary_cross_entropy(&t[1].sigmoid()?),
                )
            })
            .chain(
                [(&[3, 5][..], &[5][..]), (&[2, 3, 4], &[3, 1]), (&[6], &[])]
                    .iter()
                    .map(|&(s, w)| {
                        case(
                            format!("{s:?} weight {w:?}, 0/1 targets, sum"),
                            vec![spec(s, Any), spec(s, Mask), spec(w, Positive)],
                            |t, _| {
                                crate::nn::BCELoss::default()
                                    .weight(t[2].clone())
                                    .reduction(crate::nn::Reduction::Sum)
                                    .forward(&t[0].sigmoid()?, &t[1])
                            },
                        )
                    }),
            )
            .collect(),
    });
    ops
}
