//! `#[derive(Module)]`: a derived MLP (a `Vec` of layers with a dropout inside, an
//! `Option` head, a parameter, a buffer, a train flag, skipped and plain fields) names
//! its parameters as PyTorch does, counts them, reaches the dropout with `train()` /
//! `eval()`, trains on both devices, moves between them and survives a safetensors save
//! and a checkpoint; nested `Vec` / `Option` fields, generics, raw names and boxed
//! children; optimizers refuse an empty parameter list. The struct options: a unit
//! struct with `hooks(fusable_activation)` and a layer with
//! `hooks(forward_with_activation)` fuse in a `Sequential`; `forward = "..."` names the
//! method behind `Module::forward`. The built-in layers, now derived, keep their state
//! names, modes and hooks. The compile errors (no inherent `forward`, a hook without its
//! inherent method, an unknown hook, a field that is not a module, a `Vec<Parameter>`,
//! a tuple struct holding a module) are `compile_fail` doctests on `wgrad::nn::Module`.
//! A tuple struct of plain settings derives.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::{assert_close, test_device, vec_f32};
use wgrad::io::{load_checkpoint, save_checkpoint};
use wgrad::nn::{Act, Buffer, Dropout, Linear, Module, Parameter, TrainFlag};
use wgrad::prelude::*;

/// A multi-layer perceptron written with the derive.
#[derive(Module)]
struct Mlp {
    /// A learned output scale: the one local parameter.
    scale: Parameter,
    /// Subtracted from the input: the one buffer (saved, never trained).
    offset: Buffer,
    input: Linear,
    /// `Linear`, `Dropout`, `Linear`: children `layers.0`, `layers.1`, `layers.2`.
    layers: Vec<Box<dyn Module>>,
    /// A child only when present.
    head: Option<Linear>,
    /// Set by `train()` / `eval()`.
    training: TrainFlag,
    #[module(skip)]
    device: Device,
    /// Plain settings need no attribute.
    width: usize,
    name: String,
}

impl Mlp {
    fn new(dev: &Device, width: usize, head: bool, p: f64) -> Mlp {
        Mlp {
            scale: Parameter::new(Tensor::ones(&[1], dev).unwrap()),
            offset: Buffer::new(Tensor::zeros(&[2], dev).unwrap()),
            input: Linear::new(dev, 2, width),
            layers: vec![
                Box::new(Linear::new(dev, width, width)),
                Box::new(Dropout::new(p)),
                Box::new(Linear::new(dev, width, width)),
            ],
            head: head.then(|| Linear::new(dev, width, 2)),
            training: TrainFlag::default(),
            device: dev.clone(),
            width,
            name: "mlp".into(),
        }
    }

    /// The inherent `forward` that the derived `Module::forward` calls.
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        let mut h = self.input.forward(&x.sub(&self.offset.tensor())?)?.relu()?;
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        if let Some(head) = &self.head {
            h = head.forward(&h.relu()?)?;
        }
        h.mul(&self.scale.tensor())
    }
}

fn names(pairs: Vec<(String, Tensor)>) -> Vec<String> {
    pairs.into_iter().map(|(n, _)| n).collect()
}

/// XOR, four points repeated: a task a linear model cannot fit.
fn xor(dev: &Device) -> (Tensor, Tensor) {
    let x = Tensor::from_vec(
        vec![0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0],
        &[4, 2],
        dev,
    )
    .unwrap();
    let y = Tensor::from_vec(vec![0u32, 1, 1, 0], &[4], dev).unwrap();
    (x, y)
}

fn tmp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wgrad-derive-{}-{name}", std::process::id()))
}

#[test]
fn derived_names_are_pytorchs() {
    let dev = Device::cpu();
    let m = Mlp::new(&dev, 4, true, 0.5);
    assert_eq!(
        names(m.named_parameters()),
        [
            "scale",
            "input.weight",
            "input.bias",
            "layers.0.weight",
            "layers.0.bias",
            "layers.2.weight",
            "layers.2.bias",
            "head.weight",
            "head.bias",
        ]
    );
    assert_eq!(names(m.named_buffers()), ["offset"]);
    assert_eq!(
        names(m.state_dict()),
        [
            "scale",
            "offset",
            "input.weight",
            "input.bias",
            "layers.0.weight",
            "layers.0.bias",
            "layers.2.weight",
            "layers.2.bias",
            "head.weight",
            "head.bias",
        ]
    );
    let children: Vec<String> = m.children().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        children,
        ["input", "layers.0", "layers.1", "layers.2", "head"]
    );

    // Without the head: no `head` child, no `head.*` parameters.
    let m = Mlp::new(&dev, 4, false, 0.5);
    let children: Vec<String> = m.children().into_iter().map(|(n, _)| n).collect();
    assert_eq!(children, ["input", "layers.0", "layers.1", "layers.2"]);
    assert!(names(m.named_parameters())
        .iter()
        .all(|n| !n.starts_with("head")));
}

