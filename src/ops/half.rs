//! Half-precision tensors (`DType::F16`, `DType::BF16`): made from host values, converted
//! to and from the other dtypes with PyTorch's rounding, moved between devices, read back
//! and saved. Their storage is `backend::half`'s (`src/backend/half.rs`).

use crate::backend::half::{self as hs, HalfData, HalfStorage};
use crate::backend::Storage;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

impl Tensor {
    /// The values as IEEE half precision (`F16`), as PyTorch's `.half()`: rounded to
    /// nearest even, past 65504 (plus half an ulp) to infinity, subnormals and NaN kept.
    /// Gradients flow back through the conversion.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let x = Tensor::from_vec(vec![0.1f32, 65520.0, 6e-8], &[3], &Device::cpu())?;
    /// let h = x.half()?;
    /// assert_eq!(h.dtype(), DType::F16);
    /// assert_eq!(h.float()?.to_vec::<f32>()?, [0.099975586, f32::INFINITY, 5.9604645e-8]);
    /// # Ok(()) }
    /// ```
    pub fn half(&self) -> Result<Tensor> {
        self.to_dtype(DType::F16)
    }

    /// The values as bfloat16 (`BF16`), as PyTorch's `.bfloat16()`.
    pub fn bfloat16(&self) -> Result<Tensor> {
        self.to_dtype(DType::BF16)
    }

    /// The values as `f32`, as PyTorch's `.float()`.
    pub fn float(&self) -> Result<Tensor> {
        self.to_dtype(DType::F32)
    }
}

/// A `dtype` (half) tensor of `shape` on `device` holding `bits`.
pub(crate) fn from_bits(
    bits: Vec<u16>,
    shape: &[usize],
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let storage = match device {
        Device::Cpu => HalfStorage::cpu(dtype, bits),
        Device::Gpu(g) => {
            let words = hs::pack(&bits);
            HalfStorage::gpu(dtype, g.upload(bytemuck::cast_slice(&words))?)
        }
    };
    Ok(Tensor::from_storage(
        storage,
        shape.to_vec(),
        dtype,
        device.clone(),
    ))
}

fn half_storage(t: &Tensor) -> Result<&HalfStorage> {
    match t.storage() {
        Storage::Half(h) => Ok(h),
        _ => Err(Error::DType {
            op: "half",
            msg: format!("a {:?} tensor has no 16-bit storage", t.dtype()),
        }),
    }
}

/// The 16-bit elements of a half tensor (read back from the GPU).
pub(crate) fn bits(t: &Tensor) -> Result<Vec<u16>> {
    match &half_storage(t)?.data {
        HalfData::Cpu(v) => Ok(hs::read(v).clone()),
        HalfData::Gpu(b) => {
            let bytes = b.ctx.read(b, (t.numel().div_ceil(2) * 4) as u64)?;
            Ok(hs::unpack(&bytemuck::pod_collect_to_vec(&bytes), t.numel()))
        }
    }
}

/// [`bits`] without blocking (see [`Tensor::to_vec_async`]).
pub(crate) async fn bits_async(t: &Tensor) -> Result<Vec<u16>> {
    match &half_storage(t)?.data {
        HalfData::Cpu(v) => Ok(hs::read(v).clone()),
        HalfData::Gpu(b) => {
            let bytes = b
                .ctx
                .read_async(b, (t.numel().div_ceil(2) * 4) as u64)
                .await?;
            Ok(hs::unpack(&bytemuck::pod_collect_to_vec(&bytes), t.numel()))
        }
    }
}

