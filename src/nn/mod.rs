//! Neural-network building blocks: the [`Module`] trait (`a = h(x; θ)`), parameters and
//! buffers, [`Sequential`], [`Linear`], convolution and pooling ([`Conv2d`],
//! [`MaxPool2d`], ...), recurrent layers ([`RNN`], [`LSTM`], [`GRU`], their cells,
//! [`Embedding`]), attention ([`MultiheadAttention`], [`sinusoidal_position_encoding`]),
//! the lecture's activations, [`Dropout`], batch normalisation, [`Flatten`], losses and
//! initialisers ([`init`]).
//!
//! Parameter names follow PyTorch's `state_dict` (`0.weight`, `encoder.1.bias`,
//! `1.running_mean`) and weights use PyTorch's layouts (`Linear`: `[out, in]`).

mod activation;
mod attention;
mod batchnorm;
mod conv;
mod dropout;
mod flatten;
pub mod init;
mod linear;
mod loss;
mod norm;
mod param;
mod position;
mod rnn;
mod sequential;
mod transformer;

use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::ops::matmul::Act;
pub use activation::{
    GeluApproximate, Identity, LeakyReLU, Mish, NoisyReLU, PReLU, ReLU, SiLU, Sigmoid, Softplus,
    Tanh, GELU,
};
pub use attention::{AttentionArgs, MultiheadAttention, MultiheadAttentionOptions};
pub use batchnorm::{BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormOptions};
pub use conv::{AdaptiveAvgPool2d, AvgPool2d, Conv2d, ConvTranspose2d, MaxPool2d, Upsample};
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use linear::Linear;
pub use loss::{BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss, Reduction};
pub use norm::{GroupNorm, GroupNormOptions, LayerNorm, LayerNormOptions, RMSNorm, RMSNormOptions};
pub use param::{Buffer, Parameter};
pub use position::{sinusoidal_position_encoding, PositionalEncoding};
pub use rnn::{
    Embedding, GRUCell, LSTMCell, RNNCell, Recurrent, RecurrentOptions, RecurrentState, GRU, LSTM,
    RNN,
};
pub use sequential::Sequential;
pub use transformer::{
    DecoderMasks, EncoderMasks, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
    TransformerEncoderLayer, TransformerLayerOptions,
};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// `#[derive(Module)]`: implements [`Module`](trait@Module) from a struct's fields, so
/// that naming, devices, train/eval and saving reach every parameter and sub-module
/// without a hand-written `children()` that could forget one. `use wgrad::nn::Module;`
/// (or the prelude) brings both the trait and this derive, as serde's `Serialize` does.
///
/// The struct needs named fields (or none, or only plain ones: see below) and an
/// inherent method `fn forward(&self, x: &Tensor) -> Result<Tensor>`: the derived
/// [`Module::forward`] calls it (in `Self::forward` an inherent method is found before
/// the trait's, so the two share a name and callers may use either; a private one is
/// not seen outside its module, where `layer.forward(x)` is then the trait's). A struct without one does not compile: the error says that `forward` is
/// ambiguous and names the trait `derive_Module_needs_an_inherent_fn_forward_on_<Name>`.
///
/// Types are written, not known, when a macro runs, so each field is sorted by how its
/// type is spelled (the last path segment: `Parameter` and `wgrad::nn::Parameter` alike):
///
/// | field | becomes |
/// |---|---|
/// | `#[module(skip)]` on the field | nothing: settings, devices, anything else |
/// | `Parameter`, `Option<Parameter>` | a parameter named after the field (when `Some`) |
/// | `Buffer`, `Option<Buffer>` | a buffer named after the field (when `Some`) |
/// | [`TrainFlag`] | set by [`train`](Module::train) / [`eval`](Module::eval) |
/// | `bool`, `char`, number types, `String`, `&str`, and `Vec`, `Option`, `Box`, arrays, slices and tuples of them | nothing (plain settings) |
/// | `Vec<T>` | children `field.0`, `field.1`, ... (PyTorch's `ModuleList`) |
/// | `Option<T>` | a child `field` when `Some` |
/// | any other type | a child `field`: a layer, [`Sequential`], `Box<dyn Module>`, another derived struct |
///
/// `Vec` and `Option` nest (`Vec<Vec<Linear>>` gives `blocks.0.1`). A field of any other
/// type must implement `Module`; one that does not (a `Device`, an `Act`, a `HashMap`)
/// fails to compile with "`…` is not a `Module`" at the field, and the note says to
/// mark it `#[module(skip)]`. A `Parameter`, `Buffer` or `TrainFlag` inside a `Vec` (or
/// deeper) is a compile error too: state names are field names. Parameters come first
/// in field order, then buffers, then children, as in PyTorch's `state_dict`.
///
/// ```
/// use wgrad::nn::Parameter;
/// use wgrad::prelude::*; // the Module trait and its derive
///
/// #[derive(Module)]
/// struct Mlp {
///     layers: Vec<Linear>,
///     dropout: Option<Dropout>,
///     scale: Parameter,
///     #[module(skip)]
///     device: Device,
///     negative_slope: f64, // plain: ignored
/// }
///
/// impl Mlp {
///     fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
///         let mut h = x.clone();
///         for (i, layer) in self.layers.iter().enumerate() {
///             h = layer.forward(&h)?;
///             if i + 1 < self.layers.len() {
///                 h = h.leaky_relu(self.negative_slope)?;
///                 if let Some(d) = &self.dropout {
///                     h = d.forward(&h)?;
///                 }
///             }
///         }
///         h.mul(&self.scale.tensor())
///     }
/// }
///
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let net = Mlp {
///     layers: vec![Linear::new(&dev, 2, 8), Linear::new(&dev, 8, 1)],
///     dropout: Some(Dropout::new(0.1)),
///     scale: Parameter::new(Tensor::ones(&[1], &dev)?),
///     device: dev.clone(),
///     negative_slope: 0.01,
/// };
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["scale", "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]);
/// net.eval(); // reaches the dropout
/// assert_eq!(Module::forward(&net, &Tensor::ones(&[3, 2], &net.device)?)?.shape(), [3, 1]);
/// # Ok(()) }
/// ```
///
/// A unit struct (`struct Swish;`) derives a module without state, and so does a tuple
/// struct whose fields are all plain settings or `#[module(skip)]` (`struct
/// LeakyReLU(f32);`): its fields have no names to give a parameter or a child. Two
/// options on the struct cover what its fields cannot say:
///
/// - `#[module(forward = "name")]`: the derived [`Module::forward`] calls the inherent
///   method `name` (same signature) instead of `forward`, for a struct whose inherent
///   `forward` returns several tensors (see "Models with several outputs" on the trait).
/// - `#[module(hooks(fusable_activation, forward_with_activation))]` (either or both):
///   the derived impl also defines these [`Module`](trait@Module) methods, each calling
///   the struct's inherent method of the same name and signature: an activation that
///   the layer before it in a [`Sequential`] may fuse
///   ([`fusable_activation`](Module::fusable_activation)), a layer that fuses one
///   ([`forward_with_activation`](Module::forward_with_activation)). A hook without its
///   inherent method does not compile; the error names the trait
///   `derive_Module_needs_an_inherent_fn_<hook>_on_<Name>`.
///
/// ```
/// use wgrad::nn::{Act, Module};
/// use wgrad::prelude::*;
///
/// #[derive(Module)]
/// #[module(hooks(fusable_activation))]
/// struct Swish;
///
/// impl Swish {
///     fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
///         x.silu()
///     }
///     fn fusable_activation(&self) -> Option<Act> {
///         Some(Act::Silu) // a Linear before it in a Sequential runs both in one kernel
///     }
/// }
///
/// #[derive(Module)]
/// #[module(forward = "output")]
/// struct WithHidden { body: Linear, head: Linear }
///
/// impl WithHidden {
///     /// (output, hidden activations).
///     fn forward(&self, x: &Tensor) -> wgrad::Result<(Tensor, Tensor)> {
///         let h = self.body.forward(x)?;
///         Ok((self.head.forward(&h)?, h))
///     }
///     fn output(&self, x: &Tensor) -> wgrad::Result<Tensor> {
///         Ok(self.forward(x)?.0)
///     }
/// }
///
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// assert_eq!(Module::fusable_activation(&Swish), Some(Act::Silu));
/// let m = WithHidden { body: Linear::new(&dev, 3, 4), head: Linear::new(&dev, 4, 2) };
/// let x = Tensor::ones(&[5, 3], &dev)?;
/// assert_eq!(m.forward(&x)?.1.shape(), [5, 4]); // the inherent: two outputs
/// assert_eq!(Module::forward(&m, &x)?.shape(), [5, 2]); // the trait: `output`
/// let model = Sequential::new().add(m).add(Swish);
/// assert_eq!(model.named_parameters().len(), 4);
/// # Ok(()) }
/// ```
///
/// Most built-in layers derive `Module` this way (`Linear`, `Conv2d`, `BatchNorm2d`,
/// the activations, ...). Hand-write `impl Module` instead for what the derive does not
/// cover: state inside a `Vec`, names other than the field names (a wrapper that
/// reports its inner module's parameters as its own), tuple structs holding state or
/// sub-modules, and enums. A type
/// parameter that is a child needs its bound written
/// (`struct Residual<M: Module> { inner: M }`).
///
/// What does not compile: a struct without an inherent `forward`,
///
/// ```compile_fail,E0034
/// use wgrad::prelude::*;
/// #[derive(Module)]
/// struct NoForward { fc: Linear }
/// ```
///
/// a hook without its inherent method,
///
/// ```compile_fail,E0034
/// use wgrad::prelude::*;
/// #[derive(Module)]
/// #[module(hooks(fusable_activation))]
/// struct NotAnActivation;
/// impl NotAnActivation {
///     fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> { Ok(x.clone()) }
/// }
/// ```
///
/// a hook that is not one of the two,
///
/// ```compile_fail
/// use wgrad::prelude::*;
/// #[derive(Module)]
/// #[module(hooks(to_device))]
/// struct Mover;
/// impl Mover {
///     fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> { Ok(x.clone()) }
///     fn to_device(&self, _: &Device) -> wgrad::Result<()> { Ok(()) }
/// }
/// ```
///
/// a field that is neither a module nor plain, without `#[module(skip)]`,
///
/// ```compile_fail,E0277
/// use wgrad::prelude::*;
/// #[derive(Module)]
/// struct Unmarked { fc: Linear, device: Device }
/// impl Unmarked {
///     fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> { self.fc.forward(x) }
/// }
/// ```
///
/// a list of parameters (their names would not be field names),
///
/// ```compile_fail
/// use wgrad::nn::Parameter;
/// use wgrad::prelude::*;
/// #[derive(Module)]
/// struct Weights { ws: Vec<Parameter> }
/// impl Weights {
///     fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> { Ok(x.clone()) }
/// }
/// ```
///
/// and a tuple struct holding a sub-module or state (its fields have no names).
///
/// ```compile_fail
/// use wgrad::prelude::*;
/// #[derive(Module)]
/// struct Wrapper(Linear);
/// impl Wrapper {
///     fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> { self.0.forward(x) }
/// }
/// ```
pub use wgrad_derive::Module;

/// What the code that `#[derive(Module)]` writes calls. Not part of the API.
#[doc(hidden)]
pub mod __derive {
    use super::Module;

    /// The types a derived module accepts as a child field: the modules.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not a `Module`, so it cannot be a field of a `#[derive(Module)]` struct",
        label = "not a `Module`",
        note = "a field that is not a module, `Parameter`, `Buffer`, `TrainFlag` or plain \
                value (numbers, `bool`, `String`) needs `#[module(skip)]`"
    )]
    pub trait Child {
        /// The field as a module.
        fn as_module(&self) -> &dyn Module;
    }

    impl<M: Module> Child for M {
        fn as_module(&self) -> &dyn Module {
            self
        }
    }

    /// `m` as a `&dyn Module`, for `children()`.
    pub fn child<M: Child>(m: &M) -> &dyn Module {
        m.as_module()
    }
}