#[test]
fn derived_counts_parameters_by_hand() {
    let dev = Device::cpu();
    let w = 16;
    let linear = |i: usize, o: usize| i * o + o;
    let without_head = 1 + linear(2, w) + linear(w, w) + linear(w, w);
    assert_eq!(without_head, 593);
    assert_eq!(Mlp::new(&dev, w, false, 0.1).num_parameters(), without_head);
    let m = Mlp::new(&dev, w, true, 0.1);
    assert_eq!(m.num_parameters(), without_head + linear(w, 2));
    assert_eq!(m.parameters().len(), 9);
    // The skipped and plain fields are still there for the struct's own use.
    assert_eq!((m.width, m.name.as_str()), (16, "mlp"));
    assert!(!m.device.is_gpu());
}

#[test]
fn train_and_eval_reach_the_dropout_inside_the_vec() {
    let dev = Device::cpu();
    dev.manual_seed(3);
    let m = Mlp::new(&dev, 64, false, 0.5);
    let x = Tensor::ones(&[8, 2], &dev).unwrap();
    assert!(m.training.get(), "a new module trains, as in PyTorch");

    m.eval();
    assert!(!m.training.get());
    let a = vec_f32(&m.forward(&x).unwrap());
    let b = vec_f32(&m.forward(&x).unwrap());
    assert_eq!(a, b, "eval(): the dropout in layers.1 is the identity");

    m.train();
    assert!(m.training.get());
    let c = vec_f32(&m.forward(&x).unwrap());
    let d = vec_f32(&m.forward(&x).unwrap());
    assert_ne!(c, d, "train(): the dropout in layers.1 drops");
    assert_ne!(a, c);

    // Through the trait object too.
    let dynamic: &dyn Module = &m;
    dynamic.set_training(false);
    assert!(!m.training.get());
    assert_eq!(vec_f32(&dynamic.forward(&x).unwrap()), a);
}

test_device!(
    /// A derived MLP learns XOR with Adam: the evaluation loss falls by more than half,
    /// and every parameter (the scale, the `Vec`'s layers, the `Option` head) moved.
    derived_mlp_trains_cpu,
    derived_mlp_trains_gpu,
    |dev| {
        dev.manual_seed(0);
        let m = Mlp::new(&dev, 16, true, 0.1);
        let (x, y) = xor(&dev);
        let before: Vec<Vec<f32>> = m.parameters().iter().map(vec_f32).collect();
        let eval_loss = |m: &Mlp| {
            m.eval();
            let l = m.forward(&x).unwrap().cross_entropy(&y).unwrap();
            m.train();
            l.item().unwrap()
        };
        let first = eval_loss(&m);
        let mut opt = Adam::new(m.parameters(), 0.03);
        for _ in 0..150 {
            let loss = m.forward(&x).unwrap().cross_entropy(&y).unwrap();
            opt.zero_grad();
            loss.backward().unwrap();
            opt.step().unwrap();
        }
        let last = eval_loss(&m);
        assert!(last < first / 2.0, "loss {first} -> {last}");
        for ((name, p), old) in m.named_parameters().iter().zip(&before) {
            assert_ne!(&vec_f32(p), old, "{name} did not train");
        }
        assert_eq!(vec_f32(&m.offset.tensor()), [0.0, 0.0], "buffers are not trained");
    }
);

#[test]
fn derived_module_moves_to_the_gpu() {
    let cpu = Device::cpu();
    let gpu = common::gpu();
    cpu.manual_seed(1);
    let m = Mlp::new(&cpu, 8, true, 0.1);
    m.eval();
    let x = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.25], &[2, 2], &cpu).unwrap();
    let want = vec_f32(&m.forward(&x).unwrap());
    m.to_device(&gpu).unwrap();
    for (name, t) in m.state_dict() {
        assert!(t.device().is_gpu(), "{name} stayed on the CPU");
    }
    let got = vec_f32(&m.forward(&x.to(&gpu).unwrap()).unwrap());
    assert_close(&got, &want, 1e-5, 1e-4, "forward after to_device");
}

