//! Linear non-separability and the non-linear case: two classes that no straight line
//! can split (two interleaving half-moons, or two concentric circles), learned by
//!
//! ```text
//! linear model:  x -> Linear(2, 2) -> softmax cross-entropy
//! MLP:           x -> Linear(2, 16) -> tanh -> Linear(16, 16) -> tanh -> Linear(16, 2)
//! ```
//!
//! Both are trained full-batch with Adam on the same few hundred noisy points. The linear
//! model's decision boundary is a straight line, so it gets some points wrong whatever it
//! does (about 85% on the moons, about 50% on the circles); the hidden layers let the MLP
//! bend its boundary around the data (about 100%).
//!
//! ```text
//! cargo run --release --example nonlinear                      # two moons
//! cargo run --release --example nonlinear -- --data circles --device cpu
//! cargo run --release --example nonlinear -- --noise 0.25 --steps 2000 --seed 3
//! ```
//!
//! It writes `out/nonlinear.png`: each model's decision regions (the model evaluated on a
//! grid of points, coloured by the predicted class) with the training points on top.

mod common;

use clap::Parser;
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "A linear model vs a small MLP on data no line can separate")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Which data set: moons or circles.
    #[arg(long, default_value = "moons")]
    data: String,
    /// Number of points (half in each class).
    #[arg(long, default_value_t = 400)]
    points: usize,
    /// Standard deviation of the Gaussian noise added to each point.
    #[arg(long, default_value_t = 0.15)]
    noise: f32,
    /// Full-batch Adam steps per model.
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Learning rate.
    #[arg(long, default_value_t = 0.02)]
    lr: f64,
}

/// A standard normal number (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1 = 1.0 - rng.random::<f32>(); // in (0, 1], so the log is finite
    let u2 = rng.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// `n` points `(x, y)` with labels 0 or 1, as scikit-learn's `make_moons` / `make_circles`.
fn make_data(kind: &str, n: usize, noise: f32, seed: u64) -> anyhow::Result<Vec<(f32, f32, u32)>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pts = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as u32;
        let t = std::f32::consts::PI * rng.random::<f32>();
        let (x, y) = match (kind, label) {
            // Two half-circles, the second shifted and flipped into the first's mouth.
            ("moons", 0) => (t.cos(), t.sin()),
            ("moons", _) => (1.0 - t.cos(), 0.5 - t.sin()),
            // An outer circle of radius 1 around an inner one of radius 0.5.
            ("circles", 0) => ((2.0 * t).cos(), (2.0 * t).sin()),
            ("circles", _) => (0.5 * (2.0 * t).cos(), 0.5 * (2.0 * t).sin()),
            _ => anyhow::bail!("--data must be moons or circles, not {kind}"),
        };
        pts.push((
            x + noise * gaussian(&mut rng),
            y + noise * gaussian(&mut rng),
            label,
        ));
    }
    Ok(pts)
}

/// Full-batch training with Adam on cross-entropy; returns the final loss.
fn train(
    model: &Sequential,
    x: &Tensor,
    y: &Tensor,
    args: &Args,
    name: &str,
) -> anyhow::Result<f64> {
    let mut opt = Adam::new(model.parameters(), args.lr);
    let bar = common::progress(args.steps, name);
    let mut last = f64::NAN;
    for step in 0..args.steps {
        opt.zero_grad();
        let loss = model.forward(x)?.cross_entropy(y)?;
        loss.backward()?;
        opt.step()?;
        // Reading the loss waits for the device, so do it only now and then.
        if step % 20 == 0 || step + 1 == args.steps {
            last = loss.item()?;
            bar.set_message(format!("loss {last:.4}"));
        }
        bar.inc(1);
    }
    bar.finish();
    Ok(last)
}

/// The box the charts show: the data's extent plus a margin.
struct Bounds {
    x: (f32, f32),
    y: (f32, f32),
}

/// The predicted class at each cell centre of an `n x n` grid over `b` (row by row).
fn predict_grid(
    model: &Sequential,
    b: &Bounds,
    n: usize,
    dev: &Device,
) -> anyhow::Result<Vec<u32>> {
    let mut xy = Vec::with_capacity(2 * n * n);
    for j in 0..n {
        for i in 0..n {
            xy.push(b.x.0 + (b.x.1 - b.x.0) * (i as f32 + 0.5) / n as f32);
            xy.push(b.y.0 + (b.y.1 - b.y.0) * (j as f32 + 0.5) / n as f32);
        }
    }
    let grid = Tensor::from_vec(xy, &[n * n, 2], dev)?;
    let logits = no_grad(|| model.forward(&grid))?;
    Ok(logits.argmax(1, false)?.to_vec::<u32>()?)
}