/// `x` converted to `to` where either side is a half type (no gradient recorded: the
/// caller, [`Tensor::to_dtype`], records it). Half to half goes through `f32` (exact
/// from either, then one rounding); `u32` through `f32` as well.
pub(crate) fn convert(x: &Tensor, to: DType) -> Result<Tensor> {
    let from = x.dtype();
    let n = x.numel();
    let dev = x.device();
    if from.is_half() && to.is_half() || from == DType::U32 {
        let wide = convert_or_cast(x, DType::F32)?;
        return convert(&wide.detach(), to);
    }
    if to.is_half() {
        let storage = match x.storage() {
            Storage::Cpu(c) => {
                let bits = match &*c.read() {
                    crate::backend::cpu::CpuData::F32(v) => hs::narrow_all(to, v),
                    // Through f32, as PyTorch (two roundings: 1 + 2^-11 + 2^-40
                    // becomes 1.0, not 1 + 2^-10).
                    crate::backend::cpu::CpuData::F64(v) => {
                        v.iter().map(|&a| hs::from_f32(to, a as f32)).collect()
                    }
                    crate::backend::cpu::CpuData::U32(_) => {
                        return Err(Error::DType {
                            op: "to_dtype",
                            msg: "u32 to half goes through f32".into(),
                        })
                    }
                };
                HalfStorage::cpu(to, bits)
            }
            Storage::Gpu(b) => {
                HalfStorage::gpu(to, crate::backend::gpu::half::pack(&b.ctx, b, n, to)?)
            }
            Storage::Half(_) => unreachable_half(from)?,
        };
        return Ok(Tensor::from_storage(
            storage,
            x.shape().to_vec(),
            to,
            dev.clone(),
        ));
    }
    // From half to a 32- or 64-bit type.
    let h = half_storage(x)?;
    let wide = match &h.data {
        HalfData::Cpu(bits) => {
            let v = hs::widen_all(from, &hs::read(bits));
            Tensor::from_vec(v, x.shape(), dev)?
        }
        HalfData::Gpu(b) => {
            let out = crate::backend::gpu::half::unpack(&b.ctx, b, n, from)?;
            Tensor::from_storage(
                Storage::new_gpu(out),
                x.shape().to_vec(),
                DType::F32,
                dev.clone(),
            )
        }
    };
    convert_or_cast(&wide, to)
}

/// `x` as `to` by [`convert`] or the backend's cast, without recording a gradient.
fn convert_or_cast(x: &Tensor, to: DType) -> Result<Tensor> {
    if x.dtype() == to {
        return Ok(x.clone());
    }
    if x.dtype().is_half() || to.is_half() {
        return convert(x, to);
    }
    let s = x
        .device()
        .backend()
        .cast(x.storage(), x.numel(), x.dtype(), to)?;
    Ok(Tensor::from_storage(
        s,
        x.shape().to_vec(),
        to,
        x.device().clone(),
    ))
}

fn unreachable_half<T>(dtype: DType) -> Result<T> {
    Err(Error::DType {
        op: "to_dtype",
        msg: format!("a {dtype:?} tensor with 16-bit storage reached the f32 path"),
    })
}

/// The generic path of an op given half tensors: when any of `inputs` is `F16` or
/// `BF16`, checks that every float input has that one dtype (mixing is an error naming
/// both, as without autocast), runs `f` on the inputs with the half ones converted to
/// `f32` (recorded, so gradients flow back as the half dtype), and rounds its `f32`
/// outputs back to the half dtype (other outputs, such as indices, stay). `None` when no
/// input is half: the op runs as usual. The op thus computes in `f32` and rounds once,
/// as PyTorch's half kernels accumulate in `f32`.
///
/// Under [`crate::amp::autocast`] for the inputs' device, `op` names the op in
/// autocast's lists: a lower-precision op first rounds its `f32` inputs to the autocast
/// dtype (and so also runs here when none was half), an `f32` op keeps its `f32` output,
/// and mixed half and `f32` inputs run in `f32` instead of failing. `f` runs with
/// autocast off.
pub(crate) fn widened<T: Outputs>(
    op: &'static str,
    inputs: &[&Tensor],
    f: impl FnOnce(&[Tensor]) -> Result<T>,
) -> Option<Result<T>> {
    half_path(op, inputs, false, f)
}

