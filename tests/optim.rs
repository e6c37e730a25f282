//! Each optimizer's step against the textbook update written out by hand (in f64), on
//! both devices; Adam's bias correction over several steps; schedules; clipping.

mod common;

use wgrad::optim::{
    clip_grad_norm, Adam, AdamW, CosineAnnealingLR, LrScheduler, Optimizer, Scheduled, Sgd, StepLR,
};
use wgrad::prelude::*;

const P0: [f64; 3] = [1.0, -2.0, 0.5];
const GRADS: [[f64; 3]; 4] = [
    [0.5, 0.25, -1.0],
    [-0.2, 0.1, 0.3],
    [0.1, -0.4, 0.0],
    [0.7, 0.2, -0.1],
];

/// Runs `opt` for the four gradients above and returns the parameter after each step.
fn run(dev: &Device, make: impl Fn(Vec<Tensor>) -> Box<dyn Optimizer>) -> Vec<Vec<f64>> {
    let p0: Vec<f32> = P0.iter().map(|&v| v as f32).collect();
    let p = Tensor::from_vec(p0, &[3], dev)
        .unwrap()
        .requires_grad_(true);
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
    for (s, (g, w)) in got.iter().zip(want).enumerate() {
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() < 2e-6,
                "{what}: step {} element {i}: got {a}, want {b}",
                s + 1
            );
        }
    }
}

/// torch.optim.SGD's update, written out.
fn sgd_reference(lr: f64, momentum: f64, dampening: f64, wd: f64, nesterov: bool) -> Vec<Vec<f64>> {
    let mut p = P0.to_vec();
    let mut buf = [0.0; 3];
    let mut out = Vec::new();
    for (t, g) in GRADS.iter().enumerate() {
        for i in 0..3 {
            let mut d = g[i] + wd * p[i];
            if momentum != 0.0 {
                buf[i] = if t == 0 {
                    d
                } else {
                    momentum * buf[i] + (1.0 - dampening) * d
                };
                d = if nesterov {
                    d + momentum * buf[i]
                } else {
                    buf[i]
                };
            }
            p[i] -= lr * d;
        }
        out.push(p.clone());
    }
    out
}

/// Adam (Kingma and Ba, with PyTorch's placement of eps) and AdamW, written out.
fn adam_reference(lr: f64, b1: f64, b2: f64, eps: f64, wd: f64, decoupled: bool) -> Vec<Vec<f64>> {
    let mut p = P0.to_vec();
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    let mut out = Vec::new();
    for (t, g) in GRADS.iter().enumerate() {
        let t = (t + 1) as i32;
        for i in 0..3 {
            let mut gi = g[i];
            if decoupled {
                p[i] *= 1.0 - lr * wd;
            } else {
                gi += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let m_hat = m[i] / (1.0 - b1.powi(t));
            let v_hat = v[i] / (1.0 - b2.powi(t));
            p[i] -= lr * m_hat / (v_hat.sqrt() + eps);
        }
        out.push(p.clone());
    }
    out
}

#[test]
fn sgd_matches_the_textbook_update() {
    let _serial = common::exclusive();
    for dev in common::devices() {
        check(
            &run(&dev, |p| Box::new(Sgd::new(p, 0.1))),
            &sgd_reference(0.1, 0.0, 0.0, 0.0, false),
            "plain",
        );
        check(
            &run(&dev, |p| Box::new(Sgd::new(p, 0.1).momentum(0.9))),
            &sgd_reference(0.1, 0.9, 0.0, 0.0, false),
            "momentum",
        );
        check(
            &run(&dev, |p| {
                Box::new(
                    Sgd::new(p, 0.05)
                        .momentum(0.9)
                        .nesterov(true)
                        .weight_decay(0.01),
                )
            }),
            &sgd_reference(0.05, 0.9, 0.0, 0.01, true),
            "nesterov + weight decay",
        );
        check(
            &run(&dev, |p| {
                Box::new(Sgd::new(p, 0.1).momentum(0.5).dampening(0.3))
            }),
            &sgd_reference(0.1, 0.5, 0.3, 0.0, false),
            "dampening",
        );
    }
}

#[test]
fn adam_and_adamw_match_the_textbook_update_with_bias_correction() {
    let _serial = common::exclusive();
    for dev in common::devices() {
        check(
            &run(&dev, |p| Box::new(Adam::new(p, 0.1))),
            &adam_reference(0.1, 0.9, 0.999, 1e-8, 0.0, false),
            "adam",
        );
        check(
            &run(&dev, |p| {
                Box::new(Adam::new(p, 0.01).betas(0.8, 0.99).weight_decay(0.1))
            }),
            &adam_reference(0.01, 0.8, 0.99, 1e-8, 0.1, false),
            "adam + L2",
        );
        check(
            &run(&dev, |p| Box::new(AdamW::new(p, 0.1))),
            &adam_reference(0.1, 0.9, 0.999, 1e-8, 0.01, true),
            "adamw",
        );
    }
    // Without the bias correction the first Adam step would move p[0] by
    // lr * m / sqrt(v) = 0.1 * 0.05 / sqrt(0.00025) = 0.316, not by lr = 0.1.
    let first = adam_reference(0.1, 0.9, 0.999, 1e-8, 0.0, false)[0][0];
    assert!((P0[0] - first - 0.1).abs() < 1e-6);
}

#[test]
fn parameters_without_gradients_are_left_alone() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let a = Tensor::ones(&[2], &dev).unwrap().requires_grad_(true);
    let b = Tensor::ones(&[2], &dev).unwrap().requires_grad_(true);
    let mut opt = Adam::new(vec![a.clone(), b.clone()], 0.1);
    a.set_grad(Some(Tensor::ones(&[2], &dev).unwrap()));
    opt.step().unwrap();
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
    assert!(a.to_vec::<f32>().unwrap()[0] < 1.0);
    opt.zero_grad();
    assert!(a.grad().is_none());
}

