//! A decoder-only character transformer on the bundled Shakespeare corpus, the attention
//! counterpart of `char_rnn` (same corpus, same validation split):
//!
//! ```text
//! chars -> token + learned position embeddings (d_model)
//!       -> layers x [x + attn(LN(x)) (causal), x + FF(LN(x)) (GELU)] -> LN -> Linear(V)
//! ```
//!
//! (`wgrad::workloads::CharTransformer`, PyTorch's names: `tok`, `pos`,
//! `layers.0.self_attn.in_proj_weight`, ..., `norm`, `head`). It trains with AdamW on
//! random windows of `--context` characters, predicting the next character at every
//! position, with a short warm-up and a cosine decay of the learning rate over the time
//! budget. Every tenth block of 10,000 characters is held out for validation (as in
//! `char_rnn`); the validation loss, in bits per character, is measured on windows of
//! `--context` characters every `--eval-every` steps and on the whole held-out text at
//! the end. Writes `out/char_transformer.png` (training and validation curves) and
//! `out/char_transformer.safetensors`, and prints samples before and after training.
//!
//! ```text
//! cargo run --release --example char_transformer                     # best device, 9.5 minutes
//! cargo run --release --example char_transformer -- --amp f16         # autocast + GradScaler
//! cargo run --release --example char_transformer -- --device cpu --minutes 2
//! ```

mod common;

use std::time::Instant;

use clap::Parser;
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use wgrad::data::text::{self, CharVocab};
use wgrad::optim::{clip_grad_norm, AdamW, Optimizer};
use wgrad::prelude::*;
use wgrad::workloads::{CharTransformer, CharTransformerConfig};

#[derive(Parser)]
#[command(about = "A decoder-only character transformer on Shakespeare")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Stop training after this many minutes.
    #[arg(long, default_value_t = 9.5)]
    minutes: f64,
    /// Stop after this many steps at the latest.
    #[arg(long, default_value_t = 100_000)]
    max_steps: usize,
    /// Characters the model sees at once (the position table's rows).
    #[arg(long, default_value_t = 64)]
    context: usize,
    /// Model width.
    #[arg(long, default_value_t = 128)]
    d_model: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Transformer layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Feed-forward width.
    #[arg(long, default_value_t = 512)]
    feedforward: usize,
    /// Windows per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// AdamW's peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Steps between validation measurements (on the first `--eval-windows` windows).
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Validation windows measured during training (all of them at the end).
    #[arg(long, default_value_t = 256)]
    eval_windows: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Characters per sample.
    #[arg(long, default_value_t = 400)]
    sample_len: usize,
    /// Mixed precision: the forward under autocast in f16 (with a gradient scaler) or
    /// bf16; the parameters stay f32.
    #[arg(long)]
    amp: Option<String>,
}

/// `batch` random windows of `context + 1` tokens from `ids`: inputs `[B, T]` and the
/// next characters `[B * T]`.
fn random_batch(
    ids: &[u32],
    batch: usize,
    context: usize,
    rng: &mut impl Rng,
    dev: &Device,
) -> wgrad::Result<(Tensor, Tensor)> {
    let (mut x, mut y) = (Vec::with_capacity(batch * context), Vec::new());
    for _ in 0..batch {
        let s = rng.random_range(0..ids.len() - context - 1);
        x.extend_from_slice(&ids[s..s + context]);
        y.extend_from_slice(&ids[s + 1..s + context + 1]);
    }
    Ok((
        Tensor::from_vec(x, &[batch, context], dev)?,
        Tensor::from_vec(y, &[batch * context], dev)?,
    ))
}