/// [`widened`] for an op whose primitives read half storage themselves (products, the
/// fused layers, the elementwise table): when its result is to be half (the inputs'
/// half dtype, or autocast's for a lower-precision op), `f` gets the inputs in that
/// dtype (autocast's `f32` ones rounded to it), not widened, and its outputs are
/// expected in it too (any `f32` output is rounded). So the op saves half tensors for
/// its backward and no `f32` copy of an operand is made. Where the result is `f32`
/// (autocast's `f32` ops, mixed dtypes under autocast) it is [`widened`]. `f` must not
/// call back into this function with the same inputs.
pub(crate) fn direct<T: Outputs>(
    op: &'static str,
    inputs: &[&Tensor],
    f: impl FnOnce(&[Tensor]) -> Result<T>,
) -> Option<Result<T>> {
    half_path(op, inputs, true, f)
}

fn half_path<T: Outputs>(
    op: &'static str,
    inputs: &[&Tensor],
    keep_half: bool,
    f: impl FnOnce(&[Tensor]) -> Result<T>,
) -> Option<Result<T>> {
    use crate::amp::{cast_of, AutocastGuard, Cast};
    let amp = inputs
        .first()
        .and_then(|t| crate::amp::autocast_dtype(t.device()));
    let cast = amp.map(|_| cast_of(op));
    let found = inputs.iter().map(|t| t.dtype()).find(|d| d.is_half());
    let lower = cast == Some(Cast::Lower)
        && inputs
            .iter()
            .any(|t| matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16));
    let half = match (amp, found) {
        (Some(dt), _) if lower => dt,
        (_, Some(h)) => h,
        _ => return None,
    };
    // Under autocast, float inputs of another dtype than `half` (not lowered) make the
    // op run in f32.
    let mixed = amp.is_some()
        && !lower
        && inputs
            .iter()
            .any(|t| t.dtype().is_float() && t.dtype() != half);
    let f32_out = amp.is_some() && (cast == Some(Cast::F32) || mixed);
    let keep = keep_half && !f32_out;
    Some((|| {
        let _off = amp.map(|_| AutocastGuard::off());
        let mut wide = Vec::with_capacity(inputs.len());
        for t in inputs {
            let d = t.dtype();
            wide.push(if !d.is_float() {
                (*t).clone()
            } else if d == half {
                if keep {
                    (*t).clone()
                } else {
                    t.to_dtype(DType::F32)?
                }
            } else if lower {
                let h = t.to_dtype(half)?;
                if keep {
                    h
                } else {
                    h.to_dtype(DType::F32)?
                }
            } else if amp.is_some() {
                t.to_dtype(DType::F32)?
            } else {
                return Err(Error::DType {
                    op,
                    msg: format!("dtypes differ: {half:?} and {d:?} (convert one of them)"),
                });
            });
        }
        let out = f(&wide)?;
        if f32_out {
            Ok(out)
        } else {
            out.narrow(half)
        }
    })())
}

/// True for half-precision inference on the GPU: `inputs` of one half dtype on a GPU, no
/// autocast, and no backward to run (grad mode off, or nothing requires a gradient).
/// Ops whose kernels read half inputs only then (attention, layer norm) skip the `f32`
/// copies of [`widened`]; with a backward to run they widen, as their backward kernels
/// read `f32`.
pub(crate) fn gpu_inference(inputs: &[&Tensor]) -> bool {
    let Some(first) = inputs.first() else {
        return false;
    };
    matches!(first.device(), crate::device::Device::Gpu(_))
        && first.dtype().is_half()
        && inputs.iter().all(|t| t.dtype() == first.dtype())
        && crate::amp::autocast_dtype(first.device()).is_none()
        && !(crate::autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad()))
}

