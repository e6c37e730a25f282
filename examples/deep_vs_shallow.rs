//! Why go deep: the depth-separation example (Telgarsky). The tent map on [0, 1],
//!
//! ```text
//! t(x) = 2x for x < 1/2,  2(1 - x) otherwise  =  2 relu(x) - 4 relu(x - 1/2)
//! ```
//!
//! composed k times is a sawtooth with 2^(k-1) teeth (2^k linear pieces).
//!
//! (a) Deep and narrow: a ReLU network with k hidden layers of TWO units computes it
//!     exactly. Each hidden layer holds relu(h) and relu(h - 1/2) of the previous tent's
//!     output h, so the weights are written by hand, not learned:
//!
//! ```text
//! Linear(1, 2): w = (1, 1),               b = (0, -1/2)   -> ReLU
//! Linear(2, 2): w = [[2, -4], [2, -4]],   b = (0, -1/2)   -> ReLU     (k - 1 times)
//! Linear(2, 1): w = (2, -4),              b = 0           = t applied k times
//! ```
//!
//!     (the middle layers fold "combine into t(h) = 2 relu(h) - 4 relu(h - 1/2)" and
//!     "feed t(h) to the next tent" into one matrix): 6k + 1 parameters. The engine's
//!     forward pass is checked against the direct formula.
//!
//! (b) Shallow and wide: one hidden layer, Linear(1, m) -> ReLU -> Linear(m, 1), 3m + 1
//!     parameters, fitted to 256 points of the sawtooth. Its output is piecewise linear
//!     with at most m + 1 pieces, so it cannot match the 2^k pieces of the sawtooth until
//!     m is about 2^k: the shallow net needs exponentially many parameters in k where the
//!     deep one needs linearly many. Gradient descent alone fits such a high-frequency
//!     target very slowly (the hidden units' ramps are nearly parallel), so each shallow
//!     net gets a good start: kinks spread evenly over [0, 1], output weights solved by
//!     least squares (the output is linear in them). Then Adam trains all the weights on
//!     the mean squared error, full batch. The error only drops once m reaches about
//!     2^(k+1): twice the minimum, as evenly spread kinks do not sit on the corners.
//!
//! ```text
//! cargo run --release --example deep_vs_shallow
//! cargo run --release --example deep_vs_shallow -- --device cpu --steps 5000
//! cargo run --release --example deep_vs_shallow -- --device gpu --steps 200 --max-k 4
//! ```
//!
//! It writes `out/deep_vs_shallow.png` (fit error vs parameter count, log-log, one line
//! per k; the exact deep networks drawn at an error floor) and
//! `out/deep_vs_shallow_fits.png` (the sawtooth for k = 4 and some shallow fits).

mod common;

use clap::Parser;
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "Deep narrow vs shallow wide ReLU networks on the tent-map sawtooth")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Largest number of tent compositions k (k runs from 2 to this).
    #[arg(long, default_value_t = 6)]
    max_k: u32,
    /// Hidden widths m of the shallow networks, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,16,32,64,128")]
    widths: Vec<usize>,
    /// Full-batch Adam steps per shallow network.
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Adam's learning rate (divided by 10 for the last quarter of the steps).
    #[arg(long, default_value_t = 0.001)]
    lr: f64,
    /// Training points, evenly spaced on [0, 1].
    #[arg(long, default_value_t = 256)]
    points: usize,
}

/// The tent map applied k times, computed directly.
fn sawtooth(x: f64, k: u32) -> f64 {
    (0..k).fold(x, |h, _| if h < 0.5 { 2.0 * h } else { 2.0 * (1.0 - h) })
}

/// `n` evenly spaced points on [0, 1] as a column `[n, 1]`, with the values.
fn grid(n: usize, dev: &Device) -> anyhow::Result<(Vec<f64>, Tensor)> {
    let xs: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
    let col = xs.iter().map(|&x| x as f32).collect();
    Ok((xs, Tensor::from_vec(col, &[n, 1], dev)?))
}

/// A `[rows, cols]` tensor from nested rows.
fn mat<const C: usize>(rows: &[[f32; C]], dev: &Device) -> Result<Tensor> {
    Tensor::from_vec(rows.concat(), &[rows.len(), C], dev)
}

