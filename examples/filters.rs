//! Hierarchical compositionality, seen from inside a trained network: the digits CNN of
//! `digits_cnn`
//!
//! ```text
//! [1, 8, 8] -> Conv2d(1, 16, 3, padding 1) -> ReLU -> Conv2d(16, 32, 3, padding 1) -> ReLU
//!           -> MaxPool2d(2) -> Flatten -> Linear(512, 64) -> ReLU -> Dropout(0.25) -> Linear(64, 10)
//! ```
//!
//! is trained on the bundled 8x8 digits, then its first-layer filters (small edge and
//! blob detectors) and the feature maps of one test digit after each stage are drawn:
//! the first layer responds to strokes at given places, the second combines them into
//! larger parts, and pooling keeps where each part was found, at half the resolution.
//!
//! ```text
//! cargo run --release --example filters -- --device cpu
//! cargo run --release --example filters -- --device gpu --epochs 5
//! ```
//!
//! It writes `out/filters_layer1.png` and `out/filters_feature_maps.png`.

mod common;

use std::time::Instant;

use clap::Parser;
use plotters::coord::Shift;
use plotters::prelude::*;

use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "The learnt filters and feature maps of the digits CNN")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Passes over the training images.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Which test digit's feature maps to draw.
    #[arg(long, default_value_t = 0)]
    index: usize,
}

/// Draws an `h x w` image (row-major `values`) with its top-left corner at `(x0, y0)`,
/// `cell` pixels per value, `grey` turning a value into a grey level, and a thin frame.
#[allow(clippy::too_many_arguments)]
fn draw_image(
    area: &DrawingArea<BitMapBackend, Shift>,
    (x0, y0): (i32, i32),
    values: &[f32],
    h: usize,
    w: usize,
    cell: i32,
    grey: impl Fn(f32) -> u8,
) -> anyhow::Result<()> {
    for r in 0..h {
        for c in 0..w {
            let g = grey(values[r * w + c]);
            let (x, y) = (x0 + c as i32 * cell, y0 + r as i32 * cell);
            area.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                RGBColor(g, g, g).filled(),
            ))?;
        }
    }
    area.draw(&Rectangle::new(
        [
            (x0 - 1, y0 - 1),
            (x0 + w as i32 * cell, y0 + h as i32 * cell),
        ],
        BLACK.mix(0.5),
    ))?;
    Ok(())
}

/// `(min, max)` of a slice.
fn min_max(v: &[f32]) -> (f32, f32) {
    v.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// The 16 first-layer filters, each scaled to its own range (black = most negative
/// weight, white = most positive).
fn draw_filters(path: &std::path::Path, weights: &[f32], count: usize) -> anyhow::Result<()> {
    const CELL: i32 = 28;
    const PER_ROW: usize = 8;
    const GAP: i32 = 24;
    let side = 3 * CELL;
    let rows = count.div_ceil(PER_ROW);
    let width = GAP + PER_ROW as i32 * (side + GAP);
    let height = 80 + rows as i32 * (side + GAP + 20);
    common::save_png(path, (width as u32, height as u32), |root| {
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            "First-layer filters (3x3) of the digits CNN",
            (GAP, 12),
            ("sans-serif", 22),
        ))?;
        root.draw(&Text::new(
            "each scaled to its own range: black = most negative weight, white = most positive",
            (GAP, 44),
            ("sans-serif", 15),
        ))?;
        for k in 0..count {
            let f = &weights[k * 9..(k + 1) * 9];
            let (lo, hi) = min_max(f);
            let span = (hi - lo).max(1e-8);
            let x0 = GAP + (k % PER_ROW) as i32 * (side + GAP);
            let y0 = 80 + (k / PER_ROW) as i32 * (side + GAP + 20);
            root.draw(&Text::new(
                format!("filter {k}"),
                (x0, y0),
                ("sans-serif", 14),
            ))?;
            draw_image(&root, (x0, y0 + 20), f, 3, 3, CELL, |v| {
                (255.0 * (v - lo) / span).round() as u8
            })?;
        }
        Ok(())
    })?;
    Ok(())
}

/// One stage of the feature-map picture: a title and its maps.
struct Panel {
    title: String,
    maps: Vec<f32>,
    count: usize,
    size: usize,
}

