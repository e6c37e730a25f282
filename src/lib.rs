//! # wgrad
//!
//! A deep-learning engine whose tensors live on the GPU. Every op has a forward and a
//! backward kernel written in WGSL and run through `wgpu` (Vulkan, Metal, DX12 or GL),
//! and a plain-Rust CPU backend that computes the same ops and is the reference every
//! GPU kernel and every gradient is checked against.
//!
//! ```
//! use wgrad::prelude::*;
//! # fn main() -> wgrad::Result<()> {
//! let dev = Device::cpu(); // or Device::gpu()?, or Device::best()
//! let w = Tensor::from_vec(vec![2.0f32, -3.0, -3.0], &[3], &dev)?.requires_grad_(true)?;
//! let x = Tensor::from_vec(vec![-1.0f32, -2.0, 1.0], &[3], &dev)?;
//! let f = w.mul(&x)?.sum()?.sigmoid()?; // the lecture's sigmoid neuron
//! f.backward()?;
//! assert!((f.item()? - 0.7311).abs() < 1e-4);
//! let dw = w.grad().unwrap().to_vec::<f32>()?;
//! assert!((dw[0] + 0.1966).abs() < 1e-4);
//! # Ok(()) }
//! ```
//!
//! The layers, bottom to top: WGSL kernels and CPU loops (`shaders/`, [`backend`]), the
//! ops with their backward rules ([`ops`]), the graph ([`autograd`]), the [`Tensor`] API.
#![warn(missing_docs)]

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
pub mod workloads;

pub use autograd::{is_grad_enabled, no_grad, NoGradGuard};
pub use backend::gpu::{list_adapters, AdapterSummary, DeviceCounters, GpuOptions, Profile};
pub use device::Device;
pub use error::{Error, Result};
pub use tensor::{DType, Element, Tensor};

/// The names most programs need.
pub mod prelude {
    pub use crate::autograd::no_grad;
    pub use crate::data::{DataLoader, Dataset};
    pub use crate::device::Device;
    pub use crate::error::{Error, Result};
    pub use crate::nn::{
        AdaptiveAvgPool2d, AvgPool2d, BCEWithLogitsLoss, BatchNorm1d, BatchNorm2d, Conv2d,
        ConvTranspose2d, CrossEntropyLoss, Dropout, Embedding, Flatten, LeakyReLU, Linear, MSELoss,
        MaxPool2d, Module, NoisyReLU, PReLU, ReLU, Sequential, Sigmoid, Softplus, Tanh, Upsample,
        GRU, LSTM, RNN,
    };
    pub use crate::optim::{Adam, AdamW, Optimizer, Sgd};
    pub use crate::tensor::{DType, Tensor};
}
