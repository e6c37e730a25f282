//! Layout ops: reshape, permute, narrow, broadcast, cat and stack, and the indexing
//! ops (index_select, gather, where).

use super::*;

/// Reshape, permute, narrow, broadcast_to, cat and stack, then the indexing ops.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use Domain::*;
    // Conversions between u32 and f32: integers to floats, and floats (both signs,
    // fractions) to u32, toward zero and saturating at 0; f32 to f16 and bf16 and back
    // (odd and even counts: two elements to a GPU word).
    ops.push(OpEntry {
        name: "to_dtype",
        differentiable: false,
        kernels: &[
            "cast_u32_f32_fwd",
            "cast_f32_u32_fwd",
            "half_pack_fwd",
            "half_unpack_fwd",
        ],
        cases: [&[1usize] as &[usize], &[7], &[257], &[3, 65]]
            .iter()
            .flat_map(|&shape| {
                [
                    case(
                        format!("u32 -> f32 {shape:?}"),
                        vec![spec(shape, Index(100_000))],
                        |x, _| x[0].to_dtype(crate::tensor::DType::F32),
                    ),
                    case(
                        format!("f32 -> u32 {shape:?}"),
                        vec![spec(shape, Huge)],
                        |x, _| x[0].to_dtype(crate::tensor::DType::U32),
                    ),
                    case(
                        format!("f32 -> f16 -> f32 {shape:?}"),
                        vec![spec(shape, Huge)],
                        |x, _| x[0].mul_scalar(30.0)?.half()?.float(),
                    ),
                    case(
                        format!("f32 -> bf16 -> f32 {shape:?}"),
                        vec![spec(shape, Any)],
                        |x, _| x[0].bfloat16()?.float(),
                    ),
                ]
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "reshape",
        differentiable: true,
        kernels: &[],
        cases: vec![
            case("[3, 7] -> [7, 3]", vec![spec(&[3, 7], Any)], |x, _| {
                x[0].reshape(&[7, 3])?.mul(&x[0].reshape(&[7, 3])?)
            }),
            case("[2, 3, 5] -> [30]", vec![spec(&[2, 3, 5], Any)], |x, _| {
                x[0].flatten(0, -1)?.exp()
            }),
        ],
    });
    let perms: &[(&[usize], &[usize])] = &[
        (&[3, 7], &[1, 0]),
        (&[2, 3, 5], &[2, 0, 1]),
        (&[2, 3, 4, 5], &[3, 1, 0, 2]),
        (&[1, 65], &[1, 0]),
    ];
    ops.push(OpEntry {
        name: "permute",
        differentiable: true,
        kernels: &["strided_copy_fwd"],
        cases: perms
            .iter()
            .map(|(s, p)| {
                let p = p.to_vec();
                case(
                    format!("{s:?} by {p:?}"),
                    vec![spec(s, Any)],
                    move |x, _| x[0].permute(&p),
                )
            })
            .chain([case(
                "transpose [3, 5, 7] (0, 2)",
                vec![spec(&[3, 5, 7], Any)],
                |x, _| x[0].transpose(0, 2),
            )])
            .collect(),
    });
    ops.push(OpEntry {
        name: "narrow",
        differentiable: true,
        kernels: &["strided_copy_fwd", "fill_fwd", "strided_scatter_fwd"],
        cases: vec![
            case("[7, 3] dim 0 2..5", vec![spec(&[7, 3], Any)], |x, _| {
                x[0].narrow(0, 2, 3)
            }),
            case(
                "[2, 9, 4] dim 1 0..1",
                vec![spec(&[2, 9, 4], Any)],
                |x, _| x[0].narrow(1, 0, 1),
            ),
            case("[257] 200..257", vec![spec(&[257], Any)], |x, _| {
                x[0].narrow(0, 200, 57)
            }),
        ],
    });
    ops.push(OpEntry {
        name: "broadcast_to",
        differentiable: true,
        kernels: &["strided_copy_fwd", "sum_fwd"],
        cases: vec![
            case("[3, 1] -> [2, 3, 7]", vec![spec(&[3, 1], Any)], |x, _| {
                x[0].broadcast_to(&[2, 3, 7])
            }),
            case("[] -> [33]", vec![spec(&[], Any)], |x, _| {
                x[0].broadcast_to(&[33])
            }),
        ],
    });
    ops.push(OpEntry {
        name: "cat",
        differentiable: true,
        kernels: &["strided_scatter_fwd", "strided_copy_fwd"],
        cases: vec![
            case(
                "[2, 3] + [4, 3] dim 0",
                vec![spec(&[2, 3], Any), spec(&[4, 3], Any)],
                |x, _| Tensor::cat(&[&x[0], &x[1]], 0),
            ),
            case(
                "[2, 3, 5] + [2, 1, 5] + [2, 7, 5] dim 1",
                vec![
                    spec(&[2, 3, 5], Any),
                    spec(&[2, 1, 5], Any),
                    spec(&[2, 7, 5], Any),
                ],
                |x, _| Tensor::cat(&[&x[0], &x[1], &x[2]], 1),
            ),
            case(
                "[31] + [33] dim 0",
                vec![spec(&[31], Any), spec(&[33], Any)],
                |x, _| Tensor::cat(&[&x[0], &x[1]], -1),
            ),
        ],
    });
    ops.push(OpEntry {
        name: "stack",
        differentiable: true,
        kernels: &["strided_scatter_fwd", "strided_copy_fwd"],
        cases: vec![
            case(
                "3 x [2, 5] dim 1",
                vec![spec(&[2, 5], Any), spec(&[2, 5], Any), spec(&[2, 5], Any)],
                |x, _| Tensor::stack(&[&x[0], &x[1], &x[2]], 1),
            ),
            case(
                "2 x [7] dim 0",
                vec![spec(&[7], Any), spec(&[7], Any)],
                |x, _| Tensor::stack(&[&x[0], &x[1]], 0),
            ),
        ],
    });
    ops.extend(indexing());
    ops
}

/// index_select, gather and where.
fn indexing() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use Domain::*;
    ops.push(OpEntry {
        name: "index_select",
        differentiable: true,
        kernels: &["index_select_fwd", "index_select_bwd"],
        cases: vec![
            case(
                "[7, 3] dim 0 by 9 (repeats)",
                vec![spec(&[7, 3], Any), spec(&[9], Index(7))],
                |x, _| x[0].index_select(0, &x[1]),
            ),
            case(
                "[2, 5, 4] dim 1 by 3",
                vec![spec(&[2, 5, 4], Any), spec(&[3], Index(5))],
                |x, _| x[0].index_select(1, &x[1]),
            ),
            case(
                "[65, 2] dim -1 by 1",
                vec![spec(&[65, 2], Any), spec(&[1], Index(2))],
                |x, _| x[0].index_select(-1, &x[1]),
            ),
        ],
    });
    ops.push(OpEntry {
        name: "gather",
        differentiable: true,
        kernels: &["gather_fwd", "gather_bwd"],
        cases: vec![
            case(
                "[5, 7] dim 1 by [5, 3]",
                vec![spec(&[5, 7], Any), spec(&[5, 3], Index(7))],
                |x, _| x[0].gather(1, &x[1]),
            ),
            case(
                "[4, 3, 2] dim 0 by [6, 3, 2]",
                vec![spec(&[4, 3, 2], Any), spec(&[6, 3, 2], Index(4))],
                |x, _| x[0].gather(0, &x[1]),
            ),
        ],
    });
    ops.push(OpEntry {
        name: "where",
        differentiable: true,
        kernels: &["where_fwd", "where_bwd"],
        cases: vec![
            case(
                "[3, 7] all equal",
                vec![spec(&[3, 7], Mask), spec(&[3, 7], Any), spec(&[3, 7], Any)],
                |x, _| Tensor::where_cond(&x[0], &x[1], &x[2]),
            ),
            case(
                "cond [3, 1], a [7], b []",
                vec![spec(&[3, 1], Mask), spec(&[7], Any), spec(&[], Any)],
                |x, _| Tensor::where_cond(&x[0], &x[1], &x[2]),
            ),
            case(
                "[65] vs [2, 65]",
                vec![spec(&[65], Mask), spec(&[2, 65], Any), spec(&[65], Any)],
                |x, _| Tensor::where_cond(&x[0], &x[1], &x[2]),
            ),
        ],
    });
    ops
}
