//! `Tensor`: a cheap, shareable handle to a contiguous block of elements on a device,
//! with the autograd fields (requires-grad flag, the op node that made it, its gradient).
//! Creation and readback live here; the math methods live beside their ops in `ops/`.

use std::sync::{Arc, Mutex};

use crate::autograd::{self, Node};
use crate::backend::cpu::{CpuData, CpuStorage};
use crate::backend::gpu::GpuBuffer;
use crate::backend::random::RngKey;
use crate::backend::Storage;
use crate::device::Device;
use crate::error::{arg_err, shape_err, Error, Result};
use crate::shape;

/// Element types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: the type of all model math.
    F32,
    /// 64-bit float: CPU only, for gradient checks.
    F64,
    /// 32-bit unsigned integer: class labels and indices.
    U32,
    /// IEEE 754 half precision (binary16): 5 exponent bits, 10 mantissa bits.
    F16,
    /// bfloat16: f32's 8 exponent bits, 7 mantissa bits.
    BF16,
}

impl DType {
    /// True for the floating-point types: `F32`, `F64`, `F16` and `BF16`.
    pub fn is_float(self) -> bool {
        !matches!(self, DType::U32)
    }
    /// True for the 16-bit floats `F16` and `BF16`.
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F64 => 8,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

/// Host types a tensor can be made from and read back into: `f32`, `f64`, `u32`, and
/// `half::f16` and `half::bf16` (the `half` crate's, re-exported as [`crate::half`]).
pub trait Element: Copy + bytemuck::Pod + Send + Sync + 'static {
    /// The matching dtype.
    const DTYPE: DType;
    /// Wraps host values as CPU data (`None` for the 16-bit types, which have their own
    /// storage).
    fn into_data(v: Vec<Self>) -> Option<CpuData>;
    /// Unwraps CPU data of the matching dtype.
    fn from_data(d: &CpuData) -> Option<Vec<Self>>;
}

