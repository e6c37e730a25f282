//! The optimizers' multi-tensor kernels ([`super::multi_tensor`]): each update's WGSL
//! arm, with its step-dependent values for plain and guarded steps.

use super::multi_tensor::{MultiSpec, Stepped, ELEMENTWISE};
use super::optim::{AdadeltaParams, AdagradParams, AdamParams, RmspropParams, SgdParams};
use super::params::Params;

/// No step-dependent values (SGD without momentum, RMSprop, Adadelta).
const UNSTEPPED: Option<Stepped> = Some(Stepped {
    plain: "",
    guarded: "",
});

/// SGD without momentum: `p -= lr (g + wd p)`.
pub(crate) static SGD: MultiSpec = MultiSpec {
    entry: "sgd_multi_step",
    params: &SgdParams::INFO,
    roles: &[("g", true), ("p", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: "            let p = $p[i];
            $p[i] = p - sgd.lr * ($g[i] + sgd.weight_decay * p);
",
    after: "",
    loops: false,
    stepped: UNSTEPPED,
};

/// SGD with momentum, as `torch.optim.SGD`.
pub(crate) static SGD_MOMENTUM: MultiSpec = MultiSpec {
    entry: "sgd_momentum_multi_step",
    params: &SgdParams::INFO,
    roles: &[("g", true), ("p", false), ("b", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: "            let p = $p[i];
            let g = $g[i] + sgd.weight_decay * p;
            let mom = sgd.momentum;
            var b = g;
            if (!first) {
                b = mom * $b[i] + (1.0 - sgd.dampening) * g;
            }
            $b[i] = b;
            let d = select(b, g + mom * b, sgd.nesterov == 1u);
            $p[i] = p - sgd.lr * d;
",
    after: "",
    loops: false,
    stepped: Some(Stepped {
        plain: "    let first = sgd.first == 1u;\n",
        guarded: "    let first = tstep == 1.0;\n",
    }),
};

/// Adam and AdamW, as PyTorch's.
pub(crate) static ADAM: MultiSpec = MultiSpec {
    entry: "adam_multi_step",
    params: &AdamParams::INFO,
    roles: &[("g", true), ("p", false), ("m", false), ("v", false)],
    shared: &[],
    decls: ONE_MINUS_POW,
    before: ELEMENTWISE,
    case: "            var p = $p[i];
            var g = $g[i];
            let lr = adam.lr;
            if (adam.decoupled == 1u) {
                p = p * (1.0 - lr * adam.weight_decay);
            } else {
                g = g + adam.weight_decay * p;
            }
            let m = adam.beta1 * $m[i] + (1.0 - adam.beta1) * g;
            let v = adam.beta2 * $v[i] + (1.0 - adam.beta2) * g * g;
            $m[i] = m;
            $v[i] = v;
            $p[i] = p - lr * (m / bc1) / (sqrt(v / bc2) + adam.eps);
",
    after: "",
    loops: false,
    stepped: Some(Stepped {
        plain: "    let bc1 = adam.bc1;\n    let bc2 = adam.bc2;\n",
        guarded: "    let bc1 = one_minus_pow(adam.lnb1, tstep);
    let bc2 = one_minus_pow(adam.lnb2, tstep);
",
    }),
};

/// `1 - beta^t` from `ln(beta)` and the step `t`, as `-expm1(t ln(beta))` (a series
/// near 0), so that early steps' corrections (`1 - 0.999` at t = 1) keep f32's
/// relative precision instead of losing it to the cancellation of `1 - pow(beta, t)`.
const ONE_MINUS_POW: &str = "
fn one_minus_pow(lnb: f32, t: f32) -> f32 {
    let x = t * lnb;
    if (x > -0.5) {
        var s = 1.0;
        for (var k = 12u; k >= 2u; k = k - 1u) {
            s = 1.0 + x / f32(k) * s;
        }
        return -x * s;
    }
    return 1.0 - exp(x);
}
";

/// Adagrad, as `torch.optim.Adagrad`: `s += g^2`, `p -= clr g / (sqrt(s) + eps)`.
pub(crate) static ADAGRAD: MultiSpec = MultiSpec {
    entry: "adagrad_multi_step",
    params: &AdagradParams::INFO,
    roles: &[("g", true), ("p", false), ("s", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: "            let p = $p[i];
            let g = $g[i] + adagrad.weight_decay * p;
            let s = $s[i] + g * g;
            $s[i] = s;
            $p[i] = p - clr * g / (sqrt(s) + adagrad.eps);
",
    after: "",
    loops: false,
    stepped: Some(Stepped {
        plain: "    let clr = adagrad.clr;\n",
        guarded: "    let clr = adagrad.clr / (1.0 + (tstep - 1.0) * adagrad.lr_decay);\n",
    }),
};

/// RMSprop's WGSL arm: the squared-gradient average, then the denominator (centered or
/// not), then the update (with a momentum buffer or not).
macro_rules! rmsprop_case {
    ($avg:expr, $update:expr) => {
        concat!(
            "            let p = $p[i];
            let g = $g[i] + rms.weight_decay * p;
            let v = rms.alpha * $sq[i] + (1.0 - rms.alpha) * g * g;
            $sq[i] = v;
",
            $avg,
            $update
        )
    };
}

/// RMSprop's plain denominator.
macro_rules! rms_plain {
    () => {
        "            let avg = sqrt(v) + rms.eps;\n"
    };
}

/// RMSprop's centered denominator: the variance, with the gradients' running mean.
macro_rules! rms_centered {
    () => {
        "            let a = rms.alpha * $gavg[i] + (1.0 - rms.alpha) * g;
            $gavg[i] = a;
            let avg = sqrt(v - a * a) + rms.eps;
"
    };
}

/// RMSprop's update without momentum.
macro_rules! rms_step {
    () => {
        "            $p[i] = p - rms.lr * g / avg;\n"
    };
}

/// RMSprop's update through the momentum buffer.
macro_rules! rms_momentum {
    () => {
        "            let b = rms.momentum * $buf[i] + g / avg;
            $buf[i] = b;
            $p[i] = p - rms.lr * b;
"
    };
}

/// RMSprop, as `torch.optim.RMSprop`, without momentum, not centered.
pub(crate) static RMSPROP: MultiSpec = MultiSpec {
    entry: "rmsprop_multi_step",
    params: &RmspropParams::INFO,
    roles: &[("g", true), ("p", false), ("sq", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: rmsprop_case!(rms_plain!(), rms_step!()),
    after: "",
    loops: false,
    stepped: UNSTEPPED,
};

/// RMSprop with momentum, not centered.
pub(crate) static RMSPROP_MOMENTUM: MultiSpec = MultiSpec {
    entry: "rmsprop_momentum_multi_step",
    params: &RmspropParams::INFO,
    roles: &[("g", true), ("p", false), ("sq", false), ("buf", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: rmsprop_case!(rms_plain!(), rms_momentum!()),
    after: "",
    loops: false,
    stepped: UNSTEPPED,
};

/// RMSprop centered, without momentum.
pub(crate) static RMSPROP_CENTERED: MultiSpec = MultiSpec {
    entry: "rmsprop_centered_multi_step",
    params: &RmspropParams::INFO,
    roles: &[("g", true), ("p", false), ("sq", false), ("gavg", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: rmsprop_case!(rms_centered!(), rms_step!()),
    after: "",
    loops: false,
    stepped: UNSTEPPED,
};

/// RMSprop centered, with momentum.
pub(crate) static RMSPROP_CENTERED_MOMENTUM: MultiSpec = MultiSpec {
    entry: "rmsprop_centered_momentum_multi_step",
    params: &RmspropParams::INFO,
    roles: &[
        ("g", true),
        ("p", false),
        ("sq", false),
        ("buf", false),
        ("gavg", false),
    ],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: rmsprop_case!(rms_centered!(), rms_momentum!()),
    after: "",
    loops: false,
    stepped: UNSTEPPED,
};

/// Adadelta, as `torch.optim.Adadelta`: `v = rho v + (1 - rho) g^2`,
/// `d = sqrt(u + eps) / sqrt(v + eps) g`, `u = rho u + (1 - rho) d^2`, `p -= lr d`.
pub(crate) static ADADELTA: MultiSpec = MultiSpec {
    entry: "adadelta_multi_step",
    params: &AdadeltaParams::INFO,
    roles: &[("g", true), ("p", false), ("sq", false), ("acc", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: "            let p = $p[i];
            let g = $g[i] + adadelta.weight_decay * p;
            let rho = adadelta.rho;
            let eps = adadelta.eps;
            let v = rho * $sq[i] + (1.0 - rho) * g * g;
            $sq[i] = v;
            let u = $acc[i];
            let d = sqrt(u + eps) / sqrt(v + eps) * g;
            $acc[i] = rho * u + (1.0 - rho) * d * d;
            $p[i] = p - adadelta.lr * d;
",
    after: "",
    loops: false,
    stepped: UNSTEPPED,
};
