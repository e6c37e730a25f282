//! Data-parallel training through MPI (`wgrad::distributed`): the digits MLP trained on
//! several ranks, each on its shard of every epoch (`DistributedSampler`) with its
//! gradients averaged over the ranks (`DistributedDataParallel`). Every rank prints its
//! throughput; rank 0 prints the loss and the test accuracy.
//!
//! ```sh
//! cargo build --release --features mpi --example ddp_digits
//! mpirun -np 2 target/release/examples/ddp_digits            # two ranks on this machine
//! target/release/examples/ddp_digits                          # one rank, no mpirun needed
//! ```
//!
//! Other modes (used by `tests/distributed.rs`, and to measure the overhead):
//! - `--check-steps K --global-batch G --out FILE`: K steps of a fixed schedule where
//!   each step's G examples are split evenly over the ranks, rank 0 saving the
//!   parameters: the same file as one process with batch G, within f32 rounding;
//! - `--workload mlp|cnn --bench-steps N`: the shared training steps, per-rank
//!   batch fixed, timing each step and the part spent synchronising gradients;
//! - `--panic-at-step N --panic-rank R`: rank R panics at step N (the job must end).
//!
//! Ranks pick their device with `distributed::device_for_rank`: one hardware GPU per
//! local rank, else the CPU; `WGRAD_DDP_DEVICE=gpu|cpu` overrides (see the README,
//! "Scaling out").

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use wgrad::data::{DataLoader, Dataset};
use wgrad::distributed::{self, Collective, DistributedDataParallel, DistributedSampler};
use wgrad::prelude::*;
use wgrad::workloads::Workload;

