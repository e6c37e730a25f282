//! Scratch: compile-checks the snippets of docs/guide.md. Delete after use.
#![allow(dead_code, unused_variables, unused_imports)]

use std::sync::Arc;

use wgrad::prelude::*;

// ---------------------------------------------------------------- 1. tensors
fn devices() -> wgrad::Result<()> {
    let cpu = Device::cpu(); // the plain-Rust backend, always there
    let (dev, why) = Device::best_with_reason(); // a hardware GPU if any, else the CPU
    println!("training on {} because {why}", dev.name());
    if let Ok(gpu) = Device::gpu() {
        // the best adapter, software ones included
        println!("{}", gpu.name());
    }
    Ok(())
}

fn gpu_options() -> wgrad::Result<()> {
    use wgrad::GpuOptions;
    let dev = Device::gpu_with(GpuOptions {
        max_binding: Some(128 << 20), // behave like WebGPU's default limit
        ..GpuOptions::from_env()
    })?;
    for a in wgrad::list_adapters() {
        println!(
            "{} ({}, {}), software: {}",
            a.name, a.backend, a.device_type, a.is_software
        );
    }
    Ok(())
}

fn creation() -> wgrad::Result<()> {
    let dev = Device::cpu();
    let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &dev)?;
    let z = Tensor::zeros(&[2, 3], &dev)?;
    let o = Tensor::full(&[4], 0.5, &dev)?;
    let r = Tensor::arange(5, &dev)?; // [0, 1, 2, 3, 4] as f32
    let n = Tensor::randn(&[3, 3], &dev)?; // from the device's generator
    let u = Tensor::rand_seeded(&[3, 3], 42, &dev)?; // the same numbers on every device
    let idx = Tensor::from_vec(vec![2u32, 0], &[2], &dev)?; // u32: indices and labels
    let s = Tensor::scalar(3.0, &dev)?; // 0-dimensional

    assert_eq!(a.shape(), &[2, 3]);
    assert_eq!((a.rank(), a.numel(), a.dtype()), (2, 6, DType::F32));
    let values: Vec<f32> = a.to_vec()?; // T must match the dtype
    let total = a.sum()?.item()?; // f64, from a one-element tensor
    assert_eq!(total, 21.0);
    Ok(())
}

fn shapes() -> wgrad::Result<()> {
    let dev = Device::cpu();
    let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &dev)?;
    let b = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3], &dev)?;
    let c = a.add(&b)?; // [2, 3] + [3] -> [2, 3]
    let col = Tensor::from_vec(vec![1.0f32, -1.0], &[2, 1], &dev)?;
    let d = a.mul(&col)?; // [2, 3] * [2, 1] -> [2, 3]
    let e = a.matmul(&a.t()?)?; // [2, 3] x [3, 2] -> [2, 2]
    let rows = a.sum_dim(&[1], true)?; // [2, 1]
    let p = a.softmax(1)?; // each row sums to 1
    let flat = a.reshape(&[6])?; // reshape shares storage
    let both = Tensor::cat(&[&a, &a], 0)?; // [4, 3]
    let first = a.narrow(1, 0, 2)?; // columns 0..2: [2, 2]
    let picked = a.index_select(0, &Tensor::from_vec(vec![1u32], &[1], &dev)?)?; // row 1
    let best = a.argmax(1, false)?; // u32 [2]
    let mask = a.gt(&Tensor::scalar(2.5, &dev)?)?; // 1.0 where a > 2.5
    let clipped = Tensor::where_cond(&mask, &a, &Tensor::scalar(0.0, &dev)?)?;
    assert_eq!(c.to_vec::<f32>()?, [11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    assert_eq!(best.to_vec::<u32>()?, [2, 2]);
    assert_eq!(clipped.to_vec::<f32>()?, [0.0, 0.0, 3.0, 4.0, 5.0, 6.0]);
    Ok(())
}

fn dtypes() -> wgrad::Result<()> {
    let dev = Device::cpu();
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2], &dev)?; // f64: CPU only
    let y = x.to_dtype(DType::F32)?; // conversions: CPU tensors only
    let gpu_ready = y.clone(); // .to(&gpu) moves it
    Ok(())
}

