//! The lecture's seven activation functions and their derivatives, as the engine
//! computes them:
//!
//! sigmoid, tanh, ReLU, softplus, noisy ReLU (`max(x + eps, 0)`, `eps ~ N(0, 0.2^2)` in
//! training mode, plain ReLU in evaluation mode), leaky ReLU (slope 0.1) and parametric
//! ReLU (a trainable slope, here 0.25).
//!
//! No derivative is typed in: for each function, `x` (401 points in [-4, 4]) is a leaf
//! tensor that requires a gradient, `y = f(x)`, and `y.sum().backward()` leaves
//! `dy_i/dx_i = f'(x_i)` in `x.grad()` (each `y_i` depends on `x_i` alone). For the
//! parametric ReLU, `backward()` also fills the slope's gradient,
//! `d(sum y)/da = sum of the negative x_i`, which training would use to learn the slope.
//!
//! ```text
//! cargo run --release --example activations -- --device cpu
//! cargo run --release --example activations -- --device gpu --seed 3
//! ```
//!
//! It prints f(x) and f'(x) at x = -2, -0.5, 0, 0.5, 2 and writes `out/activations.png`:
//! one panel per function with f and f' (the noisy ReLU panel adds one training-mode draw
//! as dots), and a last panel comparing the derivatives.

mod common;

use clap::Parser;
use plotters::prelude::*;
use plotters::style::full_palette::{GREEN_700, ORANGE};
use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "Activation functions and their derivatives from backward()")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Standard deviation of the noisy ReLU's noise.
    #[arg(long, default_value_t = 0.2)]
    sigma: f64,
}

/// f(x) and f'(x) at the points `xs`, the derivative from the engine's `backward()`.
fn value_and_grad(f: &dyn Module, xs: &[f32], dev: &Device) -> Result<(Vec<f32>, Vec<f32>)> {
    let x = Tensor::from_slice(xs, &[xs.len()], dev)?.requires_grad_(true)?;
    let y = f.forward(&x)?;
    y.sum()?.backward()?;
    let dy = x.grad().expect("x is a leaf that requires grad");
    Ok((y.to_vec::<f32>()?, dy.to_vec::<f32>()?))
}

/// One activation's curves for the chart.
struct Curves {
    name: String,
    f: Vec<f32>,
    df: Vec<f32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;

    let noisy = NoisyReLU::new(args.sigma);
    let prelu = PReLU::new(&dev, 1, 0.25);
    let activations: Vec<(String, &dyn Module)> = vec![
        ("sigmoid".into(), &Sigmoid),
        ("tanh".into(), &Tanh),
        ("ReLU".into(), &ReLU),
        (
            "softplus".into(),
            &Softplus {
                beta: 1.0,
                threshold: 20.0,
            },
        ),
        (format!("noisy ReLU (sigma {})", args.sigma), &noisy),
        ("leaky ReLU (0.1)".into(), &LeakyReLU(0.1)),
        ("PReLU (a = 0.25)".into(), &prelu),
    ];

    // 401 points from -4 to 4 (step 0.02, with 0 exactly in the middle).
    let xs: Vec<f32> = (0..=400).map(|i| (-4.0 + 0.02 * i as f64) as f32).collect();
    let table_xs = [-2.0f32, -0.5, 0.0, 0.5, 2.0];

    let mut curves = Vec::new();
    let mut table = Vec::new();
    noisy.eval(); // the curve and the table show noisy ReLU's evaluation mode: ReLU
    for (name, f) in &activations {
        let (y, dy) = value_and_grad(*f, &xs, &dev)?;
        curves.push(Curves {
            name: name.clone(),
            f: y,
            df: dy,
        });
        table.push((name.clone(), value_and_grad(*f, &table_xs, &dev)?));
    }

    // One draw of noisy ReLU in training mode: the noise moves each point's kink.
    noisy.train();
    let noisy_draw = value_and_grad(&noisy, &xs, &dev)?;

    // PReLU's slope got a gradient too, summed over both calls above: read it from a
    // fresh backward over the 401 points alone.
    let slope = prelu.weight.tensor();
    slope.zero_grad();
    value_and_grad(&prelu, &xs, &dev)?;
    let slope_grad = slope.grad().expect("the slope requires grad").item()?;
    let negatives: f64 = xs.iter().filter(|&&x| x < 0.0).map(|&x| x as f64).sum();

