//! The binary half of the elementwise table: every broadcasting binary op and every
//! comparison, written once.
//!
//! Each row of `binary_table!` gives an op's variant of [`BinaryOp`], its name, and its
//! forward `(a, b) -> y` and backward `(g, a, b) -> (dL/da, dL/db)` in Rust and in WGSL
//! side by side. From the rows come the [`BinaryOp`] enum, the CPU loops (one monomorphic
//! loop per row, the match outside the loop: `BinaryOp::map_forward`,
//! `BinaryOp::map_backward`), the WGSL functions `bop_<name>_fwd(a, b)` and
//! `bop_<name>_bwd(g, a, b) -> vec2<f32>`, and the kernels `<name>_fwd` / `<name>_bwd`
//! that `shaders/binary.wgsl` completes with its broadcast indexing. A row whose
//! gradients are constant multiples of the output gradient (`bwd const (da, db)`) has no
//! backward kernel: its backward is the gradient itself or its negation.
//!
//! `compare_table!` does the same for the comparisons (no gradient): [`CompareOp`], its
//! Rust test, and one WGSL switch over the generated constants `CMP_<NAME>`.

use std::sync::OnceLock;

use crate::backend::cpu::Float;

/// A loop over pairs of elements, given a row's forward as a closure
/// ([`BinaryOp::map_forward`]).
pub(crate) trait MapForward2<T> {
    /// What the loop returns.
    type Out;
    /// Runs the loop with `f`.
    fn run<F: Fn(T, T) -> T>(self, f: F) -> Self::Out;
}

/// A loop over elements, given a row's backward `(g, a, b) -> (dL/da, dL/db)`.
pub(crate) trait MapBackward2<T> {
    /// What the loop returns.
    type Out;
    /// Runs the loop with `f`.
    fn run<F: Fn(T, T, T) -> (T, T)>(self, f: F) -> Self::Out;
}

/// a^b with PyTorch's meaning for negative bases (integer exponents only).
fn pow<T: Float>(a: T, b: T) -> T {
    if a >= T::zero() {
        return a.powf(b);
    }
    let bf = b.to_f64();
    if bf.fract() == 0.0 {
        let r = (-a).powf(b);
        if (bf as i64) % 2 != 0 {
            -r
        } else {
            r
        }
    } else {
        T::from_f64(f64::NAN)
    }
}

/// The weight of `a` in the gradient of a maximum (`first` = `a > b`) or a minimum
/// (`first` = `a < b`): ties split the gradient evenly, as PyTorch does.
fn tie_weight<T: Float>(a: T, b: T, first: bool) -> T {
    if a == b {
        T::from_f64(0.5)
    } else if first {
        T::one()
    } else {
        T::zero()
    }
}

