//! PyTorch's official MNIST example (`examples/mnist/main.py` in the pytorch/examples
//! repository) line for line in wgrad, on the bundled 8x8 digits. Each block carries
//! the PyTorch line it corresponds to as a `# PyTorch:` comment.
//!
//! ```text
//! [1, 8, 8] -> Conv2d(1, 32, 3, 1) -> ReLU -> Conv2d(32, 64, 3, 1) -> ReLU      -> [64, 4, 4]
//!           -> max_pool2d(2) -> Dropout(0.25) -> flatten(1)                   -> [256]
//!           -> Linear(256, 128) -> ReLU -> Dropout(0.5) -> Linear(128, 10) -> log_softmax
//! ```
//!
//! The one change is the image size: MNIST's 28x28 images leave 12x12x64 = 9,216
//! features after the pooling, so PyTorch's first linear layer is `Linear(9216, 128)`;
//! the digits' 8x8 images leave 2x2x64 = 256, so here it is `Linear(256, 128)`. The rest
//! is PyTorch's: `nll_loss` of `log_softmax`, `Adadelta` with learning rate 1.0, `StepLR`
//! with step 1 and gamma 0.7, batches of 64, the test loss summed over the test set and
//! divided by its size, and the pixels normalised by the data's mean and standard
//! deviation (PyTorch's `Normalize((0.1307,), (0.3081,))` are MNIST's).
//!
//! ```text
//! cargo run --release --example pytorch_mnist -- --device cpu
//! cargo run --release --example pytorch_mnist -- --device gpu --epochs 3
//! ```

mod common;

use std::time::Instant;

use clap::Parser;

use wgrad::nn::Reduction;
use wgrad::optim::{Scheduled, StepLR};
use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "PyTorch's MNIST example on the 8x8 digits")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Passes over the training images (PyTorch's default).
    #[arg(long, default_value_t = 14)]
    epochs: usize,
    /// Adadelta's learning rate.
    #[arg(long, default_value_t = 1.0)]
    lr: f64,
    /// The learning rate's decay per epoch (StepLR's gamma).
    #[arg(long, default_value_t = 0.7)]
    gamma: f64,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

/// The mean and standard deviation of the digits' pixels (scaled to [0, 1]), the
/// counterparts of MNIST's 0.1307 and 0.3081 in PyTorch's `transforms.Normalize`.
const MEAN: f64 = 0.3053;
const STD: f64 = 0.3760;

/// PyTorch's `Net`. `#[derive(Module)]` names the parameters after the fields, as
/// PyTorch does (`conv1.weight`, ..., `fc2.bias`), so a saved model has the same keys.
#[derive(Module)]
struct Net {
    conv1: Conv2d,
    conv2: Conv2d,
    dropout1: Dropout,
    dropout2: Dropout,
    fc1: Linear,
    fc2: Linear,
}

impl Net {
    fn new(dev: &Device) -> Self {
        Net {
            // # PyTorch: self.conv1 = nn.Conv2d(1, 32, 3, 1)
            conv1: Conv2d::new(dev, 1, 32, 3),
            // # PyTorch: self.conv2 = nn.Conv2d(32, 64, 3, 1)
            conv2: Conv2d::new(dev, 32, 64, 3),
            // # PyTorch: self.dropout1 = nn.Dropout(0.25)
            dropout1: Dropout::new(0.25),
            // # PyTorch: self.dropout2 = nn.Dropout(0.5)
            dropout2: Dropout::new(0.5),
            // # PyTorch: self.fc1 = nn.Linear(9216, 128)
            // 8x8 -> 6x6 -> 4x4 -> pooled 2x2, times 64 channels (28x28 gives 12x12x64).
            fc1: Linear::new(dev, 64 * 2 * 2, 128),
            // # PyTorch: self.fc2 = nn.Linear(128, 10)
            fc2: Linear::new(dev, 128, 10),
        }
    }

    /// Log-probabilities of the ten classes for images `[N, 1, 8, 8]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // # PyTorch: x = self.conv1(x); x = F.relu(x)
        let x = self.conv1.forward(x)?.relu()?;
        // # PyTorch: x = self.conv2(x); x = F.relu(x)
        let x = self.conv2.forward(&x)?.relu()?;
        // # PyTorch: x = F.max_pool2d(x, 2)
        let x = x.max_pool2d_by((2, 2))?;
        // # PyTorch: x = self.dropout1(x)
        let x = self.dropout1.forward(&x)?;
        // # PyTorch: x = torch.flatten(x, 1)
        let x = x.flatten_from(1)?;
        // # PyTorch: x = self.fc1(x); x = F.relu(x)
        let x = self.fc1.forward(&x)?.relu()?;
        // # PyTorch: x = self.dropout2(x)
        let x = self.dropout2.forward(&x)?;
        // # PyTorch: x = self.fc2(x)
        let x = self.fc2.forward(&x)?;
        // # PyTorch: output = F.log_softmax(x, dim=1)
        x.log_softmax(1)
    }
}

