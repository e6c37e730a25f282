//! In-place updates (`add_`, `sub_`, `mul_`, `div_`, `add_scaled_`, `addcmul_`,
//! `addcdiv_`, `mul_scalar_`, `div_scalar_`, `add_scalar_`, `sqrt_`, `lerp_`,
//! `maximum_`, `copy_`) against plain Rust arithmetic on both devices, with
//! broadcasting, aliasing, empty tensors, `f64`, threads, the GPU's binding limit and
//! every error; one dispatch per update on the GPU; and custom optimizers written with
//! them: a momentum SGD that implements only `step`, `params`, `lr` and `set_lr` (the
//! checkpoint defaults), and PyTorch's single-tensor Adam against the built-in `Adam`.

mod common;

use common::{assert_close, vec_f32};
use wgrad::optim::{Optimizer, OptimizerState, Scalar};
use wgrad::prelude::*;
use wgrad::Error;

fn t(v: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, dev).unwrap()
}

const X: [f32; 6] = [1.0, -2.0, 3.0, 0.5, -4.0, 2.5];
const Y: [f32; 6] = [0.5, 2.0, -1.5, 4.0, 1.0, -0.25];
const Z: [f32; 6] = [2.0, -0.5, 1.5, 3.0, -2.5, 4.0];
const ROW: [f32; 3] = [10.0, -1.0, 0.5];

/// `f(x[i], y[i])` elementwise, `y` broadcast as a row of 3 when it has 3 elements.
fn want2(y: &[f32], f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    (0..6).map(|i| f(X[i], y[i % y.len()])).collect()
}

common::test_device!(binary_updates_cpu, binary_updates_gpu, |dev| {
    type Op = fn(&Tensor, &Tensor) -> wgrad::Result<()>;
    type Want = fn(f32, f32) -> f32;
    let cases: [(&str, Op, Want); 6] = [
        (
            "add_scaled_ 1",
            |a, b| a.add_scaled_(b, 1.0).map(|_| ()),
            |x, y| x + y,
        ),
        (
            "add_scaled_ -1",
            |a, b| a.add_scaled_(b, -1.0).map(|_| ()),
            |x, y| x - y,
        ),
        ("add_", |a, b| a.add_(b).map(|_| ()), |x, y| x + y),
        ("sub_", |a, b| a.sub_(b).map(|_| ()), |x, y| x - y),
        ("mul_", |a, b| a.mul_(b).map(|_| ()), |x, y| x * y),
        (
            "add_scaled_",
            |a, b| a.add_scaled_(b, -0.75).map(|_| ()),
            |x, y| x - 0.75 * y,
        ),
    ];
    for (name, op, f) in cases {
        for (other, shape) in [(&Y[..], &[2, 3][..]), (&ROW[..], &[3][..])] {
            let x = t(&X, &[2, 3], &dev);
            let handle = x.clone();
            op(&x, &t(other, shape, &dev)).unwrap();
            assert_eq!(x.shape(), &[2, 3]);
            // Written into the storage every handle shares.
            assert_close(&vec_f32(&handle), &want2(other, f), 1e-6, 1e-6, name);
        }
    }
});

