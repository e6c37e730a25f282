//! The step of a hand-written optimizer (Adadelta and momentum SGD, written with the
//! in-place tensor methods under `no_grad`, as the `Optimizer` trait's documentation
//! shows) against the built-in `Adam`, `Adadelta` and `Sgd` on the parameters of the
//! `mlp` workload (`wgrad::workloads`, 784-256-128-10), on the CPU and the GPU. Prints
//! the median milliseconds of `opt.step()` plus a device sync, gradients fixed.
//!
//! ```sh
//! cargo run --release --example custom_optimizer              # CPU and GPU
//! cargo run --release --example custom_optimizer -- 200       # timed steps (default 50)
//! ```

use std::time::Instant;

use wgrad::optim::Optimizer;
use wgrad::prelude::*;
use wgrad::workloads::{median, Workload};

/// Adadelta as in `torch.optim.Adadelta` (no weight decay), in place.
struct HandAdadelta {
    params: Vec<Tensor>,
    square_avg: Vec<Tensor>,
    acc_delta: Vec<Tensor>,
    lr: f32,
    rho: f32,
    eps: f32,
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
                let std = sq.add_scalar(eps as f64)?.sqrt()?;
                let delta = acc.add_scalar(eps as f64)?.sqrt()?.div(&std)?.mul(&g)?;
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
        self.lr as f64
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr as f32
    }
}

/// Momentum SGD (`buf = m * buf + g; p -= lr * buf`), in place.
struct HandSgd {
    params: Vec<Tensor>,
    bufs: Vec<Tensor>,
    lr: f32,
    momentum: f32,
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
        self.lr as f64
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr as f32
    }
}

fn zeros(params: &[Tensor]) -> wgrad::Result<Vec<Tensor>> {
    params.iter().map(|p| p.zeros_like()).collect()
}

/// Median milliseconds of `opt.step()` and a sync, after 5 untimed steps.
fn time_steps(opt: &mut dyn Optimizer, dev: &Device, steps: usize) -> wgrad::Result<f64> {
    for _ in 0..5 {
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
    Ok(median(&mut times))
}

fn main() -> wgrad::Result<()> {
    let steps: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|_| Error::Argument {
            op: "custom_optimizer",
            msg: format!("the number of timed steps must be a positive integer, got {a:?}"),
        })?,
        None => 50,
    };
    println!("median ms per optimizer step, mlp parameters, {steps} timed steps");
    for dev in [Device::cpu(), Device::gpu()?] {
        let mut train = Workload::Mlp.build(&dev)?;
        train.record()?; // gradients for every parameter, kept fixed below
        dev.sync()?;
        let params = train.model().parameters();
        let mut opts: Vec<(&str, Box<dyn Optimizer>)> = vec![
            ("Adam (built-in)", Box::new(Adam::new(params.clone(), 1e-3))),
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
        println!("{}:", dev.name());
        let mut adam = f64::NAN;
        for (name, opt) in &mut opts {
            let ms = time_steps(opt.as_mut(), &dev, steps)?;
            if adam.is_nan() {
                adam = ms;
            }
            println!("  {name:<28} {ms:>8.3} ms  ({:.2}x Adam)", ms / adam);
        }
    }
    Ok(())
}
