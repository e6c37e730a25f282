//! In-place updates `dst = f(dst, a, b)` shared by both backends: which update (with its
//! scalars), its arithmetic generic over `Float` (the CPU's loops) and in WGSL (the
//! GPU's `shaders/inplace.wgsl` switches over the codes generated here), and the
//! geometry: the operands' strides over `dst`'s shape, a [`Broadcast`] whose output is
//! `dst` itself (contiguous).

use std::sync::OnceLock;

use super::broadcast::Broadcast;
use super::cpu::Float;
use crate::shape;

/// One in-place update of `d` reading the operands `a`, `b` (the ones it names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum InplaceOp {
    /// `d + alpha a` (`add_`, `sub_`, `add_(other, alpha=)`).
    AddScaled(f64),
    /// `d a`.
    Mul,
    /// `d / a`.
    Div,
    /// `d + (value a) b`, as PyTorch's `addcmul_`.
    Addcmul(f64),
    /// `d + (value a) / b`, as PyTorch's `addcdiv_`.
    Addcdiv(f64),
    /// `d s`.
    MulScalar(f64),
    /// `d / s`.
    DivScalar(f64),
    /// `d + s`.
    AddScalar(f64),
    /// `sqrt(d)`.
    Sqrt,
    /// `lerp(d, a, weight)` with PyTorch's two-sided formula.
    Lerp(f64),
    /// `max(d, a)`, NaN if either is (PyTorch's `maximum`).
    Maximum,
    /// `a` (`copy_`).
    Copy,
}

/// Each update's name, code and WGSL body (over `d`, `a`, `b` and the scalar `s`).
const WGSL_ROWS: [(&str, &str); 12] = [
    ("ADD_SCALED", "return d + s * a;"),
    ("MUL", "return d * a;"),
    ("DIV", "return d / a;"),
    ("ADDCMUL", "return d + s * a * b;"),
    ("ADDCDIV", "return d + s * a / b;"),
    ("MUL_SCALAR", "return d * s;"),
    ("DIV_SCALAR", "return d / s;"),
    ("ADD_SCALAR", "return d + s;"),
    ("SQRT", "return sqrt(d);"),
    (
        "LERP",
        "if (abs(s) < 0.5) { return d + s * (a - d); } return a - (a - d) * (1.0 - s);",
    ),
    (
        "MAXIMUM",
        "if (is_nan_f(d) || is_nan_f(a)) { return nan_f(); } return select(a, d, d > a);",
    ),
    ("COPY", "return a;"),
];

impl InplaceOp {
    /// The code the GPU kernel switches on (`IP_<NAME>`), an index into `WGSL_ROWS`.
    pub(crate) fn code(self) -> u32 {
        match self {
            InplaceOp::AddScaled(_) => 0,
            InplaceOp::Mul => 1,
            InplaceOp::Div => 2,
            InplaceOp::Addcmul(_) => 3,
            InplaceOp::Addcdiv(_) => 4,
            InplaceOp::MulScalar(_) => 5,
            InplaceOp::DivScalar(_) => 6,
            InplaceOp::AddScalar(_) => 7,
            InplaceOp::Sqrt => 8,
            InplaceOp::Lerp(_) => 9,
            InplaceOp::Maximum => 10,
            InplaceOp::Copy => 11,
        }
    }

    /// The update's scalar (0 where it has none).
    pub(crate) fn scalar(self) -> f64 {
        match self {
            InplaceOp::AddScaled(s)
            | InplaceOp::Addcmul(s)
            | InplaceOp::Addcdiv(s)
            | InplaceOp::MulScalar(s)
            | InplaceOp::DivScalar(s)
            | InplaceOp::AddScalar(s)
            | InplaceOp::Lerp(s) => s,
            InplaceOp::Mul
            | InplaceOp::Div
            | InplaceOp::Sqrt
            | InplaceOp::Maximum
            | InplaceOp::Copy => 0.0,
        }
    }