#[test]
fn derived_module_saves_and_loads_by_dotted_name() {
    let dev = Device::cpu();
    dev.manual_seed(5);
    let trained = Mlp::new(&dev, 8, true, 0.2);
    trained
        .offset
        .replace(Tensor::from_vec(vec![0.5f32, -0.25], &[2], &dev).unwrap());
    let path = tmp_path("save.safetensors");
    wgrad::io::save(&trained, &path).unwrap();
    let file = wgrad::io::read_safetensors(&path, &dev).unwrap();
    let mut file_names = names(file);
    file_names.sort();
    let mut want = names(trained.state_dict());
    want.sort();
    assert_eq!(file_names, want);

    dev.manual_seed(6);
    let fresh = Mlp::new(&dev, 8, true, 0.2);
    let x = Tensor::from_vec(vec![1.0f32, 2.0, -1.0, 0.5], &[2, 2], &dev).unwrap();
    trained.eval();
    fresh.eval();
    assert_ne!(
        vec_f32(&fresh.forward(&x).unwrap()),
        vec_f32(&trained.forward(&x).unwrap())
    );
    wgrad::io::load(&fresh, &path).unwrap();
    for ((n, a), (_, b)) in fresh.state_dict().iter().zip(trained.state_dict()) {
        assert_eq!(vec_f32(a), vec_f32(&b), "{n}");
    }
    assert_eq!(
        vec_f32(&fresh.forward(&x).unwrap()),
        vec_f32(&trained.forward(&x).unwrap())
    );

    // Another architecture (no head) does not fit, and names what is wrong.
    let headless = Mlp::new(&dev, 8, false, 0.2);
    let err = wgrad::io::load(&headless, &path).unwrap_err().to_string();
    assert!(err.contains("unexpected key head.weight"), "{err}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn derived_module_round_trips_a_checkpoint() {
    let dev = Device::cpu();
    dev.manual_seed(7);
    let (x, y) = xor(&dev);
    let m = Mlp::new(&dev, 8, true, 0.0);
    let mut opt = Adam::new(m.parameters(), 0.01);
    let train_step = |m: &Mlp, opt: &mut Adam| {
        let loss = m.forward(&x).unwrap().cross_entropy(&y).unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
    };
    for _ in 0..3 {
        train_step(&m, &mut opt);
    }
    let path = tmp_path("checkpoint.safetensors");
    save_checkpoint(&path, &m, &opt, None, &dev, 3, 0).unwrap();

    dev.manual_seed(8);
    let resumed = Mlp::new(&dev, 8, true, 0.0);
    let mut resumed_opt = Adam::new(resumed.parameters(), 0.01);
    let ck = load_checkpoint(&path, &resumed, &mut resumed_opt, None, &dev).unwrap();
    assert_eq!(ck.step, 3);
    let mut stored = names(ck.model.clone());
    stored.sort();
    let mut want = names(m.state_dict());
    want.sort();
    assert_eq!(stored, want);
    let file = names(wgrad::io::read_safetensors(&path, &dev).unwrap());
    for n in [
        "model.scale",
        "model.offset",
        "model.layers.2.bias",
        "model.head.weight",
    ] {
        assert!(file.iter().any(|f| f == n), "{n} not in {file:?}");
    }
    // Both continue identically.
    train_step(&m, &mut opt);
    train_step(&resumed, &mut resumed_opt);
    for ((n, a), (_, b)) in resumed.state_dict().iter().zip(m.state_dict()) {
        assert_eq!(vec_f32(a), vec_f32(&b), "{n}");
    }
    std::fs::remove_file(&path).ok();
}

/// A block of a deeper model: nested derives name their parameters through each level.
#[derive(Module)]
struct Block {
    fc: Linear,
    gate: Option<Parameter>,
    stats: Option<Buffer>,
}

impl Block {
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        let h = self.fc.forward(x)?;
        match &self.gate {
            Some(g) => h.mul(&g.tensor()),
            None => Ok(h),
        }
    }
}

