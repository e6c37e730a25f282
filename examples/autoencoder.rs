//! Convolutional autoencoders on the bundled 8x8 digits: the network learns to copy its
//! input through a narrower code, with the mean squared error between input and output
//! as the loss and no labels at all.
//!
//! ```text
//! encoder: [1, 8, 8] -> Conv2d(1, 16, 3, padding 1) -> ReLU
//!                    -> Conv2d(16, 32, 3, stride 2, padding 1) -> ReLU          -> [32, 4, 4]
//! decoder: [32, 4, 4] -> ConvTranspose2d(32, 16, 3, stride 2, padding 1, output_padding 1)
//!                     -> ReLU -> Conv2d(16, 1, 3, padding 1) -> Sigmoid          -> [1, 8, 8]
//! ```
//!
//! A second model squeezes the same encoder through a 2-D bottleneck
//! (`... -> Flatten -> Linear(512, 2)`, decoder `Linear(2, 512) -> ReLU -> [32, 4, 4] -> ...`)
//! so every digit becomes a point in the plane; the classes, never shown to the network,
//! still gather in clusters.
//!
//! ```text
//! cargo run --release --example autoencoder -- --device cpu
//! cargo run --release --example autoencoder -- --device gpu --epochs 5 --code-epochs 10
//! ```
//!
//! It writes `out/autoencoder_reconstructions.png` (test digits above their
//! reconstructions) and `out/autoencoder_codes.png` (the 2-D codes of the test digits).

mod common;

use std::time::Instant;

use clap::Parser;
use plotters::prelude::*;

use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "Convolutional autoencoders on the 8x8 digits")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Passes over the training images for the convolutional autoencoder.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Passes over the training images for the 2-D bottleneck autoencoder (0 skips it).
    #[arg(long, default_value_t = 60)]
    code_epochs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Test digits shown in the reconstruction picture.
    #[arg(long, default_value_t = 12)]
    show: usize,
}

/// Reshapes every example to a fixed shape (the batch dimension is kept): the inverse
/// of `Flatten`, PyTorch's `nn.Unflatten(1, shape)`.
/// Derived too: a plain `Vec<usize>` setting is no parameter and no child.
#[derive(Module)]
struct Unflatten {
    shape: Vec<usize>,
}

impl Unflatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut shape = vec![x.shape()[0]];
        shape.extend(&self.shape);
        x.reshape(&shape)
    }
}

/// An encoder and a decoder. `#[derive(Module)]` makes both children (parameters
/// `encoder.0.weight`, ..., `decoder.0.bias`, ...), and the derived `Module::forward`
/// calls the inherent `forward` below.
#[derive(Module)]
struct AutoEncoder {
    encoder: Sequential,
    decoder: Sequential,
}

impl AutoEncoder {
    /// Runs the encoder, then the decoder.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.encoder.forward(x)?)
    }
}

/// The convolutional part of the encoder: `[1, 8, 8] -> [32, 4, 4]`.
fn conv_encoder(dev: &Device) -> Sequential {
    Sequential::new()
        .add(Conv2d::new(dev, 1, 16, 3).padding(1))
        .add(ReLU)
        .add(Conv2d::new(dev, 16, 32, 3).stride(2).padding(1))
        .add(ReLU)
}

/// Appends the convolutional part of the decoder: `[32, 4, 4] -> [1, 8, 8]`.
/// Output size of the transposed convolution: (4 - 1) * 2 - 2 * 1 + 3 + 1 = 8.
fn conv_decoder(dev: &Device, head: Sequential) -> Sequential {
    head.add(
        ConvTranspose2d::new(dev, 32, 16, 3, 2)
            .padding(1)
            .output_padding(1),
    )
    .add(ReLU)
    .add(Conv2d::new(dev, 16, 1, 3).padding(1))
    .add(Sigmoid)
}