/// The train/eval switch of modules whose behaviour depends on it (dropout, noise).
#[derive(Debug)]
pub struct TrainFlag(AtomicBool);

impl Default for TrainFlag {
    fn default() -> Self {
        TrainFlag(AtomicBool::new(true))
    }
}

impl TrainFlag {
    /// True in training mode (the default, as in PyTorch).
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    /// Switches the mode.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed)
    }
}

/// A function `a = h(x; θ)` with parameters θ. Implement `forward`, plus
/// `local_parameters` for parameters the module owns directly, `local_buffers` for
/// state it keeps but does not train, and `children` for the modules it is made of;
/// naming, devices, modes and saving then work recursively. Or let
/// [`#[derive(Module)]`](derive@Module) write all but `forward` from the struct's fields,
/// so that no sub-module can be left out of `children`.
///
/// ```
/// use wgrad::nn::{Linear, Module, ReLU};
/// use wgrad::prelude::*;
///
/// struct TwoLayer { hidden: Linear, out: Linear }
///
/// impl Module for TwoLayer {
///     fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
///         self.out.forward(&ReLU.forward(&self.hidden.forward(x)?)?)
///     }
///     fn children(&self) -> Vec<(String, &dyn Module)> {
///         vec![("hidden".into(), &self.hidden), ("out".into(), &self.out)]
///     }
/// }
///
/// let dev = Device::cpu();
/// let net = TwoLayer { hidden: Linear::new(&dev, 2, 8), out: Linear::new(&dev, 8, 1) };
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]);
/// ```
///
/// # Models with several outputs
///
/// `forward` returns one tensor. A model with several outputs (a VAE's reconstruction,
/// mean and log-variance) gives itself an inherent `fn forward` returning a tuple, which
/// `model.forward(&x)` calls (Rust finds an inherent method before a trait's), and
/// implements `Module` by hand for its parameters, modes and saving, with a `forward`
/// that returns the main output (write `Vae::forward(self, x)` there: a path also finds
/// the inherent method first). Or it derives `Module` with
/// `#[module(forward = "reconstruction")]`, naming an inherent method that returns the
/// main output (see [the derive](derive@Module)); the hand-written impl below does the
/// same.
///
/// ```
/// use wgrad::nn::{Linear, Module};
/// use wgrad::prelude::*;
///
/// struct Vae { enc: Linear, mu: Linear, logvar: Linear, dec: Linear }
///
/// impl Vae {
///     /// (reconstruction, mu, logvar).
///     fn forward(&self, x: &Tensor) -> wgrad::Result<(Tensor, Tensor, Tensor)> {
///         let h = self.enc.forward(x)?.relu()?;
///         let (mu, logvar) = (self.mu.forward(&h)?, self.logvar.forward(&h)?);
///         let std = logvar.mul_scalar(0.5)?.exp()?;
///         let z = (&mu + &(&std * &std.randn_like()?)?)?;
///         Ok((self.dec.forward(&z)?.sigmoid()?, mu, logvar))
///     }
/// }
///
/// impl Module for Vae {
///     fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
///         Ok(Vae::forward(self, x)?.0) // the reconstruction
///     }
///     fn children(&self) -> Vec<(String, &dyn Module)> {
///         vec![
///             ("enc".into(), &self.enc),
///             ("mu".into(), &self.mu),
///             ("logvar".into(), &self.logvar),
///             ("dec".into(), &self.dec),
///         ]
///     }
/// }
///
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let vae = Vae {
///     enc: Linear::new(&dev, 8, 16),
///     mu: Linear::new(&dev, 16, 2),
///     logvar: Linear::new(&dev, 16, 2),
///     dec: Linear::new(&dev, 2, 8),
/// };
/// let mut opt = Adam::new(vae.parameters(), 1e-3);
/// let x = Tensor::rand(&[4, 8], &dev)?;
/// let (recon, mu, logvar) = vae.forward(&x)?; // the inherent, three outputs
/// // KL(q(z|x) || N(0, 1)) = -0.5 mean(1 + logvar - mu^2 - exp(logvar))
/// let kl = (&(&(1.0 + &logvar)? - &mu.mul(&mu)?)? - &logvar.exp()?)?
///     .mean()?
///     .mul_scalar(-0.5)?;
/// let loss = recon.mse_loss(&x)?.add(&kl)?;
/// opt.zero_grad();
/// loss.backward()?;
/// opt.step()?;
/// assert_eq!(Module::forward(&vae, &x)?.shape(), [4, 8]); // the trait: one output
/// assert_eq!(vae.named_parameters().len(), 8);
/// # Ok(()) }
/// ```
pub trait Module: Send + Sync {
    /// Computes the output, recording the graph for `backward()` when a parameter or the
    /// input requires gradients. Layers take a batch: `[N, in_features]` for [`Linear`].
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let layer = Linear::new(&dev, 3, 2);
    /// let y = layer.forward(&Tensor::ones(&[5, 3], &dev)?)?;
    /// assert_eq!(y.shape(), [5, 2]);
    /// # Ok(()) }
    /// ```
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Parameters this module owns directly, by local name (`weight`, `bias`).
    fn local_parameters(&self) -> Vec<(&'static str, &Parameter)> {
        Vec::new()
    }

    /// Buffers this module owns directly, by local name (`running_mean`): saved and
    /// moved with the module, never trained.
    fn local_buffers(&self) -> Vec<(&'static str, &Buffer)> {
        Vec::new()
    }

    /// Sub-modules, by name (`0`, `encoder`).
    fn children(&self) -> Vec<(String, &dyn Module)> {
        Vec::new()
    }

    /// The activation this module computes, when it is a stateless one that the layer
    /// before it may fuse into its own kernel (`ReLU`, `LeakyReLU` with a non-negative
    /// slope, `Sigmoid`, `Tanh`, `Identity`). `Sequential` asks this.
    fn fusable_activation(&self) -> Option<Act> {
        None
    }

    /// `act(self.forward(x))` computed by one fused kernel, for layers that can
    /// (`Linear`, `Conv2d`); `None` for the others. `Sequential` calls this for a layer
    /// followed by a [`fusable_activation`](Module::fusable_activation), so models fuse
    /// without any change to user code.
    fn forward_with_activation(&self, _x: &Tensor, _act: Act) -> Option<Result<Tensor>> {
        None
    }

    /// Reacts to train/eval for this module only (children are visited for you).
    fn set_local_training(&self, _training: bool) {}

    /// Calls `f` on every parameter with its full dotted name, children first in order.
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Parameter)) {
        for (name, p) in self.local_parameters() {
            f(format!("{prefix}{name}"), p);
        }
        for (name, child) in self.children() {
            child.visit_parameters(&format!("{prefix}{name}."), f);
        }
    }

    /// Calls `f` on every buffer with its full dotted name, children first in order.
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(String, &Buffer)) {
        for (name, b) in self.local_buffers() {
            f(format!("{prefix}{name}"), b);
        }
        for (name, child) in self.children() {
            child.visit_buffers(&format!("{prefix}{name}."), f);
        }
    }

    /// Every buffer with its `state_dict` name (`1.running_mean`). Not parameters:
    /// optimizers built from [`Module::parameters`] never see these.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit_buffers("", &mut |n, b| out.push((n, b.tensor())));
        out
    }

    /// Every parameter with its `state_dict` name.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit_parameters("", &mut |n, p| out.push((n, p.tensor())));
        out
    }

    /// Every parameter tensor (for an optimizer), in [`Module::named_parameters`]'s
    /// order. The handles share storage with the module: an optimizer that updates them
    /// updates the module.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// let dev = Device::cpu();
    /// let model = Sequential::new()
    ///     .add(Linear::new(&dev, 4, 3))
    ///     .add(ReLU)
    ///     .add(Linear::new(&dev, 3, 2));
    /// let params = model.parameters(); // 0.weight, 0.bias, 2.weight, 2.bias
    /// assert_eq!(params.len(), 4);
    /// assert_eq!(params[0].shape(), [3, 4]);
    /// assert_eq!(model.num_parameters(), 4 * 3 + 3 + 3 * 2 + 2);
    /// let _opt = Adam::new(params, 1e-3);
    /// ```
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// The number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|t| t.numel()).sum()
    }

    /// Training mode (`true`) or evaluation mode, recursively.
    fn set_training(&self, training: bool) {
        self.set_local_training(training);
        for (_, child) in self.children() {
            child.set_training(training);
        }
    }

    /// Training mode: dropout drops, noisy ReLU adds noise.
    fn train(&self) {
        self.set_training(true)
    }

    /// Evaluation mode: dropout and noise are off.
    fn eval(&self) {
        self.set_training(false)
    }

    /// Moves every parameter and buffer to `device`. Build optimizers after moving, as
    /// in PyTorch.
    fn to_device(&self, device: &Device) -> Result<()> {
        let mut result = Ok(());
        self.visit_parameters("", &mut |_, p| {
            if result.is_ok() {
                match p.tensor().to(device) {
                    Ok(t) => p.replace(t),
                    Err(e) => result = Err(e),
                }
            }
        });
        self.visit_buffers("", &mut |_, b| {
            if result.is_ok() {
                match b.tensor().to(device) {
                    Ok(t) => b.replace(t),
                    Err(e) => result = Err(e),
                }
            }
        });
        result
    }

    /// Converts every floating-point parameter and buffer to `dtype` (PyTorch's
    /// `module.half()`, `.bfloat16()`, `.float()`, `.to(dtype)`): for half-precision
    /// inference, or to load a state dict saved in that dtype. Integer buffers stay.
    /// Build optimizers after converting (and keep training parameters in `f32`: use
    /// [`crate::amp::autocast`] for mixed precision).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let model = Sequential::new().add(Linear::new(&dev, 4, 2));
    /// model.to_dtype(DType::F16)?;
    /// let y = model.forward(&Tensor::ones(&[1, 4], &dev)?.half()?)?;
    /// assert_eq!(y.dtype(), DType::F16);
    /// # Ok(()) }
    /// ```
    fn to_dtype(&self, dtype: DType) -> Result<()> {
        if !dtype.is_float() {
            return crate::error::arg_err(
                "to_dtype",
                format!("modules hold float parameters, not {dtype:?}"),
            );
        }
        let mut result = Ok(());
        self.visit_parameters("", &mut |_, p| {
            if result.is_ok() {
                match p.tensor().to_dtype(dtype) {
                    Ok(t) => p.replace(t),
                    Err(e) => result = Err(e),
                }
            }
        });
        self.visit_buffers("", &mut |_, b| {
            let t = b.tensor();
            if result.is_ok() && t.dtype().is_float() {
                match t.to_dtype(dtype) {
                    Ok(t) => b.replace(t),
                    Err(e) => result = Err(e),
                }
            }
        });
        result
    }

    /// Parameters and buffers by name, in PyTorch's `state_dict` order: each module's
    /// parameters, then its buffers, then its children's entries.
    fn visit_state(&self, prefix: &str, f: &mut dyn FnMut(String, Tensor)) {
        for (name, p) in self.local_parameters() {
            f(format!("{prefix}{name}"), p.tensor());
        }
        for (name, b) in self.local_buffers() {
            f(format!("{prefix}{name}"), b.tensor());
        }
        for (name, child) in self.children() {
            child.visit_state(&format!("{prefix}{name}."), f);
        }
    }

    /// Copies of the parameters and buffers by name (PyTorch's `state_dict`, in its
    /// order: each module's parameters, then its buffers, then its children's).
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit_state("", &mut |n, t| out.push((n, t.detach())));
        out
    }

    /// Loads parameters and buffers by name. Every name must match, with the same shape
    /// and dtype, or nothing is changed and the error lists what is wrong. The one
    /// conversion: an integer counter (PyTorch's `int64` `num_batches_tracked`) loads
    /// into this crate's `f32` counter when it is exact in `f32`.
    fn load_state_dict(&self, state: &[(String, Tensor)]) -> Result<()> {
        let mut own = Vec::new();
        self.visit_state("", &mut |n, t| own.push((n, t)));
        let mut problems = Vec::new();
        for (name, t) in &own {
            match state.iter().find(|(n, _)| n == name) {
                None => problems.push(format!("missing key {name}")),
                Some((_, s)) if s.shape() != t.shape() => problems.push(format!(
                    "{name}: shape {:?} in the file, {:?} in the model",
                    s.shape(),
                    t.shape()
                )),
                Some((_, s)) if s.dtype() != t.dtype() && !counter_fits(name, s, t) => problems
                    .push(format!(
                        "{name}: dtype {:?} in the file, {:?} in the model",
                        s.dtype(),
                        t.dtype()
                    )),
                Some(_) => {}
            }
        }
        for (name, _) in state {
            if !own.iter().any(|(n, _)| n == name) {
                problems.push(format!("unexpected key {name}"));
            }
        }
        if !problems.is_empty() {
            if let Some(prefix) = common_prefix_of_missing(&own, state) {
                problems.push(format!(
                    "the file's names carry a prefix {prefix:?} (a checkpoint loads with \
                     io::load_checkpoint; else strip the prefix)"
                ));
            }
            return Err(Error::StateDict(problems.join("; ")));
        }
        // Convert and move everything first (this allocates, and may run out of memory);
        // then only in-place copies remain, so a failure changes nothing.
        let mut staged = Vec::with_capacity(own.len());
        for (name, t) in &own {
            let (_, s) = state
                .iter()
                .find(|(n, _)| n == name)
                .expect("checked above");
            staged.push(stage_for(s, t)?);
        }
        for ((_, t), s) in own.iter().zip(&staged) {
            t.copy_from(s)?;
        }
        Ok(())
    }
}

