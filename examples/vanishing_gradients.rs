//! Vanishing gradients: the same 10-layer MLP (width 32, PyTorch's default `Linear`
//! initialisation) built three times, with sigmoid, tanh and ReLU between the layers.
//! After ONE forward and backward pass of a cross-entropy loss on a random batch with
//! random targets, it measures the L2 norm of each layer's weight gradient.
//!
//! Backpropagation multiplies the gradient by every layer's `W^T` and by the activation's
//! derivative on the way down. The sigmoid's derivative is at most 1/4, so with sigmoid
//! the gradient shrinks by a roughly constant factor per layer and the first layers (near
//! the input) get gradients orders of magnitude smaller than the last: they barely learn.
//! Tanh (derivative up to 1) and ReLU (derivative 0 or 1) lose far less. (ReLU still
//! loses some: PyTorch's default init, uniform in `±1/sqrt(fan_in)`, has a variance of a
//! third of `1/fan_in`, less than the `2/fan_in` that He initialisation picks for ReLU.)
//!
//! ```text
//! cargo run --release --example vanishing_gradients
//! cargo run --release --example vanishing_gradients -- --device gpu --depth 20
//! ```
//!
//! It prints a table of norms (layer 1 = nearest the input) and writes
//! `out/vanishing_gradients.png`, the norms per layer on a logarithmic axis.

mod common;

use clap::Parser;
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "Per-layer gradient norms of a deep MLP with sigmoid, tanh and ReLU")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Number of Linear layers.
    #[arg(long, default_value_t = 10)]
    depth: usize,
    /// Width of every hidden layer (and of the input).
    #[arg(long, default_value_t = 32)]
    width: usize,
    /// Batch size of the random input.
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

const CLASSES: usize = 10;

/// `depth` Linear layers with `activation` after every one but the last.
fn build(dev: &Device, args: &Args, activation: &str) -> Sequential {
    let mut net = Sequential::new();
    for layer in 0..args.depth {
        let last = layer + 1 == args.depth;
        net = net.add(Linear::new(
            dev,
            args.width,
            if last { CLASSES } else { args.width },
        ));
        if !last {
            net = match activation {
                "sigmoid" => net.add(Sigmoid),
                "tanh" => net.add(Tanh),
                _ => net.add(ReLU),
            };
        }
    }
    net
}

/// The L2 norm of each Linear layer's weight gradient, input side first.
fn weight_grad_norms(net: &Sequential) -> anyhow::Result<Vec<f64>> {
    let mut norms = Vec::new();
    // Names are "0.weight", "0.bias", "2.weight", ...: the weights in layer order.
    for (name, p) in net.named_parameters() {
        if name.ends_with(".weight") {
            let g = p.grad().expect("backward() reached every weight");
            norms.push(g.mul(&g)?.sum()?.item()?.sqrt());
        }
    }
    Ok(norms)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;
    anyhow::ensure!(args.depth >= 2, "--depth must be at least 2");

    // One random batch and random targets, shared by the three networks.
    let x = Tensor::randn_seeded(&[args.batch, args.width], args.common.seed, &dev)?;
    let mut rng = StdRng::seed_from_u64(args.common.seed);
    let targets: Vec<u32> = (0..args.batch)
        .map(|_| rng.random_range(0..CLASSES as u32))
        .collect();
    let y = Tensor::from_vec(targets, &[args.batch], &dev)?;

    let activations = ["sigmoid", "tanh", "relu"];
    let mut norms = Vec::new();
    let bar = common::progress(activations.len() as u64, "backward");
    for act in activations {
        let net = build(&dev, &args, act);
        let loss = net.forward(&x)?.cross_entropy(&y)?;
        loss.backward()?;
        bar.set_message(format!("{act}: loss {:.4}", loss.item()?));
        norms.push(weight_grad_norms(&net)?);
        bar.inc(1);
    }
    bar.finish_and_clear();

    println!(
        "\nL2 norm of each layer's weight gradient after one backward pass \
         ({} layers of width {}, batch {}):",
        args.depth, args.width, args.batch
    );
    println!(
        "{:>6} {:>12} {:>12} {:>12}",
        "layer", "sigmoid", "tanh", "relu"
    );
    let rows = norms[0].iter().zip(&norms[1]).zip(&norms[2]);
    for (layer, ((sigmoid, tanh), relu)) in rows.enumerate() {
        let where_ = match layer {
            0 => "  (input side)",
            l if l + 1 == args.depth => "  (output side)",
            _ => "",
        };
        println!(
            "{:>6} {sigmoid:>12.3e} {tanh:>12.3e} {relu:>12.3e}{where_}",
            layer + 1
        );
    }
    println!();
    for (act, n) in activations.iter().zip(&norms) {
        let ratio = n[0] / n[args.depth - 1];
        println!(
            "{act:>7}: layer 1 / layer {} = {ratio:.2e} ({:.1} orders of magnitude)",
            args.depth,
            ratio.log10()
        );
    }
    let sigmoid_orders = (norms[0][0] / norms[0][args.depth - 1]).log10();
    let others_orders = (1..3)
        .map(|a| (norms[a][0] / norms[a][args.depth - 1]).log10())
        .fold(f64::INFINITY, f64::min);
    if sigmoid_orders < -2.0 && sigmoid_orders < others_orders - 1.0 {
        println!(
            "=> the sigmoid network's gradient vanishes toward the input: layer 1 gets {:.1} orders \
             of magnitude less than layer {}, far more than with tanh or ReLU",
            -sigmoid_orders, args.depth
        );
    } else {
        println!("=> unexpected: the sigmoid network's gradients did not vanish clearly here");
    }

    // Plot the norms per layer on a log axis.
    let all = norms.iter().flatten().copied().filter(|v| *v > 0.0);
    let lo = all.clone().fold(f64::INFINITY, f64::min);
    let hi = all.fold(0.0, f64::max);
    let (lo, hi) = (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    );

    common::register_font();
    let path = common::out_dir()?.join("vanishing_gradients.png");
    common::save_png(&path, (900, 600), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Weight-gradient norm per layer, {}-layer MLP, default init",
                    args.depth
                ),
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(0.5f64..args.depth as f64 + 0.5, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("layer (1 = input side)")
            .y_desc("||dL/dW|| (L2 norm, log scale)")
            .x_labels(args.depth.min(20))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()?;
        let colors = [
            RGBColor(214, 39, 40),
            RGBColor(31, 119, 180),
            RGBColor(44, 160, 44),
        ];
        for ((act, n), color) in activations.iter().zip(&norms).zip(colors) {
            let pts: Vec<(f64, f64)> = n
                .iter()
                .enumerate()
                .map(|(i, v)| ((i + 1) as f64, *v))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(*act)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 17))
            .draw()?;
        Ok(())
    })?;
    println!("wrote {}", path.display());
    Ok(())
}