/// The deep construction: k hidden ReLU layers of two units, weights set by hand.
fn deep_sawtooth(k: u32, dev: &Device) -> Result<Sequential> {
    let bias = || Tensor::from_vec(vec![0.0f32, -0.5], &[2], dev);
    let mut net = Sequential::new()
        .add(Linear::from_tensors(
            mat(&[[1.0], [1.0]], dev)?,
            Some(bias()?),
        ))
        .add(ReLU);
    for _ in 1..k {
        let w = mat(&[[2.0, -4.0], [2.0, -4.0]], dev)?;
        net = net.add(Linear::from_tensors(w, Some(bias()?))).add(ReLU);
    }
    let out = Linear::from_tensors(mat(&[[2.0, -4.0]], dev)?, Some(Tensor::zeros(&[1], dev)?));
    Ok(net.add(out))
}

/// Root-mean-square difference between `net` on the grid and the sawtooth.
fn rmse(net: &Sequential, xs: &[f64], col: &Tensor, k: u32) -> anyhow::Result<f64> {
    let out = no_grad(|| net.forward(col))?.to_vec::<f32>()?;
    let se: f64 = out
        .iter()
        .zip(xs)
        .map(|(&y, &x)| (y as f64 - sawtooth(x, k)).powi(2))
        .sum();
    Ok((se / xs.len() as f64).sqrt())
}

/// A one-hidden-layer ReLU network with m units. Unit i computes relu(s (x - c_i)) with a
/// random sign s and its kink c_i = (i + 1/2) / m: the kinks are spread evenly over
/// [0, 1] (PyTorch's default would put many of them outside), in the middle of cells
/// rather than on the sawtooth's corners, so nothing about the target is built in.
fn shallow(m: usize, rng: &mut StdRng, dev: &Device) -> Result<Sequential> {
    let mut w = Vec::with_capacity(m);
    let mut b = Vec::with_capacity(m);
    for i in 0..m {
        let s: f32 = if rng.random::<bool>() { 1.0 } else { -1.0 };
        let kink = (i as f32 + 0.5) / m as f32;
        w.push(s);
        b.push(-s * kink);
    }
    let hidden = Linear::from_tensors(
        Tensor::from_vec(w, &[m, 1], dev)?,
        Some(Tensor::from_vec(b, &[m], dev)?),
    );
    Ok(Sequential::new()
        .add(hidden)
        .add(ReLU)
        .add(Linear::new(dev, m, 1)))
}

/// Sets the output layer to its least-squares optimum for the current hidden layer. The
/// output is linear in those weights, so this is exact; gradient descent alone gets there
/// very slowly, because the hidden units' ramps are nearly parallel and the sawtooth is
/// made of their small differences.
fn least_squares_readout(net: &Sequential, x: &Tensor, y: &[f32]) -> anyhow::Result<()> {
    // Features: the hidden activations plus a constant 1 for the bias, [n, m + 1].
    let hidden = no_grad(|| net.forward_all(x))?[1].to_vec::<f32>()?;
    let n = y.len();
    let m = hidden.len() / n;
    let p = m + 1;
    let feature = |j: usize, i: usize| if i < m { hidden[j * m + i] as f64 } else { 1.0 };
    // Normal equations (A^T A + tiny ridge) w = A^T y, solved by Cholesky in f64.
    let mut ata = vec![0.0f64; p * p];
    let mut aty = vec![0.0f64; p];
    for (j, &yj) in y.iter().enumerate() {
        for r in 0..p {
            aty[r] += feature(j, r) * yj as f64;
            for c in 0..=r {
                ata[r * p + c] += feature(j, r) * feature(j, c);
            }
        }
    }
    let ridge = 1e-10 * (0..p).map(|i| ata[i * p + i]).sum::<f64>() / p as f64;
    let mut l = vec![0.0f64; p * p]; // A^T A + ridge = L L^T
    for r in 0..p {
        for c in 0..=r {
            let dot: f64 = (0..c).map(|t| l[r * p + t] * l[c * p + t]).sum();
            let v = ata[r * p + c] - dot;
            l[r * p + c] = if r == c {
                (v + ridge).max(1e-300).sqrt()
            } else {
                v / l[c * p + c]
            };
        }
    }
    let mut z = vec![0.0f64; p]; // L z = A^T y
    for r in 0..p {
        let dot: f64 = (0..r).map(|t| l[r * p + t] * z[t]).sum();
        z[r] = (aty[r] - dot) / l[r * p + r];
    }
    let mut sol = vec![0.0f64; p]; // L^T w = z
    for r in (0..p).rev() {
        let dot: f64 = (r + 1..p).map(|t| l[t * p + r] * sol[t]).sum();
        sol[r] = (z[r] - dot) / l[r * p + r];
    }
    let sol: Vec<f32> = sol.iter().map(|&v| v as f32).collect();
    let dev = x.device();
    for (name, param) in net.named_parameters() {
        match name.as_str() {
            "2.weight" => param.copy_from(&Tensor::from_vec(sol[..m].to_vec(), &[1, m], dev)?)?,
            "2.bias" => param.copy_from(&Tensor::from_vec(vec![sol[m]], &[1], dev)?)?,
            _ => {}
        }
    }
    Ok(())
}

