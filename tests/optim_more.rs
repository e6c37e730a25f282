//! Adagrad, RMSprop and Adadelta: each trajectory against the update of the PyTorch
//! docs written out here in f64, on both devices and with every option; one dispatch
//! per step on the GPU; their state under PyTorch's names, through a checkpoint file.

mod common;

use wgrad::io::{load_checkpoint, save_checkpoint};
use wgrad::nn::{Linear, Module};
use wgrad::optim::{Adadelta, Adagrad, Adam, Optimizer, RMSprop};
use wgrad::prelude::*;

const P0: [f64; 3] = [1.0, -2.0, 0.5];
const GRADS: [[f64; 3]; 5] = [
    [0.5, 0.25, -1.0],
    [-0.2, 0.1, 0.3],
    [0.1, -0.4, 0.05],
    [0.7, 0.2, -0.1],
    [-0.3, 0.6, 0.4],
];

/// Runs `opt` for the five gradients above and returns the parameter after each step.
fn run(dev: &Device, make: impl Fn(Vec<Tensor>) -> Box<dyn Optimizer>) -> Vec<Vec<f64>> {
    let p0: Vec<f32> = P0.iter().map(|&v| v as f32).collect();
    let p = Tensor::from_vec(p0, &[3], dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let mut opt = make(vec![p.clone()]);
    GRADS
        .iter()
        .map(|g| {
            let g: Vec<f32> = g.iter().map(|&v| v as f32).collect();
            p.set_grad(Some(Tensor::from_vec(g, &[3], dev).unwrap()));
            opt.step().unwrap();
            p.to_f64_vec().unwrap()
        })
        .collect()
}

fn check(got: &[Vec<f64>], want: &[Vec<f64>], what: &str) {
    assert_eq!(got.len(), want.len());
    for (s, (g, w)) in got.iter().zip(want).enumerate() {
        common::assert_close(g, w, 5e-6, 1e-5, &format!("{what}: step {}", s + 1));
    }
}

/// torch.optim.Adagrad's update, from its documentation.
fn adagrad_reference(lr: f64, lr_decay: f64, wd: f64, init: f64, eps: f64) -> Vec<Vec<f64>> {
    let mut p = P0.to_vec();
    let mut sum = [init; 3];
    let mut out = Vec::new();
    for (t, g) in GRADS.iter().enumerate() {
        let clr = lr / (1.0 + t as f64 * lr_decay);
        for i in 0..3 {
            let g = g[i] + wd * p[i];
            sum[i] += g * g;
            p[i] -= clr * g / (sum[i].sqrt() + eps);
        }
        out.push(p.clone());
    }
    out
}

/// torch.optim.RMSprop's update, from its documentation.
fn rmsprop_reference(
    lr: f64,
    alpha: f64,
    eps: f64,
    wd: f64,
    momentum: f64,
    centered: bool,
) -> Vec<Vec<f64>> {
    let mut p = P0.to_vec();
    let (mut v, mut gavg, mut buf) = ([0.0; 3], [0.0; 3], [0.0; 3]);
    let mut out = Vec::new();
    for g in GRADS.iter() {
        for i in 0..3 {
            let g = g[i] + wd * p[i];
            v[i] = alpha * v[i] + (1.0 - alpha) * g * g;
            let mut vt = v[i];
            if centered {
                gavg[i] = alpha * gavg[i] + (1.0 - alpha) * g;
                vt -= gavg[i] * gavg[i];
            }
            let denom = vt.sqrt() + eps;
            if momentum > 0.0 {
                buf[i] = momentum * buf[i] + g / denom;
                p[i] -= lr * buf[i];
            } else {
                p[i] -= lr * g / denom;
            }
        }
        out.push(p.clone());
    }
    out
}

/// torch.optim.Adadelta's update, from its documentation.
fn adadelta_reference(lr: f64, rho: f64, eps: f64, wd: f64) -> Vec<Vec<f64>> {
    let mut p = P0.to_vec();
    let (mut v, mut u) = ([0.0; 3], [0.0; 3]);
    let mut out = Vec::new();
    for g in GRADS.iter() {
        for i in 0..3 {
            let g = g[i] + wd * p[i];
            v[i] = rho * v[i] + (1.0 - rho) * g * g;
            let delta = (u[i] + eps).sqrt() / (v[i] + eps).sqrt() * g;
            u[i] = rho * u[i] + (1.0 - rho) * delta * delta;
            p[i] -= lr * delta;
        }
        out.push(p.clone());
    }
    out
}

common::test_device!(
    adagrad_matches_the_documented_update_cpu,
    adagrad_matches_the_documented_update_gpu,
    |dev| {
        let _serial = common::exclusive();
        check(
            &run(&dev, |p| Box::new(Adagrad::new(p, 0.01))),
            &adagrad_reference(0.01, 0.0, 0.0, 0.0, 1e-10),
            "defaults",
        );
        check(
            &run(&dev, |p| {
                Box::new(
                    Adagrad::new(p, 0.1)
                        .lr_decay(0.5)
                        .weight_decay(0.1)
                        .initial_accumulator_value(0.2)
                        .eps(1e-3),
                )
            }),
            &adagrad_reference(0.1, 0.5, 0.1, 0.2, 1e-3),
            "lr decay + weight decay + initial accumulator + eps",
        );
    }
);

common::test_device!(
    rmsprop_matches_the_documented_update_cpu,
    rmsprop_matches_the_documented_update_gpu,
    |dev| {
        let _serial = common::exclusive();
        check(
            &run(&dev, |p| Box::new(RMSprop::new(p, 0.01))),
            &rmsprop_reference(0.01, 0.99, 1e-8, 0.0, 0.0, false),
            "defaults",
        );
        check(
            &run(&dev, |p| {
                Box::new(RMSprop::new(p, 0.01).momentum(0.9).weight_decay(0.1))
            }),
            &rmsprop_reference(0.01, 0.99, 1e-8, 0.1, 0.9, false),
            "momentum + weight decay",
        );
        check(
            &run(&dev, |p| {
                Box::new(RMSprop::new(p, 0.005).alpha(0.9).centered(true))
            }),
            &rmsprop_reference(0.005, 0.9, 1e-8, 0.0, 0.0, true),
            "centered",
        );
        check(
            &run(&dev, |p| {
                Box::new(
                    RMSprop::new(p, 0.002)
                        .alpha(0.8)
                        .eps(1e-4)
                        .centered(true)
                        .momentum(0.5)
                        .weight_decay(0.05),
                )
            }),
            &rmsprop_reference(0.002, 0.8, 1e-4, 0.05, 0.5, true),
            "centered + momentum + weight decay + eps",
        );
    }
);

common::test_device!(
    adadelta_matches_the_documented_update_cpu,
    adadelta_matches_the_documented_update_gpu,
    |dev| {
        let _serial = common::exclusive();
        check(
            &run(&dev, |p| Box::new(Adadelta::new(p, 1.0))),
            &adadelta_reference(1.0, 0.9, 1e-6, 0.0),
            "defaults",
        );
        check(
            &run(&dev, |p| {
                Box::new(Adadelta::new(p, 0.5).rho(0.7).eps(1e-3).weight_decay(0.1))
            }),
            &adadelta_reference(0.5, 0.7, 1e-3, 0.1),
            "rho + eps + weight decay",
        );
    }
);

type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;

/// Every new optimizer and option (each a kernel of its own on the GPU).
const OPTIMIZERS: [(&str, Make); 7] = [
    ("adagrad", |p| {
        Box::new(Adagrad::new(p, 0.05).lr_decay(0.1).weight_decay(0.01))
    }),
    ("rmsprop", |p| Box::new(RMSprop::new(p, 0.01))),
    ("rmsprop + momentum", |p| {
        Box::new(RMSprop::new(p, 0.01).momentum(0.9))
    }),
    ("rmsprop centered", |p| {
        Box::new(RMSprop::new(p, 0.01).centered(true))
    }),
    ("rmsprop centered + momentum", |p| {
        Box::new(RMSprop::new(p, 0.01).centered(true).momentum(0.9))
    }),
    ("adadelta", |p| Box::new(Adadelta::new(p, 1.0))),
    ("adadelta + weight decay", |p| {
        Box::new(Adadelta::new(p, 1.0).weight_decay(0.1))
    }),
];

/// Parameters of several sizes (past a workgroup, a single element) with gradients.
fn params(dev: &Device, seed: u64) -> Vec<Tensor> {
    [&[300usize][..], &[1], &[3, 7], &[257], &[2]]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = Tensor::randn_seeded(s, seed + i as u64, &Device::cpu())
                .unwrap()
                .to(dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap();
            p.set_grad(Some(
                Tensor::randn_seeded(s, seed + 100 + i as u64, &Device::cpu())
                    .unwrap()
                    .to(dev)
                    .unwrap(),
            ));
            p
        })
        .collect()
}

