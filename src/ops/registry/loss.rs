//! Losses: cross-entropy (with and without label smoothing), mean squared error and
//! binary cross-entropy on logits.

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
    ops
}
