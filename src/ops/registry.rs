//! The op registry: every op, with the input shapes and value domains it is tested on.
//! `tests/gradcheck.rs` walks this list, so an op added here is automatically checked by
//! finite differences (CPU, `f64`) and against the CPU on the GPU (`f32`); an op missing
//! from here is caught by the test that compares this list with the shader entry points.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::backend::cpu::random::RngKey;
use crate::device::Device;
use crate::error::Result;
use crate::ops::matmul::{matmul_with, MatmulChoice, MatmulKernel};
use crate::tensor::Tensor;

pub mod check;

/// Where an input's test values come from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// Uniform in [-2, 2].
    Any,
    /// Uniform in [0.2, 2] (log, sqrt, pow's base).
    Positive,
    /// |x| in [0.1, 2] with a random sign: away from kinks at 0 (relu, abs, division).
    AwayFromZero,
    /// Distinct values at least 0.05 apart (max: no ties within the step).
    Distinct,
    /// Multiples of 0.25 plus an offset: two inputs with different offsets never tie.
    Lattice(f64),
    /// 0.0 or 1.0 (conditions).
    Mask,
    /// `u32` indices below the bound.
    Index(usize),
    /// Uniform in [-1000, 1000] (stability of fused losses).
    Huge,
}

/// One input of a test case.
#[derive(Clone, Debug)]
pub struct InputSpec {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values.
    pub domain: Domain,
}

impl InputSpec {
    /// True for index inputs (never differentiated).
    pub fn is_index(&self) -> bool {
        matches!(self.domain, Domain::Index(_))
    }

    /// True for inputs that get a gradient (not indices, not conditions).
    pub fn differentiable(&self) -> bool {
        !matches!(self.domain, Domain::Index(_) | Domain::Mask)
    }

    /// Draws the values.
    pub fn values(&self, rng: &mut StdRng) -> Vec<f64> {
        let n: usize = self.shape.iter().product();
        match self.domain {
            Domain::Any => (0..n).map(|_| rng.random_range(-2.0..2.0)).collect(),
            Domain::Positive => (0..n).map(|_| rng.random_range(0.2..2.0)).collect(),
            Domain::AwayFromZero => (0..n)
                .map(|_| {
                    let v: f64 = rng.random_range(0.1..2.0);
                    if rng.random::<bool>() {
                        v
                    } else {
                        -v
                    }
                })
                .collect(),
            Domain::Distinct => {
                let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.05 - n as f64 * 0.025).collect();
                v.shuffle(rng);
                v
            }
            Domain::Lattice(offset) => (0..n)
                .map(|_| rng.random_range(-8..8) as f64 * 0.25 + offset)
                .collect(),
            Domain::Mask => (0..n).map(|_| rng.random_range(0..2) as f64).collect(),
            Domain::Index(bound) => (0..n).map(|_| rng.random_range(0..bound) as f64).collect(),
            Domain::Huge => (0..n).map(|_| rng.random_range(-1000.0..1000.0)).collect(),
        }
    }
}

/// Runs an op on its inputs (the device argument serves ops that create tensors).
pub type RunFn = Arc<dyn Fn(&[Tensor], &Device) -> Result<Tensor> + Send + Sync>;

/// One test case of an op.
#[derive(Clone)]
pub struct OpCase {
    /// What the case exercises (shapes, arguments).
    pub label: String,
    /// The inputs.
    pub inputs: Vec<InputSpec>,
    /// The op applied to them.
    pub run: RunFn,
}

/// One op and its cases.
#[derive(Clone)]
pub struct OpEntry {
    /// The op's name.
    pub name: &'static str,
    /// False for ops without a gradient (comparisons, random draws).
    pub differentiable: bool,
    /// The GPU kernels this op launches (forward and backward), by entry-point name.
    pub kernels: &'static [&'static str],
    /// Its test cases.
    pub cases: Vec<OpCase>,
}

fn spec(shape: &[usize], domain: Domain) -> InputSpec {
    InputSpec {
        shape: shape.to_vec(),
        domain,
    }
}

