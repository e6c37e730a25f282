//! Half-precision storage (`DType::F16`, `DType::BF16`): 16-bit elements on either
//! device, and the conversions between them and the 32-bit types.
//!
//! Both devices round as PyTorch does: to nearest, ties to even, past the largest finite
//! value to infinity, subnormals kept, NaN kept as a quiet NaN. The CPU converts with
//! the `half` crate; the GPU with the integer-only kernels of `shaders/half.wgsl`
//! (WGSL's `pack2x16float` leaves overflow undefined and may flush subnormals), which the
//! tests hold to the same bits for every 16-bit pattern.
//!
//! On the GPU the elements are packed two to a 32-bit word, element `i` in the low half
//! of word `i / 2` when `i` is even and the high half when odd; an odd count leaves the
//! last word's high half zero. A half tensor's storage is its own [`Storage::Half`]
//! variant, so the backends' f32 kernels can never read it by mistake. Ops take half
//! tensors through `ops::half::widened`: converted to f32, computed, rounded back once.
//! What reaches a backend with half storage anyway (an in-place update) returns
//! [`Error::DType`] naming the dtype.

use std::sync::Arc;

use super::gpu::GpuBuffer;
use super::Storage;
use crate::error::{Error, Result};
use crate::tensor::DType;

/// The bytes of one half-precision tensor.
pub(crate) struct HalfStorage {
    /// `F16` or `BF16`.
    pub dtype: DType,
    pub data: HalfData,
}

/// Where they live.
pub(crate) enum HalfData {
    /// One `u16` of bits per element (written in place only by `copy_from`).
    Cpu(std::sync::RwLock<Vec<u16>>),
    /// Two elements per 32-bit word.
    Gpu(GpuBuffer),
}

impl std::fmt::Debug for HalfStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.data {
            HalfData::Cpu(v) => write!(f, "{:?} storage, {} elements", self.dtype, read(v).len()),
            HalfData::Gpu(b) => write!(f, "{:?} storage, {b:?}", self.dtype),
        }
    }
}

impl HalfStorage {
    /// Storage of `dtype` bits on the CPU.
    pub(crate) fn cpu(dtype: DType, bits: Vec<u16>) -> Storage {
        Storage::Half(Arc::new(HalfStorage {
            dtype,
            data: HalfData::Cpu(std::sync::RwLock::new(bits)),
        }))
    }

    /// Storage of `dtype` in a GPU buffer of packed pairs.
    pub(crate) fn gpu(dtype: DType, buf: GpuBuffer) -> Storage {
        Storage::Half(Arc::new(HalfStorage {
            dtype,
            data: HalfData::Gpu(buf),
        }))
    }
}

/// The CPU bits, readable even after a writer panicked (the bits are plain data).
pub(crate) fn read(v: &std::sync::RwLock<Vec<u16>>) -> std::sync::RwLockReadGuard<'_, Vec<u16>> {
    v.read().unwrap_or_else(|e| e.into_inner())
}

/// The error of an op given half storage it cannot read yet.
pub(crate) fn not_yet<T>(op: &'static str, dtype: DType) -> Result<T> {
    Err(Error::DType {
        op,
        msg: format!(
            "{dtype:?} tensors are not updated in place yet (mixed precision keeps f32 \
             master weights), nor cut into pieces past the binding limit; convert with \
             .float() first"
        ),
    })
}

/// `s` as 32-bit storage for the CPU's loops: half storage on the CPU widened (exactly)
/// to a new `f32` buffer, anything else as it is. The CPU backend's primitives that
/// take half inputs (products, the fused layers, the elementwise table) call it first.
pub(crate) fn cpu_f32(s: &Storage) -> std::borrow::Cow<'_, Storage> {
    match s {
        Storage::Half(h) => match &h.data {
            HalfData::Cpu(bits) => {
                let v = widen_all(h.dtype, &read(bits));
                std::borrow::Cow::Owned(Storage::new_cpu(super::cpu::CpuData::F32(v)))
            }
            HalfData::Gpu(_) => std::borrow::Cow::Borrowed(s),
        },
        _ => std::borrow::Cow::Borrowed(s),
    }
}

/// [`to_f32`] of every element (the `half` crate's slice conversion: the CPU's F16C
/// instructions where it has them, eight at a time).
pub(crate) fn widen_all(dtype: DType, bits: &[u16]) -> Vec<f32> {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    let mut out = vec![0.0f32; bits.len()];
    match dtype {
        DType::BF16 => bits
            .reinterpret_cast::<half::bf16>()
            .convert_to_f32_slice(&mut out),
        _ => bits
            .reinterpret_cast::<half::f16>()
            .convert_to_f32_slice(&mut out),
    }
    out
}

/// [`from_f32`] of every element, as [`widen_all`].
pub(crate) fn narrow_all(dtype: DType, v: &[f32]) -> Vec<u16> {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    let mut bits = vec![0u16; v.len()];
    match dtype {
        DType::BF16 => bits
            .reinterpret_cast_mut::<half::bf16>()
            .convert_from_f32_slice(v),
        _ => bits
            .reinterpret_cast_mut::<half::f16>()
            .convert_from_f32_slice(v),
    }
    bits
}

/// `f32` bits to `dtype`'s 16 bits, as PyTorch rounds.
pub(crate) fn from_f32(dtype: DType, x: f32) -> u16 {
    match dtype {
        DType::BF16 => half::bf16::from_f32(x).to_bits(),
        _ => half::f16::from_f32(x).to_bits(),
    }
}

/// `dtype`'s 16 bits as the `f32` they hold (exact).
pub(crate) fn to_f32(dtype: DType, bits: u16) -> f32 {
    match dtype {
        DType::BF16 => half::bf16::from_bits(bits).to_f32(),
        _ => half::f16::from_bits(bits).to_f32(),
    }
}

/// Packs 16-bit elements two to a word for the GPU (zero-padding an odd count).
pub(crate) fn pack(bits: &[u16]) -> Vec<u32> {
    bits.chunks(2)
        .map(|p| p[0] as u32 | (p.get(1).copied().unwrap_or(0) as u32) << 16)
        .collect()
}

/// The first `n` 16-bit elements of packed words.
pub(crate) fn unpack(words: &[u32], n: usize) -> Vec<u16> {
    words
        .iter()
        .flat_map(|w| [*w as u16, (*w >> 16) as u16])
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_odd_counts() {
        let bits = [1u16, 2, 0xffff];
        let words = pack(&bits);
        assert_eq!(words, [0x0002_0001, 0x0000_ffff]);
        assert_eq!(unpack(&words, 3), bits);
    }

    #[test]
    fn rounding_follows_pytorch() {
        // torch.tensor([...], dtype=torch.float32).half().view(torch.int16)
        assert_eq!(from_f32(DType::F16, 65504.0), 0x7bff);
        assert_eq!(from_f32(DType::F16, 65520.0), 0x7c00);
        assert_eq!(from_f32(DType::F16, 1.000_976_6), 0x3c01);
        assert_eq!(from_f32(DType::F16, 1.000_488_3), 0x3c00);
        assert_eq!(from_f32(DType::F16, 6e-8), 0x0001);
        assert_eq!(from_f32(DType::BF16, 1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_f32(DType::F16, 0x0001), 2f32.powi(-24));
    }
}
