//! Steps under a gradient scaler decided on the device (`Optimizer::step_guarded`):
//! every built-in optimizer follows, step for step, the same optimizer stepped only when
//! the host reads a clean flag, through overflowed first steps, parameters without a
//! gradient and parameters without elements; the step counts in its state match; its
//! state dict (counts as 0-d tensors) resumes exactly; and on the GPU a training step
//! under the scaler reads nothing back.

mod common;

use wgrad::amp::GradScaler;
use wgrad::optim::{Optimizer, OptimizerState, Scalar};
use wgrad::prelude::*;

type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;

/// Every built-in optimizer in its step-dependent configurations.
fn optimizers() -> Vec<(&'static str, Make)> {
    vec![
        ("sgd", |p| Box::new(Sgd::new(p, 0.05))),
        ("sgd momentum dampening", |p| {
            Box::new(Sgd::new(p, 0.05).momentum(0.9).dampening(0.3))
        }),
        ("sgd nesterov", |p| {
            Box::new(Sgd::new(p, 0.05).momentum(0.9).nesterov(true))
        }),
        ("adam", |p| Box::new(Adam::new(p, 0.01).weight_decay(0.1))),
        ("adamw", |p| Box::new(AdamW::new(p, 0.01))),
        ("adam beta1 0", |p| {
            Box::new(Adam::new(p, 0.01).betas(0.0, 0.99))
        }),
        ("adagrad", |p| Box::new(Adagrad::new(p, 0.1).lr_decay(0.05))),
        ("rmsprop centered momentum", |p| {
            Box::new(RMSprop::new(p, 0.01).momentum(0.5).centered(true))
        }),
        ("adadelta", |p| {
            Box::new(Adadelta::new(p, 1.0).weight_decay(0.01))
        }),
    ]
}

/// Parameters of several sizes, one of them without elements.
fn params(dev: &Device) -> Vec<Tensor> {
    [&[7usize][..], &[0], &[3, 5], &[1], &[300]]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Tensor::randn_seeded(s, 10 + i as u64, dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap()
        })
        .collect()
}

/// Step `k`'s scaled gradients (`sum(p^3) * scale`), poisoned with an infinity on the
/// overflowing steps, and none for the fourth parameter on step 2.
fn give_grads(ps: &[Tensor], scaler: &mut GradScaler, k: usize) {
    for p in ps {
        p.zero_grad();
    }
    let mut loss = Tensor::scalar(0.0, ps[0].device()).unwrap();
    for (i, p) in ps.iter().enumerate() {
        if !(k == 2 && i == 3) {
            loss = loss
                .add(&p.mul(p).unwrap().mul(p).unwrap().sum().unwrap())
                .unwrap();
        }
    }
    scaler.scale(&loss).unwrap().backward().unwrap();
    if k == 0 || k == 4 {
        let g = ps[2].grad().unwrap();
        let mut v = g.to_vec::<f32>().unwrap();
        v[4] = f32::INFINITY;
        ps[2].set_grad(Some(Tensor::from_vec(v, g.shape(), g.device()).unwrap()));
    }
}

fn values(ps: &[Tensor]) -> Vec<f32> {
    ps.iter().flat_map(|p| p.to_vec::<f32>().unwrap()).collect()
}