    /// Calls `run.run(f)` with this update's arithmetic as `f(d, a, b)` (one
    /// monomorphic closure per update, so the loop inside `run` has no match).
    pub(crate) fn map<T: Float, R: MapInplace<T>>(self, run: R) -> R::Out {
        let s = T::from_f64(self.scalar());
        match self {
            InplaceOp::AddScaled(_) if self.scalar() == 1.0 => run.run(|d: T, a: T, _| d + a),
            InplaceOp::AddScaled(_) if self.scalar() == -1.0 => run.run(|d: T, a: T, _| d - a),
            InplaceOp::AddScaled(_) => run.run(move |d: T, a: T, _| d + s * a),
            InplaceOp::Mul => run.run(|d: T, a: T, _| d * a),
            InplaceOp::Div => run.run(|d: T, a: T, _| d / a),
            InplaceOp::Addcmul(_) => run.run(move |d: T, a: T, b: T| d + s * a * b),
            InplaceOp::Addcdiv(_) => run.run(move |d: T, a: T, b: T| d + s * a / b),
            InplaceOp::MulScalar(_) => run.run(move |d: T, _, _| d * s),
            InplaceOp::DivScalar(_) => run.run(move |d: T, _, _| d / s),
            InplaceOp::AddScalar(_) => run.run(move |d: T, _, _| d + s),
            InplaceOp::Sqrt => run.run(|d: T, _, _| d.sqrt()),
            InplaceOp::Lerp(_) => {
                let (one, half) = (T::one(), T::from_f64(0.5));
                if s.abs() < half {
                    run.run(move |d: T, a: T, _| d + s * (a - d))
                } else {
                    run.run(move |d: T, a: T, _| a - (a - d) * (one - s))
                }
            }
            #[allow(clippy::eq_op)]
            InplaceOp::Maximum => run.run(|d: T, a: T, _| {
                if d != d || a != a {
                    T::from_f64(f64::NAN)
                } else if d > a {
                    d
                } else {
                    a
                }
            }),
            InplaceOp::Copy => run.run(|_, a: T, _| a),
        }
    }
}

/// A loop over `dst` that [`InplaceOp::map`] hands the update's arithmetic to.
pub(crate) trait MapInplace<T> {
    /// What the loop returns.
    type Out;
    /// Runs the loop with `f(d, a, b)`.
    fn run<F: Fn(T, T, T) -> T + Sync>(self, f: F) -> Self::Out;
}

/// The geometry of an update of a `dst` of shape `dst`: the operands' strides over it
/// (an absent operand is read nowhere: strides of `dst` itself, never used).
pub(crate) fn geometry(dst: &[usize], a: Option<&[usize]>, b: Option<&[usize]>) -> Broadcast {
    Broadcast {
        out: dst.to_vec(),
        sa: shape::broadcast_strides(a.unwrap_or(dst), dst),
        sb: shape::broadcast_strides(b.unwrap_or(dst), dst),
    }
}

/// The WGSL the GPU kernel's file starts with: the `IP_<NAME>` codes and
/// `ip_apply(code, d, a, b, s)`.
pub(crate) fn wgsl() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut s = String::from(
            "// ---- Generated from the in-place updates (src/backend/inplace.rs) ----\n",
        );
        let mut cases = String::new();
        for (code, (name, body)) in WGSL_ROWS.iter().enumerate() {
            s += &format!("const IP_{name}: u32 = {code}u;\n");
            cases += &format!("        case IP_{name}: {{ {body} }}\n");
        }
        s += &format!(
            "fn ip_apply(code: u32, d: f32, a: f32, b: f32, s: f32) -> f32 {{\n    \
             switch code {{\n{cases}        default: {{ return d; }}\n    }}\n}}\n"
        );
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(f64, f64, f64);
    impl MapInplace<f64> for One {
        type Out = f64;
        fn run<F: Fn(f64, f64, f64) -> f64 + Sync>(self, f: F) -> f64 {
            f(self.0, self.1, self.2)
        }
    }

    /// Codes index the WGSL rows by name, and each update's arithmetic on one element.
    #[test]
    fn codes_and_arithmetic() {
        let ops = [
            (InplaceOp::AddScaled(-0.5), "ADD_SCALED", 2.0 - 0.5 * 3.0),
            (InplaceOp::Mul, "MUL", 6.0),
            (InplaceOp::Div, "DIV", 2.0 / 3.0),
            (InplaceOp::Addcmul(0.5), "ADDCMUL", 2.0 + 0.5 * 3.0 * 4.0),
            (InplaceOp::Addcdiv(0.5), "ADDCDIV", 2.0 + 0.5 * 3.0 / 4.0),
            (InplaceOp::MulScalar(3.0), "MUL_SCALAR", 6.0),
            (InplaceOp::DivScalar(4.0), "DIV_SCALAR", 0.5),
            (InplaceOp::AddScalar(1.5), "ADD_SCALAR", 3.5),
            (InplaceOp::Sqrt, "SQRT", 2f64.sqrt()),
            (InplaceOp::Lerp(0.25), "LERP", 2.25),
            (InplaceOp::Maximum, "MAXIMUM", 3.0),
            (InplaceOp::Copy, "COPY", 3.0),
        ];
        for (op, name, want) in ops {
            assert_eq!(WGSL_ROWS[op.code() as usize].0, name);
            assert_eq!(op.map(One(2.0, 3.0, 4.0)), want, "{name}");
        }
        assert_eq!(InplaceOp::Lerp(0.75).map(One(2.0, 6.0, 0.0)), 5.0);
        assert!(InplaceOp::Maximum.map(One(f64::NAN, 1.0, 0.0)).is_nan());
        assert!(InplaceOp::Maximum.map(One(1.0, f64::NAN, 0.0)).is_nan());
    }
}