macro_rules! element {
    ($t:ty, $d:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn into_data(v: Vec<Self>) -> Option<CpuData> {
                Some(CpuData::$d(v))
            }
            fn from_data(d: &CpuData) -> Option<Vec<Self>> {
                match d {
                    CpuData::$d(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }
    };
    ($t:ty, $d:ident, half) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn into_data(_: Vec<Self>) -> Option<CpuData> {
                None
            }
            fn from_data(_: &CpuData) -> Option<Vec<Self>> {
                None
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(u32, U32);
element!(half::f16, F16, half);
element!(half::bf16, BF16, half);

pub(crate) struct TensorInner {
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    pub(crate) storage: Storage,
    pub(crate) requires_grad: bool,
    pub(crate) grad_fn: Option<Arc<Node>>,
    pub(crate) grad: Mutex<Option<Tensor>>,
}

/// An n-dimensional array on a [`Device`]. Cloning is a reference-count bump.
///
/// ```
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let x = Tensor::from_vec(vec![-2.0f32], &[], &dev)?.requires_grad_(true)?;
/// let y = Tensor::from_vec(vec![5.0f32], &[], &dev)?.requires_grad_(true)?;
/// let z = Tensor::from_vec(vec![-4.0f32], &[], &dev)?.requires_grad_(true)?;
/// let f = x.add(&y)?.mul(&z)?;
/// f.backward()?;
/// assert_eq!(f.item()?, -12.0);
/// assert_eq!(x.grad().unwrap().item()?, -4.0);
/// assert_eq!(z.grad().unwrap().item()?, 3.0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorInner>);

impl Tensor {
    /// True when `other` is this very tensor (a clone of it), not merely equal data.
    pub(crate) fn same_tensor(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {:?}, {}{})",
            self.shape(),
            self.dtype(),
            self.device().name(),
            if self.requires_grad() {
                ", requires_grad"
            } else {
                ""
            }
        )
    }
}

impl Tensor {
    pub(crate) fn from_storage(
        storage: Storage,
        shape: Vec<usize>,
        dtype: DType,
        device: Device,
    ) -> Tensor {
        Tensor(Arc::new(TensorInner {
            shape,
            dtype,
            device,
            storage,
            requires_grad: false,
            grad_fn: None,
            grad: Mutex::new(None),
        }))
    }

    /// A tensor of `shape` on `like`'s device and of its dtype, holding `storage` (what a
    /// backend primitive returned).
    pub(crate) fn like(storage: Storage, shape: Vec<usize>, like: &Tensor) -> Tensor {
        Tensor::from_storage(storage, shape, like.dtype(), like.device().clone())
    }

    pub(crate) fn from_cpu(data: CpuData, shape: Vec<usize>) -> Tensor {
        debug_assert_eq!(data.len(), shape::numel(&shape));
        let dtype = match data {
            CpuData::F32(_) => DType::F32,
            CpuData::F64(_) => DType::F64,
            CpuData::U32(_) => DType::U32,
        };
        Tensor::from_storage(
            Storage::Cpu(Arc::new(CpuStorage::new(data))),
            shape,
            dtype,
            Device::Cpu,
        )
    }

    pub(crate) fn from_gpu(buf: GpuBuffer, shape: Vec<usize>, dtype: DType) -> Tensor {
        let dev = Device::Gpu(buf.ctx.clone());
        Tensor::from_storage(Storage::Gpu(Arc::new(buf)), shape, dtype, dev)
    }

    /// A tensor holding `data` laid out row-major in `shape`. The element type picks the
    /// dtype (`f32`, `f64` on the CPU only, or `u32` for indices and class labels); a
    /// length that does not fill the shape is an error.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &dev)?;
    /// assert_eq!(x.shape(), [2, 3]);
    /// let labels = Tensor::from_vec(vec![0u32, 2], &[2], &dev)?;
    /// assert_eq!(labels.dtype(), DType::U32);
    /// assert!(Tensor::from_vec(vec![1.0f32; 5], &[2, 3], &dev).is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize], device: &Device) -> Result<Tensor> {
        if data.len() != shape::check_new("from_vec", shape)? {
            return shape_err(
                "from_vec",
                format!(
                    "{} values cannot fill shape {}",
                    data.len(),
                    shape::fmt(shape)
                ),
            );
        }
        if T::DTYPE.is_half() {
            let bits = bytemuck::try_cast_slice::<T, u16>(&data)
                .map(<[u16]>::to_vec)
                .map_err(|e| Error::DType {
                    op: "from_vec",
                    msg: format!("{:?} elements as 16-bit words: {e}", T::DTYPE),
                })?;
            return crate::ops::half::from_bits(bits, shape, T::DTYPE, device);
        }
        match device {
            Device::Cpu => match T::into_data(data) {
                Some(d) => Ok(Tensor::from_cpu(d, shape.to_vec())),
                None => Err(Error::DType {
                    op: "from_vec",
                    msg: format!("{:?} has no CPU data form", T::DTYPE),
                }),
            },
            Device::Gpu(g) => {
                if T::DTYPE == DType::F64 {
                    return Err(Error::DType {
                        op: "from_vec",
                        msg: "GPU tensors hold f32 or u32, not f64".into(),
                    });
                }
                let buf = g.upload(bytemuck::cast_slice(&data))?;
                Ok(Tensor::from_gpu(buf, shape.to_vec(), T::DTYPE))
            }
        }
    }

    /// A tensor copied from a slice.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape, device)
    }

    /// A 0-dimensional `f32` tensor holding `value` (rounded to `f32`).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let x = Tensor::scalar(-2.0, &Device::cpu())?;
    /// assert!(x.shape().is_empty());
    /// assert_eq!(x.item()?, -2.0);
    /// # Ok(()) }
    /// ```
    pub fn scalar(value: f64, device: &Device) -> Result<Tensor> {
        Tensor::from_vec(vec![value as f32], &[], device)
    }

    /// An `f32` tensor filled with `value` (rounded to `f32`).
    pub fn full(shape: &[usize], value: f64, device: &Device) -> Result<Tensor> {
        crate::ops::layout::fill(shape, DType::F32, value, device)
    }

    /// An `f32` tensor of zeros.
    pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::full(shape, 0.0, device)
    }

    /// An `f32` tensor of ones.
    pub fn ones(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::full(shape, 1.0, device)
    }

    /// Same shape, dtype and device as `self`, filled with `value`.
    pub fn full_like(&self, value: f64) -> Result<Tensor> {
        crate::ops::layout::fill(self.shape(), self.dtype(), value, self.device())
    }

    /// Same shape, dtype and device as `self`, all zeros.
    pub fn zeros_like(&self) -> Result<Tensor> {
        self.full_like(0.0)
    }

    /// Same shape, dtype and device as `self`, all ones.
    pub fn ones_like(&self) -> Result<Tensor> {
        self.full_like(1.0)
    }

    /// Uniform numbers in [0, 1) of `self`'s shape, float dtype and device, from the
    /// device's generator (PyTorch's `rand_like`; a `u32` tensor is a dtype error).
    pub fn rand_like(&self) -> Result<Tensor> {
        check_float("rand_like", self)?;
        Tensor::rand(self.shape(), self.device())?.to_dtype(self.dtype())
    }

    /// Standard normal numbers of `self`'s shape, float dtype and device, from the
    /// device's generator (PyTorch's `randn_like`; a `u32` tensor is a dtype error).
    pub fn randn_like(&self) -> Result<Tensor> {
        check_float("randn_like", self)?;
        Tensor::randn(self.shape(), self.device())?.to_dtype(self.dtype())
    }

    /// `[0, 1, ..., n - 1]` as `f32`.
    pub fn arange(n: usize, device: &Device) -> Result<Tensor> {
        Tensor::from_vec((0..n).map(|i| i as f32).collect(), &[n], device)
    }

    /// Uniform numbers in [0, 1) from the device's generator (see [`Device::manual_seed`]).
    pub fn rand(shape: &[usize], device: &Device) -> Result<Tensor> {
        crate::ops::random::uniform(shape, device.next_rng_key(), device)
    }

    /// Standard normal numbers from the device's generator.
    pub fn randn(shape: &[usize], device: &Device) -> Result<Tensor> {
        crate::ops::random::normal(shape, device.next_rng_key(), device)
    }

    /// Uniform numbers in [0, 1) from an explicit seed: the same on every device.
    pub fn rand_seeded(shape: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
        crate::ops::random::uniform(shape, RngKey { seed, offset: 0 }, device)
    }

    /// Standard normal numbers from an explicit seed: the same on every device.
    pub fn randn_seeded(shape: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
        crate::ops::random::normal(shape, RngKey { seed, offset: 0 }, device)
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        shape::numel(&self.0.shape)
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// The device holding the elements.
    pub fn device(&self) -> &Device {
        &self.0.device
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.0.storage
    }

    /// Copies the elements to the host, row-major. `T` must match the dtype. On the GPU
    /// this waits for the device; in the browser, where nothing may block, use
    /// [`Tensor::to_vec_async`].
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let x = Tensor::from_vec(vec![1.0f32, -2.0, 3.0], &[3], &dev)?;
    /// assert_eq!(x.relu()?.to_vec::<f32>()?, [1.0, 0.0, 3.0]);
    /// assert!(x.to_vec::<u32>().is_err()); // the dtype is f32
    /// # Ok(()) }
    /// ```
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.check_element::<T>()?;
        match &self.0.storage {
            Storage::Cpu(s) => from_data::<T>(&s.read()),
            Storage::Gpu(b) => {
                let bytes = b.ctx.read(b, (self.numel() * 4) as u64)?;
                Ok(bytemuck::pod_collect_to_vec(&bytes))
            }
            Storage::Half(_) => half_elements(crate::ops::half::bits(self)?),
        }
    }

    /// [`Tensor::to_vec`] without blocking: awaits the GPU's copy (in the browser the
    /// event loop runs meanwhile; natively it waits as `to_vec` does and gives the same
    /// values).
    pub async fn to_vec_async<T: Element>(&self) -> Result<Vec<T>> {
        self.check_element::<T>()?;
        match &self.0.storage {
            Storage::Cpu(s) => from_data::<T>(&s.read()),
            Storage::Gpu(b) => {
                let bytes = b.ctx.read_async(b, (self.numel() * 4) as u64).await?;
                Ok(bytemuck::pod_collect_to_vec(&bytes))
            }
            Storage::Half(_) => half_elements(crate::ops::half::bits_async(self).await?),
        }
    }

    fn check_element<T: Element>(&self) -> Result<()> {
        if T::DTYPE != self.dtype() {
            return Err(Error::DType {
                op: "to_vec",
                msg: format!(
                    "the tensor holds {:?}, not {:?}; convert with to_dtype first",
                    self.dtype(),
                    T::DTYPE
                ),
            });
        }
        Ok(())
    }

    /// The elements as `f64`, whatever the dtype.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        Ok(match self.dtype() {
            DType::F32 => self.to_vec::<f32>()?.into_iter().map(f64::from).collect(),
            DType::F64 => self.to_vec::<f64>()?,
            DType::U32 => self.to_vec::<u32>()?.into_iter().map(f64::from).collect(),
            d @ (DType::F16 | DType::BF16) => crate::ops::half::bits(self)?
                .into_iter()
                .map(|b| crate::backend::half::to_f32(d, b) as f64)
                .collect(),
        })
    }

    /// [`Tensor::to_f64_vec`] without blocking (see [`Tensor::to_vec_async`]).
    pub async fn to_f64_vec_async(&self) -> Result<Vec<f64>> {
        Ok(match self.dtype() {
            DType::F32 => self
                .to_vec_async::<f32>()
                .await?
                .into_iter()
                .map(f64::from)
                .collect(),
            DType::F64 => self.to_vec_async::<f64>().await?,
            DType::U32 => self
                .to_vec_async::<u32>()
                .await?
                .into_iter()
                .map(f64::from)
                .collect(),
            d @ (DType::F16 | DType::BF16) => crate::ops::half::bits_async(self)
                .await?
                .into_iter()
                .map(|b| crate::backend::half::to_f32(d, b) as f64)
                .collect(),
        })
    }

    /// The value of a one-element tensor (the only GPU -> CPU copy a training loop needs),
    /// as `f64` whatever the dtype.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let x = Tensor::from_vec(vec![1.5f32, 2.5], &[2], &Device::cpu())?;
    /// assert_eq!(x.sum()?.item()?, 4.0);
    /// assert!(x.item().is_err()); // two elements
    /// # Ok(()) }
    /// ```
    pub fn item(&self) -> Result<f64> {
        self.check_one()?;
        Ok(self.to_f64_vec()?[0])
    }

    /// [`Tensor::item`] without blocking (see [`Tensor::to_vec_async`]).
    pub async fn item_async(&self) -> Result<f64> {
        self.check_one()?;
        Ok(self.to_f64_vec_async().await?[0])
    }

    fn check_one(&self) -> Result<()> {
        if self.numel() != 1 {
            return shape_err(
                "item",
                format!(
                    "needs a one-element tensor, got {}",
                    shape::fmt(self.shape())
                ),
            );
        }
        Ok(())
    }

    /// The same values on another device (a no-op handle copy if already there).
    pub fn to(&self, device: &Device) -> Result<Tensor> {
        if self.device() == device {
            return Ok(self.clone());
        }
        let out = match self.dtype() {
            DType::F32 => Tensor::from_vec(self.to_vec::<f32>()?, self.shape(), device)?,
            DType::F64 => Tensor::from_vec(self.to_vec::<f64>()?, self.shape(), device)?,
            DType::U32 => Tensor::from_vec(self.to_vec::<u32>()?, self.shape(), device)?,
            d @ (DType::F16 | DType::BF16) => {
                crate::ops::half::from_bits(crate::ops::half::bits(self)?, self.shape(), d, device)?
            }
        };
        if !self.dtype().is_float() {
            return Ok(out);
        }
        Ok(autograd::record(out, "to", &[self], {
            let src = self.device().clone();
            move |g| Ok(vec![Some(g.to(&src)?)])
        }))
    }

    /// The same values with another element type, like PyTorch's `.to(dtype)`: `u32`
    /// to and from `f32` on either device (floats to `u32` as Rust's `as`: toward zero,
    /// saturating, NaN to 0; `u32` past 2^24 to the nearest `f32`s), `f64` on the CPU,
    /// and `F16` and `BF16` on either device (rounded as PyTorch: to nearest even, past
    /// the largest finite value to infinity, subnormals and NaN kept; see
    /// [`Tensor::half`]). Float-to-float conversions carry gradients; `u32` results have
    /// none.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let labels = Tensor::from_vec(vec![2u32, 0, 1], &[3], &dev)?;
    /// assert_eq!(labels.to_dtype(DType::F32)?.to_vec::<f32>()?, [2.0, 0.0, 1.0]);
    /// # Ok(()) }
    /// ```
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let out = if dtype.is_half() || self.dtype().is_half() {
            crate::ops::half::convert(self, dtype)?
        } else {
            let s =
                self.device()
                    .backend()
                    .cast(self.storage(), self.numel(), self.dtype(), dtype)?;
            Tensor::from_storage(s, self.shape().to_vec(), dtype, self.device().clone())
        };
        if !(self.dtype().is_float() && dtype.is_float()) {
            return Ok(out);
        }
        let from = self.dtype();
        Ok(autograd::record(out, "to_dtype", &[self], move |g| {
            Ok(vec![Some(g.to_dtype(from)?)])
        }))
    }

    /// Whether gradients flow to this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// A handle to the same storage with gradient tracking set (a leaf of the graph):
    /// [`Tensor::backward`] then accumulates this tensor's gradient in [`Tensor::grad`].
    /// Only float tensors can require gradients; a `u32` tensor is an error.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let w = Tensor::from_vec(vec![1.0f32, 2.0], &[2], &dev)?.requires_grad_(true)?;
    /// assert!(w.requires_grad());
    /// let idx = Tensor::from_vec(vec![0u32, 1], &[2], &dev)?;
    /// assert!(idx.requires_grad_(true).is_err());
    /// # Ok(()) }
    /// ```
    pub fn requires_grad_(&self, on: bool) -> Result<Tensor> {
        if on && !self.dtype().is_float() {
            return Err(Error::DType {
                op: "requires_grad_",
                msg: format!(
                    "only float tensors can require gradients, this one is {:?}",
                    self.dtype()
                ),
            });
        }
        Ok(self.with_requires_grad(on))
    }

    /// [`Tensor::requires_grad_`] for callers that know the dtype (or turn it off).
    pub(crate) fn with_requires_grad(&self, on: bool) -> Tensor {
        Tensor(Arc::new(TensorInner {
            shape: self.0.shape.clone(),
            dtype: self.0.dtype,
            device: self.0.device.clone(),
            storage: self.0.storage.clone(),
            requires_grad: on && self.dtype().is_float(),
            grad_fn: None,
            grad: Mutex::new(None),
        }))
    }

    /// The same storage, cut out of the graph.
    pub fn detach(&self) -> Tensor {
        self.with_requires_grad(false)
    }

    /// The op node that produced this tensor, if it is not a leaf.
    pub fn grad_fn(&self) -> Option<&Arc<Node>> {
        self.0.grad_fn.as_ref()
    }

    /// The gradient accumulated in a leaf by `backward()`: `None` before the first
    /// backward pass, after [`Tensor::zero_grad`], and for tensors that do not require
    /// gradients. Successive backward passes add up, as in PyTorch.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &dev)?.requires_grad_(true)?;
    /// assert!(x.grad().is_none());
    /// x.mul(&x)?.sum()?.backward()?; // d(sum x^2)/dx = 2x
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>()?, [2.0, 4.0, 6.0]);
    /// x.mul(&x)?.sum()?.backward()?; // accumulates
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>()?, [4.0, 8.0, 12.0]);
    /// # Ok(()) }
    /// ```
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Replaces the accumulated gradient.
    pub fn set_grad(&self, grad: Option<Tensor>) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = grad;
    }

    /// Backpropagates from a one-element tensor (seeded with 1): walks the graph that
    /// produced it in reverse and adds `d self / d leaf` to the gradient of every leaf
    /// that requires one ([`Tensor::grad`]). A tensor with more than one element is an
    /// error.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let w = Tensor::scalar(3.0, &dev)?.requires_grad_(true)?;
    /// let x = Tensor::scalar(2.0, &dev)?;
    /// let y = w.mul(&x)?.add(&w)?; // y = w x + w
    /// y.backward()?;
    /// assert_eq!(w.grad().unwrap().item()?, 3.0); // x + 1
    /// assert!(x.grad().is_none()); // x does not require a gradient
    /// # Ok(()) }
    /// ```
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward() needs a scalar output, got {}; pass the output gradient with backward_with",
                shape::fmt(self.shape())
            )));
        }
        // An f32 seed is uploaded (a copy in the step's command stream, not a dispatch).
        let seed = if self.dtype() == DType::F32 {
            Tensor::from_vec(vec![1.0f32], self.shape(), self.device())?
        } else {
            self.full_like(1.0)?
        };
        autograd::run_backward(self, seed)
    }

    /// Backpropagates with an explicit gradient of the output.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if grad.shape() != self.shape() || grad.dtype() != self.dtype() {
            return shape_err(
                "backward_with",
                format!(
                    "the gradient is {} {:?}, the output {} {:?}",
                    shape::fmt(grad.shape()),
                    grad.dtype(),
                    shape::fmt(self.shape()),
                    self.dtype()
                ),
            );
        }
        check_same_device("backward_with", self, grad)?;
        autograd::run_backward(self, grad.detach())
    }

    /// Overwrites this tensor's elements with `src`'s, in place (no graph). This is how
    /// optimizers and loaders update parameters without new handles.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() || src.dtype() != self.dtype() {
            return shape_err(
                "copy_from",
                format!(
                    "{} into {}",
                    shape::fmt(src.shape()),
                    shape::fmt(self.shape())
                ),
            );
        }
        check_same_device("copy_from", self, src)?;
        crate::ops::layout::copy_into(self, src)
    }
}

