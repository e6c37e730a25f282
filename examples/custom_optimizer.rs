//! The step of a hand-written optimizer (Adam, Adadelta and momentum SGD, written with
//! the in-place tensor methods under `no_grad` as PyTorch's single-tensor optimizers
//! are, and as the `Optimizer` trait's documentation shows) against the built-in `Adam`,
//! `Adadelta` and `Sgd` on the parameters of the `mlp` workload (`wgrad::workloads`,
//! 784-256-128-10), on the CPU and the GPU. First checks that the hand-written Adam
//! gives the built-in one's parameters after a few steps, then prints the median
//! milliseconds of `opt.step()` plus a device sync, gradients fixed.
//!
//! ```sh
//! cargo run --release --example custom_optimizer              # CPU and GPU
//! cargo run --release --example custom_optimizer -- 300       # timed steps (default 60)
//! ```

use std::time::Instant;

use wgrad::optim::Optimizer;
use wgrad::prelude::*;
use wgrad::workloads::{median, Workload};

/// Adam as `torch.optim.Adam`'s `_single_tensor_adam` (no weight decay, no AMSGrad),
/// in place: the moments with `lerp_` and `mul_scalar_` + `addcmul_`, the denominator
/// as one new tensor updated in place, the parameter with `addcdiv_`.
struct HandAdam {
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    step: i32,
}