/// `Vec` and `Option` nest, as `nn.ModuleList` inside `nn.ModuleList` does in PyTorch.
#[derive(Module)]
struct Deep {
    stages: Vec<Vec<Block>>,
    extra: Option<Vec<Linear>>,
    maybe: Vec<Option<Linear>>,
    boxed: Box<dyn Module>,
    r#type: Linear,
    #[module(skip)]
    note: std::collections::HashMap<String, Device>,
    sizes: Vec<usize>,
    pair: (f32, bool),
    limits: [u32; 2],
    label: Option<&'static str>,
}

impl Deep {
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        let mut h = x.clone();
        for stage in &self.stages {
            for block in stage {
                h = block.forward(&h)?;
            }
        }
        self.r#type.forward(&self.boxed.forward(&h)?)
    }
}

fn block(dev: &Device, gate: bool, stats: bool) -> Block {
    Block {
        fc: Linear::new(dev, 3, 3),
        gate: gate.then(|| Parameter::new(Tensor::ones(&[3], dev).unwrap())),
        stats: stats.then(|| Buffer::new(Tensor::zeros(&[3], dev).unwrap())),
    }
}

#[test]
fn nested_vec_and_option_fields_get_pytorch_names() {
    let dev = Device::cpu();
    let deep = Deep {
        stages: vec![
            vec![block(&dev, true, false)],
            vec![block(&dev, false, true), block(&dev, false, false)],
        ],
        extra: Some(vec![Linear::new(&dev, 1, 1)]),
        maybe: vec![None, Some(Linear::with_bias(&dev, 1, 1, false))],
        boxed: Box::new(Linear::new(&dev, 3, 2)),
        r#type: Linear::with_bias(&dev, 2, 1, false),
        note: Default::default(),
        sizes: vec![3, 3],
        pair: (0.5, true),
        limits: [1, 2],
        label: Some("deep"),
    };
    assert_eq!(
        names(deep.named_parameters()),
        [
            "stages.0.0.gate", // a module's own parameters come before its children's
            "stages.0.0.fc.weight",
            "stages.0.0.fc.bias",
            "stages.1.0.fc.weight",
            "stages.1.0.fc.bias",
            "stages.1.1.fc.weight",
            "stages.1.1.fc.bias",
            "extra.0.weight",
            "extra.0.bias",
            "maybe.1.weight",
            "boxed.weight",
            "boxed.bias",
            "type.weight",
        ]
    );
    assert_eq!(names(deep.named_buffers()), ["stages.1.0.stats"]);
    let y = Module::forward(&deep, &Tensor::ones(&[4, 3], &dev).unwrap()).unwrap();
    assert_eq!(y.shape(), [4, 1]);
    assert!(deep.note.is_empty());
    assert_eq!(
        (deep.sizes.len(), deep.pair, deep.limits, deep.label),
        (2, (0.5, true), [1, 2], Some("deep"))
    );
}

/// A generic wrapper: the type parameter carries its own `Module` bound.
#[derive(Module)]
struct Residual<M: Module> {
    inner: M,
}

impl<M: Module> Residual<M> {
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        x.add(&self.inner.forward(x)?)
    }
}

#[test]
fn generic_derived_modules_work() {
    let dev = Device::cpu();
    let r = Residual {
        inner: Residual {
            inner: Linear::new(&dev, 2, 2),
        },
    };
    assert_eq!(
        names(r.named_parameters()),
        ["inner.inner.weight", "inner.inner.bias"]
    );
    let x = Tensor::ones(&[1, 2], &dev).unwrap();
    let inner = r.inner.inner.forward(&x).unwrap();
    let want: Vec<f32> = vec_f32(&inner).iter().map(|v| v + 2.0).collect();
    assert_close(
        &vec_f32(&r.forward(&x).unwrap()),
        &want,
        1e-6,
        1e-6,
        "x + (x + f(x))",
    );
    // A derived module in a Sequential, boxed as a trait object.
    let seq = Sequential::new().add(r).add(ReLU);
    assert_eq!(
        names(seq.named_parameters()),
        ["0.inner.inner.weight", "0.inner.inner.bias"]
    );
}

/// No parameters at all: a derived module of a dropout only.
#[derive(Module)]
struct OnlyDropout {
    drop: Dropout,
}

impl OnlyDropout {
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        self.drop.forward(x)
    }
}