/// Flat `[N, 64]` pixels as normalised `[N, 1, 8, 8]` images.
// # PyTorch: transforms.Normalize((0.1307,), (0.3081,)), the tensors already [N, 1, 28, 28]
fn images(x: &Tensor) -> Result<Tensor> {
    ((x - MEAN)? / STD)?.view(&[-1, 1, 8, 8])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // # PyTorch: torch.manual_seed(args.seed); device = torch.device("cuda" ...)
    let dev = args.common.device()?;
    let seed = args.common.seed;

    let (mut loader, test_batch) = common::digits_split(seed, args.batch_size, &dev)?;
    let test_x = images(&test_batch.x)?;
    let n_test = test_batch.y.shape()[0];
    println!(
        "{} training and {n_test} test digits",
        loader.dataset().len()
    );

    // # PyTorch: model = Net().to(device)
    let model = Net::new(&dev);
    println!("model: {} parameters", model.num_parameters());
    // # PyTorch: optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    let mut optimizer = Adadelta::new(model.parameters(), args.lr);
    // # PyTorch: scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    let mut scheduler = Scheduled::new(
        StepLR {
            step_size: 1,
            gamma: args.gamma,
        },
        &optimizer,
    );
    // # PyTorch: test's F.nll_loss(output, target, reduction='sum')
    let summed_nll = NLLLoss::default().reduction(Reduction::Sum);

    let start = Instant::now();
    let mut accuracy = 0.0;
    // # PyTorch: for epoch in range(1, args.epochs + 1):
    for epoch in 1..=args.epochs {
        // train(args, model, device, train_loader, optimizer, epoch)
        // # PyTorch: model.train()
        model.train();
        let mut loss_sum = Tensor::scalar(0.0, &dev)?;
        let mut seen = 0usize;
        // # PyTorch: for batch_idx, (data, target) in enumerate(train_loader):
        for batch in loader.epoch() {
            let batch = batch?;
            let data = images(&batch.x)?;
            // # PyTorch: optimizer.zero_grad()
            optimizer.zero_grad();
            // # PyTorch: output = model(data)
            let output = model.forward(&data)?;
            // # PyTorch: loss = F.nll_loss(output, target)
            let loss = output.nll_loss(&batch.y)?;
            // # PyTorch: loss.backward()
            loss.backward()?;
            // # PyTorch: optimizer.step()
            optimizer.step()?;
            let n = batch.y.shape()[0];
            loss_sum = (&loss_sum + &(&loss.detach() * n as f64)?)?;
            seen += n;
        }
        let train_loss = loss_sum.item()? / seen.max(1) as f64;

        // test(model, device, test_loader)
        // # PyTorch: model.eval(); with torch.no_grad():
        model.eval();
        let output = no_grad(|| model.forward(&test_x))?;
        // # PyTorch: test_loss += F.nll_loss(output, target, reduction='sum').item()
        // # PyTorch: test_loss /= len(test_loader.dataset)
        let test_loss = summed_nll.forward(&output, &test_batch.y)?.item()? / n_test as f64;
        // # PyTorch: pred = output.argmax(dim=1, keepdim=True)
        // # PyTorch: correct += pred.eq(target.view_as(pred)).sum().item()
        let pred = output.argmax(1, false)?;
        let correct = pred.eq(&test_batch.y)?.sum()?.item()? as usize;
        accuracy = correct as f64 / n_test as f64;
        println!(
            "epoch {epoch:2}: lr {:.4}, train loss {train_loss:.4}; test set: average loss {test_loss:.4}, accuracy {correct}/{n_test} ({:.2}%)",
            optimizer.lr(),
            100.0 * accuracy
        );
        // # PyTorch: scheduler.step()
        scheduler.step(&mut optimizer);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "trained {} epochs in {secs:.1} s ({:.2} s per epoch) on {}: test accuracy {:.2}%",
        args.epochs,
        secs / args.epochs.max(1) as f64,
        dev.name(),
        100.0 * accuracy
    );
    Ok(())
}