/// The input digit and its feature maps after each stage, each map scaled to its own
/// maximum (ink dark, as in the input).
fn draw_feature_maps(path: &std::path::Path, panels: &[Panel]) -> anyhow::Result<()> {
    const PER_ROW: usize = 8;
    const TILE: i32 = 64; // every map is drawn 64 pixels wide
    const GAP: i32 = 10;
    const HEAD: i32 = 34; // room for a panel's title
    let width = GAP + PER_ROW as i32 * (TILE + GAP);
    let panel_height = |p: &Panel| HEAD + p.count.div_ceil(PER_ROW) as i32 * (TILE + GAP) + GAP;
    let height = 50 + panels.iter().map(panel_height).sum::<i32>();
    common::save_png(path, (width as u32, height as u32), |root| {
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            "One test digit through the digits CNN (each map scaled to its own maximum)",
            (GAP, 14),
            ("sans-serif", 17),
        ))?;
        let mut y = 50;
        for p in panels {
            root.draw(&Rectangle::new(
                [(2, y - 4), (width - 2, y + panel_height(p) - 8)],
                BLACK.mix(0.25),
            ))?;
            root.draw(&Text::new(
                p.title.clone(),
                (GAP, y + 4),
                ("sans-serif", 16),
            ))?;
            let cell = TILE / p.size as i32;
            let n = p.size * p.size;
            for k in 0..p.count {
                let m = &p.maps[k * n..(k + 1) * n];
                let (_, hi) = min_max(m);
                let x0 = GAP + (k % PER_ROW) as i32 * (TILE + GAP);
                let y0 = y + HEAD + (k / PER_ROW) as i32 * (TILE + GAP);
                draw_image(&root, (x0, y0), m, p.size, p.size, cell, |v| {
                    let v = if hi > 0.0 {
                        (v / hi).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    (255.0 * (1.0 - v)).round() as u8
                })?;
            }
            y += panel_height(p);
        }
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

    let model = common::digits_cnn(&dev);
    println!("model: {} parameters", model.num_parameters());
    let start = Instant::now();
    common::train_digits_cnn(
        &model,
        &mut loader,
        args.epochs,
        args.lr,
        None,
        |epoch, loss| Ok(format!("epoch {epoch}: loss {loss:.4}")),
    )?;
    model.eval();
    let acc = common::accuracy(&no_grad(|| model.forward(&test_x))?, &test_batch.y)?;
    println!(
        "trained {} epochs in {:.1} s on {}: test accuracy {:.2}%",
        args.epochs,
        start.elapsed().as_secs_f64(),
        dev.name(),
        100.0 * acc
    );

    let out = common::out_dir()?;
    common::register_font();

    // The first layer's filters: weight [16, 1, 3, 3].
    let (_, w1) = model
        .named_parameters()
        .into_iter()
        .find(|(name, _)| name == "0.weight")
        .ok_or_else(|| anyhow::anyhow!("the model has no 0.weight"))?;
    let png = out.join("filters_layer1.png");
    draw_filters(&png, &w1.to_vec::<f32>()?, w1.shape()[0])?;
    println!("wrote {}", png.display());

    // One test digit and every layer's output, in eval mode without a graph.
    let i = args.index.min(test_batch.y.shape()[0] - 1);
    let x = test_x.narrow(0, i, 1)?;
    let outs = no_grad(|| model.forward_all(&x))?;
    let label = test_batch.y.to_vec::<u32>()?[i];
    let logits = outs.last().expect("the model has layers");
    let predicted = logits.argmax(1, false)?.to_vec::<u32>()?[0];
    let panel = |title: String, t: &Tensor| -> anyhow::Result<Panel> {
        let s = t.shape();
        Ok(Panel {
            title,
            maps: t.to_vec::<f32>()?,
            count: s[1],
            size: s[2],
        })
    };
    let panels = [
        panel(
            format!("input: test digit {i}, label {label}, predicted {predicted}"),
            &x,
        )?,
        panel("after conv1 + ReLU: 16 maps, 8x8".into(), &outs[1])?,
        panel("after conv2 + ReLU: 32 maps, 8x8".into(), &outs[3])?,
        panel("after max pool 2x2: 32 maps, 4x4".into(), &outs[4])?,
    ];
    let png = out.join("filters_feature_maps.png");
    draw_feature_maps(&png, &panels)?;
    println!("wrote {}", png.display());
    Ok(())
}