#[test]
fn schedules_follow_pytorchs_formulas() {
    let _serial = common::exclusive();
    let step = StepLR {
        step_size: 3,
        gamma: 0.5,
    };
    let lrs: Vec<f32> = (0..7).map(|e| step.lr_at(0.8, e)).collect();
    assert_eq!(lrs, vec![0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2]);
    let cos = CosineAnnealingLR {
        t_max: 10,
        eta_min: 0.0,
    };
    assert!((cos.lr_at(1.0, 5) - 0.5).abs() < 1e-6);
    assert!(cos.lr_at(1.0, 10).abs() < 1e-6);
    let p = Tensor::ones(&[1], &Device::cpu())
        .unwrap()
        .requires_grad_(true);
    let mut opt = Sgd::new(vec![p], 0.8);
    let mut sched = Scheduled::new(step, &opt);
    for _ in 0..3 {
        sched.step(&mut opt);
    }
    assert_eq!(opt.lr(), 0.4);
}

#[test]
fn clipping_scales_gradients_to_the_global_norm_without_a_readback() {
    let _serial = common::exclusive();
    for dev in common::devices() {
        let a = Tensor::ones(&[2], &dev).unwrap().requires_grad_(true);
        let b = Tensor::ones(&[1], &dev).unwrap().requires_grad_(true);
        a.set_grad(Some(
            Tensor::from_vec(vec![3.0f32, 0.0], &[2], &dev).unwrap(),
        ));
        b.set_grad(Some(Tensor::from_vec(vec![4.0f32], &[1], &dev).unwrap()));
        dev.sync().unwrap();
        let submits = dev.counters().submits;
        let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0)
            .unwrap()
            .unwrap();
        assert_eq!(
            dev.counters().submits,
            submits,
            "clipping records work, reads nothing"
        );
        assert!((norm.item().unwrap() - 5.0).abs() < 1e-5);
        common::assert_close(
            &a.grad().unwrap().to_vec::<f32>().unwrap(),
            &[0.6, 0.0],
            1e-5,
            "a",
        );
        common::assert_close(
            &b.grad().unwrap().to_vec::<f32>().unwrap(),
            &[0.8],
            1e-5,
            "b",
        );
        // Below the limit nothing changes.
        clip_grad_norm(&[a.clone(), b.clone()], 10.0).unwrap();
        common::assert_close(
            &b.grad().unwrap().to_vec::<f32>().unwrap(),
            &[0.8],
            1e-5,
            "b unchanged",
        );
    }
}