common::test_device!(
    ternary_and_scalar_updates_cpu,
    ternary_and_scalar_updates_gpu,
    |dev| {
        let x = t(&X, &[2, 3], &dev);
        x.addcmul_(&t(&Y, &[2, 3], &dev), &t(&ROW, &[3], &dev), 0.5)
            .unwrap();
        let want: Vec<f32> = (0..6).map(|i| X[i] + 0.5 * Y[i] * ROW[i % 3]).collect();
        assert_close(&vec_f32(&x), &want, 1e-6, 1e-6, "addcmul_");

        let x = t(&X, &[2, 3], &dev);
        x.addcdiv_(&t(&Y, &[2, 3], &dev), &t(&Z, &[2, 3], &dev), -2.0)
            .unwrap();
        let want: Vec<f32> = (0..6).map(|i| X[i] - 2.0 * Y[i] / Z[i]).collect();
        assert_close(&vec_f32(&x), &want, 1e-6, 1e-6, "addcdiv_");

        let x = t(&X, &[2, 3], &dev);
        x.addcdiv_(&t(&Y, &[2, 3], &dev), &t(&Z, &[2, 3], &dev), -1.0)
            .unwrap();
        let want: Vec<f32> = (0..6).map(|i| X[i] - Y[i] / Z[i]).collect();
        assert_close(&vec_f32(&x), &want, 1e-6, 1e-6, "addcdiv_ -1");

        let x = t(&X, &[2, 3], &dev);
        x.mul_scalar_(-3.0)
            .unwrap()
            .add_(&t(&[1.0], &[1], &dev))
            .unwrap();
        let want: Vec<f32> = X.iter().map(|v| v * -3.0 + 1.0).collect();
        assert_close(&vec_f32(&x), &want, 1e-6, 1e-6, "mul_scalar_ then add_");

        let x = t(&X, &[2, 3], &dev);
        x.copy_(&t(&ROW, &[3], &dev)).unwrap();
        let want: Vec<f32> = (0..6).map(|i| ROW[i % 3]).collect();
        assert_eq!(vec_f32(&x), want, "copy_ broadcasts");
    }
);

common::test_device!(aliased_operands_cpu, aliased_operands_gpu, |dev| {
    let x = t(&X, &[2, 3], &dev);
    x.add_(&x.clone()).unwrap();
    let want: Vec<f32> = X.iter().map(|v| 2.0 * v).collect();
    assert_eq!(vec_f32(&x), want, "x.add_(x) doubles");
    let x = t(&X, &[2, 3], &dev);
    x.addcmul_(&x, &x, 1.0).unwrap();
    let want: Vec<f32> = X.iter().map(|v| v + v * v).collect();
    assert_close(&vec_f32(&x), &want, 1e-6, 1e-6, "x.addcmul_(x, x)");
    // A view sharing x's storage reads the values before the update.
    let x = t(&X, &[2, 3], &dev);
    x.sub_(&x.reshape(&[6]).unwrap().reshape(&[2, 3]).unwrap())
        .unwrap();
    assert_eq!(vec_f32(&x), vec![0.0; 6]);
});

common::test_device!(errors_cpu, errors_gpu, |dev| {
    let x = t(&X, &[2, 3], &dev);
    // Broadcasting never grows self.
    let small = t(&ROW, &[3], &dev);
    let err = small.add_(&x).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "add_", .. }), "{err}");
    let err = x.mul_(&t(&[1.0, 2.0], &[2], &dev)).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let err = x
        .addcmul_(&x, &t(&[1.0, 2.0], &[2], &dev), 1.0)
        .unwrap_err();
    assert!(matches!(err, Error::Shape { op: "addcmul_", .. }), "{err}");
    // Dtypes.
    let idx = Tensor::from_vec(vec![1u32; 6], &[2, 3], &dev).unwrap();
    assert!(matches!(x.add_(&idx).unwrap_err(), Error::DType { .. }));
    assert!(matches!(
        idx.mul_scalar_(2.0).unwrap_err(),
        Error::DType { .. }
    ));
    // Devices.
    let other = if dev.is_gpu() {
        Device::cpu()
    } else {
        common::gpu()
    };
    let err = x.sub_(&t(&X, &[2, 3], &other)).unwrap_err();
    assert!(matches!(err, Error::DeviceMismatch { .. }), "{err}");
    assert_eq!(vec_f32(&x), X.to_vec(), "failed updates change nothing");

    // A leaf that requires grad: only under no_grad.
    let w = t(&X, &[2, 3], &dev).requires_grad_(true).unwrap();
    let err = w.add_(&x).unwrap_err();
    assert!(matches!(err, Error::Autograd(_)), "{err}");
    assert!(err.to_string().contains("no_grad"), "{err}");
    assert_eq!(vec_f32(&w), X.to_vec());
    no_grad(|| w.add_(&x).map(|_| ())).unwrap();
    assert_eq!(vec_f32(&w), X.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    assert!(w.requires_grad() && w.grad_fn().is_none(), "still a leaf");
    // The output of a recorded op: never, not even under no_grad.
    let y = w.mul_scalar(2.0).unwrap();
    for r in [
        y.mul_scalar_(0.5).map(|_| ()),
        no_grad(|| y.mul_scalar_(0.5).map(|_| ())),
    ] {
        assert!(matches!(r.unwrap_err(), Error::Autograd(_)));
    }
    // A tensor that does not require grad needs no no_grad, even as an operand of one.
    x.add_scaled_(&w, 1.0).unwrap();
});