    println!();
    println!("f(x) and f'(x) = x.grad() after y.sum().backward(); noisy ReLU in eval mode");
    print!("{:<30}", "x =");
    for x in table_xs {
        print!("{x:>9}");
    }
    println!();
    for (name, (y, dy)) in &table {
        println!("{name:<26}f   {}", row(y));
        println!("{:<26}f'  {}", "", row(dy));
    }
    noisy.train();
    let (y, dy) = value_and_grad(&noisy, &table_xs, &dev)?;
    println!("{:<26}f   {}", "noisy ReLU, training draw", row(&y));
    println!("{:<26}f'  {}", "", row(&dy));
    println!(
        "\nPReLU's slope a = {} has a gradient too (weight.grad()):",
        slope.item()?
    );
    println!("  d(sum of PReLU(x))/da over the 401 points = {slope_grad:.4} from backward()");
    println!("  (for x < 0, PReLU(x) = a x, so it is the sum of the negative x: {negatives:.4})");

    let png = common::out_dir()?.join("activations.png");
    plot(&png, &xs, &curves, &noisy_draw.0)?;
    println!("\nwrote {}", png.display());
    Ok(())
}

/// A y-axis label, without "-0.0".
fn tick(y: &f64) -> String {
    format!("{:.1}", if y.abs() < 1e-9 { 0.0 } else { *y })
}

fn row(v: &[f32]) -> String {
    v.iter().map(|v| format!("{v:>9.4}")).collect()
}

/// A 2 x 4 grid: seven panels of f (blue) and f' (red), and the derivatives together.
fn plot(
    path: &std::path::Path,
    xs: &[f32],
    curves: &[Curves],
    noisy_draw: &[f32],
) -> anyhow::Result<()> {
    common::register_font();
    common::save_png(path, (1600, 800), |root| {
        root.fill(&WHITE)?;
        let (title, body) = root.split_vertically(40);
        title.titled(
            "Activation functions f (blue) and their derivatives f' from backward() (red)",
            ("sans-serif", 22),
        )?;
        let panels = body.split_evenly((2, 4));
        let points = |v: &[f32]| -> Vec<(f64, f64)> {
            xs.iter()
                .zip(v)
                .map(|(&x, &y)| (x as f64, y as f64))
                .collect()
        };

        for (i, (c, area)) in curves.iter().zip(&panels).enumerate() {
            let is_noisy = i == 4;
            let mut all: Vec<f32> = c.f.iter().chain(&c.df).copied().collect();
            if is_noisy {
                all.extend(noisy_draw);
            }
            let lo = all.iter().copied().fold(0.0f32, f32::min) as f64;
            let hi = all.iter().copied().fold(1.0f32, f32::max) as f64;
            let pad = 0.08 * (hi - lo);
            let mut chart = ChartBuilder::on(area)
                .caption(&c.name, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(-4.0..4.0, (lo - pad)..(hi + pad))?;
            chart
                .configure_mesh()
                .x_desc("x")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&tick)
                .label_style(("sans-serif", 13))
                .draw()?;
            if is_noisy {
                let green = GREEN_700.mix(0.6);
                chart
                    .draw_series(
                        points(noisy_draw)
                            .into_iter()
                            .step_by(2)
                            .map(|p| Circle::new(p, 2, green.filled())),
                    )?
                    .label("f, one training-mode draw")
                    .legend(move |(x, y)| Circle::new((x + 10, y), 3, green.filled()));
            }
            let mode = if is_noisy { " (eval mode)" } else { "" };
            for (v, color, label) in [(&c.f, BLUE, "f"), (&c.df, RED, "f'")] {
                chart
                    .draw_series(LineSeries::new(points(v), color.stroke_width(2)))?
                    .label(format!("{label}{mode}"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()?;
        }

        // The last panel: every derivative at once (noisy ReLU's eval mode is ReLU's).
        let mut chart = ChartBuilder::on(&panels[7])
            .caption("All derivatives f'", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(-4.0..4.0, -0.1..1.1)?;
        chart
            .configure_mesh()
            .x_desc("x")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&tick)
            .label_style(("sans-serif", 13))
            .draw()?;
        let colors = [RED, BLUE, BLACK, GREEN_700, CYAN, MAGENTA, ORANGE];
        for (i, c) in curves.iter().enumerate() {
            if i == 4 {
                continue;
            }
            let color = colors[i];
            chart
                .draw_series(LineSeries::new(points(&c.df), color.stroke_width(2)))?
                .label(c.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()?;
        Ok(())
    })?;
    Ok(())
}
