//! Elementwise ops: unary and binary (on every elementwise shape and broadcasting
//! pattern), the comparisons and prelu.

use super::*;

/// The unary and binary elementwise ops, the comparisons and prelu.
pub(super) fn entries() -> Vec<OpEntry> {
    use Domain::*;
    let mut ops = vec![
        unary_entry("neg", &["neg_fwd", "neg_bwd"], Any, |x| x.neg()),
        unary_entry("exp", &["exp_fwd", "exp_bwd"], Any, |x| x.exp()),
        unary_entry("log", &["log_fwd", "log_bwd"], Positive, |x| x.log()),
        unary_entry("sqrt", &["sqrt_fwd", "sqrt_bwd"], Positive, |x| x.sqrt()),
        unary_entry("abs", &["abs_fwd", "abs_bwd"], AwayFromZero, |x| x.abs()),
        unary_entry("sigmoid", &["sigmoid_fwd", "sigmoid_bwd"], Any, |x| {
            x.sigmoid()
        }),
        unary_entry("tanh", &["tanh_fwd", "tanh_bwd"], Any, |x| x.tanh()),
        unary_entry("relu", &["relu_fwd", "relu_bwd"], AwayFromZero, |x| {
            x.relu()
        }),
        unary_entry(
            "leaky_relu",
            &["leaky_relu_fwd", "leaky_relu_bwd"],
            AwayFromZero,
            |x| x.leaky_relu(0.1),
        ),
        unary_entry("softplus", &["softplus_fwd", "softplus_bwd"], Any, |x| {
            x.softplus(1.0, 20.0)
        }),
        unary_entry(
            "softplus_beta_threshold",
            &["softplus_fwd", "softplus_bwd"],
            AwayFromZero,
            |x| x.softplus(2.0, 1.5),
        ),
        unary_entry("affine", &["affine_fwd", "affine_bwd"], Any, |x| {
            x.affine(-1.5, 0.25)
        }),
        unary_entry(
            "pow_scalar_2",
            &["pow_scalar_fwd", "pow_scalar_bwd"],
            Any,
            |x| x.pow_scalar(2.0),
        ),
        unary_entry(
            "pow_scalar_3",
            &["pow_scalar_fwd", "pow_scalar_bwd"],
            Any,
            |x| x.pow_scalar(3.0),
        ),
        unary_entry(
            "pow_scalar_half",
            &["pow_scalar_fwd", "pow_scalar_bwd"],
            Positive,
            |x| x.pow_scalar(0.5),
        ),
        unary_entry(
            "pow_scalar_minus_1",
            &["pow_scalar_fwd", "pow_scalar_bwd"],
            AwayFromZero,
            |x| x.pow_scalar(-1.0),
        ),
        unary_entry(
            "pow_scalar_0",
            &["pow_scalar_fwd", "pow_scalar_bwd"],
            Any,
            |x| x.pow_scalar(0.0),
        ),
        unary_entry("gelu", &["gelu_fwd", "gelu_bwd"], Any, |x| x.gelu()),
        unary_entry("gelu_tanh", &["gelu_tanh_fwd", "gelu_tanh_bwd"], Any, |x| {
            x.gelu_tanh()
        }),
        unary_entry("silu", &["silu_fwd", "silu_bwd"], Any, |x| x.silu()),
        unary_entry("mish", &["mish_fwd", "mish_bwd"], Any, |x| x.mish()),
        unary_entry(
            "noisy_relu",
            &["noisy_relu_fwd", "mul_bwd"],
            AwayFromZero,
            move |x| crate::ops::random::noisy_relu_with_key(x, 0.5, RngKey { seed: 7, offset: 3 }),
        ),
        unary_entry("dropout", &["dropout_fwd", "mul_bwd"], Any, move |x| {
            crate::ops::random::dropout_with_key(x, 0.3, RngKey { seed: 9, offset: 1 })
        }),
        binary_entry("add", &["add_fwd", "sum_fwd"], Any, Any, |a, b| a.add(b)),
        binary_entry("sub", &["sub_fwd", "neg_fwd"], Any, Any, |a, b| a.sub(b)),
        binary_entry("mul", &["mul_fwd", "mul_bwd"], Any, Any, |a, b| a.mul(b)),
        binary_entry("div", &["div_fwd", "div_bwd"], Any, AwayFromZero, |a, b| {
            a.div(b)
        }),
        binary_entry("pow", &["pow_fwd", "pow_bwd"], Positive, Any, |a, b| {
            a.pow(b)
        }),
        // On a lattice offset from the bounds by at least 0.05: no value within a
        // finite-difference step of a kink.
        unary_entry("clamp", &["where_fwd", "where_bwd"], Lattice(0.1), |x| {
            x.clamp(Some(-0.5), Some(0.7))
        }),
        unary_entry(
            "clamp_min",
            &["where_fwd", "where_bwd"],
            Lattice(0.1),
            |x| x.clamp_min(-0.5),
        ),
        unary_entry(
            "clamp_max",
            &["where_fwd", "where_bwd"],
            Lattice(0.1),
            |x| x.clamp_max(0.7),
        ),
        binary_entry(
            "maximum",
            &["maximum_fwd", "maximum_bwd"],
            Lattice(0.0),
            Lattice(0.125),
            |a, b| a.maximum(b),
        ),
        binary_entry(
            "minimum",
            &["minimum_fwd", "minimum_bwd"],
            Lattice(0.0),
            Lattice(0.125),
            |a, b| a.minimum(b),
        ),
    ];

    let mut compare = binary_entry(
        "compare",
        &["compare_fwd"],
        Lattice(0.0),
        Lattice(0.0),
        |a, b| a.lt(b),
    );
    compare.differentiable = false;
    compare
        .cases
        .extend(BROADCAST_PAIRS.iter().flat_map(|(a, b)| {
            let (a, b) = (a.to_vec(), b.to_vec());
            [
                case(
                    format!("eq {a:?} {b:?}"),
                    vec![spec(&a, Lattice(0.0)), spec(&b, Lattice(0.0))],
                    |x, _| x[0].eq(&x[1]),
                ),
                case(
                    format!("ne {a:?} {b:?}"),
                    vec![spec(&a, Lattice(0.0)), spec(&b, Lattice(0.0))],
                    |x, _| x[0].ne(&x[1]),
                ),
                case(
                    format!("le {a:?} {b:?}"),
                    vec![spec(&a, Lattice(0.0)), spec(&b, Lattice(0.0))],
                    |x, _| x[0].le(&x[1]),
                ),
                case(
                    format!("gt {a:?} {b:?}"),
                    vec![spec(&a, Lattice(0.0)), spec(&b, Lattice(0.0))],
                    |x, _| x[0].gt(&x[1]),
                ),
                case(
                    format!("ge {a:?} {b:?}"),
                    vec![spec(&a, Lattice(0.0)), spec(&b, Lattice(0.0))],
                    |x, _| x[0].ge(&x[1]),
                ),
            ]
        }));
    ops.push(compare);

    // The comparisons of two u32 tensors (u32 1 / 0), on small integers so that the
    // operands often tie, over every broadcasting pattern.
    type Compare = fn(&Tensor, &Tensor) -> Result<Tensor>;
    let u32_tests: [(&str, Compare); 6] = [
        ("eq", Tensor::eq),
        ("ne", Tensor::ne),
        ("lt", Tensor::lt),
        ("le", Tensor::le),
        ("gt", Tensor::gt),
        ("ge", Tensor::ge),
    ];
    ops.push(OpEntry {
        name: "compare_u32",
        differentiable: false,
        kernels: &["compare_u32_fwd"],
        cases: BROADCAST_PAIRS
            .iter()
            .flat_map(|(a, b)| {
                u32_tests.map(|(name, test)| {
                    case(
                        format!("{name} {a:?} {b:?}"),
                        vec![spec(a, Index(4)), spec(b, Index(4))],
                        move |x, _| test(&x[0], &x[1]),
                    )
                })
            })
            .collect(),
    });

    ops.push(OpEntry {
        name: "prelu",
        differentiable: true,
        kernels: &["prelu_fwd", "prelu_bwd", "sum_fwd"],
        cases: vec![
            case(
                "[4, 3] per channel",
                vec![spec(&[4, 3], AwayFromZero), spec(&[3], Positive)],
                |x, _| x[0].prelu(&x[1]),
            ),
            case(
                "[2, 3, 5, 7] per channel",
                vec![spec(&[2, 3, 5, 7], AwayFromZero), spec(&[3], Positive)],
                |x, _| x[0].prelu(&x[1]),
            ),
            case(
                "[65] shared",
                vec![spec(&[65], AwayFromZero), spec(&[1], Positive)],
                |x, _| x[0].prelu(&x[1]),
            ),
            case(
                "[3, 7, 2] shared",
                vec![spec(&[3, 7, 2], AwayFromZero), spec(&[1], Any)],
                |x, _| x[0].prelu(&x[1]),
            ),
        ],
    });
    ops
}