/// Momentum SGD written by hand: only `step`, `params`, `lr` and `set_lr`.
struct HandSgd {
    params: Vec<Tensor>,
    bufs: Vec<Tensor>,
    lr: f64,
    momentum: f64,
}

impl Optimizer for HandSgd {
    fn step(&mut self) -> wgrad::Result<()> {
        no_grad(|| {
            for (p, b) in self.params.iter().zip(&self.bufs) {
                if let Some(g) = p.grad() {
                    b.mul_scalar_(self.momentum)?.add_(&g)?;
                    p.add_scaled_(b, -self.lr)?;
                }
            }
            Ok(())
        })
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr
    }
}

common::test_device!(
    hand_written_optimizer_cpu,
    hand_written_optimizer_gpu,
    |dev| {
        let w = t(&X, &[2, 3], &dev).requires_grad_(true).unwrap();
        let mut opt = HandSgd {
            bufs: vec![w.zeros_like().unwrap()],
            params: vec![w.clone()],
            lr: 0.1,
            momentum: 0.9,
        };
        let mut sgd = Sgd::new(
            vec![t(&X, &[2, 3], &dev).requires_grad_(true).unwrap()],
            0.1,
        )
        .momentum(0.9);
        for _ in 0..3 {
            opt.zero_grad();
            w.mul(&w).unwrap().sum().unwrap().backward().unwrap();
            opt.step().unwrap();
            let p = sgd.params()[0].clone();
            sgd.zero_grad();
            p.mul(&p).unwrap().sum().unwrap().backward().unwrap();
            sgd.step().unwrap();
        }
        assert!(w.grad().is_some());
        opt.zero_grad();
        assert!(w.grad().is_none(), "the default zero_grad clears params()");
        let want = vec_f32(&sgd.params()[0]);
        assert_close(
            &vec_f32(&w),
            &want,
            1e-6,
            1e-5,
            "hand-written momentum SGD vs Sgd",
        );

        // The checkpoint defaults: an empty state, and only an empty one loads.
        let state = opt.state_dict();
        assert!(state.tensors.is_empty() && state.scalars.is_empty());
        opt.load_state_dict(&state).unwrap();
        let mut foreign = OptimizerState::default();
        foreign.scalar("param_groups.0.lr", Scalar::F64(0.5));
        foreign.tensor("state.0.momentum_buffer", w.zeros_like().unwrap());
        let err = opt.load_state_dict(&foreign).unwrap_err();
        assert!(matches!(err, Error::Argument { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("state.0.momentum_buffer") && msg.contains("param_groups.0.lr"),
            "{msg}"
        );
        assert_eq!(opt.lr(), 0.1, "a refused state changes nothing");
    }
);

/// `n` values in about [-3, 3] from a fixed sequence, shifted by `k`.
fn seq(n: usize, k: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.37 + k).sin() * 3.0).collect()
}

/// PyTorch's lerp: `d + w (e - d)` below a weight of 0.5, else `e - (e - d)(1 - w)`.
fn lerp(d: f32, e: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        d + w * (e - d)
    } else {
        e - (e - d) * (1.0 - w)
    }
}