fn conv_autoencoder(dev: &Device) -> AutoEncoder {
    AutoEncoder {
        encoder: conv_encoder(dev),
        decoder: conv_decoder(dev, Sequential::new()),
    }
}

fn bottleneck_autoencoder(dev: &Device) -> AutoEncoder {
    AutoEncoder {
        encoder: conv_encoder(dev)
            .add(Flatten::default())
            .add(Linear::new(dev, 32 * 4 * 4, 2)),
        decoder: conv_decoder(
            dev,
            Sequential::new()
                .add(Linear::new(dev, 2, 32 * 4 * 4))
                .add(ReLU)
                .add(Unflatten {
                    shape: vec![32, 4, 4],
                }),
        ),
    }
}

/// Trains `model` to reproduce its input, printing the train and test losses per epoch.
/// Returns the final (train, test) loss.
fn train(
    name: &str,
    model: &AutoEncoder,
    loader: &mut DataLoader,
    test_x: &Tensor,
    epochs: usize,
    lr: f64,
) -> anyhow::Result<(f64, f64)> {
    println!("{name}: {} parameters", model.num_parameters());
    let mut opt = Adam::new(model.parameters(), lr);
    let start = Instant::now();
    let (mut train_loss, mut test_loss) = (f64::NAN, f64::NAN);
    for epoch in 1..=epochs {
        let dev = test_x.device();
        let mut loss_sum = Tensor::scalar(0.0, dev)?;
        let mut seen = 0usize;
        for batch in loader.epoch() {
            let x = common::digit_images(&batch?.x)?;
            let n = x.shape()[0];
            let loss = model.forward(&x)?.mse_loss(&x)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            // Weighted by the batch size so a short last batch counts for what it holds.
            loss_sum = loss_sum.add(&loss.detach().mul_scalar(n as f64)?)?;
            seen += n;
        }
        train_loss = loss_sum.item()? / seen.max(1) as f64;
        model.eval();
        test_loss = no_grad(|| model.forward(test_x)?.mse_loss(test_x))?.item()?;
        model.train();
        println!("  epoch {epoch:3}: train MSE {train_loss:.5}, test MSE {test_loss:.5}");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name}: {epochs} epochs in {secs:.1} s ({:.2} s per epoch): train MSE {train_loss:.5}, test MSE {test_loss:.5}",
        secs / epochs.max(1) as f64
    );
    Ok((train_loss, test_loss))
}

