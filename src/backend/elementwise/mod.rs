//! The elementwise table: every unary op and activation, written once (the binary ops
//! and comparisons are in [`binary`]).
//!
//! Each row of `unary_table!` gives an op's name, its variant of [`UnaryOp`] (with its
//! scalar parameters), its forward and backward in Rust and in WGSL side by side, and
//! which value the backward reads ([`Needs`]). Everything else comes from the rows:
//!
//! - the [`UnaryOp`] enum and its code (`UnaryOp::code`), which the WGSL knows as the
//!   generated constant `OP_<NAME>` (never a number typed twice);
//! - the CPU loops (one monomorphic loop per row, the match outside the loop);
//! - the WGSL functions `op_<name>_fwd(x, a, b)` and `op_<name>_bwd(g, s, a, b)`, one
//!   switch over the codes (`ew_fwd`, `ew_bwd`) for the fused epilogues and prologues of
//!   products and convolutions, and the unary kernels `<name>_fwd` / `<name>_bwd`.
//!
//! A backward is written in terms of the output gradient `g` and the saved value `s`:
//! the input for [`Needs::Input`], the output for [`Needs::Output`] (nothing is saved
//! for [`Needs::Nothing`]). A fused layer saves the pre-activation exactly when its
//! activation needs the input.

pub mod binary;

use std::sync::OnceLock;

use crate::backend::cpu::pool::CollectPooled;
use crate::backend::cpu::Float;
use crate::backend::gpu::Kernel;

/// Which value an op's backward reads besides the output gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Neither (a constant derivative).
    Nothing,
    /// The op's input.
    Input,
    /// The op's output.
    Output,
}

/// The logistic sigmoid, without overflow for either sign.
pub(crate) fn sigmoid<T: Float>(x: T) -> T {
    let one = T::one();
    if x >= T::zero() {
        one / (one + (-x).exp())
    } else {
        let e = x.exp();
        e / (one + e)
    }
}

/// `max(z, 0) + ln(1 + e^-|z|)` = `ln(1 + e^z)` without overflow, accurate where tiny.
fn softplus_z<T: Float>(z: T) -> T {
    z.relu() + (-z.abs()).exp().ln_1p()
}

/// A loop over elements, given a row's forward as a closure ([`UnaryOp::map_forward`]).
pub(crate) trait MapForward<T> {
    /// What the loop returns.
    type Out;
    /// Runs the loop with `f`.
    fn run<F: Fn(T) -> T>(self, f: F) -> Self::Out;
}

/// A loop over elements, given a row's backward `(g, s) -> dL/dx` as a closure.
pub(crate) trait MapBackward<T> {
    /// What the loop returns.
    type Out;
    /// Runs the loop with `f`.
    fn run<F: Fn(T, T) -> T>(self, f: F) -> Self::Out;
}