common::test_device!(one_pass_updates_cpu, one_pass_updates_gpu, |dev| {
    type Op = fn(&Tensor, &Tensor) -> wgrad::Result<()>;
    type Want = fn(f32, f32) -> f32;
    let cases: [(&str, Op, Want); 4] = [
        ("div_", |a, b| a.div_(b).map(|_| ()), |x, y| x / y),
        (
            "lerp_ 0.25",
            |a, b| a.lerp_(b, 0.25).map(|_| ()),
            |x, y| lerp(x, y, 0.25),
        ),
        (
            "lerp_ 0.75",
            |a, b| a.lerp_(b, 0.75).map(|_| ()),
            |x, y| lerp(x, y, 0.75),
        ),
        ("maximum_", |a, b| a.maximum_(b).map(|_| ()), f32::max),
    ];
    for (name, op, f) in cases {
        for (other, shape) in [(&Z[..], &[2, 3][..]), (&ROW[..], &[3][..])] {
            let x = t(&X, &[2, 3], &dev);
            op(&x, &t(other, shape, &dev)).unwrap();
            assert_close(&vec_f32(&x), &want2(other, f), 1e-6, 1e-6, name);
        }
    }
    // lerp_ with weight 1 gives the end exactly; maximum_ keeps NaN from either side.
    let x = t(&X, &[2, 3], &dev);
    x.lerp_(&t(&Y, &[2, 3], &dev), 1.0).unwrap();
    assert_eq!(vec_f32(&x), Y.to_vec());
    let x = t(&[1.0, f32::NAN, 3.0], &[3], &dev);
    x.maximum_(&t(&[f32::NAN, 0.0, 2.0], &[3], &dev)).unwrap();
    let got = vec_f32(&x);
    assert!(
        got[0].is_nan() && got[1].is_nan() && got[2] == 3.0,
        "{got:?}"
    );

    // Scalars.
    let x = t(&X, &[2, 3], &dev);
    x.add_scalar_(1.5).unwrap().div_scalar_(4.0).unwrap();
    let want: Vec<f32> = X.iter().map(|v| (v + 1.5) / 4.0).collect();
    assert_close(&vec_f32(&x), &want, 1e-7, 1e-6, "add_scalar_ div_scalar_");
    let x = t(&X, &[2, 3], &dev);
    x.sqrt_().unwrap();
    for (got, v) in vec_f32(&x).iter().zip(X) {
        if v < 0.0 {
            assert!(got.is_nan(), "sqrt_ of {v}: {got}");
        } else {
            assert!(
                (got - v.sqrt()).abs() <= 1e-6 * v.sqrt(),
                "sqrt_ of {v}: {got}"
            );
        }
    }

    // Broadcasting over three dimensions: a column, a plane and a scalar tensor.
    let (x0, a0, b0) = (seq(3 * 65 * 7, 0.0), seq(65, 1.0), seq(3 * 7, 2.0));
    let x = t(&x0, &[3, 65, 7], &dev);
    x.addcmul_(&t(&a0, &[65, 1], &dev), &t(&b0, &[3, 1, 7], &dev), -0.5)
        .unwrap();
    let want: Vec<f32> = (0..x0.len())
        .map(|i| {
            let (p, r, c) = (i / (65 * 7), i / 7 % 65, i % 7);
            x0[i] + -0.5 * a0[r] * b0[p * 7 + c]
        })
        .collect();
    assert_close(&vec_f32(&x), &want, 1e-6, 1e-6, "addcmul_ [65,1] x [3,1,7]");
    let x = t(&x0, &[3, 65, 7], &dev);
    let s = Tensor::from_vec(vec![2.5f32], &[], &dev).unwrap();
    x.addcdiv_(&t(&b0, &[3, 1, 7], &dev), &s, 2.0).unwrap();
    let want: Vec<f32> = (0..x0.len())
        .map(|i| x0[i] + 2.0 * b0[i / (65 * 7) * 7 + i % 7] / 2.5)
        .collect();
    assert_close(
        &vec_f32(&x),
        &want,
        1e-6,
        1e-6,
        "addcdiv_ by a scalar tensor",
    );
});