impl Optimizer for HandAdam {
    fn step(&mut self) -> wgrad::Result<()> {
        self.step += 1;
        let (beta1, beta2) = self.betas;
        let bias_correction1 = 1.0 - beta1.powi(self.step);
        let bias_correction2_sqrt = (1.0 - beta2.powi(self.step)).sqrt();
        let step_size = self.lr / bias_correction1;
        no_grad(|| {
            for ((p, m), v) in self.params.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq) {
                let Some(g) = p.grad() else { continue };
                m.lerp_(&g, 1.0 - beta1)?;
                v.mul_scalar_(beta2)?.addcmul_(&g, &g, 1.0 - beta2)?;
                let denom = v.sqrt()?;
                denom
                    .div_scalar_(bias_correction2_sqrt)?
                    .add_scalar_(self.eps)?;
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

/// Adadelta as `torch.optim.Adadelta`'s `_single_tensor_adadelta` (no weight decay),
/// in place.
struct HandAdadelta {
    params: Vec<Tensor>,
    square_avg: Vec<Tensor>,
    acc_delta: Vec<Tensor>,
    lr: f64,
    rho: f64,
    eps: f64,
}

impl Optimizer for HandAdadelta {
    fn step(&mut self) -> wgrad::Result<()> {
        let (rho, eps) = (self.rho, self.eps);
        no_grad(|| {
            for ((p, sq), acc) in self
                .params
                .iter()
                .zip(&self.square_avg)
                .zip(&self.acc_delta)
            {
                let Some(g) = p.grad() else { continue };
                sq.mul_scalar_(rho)?.addcmul_(&g, &g, 1.0 - rho)?;
                let std = sq.add_scalar(eps)?;
                std.sqrt_()?;
                let delta = acc.add_scalar(eps)?;
                delta.sqrt_()?.div_(&std)?.mul_(&g)?;
                acc.mul_scalar_(rho)?.addcmul_(&delta, &delta, 1.0 - rho)?;
                p.add_scaled_(&delta, -self.lr)?;
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

/// Momentum SGD (`buf = m * buf + g; p -= lr * buf`), in place.
struct HandSgd {
    params: Vec<Tensor>,
    bufs: Vec<Tensor>,
    lr: f64,
    momentum: f64,
}

impl Optimizer for HandSgd {
    fn step(&mut self) -> wgrad::Result<()> {
        no_grad(|| {
            for (p, buf) in self.params.iter().zip(&self.bufs) {
                let Some(g) = p.grad() else { continue };
                buf.mul_scalar_(self.momentum)?.add_(&g)?;
                p.add_scaled_(buf, -self.lr)?;
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

fn zeros(params: &[Tensor]) -> wgrad::Result<Vec<Tensor>> {
    params.iter().map(|p| p.zeros_like()).collect()
}

/// Milliseconds of `steps` calls of `opt.step()` and a sync each, after 2 untimed steps.
fn time_steps(opt: &mut dyn Optimizer, dev: &Device, steps: usize) -> wgrad::Result<Vec<f64>> {
    for _ in 0..2 {
        opt.step()?;
        dev.sync()?;
    }
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let start = Instant::now();
        opt.step()?;
        dev.sync()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}

/// Copies of `params` (leaves that require grad) with their gradients.
fn copies(params: &[Tensor]) -> wgrad::Result<Vec<Tensor>> {
    params
        .iter()
        .map(|p| {
            let c = p.detach().mul_scalar(1.0)?.requires_grad_(true)?;
            c.set_grad(p.grad());
            Ok(c)
        })
        .collect()
}

/// The hand-written Adam against the built-in one: five steps from the same parameters
/// and gradients; returns the largest difference relative to `1 + |p|`.
fn adam_difference(params: &[Tensor]) -> wgrad::Result<f64> {
    let (mine, theirs) = (copies(params)?, copies(params)?);
    let mut hand = HandAdam {
        exp_avg: zeros(&mine)?,
        exp_avg_sq: zeros(&mine)?,
        params: mine.clone(),
        lr: 1e-3,
        betas: (0.9, 0.999),
        eps: 1e-8,
        step: 0,
    };
    let mut adam = Adam::new(theirs.clone(), 1e-3);
    for _ in 0..5 {
        hand.step()?;
        adam.step()?;
    }
    let mut worst = 0f64;
    for (a, b) in mine.iter().zip(&theirs) {
        for (x, y) in a.to_vec::<f32>()?.iter().zip(b.to_vec::<f32>()?) {
            worst = worst.max(f64::from((x - y).abs()) / (1.0 + f64::from(y.abs())));
        }
    }
    Ok(worst)
}

fn main() -> wgrad::Result<()> {
    let steps: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::Argument {
                op: "custom_optimizer",
                msg: format!("the number of timed steps must be a positive integer, got {a:?}"),
            })?,
        None => 60,
    };
    let rounds = 3;
    println!(
        "median ms per optimizer step, mlp parameters, {steps} timed steps in {rounds} \
         interleaved rounds"
    );
    for dev in [Device::cpu(), Device::gpu()?] {
        let mut train = Workload::Mlp.build(&dev)?;
        train.record()?; // gradients for every parameter, kept fixed below
        dev.sync()?;
        let params = train.model().parameters();
        let diff = adam_difference(&params)?;
        assert!(
            diff < 1e-5,
            "the hand-written Adam strays from the built-in one: {diff:e}"
        );
        let mut opts: Vec<(&str, Box<dyn Optimizer>)> = vec![
            ("Adam (built-in)", Box::new(Adam::new(params.clone(), 1e-3))),
            (
                "Adam (hand-written)",
                Box::new(HandAdam {
                    exp_avg: zeros(&params)?,
                    exp_avg_sq: zeros(&params)?,
                    params: params.clone(),
                    lr: 1e-3,
                    betas: (0.9, 0.999),
                    eps: 1e-8,
                    step: 0,
                }),
            ),
            (
                "Adadelta (built-in)",
                Box::new(Adadelta::new(params.clone(), 1.0)),
            ),
            (
                "Adadelta (hand-written)",
                Box::new(HandAdadelta {
                    square_avg: zeros(&params)?,
                    acc_delta: zeros(&params)?,
                    params: params.clone(),
                    lr: 1.0,
                    rho: 0.9,
                    eps: 1e-6,
                }),
            ),
            (
                "SGD momentum (built-in)",
                Box::new(Sgd::new(params.clone(), 0.01).momentum(0.9)),
            ),
            (
                "SGD momentum (hand-written)",
                Box::new(HandSgd {
                    bufs: zeros(&params)?,
                    params: params.clone(),
                    lr: 0.01,
                    momentum: 0.9,
                }),
            ),
        ];
        println!(
            "{} (hand-written Adam within {diff:.1e} of the built-in one after 5 steps):",
            dev.name()
        );
        let mut times = vec![Vec::new(); opts.len()];
        for _ in 0..rounds {
            for ((_, opt), t) in opts.iter_mut().zip(&mut times) {
                t.extend(time_steps(opt.as_mut(), &dev, steps.div_ceil(rounds))?);
            }
        }
        let adam = median(&mut times[0].clone());
        for ((name, _), t) in opts.iter().zip(&mut times) {
            let ms = median(t);
            println!("  {name:<28} {ms:>8.3} ms  ({:.2}x Adam)", ms / adam);
        }
    }
    Ok(())
}