impl UnaryOp {
    /// `op(x)` for each element, in a pooled vector.
    pub(crate) fn forward_vec<T: Float>(self, xs: &[T]) -> Vec<T> {
        if self == UnaryOp::Gelu {
            let mut out = crate::backend::cpu::pool::with_capacity(xs.len());
            out.extend_from_slice(xs);
            T::gelu_in_place(&mut out);
            return out;
        }
        struct Collect<'a, T>(&'a [T]);
        impl<T: Float> MapForward<T> for Collect<'_, T> {
            type Out = Vec<T>;
            fn run<F: Fn(T) -> T>(self, f: F) -> Vec<T> {
                self.0.iter().map(|&x| f(x)).collect_pooled()
            }
        }
        self.map_forward(Collect(xs))
    }

    /// `y = op(y)` in place.
    pub(crate) fn forward_in_place<T: Float>(self, ys: &mut [T]) {
        if self == UnaryOp::Gelu {
            return T::gelu_in_place(ys);
        }
        struct InPlace<'a, T>(&'a mut [T]);
        impl<T: Float> MapForward<T> for InPlace<'_, T> {
            type Out = ();
            fn run<F: Fn(T) -> T>(self, f: F) {
                self.0.iter_mut().for_each(|y| *y = f(*y));
            }
        }
        self.map_forward(InPlace(ys))
    }

    /// `dL/dx` from the output gradient `g` and the saved value `s`, in a pooled vector.
    pub(crate) fn backward_vec<T: Float>(self, g: &[T], s: &[T]) -> Vec<T> {
        if self == UnaryOp::Gelu {
            let mut out = crate::backend::cpu::pool::filled(g.len().min(s.len()), T::zero());
            T::gelu_backward_into(&mut out, g, s);
            return out;
        }
        struct Collect<'a, T>(&'a [T], &'a [T]);
        impl<T: Float> MapBackward<T> for Collect<'_, T> {
            type Out = Vec<T>;
            fn run<F: Fn(T, T) -> T>(self, f: F) -> Vec<T> {
                self.0
                    .iter()
                    .zip(self.1)
                    .map(|(&g, &s)| f(g, s))
                    .collect_pooled()
            }
        }
        self.map_backward(Collect(g, s))
    }

    /// `out = dL/dx` from `g` and `s`, into an existing slice.
    pub(crate) fn backward_into<T: Float>(self, out: &mut [T], g: &[T], s: &[T]) {
        if self == UnaryOp::Gelu {
            return T::gelu_backward_into(out, g, s);
        }
        struct Into<'a, T>(&'a mut [T], &'a [T], &'a [T]);
        impl<T: Float> MapBackward<T> for Into<'_, T> {
            type Out = ();
            fn run<F: Fn(T, T) -> T>(self, f: F) {
                for ((o, &g), &s) in self.0.iter_mut().zip(self.1).zip(self.2) {
                    *o = f(g, s);
                }
            }
        }
        self.map_backward(Into(out, g, s))
    }

    /// One element of the forward.
    #[cfg(test)]
    pub(crate) fn forward_one<T: Float>(self, x: T) -> T {
        self.forward_vec(&[x])[0]
    }
}

/// `sqrt(2 / pi)`, for the tanh approximation of GELU.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the tanh approximation of GELU.
const GELU_CUBIC: f64 = 0.044_715;