fn case(
    label: impl Into<String>,
    inputs: Vec<InputSpec>,
    run: impl Fn(&[Tensor], &Device) -> Result<Tensor> + Send + Sync + 'static,
) -> OpCase {
    OpCase {
        label: label.into(),
        inputs,
        run: Arc::new(run),
    }
}

/// Sizes that break kernels (one below and one above a power of two, where workgroup
/// and tile bounds are off by one), plus scalars and small tensors.
pub const ELEMENTWISE_SHAPES: &[&[usize]] = &[
    &[],
    &[1],
    &[3],
    &[7],
    &[31],
    &[33],
    &[63],
    &[65],
    &[255],
    &[257],
    &[3, 7],
    &[2, 3, 5],
];

/// Every broadcasting pattern: equal, scalar either side, both sides, missing leading
/// dims either side, and rank 4.
pub const BROADCAST_PAIRS: &[(&[usize], &[usize])] = &[
    (&[3, 7], &[3, 7]),
    (&[], &[3, 7]),
    (&[3, 7], &[]),
    (&[1], &[65]),
    (&[3, 1], &[1, 7]),
    (&[7], &[3, 7]),
    (&[3, 7], &[7]),
    (&[2, 1, 5], &[3, 1]),
    (&[33, 1], &[33, 63]),
    (&[4, 1, 3, 1], &[1, 5, 1, 2]),
    (&[257], &[257]),
];

/// Matrix products through a given kernel choice, differentiated through the same one.
fn product_entry(
    name: &'static str,
    kernels: &'static [&'static str],
    cases: Vec<(&'static [usize], &'static [usize], MatmulChoice)>,
) -> OpEntry {
    OpEntry {
        name,
        differentiable: true,
        kernels,
        cases: cases
            .into_iter()
            .map(|(a, b, choice)| {
                let label = if choice == MatmulChoice::AUTO {
                    format!("{a:?} x {b:?}")
                } else {
                    format!("{a:?} x {b:?} {:?} splits {}", choice.kernel, choice.splits)
                };
                case(
                    label,
                    vec![spec(a, Domain::Any), spec(b, Domain::Any)],
                    move |x, _| matmul_with(&x[0], &x[1], choice),
                )
            })
            .collect(),
    }
}

fn unary_entry(
    name: &'static str,
    kernels: &'static [&'static str],
    domain: Domain,
    f: fn(&Tensor) -> Result<Tensor>,
) -> OpEntry {
    OpEntry {
        name,
        differentiable: true,
        kernels,
        cases: ELEMENTWISE_SHAPES
            .iter()
            .map(|s| {
                case(
                    format!("{s:?}"),
                    vec![spec(s, domain)],
                    move |x, _| f(&x[0]),
                )
            })
            .collect(),
    }
}

fn binary_entry(
    name: &'static str,
    kernels: &'static [&'static str],
    da: Domain,
    db: Domain,
    f: fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> OpEntry {
    OpEntry {
        name,
        differentiable: true,
        kernels,
        cases: BROADCAST_PAIRS
            .iter()
            .map(|(a, b)| {
                case(
                    format!("{a:?} with {b:?}"),
                    vec![spec(a, da), spec(b, db)],
                    move |x, _| f(&x[0], &x[1]),
                )
            })
            .collect(),
    }
}