const REGION: [RGBColor; 2] = [RGBColor(198, 219, 239), RGBColor(253, 208, 162)];
const POINT: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(230, 85, 13)];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;

    let data = make_data(&args.data, args.points, args.noise, args.common.seed)?;
    let xy: Vec<f32> = data.iter().flat_map(|&(x, y, _)| [x, y]).collect();
    let labels: Vec<u32> = data.iter().map(|p| p.2).collect();
    let x = Tensor::from_vec(xy, &[data.len(), 2], &dev)?;
    let y = Tensor::from_vec(labels, &[data.len()], &dev)?;
    println!(
        "data: {} {} points, noise {}, two classes",
        data.len(),
        args.data,
        args.noise
    );

    let linear = Sequential::new().add(Linear::new(&dev, 2, 2));
    let mlp = Sequential::new()
        .add(Linear::new(&dev, 2, 16))
        .add(Tanh)
        .add(Linear::new(&dev, 16, 16))
        .add(Tanh)
        .add(Linear::new(&dev, 16, 2));

    let mut results = Vec::new();
    for (name, model) in [("linear", &linear), ("MLP", &mlp)] {
        let loss = train(model, &x, &y, &args, name)?;
        let logits = no_grad(|| model.forward(&x))?;
        let acc = common::accuracy(&logits, &y)?;
        println!(
            "{name:>6}: {:4} parameters, final loss {loss:.4}, training accuracy {:.1}%",
            model.num_parameters(),
            100.0 * acc
        );
        results.push((name, model, acc));
    }
    let (lin_acc, mlp_acc) = (results[0].2, results[1].2);
    if mlp_acc > lin_acc {
        println!(
            "the MLP beats the linear model by {:.1} points: a straight line cannot separate these classes",
            100.0 * (mlp_acc - lin_acc)
        );
    } else {
        println!("unexpected: the linear model did as well as the MLP (try more --steps)");
    }

    // Draw the decision regions of both models side by side.
    let range = |v: Vec<f32>| {
        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (lo - 0.5, hi + 0.5) // with a margin
    };
    let b = Bounds {
        x: range(data.iter().map(|p| p.0).collect()),
        y: range(data.iter().map(|p| p.1).collect()),
    };
    let n = 120; // grid cells per side
    let (dx, dy) = ((b.x.1 - b.x.0) / n as f32, (b.y.1 - b.y.0) / n as f32);

    common::register_font();
    let path = common::out_dir()?.join("nonlinear.png");
    common::save_png(&path, (1200, 580), |root| {
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 2));
        for ((name, model, acc), panel) in results.iter().zip(panels.iter()) {
            let title = format!(
                "{}: training accuracy {:.1}%",
                if *name == "linear" {
                    "linear model Linear(2, 2)"
                } else {
                    "MLP 2-16-16-2 (tanh)"
                },
                100.0 * acc
            );
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(45)
                .build_cartesian_2d(b.x.0..b.x.1, b.y.0..b.y.1)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("x1")
                .y_desc("x2")
                .label_style(("sans-serif", 14))
                .draw()?;

            let classes = predict_grid(model, &b, n, &dev)?;
            chart.draw_series(classes.iter().enumerate().map(|(k, &c)| {
                let (x0, y0) = (b.x.0 + (k % n) as f32 * dx, b.y.0 + (k / n) as f32 * dy);
                Rectangle::new([(x0, y0), (x0 + dx, y0 + dy)], REGION[c as usize].filled())
            }))?;
            for class in 0..2u32 {
                chart
                    .draw_series(
                        data.iter().filter(|p| p.2 == class).map(|&(x, y, _)| {
                            Circle::new((x, y), 3, POINT[class as usize].filled())
                        }),
                    )?
                    .label(format!("class {class}"))
                    .legend(move |(x, y)| {
                        Circle::new((x + 10, y), 4, POINT[class as usize].filled())
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()?;
        }
        Ok(())
    })?;
    println!("wrote {}", path.display());
    Ok(())
}
