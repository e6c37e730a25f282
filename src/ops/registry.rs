//! The op registry: every op, with the input shapes and value domains it is tested on.
//! `tests/gradcheck.rs` walks this list, so an op added here is automatically checked by
//! finite differences (CPU, `f64`) and against the CPU on the GPU (`f32`); an op missing
//! from here is caught by the test that compares this list with the shader entry points.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::backend::random::RngKey;
use crate::device::Device;
use crate::error::Result;
use crate::ops::matmul::{matmul_with, MatmulChoice, MatmulKernel};
use crate::tensor::Tensor;

pub mod check;

mod attention;
mod augment;
mod conv;
mod elementwise;
mod fused;
mod inplace;
mod layout;
mod loss;
mod matmul;
mod norm;
mod optim;
mod pool;
mod reduce;
mod rnn;
mod row_norm;

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

/// Every op wgrad has, with its test cases: each family's entries in turn.
pub fn registry() -> Vec<OpEntry> {
    let families: [fn() -> Vec<OpEntry>; 15] = [
        elementwise::entries,
        reduce::entries,
        matmul::entries,
        loss::entries,
        layout::entries,
        fused::entries,
        optim::entries,
        conv::entries,
        pool::entries,
        augment::entries,
        rnn::entries,
        norm::entries,
        row_norm::entries,
        inplace::entries,
        attention::entries,
    ];
    families.iter().flat_map(|f| f()).collect()
}