/// Every op wgrad has, with its test cases.
pub fn registry() -> Vec<OpEntry> {
    use Domain::*;
    let key = RngKey { seed: 7, offset: 3 };
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
    let _ = key;

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

    // Products for the planner's choice: the shapes that break kernels plus skinny,
    // long-K and batched ones (each kernel of the family is forced below).
    let products: &[(&[usize], &[usize])] = &[
        (&[1, 1], &[1, 1]),
        (&[3, 7], &[7, 5]),
        (&[65, 3], &[3, 63]),
        (&[33, 65], &[65, 31]),
        (&[2, 3, 4], &[2, 4, 5]),
        (&[2, 1, 3, 4], &[3, 4, 5]),
        (&[3, 4], &[2, 4, 5]),
        (&[1, 2, 3, 4], &[3, 1, 4, 2]),
        (&[7], &[7, 3]),
        (&[3, 7], &[7]),
        (&[5], &[5]),
        (&[1, 300], &[300, 2]),
        (&[2, 3, 260], &[260, 4]),
        (&[4, 1030], &[1030, 3]),
    ];
    ops.push(product_entry(
        "matmul",
        &["matmul_small_fwd", "matmul_tile_fwd", "sum_fwd"],
        products
            .iter()
            .map(|&(a, b)| (a, b, MatmulChoice::AUTO))
            .collect(),
    ));
    let forced = |kernel, splits| MatmulChoice { kernel, splits };
    let tile128 = forced(MatmulKernel::Tile128, 0);
    ops.push(product_entry(
        "matmul_tile128",
        &["matmul_tile_fwd"],
        vec![
            (&[3, 33], &[33, 5], tile128),
            (&[129, 12], &[12, 130], tile128),
            (&[2, 64, 24], &[24, 132], tile128),
            (&[2, 1, 7, 9], &[3, 9, 131], tile128),
        ],
    ));
    let tile64 = forced(MatmulKernel::Tile64, 0);
    ops.push(product_entry(
        "matmul_tile64",
        &["matmul_tile_fwd"],
        vec![
            (&[3, 17], &[17, 5], tile64),
            (&[65, 20], &[20, 66], tile64),
            (&[2, 3, 36], &[36, 68], tile64),
            (&[64, 33], &[2, 33, 64], tile64),
        ],
    ));
    ops.push(product_entry(
        "matmul_small",
        &["matmul_small_fwd"],
        vec![
            (&[1, 40], &[40, 1], forced(MatmulKernel::Small16x16, 0)),
            (&[17, 9], &[9, 18], forced(MatmulKernel::Small16x16, 0)),
            (&[3, 16, 8], &[8, 17], forced(MatmulKernel::Small16x32, 0)),
            (&[33, 2], &[2, 7], forced(MatmulKernel::Small32x16, 0)),
            (&[33, 5], &[5, 65], forced(MatmulKernel::Small32x32, 0)),
            (&[2, 31, 12], &[12, 33], forced(MatmulKernel::Small32x32, 0)),
        ],
    ));
    // The block kernels (software adapters), forced on any adapter: aligned shapes take
    // the vec4 loads (in every layout, through the backward's transposed operands),
    // the others the scalar ones, and K tails shorter than 4.
    ops.push(product_entry(
        "matmul_block",
        &["matmul_block_fwd"],
        vec![
            (&[8, 12], &[12, 16], forced(MatmulKernel::Block64, 0)),
            (&[65, 20], &[20, 68], forced(MatmulKernel::Block64, 0)),
            (&[3, 17], &[17, 5], forced(MatmulKernel::Block64, 0)),
            (&[2, 36, 9], &[9, 40], forced(MatmulKernel::Block32, 0)),
            (&[2, 1, 7, 9], &[3, 9, 33], forced(MatmulKernel::Block32, 0)),
            (&[16, 24], &[2, 24, 64], forced(MatmulKernel::Block16x64, 0)),
            (&[17, 6], &[6, 70], forced(MatmulKernel::Block16x64, 0)),
            (&[64, 28], &[28, 12], forced(MatmulKernel::Block64x16, 0)),
            (&[66, 5], &[5, 3], forced(MatmulKernel::Block64x16, 0)),
            (&[2, 9, 4], &[4, 18], forced(MatmulKernel::Block16, 0)),
        ],
    ));
    ops.push(product_entry(
        "matmul_splitk",
        &["matmul_tile_fwd", "matmul_small_fwd", "sum_fwd"],
        vec![
            (&[5, 300], &[300, 7], forced(MatmulKernel::Tile128, 3)),
            (&[2, 17, 70], &[70, 9], forced(MatmulKernel::Tile64, 2)),
            (&[3, 500], &[500, 4], forced(MatmulKernel::Small16x16, 5)),
            (&[3, 4, 100], &[100, 5], forced(MatmulKernel::Small32x32, 2)),
            (&[2, 1, 3, 64], &[4, 64, 6], forced(MatmulKernel::Tile64, 4)),
            // One split longer than a workgroup may loop: chunks one after another.
            (&[3, 1100], &[1100, 2], forced(MatmulKernel::Small16x16, 1)),
            (&[2, 1040], &[1040, 3], forced(MatmulKernel::Tile64, 1)),
            (&[4, 300], &[300, 8], forced(MatmulKernel::Block64, 3)),
            (&[3, 1030], &[1030, 4], forced(MatmulKernel::Block32, 1)),
        ],
    ));
    // The one-output-per-thread kernel that benchmarks compare the others against.
    let naive = forced(MatmulKernel::Naive, 0);
    ops.push(product_entry(
        "matmul_naive",
        &["matmul_naive_fwd"],
        vec![
            (&[3, 7], &[7, 5], naive),
            (&[33, 65], &[65, 31], naive),
            (&[2, 3, 4], &[4, 17], naive),
        ],
    ));

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
    ops.push(OpEntry {
        name: "linear",
        differentiable: true,
        kernels: &["matmul_small_fwd", "matmul_tile_fwd"],
        cases: [
            (&[5usize, 7][..], &[3usize, 7][..]),
            (&[2, 4, 7], &[6, 7]),
            (&[1, 65], &[33, 65]),
            (&[7], &[2, 7]),
        ]
        .iter()
        .map(|(x, w)| {
            case(
                format!("{x:?} by {w:?}"),
                vec![spec(x, Any), spec(w, Any)],
                |t, _| t[0].linear(&t[1]),
            )
        })
        .collect(),
    });
    ops.push(OpEntry {
        name: "linear_act",
        differentiable: true,
        kernels: &["matmul_small_fwd", "matmul_tile_fwd"],
        cases: {
            use crate::ops::matmul::Act;
            let acts = [
                Act::Identity,
                Act::Relu,
                Act::LeakyRelu(0.1),
                Act::Sigmoid,
                Act::Tanh,
                Act::LeakyRelu(-0.5),
            ];
            let shapes: [(&[usize], &[usize]); 3] =
                [(&[5, 7], &[3, 7]), (&[2, 4, 9], &[6, 9]), (&[7], &[33, 7])];
            let mut cases = Vec::new();
            for (k, act) in acts.into_iter().enumerate() {
                for (x, w) in shapes {
                    for bias in [true, false] {
                        if !bias && k % 2 == 1 {
                            continue;
                        }
                        let mut inputs = vec![spec(x, Any), spec(w, Any)];
                        if bias {
                            inputs.push(spec(&w[..1], Any));
                        }
                        cases.push(case(
                            format!("{act:?} {x:?} by {w:?}, bias {bias}"),
                            inputs,
                            move |t, _| t[0].linear_act(&t[1], t.get(2), act),
                        ));
                    }
                }
            }
            cases
        },
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
    // Optimizer kernels: three steps from the same parameters and gradients must leave
    // the same parameters on both devices. Inputs come in (parameter, gradient) pairs; a
    // case with several pairs updates them all in one dispatch.
    use crate::optim::{clip_grad_norm, Adam, AdamW, Optimizer, Sgd};
    fn flat_cat(ts: &[Tensor]) -> Result<Tensor> {
        let flat: Vec<Tensor> = ts
            .iter()
            .map(|t| t.reshape(&[t.numel()]))
            .collect::<Result<_>>()?;
        Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0)
    }
    fn three_steps(x: &[Tensor], make: fn(Vec<Tensor>) -> Box<dyn Optimizer>) -> Result<Tensor> {
        let params: Vec<Tensor> = x
            .chunks(2)
            .map(|pair| pair[0].mul_scalar(1.0)?.requires_grad_(true))
            .collect::<Result<_>>()?;
        let mut opt = make(params.clone());
        for k in 0..3 {
            for (p, pair) in params.iter().zip(x.chunks(2)) {
                p.set_grad(Some(pair[1].mul_scalar(1.0 - 0.25 * k as f32)?));
            }
            opt.step()?;
        }
        flat_cat(&params)
    }
    let shapes: &[&[&[usize]]] = &[&[&[7]], &[&[3, 65]], &[&[257]], &[&[300], &[1], &[4, 5]]];
    let pairs = |s: &[&[usize]]| -> Vec<InputSpec> {
        s.iter()
            .flat_map(|s| [spec(s, Any), spec(s, Any)])
            .collect()
    };
    for (name, kernels, make) in [
        (
            "sgd_step",
            &["sgd_momentum_multi_step"] as &'static [&'static str],
            (|p| Box::new(Sgd::new(p, 0.1).momentum(0.9).weight_decay(0.01)) as Box<dyn Optimizer>)
                as fn(Vec<Tensor>) -> Box<dyn Optimizer>,
        ),
        ("sgd_nesterov_step", &["sgd_momentum_multi_step"], |p| {
            Box::new(
                Sgd::new(p, 0.05)
                    .momentum(0.8)
                    .nesterov(true)
                    .dampening(0.0),
            )
        }),
        ("sgd_plain_step", &["sgd_multi_step"], |p| {
            Box::new(Sgd::new(p, 0.1).weight_decay(0.05))
        }),
        ("adam_step", &["adam_multi_step"], |p| {
            Box::new(Adam::new(p, 0.01).weight_decay(0.1))
        }),
        ("adamw_step", &["adam_multi_step"], |p| {
            Box::new(AdamW::new(p, 0.01))
        }),
    ] {
        ops.push(OpEntry {
            name,
            differentiable: false,
            kernels,
            cases: shapes
                .iter()
                .map(|s| case(format!("{s:?}"), pairs(s), move |x, _| three_steps(x, make)))
                .collect(),
        });
    }
    // Clipping: the norm, then the clipped gradients, of gradients given as inputs.
    ops.push(OpEntry {
        name: "clip_grad_norm",
        differentiable: false,
        kernels: &["clip_sumsq_step", "clip_norm_step", "clip_scale_step"],
        cases: [
            (&[&[7][..]][..], 0.5f32),
            (&[&[3, 65], &[1], &[2000]], 1.0),
            (&[&[5], &[4, 4]], 1e3),
        ]
        .iter()
        .map(|&(s, max_norm)| {
            let specs: Vec<InputSpec> = s.iter().map(|s| spec(s, Any)).collect();
            case(format!("{s:?} max {max_norm}"), specs, move |x, _| {
                let params: Vec<Tensor> = x
                    .iter()
                    .map(|g| {
                        let p = g.zeros_like()?.requires_grad_(true)?;
                        p.set_grad(Some(g.mul_scalar(1.0)?));
                        Ok(p)
                    })
                    .collect::<Result<_>>()?;
                let norm = clip_grad_norm(&params, max_norm)?.expect("gradients");
                let mut out = vec![norm];
                out.extend(params.iter().map(|p| p.grad().expect("gradient")));
                flat_cat(&out)
            })
        })
        .collect(),
    });
    use crate::ops::conv2d::ConvOptions;
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
            let mut cases = Vec::new();
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
    use crate::ops::augment::{geometric, ImageMove};
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
    rnn_entries(&mut ops);
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

/// The recurrent cells and whole layers (one and two layers; batch 1 and 3; sequence
/// lengths 1, 2 and 17). Outputs are flattened and concatenated so one tensor carries
/// every step's output and the final states.
fn rnn_entries(ops: &mut Vec<OpEntry>) {
    use crate::ops::rnn::{gru_cell, lstm_cell, rnn_layer, LayerWeights, RnnMode};
    use Domain::Any;
    let flat = |ts: &[&Tensor]| -> Result<Tensor> {
        let parts: Vec<Tensor> = ts
            .iter()
            .map(|t| t.reshape(&[t.numel()]))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::cat(&refs, 0)
    };
    ops.push(OpEntry {
        name: "lstm_cell",
        differentiable: true,
        kernels: &["lstm_cell_fwd", "lstm_cell_bwd"],
        cases: [(1usize, 1usize), (3, 5), (2, 65)]
            .iter()
            .map(|&(b, h)| {
                case(
                    format!("batch {b}, hidden {h}"),
                    vec![spec(&[b, 4 * h], Any), spec(&[b, h], Any)],
                    move |x, _| {
                        let (hh, cc) = lstm_cell(&x[0], &x[1])?;
                        flat(&[&hh, &cc])
                    },
                )
            })
            .collect(),
    });
    ops.push(OpEntry {
        name: "gru_cell",
        differentiable: true,
        kernels: &["gru_cell_fwd", "gru_cell_bwd"],
        cases: [(1usize, 1usize), (3, 5), (2, 65)]
            .iter()
            .map(|&(b, h)| {
                case(
                    format!("batch {b}, hidden {h}"),
                    vec![
                        spec(&[b, 3 * h], Any),
                        spec(&[b, 3 * h], Any),
                        spec(&[b, h], Any),
                    ],
                    move |x, _| gru_cell(&x[0], &x[1], &x[2]),
                )
            })
            .collect(),
    });
    for (name, mode, kernels) in [
        (
            "rnn_tanh",
            RnnMode::Tanh,
            &["tanh_fwd", "tanh_bwd", "matmul_small_fwd"][..],
        ),
        (
            "rnn_relu",
            RnnMode::Relu,
            &["relu_fwd", "relu_bwd", "matmul_small_fwd"][..],
        ),
        (
            "lstm",
            RnnMode::Lstm,
            &[
                "lstm_cell_fwd",
                "lstm_cell_bwd",
                "lstm_step_fwd",
                "lstm_step_bwd",
                "matmul_small_fwd",
            ][..],
        ),
        (
            "gru",
            RnnMode::Gru,
            &[
                "gru_cell_fwd",
                "gru_cell_bwd",
                "gru_step_fwd",
                "gru_step_bwd",
                "matmul_small_fwd",
            ][..],
        ),
    ] {
        let g = mode.gates();
        let lstm = mode == RnnMode::Lstm;
        let mut cases = Vec::new();
        // (steps, batch, input, hidden, layers)
        for &(t, b, i, h, layers) in &[
            (1usize, 1usize, 3usize, 4usize, 1usize),
            (2, 3, 2, 3, 1),
            (17, 2, 3, 4, 1),
            (5, 3, 2, 3, 2),
        ] {
            let mut inputs = vec![spec(&[t, b, i], Any)];
            for l in 0..layers {
                let inp = if l == 0 { i } else { h };
                inputs.extend([
                    spec(&[g * h, inp], Any),
                    spec(&[g * h, h], Any),
                    spec(&[g * h], Any),
                    spec(&[g * h], Any),
                    spec(&[b, h], Any),
                ]);
                if lstm {
                    inputs.push(spec(&[b, h], Any));
                }
            }
            cases.push(case(
                format!("{layers} layer(s), {t} steps, batch {b}, input {i}, hidden {h}"),
                inputs,
                move |x, _| {
                    let per = if lstm { 6 } else { 5 };
                    let mut input = x[0].clone();
                    let mut outs = Vec::new();
                    for l in 0..layers {
                        let p = &x[1 + l * per..1 + (l + 1) * per];
                        let (out, h_n, c_n) = rnn_layer(
                            mode,
                            &input,
                            LayerWeights {
                                w_ih: &p[0],
                                w_hh: &p[1],
                                b_ih: Some(&p[2]),
                                b_hh: Some(&p[3]),
                            },
                            &p[4],
                            if lstm { Some(&p[5]) } else { None },
                        )?;
                        outs.push(h_n);
                        outs.extend(c_n);
                        input = out;
                    }
                    outs.push(input);
                    let refs: Vec<&Tensor> = outs.iter().collect();
                    flat(&refs)
                },
            ));
        }
        ops.push(OpEntry {
            name,
            differentiable: true,
            kernels,
            cases,
        });
    }
    ops.push(OpEntry {
        name: "embedding",
        differentiable: true,
        kernels: &["index_select_fwd", "index_select_bwd"],
        cases: vec![case(
            "[6, 4] table by [3, 5] indices (repeats)",
            vec![spec(&[6, 4], Any), spec(&[3, 5], Domain::Index(6))],
            |x, _| crate::ops::rnn::embedding(&x[1], &x[0]),
        )],
    });
}