/// `T`'s values from CPU data of its dtype.
fn from_data<T: Element>(d: &CpuData) -> Result<Vec<T>> {
    T::from_data(d).ok_or_else(|| Error::DType {
        op: "to_vec",
        msg: format!("the storage does not hold {:?}", T::DTYPE),
    })
}

/// 16-bit elements as `T` (a 16-bit element type: the dtype was checked).
fn half_elements<T: Element>(bits: Vec<u16>) -> Result<Vec<T>> {
    bytemuck::try_cast_slice::<u16, T>(&bits)
        .map(<[T]>::to_vec)
        .map_err(|e| Error::DType {
            op: "to_vec",
            msg: format!("16-bit words as {:?}: {e}", T::DTYPE),
        })
}

/// Fails unless both tensors are on the same device.
pub(crate) fn check_same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            a: a.device().name(),
            b: b.device().name(),
        });
    }
    Ok(())
}

/// Fails unless the tensor holds floats; returns its dtype. (Half tensors pass: the
/// ops convert them at their entry, `ops::half::widened`, and a backend that is handed
/// half storage anyway refuses it.)
pub(crate) fn check_float(op: &'static str, t: &Tensor) -> Result<DType> {
    if !t.dtype().is_float() {
        return Err(Error::DType {
            op,
            msg: format!("needs a float tensor, got {:?}", t.dtype()),
        });
    }
    Ok(t.dtype())
}

/// Fails unless both are float tensors of the same dtype on the same device.
pub(crate) fn check_pair(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    check_float(op, a)?;
    check_float(op, b)?;
    if a.dtype() != b.dtype() {
        return Err(Error::DType {
            op,
            msg: format!("dtypes differ: {:?} and {:?}", a.dtype(), b.dtype()),
        });
    }
    check_same_device(op, a, b)
}

pub(crate) fn check_index(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::U32 {
        return arg_err(
            op,
            format!("indices must be a u32 tensor, got {:?}", t.dtype()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_and_devices_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Tensor>();
        send_sync::<Device>();
    }
}