#[test]
fn optimizers_refuse_an_empty_parameter_list() {
    let dev = Device::cpu();
    let m = OnlyDropout {
        drop: Dropout::new(0.5),
    };
    assert!(m.parameters().is_empty());
    let mut optimizers: Vec<(&str, Box<dyn Optimizer>)> = vec![
        ("sgd_step", Box::new(Sgd::new(m.parameters(), 0.1))),
        ("sgd_step", Box::new(Sgd::new(vec![], 0.1).momentum(0.9))),
        ("adam_step", Box::new(Adam::new(m.parameters(), 1e-3))),
        ("adam_step", Box::new(AdamW::new(vec![], 1e-3))),
    ];
    for (op, opt) in &mut optimizers {
        match opt.step() {
            Err(Error::Argument { op: got, msg }) => {
                assert_eq!(&got, op);
                assert!(msg.contains("no parameters"), "{msg}");
            }
            other => panic!("{op}: {other:?}"),
        }
    }

    // A model with parameters still steps (the check is only for the empty list).
    let layer = Linear::new(&dev, 2, 1);
    let mut opt = Sgd::new(layer.parameters(), 0.1);
    let before = vec_f32(&layer.parameters()[0]);
    layer
        .forward(&Tensor::ones(&[1, 2], &dev).unwrap())
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    opt.step().unwrap();
    assert_ne!(vec_f32(&layer.parameters()[0]), before);
}

/// A unit struct derives a stateless module; `hooks(fusable_activation)` makes the
/// derived impl report the inherent `fusable_activation`, so a layer before it in a
/// `Sequential` may fuse it.
#[derive(Module)]
#[module(hooks(fusable_activation))]
struct Swish;

impl Swish {
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        x.silu()
    }
    fn fusable_activation(&self) -> Option<Act> {
        Some(Act::Silu)
    }
}

/// A layer that fuses an activation (`hooks(forward_with_activation)`) and records which
/// ones it was asked to fuse; a skipped field holds the record.
#[derive(Module)]
#[module(hooks(forward_with_activation, fusable_activation))]
struct Recording {
    fc: Linear,
    #[module(skip)]
    fused: Arc<Mutex<Vec<Act>>>,
}

impl Recording {
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        self.fc.forward(x)
    }
    fn forward_with_activation(&self, x: &Tensor, act: Act) -> Option<wgrad::Result<Tensor>> {
        self.fused.lock().unwrap().push(act);
        let fc = &self.fc;
        let bias = fc.bias.as_ref().map(|b| b.tensor());
        Some(x.linear_act(&fc.weight.tensor(), bias.as_ref(), act))
    }
    /// Not an activation itself: the hook may say so.
    fn fusable_activation(&self) -> Option<Act> {
        None
    }
}

#[test]
fn hooks_delegate_to_the_inherent_methods() {
    let dev = Device::cpu();
    assert_eq!(Module::fusable_activation(&Swish), Some(Act::Silu));
    assert!(Swish.named_parameters().is_empty());
    // Without the hook, the trait's default: not fusable, no fused forward.
    let plain = OnlyDropout {
        drop: Dropout::new(0.5),
    };
    assert_eq!(plain.fusable_activation(), None);
    let x = Tensor::randn_seeded(&[3, 2], 7, &dev).unwrap();
    assert!(plain.forward_with_activation(&x, Act::Relu).is_none());

    let recording = |log: &Arc<Mutex<Vec<Act>>>| Recording {
        fc: Linear::new(&dev, 2, 2),
        fused: log.clone(),
    };
    let layer = recording(&Arc::default());
    assert_eq!(Module::fusable_activation(&layer), None);
    let want = vec_f32(&layer.fc.forward(&x).unwrap().silu().unwrap());
    let fused = Module::forward_with_activation(&layer, &x, Act::Silu)
        .expect("the hook's inherent method answers")
        .unwrap();
    assert_close(&vec_f32(&fused), &want, 1e-6, 1e-6, "fused silu");
    assert_eq!(*layer.fused.lock().unwrap(), [Act::Silu]);

    // In a Sequential: the derived layer fuses the derived activation after it, and
    // the names are the derived ones.
    let (log, last) = (Arc::default(), Arc::default());
    let model = Sequential::new()
        .add(recording(&log))
        .add(Swish)
        .add(recording(&last));
    assert_eq!(
        names(model.named_parameters()),
        ["0.fc.weight", "0.fc.bias", "2.fc.weight", "2.fc.bias"]
    );
    assert_eq!(model.forward(&x).unwrap().shape(), [3, 2]);
    assert_eq!(*log.lock().unwrap(), [Act::Silu]);
    assert!(last.lock().unwrap().is_empty(), "nothing after it to fuse");
    // A dropout is no activation: nothing fused.
    let log = Arc::default();
    let second = Sequential::new()
        .add(recording(&log))
        .add(Dropout::new(0.0));
    second.forward(&x).unwrap();
    assert!(log.lock().unwrap().is_empty());
}

