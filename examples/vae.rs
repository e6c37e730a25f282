//! PyTorch's variational autoencoder example (`examples/vae/main.py` in the
//! pytorch/examples repository) in wgrad, on the bundled 8x8 digits. Each block carries
//! the PyTorch line it corresponds to as a `# PyTorch:` comment.
//!
//! ```text
//! encoder: x [64] -> Linear(64, 400) -> ReLU -> Linear(400, 20) = mu
//!                                            -> Linear(400, 20) = logvar
//! z = mu + eps * exp(logvar / 2), eps ~ N(0, I)          (the reparameterisation)
//! decoder: z [20] -> Linear(20, 400) -> ReLU -> Linear(400, 64) -> Sigmoid
//! loss = BCE(reconstruction, x, summed) - 0.5 * sum(1 + logvar - mu^2 - exp(logvar))
//! ```
//!
//! The one change is the image size: PyTorch's MNIST images have 28 x 28 = 784 pixels,
//! so its first and last layers are `Linear(784, 400)` and `Linear(400, 784)`; the
//! digits have 8 x 8 = 64. The hidden width 400, the 20-dimensional code, Adam with
//! learning rate 1e-3 and batches of 128 are PyTorch's. As there, the losses printed are
//! per image (the summed loss divided by the number of images).
//!
//! ```text
//! cargo run --release --example vae -- --device cpu
//! cargo run --release --example vae -- --device gpu --epochs 20
//! ```
//!
//! It writes `out/vae_reconstruction.png` (eight test digits above their
//! reconstructions, PyTorch's `results/reconstruction_<epoch>.png`) and
//! `out/vae_samples.png` (64 decodings of codes drawn from N(0, I), PyTorch's
//! `results/sample_<epoch>.png`), both after the last epoch and enlarged four times.

mod common;

use std::time::Instant;

use clap::Parser;

use wgrad::nn::Reduction;
use wgrad::prelude::*;

#[derive(Parser)]
#[command(about = "PyTorch's VAE example on the 8x8 digits")]
struct Args {
    #[command(flatten)]
    common: common::CommonArgs,
    /// Passes over the training images (PyTorch's default is 10).
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
}

/// Pixels per image: PyTorch's 784 (28 x 28) becomes 64 (8 x 8).
const PIXELS: usize = 64;
/// The code's dimension, PyTorch's 20.
const LATENT: usize = 20;

/// PyTorch's `VAE`, parameters named after its fields (`fc1.weight`, ..., `fc4.bias`).
/// Its `forward` has three outputs, so the derived `Module::forward` calls
/// `reconstruction`, the first of them (`#[module(forward = ...)]`).
#[derive(Module)]
#[module(forward = "reconstruction")]
struct Vae {
    fc1: Linear,
    fc21: Linear,
    fc22: Linear,
    fc3: Linear,
    fc4: Linear,
}

impl Vae {
    fn new(dev: &Device) -> Self {
        Vae {
            // # PyTorch: self.fc1 = nn.Linear(784, 400)
            fc1: Linear::new(dev, PIXELS, 400),
            // # PyTorch: self.fc21 = nn.Linear(400, 20)
            fc21: Linear::new(dev, 400, LATENT),
            // # PyTorch: self.fc22 = nn.Linear(400, 20)
            fc22: Linear::new(dev, 400, LATENT),
            // # PyTorch: self.fc3 = nn.Linear(20, 400)
            fc3: Linear::new(dev, LATENT, 400),
            // # PyTorch: self.fc4 = nn.Linear(400, 784)
            fc4: Linear::new(dev, 400, PIXELS),
        }
    }

    /// The code's mean and log-variance.
    fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        // # PyTorch: h1 = F.relu(self.fc1(x))
        let h1 = self.fc1.forward(x)?.relu()?;
        // # PyTorch: return self.fc21(h1), self.fc22(h1)
        Ok((self.fc21.forward(&h1)?, self.fc22.forward(&h1)?))
    }

    /// A code drawn from N(mu, exp(logvar)) as a differentiable function of both.
    fn reparameterize(&self, mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
        // # PyTorch: std = torch.exp(0.5*logvar)
        let std = (logvar * 0.5)?.exp()?;
        // # PyTorch: eps = torch.randn_like(std)
        let eps = std.randn_like()?;
        // # PyTorch: return mu + eps*std
        mu + &(&eps * &std)?
    }

    /// Pixel probabilities `[N, 64]` for codes `[N, 20]`.
    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        // # PyTorch: h3 = F.relu(self.fc3(z))
        let h3 = self.fc3.forward(z)?.relu()?;
        // # PyTorch: return torch.sigmoid(self.fc4(h3))
        self.fc4.forward(&h3)?.sigmoid()
    }

    /// (reconstruction, mu, logvar): three outputs, so an inherent method that callers
    /// reach before `Module::forward` (see the guide's "Models with several outputs").
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        // # PyTorch: mu, logvar = self.encode(x.view(-1, 784))
        let (mu, logvar) = self.encode(&x.view(&[-1, PIXELS as isize])?)?;
        // # PyTorch: z = self.reparameterize(mu, logvar)
        let z = self.reparameterize(&mu, &logvar)?;
        // # PyTorch: return self.decode(z), mu, logvar
        Ok((self.decode(&z)?, mu, logvar))
    }
}