/// `s` converted to `like`'s dtype and moved to its device (a handle copy when both
/// already match): what `load_state_dict` copies into `like`.
pub(crate) fn stage_for(s: &Tensor, like: &Tensor) -> Result<Tensor> {
    let s = if s.dtype() == like.dtype() {
        s.clone()
    } else {
        s.to(&Device::cpu())?.to_dtype(like.dtype())?
    };
    s.detach().to(like.device())
}

/// A prefix `P` such that the state names every one of the model's keys `K` as `P` + `K`
/// but never as `K` itself (a checkpoint's `model.`, a wrapper's `module.`), for the error.
fn common_prefix_of_missing(
    own: &[(String, Tensor)],
    state: &[(String, Tensor)],
) -> Option<String> {
    let (first, _) = own.first()?;
    let (candidate, _) = state
        .iter()
        .find(|(n, _)| n.len() > first.len() && n.ends_with(first.as_str()))?;
    let prefix = &candidate[..candidate.len() - first.len()];
    own.iter()
        .all(|(k, _)| {
            !state.iter().any(|(n, _)| n == k)
                && state
                    .iter()
                    .any(|(n, _)| n.strip_prefix(prefix) == Some(k.as_str()))
        })
        .then(|| prefix.to_string())
}

/// PyTorch's `int64` `num_batches_tracked` counter (read as `U32`) may load into this
/// crate's `F32` counter when its value is exact in `f32` (at most 2^24). Nothing else
/// converts.
fn counter_fits(name: &str, file: &Tensor, model: &Tensor) -> bool {
    name.ends_with("num_batches_tracked")
        && file.dtype() == crate::DType::U32
        && model.dtype() == crate::DType::F32
        && file
            .to_vec::<u32>()
            .is_ok_and(|v| v.iter().all(|&x| x <= 1 << 24))
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        (**self).forward(x)
    }
    fn local_parameters(&self) -> Vec<(&'static str, &Parameter)> {
        (**self).local_parameters()
    }
    fn local_buffers(&self) -> Vec<(&'static str, &Buffer)> {
        (**self).local_buffers()
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        (**self).children()
    }
    fn set_local_training(&self, training: bool) {
        (**self).set_local_training(training)
    }
    fn fusable_activation(&self) -> Option<Act> {
        (**self).fusable_activation()
    }
    fn forward_with_activation(&self, x: &Tensor, act: Act) -> Option<Result<Tensor>> {
        (**self).forward_with_activation(x, act)
    }
}
