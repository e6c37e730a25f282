//! Burn 0.22's autotuned wgpu backend on the shared `mlp` and `cnn` training steps (the
//! same shapes as `wgrad::workloads`), for a side-by-side comparison on one adapter.
//! Prints the median ms per step (device synced by reading the loss back each step).
//! Usage: `burn_reference [STEPS [WARMUP]]` (defaults 10 and 5).
use std::time::Instant;

use burn::prelude::*;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::Distribution;

#[derive(Module, Debug)]
struct Mlp {
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.l1.forward(x));
        let x = relu(self.l2.forward(x));
        self.l3.forward(x)
    }
}

#[derive(Module, Debug)]
struct Cnn {
    c1: Conv2d,
    c2: Conv2d,
    pool: MaxPool2d,
    fc: Linear,
}

impl Cnn {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.c1.forward(x)));
        let x = self.pool.forward(relu(self.c2.forward(x)));
        let x: Tensor<2> = x.flatten(1, 3);
        self.fc.forward(x)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time_steps<M, F>(mut model: M, steps: usize, warmup: usize, step: F) -> f64
where
    M: Module,
    F: Fn(&M) -> Tensor<1>,
{
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
        .init();
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t = Instant::now();
        let loss = step(&model);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.01, model, grads);
        let _: f32 = loss.into_scalar();
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    median(times)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args.get(1).map_or(10, |s| s.parse().unwrap());
    let warmup: usize = args.get(2).map_or(5, |s| s.parse().unwrap());
    let device = Device::default().autodiff();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let mlp = Mlp {
        l1: LinearConfig::new(784, 256).init(&device),
        l2: LinearConfig::new(256, 128).init(&device),
        l3: LinearConfig::new(128, 10).init(&device),
    };
    let x = Tensor::<2>::random([128, 784], Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<1, Int>::from_ints(
        (0..128).map(|i| (i % 10) as i32).collect::<Vec<_>>().as_slice(),
        &device,
    );
    let ms = time_steps(mlp, steps, warmup, |m: &Mlp| {
        loss_fn.forward(m.forward(x.clone()), t.clone())
    });
    println!("burn mlp ms/step {ms:.3}");

    let cnn = Cnn {
        c1: Conv2dConfig::new([1, 16], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device),
        c2: Conv2dConfig::new([16, 32], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device),
        pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        fc: LinearConfig::new(32 * 7 * 7, 10).init(&device),
    };
    let x = Tensor::<4>::random([64, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<1, Int>::from_ints(
        (0..64).map(|i| (i % 10) as i32).collect::<Vec<_>>().as_slice(),
        &device,
    );
    let ms = time_steps(cnn, steps, warmup, |m: &Cnn| {
        loss_fn.forward(m.forward(x.clone()), t.clone())
    });
    println!("burn cnn ms/step {ms:.3}");
}