fn deferred(dev: &Device) -> wgrad::Result<()> {
    let x = Tensor::randn(&[256, 256], dev)?;
    let y = x.matmul(&x)?.relu()?; // recorded, nothing has run yet on a GPU
    let m = y.mean()?; // still recorded
    println!("{}", m.item()?); // one submit of all three, one small readback
    dev.sync()?; // or wait explicitly (and see errors found on the device)
    Ok(())
}

// ---------------------------------------------------------------- 2. autograd
fn worked_example() -> wgrad::Result<()> {
    let dev = Device::cpu(); // the same on Device::gpu()?
    let x = Tensor::scalar(-2.0, &dev)?.requires_grad_(true)?;
    let y = Tensor::scalar(5.0, &dev)?.requires_grad_(true)?;
    let z = Tensor::scalar(-4.0, &dev)?.requires_grad_(true)?;
    let q = x.add(&y)?; // q = 3
    let f = q.mul(&z)?; // f = -12
    f.backward()?;
    let grad = |t: &Tensor| t.grad().unwrap().item();
    assert_eq!((grad(&x)?, grad(&y)?, grad(&z)?), (-4.0, -4.0, 3.0));
    Ok(())
}

fn sigmoid_neuron() -> wgrad::Result<()> {
    let dev = Device::cpu();
    // w = (w0, w1, w2), x = (x0, x1, 1): the bias pairs with a constant input 1.
    let w = Tensor::from_vec(vec![2.0f32, -3.0, -3.0], &[3], &dev)?.requires_grad_(true)?;
    let x = Tensor::from_vec(vec![-1.0f32, -2.0, 1.0], &[3], &dev)?.requires_grad_(true)?;
    let f = w.mul(&x)?.sum()?.sigmoid()?; // sigma(1) = 0.7311
    f.backward()?;
    let dw = w.grad().unwrap().to_vec::<f32>()?; // (-0.1966, -0.3932, 0.1966)
    let dx = x.grad().unwrap().to_vec::<f32>()?; // (0.3932, -0.5898, ...)
    assert!((f.item()? - 0.7311).abs() < 1e-4 && (dw[0] + 0.1966).abs() < 1e-4);
    assert!((dx[1] + 0.5898).abs() < 1e-4);
    Ok(())
}

fn grad_modes() -> wgrad::Result<()> {
    let dev = Device::cpu();
    let w = Tensor::randn(&[3], &dev)?.requires_grad_(true)?;
    let y = no_grad(|| w.mul(&w))?; // no graph recorded
    assert!(y.grad_fn().is_none());
    let frozen = w.mul(&w)?.detach(); // same values, cut from the graph
    let v = Tensor::from_vec(vec![1.0f32, 1.0, 1.0], &[3], &dev)?;
    let out = w.mul(&v)?; // not a scalar: give the output's gradient
    out.backward_with(&Tensor::ones(&[3], &dev)?)?;
    out.backward_with(&Tensor::ones(&[3], &dev)?).unwrap_err(); // the graph is spent
    w.zero_grad(); // gradients accumulate until cleared
    Ok(())
}

fn backward_twice() -> wgrad::Result<()> {
    let dev = Device::cpu();
    let x = Tensor::scalar(2.0, &dev)?.requires_grad_(true)?;
    let f = x.mul(&x)?;
    f.backward()?;
    assert!(matches!(f.backward(), Err(Error::Autograd(_))));
    let f = x.mul(&x)?; // rebuild the graph instead
    f.backward()?;
    assert_eq!(x.grad().unwrap().item()?, 8.0); // 4 + 4: accumulated
    Ok(())
}

// ---------------------------------------------------------------- 3. modules
use wgrad::nn::{Identity, Module};

struct TwoLayer {
    hidden: Linear,
    out: Linear,
}

impl Module for TwoLayer {
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        self.out.forward(&self.hidden.forward(x)?.relu()?)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![("hidden".into(), &self.hidden), ("out".into(), &self.out)]
    }
}

