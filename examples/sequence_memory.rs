//! The vanishing-gradient story for recurrent networks: a plain (tanh) RNN and an LSTM
//! learn to recall the first token of a sequence after `k` distractor tokens, for
//! growing `k`.
//!
//! Each sequence is one of 8 "memory" symbols followed by `k` random distractors (4
//! other symbols); the network reads it through `Embedding(12, 16) -> RNN or LSTM(16,
//! 64)` and a linear read-out of the last step must name the memory symbol (chance is
//! 12.5%). Both networks train the same number of Adam steps on fresh random batches;
//! accuracy is measured on 512 held-out sequences. The gradient that teaches the plain
//! RNN to keep the symbol passes through `k` tanh steps and fades; the LSTM's cell state
//! carries it when the forget gate stays open, so its accuracy holds up for longer gaps.
//! The LSTM starts with its forget-gate bias at `--forget-bias` (3): with PyTorch's
//! default of 0 the gate starts at 0.5, the memory decays as 0.5^k, and the LSTM (in
//! PyTorch as here) sits at chance for k >= 20: the same vanishing signal, in the gate.
//!
//! ```text
//! cargo run --release --example sequence_memory -- --device cpu
//! ```
//!
//! It writes `out/sequence_memory.png` (accuracy against k for both networks).

mod common;

use clap::Parser;
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use wgrad::nn::{Embedding, RecurrentOptions, LSTM, RNN};
use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "Plain RNN vs LSTM recalling a token k steps back")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Distractor counts to try.
    #[arg(long, value_delimiter = ',', default_value = "5,10,20,40,60,80,100")]
    gaps: Vec<usize>,
    /// Adam steps per network and gap.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Hidden units.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// The LSTM's forget-gate bias at the start (in `bias_ih_l0`; `bias_hh_l0`'s block is
    /// zeroed): the usual "remember by default" initialisation. With 0, PyTorch's
    /// default, the forget gate starts at 0.5 and an LSTM (PyTorch's too) does not start
    /// learning this task for k >= 20 within the default step budget.
    #[arg(long, default_value_t = 3.0)]
    forget_bias: f32,
}

const MEMORY: usize = 8;
const NOISE: usize = 4;

/// `count` sequences of `k + 1` tokens, time-major `[k + 1, count]`, and their targets.
fn sequences(k: usize, count: usize, rng: &mut impl Rng) -> (Vec<u32>, Vec<u32>) {
    let first: Vec<u32> = (0..count)
        .map(|_| rng.random_range(0..MEMORY) as u32)
        .collect();
    let mut x = first.clone();
    for _ in 0..k * count {
        x.push((MEMORY + rng.random_range(0..NOISE)) as u32);
    }
    (x, first)
}

/// Trains one network at one gap; returns held-out accuracy.
fn run(lstm: bool, k: usize, args: &Args, dev: &Device) -> anyhow::Result<f64> {
    let seed = args.common.seed;
    dev.manual_seed(seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 1000 + k as u64);
    let emb = Embedding::new(dev, MEMORY + NOISE, 16);
    let opts = RecurrentOptions::default();
    let core: Box<dyn Module> = if lstm {
        let m = LSTM::with_options(dev, 16, args.hidden, opts)?;
        let h = args.hidden;
        for (name, t) in m.named_parameters() {
            let mut v = t.to_vec::<f32>()?;
            if name == "bias_ih_l0" || name == "bias_hh_l0" {
                let value = if name == "bias_ih_l0" {
                    args.forget_bias
                } else {
                    0.0
                };
                v[h..2 * h].iter_mut().for_each(|b| *b = value);
                t.copy_from(&Tensor::from_vec(v, t.shape(), dev)?)?;
            }
        }
        Box::new(m)
    } else {
        Box::new(RNN::with_options(dev, 16, args.hidden, false, opts)?)
    };
    let head = Linear::new(dev, args.hidden, MEMORY);
    let mut params = emb.parameters();
    params.extend(core.parameters());
    params.extend(head.parameters());
    let mut opt = Adam::new(params.clone(), args.lr);
    let logits = |x: &Tensor| -> wgrad::Result<Tensor> {
        let out = core.forward(&emb.forward(x)?)?;
        let t = out.shape()[0];
        head.forward(&out.narrow(0, t - 1, 1)?.squeeze(0)?)
    };
    for _ in 0..args.steps {
        let (x, y) = sequences(k, args.batch, &mut rng);
        let x = Tensor::from_vec(x, &[k + 1, args.batch], dev)?;
        let y = Tensor::from_vec(y, &[args.batch], dev)?;
        let loss = logits(&x)?.cross_entropy(&y)?;
        opt.zero_grad();
        loss.backward()?;
        wgrad::optim::clip_grad_norm(&params, 1.0)?;
        opt.step()?;
    }
    let (x, y) = sequences(k, 512, &mut rng);
    let x = Tensor::from_vec(x, &[k + 1, 512], dev)?;
    let y = Tensor::from_vec(y, &[512], dev)?;
    common::accuracy(&no_grad(|| logits(&x))?, &y)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dev = args.common.device()?;
    let mut results: Vec<(usize, f64, f64)> = Vec::new();
    let bar = common::progress((2 * args.gaps.len()) as u64, "training");
    for &k in &args.gaps {
        let rnn = run(false, k, &args, &dev)?;
        bar.inc(1);
        let lstm = run(true, k, &args, &dev)?;
        bar.inc(1);
        let line = format!(
            "k = {k:>3}: plain RNN {:5.1}%, LSTM {:5.1}% (chance 12.5%)",
            100.0 * rnn,
            100.0 * lstm
        );
        bar.suspend(|| println!("{line}"));
        results.push((k, rnn, lstm));
    }
    bar.finish_and_clear();
    for (k, r, l) in &results {
        println!(
            "k = {k:>3}: plain RNN {:5.1}%, LSTM {:5.1}%",
            100.0 * r,
            100.0 * l
        );
    }

    let png = common::out_dir()?.join("sequence_memory.png");
    common::register_font();
    common::save_png(&png, (700, 450), |root| {
        root.fill(&WHITE)?;
        let kmax = args.gaps.iter().copied().max().unwrap_or(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Recall the first token after k distractors",
                ("sans-serif", 20),
            )
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..kmax * 1.05, 0.0..105.0)?;
        chart
            .configure_mesh()
            .x_desc("k (steps between the token and the question)")
            .y_desc("held-out accuracy (%)")
            .draw()?;
        for (name, color, pick) in [("plain RNN (tanh)", RED, 1usize), ("LSTM", BLUE, 2usize)] {
            let pts: Vec<(f64, f64)> = results
                .iter()
                .map(|r| (r.0 as f64, 100.0 * if pick == 1 { r.1 } else { r.2 }))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        chart.draw_series(LineSeries::new(
            vec![(0.0, 12.5), (kmax * 1.05, 12.5)],
            BLACK.mix(0.4),
        ))?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })?;
    println!("wrote {}", png.display());
    Ok(())
}
