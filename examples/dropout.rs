//! Overfitting, and dropout against it. A wide network
//!
//! ```text
//! 64 -> Linear(64, 512) -> ReLU -> Linear(512, 512) -> ReLU -> Linear(512, 10)
//! ```
//!
//! (about 300,000 parameters) is trained on only 150 of the digits, twice from the same
//! initial weights: once as it is, once with `Dropout(0.5)` after each ReLU. Both are
//! measured after every epoch, in evaluation mode (`model.eval()`: dropout off), on their
//! training images and on the same 359 held-out test images. Without dropout the network
//! memorises its training images (100% there) and the distance to the test accuracy, the
//! generalisation gap, stays wide; with dropout each step trains a random thinned
//! network, so no unit can rely on particular others, and the gap narrows.
//!
//! ```text
//! cargo run --release --example dropout -- --device cpu
//! cargo run --release --example dropout -- --train-size 300 --p 0.3 --seed 1
//! ```
//!
//! It writes `out/dropout.png`: training and test accuracy per epoch for both runs.

mod common;

use std::sync::Arc;

use clap::Parser;
use plotters::prelude::*;
use wgrad::data::{make_batch, train_test_split, Batch, Dataset, Subset};
use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "A wide MLP on 150 digits, with and without dropout")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Training images (taken from the training four fifths of the digits).
    #[arg(long, default_value_t = 150)]
    train_size: usize,
    /// Passes over the training images.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Dropout probability in the second run.
    #[arg(long, default_value_t = 0.5)]
    p: f32,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Images per training step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

/// The wide network, with dropout after each hidden layer when `p > 0`.
fn build_model(dev: &Device, p: f32) -> Sequential {
    let mut model = Sequential::new().add(Linear::new(dev, 64, 512)).add(ReLU);
    if p > 0.0 {
        model = model.add(Dropout::new(p));
    }
    model = model.add(Linear::new(dev, 512, 512)).add(ReLU);
    if p > 0.0 {
        model = model.add(Dropout::new(p));
    }
    model.add(Linear::new(dev, 512, 10))
}

/// Accuracy on a whole set, in evaluation mode.
fn evaluate(model: &Sequential, data: &Batch) -> anyhow::Result<f64> {
    model.eval();
    let logits = no_grad(|| model.forward(&data.x))?;
    model.train();
    common::accuracy(&logits, &data.y)
}

/// Training and test accuracy after each epoch.
struct History {
    train: Vec<f64>,
    test: Vec<f64>,
}

fn run(args: &Args, dev: &Device, p: f32, train: &Subset, test: &Batch) -> anyhow::Result<History> {
    // The same seed for both runs: the same initial weights and the same batch order.
    dev.manual_seed(args.common.seed);
    let model = build_model(dev, p);
    let mut opt = Adam::new(model.parameters(), args.lr);
    let mut loader =
        DataLoader::new(Arc::new(train.clone()), args.batch_size, dev).shuffle(args.common.seed);
    let all: Vec<usize> = (0..train.len()).collect();
    let train_all = make_batch(train, &all, dev)?;

    let what = if p > 0.0 {
        format!("dropout {p}")
    } else {
        "no dropout".to_string()
    };
    let bar = common::progress((args.epochs * loader.len()) as u64, &what);
    let mut history = History {
        train: Vec::new(),
        test: Vec::new(),
    };
    model.train();
    for epoch in 1..=args.epochs {
        let mut loss_sum = 0.0;
        let mut batches = 0;
        for batch in loader.epoch() {
            let batch = batch?;
            let loss = model.forward(&batch.x)?.cross_entropy(&batch.y)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            loss_sum += loss.item()?;
            batches += 1;
            bar.inc(1);
        }
        let (tr, te) = (evaluate(&model, &train_all)?, evaluate(&model, test)?);
        bar.set_message(format!(
            "epoch {epoch}: loss {:.4}, train {:.1}%, test {:.1}%",
            loss_sum / batches as f64,
            100.0 * tr,
            100.0 * te
        ));
        history.train.push(tr);
        history.test.push(te);
    }
    bar.finish();
    Ok(history)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;
    let seed = args.common.seed;

    // A seeded split; the training images are the first `train_size` of the training part.
    let digits: Arc<dyn Dataset> = Arc::new(wgrad::data::digits::load()?);
    let (train, test) = train_test_split(digits.clone(), 0.2, seed)?;
    let n = args.train_size.min(train.len());
    let small = Subset::new(digits, train.indices()[..n].to_vec());
    let all_test: Vec<usize> = (0..test.len()).collect();
    let test_batch = make_batch(&test, &all_test, &dev)?;
    println!(
        "data: {n} training images, {} test images; model 64-512-512-10",
        test.len()
    );

    let plain = run(&args, &dev, 0.0, &small, &test_batch)?;
    let dropped = run(&args, &dev, args.p, &small, &test_batch)?;

    println!();
    println!("after {} epochs       train    test     gap", args.epochs);
    for (name, h) in [
        ("without dropout".to_string(), &plain),
        (format!("with dropout {}", args.p), &dropped),
    ] {
        let (tr, te) = (h.train[h.train.len() - 1], h.test[h.test.len() - 1]);
        println!(
            "{name:<20} {:6.1}%  {:6.1}%  {:5.1} points",
            100.0 * tr,
            100.0 * te,
            100.0 * (tr - te)
        );
    }

    let png = common::out_dir()?.join("dropout.png");
    plot(&png, &plain, &dropped, args.p, n)?;
    println!("wrote {}", png.display());
    Ok(())
}

/// One chart with four accuracy curves.
fn plot(
    path: &std::path::Path,
    plain: &History,
    dropped: &History,
    p: f32,
    n: usize,
) -> anyhow::Result<()> {
    common::register_font();
    let root = BitMapBackend::new(path, (900, 550)).into_drawing_area();
    root.fill(&WHITE)?;
    let epochs = plain.train.len().max(1) as f64;
    let all = [&plain.train, &plain.test, &dropped.train, &dropped.test];
    let low = all
        .iter()
        .flat_map(|v| v.iter())
        .copied()
        .fold(1.0, f64::min);
    let low = ((100.0 * low - 5.0) / 10.0).floor().max(0.0) * 10.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Overfitting {n} digits: a 64-512-512-10 MLP with and without dropout"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(1.0..epochs, low..100.5)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy (%)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;

    // Thick lines: training accuracy; thin, lighter lines: test accuracy.
    let curves = [
        (
            &plain.train,
            "no dropout: train".to_string(),
            RED.to_rgba(),
            3,
        ),
        (&plain.test, "no dropout: test".to_string(), RED.mix(0.5), 2),
        (
            &dropped.train,
            format!("dropout {p}: train"),
            BLUE.to_rgba(),
            3,
        ),
        (
            &dropped.test,
            format!("dropout {p}: test"),
            BLUE.mix(0.5),
            2,
        ),
    ];
    for (values, label, color, width) in curves {
        let style = color.stroke_width(width);
        chart
            .draw_series(LineSeries::new(
                values
                    .iter()
                    .enumerate()
                    .map(|(e, &a)| (e as f64 + 1.0, 100.0 * a)),
                style,
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}