#[derive(Parser)]
#[command(about = "Data-parallel training of the digits MLP over MPI ranks")]
struct Args {
    /// Epochs (training mode).
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Examples per rank and step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Learning rate (SGD, momentum 0.9).
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Seed of the split, the shuffles and the initial weights (rank 0's are used).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Equivalence mode: this many steps of a fixed schedule.
    #[arg(long)]
    check_steps: Option<usize>,
    /// Examples per step over all ranks (equivalence mode).
    #[arg(long, default_value_t = 64)]
    global_batch: usize,
    /// Where rank 0 saves the parameters (equivalence mode).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Overhead mode: the shared `mlp` or `cnn` step.
    #[arg(long)]
    workload: Option<String>,
    /// Timed steps in overhead mode (after 3 untimed).
    #[arg(long, default_value_t = 20)]
    bench_steps: usize,
    /// Gradient bucket size in MiB.
    #[arg(long, default_value_t = 25.0)]
    bucket_mb: f64,
    /// Make rank `panic_rank` panic at this step.
    #[arg(long)]
    panic_at_step: Option<usize>,
    #[arg(long, default_value_t = 0)]
    panic_rank: usize,
}

fn mlp(dev: &Device, dropout: f64) -> Sequential {
    let mut m = Sequential::new().add(Linear::new(dev, 64, 128)).add(ReLU);
    if dropout > 0.0 {
        m = m.add(Dropout::new(dropout));
    }
    m.add(Linear::new(dev, 128, 64))
        .add(ReLU)
        .add(Linear::new(dev, 64, 10))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let comm = distributed::init()?;
    let dev = distributed::device_for_rank(comm.as_ref());
    dev.manual_seed(args.seed);
    if comm.rank() == 0 {
        println!("{}; rank 0 on {}", comm.describe(), dev.name());
    }
    if let Some(name) = &args.workload {
        return overhead(&args, &comm, &dev, name);
    }
    if let Some(steps) = args.check_steps {
        return equivalence(&args, &comm, &dev, steps);
    }
    train(&args, &comm, &dev)
}

/// Panics on the chosen rank and step (the job must end, not hang).
fn maybe_panic(args: &Args, comm: &Arc<dyn Collective>, step: usize) {
    if args.panic_at_step == Some(step) && comm.rank() == args.panic_rank {
        panic!("rank {} panics at step {step}, as asked", comm.rank());
    }
}

fn train(args: &Args, comm: &Arc<dyn Collective>, dev: &Device) -> anyhow::Result<()> {
    let digits: Arc<dyn Dataset> = Arc::new(wgrad::data::digits::load()?);
    let (train, test) = wgrad::data::train_test_split(digits, 0.2, args.seed)?;
    let sampler =
        DistributedSampler::new(train.len(), comm.world_size(), comm.rank())?.shuffle(args.seed);
    let mut loader = DataLoader::new(Arc::new(train), args.batch, dev).distributed(sampler)?;
    let all: Vec<usize> = (0..test.len()).collect();
    let test_batch = wgrad::data::make_batch(&test, &all, dev)?;
    let ddp =
        DistributedDataParallel::new(mlp(dev, 0.2), comm.clone())?.bucket_cap_mb(args.bucket_mb);
    let mut opt = Sgd::new(ddp.parameters(), args.lr).momentum(0.9);
    let start = Instant::now();
    let (mut examples, mut step) = (0usize, 0usize);
    for epoch in 1..=args.epochs {
        let mut loss_sum = Tensor::scalar(0.0, dev)?;
        let mut batches = 0;
        for batch in loader.epoch() {
            let batch = batch?;
            maybe_panic(args, comm, step);
            let loss = ddp.forward(&batch.x)?.cross_entropy(&batch.y)?;
            opt.zero_grad();
            ddp.backward(&loss)?;
            opt.step()?;
            loss_sum = loss_sum.add(&loss.detach())?;
            examples += batch.y.shape()[0];
            batches += 1;
            step += 1;
        }
        // The mean loss over every rank's batches.
        let mut mean = [(loss_sum.item()? / batches as f64) as f32];
        comm.all_reduce_sum(&mut mean)?;
        if comm.rank() == 0 && (epoch % 5 == 0 || epoch == 1 || epoch == args.epochs) {
            ddp.eval();
            let logits = no_grad(|| ddp.forward(&test_batch.x))?;
            ddp.train();
            let right = logits.argmax(1, false)?.eq(&test_batch.y)?.sum()?.item()?;
            println!(
                "epoch {epoch:3}: loss {:.4}, test accuracy {:.2}%",
                mean[0] / comm.world_size() as f32,
                100.0 * right / test_batch.y.numel() as f64
            );
        }
    }
    dev.sync()?;
    let secs = start.elapsed().as_secs_f64();
    let s = ddp.stats();
    println!(
        "rank {} of {}: {examples} examples in {secs:.2} s ({:.0} examples/s, {step} steps); \
         gradient sync {:.3} ms/step ({:.1}% of the time), all-reduce {:.3} ms/step",
        comm.rank(),
        comm.world_size(),
        examples as f64 / secs,
        1e3 * s.total.as_secs_f64() / step.max(1) as f64,
        100.0 * s.total.as_secs_f64() / secs,
        1e3 * s.all_reduce.as_secs_f64() / step.max(1) as f64,
    );
    comm.barrier()?;
    Ok(())
}

/// K steps where step s uses examples [s G, (s + 1) G) (mod N) in a fixed order, rank r
/// of W taking its G / W of them; rank 0 saves the parameters.
fn equivalence(
    args: &Args,
    comm: &Arc<dyn Collective>,
    dev: &Device,
    steps: usize,
) -> anyhow::Result<()> {
    let (w, r, g) = (comm.world_size(), comm.rank(), args.global_batch);
    anyhow::ensure!(
        g % w == 0,
        "--global-batch {g} must divide evenly over {w} ranks"
    );
    let digits = wgrad::data::digits::load()?;
    let n = digits.len();
    // Rank 0's initial weights reach every rank through the broadcast: seed the others
    // differently to show it.
    dev.manual_seed(args.seed + r as u64);
    let ddp =
        DistributedDataParallel::new(mlp(dev, 0.0), comm.clone())?.bucket_cap_mb(args.bucket_mb);
    let mut opt = Sgd::new(ddp.parameters(), args.lr).momentum(0.9);
    let per = g / w;
    for step in 0..steps {
        maybe_panic(args, comm, step);
        let idx: Vec<usize> = (0..per).map(|i| (step * g + r * per + i) % n).collect();
        let batch = wgrad::data::make_batch(&digits, &idx, dev)?;
        let loss = ddp.forward(&batch.x)?.cross_entropy(&batch.y)?;
        opt.zero_grad();
        ddp.backward(&loss)?;
        opt.step()?;
    }
    if r == 0 {
        if let Some(out) = &args.out {
            wgrad::io::save(ddp.module(), out)?;
            println!("wrote {}", out.display());
        }
    }
    comm.barrier()?;
    Ok(())
}

/// the shared `mlp` or `cnn` step with its batch on every rank: median step time and the
/// part spent synchronising gradients.
fn overhead(
    args: &Args,
    comm: &Arc<dyn Collective>,
    dev: &Device,
    name: &str,
) -> anyhow::Result<()> {
    let workload = match name {
        "mlp" => Workload::Mlp,
        "cnn" => Workload::Cnn,
        other => anyhow::bail!("--workload must be mlp or cnn, not {other}"),
    };
    let (model, x, y) = workload.build(dev)?.into_parts();
    let batch = x.shape()[0];
    let ddp = DistributedDataParallel::new(model, comm.clone())?.bucket_cap_mb(args.bucket_mb);
    let mut opt = Sgd::new(ddp.parameters(), 0.01).momentum(0.9);
    let mut step = |timed: &mut Vec<(f64, f64, f64)>| -> anyhow::Result<()> {
        let before = (ddp.stats().total, ddp.stats().all_reduce);
        let start = Instant::now();
        opt.zero_grad();
        let loss = ddp.forward(&x)?.cross_entropy(&y)?;
        ddp.backward(&loss)?;
        opt.step()?;
        dev.sync()?;
        let total = start.elapsed().as_secs_f64() * 1e3;
        let s = ddp.stats();
        timed.push((
            total,
            (s.total - before.0).as_secs_f64() * 1e3,
            (s.all_reduce - before.1).as_secs_f64() * 1e3,
        ));
        Ok(())
    };
    let mut warm = Vec::new();
    for _ in 0..3 {
        step(&mut warm)?;
    }
    comm.barrier()?;
    let mut timed = Vec::new();
    for _ in 0..args.bench_steps {
        step(&mut timed)?;
    }
    let mut totals: Vec<f64> = timed.iter().map(|t| t.0).collect();
    let mut syncs: Vec<f64> = timed.iter().map(|t| t.1).collect();
    let mut reduces: Vec<f64> = timed.iter().map(|t| t.2).collect();
    let (step_ms, sync_ms, reduce_ms) = (
        wgrad::workloads::median(&mut totals),
        wgrad::workloads::median(&mut syncs),
        wgrad::workloads::median(&mut reduces),
    );
    // The slowest rank sets the pace: report rank 0's view and the world's throughput.
    let mut worst = [step_ms as f32];
    comm.all_reduce_sum(&mut worst)?; // sum of the ranks' medians
    let mean_step = worst[0] as f64 / comm.world_size() as f64;
    println!(
        "rank {} of {}: {name} step {step_ms:.2} ms (median of {}), gradient sync {sync_ms:.2} ms \
         ({:.1}%; all-reduce {reduce_ms:.2} ms), {} parameters",
        comm.rank(),
        comm.world_size(),
        args.bench_steps,
        100.0 * sync_ms / step_ms,
        ddp.num_parameters()
    );
    if comm.rank() == 0 {
        println!(
            "throughput: {:.0} examples/s over {} ranks (batch {batch} per rank, mean step {mean_step:.2} ms)",
            (batch * comm.world_size()) as f64 / (mean_step / 1e3),
            comm.world_size()
        );
    }
    comm.barrier()?;
    Ok(())
}
