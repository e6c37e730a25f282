//! In-place updates (`add_`, `sub_`, `mul_`, `add_scaled_`, `addcmul_`, `addcdiv_`,
//! `mul_scalar_`, `copy_`) against plain Rust arithmetic on both devices, with
//! broadcasting, aliasing and every error; and a custom optimizer written with them that
//! implements only `step`, `params`, `lr` and `set_lr` (the checkpoint defaults).

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
    lr: f32,
    momentum: f32,
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
        self.lr as f64
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr as f32
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
        assert_eq!(opt.lr() as f32, 0.1, "a refused state changes nothing");
    }
);