/// Full-batch Adam on the mean squared error.
fn train(
    net: &Sequential,
    x: &Tensor,
    y: &Tensor,
    args: &Args,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let mut opt = Adam::new(net.parameters(), args.lr);
    for step in 0..args.steps {
        if step == args.steps * 3 / 4 {
            opt.set_lr(args.lr / 10.0);
        }
        opt.zero_grad();
        let loss = net.forward(x)?.mse_loss(y)?;
        loss.backward()?;
        opt.step()?;
        if step % 100 == 0 || step + 1 == args.steps {
            bar.set_message(format!("loss {:.2e}", loss.item()?));
        }
        bar.inc(1);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;
    anyhow::ensure!(args.max_k >= 2, "--max-k must be at least 2");
    let ks: Vec<u32> = (2..=args.max_k).collect();
    let (xs_eval, col_eval) = grid(2001, &dev)?; // dense grid for measuring errors

    // (a) The deep construction is exact.
    println!("(a) deep: k hidden layers of 2 ReLUs, weights set by hand");
    let mut deep = Vec::new();
    for &k in &ks {
        let net = deep_sawtooth(k, &dev)?;
        let out = net.forward(&col_eval)?.to_vec::<f32>()?;
        let max_err = out
            .iter()
            .zip(&xs_eval)
            .map(|(&y, &x)| (y as f64 - sawtooth(x, k)).abs())
            .fold(0.0, f64::max);
        println!(
            "    k = {k}: {:3} teeth, {:3} parameters, max |net(x) - t^k(x)| on {} points = {max_err:.1e}",
            1 << (k - 1),
            net.num_parameters(),
            xs_eval.len()
        );
        deep.push((k, net.num_parameters(), max_err));
    }

    // (b) Shallow networks of growing width, trained on each sawtooth.
    println!(
        "\n(b) shallow: Linear(1, m) -> ReLU -> Linear(m, 1): least-squares output layer, \
         then {} full-batch Adam steps on MSE",
        args.steps
    );
    let (xs_train, x_train) = grid(args.points, &dev)?;
    let mut rng = StdRng::seed_from_u64(args.common.seed);
    // errors[ki][wi] = (parameters, RMSE); fits for k = 4 are kept for the second chart.
    let mut errors = vec![Vec::new(); ks.len()];
    let mut fits_k4 = Vec::new();
    let bar = common::progress(
        args.steps * (ks.len() * args.widths.len()) as u64,
        "shallow",
    );
    for (ki, &k) in ks.iter().enumerate() {
        let target: Vec<f32> = xs_train.iter().map(|&x| sawtooth(x, k) as f32).collect();
        let y_train = Tensor::from_vec(target.clone(), &[args.points, 1], &dev)?;
        for &m in &args.widths {
            bar.set_prefix(format!("k={k} m={m}"));
            let net = shallow(m, &mut rng, &dev)?;
            least_squares_readout(&net, &x_train, &target)?;
            train(&net, &x_train, &y_train, &args, &bar)?;
            let err = rmse(&net, &xs_eval, &col_eval, k)?;
            errors[ki].push((net.num_parameters(), err));
            if k == 4 {
                let out = no_grad(|| net.forward(&col_eval))?.to_vec::<f32>()?;
                fits_k4.push((m, out));
            }
        }
    }
    bar.finish_and_clear();

    // The table: RMSE on the dense grid, one row per k, one column per width.
    print!("    RMSE    ");
    for m in &args.widths {
        print!("{:>9}", format!("m={m}"));
    }
    println!("   (pieces needed: 2^k; a net with m units has at most m + 1)");
    for (ki, &k) in ks.iter().enumerate() {
        print!("    k = {k}    ");
        for (_, e) in &errors[ki] {
            print!("{e:>9.1e}");
        }
        println!("   deep: {} parameters, exact", deep[ki].1);
    }
    print!("    params  ");
    for (p, _) in &errors[0] {
        print!("{p:>9}");
    }
    println!();
    println!("    (0.29 is the error of the best constant, 1/2: no fit at all)");
    for (ki, &k) in ks.iter().enumerate() {
        let first_good = args
            .widths
            .iter()
            .zip(&errors[ki])
            .find(|(_, (_, e))| *e < GOOD);
        match first_good {
            Some((m, (p, _))) => println!(
                "    k = {k} ({:3} pieces): shallow RMSE < {GOOD} first at m = {m} ({p} parameters); deep: {} parameters",
                1 << k,
                deep[ki].1
            ),
            None => println!(
                "    k = {k} ({:3} pieces): no shallow width tried reaches RMSE < {GOOD}; deep: {} parameters",
                1 << k,
                deep[ki].1
            ),
        }
    }

    common::register_font();
    plot_errors(&ks, &errors, &deep)?;
    plot_fits(&xs_eval, &fits_k4)?;
    Ok(())
}

/// Where the exact deep networks are drawn on the log axis (their error is 0 up to
/// float rounding).
const FLOOR: f64 = 1e-7;
/// An RMSE counted as a fit: a third of the best constant's 0.29.
const GOOD: f64 = 0.1;

fn color(i: usize) -> RGBColor {
    let c = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
    ];
    c[i % c.len()]
}