/// Mean loss in bits per character over the first `windows` non-overlapping windows of
/// `context` characters of `ids` (each position predicts the next from the window so
/// far), 64 windows per forward pass.
fn bits_per_char(
    model: &CharTransformer,
    ids: &[u32],
    context: usize,
    windows: usize,
    dev: &Device,
) -> anyhow::Result<f64> {
    let total_windows = ((ids.len() - 1) / context).min(windows);
    model.eval();
    let (mut total, mut count) = (0.0, 0usize);
    no_grad(|| -> anyhow::Result<()> {
        for first in (0..total_windows).step_by(64) {
            let n = 64.min(total_windows - first);
            let (mut x, mut y) = (Vec::with_capacity(n * context), Vec::new());
            for w in first..first + n {
                let s = w * context;
                x.extend_from_slice(&ids[s..s + context]);
                y.extend_from_slice(&ids[s + 1..s + context + 1]);
            }
            let x = Tensor::from_vec(x, &[n, context], dev)?;
            let y = Tensor::from_vec(y, &[n * context], dev)?;
            total += model.forward(&x)?.cross_entropy(&y)?.item()? * (n * context) as f64;
            count += n * context;
        }
        Ok(())
    })?;
    model.train();
    Ok(total / count.max(1) as f64 / std::f64::consts::LN_2)
}

/// `len` characters continuing `prime`, each drawn from the model's prediction given
/// the last `context` characters.
fn sample(
    model: &CharTransformer,
    vocab: &CharVocab,
    prime: &str,
    len: usize,
    temperature: f64,
    seed: u64,
    dev: &Device,
) -> anyhow::Result<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let context = model.config().context;
    let mut ids = vocab.encode(prime)?;
    model.eval();
    no_grad(|| -> anyhow::Result<()> {
        for _ in 0..len {
            let window = &ids[ids.len().saturating_sub(context)..];
            let t = window.len();
            let x = Tensor::from_vec(window.to_vec(), &[1, t], dev)?;
            let logits = model
                .forward(&x)?
                .narrow(0, t - 1, 1)?
                .reshape(&[vocab.len()])?;
            ids.push(text::sample_logits(&logits, temperature, &mut rng)?);
        }
        Ok(())
    })?;
    model.train();
    Ok(vocab.decode(&ids)?)
}

/// The learning rate at `step`: linear warm-up, then a cosine decay to a tenth of the
/// peak as the time budget (`progress` in [0, 1]) runs out.
fn learning_rate(args: &Args, step: usize, progress: f64) -> f64 {
    if step < args.warmup {
        return args.lr * (step + 1) as f64 / args.warmup as f64;
    }
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
    args.lr * (0.1 + 0.9 * cosine)
}