fn modules() -> wgrad::Result<()> {
    let dev = Device::cpu();
    let net = TwoLayer {
        hidden: Linear::new(&dev, 2, 8),
        out: Linear::new(&dev, 8, 1),
    };
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    );

    let model = Sequential::new()
        .add(Linear::new(&dev, 64, 128))
        .add(ReLU) // fused into the Linear above
        .add(Dropout::new(0.2))
        .add(Linear::new(&dev, 128, 64))
        .add(PReLU::new(&dev, 1, 0.25)) // trainable slope
        .add(Linear::new(&dev, 64, 32))
        .add(NoisyReLU::new(0.1)) // noise only in training mode
        .add(Linear::new(&dev, 32, 10));
    println!("{} parameters", model.num_parameters());
    model.eval(); // dropout and noise off
    model.train(); // back on (the default)
    let acts: Vec<Box<dyn Module>> = vec![
        Box::new(Sigmoid),
        Box::new(Tanh),
        Box::new(ReLU),
        Box::new(LeakyReLU(0.01)),
        Box::new(Softplus::default()),
        Box::new(Identity),
    ];
    Ok(())
}

fn losses() -> wgrad::Result<()> {
    use wgrad::nn::Reduction;
    let dev = Device::cpu();
    let logits = Tensor::randn(&[4, 3], &dev)?;
    let labels = Tensor::from_vec(vec![0u32, 2, 1, 2], &[4], &dev)?;
    let a = logits.cross_entropy(&labels)?; // mean, one fused kernel
    let b = CrossEntropyLoss {
        label_smoothing: 0.1,
        ..Default::default()
    }
    .forward(&logits, &labels)?;
    let target = Tensor::zeros(&[4, 3], &dev)?;
    let c = MSELoss {
        reduction: Reduction::Sum,
    }
    .forward(&logits, &target)?;
    let bce = BCEWithLogitsLoss {
        pos_weight: Some(Tensor::full(&[3], 2.0, &dev)?),
        ..Default::default()
    };
    let d = bce.forward(&logits, &target)?;
    Ok(())
}

fn optimizers() -> wgrad::Result<()> {
    use wgrad::optim::{clip_grad_norm, CosineAnnealingLR, Scheduled, StepLR};
    let dev = Device::cpu();
    let model = Sequential::new().add(Linear::new(&dev, 4, 2));
    let sgd = Sgd::new(model.parameters(), 0.1)
        .momentum(0.9)
        .nesterov(true)
        .weight_decay(5e-4);
    let adam = Adam::new(model.parameters(), 1e-3)
        .betas(0.9, 0.999)
        .eps(1e-8);
    let mut opt = AdamW::new(model.parameters(), 1e-3); // decoupled decay 0.01
    let mut sched = Scheduled::new(
        StepLR {
            step_size: 10,
            gamma: 0.5,
        },
        &opt,
    );
    sched.step(&mut opt); // once per epoch
    let norm = clip_grad_norm(&model.parameters(), 1.0)?; // None: no gradients yet
    Ok(())
}

