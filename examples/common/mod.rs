//! Pieces the examples share: the `--device` / `--seed` flags, the bundled chart font,
//! progress bars, the output folder and accuracy. Not an example itself.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, IntoDrawingArea};

use indicatif::{ProgressBar, ProgressStyle};
use wgrad::prelude::*;

/// The flags every example accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Where to run: cpu, gpu, or best (a hardware GPU if there is one, else the CPU).
    #[arg(long, default_value = "best")]
    pub device: String,
    /// Seed for initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl CommonArgs {
    /// The chosen device, seeded; prints which one and why.
    pub fn device(&self) -> anyhow::Result<Device> {
        let (dev, why) = match self.device.as_str() {
            "cpu" => (Device::cpu(), "--device cpu".to_string()),
            "gpu" => (Device::gpu()?, "--device gpu".to_string()),
            "best" => Device::best_with_reason(),
            other => anyhow::bail!("--device must be cpu, gpu or best, not {other}"),
        };
        dev.manual_seed(self.seed);
        println!("device: {} ({why})", dev.name());
        Ok(dev)
    }
}

/// Registers the bundled DejaVu Sans as the charts' "sans-serif" font (no system fonts
/// needed). Call once before drawing.
pub fn register_font() {
    static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT)
            .is_err()
        {
            eprintln!("warning: the bundled font could not be loaded; charts will have no text");
        }
    });
}

/// Draws a picture of `size` pixels with `draw` and writes it to `path` as an RGB PNG.
/// Plotters renders into memory and the `png` crate encodes, rather than plotters'
/// `bitmap_encoder`, which compiles the whole `image` crate (JPEG, BMP, ...) for this.
pub fn save_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw(root.clone())?;
        root.present()?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, size.0, size.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(())
}

/// The folder the examples write their pictures and models into (`out/`, created).
pub fn out_dir() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A progress bar for `len` steps showing the running loss in its message.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Fraction of rows of `logits` whose largest entry is the label (`u32` labels), as
/// PyTorch's `logits.argmax(1).eq(labels).sum()`: no casts, one number read back.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> anyhow::Result<f64> {
    let right = logits.argmax(1, false)?.eq(labels)?.sum()?.item()?;
    Ok(right / labels.numel().max(1) as f64)
}

/// The small CNN of `digits_cnn` (and `filters`): two 3x3 convolutions, a max pool and
/// two linear layers, for 8x8 one-channel digits.
pub fn digits_cnn(dev: &Device) -> Sequential {
    Sequential::new()
        .add(Conv2d::new(dev, 1, 16, 3).padding(1))
        .add(ReLU)
        .add(Conv2d::new(dev, 16, 32, 3).padding(1))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Flatten::default())
        .add(Linear::new(dev, 32 * 4 * 4, 64))
        .add(ReLU)
        .add(Dropout::new(0.25))
        .add(Linear::new(dev, 64, 10))
}

/// The digits' flat 64-pixel rows as one-channel 8x8 images.
pub fn digit_images(x: &Tensor) -> wgrad::Result<Tensor> {
    x.reshape(&[x.shape()[0], 1, 8, 8])
}

/// The bundled digits split 4:1 by `seed`: a loader over the training part (shuffled by
/// `seed`) and the whole test part as one batch (flat pixels `[N, 64]`, labels `[N]`).
pub fn digits_split(
    seed: u64,
    batch_size: usize,
    dev: &Device,
) -> anyhow::Result<(DataLoader, wgrad::data::Batch)> {
    let digits: std::sync::Arc<dyn Dataset> = std::sync::Arc::new(wgrad::data::digits::load()?);
    let (train, test) = wgrad::data::train_test_split(digits, 0.2, seed)?;
    let all: Vec<usize> = (0..test.len()).collect();
    let test_batch = wgrad::data::make_batch(&test, &all, dev)?;
    let loader = DataLoader::new(std::sync::Arc::new(train), batch_size, dev).shuffle(seed);
    Ok((loader, test_batch))
}

/// Trains a digits CNN (inputs reshaped by [`digit_images`]) with cross-entropy and Adam
/// at `lr`, the learning rate following a half cosine down to 0 over `epochs`; after each
/// epoch calls `after_epoch(epoch, mean training loss)`. A progress bar counts the steps.
pub fn train_digits_cnn(
    model: &Sequential,
    loader: &mut DataLoader,
    epochs: usize,
    lr: f64,
    amp: Option<DType>,
    mut after_epoch: impl FnMut(usize, f64) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    use wgrad::optim::{CosineAnnealingLR, Scheduled};
    let mut opt = Adam::new(model.parameters(), lr);
    // Mixed precision: the forward under autocast, the loss scaled (f32 master weights).
    let mut scaler = wgrad::amp::GradScaler::new().enabled(amp.is_some());
    let schedule = CosineAnnealingLR {
        t_max: epochs,
        eta_min: 0.0,
    };
    let mut schedule = Scheduled::new(schedule, &opt);
    let bar = progress((epochs * loader.len()) as u64, "training");
    for epoch in 1..=epochs {
        let mut loss_sum: Option<Tensor> = None;
        let mut batches = 0;
        for batch in loader.epoch() {
            let batch = batch?;
            let x = digit_images(&batch.x)?;
            let forward = || model.forward(&x)?.cross_entropy(&batch.y);
            let loss = match amp {
                Some(dtype) => wgrad::amp::autocast(x.device(), dtype, forward)??,
                None => forward()?,
            };
            opt.zero_grad();
            scaler.scale(&loss)?.backward()?;
            scaler.step(&mut opt)?;
            scaler.update()?;
            loss_sum = Some(match loss_sum {
                Some(s) => s.add(&loss.detach())?,
                None => loss.detach(),
            });
            batches += 1;
            bar.inc(1);
        }
        schedule.step(&mut opt);
        let mean = match loss_sum {
            Some(s) => s.item()? / batches as f64,
            None => f64::NAN,
        };
        let message = after_epoch(epoch, mean)?;
        bar.set_message(message);
    }
    bar.finish();
    Ok(())
}
