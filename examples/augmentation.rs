//! Data augmentation as the lecture lists it, applied on the batch's device: random
//! translation (shifts of up to 3 pixels, zero fill), horizontal and vertical
//! reflection, random crops after padding, and changing RGB intensities (AlexNet's PCA
//! colour augmentation, plus brightness and contrast jitter).
//!
//! The bundled 8x8 digits are upsampled to 32x32 and coloured (a fixed per-pixel tint,
//! so there is colour to change); the PCA components are fitted to those RGB pixels.
//! Each row of `out/augmentation.png` shows one image, then the same image as eight
//! successive training steps would see it.
//!
//! ```text
//! cargo run --release --example augmentation -- --device cpu
//! ```

mod common;

use clap::Parser;
use plotters::prelude::*;
use wgrad::data::augment::{Augment, PcaColor};
use wgrad::data::make_batch;
use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "A grid of training images and augmented versions of each")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Images (rows) to show.
    #[arg(long, default_value_t = 6)]
    images: usize,
    /// Augmented versions (columns) of each.
    #[arg(long, default_value_t = 8)]
    versions: usize,
}

/// Digits as 32x32 RGB images: the grey level tinted by a colour that varies over the image.
fn rgb_digits(n: usize, dev: &Device) -> anyhow::Result<Tensor> {
    let ds = wgrad::data::digits::load()?;
    let idx: Vec<usize> = (0..n).collect();
    let grey = make_batch(&ds, &idx, dev)?
        .x
        .reshape(&[n, 1, 8, 8])?
        .upsample_nearest((4, 4))?;
    let mut tint = Vec::with_capacity(3 * 32 * 32);
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                let v = match c {
                    0 => 0.4 + 0.6 * x as f32 / 31.0,
                    1 => 0.3 + 0.5 * y as f32 / 31.0,
                    _ => 0.9 - 0.6 * x as f32 / 31.0,
                };
                tint.push(v);
            }
        }
    }
    Ok(grey.mul(&Tensor::from_vec(tint, &[1, 3, 32, 32], dev)?)?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;
    let x = rgb_digits(args.images, &dev)?;
    let pca = PcaColor::fit(&x.to_vec::<f32>()?, 32, 32, 0.5)?;
    println!(
        "RGB principal components: eigenvalues {:?}",
        pca.eigenvalues
    );
    let aug = Augment::new(args.common.seed)
        .random_crop(3, (32, 32))
        .horizontal_flip(0.5)
        .vertical_flip(0.2)
        .brightness(0.3)
        .contrast(0.3)
        .pca_color(pca);
    let mut columns = vec![x.clone()];
    for step in 0..args.versions as u64 {
        columns.push(aug.apply(&x, step)?);
    }

    // Draw: rows are images, columns are the original then each augmented version.
    let (cell, gap) = (96u32, 8u32);
    let width = (cell + gap) * columns.len() as u32 + gap;
    let height = (cell + gap) * args.images as u32 + gap + 30;
    let path = common::out_dir()?.join("augmentation.png");
    common::register_font();
    common::save_png(&path, (width, height), |root| {
        root.fill(&WHITE)?;
        root.draw(&Text::new(
        "original | eight augmented training steps (crop after padding, flips, brightness, contrast, PCA colour)",
        (gap as i32, 8),
        ("sans-serif", 15),
    ))?;
        for (col, t) in columns.iter().enumerate() {
            let v = t.to_vec::<f32>()?;
            for img in 0..args.images {
                let (x0, y0) = (
                    gap + col as u32 * (cell + gap),
                    30 + gap + img as u32 * (cell + gap),
                );
                for py in 0..32u32 {
                    for px in 0..32u32 {
                        let at =
                            |c: usize| v[((img * 3 + c) * 32 + py as usize) * 32 + px as usize];
                        let rgb = [0, 1, 2].map(|c| (at(c).clamp(0.0, 1.0) * 255.0) as u8);
                        let colour = RGBColor(rgb[0], rgb[1], rgb[2]);
                        let (sx, sy) = ((x0 + px * 3) as i32, (y0 + py * 3) as i32);
                        root.draw(&Rectangle::new(
                            [(sx, sy), (sx + 3, sy + 3)],
                            colour.filled(),
                        ))?;
                    }
                }
            }
        }
        Ok(())
    })?;
    println!("wrote {}", path.display());
    Ok(())
}
