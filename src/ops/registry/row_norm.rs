//! The row normalisations: layer_norm, rms_norm and group_norm.

use super::*;
use crate::ops::norm::{group_norm, layer_norm, rms_norm, with_max_row};
use Domain::Any;

/// The kernels every row normalisation launches.
const KERNELS: &[&str] = &["norm_fwd", "norm_bwd", "norm_affine_bwd"];

/// Runs `f` through the composed path for rows longer than `max_row`, if given.
fn maybe_composed<R>(max_row: Option<usize>, f: impl FnOnce() -> R) -> R {
    match max_row {
        Some(m) => with_max_row(m, f),
        None => f(),
    }
}

fn label(shape: &[usize], what: String, affine: usize, max_row: Option<usize>) -> String {
    format!(
        "{shape:?} {what} {}{}",
        ["no affine", "weight only", "affine"][affine],
        max_row.map_or(String::new(), |m| format!(", composed past rows of {m}")),
    )
}

/// The row normalisations with their cases: several shapes, affine parameters on and
/// off, rows longer than a workgroup's 256 threads, the weight's gradient summed whole
/// by one workgroup (520 rows: tiles of 16 values) and, past 2,048 rows, in several
/// chunks that the op adds (2,100 rows), group norm with 1, 2 and C groups, and the composed path of long
/// rows (forced on small rows).
pub(super) fn entries() -> Vec<OpEntry> {
    // (input, normalized_shape, affine: 0 none, 1 weight, 2 weight and bias, max_row)
    type Trailing = (&'static [usize], &'static [usize], usize, Option<usize>);
    let layer: &[Trailing] = &[
        (&[4, 7], &[7], 2, None),
        (&[3, 5], &[5], 0, None),
        (&[2, 3, 4], &[3, 4], 1, None),
        (&[33, 65], &[65], 2, None),
        (&[2, 1030], &[1030], 2, None),
        (&[520, 3], &[3], 2, None),
        (&[2100, 2], &[2], 2, None),
        (&[3, 2, 6], &[2, 6], 2, Some(8)),
    ];
    let rms: &[Trailing] = &[
        (&[4, 7], &[7], 1, None),
        (&[3, 5], &[5], 0, None),
        (&[2, 3, 4], &[3, 4], 1, None),
        (&[2, 1030], &[1030], 1, None),
        (&[520, 3], &[3], 1, None),
        (&[2100, 2], &[2], 1, None),
        (&[3, 10], &[10], 1, Some(8)),
    ];
    // (input, groups, affine, max_row)
    type Grouped = (&'static [usize], usize, usize, Option<usize>);
    let group: &[Grouped] = &[
        (&[2, 4, 3], 2, 2, None),
        (&[2, 4, 3], 1, 0, None),
        (&[2, 4, 3], 4, 2, None),
        (&[3, 6], 3, 2, None),
        (&[2, 6, 3, 5], 3, 1, None),
        (&[2, 4, 300], 1, 2, None),
        (&[2, 4, 5], 2, 2, Some(8)),
    ];
    let trailing = |shape: &'static [usize], ns: &'static [usize], affine: usize| {
        let mut inputs = vec![spec(shape, Any)];
        inputs.extend((0..affine).map(|_| spec(ns, Any)));
        inputs
    };
    vec![
        OpEntry {
            name: "layer_norm",
            differentiable: true,
            kernels: KERNELS,
            cases: layer
                .iter()
                .map(|&(shape, ns, affine, max_row)| {
                    case(
                        label(shape, format!("over {ns:?}"), affine, max_row),
                        trailing(shape, ns, affine),
                        move |x, _| {
                            maybe_composed(max_row, || {
                                layer_norm(&x[0], ns, x.get(1), x.get(2), 1e-5)
                            })
                        },
                    )
                })
                .collect(),
        },
        OpEntry {
            name: "rms_norm",
            differentiable: true,
            kernels: KERNELS,
            cases: rms
                .iter()
                .enumerate()
                .map(|(k, &(shape, ns, affine, max_row))| {
                    // Every other case with PyTorch's default eps (finfo(dtype).eps).
                    let eps = (k % 2 == 1).then_some(1e-5);
                    case(
                        label(shape, format!("over {ns:?} eps {eps:?}"), affine, max_row),
                        trailing(shape, ns, affine),
                        move |x, _| maybe_composed(max_row, || rms_norm(&x[0], ns, x.get(1), eps)),
                    )
                })
                .collect(),
        },
        OpEntry {
            name: "group_norm",
            differentiable: true,
            kernels: KERNELS,
            cases: group
                .iter()
                .map(|&(shape, groups, affine, max_row)| {
                    let mut inputs = vec![spec(shape, Any)];
                    inputs.extend((0..affine).map(|_| spec(&shape[1..2], Any)));
                    case(
                        label(shape, format!("in {groups} groups"), affine, max_row),
                        inputs,
                        move |x, _| {
                            maybe_composed(max_row, || {
                                group_norm(&x[0], groups, x.get(1), x.get(2), 1e-5)
                            })
                        },
                    )
                })
                .collect(),
        },
    ]
}