fn flat(ts: &[Tensor]) -> Vec<f32> {
    ts.iter().flat_map(|t| t.to_vec::<f32>().unwrap()).collect()
}

#[test]
fn each_step_is_one_dispatch_like_adam_and_matches_the_cpu() {
    let _serial = common::exclusive();
    let gpu = common::gpu();
    let cpu = Device::cpu();
    let dispatches = |make: Make| {
        let ps = params(&gpu, 10);
        let mut opt = make(ps.clone());
        let mut counts = Vec::new();
        for _ in 0..3 {
            gpu.sync().unwrap();
            let before = gpu.counters().dispatches;
            opt.step().unwrap();
            counts.push(gpu.counters().dispatches - before);
        }
        (counts, flat(&ps))
    };
    let (adam, _) = dispatches(|p| Box::new(Adam::new(p, 0.01)));
    assert_eq!(adam, vec![1, 1, 1], "adam");
    for (what, make) in OPTIMIZERS {
        let (counts, got) = dispatches(make);
        assert_eq!(counts, adam, "{what}: dispatches per step");
        let pc = params(&cpu, 10);
        let mut opt = make(pc.clone());
        for _ in 0..3 {
            opt.step().unwrap();
        }
        common::assert_close(&got, &flat(&pc), 2e-5, 1e-5, what);
    }
}

