//! Reductions along dimensions and over everything, and softmax along a dimension.

use super::*;

/// Sum, mean and max along dimensions and over everything; softmax and log-softmax.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use Domain::*;
    let reductions: &[(&[usize], &[isize], bool)] = &[
        (&[257], &[0], false),
        (&[3, 7], &[0], false),
        (&[3, 7], &[1], true),
        (&[65, 33], &[0], false),
        (&[2, 3, 5], &[0, 2], true),
        (&[2, 3, 5], &[-1], false),
        (&[2, 3, 5], &[0, 1, 2], false),
        (&[1, 255], &[1], false),
    ];
    for (name, kernels) in [
        (
            "sum_dim",
            &["sum_fwd", "sum_bwd"] as &'static [&'static str],
        ),
        ("mean_dim", &["sum_fwd", "sum_bwd"]),
        ("max_dim", &["max_fwd", "max_bwd"]),
    ] {
        let domain = if name == "max_dim" { Distinct } else { Any };
        let mut cases: Vec<OpCase> = reductions
            .iter()
            .map(|&(s, dims, keep)| {
                let dims = dims.to_vec();
                case(
                    format!("{s:?} dims {dims:?} keepdim {keep}"),
                    vec![spec(s, domain)],
                    move |x, _| match name {
                        "sum_dim" => x[0].sum_dim(&dims, keep),
                        "mean_dim" => x[0].mean_dim(&dims, keep),
                        _ => x[0].max_dim(&dims, keep),
                    },
                )
            })
            .collect();
        cases.push(case(
            "[31] all",
            vec![spec(&[31], domain)],
            move |x, _| match name {
                "sum_dim" => x[0].sum(),
                "mean_dim" => x[0].mean(),
                _ => x[0].max(),
            },
        ));
        ops.push(OpEntry {
            name,
            differentiable: true,
            kernels,
            cases,
        });
    }

    // u32 sums (wrapping) and maxima with their positions, on integer inputs: small
    // ones for the maxima so that ties are common (the first wins on both devices), and
    // a long sum that takes two passes on the GPU.
    for (name, kernels, bound) in [
        (
            "sum_dim_u32",
            &["sum_u32_fwd"] as &'static [&'static str],
            1_000,
        ),
        ("max_dim_u32", &["max_u32_fwd"], 5),
    ] {
        let mut cases: Vec<OpCase> = reductions
            .iter()
            .chain(&[(&[40_000usize] as &[usize], &[0isize] as &[isize], false)])
            .map(|&(s, dims, keep)| {
                let dims = dims.to_vec();
                case(
                    format!("{s:?} dims {dims:?} keepdim {keep}"),
                    vec![spec(s, Index(bound))],
                    move |x, _| match name {
                        "sum_dim_u32" => x[0].sum_dim(&dims, keep),
                        // The values and their positions, stacked into one output.
                        _ => {
                            let (v, i) = crate::ops::reduce::max_with_indices(&x[0], &dims, keep)?;
                            Tensor::stack(&[&v, &i], 0)
                        }
                    },
                )
            })
            .collect();
        cases.push(case(
            "[31] all",
            vec![spec(&[31], Index(bound))],
            move |x, _| match name {
                "sum_dim_u32" => x[0].sum(),
                _ => x[0].max(),
            },
        ));
        ops.push(OpEntry {
            name,
            differentiable: false,
            kernels,
            cases,
        });
    }

    let softmax_shapes: &[(&[usize], isize)] = &[
        (&[3, 7], -1),
        (&[2, 3, 5], 1),
        (&[1, 257], 1),
        (&[33], 0),
        (&[4, 65], 0),
    ];
    for (name, kernels, log) in [
        (
            "softmax",
            &["softmax_fwd", "softmax_bwd"] as &'static [&'static str],
            false,
        ),
        ("log_softmax", &["log_softmax_fwd", "log_softmax_bwd"], true),
    ] {
        ops.push(OpEntry {
            name,
            differentiable: true,
            kernels,
            cases: softmax_shapes
                .iter()
                .map(|&(s, d)| {
                    case(format!("{s:?} dim {d}"), vec![spec(s, Any)], move |x, _| {
                        if log {
                            x[0].log_softmax(d)
                        } else {
                            x[0].softmax(d)
                        }
                    })
                })
                .collect(),
        });
    }
    ops
}
