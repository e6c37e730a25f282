//! Fused batch normalisation.

use super::*;

/// Batch normalisation with its cases.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    // Fused batch normalisation: [N, C], [N, C, L] and [N, C, H, W], with and
    // without affine parameters, training (with and without running statistics to
    // update) and evaluation, one block per channel and channels split into blocks.
    {
        use crate::ops::batchnorm::{batch_norm, batch_norm_blocked, BatchNormArgs};
        use Domain::Any;
        // (input shape, affine: 0 none, 1 weight only, 2 weight and bias, training,
        // running statistics given, forced block size)
        type BnCase = (&'static [usize], usize, bool, bool, Option<usize>);
        let bn_cases: &[BnCase] = &[
            (&[6, 3], 2, true, false, None),
            (&[5, 4, 3], 2, true, true, None),
            (&[5, 4, 3], 0, true, false, None),
            (&[4, 2, 3], 1, true, false, None),
            (&[2, 3, 4, 5], 2, true, true, None),
            (&[2, 3, 4, 5], 0, true, true, None),
            (&[3, 2, 7, 40], 2, true, true, Some(256)),
            (&[3, 2, 7, 40], 0, true, false, Some(256)),
            (&[2, 3, 4, 5], 2, false, true, None),
            (&[5, 4, 3], 0, false, true, None),
            (&[3, 2, 7, 40], 2, false, true, Some(256)),
        ];
        ops.push(OpEntry {
            name: "batch_norm",
            differentiable: true,
            kernels: &[
                "bn_partial_fwd",
                "bn_reduce_fwd",
                "bn_finalize_fwd",
                "bn_eval_fwd",
                "bn_norm_fwd",
                "bn_partial_bwd",
                "bn_reduce_bwd",
                "bn_finalize_bwd",
                "bn_dx_bwd",
            ],
            cases: bn_cases
                .iter()
                .map(|&(shape, affine, training, running, block)| {
                    let c = shape[1];
                    let mut inputs = vec![spec(shape, Any)];
                    inputs.extend((0..affine).map(|_| spec(&[c], Any)));
                    let label = format!(
                        "{shape:?} {} {}{}{}",
                        ["no affine", "weight only", "affine"][affine],
                        if training { "training" } else { "eval" },
                        if running { ", running statistics" } else { "" },
                        block.map_or(String::new(), |b| format!(", blocks of {b}")),
                    );
                    case(label, inputs, move |x, d| {
                        let dt = x[0].dtype();
                        let rm = crate::ops::layout::fill(&[c], dt, 0.25, d)?;
                        let rv = crate::ops::layout::fill(&[c], dt, 1.5, d)?;
                        let count = crate::ops::layout::fill(&[], dt, 0.0, d)?;
                        let args = BatchNormArgs {
                            weight: x.get(1),
                            bias: x.get(2),
                            running_mean: running.then_some(&rm),
                            running_var: running.then_some(&rv),
                            num_batches_tracked: running.then_some(&count),
                            training,
                            momentum: 0.1,
                            eps: 1e-5,
                        };
                        match block {
                            Some(b) => batch_norm_blocked(&x[0], &args, b),
                            None => batch_norm(&x[0], &args),
                        }
                    })
                })
                .collect(),
        });
    }
    ops
}