/// An op's output from a primitive that read half inputs: `out` as a tensor of `like`'s
/// dtype, rounded from the `f32` the primitive wrote when `like` is half (one exact
/// rounding, on the device that holds it). `f32` and `f64` ops pass through.
pub(crate) fn like(out: Storage, shape: Vec<usize>, like: &Tensor) -> Result<Tensor> {
    let dtype = like.dtype();
    if !dtype.is_half() || matches!(out, Storage::Half(_)) {
        return Ok(Tensor::like(out, shape, like));
    }
    let wide = Tensor::from_storage(out, shape, DType::F32, like.device().clone());
    convert(&wide, dtype)
}

/// What an op returns: its `f32` tensors are rounded back to the half dtype.
pub(crate) trait Outputs: Sized {
    fn narrow(self, dtype: DType) -> Result<Self>;
}

impl Outputs for Tensor {
    fn narrow(self, dtype: DType) -> Result<Self> {
        if self.dtype() == DType::F32 {
            self.to_dtype(dtype)
        } else {
            Ok(self)
        }
    }
}

impl Outputs for (Tensor, Tensor) {
    fn narrow(self, dtype: DType) -> Result<Self> {
        Ok((self.0.narrow(dtype)?, self.1.narrow(dtype)?))
    }
}

impl Outputs for Option<Tensor> {
    fn narrow(self, dtype: DType) -> Result<Self> {
        self.map(|t| t.narrow(dtype)).transpose()
    }
}

/// `fixed` then the present `optional` tensors, for [`widened`].
pub(crate) fn with_optional<'a>(
    fixed: &[&'a Tensor],
    optional: &[Option<&'a Tensor>],
) -> Vec<&'a Tensor> {
    fixed
        .iter()
        .copied()
        .chain(optional.iter().flatten().copied())
        .collect()
}

/// The inverse of [`with_optional`] on the widened tensors: the `fixed` ones, then one
/// entry per optional slot (`None` where none was given).
pub(crate) fn split_optional<'a>(
    wide: &'a [Tensor],
    fixed: usize,
    optional: &[Option<&Tensor>],
) -> (&'a [Tensor], Vec<Option<&'a Tensor>>) {
    let (head, mut rest) = wide.split_at(fixed);
    let opts = optional
        .iter()
        .map(|o| {
            o.map(|_| {
                let (first, tail) = rest.split_first().expect("one widened tensor per slot");
                rest = tail;
                first
            })
        })
        .collect();
    (head, opts)
}

impl Outputs for (Tensor, Option<Tensor>) {
    fn narrow(self, dtype: DType) -> Result<Self> {
        Ok((self.0.narrow(dtype)?, self.1.narrow(dtype)?))
    }
}

impl Outputs for (Tensor, Tensor, Option<Tensor>) {
    fn narrow(self, dtype: DType) -> Result<Self> {
        Ok((
            self.0.narrow(dtype)?,
            self.1.narrow(dtype)?,
            self.2.narrow(dtype)?,
        ))
    }
}

/// `copy_from` between half tensors of one dtype, shape and device: the bits, in place.
pub(crate) fn copy_into(dst: &Tensor, src: &Tensor) -> Result<()> {
    let (d, s) = (half_storage(dst)?, half_storage(src)?);
    match (&d.data, &s.data) {
        (HalfData::Cpu(d), HalfData::Cpu(s)) => {
            let bits = hs::read(s).clone();
            let mut w = d.write().unwrap_or_else(|e| e.into_inner());
            w.copy_from_slice(&bits);
            Ok(())
        }
        (HalfData::Gpu(d), HalfData::Gpu(s)) => {
            let bytes = (dst.numel().div_ceil(2) * 4) as u64;
            if bytes > 0 {
                d.ctx.copy_range(s, 0, d, 0, bytes);
            }
            Ok(())
        }
        _ => Err(Error::DeviceMismatch {
            op: "copy_from",
            a: dst.device().name(),
            b: src.device().name(),
        }),
    }
}