/// The step counts (or started flags) of a state, whether scalars or 0-d tensors.
fn counts(st: &OptimizerState) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = st
        .scalars
        .iter()
        .filter(|(n, _)| n.ends_with(".step") || n.ends_with(".started"))
        .map(|(n, v)| {
            let x = match v {
                Scalar::U64(c) => *c as f64,
                Scalar::Bool(b) => *b as u64 as f64,
                Scalar::F64(x) => *x,
            };
            (n.clone(), x)
        })
        .chain(
            st.tensors
                .iter()
                .filter(|(n, _)| n.ends_with(".step") || n.ends_with(".started"))
                .map(|(n, t)| {
                    let x = t.item().unwrap();
                    // A started flag kept as a count.
                    let x = if n.ends_with(".started") {
                        (x > 0.0) as u64 as f64
                    } else {
                        x
                    };
                    (n.clone(), x)
                }),
        )
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn close(a: &[f32], b: &[f32], exact: bool, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if exact {
            assert_eq!(x.to_bits(), y.to_bits(), "{what}[{i}]: {x} vs {y}");
        } else {
            assert!(
                (x - y).abs() <= 1e-6 + 2e-6 * y.abs(),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }
}

common::test_device!(
    /// Device-decided steps equal host-decided ones: bit for bit on the CPU (both compute
    /// the bias corrections in f64), within a few f32 ulps on the GPU (whose guarded
    /// kernels compute them in f32 from the device's counts).
    guarded_steps_follow_host_decided_steps_cpu,
    guarded_steps_follow_host_decided_steps_gpu,
    |dev| {
        let _counters = common::exclusive();
        let exact = matches!(dev, Device::Cpu);
        for (what, make) in optimizers() {
            let (pa, pb) = (params(&dev), params(&dev));
            let (mut a, mut b) = (make(pa.clone()), make(pb.clone()));
            let (mut sa, mut sb) = (GradScaler::new(), GradScaler::new());
            for k in 0..6 {
                give_grads(&pa, &mut sa, k);
                sa.step(a.as_mut()).unwrap();
                sa.update().unwrap();
                give_grads(&pb, &mut sb, k);
                sb.unscale_(b.as_ref()).unwrap();
                let flag = sb.state_tensor().unwrap().to_vec::<f32>().unwrap()[2];
                if flag == 0.0 {
                    b.step().unwrap();
                }
                sb.update().unwrap();
                assert_eq!(flag != 0.0, k == 0 || k == 4, "{what}: step {k}'s flag");
                close(&values(&pa), &values(&pb), exact, &format!("{what} step {k}"));
            }
            assert_eq!(sa.get_scale().unwrap(), 16384.0, "{what}: two backoffs");
            assert_eq!(counts(&a.state_dict()), counts(&b.state_dict()), "{what}: counts");
        }
    }
);

common::test_device!(
    /// A state dict taken while the counts live on the device resumes exactly, and a
    /// plain step after guarded ones continues from the right counts.
    guarded_state_resumes_exactly_cpu,
    guarded_state_resumes_exactly_gpu,
    |dev| {
        let _counters = common::exclusive();
        for (what, make) in optimizers() {
            let pa = params(&dev);
            let mut a = make(pa.clone());
            let mut sa = GradScaler::new();
            for k in 0..3 {
                give_grads(&pa, &mut sa, k);
                sa.step(a.as_mut()).unwrap();
                sa.update().unwrap();
            }
            let st = a.state_dict();
            assert!(
                st.tensors.iter().any(|(n, _)| n.ends_with(".step") || n.ends_with(".started"))
                    || what == "sgd",
                "{what}: counts as tensors while on the device"
            );
            let pc: Vec<Tensor> = pa
                .iter()
                .map(|p| {
                    let v = p.to_vec::<f32>().unwrap();
                    Tensor::from_vec(v, p.shape(), &dev)
                        .unwrap()
                        .requires_grad_(true)
                        .unwrap()
                })
                .collect();
            let mut c = make(pc.clone());
            c.load_state_dict(&st).unwrap();
            let want = counts(&st);
            assert_eq!(counts(&c.state_dict()), want, "{what}: loaded counts");
            // Both continue with plain steps on the same gradients.
            for k in 3..5 {
                for (ps, opt) in [(&pa, &mut a), (&pc, &mut c)] {
                    let mut s = GradScaler::new().enabled(false);
                    give_grads(ps, &mut s, k.min(3));
                    opt.step().unwrap();
                }
                assert_eq!(values(&pa), values(&pc), "{what}: step {k}");
            }
            assert_eq!(counts(&a.state_dict()), counts(&c.state_dict()), "{what}");
        }
    }
);

/// On the GPU a training step under the scaler (forward, backward, unscale, guarded
/// optimizer step, scale update) reads nothing back.
#[test]
fn a_scaled_training_step_reads_nothing_back() {
    let _counters = common::exclusive();
    let dev = common::gpu();
    let model = Sequential::new()
        .add(Linear::new(&dev, 8, 16))
        .add(ReLU)
        .add(Linear::new(&dev, 16, 3));
    let x = Tensor::randn_seeded(&[4, 8], 2, &dev).unwrap();
    let y = Tensor::from_vec(vec![0u32, 2, 1, 0], &[4], &dev).unwrap();
    for (what, make) in optimizers() {
        let mut opt = make(model.parameters());
        let mut scaler = GradScaler::new();
        let mut step = |opt: &mut Box<dyn Optimizer>| {
            opt.zero_grad();
            let loss =
                wgrad::amp::autocast(&dev, DType::F16, || model.forward(&x)?.cross_entropy(&y))
                    .unwrap()
                    .unwrap();
            scaler.scale(&loss).unwrap().backward().unwrap();
            scaler.step(opt.as_mut()).unwrap();
            scaler.update().unwrap();
        };
        step(&mut opt);
        dev.sync().unwrap();
        let before = dev.counters().readbacks;
        for _ in 0..3 {
            step(&mut opt);
        }
        assert_eq!(dev.counters().readbacks - before, 0, "{what}: readbacks");
    }
}
