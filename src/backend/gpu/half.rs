//! The GPU's half-precision conversions (`shaders/half.wgsl`, see
//! [`crate::backend::half`]): f32 to packed f16 or bf16 words, and back.

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d, kernel, shader};
use super::params::{params, Params};
use super::{GpuBuffer, GpuContext, Kernel, ShaderFile};
use crate::error::Result;
use crate::tensor::DType;

pub(crate) const FILE: ShaderFile =
    shader("half", include_str!("../../../shaders/half.wgsl")).with_params(&[&HalfParams::INFO]);

params! {
    /// One conversion.
    pub(crate) struct HalfParams as hp {
        /// Elements.
        n: u32,
        /// 1 for bf16, 0 for f16.
        bf16: u32,
        /// Padding.
        _pad1: u32,
        /// Padding.
        _pad2: u32,
    }
}

const PACK: &Kernel = kernel!(FILE, "half_pack_fwd", [XI, YI], params = HalfParams);
const UNPACK: &Kernel = kernel!(FILE, "half_unpack_fwd", [XI, YI], params = HalfParams);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![PACK, UNPACK]
}

fn params(n: usize, dtype: DType) -> HalfParams {
    HalfParams {
        n: n as u32,
        bf16: (dtype == DType::BF16) as u32,
        ..Default::default()
    }
}

/// The `n` f32 elements of `x` as packed `dtype` words (`ceil(n / 2)` of them).
pub(crate) fn pack(
    g: &Arc<GpuContext>,
    x: &GpuBuffer,
    n: usize,
    dtype: DType,
) -> Result<GpuBuffer> {
    let words = n.div_ceil(2);
    let out = gpu_alloc(g, words)?;
    if n > 0 {
        g.launch(PACK, &params(n, dtype), &[x, &out], groups_1d(words));
    }
    Ok(out)
}

/// The `n` packed `dtype` elements of `h` as f32.
pub(crate) fn unpack(
    g: &Arc<GpuContext>,
    h: &GpuBuffer,
    n: usize,
    dtype: DType,
) -> Result<GpuBuffer> {
    let out = gpu_alloc(g, n)?;
    if n > 0 {
        g.launch(UNPACK, &params(n, dtype), &[h, &out], groups_1d(n));
    }
    Ok(out)
}

/// `s` (`n` elements) as f32 storage: half storage widened by [`unpack`], anything else
/// as it is. For the few kernels of a half-reading primitive that read f32 only.
pub(crate) fn f32_of(
    g: &Arc<GpuContext>,
    s: &crate::backend::Storage,
    n: usize,
) -> Result<crate::backend::Storage> {
    use crate::backend::half::HalfData;
    match s {
        crate::backend::Storage::Half(h) => match &h.data {
            HalfData::Gpu(b) => Ok(crate::backend::Storage::new_gpu(unpack(g, b, n, h.dtype)?)),
            HalfData::Cpu(_) => crate::backend::wrong_backend("f32_of"),
        },
        _ => Ok(s.clone()),
    }
}