common::test_device!(aliased_new_updates_cpu, aliased_new_updates_gpu, |dev| {
    type Op = fn(&Tensor, &Tensor) -> wgrad::Result<()>;
    type Want = fn(f32, f32) -> f32;
    // x op x (the operand is x itself, or a view sharing its storage), with the values
    // before the update; and with one operand x and the other y.
    let cases: [(&str, Op, Want); 9] = [
        ("x.mul_(x)", |x, _| x.mul_(x).map(|_| ()), |v, _| v * v),
        ("x.div_(x)", |x, _| x.div_(x).map(|_| ()), |v, _| v / v),
        ("x.lerp_(x)", |x, _| x.lerp_(x, 0.3).map(|_| ()), |v, _| v),
        (
            "x.maximum_(view)",
            |x, _| x.maximum_(&x.detach()).map(|_| ()),
            |v, _| v,
        ),
        ("x.copy_(x)", |x, _| x.copy_(x).map(|_| ()), |v, _| v),
        (
            "x.addcmul_(x, y)",
            |x, y| x.addcmul_(x, y, 0.5).map(|_| ()),
            |v, w| v + 0.5 * v * w,
        ),
        (
            "x.addcdiv_(y, x)",
            |x, y| x.addcdiv_(y, x, 2.0).map(|_| ()),
            |v, w| v + 2.0 * w / v,
        ),
        (
            "x.addcmul_(y, y)",
            |x, y| x.addcmul_(y, y, -1.0).map(|_| ()),
            |v, w| v - w * w,
        ),
        (
            "x.addcdiv_(x, x)",
            |x, _| x.addcdiv_(x, x, 3.0).map(|_| ()),
            |v, _| v + 3.0 * v / v,
        ),
    ];
    for (name, op, f) in cases {
        let x = t(&X, &[2, 3], &dev);
        op(&x, &t(&Y, &[2, 3], &dev)).unwrap();
        assert_close(&vec_f32(&x), &want2(&Y, f), 1e-6, 1e-6, name);
    }
});

common::test_device!(empty_updates_cpu, empty_updates_gpu, |dev| {
    for (shape, other) in [
        (&[0, 3][..], &[3][..]),
        (&[0][..], &[1][..]),
        (&[2, 0][..], &[2, 1][..]),
    ] {
        let x = Tensor::zeros(shape, &dev).unwrap();
        let o = Tensor::ones(other, &dev).unwrap();
        x.add_(&o).unwrap().addcmul_(&o, &o, 2.0).unwrap();
        x.lerp_(&o, 0.5)
            .unwrap()
            .maximum_(&o)
            .unwrap()
            .copy_(&o)
            .unwrap();
        x.sqrt_()
            .unwrap()
            .mul_scalar_(2.0)
            .unwrap()
            .add_scalar_(1.0)
            .unwrap();
        assert_eq!(x.shape(), shape);
        assert!(vec_f32(&x).is_empty());
    }
    // An empty operand does not broadcast to a non-empty tensor.
    let x = t(&X, &[2, 3], &dev);
    let err = x.add_(&Tensor::zeros(&[0, 3], &dev).unwrap()).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
});

common::test_device!(new_update_errors_cpu, new_update_errors_gpu, |dev| {
    let x = t(&X, &[2, 3], &dev);
    let big = t(&[0.0; 12], &[2, 2, 3], &dev);
    let err = x.lerp_(&big, 0.5).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "lerp_", .. }), "{err}");
    let err = x.maximum_(&t(&[1.0, 2.0], &[2], &dev)).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "maximum_", .. }), "{err}");
    let idx = Tensor::from_vec(vec![1u32; 6], &[2, 3], &dev).unwrap();
    for r in [
        idx.sqrt_().map(|_| ()),
        idx.add_scalar_(1.0).map(|_| ()),
        idx.div_(&idx).map(|_| ()),
        x.div_(&idx).map(|_| ()),
    ] {
        assert!(matches!(r.unwrap_err(), Error::DType { .. }));
    }
    let w = t(&X, &[2, 3], &dev).requires_grad_(true).unwrap();
    for r in [
        w.sqrt_().map(|_| ()),
        w.lerp_(&x, 0.5).map(|_| ()),
        w.div_scalar_(2.0).map(|_| ()),
    ] {
        assert!(matches!(r.unwrap_err(), Error::Autograd(_)));
    }
    let y = w.mul(&w).unwrap();
    let err = no_grad(|| y.add_scalar_(1.0).map(|_| ())).unwrap_err();
    assert!(matches!(err, Error::Autograd(_)), "{err}");
    assert_eq!(vec_f32(&x), X.to_vec(), "failed updates change nothing");
    assert_eq!(vec_f32(&w), X.to_vec());
});