/// Test digits (top row) above their reconstructions (bottom row), as grey blocks.
fn draw_reconstructions(
    path: &std::path::Path,
    inputs: &[f32],
    outputs: &[f32],
    n: usize,
    test_mse: f64,
) -> anyhow::Result<()> {
    const CELL: i32 = 10; // pixels per image pixel
    const GAP: i32 = 12;
    const LEFT: i32 = 150; // room for the row labels
    const TOP: i32 = 50; // room for the title
    let side = 8 * CELL;
    let width = LEFT + n as i32 * (side + GAP) + GAP;
    let height = TOP + 2 * (side + GAP) + GAP;
    common::save_png(path, (width as u32, height as u32), |root| {
        root.fill(&WHITE)?;
        let title = format!("Convolutional autoencoder on test digits (test MSE {test_mse:.4})");
        root.draw(&Text::new(title, (GAP, 14), ("sans-serif", 20)))?;
        for (row, (label, data)) in [("input", inputs), ("reconstruction", outputs)]
            .iter()
            .enumerate()
        {
            let y0 = TOP + row as i32 * (side + GAP);
            root.draw(&Text::new(
                label.to_string(),
                (GAP, y0 + side / 2 - 8),
                ("sans-serif", 16),
            ))?;
            for k in 0..n {
                let x0 = LEFT + k as i32 * (side + GAP);
                for p in 0..64 {
                    let v = data[k * 64 + p].clamp(0.0, 1.0);
                    // Ink is dark: 0 draws white, 1 draws black.
                    let g = (255.0 * (1.0 - v)).round() as u8;
                    let (r, c) = ((p / 8) as i32, (p % 8) as i32);
                    let (x, y) = (x0 + c * CELL, y0 + r * CELL);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + CELL, y + CELL)],
                        RGBColor(g, g, g).filled(),
                    ))?;
                }
                root.draw(&Rectangle::new(
                    [(x0 - 1, y0 - 1), (x0 + side, y0 + side)],
                    BLACK.mix(0.4),
                ))?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// The 2-D codes of the test digits, one colour per class, with a legend.
fn draw_codes(path: &std::path::Path, codes: &[f32], labels: &[u32]) -> anyhow::Result<()> {
    let xs = codes.iter().step_by(2).copied();
    let ys = codes.iter().skip(1).step_by(2).copied();
    let range = |it: &mut dyn Iterator<Item = f32>| {
        let (lo, hi) = it.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let pad = 0.05 * (hi - lo).max(1e-3);
        (lo - pad) as f64..(hi + pad) as f64
    };
    let (xr, yr) = (range(&mut xs.clone()), range(&mut ys.clone()));
    common::save_png(path, (760, 640), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "2-D autoencoder codes of the test digits",
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(xr, yr)?;
        chart
            .configure_mesh()
            .x_desc("code[0]")
            .y_desc("code[1]")
            .draw()?;
        let colours = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
            RGBColor(214, 39, 40),
            RGBColor(148, 103, 189),
            RGBColor(140, 86, 75),
            RGBColor(227, 119, 194),
            RGBColor(127, 127, 127),
            RGBColor(188, 189, 34),
            RGBColor(23, 190, 207),
        ];
        for (class, &colour) in colours.iter().enumerate() {
            let points: Vec<(f64, f64)> = labels
                .iter()
                .enumerate()
                .filter(|(_, &l)| l as usize == class)
                .map(|(i, _)| (codes[2 * i] as f64, codes[2 * i + 1] as f64))
                .collect();
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, colour.mix(0.8).filled())),
                )?
                .label(format!("{class}"))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
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
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;
    let seed = args.common.seed;

    let (mut loader, test_batch) = common::digits_split(seed, args.batch_size, &dev)?;
    let test_x = common::digit_images(&test_batch.x)?;
    println!(
        "{} training and {} test digits",
        loader.dataset().len(),
        test_batch.y.shape()[0]
    );
    common::register_font();
    let out = common::out_dir()?;

    // 1. The convolutional autoencoder with a [32, 4, 4] code.
    let model = conv_autoencoder(&dev);
    let (_, test_mse) = train(
        "conv autoencoder ([32, 4, 4] code)",
        &model,
        &mut loader,
        &test_x,
        args.epochs,
        args.lr,
    )?;
    let n = args.show.clamp(1, test_batch.y.shape()[0]);
    let shown = test_x.narrow(0, 0, n)?;
    model.eval();
    let recon = no_grad(|| model.forward(&shown))?;
    let png = out.join("autoencoder_reconstructions.png");
    draw_reconstructions(
        &png,
        &shown.to_vec::<f32>()?,
        &recon.to_vec::<f32>()?,
        n,
        test_mse,
    )?;
    println!("wrote {}", png.display());

    // 2. The same idea through a 2-D bottleneck, to look at the code space.
    if args.code_epochs > 0 {
        let model = bottleneck_autoencoder(&dev);
        train(
            "2-D bottleneck autoencoder",
            &model,
            &mut loader,
            &test_x,
            args.code_epochs,
            args.lr,
        )?;
        model.eval();
        let codes = no_grad(|| model.encoder.forward(&test_x))?.to_vec::<f32>()?;
        let labels = test_batch.y.to_vec::<u32>()?;
        let png = out.join("autoencoder_codes.png");
        draw_codes(&png, &codes, &labels)?;
        println!("wrote {}", png.display());
    }
    Ok(())
}