/// Fit error vs parameter count, log-log.
fn plot_errors(
    ks: &[u32],
    errors: &[Vec<(usize, f64)>],
    deep: &[(u32, usize, f64)],
) -> anyhow::Result<()> {
    let path = common::out_dir()?.join("deep_vs_shallow.png");
    common::save_png(&path, (1000, 650), |root| {
        root.fill(&WHITE)?;
        let max_p = errors.iter().flatten().map(|e| e.0).max().unwrap_or(10) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Sawtooth t^k: fit error vs number of parameters",
                ("sans-serif", 24),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(
                (5.0..max_p * 1.5).log_scale(),
                (FLOOR / 3.0..2.0).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("parameters (log scale)")
            .y_desc("RMSE on 2001 points (log scale)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()?;
        for (ki, &k) in ks.iter().enumerate() {
            let c = color(ki);
            let pts: Vec<(f64, f64)> = errors[ki]
                .iter()
                .map(|&(p, e)| (p as f64, e.max(FLOOR)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
                .label(format!("shallow, k = {k} ({} teeth)", 1 << (k - 1)))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        }
        // The deep constructions, at the floor (their error is float rounding, ~1e-7 or 0).
        for (ki, &(k, p, _)) in deep.iter().enumerate() {
            let c = color(ki);
            let pt = (p as f64, FLOOR);
            let series =
                chart.draw_series(std::iter::once(TriangleMarker::new(pt, 9, c.filled())))?;
            if ki == 0 {
                series
                    .label("deep, exact (2 units/layer, k layers), drawn at 1e-7")
                    .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, BLACK.filled()));
            }
            chart.draw_series(std::iter::once(Text::new(
                format!("k={k}"),
                (p as f64 * 0.93, FLOOR * 2.2),
                ("sans-serif", 14),
            )))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
        Ok(())
    })?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The k = 4 sawtooth with the shallow fits of a few widths.
fn plot_fits(xs: &[f64], fits: &[(usize, Vec<f32>)]) -> anyhow::Result<()> {
    let path = common::out_dir()?.join("deep_vs_shallow_fits.png");
    common::save_png(&path, (1000, 550), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "k = 4: the sawtooth (8 teeth, 16 pieces) and one-hidden-layer fits",
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..1.0, -0.1..1.45)?;
        chart
            .configure_mesh()
            .x_desc("x")
            .y_desc("y")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()?;
        let truth: Vec<(f64, f64)> = xs.iter().map(|&x| (x, sawtooth(x, 4))).collect();
        chart
            .draw_series(LineSeries::new(truth, BLACK.stroke_width(3)))?
            .label("t^4 (= the deep net, exactly)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3)));
        let shown: Vec<&(usize, Vec<f32>)> = fits
            .iter()
            .filter(|(m, _)| [8, 16, 32, 64].contains(m))
            .collect();
        for (i, (m, out)) in shown.into_iter().enumerate() {
            let c = color(i + 1);
            let pts: Vec<(f64, f64)> = xs.iter().zip(out).map(|(&x, &y)| (x, y as f64)).collect();
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                .label(format!("shallow, m = {m} units"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
        Ok(())
    })?;
    println!("wrote {}", path.display());
    Ok(())
}