/// Each update is one dispatch of one of the three in-place kernels, whatever aliases.
#[test]
fn one_dispatch_per_update_gpu() {
    let dev = common::gpu();
    let x = t(&X, &[2, 3], &dev);
    let (y, row) = (t(&Y, &[2, 3], &dev), t(&ROW, &[3], &dev));
    dev.sync().unwrap();
    let ((), profile) = dev
        .profile(|| {
            x.addcmul_(&y, &row, 0.5).unwrap();
            x.addcmul_(&y, &y, 0.5).unwrap();
            x.lerp_(&row, 0.1).unwrap();
            x.addcdiv_(&x, &row, 0.5).unwrap();
            x.mul_scalar_(0.9).unwrap();
            x.mul_(&x).unwrap();
            x.sqrt_().unwrap();
        })
        .unwrap();
    let kernels: Vec<&str> = profile
        .dispatches
        .iter()
        .map(|d| d.kernel.as_str())
        .collect();
    assert_eq!(
        kernels,
        [
            "inplace2_step",
            "inplace2_step",
            "inplace1_step",
            "inplace1_step",
            "inplace0_step",
            "inplace0_step",
            "inplace0_step"
        ]
    );
}

/// `f64` tensors on the CPU, and a tensor large enough for the loop to use threads
/// (with a row and a column operand: the parts start mid-row).
#[test]
fn f64_and_threaded_updates_cpu() {
    let dev = Device::cpu();
    let x = Tensor::from_vec(vec![1.0f64, 4.0, 9.0], &[3], &dev).unwrap();
    let e = Tensor::from_vec(vec![3.0f64], &[1], &dev).unwrap();
    x.sqrt_()
        .unwrap()
        .lerp_(&e, 0.5)
        .unwrap()
        .div_scalar_(3.0)
        .unwrap();
    let got = x.to_vec::<f64>().unwrap();
    let want: Vec<f64> = [1.0f64, 2.0, 3.0]
        .iter()
        .map(|v| (v + 0.5 * (3.0 - v)) / 3.0)
        .collect();
    assert_eq!(got, want);

    let (rows, cols) = (1031, 2053);
    let (x0, a0, b0) = (seq(rows * cols, 0.0), seq(cols, 1.0), seq(rows, 2.0));
    let x = t(&x0, &[rows, cols], &dev);
    x.addcmul_(&t(&a0, &[cols], &dev), &t(&b0, &[rows, 1], &dev), 0.25)
        .unwrap();
    let got = vec_f32(&x);
    for i in (0..x0.len()).step_by(997).chain([x0.len() - 1]) {
        let want = x0[i] + 0.25 * a0[i % cols] * b0[i / cols];
        assert!(
            (got[i] - want).abs() <= 1e-6 + 1e-6 * want.abs(),
            "{i}: {} vs {want}",
            got[i]
        );
    }
}

/// Past the GPU's binding limit (capped at 1 MiB here) an update runs as the ordinary
/// ops, which cut their work, and a copy: the same values.
#[test]
fn updates_past_the_binding_limit_gpu() {
    let dev = Device::gpu_with(wgrad::GpuOptions {
        max_binding: Some(1 << 20),
        ..wgrad::GpuOptions::from_env()
    })
    .unwrap();
    let (rows, cols) = (600, 500);
    let (x0, a0, b0) = (seq(rows * cols, 0.0), seq(cols, 1.0), seq(rows * cols, 2.0));
    let x = t(&x0, &[rows, cols], &dev);
    let (a, b) = (t(&a0, &[cols], &dev), t(&b0, &[rows, cols], &dev));
    x.addcmul_(&a, &b, 0.5).unwrap().lerp_(&a, 0.75).unwrap();
    x.add_scalar_(4.0)
        .unwrap()
        .sqrt_()
        .unwrap()
        .maximum_(&b)
        .unwrap();
    x.add_(&x.detach()).unwrap();
    let got = vec_f32(&x);
    for i in (0..x0.len()).step_by(101).chain([x0.len() - 1]) {
        let (ai, bi) = (a0[i % cols], b0[i]);
        let v = lerp(x0[i] + 0.5 * ai * bi, ai, 0.75);
        let want = 2.0 * (v + 4.0).sqrt().max(bi);
        assert!(
            (got[i] - want).abs() <= 1e-5 + 1e-5 * want.abs(),
            "{i}: {} vs {want}",
            got[i]
        );
    }
}