/// Several outputs: the inherent `forward` returns a tuple, and `#[module(forward =
/// "...")]` names the one-tensor method that the derived `Module::forward` calls.
#[derive(Module)]
#[module(forward = "reconstruction")]
struct TwoHeads {
    body: Linear,
    head: Linear,
}

impl TwoHeads {
    fn forward(&self, x: &Tensor) -> wgrad::Result<(Tensor, Tensor)> {
        let h = self.body.forward(x)?;
        Ok((self.head.forward(&h)?, h))
    }
    fn reconstruction(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        Ok(self.forward(x)?.0)
    }
}

#[test]
fn forward_option_names_the_method_the_trait_calls() {
    let dev = Device::cpu();
    let m = TwoHeads {
        body: Linear::new(&dev, 3, 5),
        head: Linear::new(&dev, 5, 2),
    };
    let x = Tensor::randn_seeded(&[4, 3], 3, &dev).unwrap();
    let (out, hidden) = m.forward(&x).unwrap(); // the inherent: two outputs
    assert_eq!(hidden.shape(), [4, 5]);
    let via_trait = Module::forward(&m, &x).unwrap();
    assert_eq!(vec_f32(&via_trait), vec_f32(&out));
    assert_eq!(
        names(m.named_parameters()),
        ["body.weight", "body.bias", "head.weight", "head.bias"]
    );
    // As a boxed child the trait's one output is used.
    let seq = Sequential::new().add(m).add(ReLU);
    assert_eq!(seq.forward(&x).unwrap().shape(), [4, 2]);
}