fn training_loop() -> wgrad::Result<()> {
    use wgrad::data::{digits, make_batch, train_test_split};
    use wgrad::optim::{clip_grad_norm, CosineAnnealingLR, Scheduled};

    let dev = Device::best();
    dev.manual_seed(0); // initialisation and dropout repeat exactly

    // 1,797 digits, 4/5 to train on, 1/5 held out as one batch.
    let digits: Arc<dyn Dataset> = Arc::new(digits::load()?);
    let (train, test) = train_test_split(digits, 0.2, 0)?;
    let all: Vec<usize> = (0..test.len()).collect();
    let test_batch = make_batch(&test, &all, &dev)?;
    let mut loader = DataLoader::new(Arc::new(train), 64, &dev).shuffle(0);

    let model = Sequential::new()
        .add(Linear::new(&dev, 64, 128))
        .add(ReLU)
        .add(Dropout::new(0.2))
        .add(Linear::new(&dev, 128, 10));
    let epochs = 20;
    let mut opt = Sgd::new(model.parameters(), 0.1).momentum(0.9);
    let mut sched = Scheduled::new(
        CosineAnnealingLR {
            t_max: epochs,
            eta_min: 0.0,
        },
        &opt,
    );

    for epoch in 1..=epochs {
        model.train();
        let mut loss_sum = Tensor::scalar(0.0, &dev)?;
        for batch in loader.epoch() {
            let batch = batch?; // x [64, 64] f32, y [64] u32, already on `dev`
            let loss = model.forward(&batch.x)?.cross_entropy(&batch.y)?;
            opt.zero_grad();
            loss.backward()?;
            clip_grad_norm(&model.parameters(), 5.0)?;
            opt.step()?;
            loss_sum = loss_sum.add(&loss.detach())?; // summed on the device
        }
        sched.step(&mut opt);

        model.eval();
        let pred = no_grad(|| model.forward(&test_batch.x)?.argmax(1, false))?;
        let (pred, want) = (pred.to_vec::<u32>()?, test_batch.y.to_vec::<u32>()?);
        let right = pred.iter().zip(&want).filter(|(p, w)| p == w).count();
        println!(
            "epoch {epoch}: loss {:.4}, test accuracy {:.1}%",
            loss_sum.item()? / loader.len() as f64,
            100.0 * right as f64 / want.len() as f64
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- 4. data
use wgrad::data::{InMemoryDataset, Target};

struct Squares;

impl Dataset for Squares {
    fn len(&self) -> usize {
        100
    }
    fn feature_shape(&self) -> Vec<usize> {
        vec![1]
    }
    fn target_shape(&self) -> Vec<usize> {
        vec![1]
    }
    fn get(&self, i: usize) -> (Vec<f32>, Target) {
        let x = i as f32 / 100.0;
        (vec![x], Target::Values(vec![x * x]))
    }
}

fn data() -> wgrad::Result<()> {
    use wgrad::data::augment::Augment;
    let dev = Device::cpu();
    let mut loader = DataLoader::new(Arc::new(Squares), 16, &dev)
        .shuffle(7)
        .drop_last(true);
    for batch in loader.epoch() {
        let batch = batch?; // x [16, 1], y [16, 1]
        assert_eq!(batch.y.shape(), &[16, 1]);
    }

    // The digits as 1x8x8 images, so that image transforms apply.
    let digits = wgrad::data::digits::load()?;
    let images = InMemoryDataset::classification(
        digits.features().to_vec(),
        &[1, 8, 8],
        digits.labels().unwrap(),
    )?;
    let aug = Augment::new(0)
        .translate(1)
        .horizontal_flip(0.5)
        .brightness(0.2);
    let mut loader = DataLoader::new(Arc::new(images), 64, &dev)
        .shuffle(0)
        .augment(aug);
    let first = loader.epoch().next().unwrap()?; // x [64, 1, 8, 8], augmented on `dev`
    assert_eq!(first.x.shape(), &[64, 1, 8, 8]);
    Ok(())
}

// ---------------------------------------------------------------- 5. saving
fn saving() -> wgrad::Result<()> {
    let dev = Device::cpu();
    let model = Sequential::new()
        .add(Linear::new(&dev, 4, 8))
        .add(ReLU)
        .add(Linear::new(&dev, 8, 2));
    wgrad::io::save(&model, "/tmp/zz_model.safetensors")?; // keys 0.weight, 0.bias, 2.weight, 2.bias
    let fresh = Sequential::new()
        .add(Linear::new(&dev, 4, 8))
        .add(ReLU)
        .add(Linear::new(&dev, 8, 2));
    wgrad::io::load(&fresh, "/tmp/zz_model.safetensors")?;

    let tensors = wgrad::io::read_safetensors("/tmp/zz_model.safetensors", &dev)?;
    for (name, t) in &tensors {
        println!("{name}: {:?}", t.shape());
    }
    wgrad::io::write_safetensors(&model.state_dict(), "/tmp/zz_copy.safetensors")?;
    fresh.load_state_dict(&tensors)?;

    let wrong = Sequential::new().add(Linear::new(&dev, 4, 9));
    let e = wgrad::io::load(&wrong, "/tmp/zz_model.safetensors").unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    println!("{e}");
    Ok(())
}

fn checkpoints() -> wgrad::Result<()> {
    use wgrad::io::{load_checkpoint, save_checkpoint};
    use wgrad::optim::{CosineAnnealingLR, Scheduled};
    let dev = Device::cpu();
    let model = Sequential::new().add(Linear::new(&dev, 4, 2));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let mut sched = Scheduled::new(
        CosineAnnealingLR {
            t_max: 50,
            eta_min: 0.0,
        },
        &opt,
    );
    let (step, epoch) = (120u64, 3u64);
    save_checkpoint(
        "/tmp/zz_ck.safetensors",
        &model,
        &opt,
        Some(&sched),
        &dev,
        step,
        epoch,
    )?;

    // Later, in a fresh process: build the same model, optimizer and schedule, then
    let ck = load_checkpoint(
        "/tmp/zz_ck.safetensors",
        &model,
        &mut opt,
        Some(&mut sched),
        &dev,
    )?;
    println!("resuming after epoch {} (step {})", ck.epoch, ck.step);
    Ok(())
}

// ---------------------------------------------------------------- 6. CNNs
fn cnn() -> wgrad::Result<()> {
    use wgrad::ops::conv2d::ConvOptions;
    let dev = Device::cpu();
    let model = Sequential::new()
        .add(Conv2d::new(&dev, 1, 16, 3).padding(1)) // [N, 1, 28, 28] -> [N, 16, 28, 28]
        .add(BatchNorm2d::new(&dev, 16))
        .add(ReLU)
        .add(MaxPool2d::new(2)) // -> [N, 16, 14, 14]
        .add(Conv2d::new(&dev, 16, 32, 3).padding(1))
        .add(ReLU) // fused into the convolution
        .add(AdaptiveAvgPool2d((1, 1))) // -> [N, 32, 1, 1]
        .add(Flatten::default()) // -> [N, 32]
        .add(Linear::new(&dev, 32, 10));
    let x = Tensor::randn(&[2, 1, 28, 28], &dev)?;
    assert_eq!(model.forward(&x)?.shape(), &[2, 10]);

    let depthwise = Conv2d::with_options(
        &dev,
        32,
        32,
        (3, 3),
        ConvOptions {
            padding: (2, 2),
            dilation: (2, 2),
            groups: 32,
            ..Default::default()
        },
        false, // no bias
    );
    let up = ConvTranspose2d::new(&dev, 32, 16, 3, 2)
        .padding(1)
        .output_padding(1); // 4x4 -> 8x8
    let y = up.forward(&Tensor::randn(&[1, 32, 4, 4], &dev)?)?;
    assert_eq!(y.shape(), &[1, 16, 8, 8]);
    let z = Upsample(2).forward(&y)?;
    let w = AvgPool2d::new(2).forward(&z)?;
    let y2 = x.max_pool2d((3, 3), (2, 2), (1, 1))?;
    Ok(())
}

// ---------------------------------------------------------------- 7. RNNs
fn rnns() -> wgrad::Result<()> {
    use wgrad::nn::{GRUCell, LSTMCell, RNNCell, RecurrentOptions};
    let dev = Device::cpu();
    let opts = RecurrentOptions {
        num_layers: 2,
        dropout: 0.2,
        ..Default::default()
    };
    let lstm = LSTM::with_options(&dev, 8, 16, opts)?;
    let x = Tensor::randn(&[5, 3, 8], &dev)?; // [T, B, I]
    let (out, state) = lstm.forward_with_state(&x, None)?; // out [5, 3, 16]; h, c [2, 3, 16]
    assert_eq!(out.shape(), &[5, 3, 16]);
    assert_eq!(state.c.as_ref().unwrap().shape(), &[2, 3, 16]);
    let (next, _) = lstm.forward_with_state(&x, Some(&state.detach()))?; // truncated BPTT

    let gru = GRU::new(&dev, 8, 16);
    let relu_rnn = RNN::with_options(&dev, 8, 16, true, RecurrentOptions::default())?;
    let h = gru.forward(&x)?; // from a zero state

    let cell = LSTMCell::new(&dev, 8, 16);
    let (h1, c1) = cell.step(&Tensor::randn(&[3, 8], &dev)?, None)?;
    let (h2, c2) = cell.step(&Tensor::randn(&[3, 8], &dev)?, Some((&h1, &c1)))?;
    let g = GRUCell::new(&dev, 8, 16).step(&Tensor::randn(&[3, 8], &dev)?, None)?;
    let r = RNNCell::new(&dev, 8, 16)
        .relu()
        .step(&Tensor::randn(&[3, 8], &dev)?, None)?;

    let emb = Embedding::new(&dev, 76, 64);
    let ids = Tensor::from_vec(vec![3u32, 14, 15, 9, 2, 6], &[3, 2], &dev)?; // [T, B]
    assert_eq!(emb.forward(&ids)?.shape(), &[3, 2, 64]);
    Ok(())
}

fn tbptt() -> wgrad::Result<()> {
    use wgrad::data::text::{load_shakespeare, CharVocab, SequenceBatches};
    use wgrad::nn::RecurrentState;
    let dev = Device::cpu();
    let text = load_shakespeare()?;
    let vocab = CharVocab::from_text(&text);
    let tokens = vocab.encode(&text[..20_000])?;
    let chunks = SequenceBatches::new(&tokens, 8, 32)?; // 8 streams, 32 steps per chunk
    let (emb, lstm, head) = (
        Embedding::new(&dev, vocab.len(), 32),
        LSTM::new(&dev, 32, 64),
        Linear::new(&dev, 64, vocab.len()),
    );
    let mut params = emb.parameters();
    params.extend(lstm.parameters());
    params.extend(head.parameters());
    let mut opt = Adam::new(params, 3e-3);
    let mut state: Option<RecurrentState> = None;
    for k in 0..3 {
        let (x, y) = chunks.tensors(k, &dev)?; // u32 [T, B] each
        let (t, b) = (x.shape()[0], x.shape()[1]);
        let (out, s) = lstm.forward_with_state(&emb.forward(&x)?, state.as_ref())?;
        let logits = head.forward(&out.reshape(&[t * b, 64])?)?;
        let loss = logits.cross_entropy(&y.reshape(&[t * b])?)?;
        opt.zero_grad();
        loss.backward()?;
        opt.step()?;
        state = Some(s.detach()); // carry the state, not its history
    }
    Ok(())
}

// ---------------------------------------------------------------- 8. performance
fn profiling(dev: &Device) -> wgrad::Result<()> {
    let model = Sequential::new()
        .add(Linear::new(dev, 64, 128))
        .add(ReLU)
        .add(Linear::new(dev, 128, 10));
    let mut opt = Sgd::new(model.parameters(), 0.1);
    let x = Tensor::randn(&[64, 64], dev)?;
    let y = Tensor::from_vec(vec![3u32; 64], &[64], dev)?;
    let mut step = || -> wgrad::Result<f64> {
        let loss = model.forward(&x)?.cross_entropy(&y)?;
        opt.zero_grad();
        loss.backward()?;
        opt.step()?;
        loss.item()
    };
    step()?; // warm up: pipelines and buffers are made on the first step
    let before = dev.counters();
    let (loss, profile) = dev.profile(&mut step)?;
    let loss = loss?;
    println!("{profile}"); // a table per kernel: dispatches, workgroups, bytes, time
    let after = dev.counters();
    println!(
        "{} dispatches, {} new buffers, {} new pipelines",
        after.dispatches - before.dispatches,
        after.buffers_created - before.buffers_created,
        after.pipelines_created - before.pipelines_created
    );
    for k in profile.by_kernel() {
        println!(
            "{}: {} dispatches, {:?} ns",
            k.kernel, k.dispatches, k.gpu_ns
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- 9. browser
async fn in_the_browser() -> wgrad::Result<f64> {
    let dev = Device::gpu_async().await?; // the only way to open WebGPU
    let x = Tensor::randn(&[1000], &dev)?;
    let mean = x.mean()?.item_async().await?; // never .item() in the browser
    let values = x.to_vec_async::<f32>().await?;
    dev.sync_async().await?;
    Ok(mean)
}

// ---------------------------------------------------------------- 10. distributed
fn ddp() -> wgrad::Result<()> {
    use wgrad::distributed::{self, Collective, DistributedDataParallel, DistributedSampler};
    let comm = distributed::init()?; // MPI with --features mpi, else one process
    let dev = distributed::device_for_rank(comm.as_ref()); // one GPU per local rank

    let data: Arc<dyn Dataset> = Arc::new(wgrad::data::digits::load()?);
    let sampler = DistributedSampler::new(data.len(), comm.world_size(), comm.rank())?.shuffle(0);
    let mut loader = DataLoader::new(data, 32, &dev).distributed(sampler)?; // per-rank batch

    let model = Sequential::new()
        .add(Linear::new(&dev, 64, 128))
        .add(ReLU)
        .add(Linear::new(&dev, 128, 10));
    let ddp = DistributedDataParallel::new(model, comm.clone())?; // rank 0's weights everywhere
    let mut opt = Sgd::new(ddp.parameters(), 0.1).momentum(0.9);
    for epoch in 0..2 {
        for batch in loader.epoch() {
            let batch = batch?;
            let loss = ddp.forward(&batch.x)?.cross_entropy(&batch.y)?;
            opt.zero_grad();
            ddp.backward(&loss)?; // backward, then gradients averaged over the ranks
            opt.step()?;
        }
    }
    if comm.rank() == 0 {
        wgrad::io::save(ddp.module(), "/tmp/zz_ddp.safetensors")?; // names without `module.`
    }
    let s = ddp.stats();
    println!("sync {:?} of which all-reduce {:?}", s.total, s.all_reduce);
    Ok(())
}

// ---------------------------------------------------------------- 11. errors
fn errors() -> wgrad::Result<()> {
    let dev = Device::cpu();
    let a = Tensor::zeros(&[32, 64], &dev)?;
    let b = Tensor::zeros(&[65, 10], &dev)?;
    match a.matmul(&b) {
        Err(Error::Shape { op, msg }) => eprintln!("{op} refused: {msg}"),
        Err(other) => return Err(other),
        Ok(_) => unreachable!(),
    }
    let e = a.matmul(&b).unwrap_err();
    println!("{e}");
    let e = Tensor::from_vec(vec![1u32], &[1], &dev)?
        .requires_grad_(true)
        .unwrap_err();
    println!("{e}");
    let e = Tensor::zeros(&[3], &dev)?.to_vec::<u32>().unwrap_err();
    println!("{e}");
    let e = Tensor::zeros(&[1 << 40], &dev).unwrap_err();
    println!("{e}");
    let e = a.narrow(0, 30, 5).unwrap_err();
    println!("{e}");
    let x = Tensor::zeros(&[2, 3], &dev)?;
    let e = x
        .cross_entropy(&Tensor::from_vec(vec![0u32, 7], &[2], &dev)?)
        .unwrap_err();
    println!("{e}");
    Ok(())
}

fn main() -> wgrad::Result<()> {
    devices()?;
    creation()?;
    shapes()?;
    dtypes()?;
    deferred(&Device::cpu())?;
    worked_example()?;
    sigmoid_neuron()?;
    grad_modes()?;
    backward_twice()?;
    modules()?;
    losses()?;
    optimizers()?;
    std::env::set_var("WGRAD_DEVICE", "cpu");
    training_loop()?;
    data()?;
    saving()?;
    checkpoints()?;
    cnn()?;
    rnns()?;
    tbptt()?;
    profiling(&Device::cpu())?;
    println!("{}", pollster::block_on(async { 1 }));
    ddp()?;
    errors()?;
    if std::env::args().any(|a| a == "--gpu") {
        gpu_options()?;
        let g = Device::gpu()?;
        deferred(&g)?;
        profiling(&g)?;
        println!("{}", pollster::block_on(in_the_browser())?);
    }
    println!("all guide snippets ran");
    Ok(())
}