/// PyTorch's `_single_tensor_adam` (no weight decay, no amsgrad) with in-place ops.
struct HandAdam {
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    t: i32,
}

impl Optimizer for HandAdam {
    fn step(&mut self) -> wgrad::Result<()> {
        self.t += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2_sqrt = (1.0 - b2.powi(self.t)).sqrt();
        let step_size = self.lr / bc1;
        no_grad(|| {
            for ((p, m), v) in self.params.iter().zip(&self.m).zip(&self.v) {
                let Some(g) = p.grad() else { continue };
                m.lerp_(&g, 1.0 - b1)?;
                v.mul_scalar_(b2)?.addcmul_(&g, &g, 1.0 - b2)?;
                let denom = v.sqrt()?;
                denom.div_scalar_(bc2_sqrt)?.add_scalar_(self.eps)?;
                p.addcdiv_(m, &denom, -step_size)?;
            }
            Ok(())
        })
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr
    }
}

common::test_device!(hand_written_adam_cpu, hand_written_adam_gpu, |dev| {
    let shapes: [&[usize]; 3] = [&[3, 65], &[65], &[7]];
    let make = || -> Vec<Tensor> {
        shapes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let n = s.iter().product();
                t(&seq(n, k as f32), s, &dev).requires_grad_(true).unwrap()
            })
            .collect()
    };
    let (mine, theirs) = (make(), make());
    let mut hand = HandAdam {
        m: mine.iter().map(|p| p.zeros_like().unwrap()).collect(),
        v: mine.iter().map(|p| p.zeros_like().unwrap()).collect(),
        params: mine.clone(),
        lr: 0.01,
        betas: (0.9, 0.999),
        eps: 1e-8,
        t: 0,
    };
    let mut adam = Adam::new(theirs.clone(), 0.01);
    for step in 0..5 {
        for (ps, opt) in [
            (&mine, &mut hand as &mut dyn Optimizer),
            (&theirs, &mut adam),
        ] {
            opt.zero_grad();
            for (k, p) in ps.iter().enumerate() {
                // Gradients of different signs and sizes at every step.
                let w = t(&seq(p.numel(), (step * 3 + k) as f32), p.shape(), &dev);
                p.mul(&w).unwrap().sum().unwrap().backward().unwrap();
            }
            opt.step().unwrap();
        }
    }
    for ((a, b), start) in mine.iter().zip(&theirs).zip(make()) {
        assert_ne!(
            vec_f32(a),
            vec_f32(&start),
            "the steps moved the parameters"
        );
        assert_close(
            &vec_f32(a),
            &vec_f32(b),
            1e-6,
            1e-5,
            "hand-written Adam vs Adam",
        );
    }
});

/// Two threads updating each other's operands (`a += b` and `b += a`) take the locks in
/// one order: both finish.
#[test]
fn crossed_updates_on_two_threads_cpu() {
    let dev = Device::cpu();
    let a = t(&[1.0; 64], &[64], &dev);
    let b = t(&[1.0; 64], &[64], &dev);
    std::thread::scope(|s| {
        let (a1, b1) = (a.clone(), b.clone());
        s.spawn(move || {
            for _ in 0..5000 {
                a1.addcmul_(&b1, &b1, 1e-6).unwrap();
            }
        });
        for _ in 0..5000 {
            b.add_scaled_(&a, -1e-6).unwrap();
        }
    });
    assert!(vec_f32(&a)
        .iter()
        .chain(&vec_f32(&b))
        .all(|v| v.is_finite()));
}