/// The built-in layers derive `Module`: their state names, modes and hooks are still
/// PyTorch's and the hand-written impls' (the checkpoint tests load files saved before).
#[test]
fn built_in_layers_keep_their_names_modes_and_hooks() {
    use wgrad::distributed::{DistributedDataParallel, SingleProcess};
    use wgrad::nn::{BatchNormOptions, ConvTranspose2d, Identity, Mish, NoisyReLU};
    let dev = Device::cpu();
    let state = |m: &dyn Module| names(m.state_dict());
    assert_eq!(state(&Linear::new(&dev, 2, 3)), ["weight", "bias"]);
    assert_eq!(state(&Linear::with_bias(&dev, 2, 3, false)), ["weight"]);
    assert_eq!(state(&Conv2d::new(&dev, 1, 2, 3)), ["weight", "bias"]);
    assert_eq!(
        state(&ConvTranspose2d::new(&dev, 2, 1, 2, 2)),
        ["weight", "bias"]
    );
    assert_eq!(
        state(&BatchNorm2d::new(&dev, 2)),
        [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked"
        ]
    );
    let no_affine = BatchNormOptions {
        affine: false,
        ..Default::default()
    };
    let bn = BatchNorm1d::with_options(&dev, 2, no_affine).unwrap();
    assert!(bn.parameters().is_empty());
    assert_eq!(
        state(&bn),
        ["running_mean", "running_var", "num_batches_tracked"]
    );
    assert_eq!(state(&PReLU::new(&dev, 1, 0.25)), ["weight"]);
    assert_eq!(state(&Embedding::new(&dev, 5, 3)), ["weight"]);
    let stateless: [&dyn Module; 10] = [
        &Flatten::new(),
        &MaxPool2d::new(2),
        &AvgPool2d::new(2),
        &AdaptiveAvgPool2d((1, 1)),
        &Upsample(2),
        &LeakyReLU(0.2),
        &Softplus::default(),
        &GELU::default(),
        &Dropout::new(0.5),
        &NoisyReLU::new(0.1),
    ];
    for m in stateless {
        assert!(m.state_dict().is_empty());
    }
    let ddp = DistributedDataParallel::new(
        Sequential::new()
            .add(Linear::new(&dev, 2, 2))
            .add(BatchNorm1d::new(&dev, 2)),
        Arc::new(SingleProcess),
    )
    .unwrap();
    assert_eq!(
        state(&ddp),
        [
            "module.0.weight",
            "module.0.bias",
            "module.1.weight",
            "module.1.bias",
            "module.1.running_mean",
            "module.1.running_var",
            "module.1.num_batches_tracked"
        ]
    );
    let x = Tensor::randn_seeded(&[4, 2], 5, &dev).unwrap();
    assert_eq!(
        vec_f32(&Module::forward(&ddp, &x).unwrap()),
        vec_f32(&ddp.module().forward(&x).unwrap())
    );

    // Train/eval reaches the derived flags.
    let model = Sequential::new()
        .add(Dropout::new(0.5))
        .add(BatchNorm1d::new(&dev, 2))
        .add(NoisyReLU::new(10.0));
    let ones = Tensor::ones(&[4, 2], &dev).unwrap();
    let y = vec_f32(&model.forward(&ones).unwrap());
    assert_ne!(
        y,
        vec_f32(&model.forward(&ones).unwrap()),
        "noise in training"
    );
    model.eval();
    let y = vec_f32(&model.forward(&ones).unwrap());
    assert_eq!(
        y,
        vec_f32(&model.forward(&ones).unwrap()),
        "no noise in eval"
    );

    // The hooks: activations report what they fuse; Linear and Conv2d fuse.
    let fusable: [(&dyn Module, Option<Act>); 9] = [
        (&ReLU, Some(Act::Relu)),
        (&LeakyReLU(0.2), Some(Act::LeakyRelu(0.2))),
        (&Sigmoid, Some(Act::Sigmoid)),
        (&Tanh, Some(Act::Tanh)),
        (&Identity, Some(Act::Identity)),
        (&SiLU, Some(Act::Silu)),
        (&Mish, Some(Act::Mish)),
        (&GELU::default(), Some(Act::Gelu)),
        (&Softplus::default(), None),
    ];
    for (m, act) in fusable {
        assert_eq!(m.fusable_activation(), act);
    }
    let lin = Linear::new(&dev, 2, 3);
    // The layers' inherent `forward` is private: outside the crate, a method call and
    // a path both find the trait's, as before the derive.
    let by_path = vec_f32(&Linear::forward(&lin, &x).unwrap());
    assert_eq!(by_path, vec_f32(&lin.forward(&x).unwrap()));
    let fused = lin.forward_with_activation(&x, Act::Relu).unwrap().unwrap();
    let want = vec_f32(&lin.forward(&x).unwrap().relu().unwrap());
    assert_close(&vec_f32(&fused), &want, 1e-6, 1e-6, "Linear + ReLU");
    let img = Tensor::randn_seeded(&[1, 1, 4, 4], 2, &dev).unwrap();
    let conv = Conv2d::new(&dev, 1, 2, 3);
    assert!(conv.forward_with_activation(&img, Act::Tanh).is_some());
    let up = ConvTranspose2d::new(&dev, 1, 1, 2, 2);
    assert!(up.forward_with_activation(&img, Act::Tanh).is_none());
}

/// A tuple struct of plain settings derives: nothing in it needs a name. A skipped
/// field may be anything.
#[derive(Module)]
struct Repeat(usize, #[module(skip)] Device);

impl Repeat {
    /// The input `self.0` times side by side, on `self.1`.
    fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
        let x = x.to(&self.1)?;
        Tensor::cat(&vec![&x; self.0], 1)
    }
}

#[test]
fn tuple_structs_of_plain_settings_derive() {
    let dev = Device::cpu();
    let repeat = Repeat(3, dev.clone());
    assert!(repeat.state_dict().is_empty());
    let model = Sequential::new()
        .add(Linear::new(&dev, 2, 2))
        .add(Repeat(2, dev.clone()));
    assert_eq!(names(model.named_parameters()), ["0.weight", "0.bias"]);
    let x = Tensor::from_vec(vec![1.0f32, -2.0], &[1, 2], &dev).unwrap();
    let y = vec_f32(&Module::forward(&repeat, &x).unwrap());
    assert_eq!(y, [1.0, -2.0, 1.0, -2.0, 1.0, -2.0]);
    assert_eq!(model.forward(&x).unwrap().shape(), [1, 4]);
    assert_eq!(
        vec_f32(&Module::forward(&LeakyReLU(0.5), &x).unwrap()),
        [1.0, -1.0]
    );
}