fn plot(
    train: &[(f64, f64)],
    val: &[(f64, f64)],
    char_rnn_hint: &str,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let last = train.last().map_or(1.0, |p| p.0).max(1.0);
    let top = train
        .iter()
        .chain(val)
        .map(|p| p.1)
        .fold(3.0f64, f64::max)
        .min(7.0);
    common::register_font();
    common::save_png(path, (1000, 600), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("char_transformer on Shakespeare {char_rnn_hint}"),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..last, 1.0..top)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("bits per character")
            .label_style(("sans-serif", 14))
            .draw()?;
        for (points, label, color) in [
            (
                train,
                "training (mean of the last 50 steps)",
                BLUE.to_rgba(),
            ),
            (val, "validation", RED.to_rgba()),
        ] {
            let style = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;
    let seed = args.common.seed;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let corpus = text::load_shakespeare()?;
    let vocab = CharVocab::from_text(&corpus);
    let tokens = vocab.encode(&corpus)?;
    // The split of char_rnn: every tenth block of 10,000 characters is held out.
    let (train_ids, val_ids) = text::block_split(&tokens, 10_000, 10)?;
    println!(
        "corpus: {} characters, vocabulary {}, {} training / {} validation",
        tokens.len(),
        vocab.len(),
        train_ids.len(),
        val_ids.len()
    );
    if args.context == 0 || args.context + 1 >= val_ids.len() || args.batch == 0 {
        anyhow::bail!(
            "--context must be between 1 and {} (the held-out text's length) and --batch at least 1",
            val_ids.len() - 2
        );
    }
    let config = CharTransformerConfig {
        vocab: vocab.len(),
        context: args.context,
        d_model: args.d_model,
        heads: args.heads,
        layers: args.layers,
        feedforward: args.feedforward,
        dropout: 0.0,
    };
    let model = CharTransformer::new(&dev, config)?;
    println!(
        "model: {} layers, width {}, {} heads, context {}: {} parameters, on {}",
        args.layers,
        args.d_model,
        args.heads,
        args.context,
        model.num_parameters(),
        dev.name()
    );
    let prime = "ROMEO:\n";
    println!(
        "\n--- sample before training ---\n{}\n",
        sample(&model, &vocab, prime, 200, args.temperature, seed, &dev)?
    );

    let params = model.parameters();
    let mut opt = AdamW::new(params.clone(), args.lr);
    let amp = match args.amp.as_deref() {
        None => None,
        Some("f16") => Some(DType::F16),
        Some("bf16") => Some(DType::BF16),
        Some(other) => anyhow::bail!("--amp takes f16 or bf16, not {other}"),
    };
    // bf16 has f32's range: only f16 needs the loss scaled.
    let mut scaler = wgrad::amp::GradScaler::new().enabled(amp == Some(DType::F16));
    let budget = args.minutes * 60.0;
    let start = Instant::now();
    let bar = common::progress(args.max_steps as u64, "training");
    let (mut train_curve, mut val_curve) = (Vec::new(), Vec::new());
    let mut recent = std::collections::VecDeque::new();
    let mut steps = 0usize;
    while steps < args.max_steps && start.elapsed().as_secs_f64() < budget {
        opt.set_lr(learning_rate(
            &args,
            steps,
            start.elapsed().as_secs_f64() / budget,
        ));
        let (x, y) = random_batch(&train_ids, args.batch, args.context, &mut rng, &dev)?;
        let forward = || model.forward(&x)?.cross_entropy(&y);
        let loss = match amp {
            Some(dtype) => wgrad::amp::autocast(&dev, dtype, forward)??,
            None => forward()?,
        };
        opt.zero_grad();
        scaler.scale(&loss)?.backward()?;
        scaler.unscale_(&opt)?;
        clip_grad_norm(&params, 1.0)?;
        scaler.step(&mut opt)?;
        scaler.update()?;
        steps += 1;
        bar.inc(1);
        if steps.is_multiple_of(10) || steps == 1 {
            recent.push_back(loss.item()? / std::f64::consts::LN_2);
            if recent.len() > 5 {
                recent.pop_front();
            }
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            train_curve.push((steps as f64, mean));
            bar.set_message(format!("loss {mean:.3} bits/char"));
        }
        if steps.is_multiple_of(args.eval_every) {
            let bpc = bits_per_char(&model, &val_ids, args.context, args.eval_windows, &dev)?;
            val_curve.push((steps as f64, bpc));
            let secs = start.elapsed().as_secs_f64();
            bar.suspend(|| println!("step {steps}: validation {bpc:.3} bits/char, {secs:.0} s"));
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let bpc = bits_per_char(&model, &val_ids, args.context, usize::MAX, &dev)?;
    val_curve.push((steps as f64, bpc));
    println!(
        "trained {steps} steps in {secs:.0} s ({:.1} ms per step) on {}: validation {bpc:.3} bits per character (all {} held-out characters)",
        1e3 * secs / steps.max(1) as f64,
        dev.name(),
        val_ids.len()
    );
    let out = common::out_dir()?;
    let png = out.join("char_transformer.png");
    plot(
        &train_curve,
        &val_curve,
        &format!("({secs:.0} s on {})", dev.name()),
        &png,
    )?;
    println!("wrote {}", png.display());
    let path = out.join("char_transformer.safetensors");
    wgrad::io::save(&model, &path)?;
    println!("saved the model to {}", path.display());
    println!(
        "\n--- sample after training (temperature {}) ---\n{}",
        args.temperature,
        sample(
            &model,
            &vocab,
            prime,
            args.sample_len,
            args.temperature,
            seed,
            &dev
        )?
    );
    Ok(())
}
