//! Trains a small neural network to read handwritten digits: the bundled
//! `data/digits.csv.gz` (1,797 8x8 images with 16 grey levels, the UCI / scikit-learn
//! digits) and a two-layer perceptron
//!
//! ```text
//! 64 pixels -> Linear(64, 64) -> ReLU -> Linear(64, 10) -> softmax cross-entropy
//! ```
//!
//! trained with mini-batch SGD with momentum, written out by hand: the forward pass is
//! tensor ops, `backward()` fills each parameter's `.grad()`, and the update runs under
//! `no_grad` and writes the new values into the parameters with `copy_from`.
//!
//! ```text
//! cargo run --release --example train_digits                  # Device::best()
//! cargo run --release --example train_digits -- --device cpu  # or gpu
//! cargo run --release --example train_digits -- --epochs 50 --seed 7
//! ```
//!
//! With the defaults it reaches 96-98% accuracy (depending on `--seed`) on the held-out
//! fifth of the images in well under a second on the CPU backend.

use std::time::Instant;

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use wgrad::prelude::*;

const PIXELS: usize = 64;
const HIDDEN: usize = 64;
const CLASSES: usize = 10;
const LR: f64 = 0.1;
const MOMENTUM: f64 = 0.9;
const BATCH: usize = 64;

struct Args {
    device: String,
    epochs: usize,
    seed: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        device: "best".into(),
        epochs: 30,
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => args.device = value()?,
            "--epochs" => args.epochs = value()?.parse().context("--epochs")?,
            "--seed" => args.seed = value()?.parse().context("--seed")?,
            "-h" | "--help" => {
                println!("usage: train_digits [--device cpu|gpu|best] [--epochs N] [--seed S]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

fn pick_device(which: &str) -> anyhow::Result<(Device, String)> {
    Ok(match which {
        "cpu" => (Device::cpu(), "--device cpu".into()),
        "gpu" => (Device::gpu()?, "--device gpu".into()),
        "best" => Device::best_with_reason(),
        other => bail!("--device must be cpu, gpu or best, not {other:?}"),
    })
}

/// The images (pixels scaled to [0, 1]) and their labels.
struct Digits {
    pixels: Vec<[f32; PIXELS]>,
    labels: Vec<u32>,
}

/// The bundled digits through the library's loader (pixels already scaled to [0, 1]).
fn load_digits() -> anyhow::Result<Digits> {
    let ds = wgrad::data::digits::load()?;
    let labels = ds.labels().context("the digits are a classification set")?;
    let pixels = ds
        .features()
        .chunks(PIXELS)
        .map(|c| c.try_into().expect("rows of 64 pixels"))
        .collect();
    Ok(Digits { pixels, labels })
}

/// The images with the given indices as a `[n, 64]` tensor and their labels as `[n]`.
fn batch(data: &Digits, idx: &[usize], dev: &Device) -> Result<(Tensor, Tensor)> {
    let x: Vec<f32> = idx.iter().flat_map(|&i| data.pixels[i]).collect();
    let y: Vec<u32> = idx.iter().map(|&i| data.labels[i]).collect();
    Ok((
        Tensor::from_vec(x, &[idx.len(), PIXELS], dev)?,
        Tensor::from_vec(y, &[idx.len()], dev)?,
    ))
}

/// The network's parameters: two linear layers stored as `[in, out]` weights and biases.
struct Mlp {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

impl Mlp {
    fn new(seed: u64, dev: &Device) -> Result<Mlp> {
        // Kaiming-style initialisation: normal with variance 2 / fan_in suits ReLU.
        let scale = (2.0 / PIXELS as f64).sqrt();
        let w1 = Tensor::randn_seeded(&[PIXELS, HIDDEN], seed, dev)?.mul_scalar(scale)?;
        let scale = (2.0 / HIDDEN as f64).sqrt();
        let w2 = Tensor::randn_seeded(&[HIDDEN, CLASSES], seed + 1, dev)?.mul_scalar(scale)?;
        Ok(Mlp {
            // requires_grad_(true) makes each a leaf whose .grad() backward() fills in.
            w1: w1.requires_grad_(true)?,
            b1: Tensor::zeros(&[HIDDEN], dev)?.requires_grad_(true)?,
            w2: w2.requires_grad_(true)?,
            b2: Tensor::zeros(&[CLASSES], dev)?.requires_grad_(true)?,
        })
    }

    fn params(&self) -> [&Tensor; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    /// Logits `[n, 10]` for images `[n, 64]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = x.matmul(&self.w1)?.add(&self.b1)?.relu()?;
        h.matmul(&self.w2)?.add(&self.b2)
    }
}

/// The fraction of images whose largest logit is the right label: PyTorch's
/// `pred.argmax(1).eq(labels).sum()`, all on the device (`argmax`, `eq` and `sum` of
/// `u32` tensors give `u32`), one number read back.
fn accuracy(model: &Mlp, x: &Tensor, labels: &Tensor) -> Result<f64> {
    let logits = no_grad(|| model.forward(x))?;
    let right = logits.argmax(1, false)?.eq(labels)?.sum()?.item()?;
    Ok(right / labels.numel().max(1) as f64)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let (dev, why) = pick_device(&args.device)?;
    println!("device: {} ({why})", dev.name());

    let data = load_digits()?;

    // Shuffle once, then keep the last fifth aside to measure generalisation.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut order: Vec<usize> = (0..data.labels.len()).collect();
    order.shuffle(&mut rng);
    let n_test = order.len() / 5;
    let test = order.split_off(order.len() - n_test);
    let mut train = order;
    let (x_test, y_test) = batch(&data, &test, &dev)?;
    println!(
        "data: {} training and {} test images of {PIXELS} pixels, {CLASSES} classes",
        train.len(),
        test.len()
    );

    let model = Mlp::new(args.seed, &dev)?;
    // One momentum buffer per parameter: a running sum of past gradients.
    let velocity: Vec<Tensor> = model
        .params()
        .iter()
        .map(|p| Tensor::zeros(p.shape(), &dev))
        .collect::<Result<_>>()?;

    let start = Instant::now();
    let mut steps = 0usize;
    for epoch in 1..=args.epochs {
        let epoch_start = Instant::now();
        train.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut batches = 0usize;
        for idx in train.chunks(BATCH) {
            let (x, y) = batch(&data, idx, &dev)?;

            // Forward and backward.
            let loss = model.forward(&x)?.cross_entropy(&y)?;
            loss.backward()?;
            loss_sum += loss.item()?;
            batches += 1;

            // SGD with momentum: v = 0.9 v + g;  p = p - lr v. No graph is recorded here.
            no_grad(|| -> Result<()> {
                for (p, v) in model.params().into_iter().zip(&velocity) {
                    let g = p.grad().expect("backward() reached every parameter");
                    v.copy_from(&v.mul_scalar(MOMENTUM)?.add(&g)?)?;
                    p.copy_from(&p.sub(&v.mul_scalar(LR)?)?)?;
                    p.zero_grad();
                }
                Ok(())
            })?;
            steps += 1;
        }

        let mut line = format!(
            "epoch {epoch:3}  train loss {:.4}  ({:6.1} ms)",
            loss_sum / batches as f64,
            1e3 * epoch_start.elapsed().as_secs_f64()
        );
        if epoch % 5 == 0 || epoch == args.epochs {
            let acc = accuracy(&model, &x_test, &y_test)?;
            line += &format!("  test accuracy {:.1}%", 100.0 * acc);
        }
        println!("{line}");
    }
    let total = start.elapsed();
    println!(
        "trained {} epochs ({steps} steps) in {:.2} s, {:.2} ms per step",
        args.epochs,
        total.as_secs_f64(),
        1e3 * total.as_secs_f64() / steps.max(1) as f64
    );
    let acc = accuracy(&model, &x_test, &y_test)?;
    println!(
        "final test accuracy: {:.1}% ({} of {})",
        100.0 * acc,
        (acc * y_test.numel() as f64).round(),
        y_test.numel()
    );
    Ok(())
}
