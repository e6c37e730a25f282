//! # wgrad
//!
//! wgrad is a deep-learning engine in Rust whose tensors live on the GPU: every op has a
//! forward and a backward kernel written in WGSL and run through `wgpu` (Vulkan, Metal,
//! DX12 or GL natively, WebGPU in the browser). A plain-Rust CPU backend computes the same
//! ops and is the reference every GPU kernel and every gradient is checked against. On
//! top of the tensors sit PyTorch-style modules, optimizers, data loaders and safetensors
//! files with PyTorch's `state_dict` names.
//!
//! ## Backpropagation on a small graph
//!
//! The lecture's worked example: `f(x, y, z) = (x + y) z` at `x = -2`, `y = 5`, `z = -4`.
//! The forward pass gives `q = x + y = 3` and `f = q z = -12`; the backward pass gives
//! `df/dz = q = 3` and `df/dx = df/dy = z = -4`.
//!
//! ```
//! use wgrad::prelude::*;
//! # fn main() -> wgrad::Result<()> {
//! let dev = Device::cpu(); // or Device::gpu()?, or Device::best()
//! let x = Tensor::scalar(-2.0, &dev)?.requires_grad_(true)?;
//! let y = Tensor::scalar(5.0, &dev)?.requires_grad_(true)?;
//! let z = Tensor::scalar(-4.0, &dev)?.requires_grad_(true)?;
//! let f = x.add(&y)?.mul(&z)?;
//! f.backward()?;
//! assert_eq!(f.item()?, -12.0);
//! assert_eq!(x.grad().unwrap().item()?, -4.0);
//! assert_eq!(y.grad().unwrap().item()?, -4.0);
//! assert_eq!(z.grad().unwrap().item()?, 3.0);
//! # Ok(()) }
//! ```
//!
//! ## Training a network
//!
//! A two-layer ReLU network learns XOR with Adam. The same code runs on the GPU with
//! `Device::gpu()?` (or `Device::best()`, which picks a hardware GPU when there is one).
//!
//! ```
//! use wgrad::prelude::*;
//! # fn main() -> wgrad::Result<()> {
//! let dev = Device::cpu();
//! dev.manual_seed(0);
//! let x = Tensor::from_vec(vec![0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[4, 2], &dev)?;
//! let y = Tensor::from_vec(vec![0u32, 1, 1, 0], &[4], &dev)?; // class indices
//! let model = Sequential::new()
//!     .add(Linear::new(&dev, 2, 16))
//!     .add(ReLU)
//!     .add(Linear::new(&dev, 16, 2));
//! let mut opt = Adam::new(model.parameters(), 0.05);
//! let first = model.forward(&x)?.cross_entropy(&y)?.item()?;
//! let mut last = first;
//! for _ in 0..50 {
//!     let loss = model.forward(&x)?.cross_entropy(&y)?;
//!     opt.zero_grad();
//!     loss.backward()?;
//!     opt.step()?;
//!     last = loss.item()?;
//! }
//! assert!(last < first / 2.0, "loss {first} -> {last}");
//! # Ok(()) }
//! ```
//!
//! ## Where things are
//!
//! - [`tensor`]: the [`Tensor`] handle, its creation and readback; the math methods are
//!   documented on [`Tensor`] and implemented beside their ops.
//! - [`device`]: the CPU backend or a GPU, and how [`Device::best`] chooses.
//! - [`autograd`]: the graph that ops record and `backward()` walks; [`no_grad`].
//! - [`nn`]: the [`Module`](nn::Module) trait and layers (linear, convolution,
//!   recurrent, batch norm, dropout, activations), losses and initialisers.
//! - [`optim`]: SGD, Adam, AdamW, Adagrad, RMSprop and Adadelta, learning-rate
//!   schedules, gradient clipping.
//! - [`data`]: datasets, the [`DataLoader`](data::DataLoader), the bundled digits and
//!   Shakespeare text, Fashion-MNIST, augmentation.
//! - [`io`]: safetensors files with PyTorch's names, and training checkpoints.
//! - [`distributed`]: data-parallel training over several processes.
//! - [`ops`]: every op's checks, forward and backward (through the backend seam), and
//!   (with the `testing` feature) the op registry the gradient tests walk.
//! - [`backend`]: the seam (one trait per op family), the CPU loops, and the GPU
//!   launchers, scheduler, buffer pool and profiler.
//! - [`shape`]: element counts, strides and broadcasting.
//! - [`error`]: the [`Error`] type every fallible call returns.
//! - [`workloads`]: the three shared benchmark workloads (MLP, CNN, RNN training steps).
//! - [`prelude`]: the names most programs import.
//!
//! Beyond this reference: the user's guide is `docs/guide.md` in the repository, and
//! `ARCHITECTURE.md` there describes how the engine is built.
//!
//! ## Cargo features
//!
//! - `mpi` (off by default): data-parallel training across processes and machines
//!   through MPI (`wgrad::distributed::Mpi`). It needs an MPI library and libclang to
//!   build; on Debian, `apt-get install libopenmpi-dev openmpi-bin libclang1-14
//!   libclang-common-14-dev`. Without it, [`distributed`] runs as a single process.
//! - `testing` (off by default): the op registry (`ops::registry`) that the gradient
//!   tests walk. It is test scaffolding, not part of the API; the tests turn it on.
#![warn(missing_docs)]

// `#[derive(Module)]` writes `::wgrad::nn::...` paths, which name this crate only from
// outside it; this alias makes them resolve inside too, so the built-in layers derive.
extern crate self as wgrad;

pub mod amp;
pub mod autograd;
pub mod backend;
pub mod data;
pub mod device;
pub mod distributed;
pub mod error;
pub mod io;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod shape;
pub mod tensor;
pub mod vis;
pub mod workloads;

pub use autograd::{is_grad_enabled, no_grad, NoGradGuard};
pub use backend::gpu::{list_adapters, AdapterSummary, DeviceCounters, GpuOptions, Profile};
pub use device::Device;
pub use error::{Error, Result};
/// The `half` crate, whose `f16` and `bf16` are the host types of `F16` and `BF16`
/// tensors (`Tensor::from_vec`, `Tensor::to_vec`).
pub use half;
pub use tensor::{DType, Element, Tensor};

/// The names most programs need: `use wgrad::prelude::*;` brings in [`Device`],
/// [`Tensor`], the layers and losses, the optimizers and the data loader, and
/// `Module`, both the trait and `#[derive(Module)]`.
pub mod prelude {
    pub use crate::autograd::no_grad;
    pub use crate::data::{DataLoader, Dataset};
    pub use crate::device::Device;
    pub use crate::error::{Error, Result};
    pub use crate::nn::{
        AdaptiveAvgPool2d, AvgPool2d, BCELoss, BCEWithLogitsLoss, BatchNorm1d, BatchNorm2d, Conv2d,
        ConvTranspose2d, CrossEntropyLoss, Dropout, Embedding, Flatten, GroupNorm, LayerNorm,
        LeakyReLU, Linear, MSELoss, MaxPool2d, Mish, Module, NLLLoss, NoisyReLU, PReLU, RMSNorm,
        ReLU, Sequential, SiLU, Sigmoid, Softplus, Tanh, Upsample, GELU, GRU, LSTM, RNN,
    };
    pub use crate::optim::{Adadelta, Adagrad, Adam, AdamW, Optimizer, RMSprop, Sgd};
    pub use crate::tensor::{DType, Tensor};
}

/// The README's Rust examples (the quick start and the worked example), run as doctests
/// so that the first code a user copies always compiles and works.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
