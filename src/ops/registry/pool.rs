//! Pooling and resizing: max and average pooling, adaptive average pooling and nearest
//! upsampling.

use super::*;

/// max_pool2d, avg_pool2d, adaptive_avg_pool2d and upsample_nearest.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use Domain::*;
    type Window = ((usize, usize), (usize, usize), (usize, usize));
    let pools: Vec<(&[usize], Window)> = vec![
        (&[2, 3, 6, 6], ((2, 2), (2, 2), (0, 0))),
        // Odd sizes: the unrolled 2 x 2 path drops the last row and column.
        (&[1, 2, 7, 5], ((2, 2), (2, 2), (0, 0))),
        (&[1, 2, 7, 5], ((3, 3), (2, 2), (1, 1))),
        (&[1, 1, 5, 7], ((2, 3), (1, 2), (1, 1))),
    ];
    for (name, kernels, max) in [
        (
            "max_pool2d",
            &["maxpool2d_fwd", "maxpool2d_bwd"] as &'static [&'static str],
            true,
        ),
        ("avg_pool2d", &["avgpool2d_fwd", "avgpool2d_bwd"], false),
    ] {
        ops.push(OpEntry {
            name,
            differentiable: true,
            kernels,
            cases: pools
                .iter()
                .map(|&(x, (k, st, p))| {
                    let domain = if max { Distinct } else { Any };
                    case(
                        format!("{x:?} k {k:?} s {st:?} p {p:?}"),
                        vec![spec(x, domain)],
                        move |t, _| {
                            if max {
                                t[0].max_pool2d(k, st, p)
                            } else {
                                t[0].avg_pool2d(k, st, p)
                            }
                        },
                    )
                })
                .collect(),
        });
    }
    ops.push(OpEntry {
        name: "adaptive_avg_pool2d",
        differentiable: true,
        kernels: &["avgpool2d_fwd", "avgpool2d_bwd"],
        cases: [
            (&[1usize, 2, 7, 5][..], (3usize, 2usize)),
            (&[2, 3, 6, 6], (1, 1)),
            (&[1, 1, 5, 5], (5, 5)),
        ]
        .iter()
        .map(|&(x, o)| {
            case(
                format!("{x:?} -> {o:?}"),
                vec![spec(x, Any)],
                move |t, _| t[0].adaptive_avg_pool2d(o),
            )
        })
        .collect(),
    });
    ops.push(OpEntry {
        name: "upsample_nearest",
        differentiable: true,
        kernels: &["upsample_nearest_fwd", "upsample_nearest_bwd"],
        cases: [
            (&[1usize, 2, 3, 4][..], (2usize, 2usize)),
            (&[2, 1, 2, 3], (3, 1)),
        ]
        .iter()
        .map(|&(x, f)| {
            case(format!("{x:?} x {f:?}"), vec![spec(x, Any)], move |t, _| {
                t[0].upsample_nearest(f)
            })
        })
        .collect(),
    });
    ops
}
