//! The GPU backend's random primitives: Philox draws and the masks of dropout and noisy
//! ReLU, in `shaders/random.wgsl` (the same function as `backend/cpu/random.rs`).

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d, kernel, shader};
use super::params::{params, Params};
use super::{GpuBuffer, GpuContext, Kernel, ShaderFile};
use crate::backend::random::RngKey;
use crate::backend::{wrong_backend, Dist, Masked, Random, Storage};
use crate::error::Result;

pub(crate) const FILE: ShaderFile = shader("random", include_str!("../../../shaders/random.wgsl"))
    .with_params(&[&RandomParams::INFO]);

params! {
    /// A draw from the Philox generator, and what the op does with it.
    pub(crate) struct RandomParams as rnd {
        /// Elements.
        n: u32,
        /// The seed's low word.
        seed_lo: u32,
        /// Its high word.
        seed_hi: u32,
        /// The draw offset's low word.
        offset_lo: u32,
        /// Its high word.
        offset_hi: u32,
        /// Dropout: keep where the top 24 bits of the first word are at least this.
        threshold: u32,
        /// Dropout: the kept values' scale, 1 / (1 - p).
        scale: f32,
        /// Noisy ReLU: the noise's standard deviation.
        sigma: f32,
    }
}

const UNIFORM: &Kernel = kernel!(FILE, "uniform_fwd", [Y0], params = RandomParams);
const NORMAL: &Kernel = kernel!(FILE, "normal_fwd", [Y0], params = RandomParams);
const DROPOUT: &Kernel = kernel!(FILE, "dropout_fwd", [X0, Y0, Y1], params = RandomParams);
const NOISY_RELU: &Kernel = kernel!(FILE, "noisy_relu_fwd", [X0, Y0, Y1], params = RandomParams);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![UNIFORM, NORMAL, DROPOUT, NOISY_RELU]
}

fn key_params(n: usize, key: RngKey) -> RandomParams {
    let [seed_lo, seed_hi, offset_lo, offset_hi] = key.gpu_params();
    RandomParams {
        n: n as u32,
        seed_lo,
        seed_hi,
        offset_lo,
        offset_hi,
        ..Default::default()
    }
}

impl Random for Arc<GpuContext> {
    fn draw(&self, dist: Dist, key: RngKey, n: usize) -> Result<Storage> {
        let out = gpu_alloc(self, n)?;
        let k = match dist {
            Dist::Uniform => UNIFORM,
            Dist::Normal => NORMAL,
        };
        self.launch(k, &key_params(n, key), &[&out], groups_1d(n));
        Ok(Storage::Gpu(Arc::new(out)))
    }

    fn masked(&self, op: Masked, x: &Storage, key: RngKey, n: usize) -> Result<(Storage, Storage)> {
        let Storage::Gpu(xb) = x else {
            return wrong_backend("masked");
        };
        let (k, params) = match op {
            Masked::Dropout { threshold, scale } => (
                DROPOUT,
                RandomParams {
                    threshold,
                    scale,
                    ..key_params(n, key)
                },
            ),
            Masked::NoisyRelu { sigma } => (
                NOISY_RELU,
                RandomParams {
                    sigma,
                    ..key_params(n, key)
                },
            ),
        };
        let (y, m): (GpuBuffer, GpuBuffer) = (gpu_alloc(self, n)?, gpu_alloc(self, n)?);
        self.launch(k, &params, &[xb, &y, &m], groups_1d(n));
        Ok((Storage::Gpu(Arc::new(y)), Storage::Gpu(Arc::new(m))))
    }
}
