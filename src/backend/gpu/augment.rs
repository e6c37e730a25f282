//! The GPU backend's geometric augmentation (`shaders/augment.wgsl`): one thread per
//! output element, the per-image moves uploaded as four words each.

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d, kernel, shader};
use super::params::{params, Params};
use super::{GpuContext, Kernel, ShaderFile};
use crate::backend::{wrong_backend, Augment, ImageMove, Storage};
use crate::error::Result;

pub(crate) const FILE: ShaderFile =
    shader("augment", include_str!("../../../shaders/augment.wgsl"))
        .with_params(&[&AugmentParams::INFO]);

params! {
    /// The geometric augmentation of an NCHW batch.
    pub(crate) struct AugmentParams as ag {
        /// Images.
        n: u32,
        /// Channels.
        c: u32,
        /// Input height.
        h: u32,
        /// Input width.
        w: u32,
        /// Output height.
        ho: u32,
        /// Output width.
        wo: u32,
        /// Zero padding before the crop.
        pad: u32,
        /// Padding.
        _pad: u32,
    }
}

const GEOMETRIC: &Kernel = kernel!(
    FILE,
    "augment_geometric_fwd",
    [X0, XI, Y0],
    params = AugmentParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![GEOMETRIC]
}

impl Augment for Arc<GpuContext> {
    fn geometric(&self, x: &Storage, dims: [usize; 7], moves: &[ImageMove]) -> Result<Storage> {
        let Storage::Gpu(x) = x else {
            return wrong_backend("augment");
        };
        let words: Vec<u32> = moves
            .iter()
            .flat_map(|m| [m.crop_row, m.crop_col, m.hflip as u32, m.vflip as u32])
            .collect();
        let words = self.upload(bytemuck::cast_slice(&words))?;
        let [n, c, h, w, ho, wo, pad] = dims;
        let total = n * c * ho * wo;
        let out = gpu_alloc(self, total)?;
        let u = |v: usize| v as u32;
        let params = AugmentParams {
            n: u(n),
            c: u(c),
            h: u(h),
            w: u(w),
            ho: u(ho),
            wo: u(wo),
            pad: u(pad),
            ..Default::default()
        };
        self.launch(GEOMETRIC, &params, &[x, &words, &out], groups_1d(total));
        Ok(Storage::Gpu(Arc::new(out)))
    }
}
