//! The geometric image moves of augmentation, and random draws.

use super::*;

/// augment_geometric and rand.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use crate::ops::augment::{geometric, ImageMove};
    use Domain::*;
    let mv = |r, c, h, v| ImageMove {
        crop_row: r,
        crop_col: c,
        hflip: h,
        vflip: v,
    };
    type GeometricCase = (&'static [usize], usize, (usize, usize), Vec<ImageMove>);
    let geometric_cases: Vec<GeometricCase> = vec![
        (
            &[2, 3, 5, 4],
            1,
            (5, 4),
            vec![mv(1, 2, true, false), mv(0, 0, false, true)],
        ),
        (
            &[3, 1, 6, 7],
            2,
            (3, 5),
            vec![
                mv(4, 0, true, true),
                mv(0, 6, false, false),
                mv(7, 3, false, true),
            ],
        ),
    ];
    ops.push(OpEntry {
        name: "augment_geometric",
        differentiable: false,
        kernels: &["augment_geometric_fwd"],
        cases: geometric_cases
            .into_iter()
            .map(|(x, pad, out, moves)| {
                case(
                    format!("{x:?} pad {pad} crop {out:?}"),
                    vec![spec(x, Any)],
                    move |t, _| geometric(&t[0], pad, out, &moves),
                )
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "rand",
        differentiable: false,
        kernels: &["uniform_fwd", "normal_fwd", "fill_fwd", "fill_u32_fwd"],
        cases: vec![
            case("uniform [257]", vec![], |_, d| {
                Tensor::rand_seeded(&[257], 42, d)
            }),
            case("normal [3, 65]", vec![], |_, d| {
                Tensor::randn_seeded(&[3, 65], 42, d)
            }),
            case("full [33]", vec![], |_, d| Tensor::full(&[33], 2.5, d)),
            case("u32 fill [7]", vec![], |_, d| {
                crate::ops::layout::fill(&[7], crate::DType::U32, 3.0, d)?
                    .to_dtype(crate::DType::U32)
            }),
        ],
    });
    ops
}