/// The state's keys (tensors, then scalars with their values) after two steps of a
/// `[3]` and a `[2]` parameter.
fn names(make: Make) -> Vec<String> {
    let dev = Device::cpu();
    let ps: Vec<Tensor> = [3usize, 2]
        .iter()
        .map(|&n| {
            Tensor::ones(&[n], &dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap()
        })
        .collect();
    let mut opt = make(ps.clone());
    for _ in 0..2 {
        for p in &ps {
            p.set_grad(Some(p.full_like(0.5).unwrap()));
        }
        opt.step().unwrap();
    }
    let s = opt.state_dict();
    let mut n: Vec<String> = s.tensors.iter().map(|(n, _)| n.clone()).collect();
    n.extend(s.scalars.iter().map(|(n, v)| format!("{n}={v}")));
    n
}

#[test]
fn the_state_uses_pytorchs_names() {
    let _serial = common::exclusive();
    assert_eq!(
        names(|p| Box::new(Adagrad::new(p, 0.01))),
        [
            "state.0.sum",
            "state.1.sum",
            "param_groups.0.lr=0.01",
            "param_groups.0.lr_decay=0",
            "param_groups.0.weight_decay=0",
            "param_groups.0.initial_accumulator_value=0",
            "param_groups.0.eps=0.0000000001",
            "state.0.step=2",
            "state.1.step=2"
        ]
    );
    assert_eq!(
        names(|p| Box::new(RMSprop::new(p, 0.01))),
        [
            "state.0.square_avg",
            "state.1.square_avg",
            "param_groups.0.lr=0.01",
            "param_groups.0.alpha=0.99",
            "param_groups.0.eps=0.00000001",
            "param_groups.0.weight_decay=0",
            "param_groups.0.momentum=0",
            "param_groups.0.centered=false",
            "state.0.step=2",
            "state.1.step=2"
        ]
    );
    assert_eq!(
        names(|p| Box::new(RMSprop::new(p, 0.01).momentum(0.9).centered(true))),
        [
            "state.0.square_avg",
            "state.0.momentum_buffer",
            "state.0.grad_avg",
            "state.1.square_avg",
            "state.1.momentum_buffer",
            "state.1.grad_avg",
            "param_groups.0.lr=0.01",
            "param_groups.0.alpha=0.99",
            "param_groups.0.eps=0.00000001",
            "param_groups.0.weight_decay=0",
            "param_groups.0.momentum=0.9",
            "param_groups.0.centered=true",
            "state.0.step=2",
            "state.1.step=2"
        ]
    );
    assert_eq!(
        names(|p| Box::new(Adadelta::new(p, 1.0))),
        [
            "state.0.square_avg",
            "state.0.acc_delta",
            "state.1.square_avg",
            "state.1.acc_delta",
            "param_groups.0.lr=1",
            "param_groups.0.rho=0.9",
            "param_groups.0.eps=0.000001",
            "param_groups.0.weight_decay=0",
            "state.0.step=2",
            "state.1.step=2"
        ]
    );
}

/// Sets fixed gradients of step `s` on `model`'s parameters.
fn set_grads(model: &Linear, s: u64) {
    for (i, p) in model.parameters().iter().enumerate() {
        let g = Tensor::randn_seeded(p.shape(), 500 + 10 * s + i as u64, &Device::cpu())
            .unwrap()
            .to(p.device())
            .unwrap();
        p.set_grad(Some(g));
    }
}

fn model(dev: &Device) -> Linear {
    dev.manual_seed(11);
    Linear::new(dev, 4, 3)
}

common::test_device!(
    a_checkpoint_resumes_each_optimizer_where_it_stopped_cpu,
    a_checkpoint_resumes_each_optimizer_where_it_stopped_gpu,
    |dev| {
        let _serial = common::exclusive();
        let dir = std::env::temp_dir().join(format!("wgrad-optim-more-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (k, (what, make)) in OPTIMIZERS.iter().enumerate() {
            // Four steps straight through.
            let straight = model(&dev);
            let mut opt = make(straight.parameters());
            for s in 0..4 {
                set_grads(&straight, s);
                opt.step().unwrap();
            }
            // Two steps, a checkpoint, a fresh model and optimizer, two more steps.
            let path = dir.join(format!("{k}-{}.safetensors", dev.is_gpu()));
            let first = model(&dev);
            let mut opt = make(first.parameters());
            for s in 0..2 {
                set_grads(&first, s);
                opt.step().unwrap();
            }
            save_checkpoint(&path, &first, opt.as_ref(), None, &dev, 2, 0).unwrap();
            let resumed = Linear::new(&dev, 4, 3);
            let mut opt = make(resumed.parameters());
            let ck = load_checkpoint(&path, &resumed, opt.as_mut(), None, &dev).unwrap();
            assert_eq!(ck.step, 2, "{what}");
            for s in 2..4 {
                set_grads(&resumed, s);
                opt.step().unwrap();
            }
            common::assert_close(
                &flat(&resumed.parameters()),
                &flat(&straight.parameters()),
                1e-6,
                0.0,
                what,
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
);

common::test_device!(
    invalid_hyper_parameters_are_argument_errors_that_change_nothing_cpu,
    invalid_hyper_parameters_are_argument_errors_that_change_nothing_gpu,
    |dev| {
        let _serial = common::exclusive();
        let bad: [(&str, Make); 8] = [
            ("learning rate", |p| Box::new(Adagrad::new(p, -0.1))),
            ("lr_decay", |p| {
                Box::new(Adagrad::new(p, 0.1).lr_decay(-1.0))
            }),
            ("initial_accumulator_value", |p| {
                Box::new(Adagrad::new(p, 0.1).initial_accumulator_value(f64::NAN))
            }),
            ("alpha", |p| Box::new(RMSprop::new(p, 0.1).alpha(-0.5))),
            ("momentum", |p| {
                Box::new(RMSprop::new(p, 0.1).momentum(-0.5))
            }),
            ("epsilon", |p| {
                Box::new(RMSprop::new(p, 0.1).eps(f64::INFINITY))
            }),
            ("rho", |p| Box::new(Adadelta::new(p, 1.0).rho(1.5))),
            ("weight_decay", |p| {
                Box::new(Adadelta::new(p, 1.0).weight_decay(-0.1))
            }),
        ];
        for (what, make) in bad {
            let p = Tensor::from_vec(vec![1.0f32, -2.0], &[2], &dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap();
            p.set_grad(Some(p.full_like(0.5).unwrap()));
            let err = make(vec![p.clone()]).step().unwrap_err();
            assert!(
                matches!(err, wgrad::Error::Argument { .. }) && err.to_string().contains(what),
                "{what}: {err}"
            );
            assert_eq!(p.to_vec::<f32>().unwrap(), vec![1.0, -2.0], "{what}");
        }
        for make in [
            (|p| Box::new(Adagrad::new(p, 0.1))) as Make,
            |p| Box::new(RMSprop::new(p, 0.1)),
            |p| Box::new(Adadelta::new(p, 0.1)),
        ] {
            assert!(make(vec![]).step().is_err(), "no parameters");
        }
    }
);