impl Vae {
    /// The reconstruction alone: `Module::forward`'s one output.
    fn reconstruction(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward(x)?.0)
    }
}

/// Reconstruction + KL divergence losses summed over all elements and the batch.
fn loss_function(recon_x: &Tensor, x: &Tensor, mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    // # PyTorch: BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction='sum')
    let bce = BCELoss::default()
        .reduction(Reduction::Sum)
        .forward(recon_x, &x.view(&[-1, PIXELS as isize])?)?;
    // # PyTorch: KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    let kld = ((&(&(1.0 + logvar)? - &(mu * mu)?)? - &logvar.exp()?)?.sum()? * -0.5)?;
    // # PyTorch: return BCE + KLD
    bce + kld
}

/// `[N, 64]` pixels as `[N, 1, 8, 8]` images enlarged `scale` times (nearest), so the
/// saved grids are big enough to look at.
fn enlarged(x: &Tensor, scale: usize) -> Result<Tensor> {
    x.view(&[-1, 1, 8, 8])?.upsample_nearest((scale, scale))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // # PyTorch: torch.manual_seed(args.seed); device = torch.device("cuda" ...)
    let dev = args.common.device()?;
    let seed = args.common.seed;

    let (mut loader, test_batch) = common::digits_split(seed, args.batch_size, &dev)?;
    let test_x = &test_batch.x;
    let n_test = test_x.shape()[0];
    println!(
        "{} training and {n_test} test digits",
        loader.dataset().len()
    );

    // # PyTorch: model = VAE().to(device)
    let model = Vae::new(&dev);
    println!("model: {} parameters", model.num_parameters());
    // # PyTorch: optimizer = optim.Adam(model.parameters(), lr=1e-3)
    let mut optimizer = Adam::new(model.parameters(), args.lr);

    let start = Instant::now();
    let mut test_loss = f64::NAN;
    // # PyTorch: for epoch in range(1, args.epochs + 1):
    for epoch in 1..=args.epochs {
        // train(epoch)
        // # PyTorch: model.train()
        model.train();
        let mut train_loss = Tensor::scalar(0.0, &dev)?;
        let mut seen = 0usize;
        // # PyTorch: for batch_idx, (data, _) in enumerate(train_loader):
        for batch in loader.epoch() {
            let data = batch?.x;
            // # PyTorch: optimizer.zero_grad()
            optimizer.zero_grad();
            // # PyTorch: recon_batch, mu, logvar = model(data)
            let (recon_batch, mu, logvar) = model.forward(&data)?;
            // # PyTorch: loss = loss_function(recon_batch, data, mu, logvar)
            let loss = loss_function(&recon_batch, &data, &mu, &logvar)?;
            // # PyTorch: loss.backward()
            loss.backward()?;
            // # PyTorch: train_loss += loss.item()
            // (summed on the device and read once per epoch)
            train_loss = (&train_loss + &loss.detach())?;
            // # PyTorch: optimizer.step()
            optimizer.step()?;
            seen += data.shape()[0];
        }
        // # PyTorch: train_loss / len(train_loader.dataset)
        let train_loss = train_loss.item()? / seen.max(1) as f64;

        // test(epoch)
        // # PyTorch: model.eval(); with torch.no_grad():
        model.eval();
        let (recon, mu, logvar) = no_grad(|| model.forward(test_x))?;
        // # PyTorch: test_loss += loss_function(recon_batch, data, mu, logvar).item()
        // # PyTorch: test_loss /= len(test_loader.dataset)
        test_loss = loss_function(&recon, test_x, &mu, &logvar)?.item()? / n_test as f64;
        println!(
            "epoch {epoch:3}: train loss {train_loss:.3}, test loss {test_loss:.3} (per image)"
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "trained {} epochs in {secs:.1} s ({:.2} s per epoch) on {}: test loss {test_loss:.3} per image",
        args.epochs,
        secs / args.epochs.max(1) as f64,
        dev.name()
    );

    let out = common::out_dir()?;
    model.eval();
    // # PyTorch: n = min(data.size(0), 8)
    let n = n_test.min(8);
    let shown = test_x.narrow(0, 0, n)?;
    let (recon, _, _) = no_grad(|| model.forward(&shown))?;
    // # PyTorch: comparison = torch.cat([data[:n], recon_batch.view(args.batch_size, 1, 28, 28)[:n]])
    let comparison = Tensor::cat(&[&enlarged(&shown, 4)?, &enlarged(&recon, 4)?], 0)?;
    // # PyTorch: save_image(comparison.cpu(), 'results/reconstruction_' + str(epoch) + '.png', nrow=n)
    let png = out.join("vae_reconstruction.png");
    wgrad::vis::save_image(&comparison, &png, n, 2)?;
    println!("wrote {}", png.display());

    // # PyTorch: sample = torch.randn(64, 20).to(device)
    let sample = Tensor::randn(&[64, LATENT], &dev)?;
    // # PyTorch: sample = model.decode(sample).cpu()
    let sample = no_grad(|| model.decode(&sample))?;
    // # PyTorch: save_image(sample.view(64, 1, 28, 28), 'results/sample_' + str(epoch) + '.png')
    let png = out.join("vae_samples.png");
    wgrad::vis::save_image(&enlarged(&sample, 4)?, &png, 8, 2)?;
    println!("wrote {}", png.display());
    Ok(())
}