macro_rules! unary_table {
    ($(
        $(#[$doc:meta])*
        $v:ident $({ $($(#[$fdoc:meta])* $f:ident),* })? = $name:literal,
        needs |$na:ident, $nb:ident| $needs:expr,
        fwd |$x:ident, $a:ident, $b:ident| $fwd:expr,
        bwd |$g:ident, $s:ident, $ba:ident, $bb:ident| $bwd:expr,
        wgsl $wf:literal, $wb:literal;
    )*) => {
        /// A unary op and its scalar parameters (one row of the elementwise table).
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum UnaryOp {
            $(
                $(#[$doc])*
                $v $({ $($(#[$fdoc])* $f: f64),* })?,
            )*
        }

        impl UnaryOp {
            /// Every row of the table, with its parameters at placeholder values.
            pub(crate) const ROWS: &'static [UnaryOp] = &[
                $(UnaryOp::$v $({ $($f: 1.0),* })?),*
            ];

            /// The op's name (its kernels are `<name>_fwd` and `<name>_bwd`).
            pub fn name(self) -> &'static str {
                match self {
                    $(UnaryOp::$v $({ $($f: _),* })? => $name),*
                }
            }

            /// The op's code in the generated WGSL (`OP_<NAME>`); 0 is the identity.
            pub(crate) fn code(self) -> u32 {
                // The variant's position in the table: a comparison of discriminants (no
                // strings) per launch.
                let d = std::mem::discriminant(&self);
                let at = Self::ROWS.iter().position(|r| std::mem::discriminant(r) == d);
                1 + at.expect("every variant is a row") as u32
            }

            /// The scalar parameters `a` and `b` of the row (0 where unused).
            pub(crate) fn scalars(self) -> [f64; 2] {
                match self {
                    $(UnaryOp::$v $({ $($f),* })? => {
                        let v: &[f64] = &[$($($f),*)?];
                        [v.first().copied().unwrap_or(0.0), v.get(1).copied().unwrap_or(0.0)]
                    }),*
                }
            }

            /// Which value the backward reads.
            pub fn needs(self) -> Needs {
                match self {
                    $(UnaryOp::$v $({ $($f: _),* })? => {
                        #[allow(unused_imports)]
                        use Needs::*;
                        let [$na, $nb] = self.scalars();
                        let _ = ($na, $nb);
                        $needs
                    }),*
                }
            }

            /// Runs `m` with this row's forward as a closure: each row monomorphises
            /// `m`'s loop (the match is outside the loop, so simple rows vectorise).
            pub(crate) fn map_forward<T: Float, M: MapForward<T>>(self, m: M) -> M::Out {
                let [a, b] = self.scalars();
                let (a, b) = (T::from_f64(a), T::from_f64(b));
                match self {
                    $(UnaryOp::$v $({ $($f: _),* })? => {
                        #[allow(unused_variables)]
                        let f = |$x: T, $a: T, $b: T| -> T { $fwd };
                        m.run(move |x| f(x, a, b))
                    }),*
                }
            }

            /// Runs `m` with this row's backward `(g, s) -> dL/dx` as a closure.
            pub(crate) fn map_backward<T: Float, M: MapBackward<T>>(self, m: M) -> M::Out {
                let [a, b] = self.scalars();
                let (a, b) = (T::from_f64(a), T::from_f64(b));
                match self {
                    $(UnaryOp::$v $({ $($f: _),* })? => {
                        #[allow(unused_variables)]
                        let f = |$g: T, $s: T, $ba: T, $bb: T| -> T { $bwd };
                        m.run(move |g, s| f(g, s, a, b))
                    }),*
                }
            }
        }

        /// Each row's name and WGSL forward and backward bodies, in code order.
        const WGSL_ROWS: &[(&str, &str, &str)] = &[$(($name, $wf, $wb)),*];
    };
}

unary_table! {
    /// -x
    Neg = "neg",
        needs |a, b| Nothing,
        fwd |x, a, b| -x,
        bwd |g, s, a, b| -g,
        wgsl "return -x;", "return -g;";
    /// e^x
    Exp = "exp",
        needs |a, b| Output,
        fwd |x, a, b| x.exp(),
        bwd |g, s, a, b| g * s,
        wgsl "return exp(x);", "return g * s;";
    /// ln x
    Log = "log",
        needs |a, b| Input,
        fwd |x, a, b| x.ln(),
        bwd |g, s, a, b| g / s,
        wgsl "return log(x);", "return g / s;";
    /// sqrt x
    Sqrt = "sqrt",
        needs |a, b| Output,
        fwd |x, a, b| x.sqrt(),
        bwd |g, s, a, b| g / (T::from_f64(2.0) * s),
        wgsl "return sqrt(x);", "return g / (2.0 * s);";
    /// |x| (gradient 0 at 0)
    Abs = "abs",
        needs |a, b| Input,
        fwd |x, a, b| x.abs(),
        bwd |g, s, a, b| if s > T::zero() { g } else if s < T::zero() { -g } else { T::zero() },
        wgsl "return abs(x);", "return select(select(0.0, -g, s < 0.0), g, s > 0.0);";
    /// 1 / (1 + e^-x); its gradient `sigma (1 - sigma)` comes from the saved output.
    Sigmoid = "sigmoid",
        needs |a, b| Output,
        fwd |x, a, b| sigmoid(x),
        bwd |g, s, a, b| g * s * (T::one() - s),
        wgsl "return sigmoid_f(x);", "return g * s * (1.0 - s);";
    /// tanh x
    Tanh = "tanh",
        needs |a, b| Output,
        fwd |x, a, b| x.tanh(),
        bwd |g, s, a, b| g * (T::one() - s * s),
        wgsl "return tanh_f32(x);", "return g * (1.0 - s * s);";
    /// max(x, 0), NaN kept; the gradient is 0 where the output is <= 0, so a NaN input
    /// passes it (PyTorch's threshold_backward).
    Relu = "relu",
        needs |a, b| Output,
        fwd |x, a, b| x.relu(),
        bwd |g, s, a, b| if s <= T::zero() { T::zero() } else { g },
        wgsl "return relu_f(x);", "return select(g, 0.0, s <= 0.0);";
    /// x for x > 0, else slope * x. With a non-negative slope the output's sign tells
    /// the input's, so the backward reads the output; a negative slope reads the input.
    LeakyRelu {
        /// The negative slope.
        slope
    } = "leaky_relu",
        needs |a, b| if a >= 0.0 { Output } else { Input },
        fwd |x, a, b| if x > T::zero() { x } else { a * x },
        bwd |g, s, a, b| if s > T::zero() { g } else { a * g },
        wgsl "return select(a * x, x, x > 0.0);", "return select(a * g, g, s > 0.0);";
    /// ln(1 + e^(beta x)) / beta, linear above `threshold` (PyTorch's Softplus).
    Softplus {
        /// Sharpness.
        beta,
        /// Where the function switches to the identity.
        threshold
    } = "softplus",
        needs |a, b| Input,
        fwd |x, a, b| if a * x > b { x } else { softplus_z(a * x) / a },
        bwd |g, s, a, b| if a * s > b { g } else { g * sigmoid(a * s) },
        wgsl "let z = a * x; if (z > b) { return x; } return softplus_z(z) / a;",
             "let z = a * s; return select(g * sigmoid_f(z), g, z > b);";
    /// x^e for a scalar exponent e (PyTorch's `x.pow(e)`): NaN for a negative x with a
    /// non-integer e, `(-2)^3 = -8`, `x^0 = 1` everywhere; the gradient is
    /// `e x^(e - 1)`, and 0 everywhere for `e = 0`. WGSL's `pow` is undefined for a
    /// negative or zero base, so the kernel multiplies out integer exponents (`pow_e`).
    PowScalar {
        /// The exponent.
        exponent
    } = "pow_scalar",
        needs |a, b| Input,
        fwd |x, a, b| x.powf(a),
        bwd |g, s, a, b| if a == T::zero() { T::zero() } else { g * a * s.powf(a - T::one()) },
        wgsl "return pow_e(x, a);", "return select(g * a * pow_e(s, a - 1.0), 0.0, a == 0.0);";
    /// scale * x + shift
    Affine {
        /// Multiplier.
        scale,
        /// Offset.
        shift
    } = "affine",
        needs |a, b| Nothing,
        fwd |x, a, b| a * x + b,
        bwd |g, s, a, b| a * g,
        wgsl "return a * x + b;", "return a * g;";
    /// GELU, exact: `x Phi(x)` with `Phi` the standard normal CDF, computed as
    /// `erfc(-x / sqrt 2) / 2` (no cancellation for negative x). PyTorch's
    /// `gelu(x, approximate='none')`. The CPU's `f32` uses a fast vectorised fit
    /// within 2e-7 of exact (`backend::cpu::gelu`), its `f64` libm's `erfc`.
    Gelu = "gelu",
        needs |a, b| Input,
        fwd |x, a, b| x.gelu(),
        bwd |g, s, a, b| g * s.gelu_slope(),
        wgsl "return x * 0.5 * erfc_f(-x * 0.70710678);",
             "let cdf = 0.5 * erfc_f(-s * 0.70710678); \
              return g * (cdf + s * exp(-0.5 * s * s) * 0.39894228);";
    /// GELU, tanh approximation: `x (1 + tanh(u)) / 2` with
    /// `u = sqrt(2 / pi) (x + 0.044715 x^3)`, computed as `x sigmoid(2 u)`. PyTorch's
    /// `gelu(x, approximate='tanh')`.
    GeluTanh = "gelu_tanh",
        needs |a, b| Input,
        fwd |x, a, b| {
            let u = T::from_f64(SQRT_2_OVER_PI) * (x + T::from_f64(GELU_CUBIC) * x * x * x);
            x * sigmoid(u + u)
        },
        bwd |g, s, a, b| {
            let c = T::from_f64(SQRT_2_OVER_PI);
            let u = c * (s + T::from_f64(GELU_CUBIC) * s * s * s);
            let p = sigmoid(u + u);
            let t = p * (T::one() - p);
            let du = c * (T::one() + T::from_f64(3.0 * GELU_CUBIC) * s * s);
            // t is exactly 0 where p saturates; the term is then 0 (not 0 * inf).
            let slope = if t == T::zero() { T::zero() } else { s * t * T::from_f64(2.0) * du };
            g * (p + slope)
        },
        wgsl "let u = 0.79788456 * (x + 0.044715 * x * x * x); return x * sigmoid_f(u + u);",
             "let u = 0.79788456 * (s + 0.044715 * s * s * s); \
              let p = sigmoid_f(u + u); let t = p * (1.0 - p); \
              let du = 0.79788456 * (1.0 + 0.134145 * s * s); \
              return g * (p + select(s * t * 2.0 * du, 0.0, t == 0.0));";
    /// SiLU (swish): `x sigmoid(x)`.
    Silu = "silu",
        needs |a, b| Input,
        fwd |x, a, b| x * sigmoid(x),
        bwd |g, s, a, b| {
            let p = sigmoid(s);
            g * (p * (T::one() + s * (T::one() - p)))
        },
        wgsl "return x * sigmoid_f(x);",
             "let p = sigmoid_f(s); return g * (p * (1.0 + s * (1.0 - p)));";
    /// Mish: `x tanh(softplus(x))`.
    Mish = "mish",
        needs |a, b| Input,
        fwd |x, a, b| x * softplus_z(x).tanh(),
        bwd |g, s, a, b| {
            let t = softplus_z(s).tanh();
            g * (t + s * (T::one() - t * t) * sigmoid(s))
        },
        wgsl "return x * tanh_f32(softplus_z(x));",
             "let t = tanh_f32(softplus_z(s)); return g * (t + s * (1.0 - t * t) * sigmoid_f(s));";
}

/// The WGSL of the rows whose codes `keep` allows: per row a `const OP_<NAME>`,
/// `op_<name>_fwd(x, a, b)` and `op_<name>_bwd(g, s, a, b)`; then `ew_fwd(code, x, a, b)`
/// and `ew_bwd(code, g, s, a, b)`, which switch over those codes (0, and any code not
/// listed, is the identity).
fn wgsl_rows(keep: impl Fn(u32) -> bool) -> String {
    let mut s = String::from(
        "// ---- Generated from the elementwise table (src/backend/elementwise/mod.rs) ----\n",
    );
    let rows: Vec<(u32, &str, &str, &str)> = WGSL_ROWS
        .iter()
        .enumerate()
        .map(|(i, &(name, fwd, bwd))| (i as u32 + 1, name, fwd, bwd))
        .filter(|r| keep(r.0))
        .collect();
    for (code, name, fwd, bwd) in &rows {
        s += &format!(
            "const OP_{upper}: u32 = {code}u;\n\
             fn op_{name}_fwd(x: f32, a: f32, b: f32) -> f32 {{ {fwd} }}\n\
             fn op_{name}_bwd(g: f32, s: f32, a: f32, b: f32) -> f32 {{ {bwd} }}\n",
            upper = name.to_uppercase(),
        );
    }
    let cases = |call: &str| -> String {
        rows.iter()
            .map(|(_, name, _, _)| {
                format!(
                    "        case OP_{}: {{ return op_{name}_{call}; }}\n",
                    name.to_uppercase()
                )
            })
            .collect()
    };
    s += "fn ew_fwd(code: u32, x: f32, a: f32, b: f32) -> f32 {\n    switch code {\n";
    s += &cases("fwd(x, a, b)");
    s += "        default: { return x; }\n    }\n}\n";
    s += "fn ew_bwd(code: u32, g: f32, s: f32, a: f32, b: f32) -> f32 {\n    switch code {\n";
    s += &cases("bwd(g, s, a, b)");
    s += "        default: { return g; }\n    }\n}\n";
    s
}

/// Every row's WGSL ([`wgsl_rows`]).
pub(crate) fn wgsl_functions() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| wgsl_rows(|_| true))
}

/// The rows a fused product variant applies, from its `EPI` override (the prologue's
/// code in bits 8-15, the epilogue's in bits 16-23): its pipeline then compiles one or
/// two activations, not a switch over the whole table at every load and store.
pub(crate) fn wgsl_for_epilogue(k: &Kernel, overrides: &[u32; 6]) -> String {
    let epi = k
        .overrides
        .iter()
        .position(|&n| n == "EPI")
        .map_or(0, |i| overrides[i]);
    let (pro, act) = ((epi >> 8) & 255, (epi >> 16) & 255);
    wgsl_rows(|code| code == pro || code == act)
}

/// [`wgsl_functions`] and the unary kernels `<name>_fwd` (`y0 = op(x0)`) and
/// `<name>_bwd` (`y0 = dL/dx` from the saved value `x0` and the output gradient `x1`),
/// one pair per row, with the parameters `up` (`UnaryParams`: n and the row's scalars).
pub(crate) fn wgsl_with_kernels() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let head = "@compute @workgroup_size(256)\nfn";
        let args = "(@builtin(global_invocation_id) gid: vec3<u32>, \
                    @builtin(num_workgroups) nwg: vec3<u32>) {\n    \
                    let i = flat_id(gid, nwg);\n    if (i >= up.n) { return; }\n";
        let mut s = String::from(wgsl_functions());
        for op in UnaryOp::ROWS {
            let name = op.name();
            s += &format!(
                "{head} {name}_fwd{args}    y0[i] = op_{name}_fwd(x0[i], up.a, up.b);\n}}\n\n\
                 {head} {name}_bwd{args}    y0[i] = op_{name}_bwd(x1[i], x0[i], up.a, up.b);\n}}\n\n"
            );
        }
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_follow_the_rows() {
        for (i, op) in UnaryOp::ROWS.iter().enumerate() {
            assert_eq!(op.code(), i as u32 + 1, "{}", op.name());
            assert!(wgsl_functions().contains(&format!(
                "const OP_{}: u32 = {}u;",
                op.name().to_uppercase(),
                i + 1
            )));
        }
    }

    #[test]
    fn gelu_matches_the_normal_cdf() {
        // Phi(1) = 0.841344746068543, Phi(-3) = 0.0013498980316301.
        let g = UnaryOp::Gelu;
        assert!((g.forward_one(1.0f64) - 0.841_344_746_068_543).abs() < 1e-15);
        assert!((g.forward_one(-3.0f64) + 3.0 * 0.001_349_898_031_630_1).abs() < 1e-15);
        // No cancellation far out: x Phi(x) at x = -10 is -7.62e-23.
        let far = g.forward_one(-10.0f32);
        assert!((far / -7.619_853e-23 - 1.0).abs() < 1e-5, "{far}");
    }

    #[test]
    fn tanh_gelu_matches_the_formula() {
        for &x in &[-4.0f64, -1.0, -0.1, 0.0, 0.3, 2.0, 5.0] {
            let u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
            let want = 0.5 * x * (1.0 + u.tanh());
            let got = UnaryOp::GeluTanh.forward_one(x);
            assert!((got - want).abs() < 1e-14, "{x}: {got} vs {want}");
        }
    }
}

/// The channel layout of a parametric ReLU over `n` elements: the slope of element `i`
/// is `slopes[(i / plane) % channels]`, or the only one when `slopes` is 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreluGeo {
    /// Elements.
    pub n: usize,
    /// Channels (the input's dimension 1, or 1).
    pub channels: usize,
    /// Elements per channel plane.
    pub plane: usize,
    /// Slopes: 1 or `channels`.
    pub slopes: usize,
}
