//! The in-place updates (`add_`, `addcmul_`, `lerp_`, ...): each applied to a copy of
//! its first input, with broadcast and aliased operands.

use super::*;

/// One entry for every in-place update: its three kernels (no operand bound, one, two).
pub(super) fn entries() -> Vec<OpEntry> {
    use Domain::*;
    type Update = fn(&Tensor, &[Tensor]) -> Result<()>;
    let cases: Vec<(&str, Vec<InputSpec>, Update)> = vec![
        (
            "add_scaled_ row",
            vec![spec(&[3, 65], Any), spec(&[65], Any)],
            |y, x| y.add_scaled_(&x[1], -0.7).map(|_| ()),
        ),
        (
            "sub_",
            vec![spec(&[257], Any), spec(&[257], Any)],
            |y, x| y.sub_(&x[1]).map(|_| ()),
        ),
        (
            "mul_ column",
            vec![spec(&[3, 65], Any), spec(&[3, 1], Any)],
            |y, x| y.mul_(&x[1]).map(|_| ()),
        ),
        (
            "div_",
            vec![spec(&[2, 3, 33], Any), spec(&[3, 1], AwayFromZero)],
            |y, x| y.div_(&x[1]).map(|_| ()),
        ),
        (
            "addcmul_ row column",
            vec![spec(&[3, 65], Any), spec(&[65], Any), spec(&[3, 1], Any)],
            |y, x| y.addcmul_(&x[1], &x[2], 0.3).map(|_| ()),
        ),
        (
            "addcdiv_ scalar divisor",
            vec![spec(&[257], Any), spec(&[257], Any), spec(&[1], Positive)],
            |y, x| y.addcdiv_(&x[1], &x[2], -1.5).map(|_| ()),
        ),
        (
            "addcmul_ a == b",
            vec![spec(&[7], Any), spec(&[7], Any)],
            |y, x| y.addcmul_(&x[1], &x[1], 0.1).map(|_| ()),
        ),
        ("mul_scalar_", vec![spec(&[7], Any)], |y, _| {
            y.mul_scalar_(-0.3).map(|_| ())
        }),
        ("div_scalar_", vec![spec(&[33], Any)], |y, _| {
            y.div_scalar_(3.0).map(|_| ())
        }),
        ("add_scalar_", vec![spec(&[65], Any)], |y, _| {
            y.add_scalar_(1e-3).map(|_| ())
        }),
        ("sqrt_", vec![spec(&[3, 65], Positive)], |y, _| {
            y.sqrt_().map(|_| ())
        }),
        (
            "lerp_ small weight",
            vec![spec(&[3, 65], Any), spec(&[65], Any)],
            |y, x| y.lerp_(&x[1], 0.1).map(|_| ()),
        ),
        (
            "lerp_ large weight",
            vec![spec(&[257], Any), spec(&[257], Any)],
            |y, x| y.lerp_(&x[1], 0.8).map(|_| ()),
        ),
        (
            "maximum_",
            vec![spec(&[2, 3, 33], Distinct), spec(&[3, 33], Distinct)],
            |y, x| y.maximum_(&x[1]).map(|_| ()),
        ),
        (
            "copy_ row",
            vec![spec(&[3, 65], Any), spec(&[65], Any)],
            |y, x| y.copy_(&x[1]).map(|_| ()),
        ),
        // Operands that are the updated tensor itself, read through its binding.
        ("aliased add_", vec![spec(&[65], Any)], |y, _| {
            y.add_(y).map(|_| ())
        }),
        (
            "aliased addcmul_ a",
            vec![spec(&[3, 65], Any), spec(&[65], Any)],
            |y, x| y.addcmul_(y, &x[1], 0.5).map(|_| ()),
        ),
        (
            "aliased addcdiv_ b",
            vec![spec(&[257], Positive), spec(&[257], Any)],
            |y, x| y.addcdiv_(&x[1], y, 0.5).map(|_| ()),
        ),
    ];
    vec![OpEntry {
        name: "inplace_updates",
        differentiable: false,
        kernels: &["inplace0_step", "inplace1_step", "inplace2_step"],
        cases: cases
            .into_iter()
            .map(|(label, specs, update)| {
                case(label, specs, move |x, _| {
                    // A copy of the first input, updated in place.
                    let y = x[0].detach().mul_scalar(1.0)?;
                    update(&y, x)?;
                    Ok(y)
                })
            })
            .collect(),
    }]
}