macro_rules! binary_table {
    ($(
        $(#[$doc:meta])*
        $v:ident = $name:literal,
        fwd |$a:ident, $b:ident| $fwd:expr,
        $(bwd |$g:ident, $ba:ident, $bb:ident| $bwd:expr,)?
        $(bwd const ($ca:expr, $cb:expr),)?
        wgsl $wf:literal $(, $wb:literal)?;
    )*) => {
        /// A differentiable broadcasting binary op (one row of the elementwise table).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum BinaryOp {
            $($(#[$doc])* $v,)*
        }

        impl BinaryOp {
            /// Every row of the table.
            pub(crate) const ROWS: &'static [BinaryOp] = &[$(BinaryOp::$v),*];

            /// The op's name (its kernels are `<name>_fwd` and `<name>_bwd`).
            pub fn name(self) -> &'static str {
                match self {
                    $(BinaryOp::$v => $name),*
                }
            }

            /// Runs `m` with this row's forward as a closure (one monomorphic loop per row).
            pub(crate) fn map_forward<T: Float, M: MapForward2<T>>(self, m: M) -> M::Out {
                match self {
                    $(BinaryOp::$v => {
                        #[allow(unused_variables)]
                        let f = |$a: T, $b: T| -> T { $fwd };
                        m.run(f)
                    }),*
                }
            }

            /// Runs `m` with this row's backward `(g, a, b) -> (dL/da, dL/db)`.
            pub(crate) fn map_backward<T: Float, M: MapBackward2<T>>(self, m: M) -> M::Out {
                match self {
                    $(BinaryOp::$v => {
                        $(
                            #[allow(unused_variables)]
                            let f = |$g: T, $ba: T, $bb: T| -> (T, T) { $bwd };
                        )?
                        $(
                            let f = |g: T, _: T, _: T| -> (T, T) {
                                (g * T::from_f64($ca), g * T::from_f64($cb))
                            };
                        )?
                        m.run(f)
                    }),*
                }
            }

            /// `(dL/da, dL/db) / g` for a row whose gradients are constant multiples of
            /// the output gradient (`add`, `sub`): the backward is then the gradient
            /// itself or its negation, and no backward kernel exists.
            pub(crate) fn constant_grads(self) -> Option<(f64, f64)> {
                match self {
                    $(BinaryOp::$v => {
                        let c: &[(f64, f64)] = &[$(($ca, $cb))?];
                        c.first().copied()
                    }),*
                }
            }
        }

        /// Each row's name, WGSL forward body and WGSL backward body (none for a row with
        /// constant gradients), in row order.
        const WGSL_ROWS: &[(&str, &str, &[&str])] = &[$(($name, $wf, &[$($wb)?])),*];
    };
}

binary_table! {
    /// a + b
    Add = "add",
        fwd |a, b| a + b,
        bwd const (1.0, 1.0),
        wgsl "return a + b;";
    /// a - b
    Sub = "sub",
        fwd |a, b| a - b,
        bwd const (1.0, -1.0),
        wgsl "return a - b;";
    /// a * b
    Mul = "mul",
        fwd |a, b| a * b,
        bwd |g, a, b| (g * b, g * a),
        wgsl "return a * b;", "return vec2(g * b, g * a);";
    /// a / b
    Div = "div",
        fwd |a, b| a / b,
        bwd |g, a, b| (g / b, -g * a / (b * b)),
        wgsl "return a / b;", "return vec2(g / b, -g * a / (b * b));";
    /// a ^ b; for a < 0 only an integer b is meaningful (NaN otherwise), as in PyTorch,
    /// which also defines d/db as 0 where a == 0.
    Pow = "pow",
        fwd |a, b| pow(a, b),
        bwd |g, a, b| {
            let db = if a == T::zero() { T::zero() } else { g * pow(a, b) * a.ln() };
            (g * b * pow(a, b - T::one()), db)
        },
        wgsl "return pow_f(a, b);",
             "return vec2(g * b * pow_f(a, b - 1.0), \
              select(g * pow_f(a, b) * log(a), 0.0, a == 0.0));";
    /// max(a, b): NaN wins, as in PyTorch (Rust's and WGSL's max may return the other
    /// operand); ties share the gradient.
    Maximum = "maximum",
        fwd |a, b| if a.is_nan() || b.is_nan() { a + b } else { a.max(b) },
        bwd |g, a, b| {
            let w = tie_weight(a, b, a > b);
            (g * w, g * (T::one() - w))
        },
        wgsl "return select(max(a, b), a + b, is_nan_f(a) || is_nan_f(b));",
             "let w = select(select(0.0, 1.0, a > b), 0.5, a == b); \
              return vec2(g * w, g * (1.0 - w));";
    /// min(a, b): NaN wins; ties share the gradient.
    Minimum = "minimum",
        fwd |a, b| if a.is_nan() || b.is_nan() { a + b } else { a.min(b) },
        bwd |g, a, b| {
            let w = tie_weight(a, b, a < b);
            (g * w, g * (T::one() - w))
        },
        wgsl "return select(min(a, b), a + b, is_nan_f(a) || is_nan_f(b));",
             "let w = select(select(0.0, 1.0, a < b), 0.5, a == b); \
              return vec2(g * w, g * (1.0 - w));";
}

macro_rules! compare_table {
    ($(
        $(#[$doc:meta])*
        $v:ident = $name:literal, |$a:ident, $b:ident| $test:expr, wgsl $w:literal;
    )*) => {
        /// A comparison giving 1.0 where it holds and 0.0 elsewhere (one row of the
        /// elementwise table).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum CompareOp {
            $($(#[$doc])* $v,)*
        }

        impl CompareOp {
            /// Every row of the table.
            pub(crate) const ROWS: &'static [CompareOp] = &[$(CompareOp::$v),*];

            /// The comparison's name.
            pub fn name(self) -> &'static str {
                match self {
                    $(CompareOp::$v => $name),*
                }
            }

            /// Whether it holds for `a` and `b` (floats or `u32`).
            pub(crate) fn test<T: PartialOrd>(self, x: T, y: T) -> bool {
                match self {
                    $(CompareOp::$v => (|$a: T, $b: T| $test)(x, y)),*
                }
            }
        }

        /// Each row's name and WGSL test of `a` and `b`, in row order.
        const WGSL_COMPARE: &[(&str, &str)] = &[$(($name, $w)),*];
    };
}

compare_table! {
    /// a == b
    Eq = "eq", |a, b| a == b, wgsl "a == b";
    /// a != b
    Ne = "ne", |a, b| a != b, wgsl "a != b";
    /// a < b
    Lt = "lt", |a, b| a < b, wgsl "a < b";
    /// a <= b
    Le = "le", |a, b| a <= b, wgsl "a <= b";
    /// a > b
    Gt = "gt", |a, b| a > b, wgsl "a > b";
    /// a >= b
    Ge = "ge", |a, b| a >= b, wgsl "a >= b";
}

impl CompareOp {
    /// The comparison's code in the generated WGSL (`CMP_<NAME>`).
    pub(crate) fn code(self) -> u32 {
        Self::ROWS
            .iter()
            .position(|&r| r == self)
            .expect("every variant is a row") as u32
    }
}

/// The generated part of `shaders/binary.wgsl`: per row `bop_<name>_fwd(a, b)`,
/// `bop_<name>_bwd(g, a, b)` and the kernels `<name>_fwd` (`y0 = op(x0, x1)`) and
/// `<name>_bwd` (`y0`, `y1` = the gradients of `x0` and `x1` in the output's shape, from
/// the output gradient `x2`); then `CMP_<NAME>`, `cmp_test(code, a, b)` (floats) and
/// `cmp_test_u32` (the same rows on `u32`) for `compare_fwd` and `compare_u32_fwd`.
/// The kernels read their inputs through `ia`/`ib`, the file's broadcast indexing.
pub(crate) fn wgsl() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let head = "@compute @workgroup_size(256)\nfn";
        let args = "(@builtin(global_invocation_id) gid: vec3<u32>, \
                    @builtin(num_workgroups) nwg: vec3<u32>) {\n    \
                    let i = flat_id(gid, nwg);\n    if (i >= bp.n) { return; }\n    \
                    let a = x0[ia(i)];\n    let b = x1[ib(i)];\n";
        let mut s = String::from(
            "// ---- Generated from the elementwise table (src/backend/elementwise/binary.rs) ----\n",
        );
        for (name, fwd, bwd) in WGSL_ROWS {
            s += &format!(
                "fn bop_{name}_fwd(a: f32, b: f32) -> f32 {{ {fwd} }}\n\
                 {head} {name}_fwd{args}    y0[i] = bop_{name}_fwd(a, b);\n}}\n"
            );
            if let Some(bwd) = bwd.first() {
                s += &format!(
                    "fn bop_{name}_bwd(g: f32, a: f32, b: f32) -> vec2<f32> {{ {bwd} }}\n\
                     {head} {name}_bwd{args}    let d = bop_{name}_bwd(x2[i], a, b);\n    \
                     y0[i] = d.x;\n    y1[i] = d.y;\n}}\n"
                );
            }
        }
        let mut cases = String::new();
        for (code, (name, test)) in WGSL_COMPARE.iter().enumerate() {
            let upper = name.to_uppercase();
            s += &format!("const CMP_{upper}: u32 = {code}u;\n");
            cases += &format!("        case CMP_{upper}: {{ return {test}; }}\n");
        }
        // One test per element type from the same rows: floats and `u32`.
        for (suffix, ty) in [("", "f32"), ("_u32", "u32")] {
            s += &format!(
                "fn cmp_test{suffix}(code: u32, a: {ty}, b: {ty}) -> bool {{\n    switch code {{\n{cases}\
                 \x20       default: {{ return false; }}\n    }}\n}}\n"
            );
        }
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(f64, f64);
    impl MapForward2<f64> for One {
        type Out = f64;
        fn run<F: Fn(f64, f64) -> f64>(self, f: F) -> f64 {
            f(self.0, self.1)
        }
    }
    struct OneBack(f64, f64);
    impl MapBackward2<f64> for OneBack {
        type Out = (f64, f64);
        fn run<F: Fn(f64, f64, f64) -> (f64, f64)>(self, f: F) -> (f64, f64) {
            f(1.0, self.0, self.1)
        }
    }

    /// Every row's backward against central differences of its forward, in f64.
    #[test]
    fn every_row_backward_matches_finite_differences() {
        let h = 1e-6;
        for &op in BinaryOp::ROWS {
            for &(a, b) in &[(0.7, 1.3), (2.0, -0.4), (1.5, 3.0), (-2.0, 3.0)] {
                let f = |a, b| op.map_forward(One(a, b));
                let (da, db) = op.map_backward(OneBack(a, b));
                let na = (f(a + h, b) - f(a - h, b)) / (2.0 * h);
                let nb = (f(a, b + h) - f(a, b - h)) / (2.0 * h);
                if op == BinaryOp::Pow && a < 0.0 {
                    // Only da exists there (b must stay an integer).
                    assert!((da - na).abs() < 1e-5, "{op:?} at {a}, {b}");
                    continue;
                }
                assert!(
                    (da - na).abs() < 1e-5,
                    "{op:?} da at {a}, {b}: {da} vs {na}"
                );
                assert!(
                    (db - nb).abs() < 1e-5,
                    "{op:?} db at {a}, {b}: {db} vs {nb}"
                );
            }
        }
    }

    #[test]
    fn every_row_has_its_kernels_and_every_comparison_its_constant() {
        for op in BinaryOp::ROWS {
            assert!(wgsl().contains(&format!("fn {}_fwd(", op.name())));
            let bwd = wgsl().contains(&format!("fn {}_bwd(", op.name()));
            assert_eq!(bwd, op.constant_grads().is_none(), "{}", op.name());
        }
        for op in CompareOp::ROWS {
            let c = format!(
                "const CMP_{}: u32 = {}u;",
                op.name().to_uppercase(),
                op.code()
            );
            assert!(wgsl().contains(&c), "{c}");
        }
    }
}
