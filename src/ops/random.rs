//! Random ops from the counter-based Philox generator: `rand`, `randn`, `dropout`
//! (inverted scaling, mask saved for backward) and `noisy_relu` (`relu(x + eps)`,
//! `eps ~ N(0, sigma^2)` while training). A draw's numbers depend only on its
//! (seed, offset) key, so the GPU and the CPU produce the same values.

use crate::autograd::record;
use crate::backend::cpu::random::{normal as normal_from, uniform01, RngKey};
use crate::backend::cpu::CpuData;
use crate::backend::gpu::params::{params, Params};
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::device::Device;
use crate::error::{arg_err, Result};
use crate::ops::{gpu_alloc, groups_1d, kernel, shader};
use crate::tensor::{check_float, DType, Tensor};

pub(crate) const FILE: ShaderFile =
    shader("random", include_str!("../../shaders/random.wgsl")).with_params(&[&RandomParams::INFO]);

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

fn draw(shape_: &[usize], key: RngKey, device: &Device, normal: bool) -> Result<Tensor> {
    let n = crate::ops::check_out("rand", shape_, DType::F32, device)?;
    Ok(match device {
        Device::Cpu => {
            let v: Vec<f32> = (0..n)
                .map(|i| {
                    let w = key.words(i);
                    if normal {
                        normal_from(w[0], w[1]) as f32
                    } else {
                        uniform01(w[0]) as f32
                    }
                })
                .collect();
            Tensor::from_cpu(CpuData::F32(v), shape_.to_vec())
        }
        Device::Gpu(g) => {
            let out = gpu_alloc(g, n)?;
            let k = if normal { NORMAL } else { UNIFORM };
            g.launch(k, &key_params(n, key), &[&out], groups_1d(n));
            Tensor::from_gpu(out, shape_.to_vec(), DType::F32)
        }
    })
}

pub(crate) fn uniform(shape_: &[usize], key: RngKey, device: &Device) -> Result<Tensor> {
    draw(shape_, key, device, false)
}

pub(crate) fn normal(shape_: &[usize], key: RngKey, device: &Device) -> Result<Tensor> {
    draw(shape_, key, device, true)
}

/// Applies `x * mask` with a mask made on the device; the mask is saved for backward.
fn masked(
    x: &Tensor,
    name: &'static str,
    kernel: &'static Kernel,
    params: RandomParams,
    cpu_mask: impl Fn(usize, f64) -> (f64, f64),
) -> Result<Tensor> {
    let n = x.numel();
    let (y, mask) = match x.device() {
        Device::Cpu => {
            use crate::backend::cpu::pool;
            let (y, m) = match &*x.cpu_data() {
                // Output and mask come from the CPU pool, as every op's outputs do:
                // buffers made outside it are recycled into it but never asked for.
                CpuData::F32(v) => {
                    let (mut y, mut m) = (pool::with_capacity(n), pool::with_capacity(n));
                    for (i, &a) in v.iter().enumerate() {
                        let (b, k) = cpu_mask(i, a as f64);
                        y.push(b as f32);
                        m.push(k as f32);
                    }
                    (CpuData::F32(y), CpuData::F32(m))
                }
                CpuData::F64(v) => {
                    let (mut y, mut m) = (pool::with_capacity(n), pool::with_capacity(n));
                    for (i, &a) in v.iter().enumerate() {
                        let (b, k) = cpu_mask(i, a);
                        y.push(b);
                        m.push(k);
                    }
                    (CpuData::F64(y), CpuData::F64(m))
                }
                CpuData::U32(_) => unreachable!("dtype checked"),
            };
            (
                Tensor::from_cpu(y, x.shape().to_vec()),
                Tensor::from_cpu(m, x.shape().to_vec()),
            )
        }
        Device::Gpu(g) => {
            let (y, m) = (gpu_alloc(g, n)?, gpu_alloc(g, n)?);
            g.launch(kernel, &params, &[x.gpu_buf(), &y, &m], groups_1d(n));
            (
                Tensor::from_gpu(y, x.shape().to_vec(), x.dtype()),
                Tensor::from_gpu(m, x.shape().to_vec(), x.dtype()),
            )
        }
    };
    Ok(record(y, name, &[x], move |g| {
        Ok(vec![Some(g.mul(&mask)?)])
    }))
}

/// Dropout with an explicit generator key (see [`Tensor::dropout`]).
pub fn dropout_with_key(x: &Tensor, p: f32, key: RngKey) -> Result<Tensor> {
    check_float("dropout", x)?;
    if !(0.0..1.0).contains(&p) {
        return arg_err("dropout", format!("p must be in [0, 1), got {p}"));
    }
    // Keep an element when the top 24 bits of its word reach ceil(p 2^24): an exact
    // integer test, identical on both backends.
    let threshold = (p as f64 * 16_777_216.0).ceil() as u32;
    let scale = 1.0 / (1.0 - p);
    let params = RandomParams {
        threshold,
        scale,
        ..key_params(x.numel(), key)
    };
    masked(x, "dropout", DROPOUT, params, move |i, a| {
        let keep = (key.words(i)[0] >> 8) >= threshold;
        let m = if keep { scale as f64 } else { 0.0 };
        (a * m, m)
    })
}

/// Noisy ReLU with an explicit generator key (see [`Tensor::noisy_relu`]).
pub fn noisy_relu_with_key(x: &Tensor, std: f32, key: RngKey) -> Result<Tensor> {
    check_float("noisy_relu", x)?;
    if std.is_nan() || std < 0.0 {
        return arg_err(
            "noisy_relu",
            format!("the noise deviation must be >= 0, got {std}"),
        );
    }
    let params = RandomParams {
        sigma: std,
        ..key_params(x.numel(), key)
    };
    let dtype = x.dtype();
    masked(x, "noisy_relu", NOISY_RELU, params, move |i, a| {
        let w = key.words(i);
        let eps = normal_from(w[0], w[1]);
        // Match the GPU's f32 arithmetic for f32 tensors.
        let z = if dtype == DType::F32 {
            (a as f32 + std * eps as f32) as f64
        } else {
            a + std as f64 * eps
        };
        if z > 0.0 {
            (z, 1.0)
        } else {
            (0.0, 0.0)
        }
    })
}

impl Tensor {
    /// Inverted dropout: while `training`, zeroes each element with probability `p` and
    /// scales the rest by `1 / (1 - p)`, using the device's seeded generator; the
    /// identity otherwise.
    pub fn dropout(&self, p: f32, training: bool) -> Result<Tensor> {
        if !training || p == 0.0 {
            check_float("dropout", self)?;
            return Ok(self.clone());
        }
        dropout_with_key(self, p, self.device().next_rng_key())
    }

    /// Noisy ReLU `max(x + eps, 0)`, `eps ~ N(0, std^2)` from the device's generator
    /// while `training`; plain `relu` otherwise.
    pub fn noisy_relu(&self, std: f32, training: bool) -> Result<Tensor> {
        if !training {
            return self.relu();
        }
        noisy_relu_with_key(self, std, self.device().next_rng_key())
    }
}
