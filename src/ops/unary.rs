//! Elementwise unary ops: math (`neg`, `exp`, `log`, `sqrt`, `abs`, scalar `affine`) and
//! activations (`sigmoid`, `tanh`, `relu`, `softplus`, `leaky_relu`, `gelu`, `silu`,
//! `mish`, and `prelu` with a trainable slope; `noisy_relu` lives in `random`). Their math,
//! forward and backward in Rust and WGSL, is one row each of the elementwise table
//! ([`super::elementwise`]); this file records them in the graph and launches them. Each
//! op saves only the value its backward reads (its input or its output, [`Needs`]).

use std::sync::OnceLock;

use crate::autograd::record;
use crate::backend::cpu::{map_float, map_float2, CpuData, Float};
use crate::backend::gpu::params::{params, Params};
use crate::backend::gpu::{slot, Kernel, ShaderFile};
use crate::device::Device;
use crate::error::{arg_err, Result};
use crate::ops::{gpu_alloc, groups_1d, kernel, shader_with, split};
use crate::tensor::{check_float, check_pair, Tensor};

pub(crate) use crate::backend::elementwise::sigmoid;
pub use crate::backend::elementwise::{Needs, UnaryOp};

pub(crate) const FILE: ShaderFile = shader_with(
    "unary",
    include_str!("../../shaders/unary.wgsl"),
    crate::backend::gpu::Generated::Fixed(crate::backend::elementwise::wgsl_with_kernels),
)
.with_params(&[&UnaryParams::INFO, &PreluParams::INFO]);

params! {
    /// The parameters of the elementwise table's unary kernels.
    pub(crate) struct UnaryParams as up {
        /// Elements.
        n: u32,
        /// The row's scalars.
        a: f32,
        /// See `a`.
        b: f32,
    }

    /// The parameters of the parametric ReLU's kernels.
    pub(crate) struct PreluParams as pp {
        /// Elements.
        n: u32,
        /// Channels (the input's dimension 1, or 1).
        channels: u32,
        /// Elements per channel plane.
        plane: u32,
        /// Slopes: 1 or `channels`.
        slopes: u32,
    }
}

impl UnaryOp {
    /// The op's generated forward and backward kernels.
    fn kernels(self) -> (&'static Kernel, &'static Kernel) {
        static KERNELS: OnceLock<Vec<(Kernel, Kernel)>> = OnceLock::new();
        let all = KERNELS.get_or_init(|| {
            let make = |entry: String, slots: &'static [u32]| Kernel {
                file: &FILE,
                entry: Box::leak(entry.into_boxed_str()),
                slots,
                extra: &[],
                overrides: &[],
                loops: false,
                params: UnaryParams::INFO.name,
            };
            UnaryOp::ROWS
                .iter()
                .map(|op| {
                    (
                        make(format!("{}_fwd", op.name()), &[slot::X0, slot::Y0]),
                        make(
                            format!("{}_bwd", op.name()),
                            &[slot::X0, slot::X1, slot::Y0],
                        ),
                    )
                })
                .collect()
        });
        let (f, b) = &all[self.code() as usize - 1];
        (f, b)
    }

    fn params(self, n: usize) -> UnaryParams {
        let [a, b] = self.scalars();
        UnaryParams {
            n: n as u32,
            a: a as f32,
            b: b as f32,
        }
    }
}

/// Applies `op` to every element, recording the backward.
pub fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    check_float(op.name(), x)?;
    let y = unary_forward(x, op)?;
    let saved = match op.needs() {
        Needs::Output => Some(y.detach()),
        Needs::Input => Some(x.detach()),
        // A constant derivative keeps nothing alive; the gradient stands in (never read).
        Needs::Nothing => None,
    };
    Ok(record(y, op.name(), &[x], move |g| {
        Ok(vec![Some(unary_backward(
            op,
            saved.as_ref().unwrap_or(g),
            g,
        )?)])
    }))
}

/// `op(x)` without recording a backward.
pub(crate) fn unary_forward(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let n = x.numel();
    match x.device() {
        Device::Cpu => {
            let out = map_float!(&*x.cpu_data(), |v: T| op.forward_vec(v));
            Ok(Tensor::from_cpu(out, x.shape().to_vec()))
        }
        Device::Gpu(g) => {
            if let Some(mut o) = split::elementwise(&[x], x.shape(), 1, x.dtype(), |p| {
                Ok(vec![unary_forward(&p[0], op)?])
            })? {
                return Ok(o.remove(0));
            }
            let out = gpu_alloc(g, n)?;
            g.launch(
                op.kernels().0,
                &op.params(n),
                &[x.gpu_buf(), &out],
                groups_1d(n),
            );
            Ok(Tensor::from_gpu(out, x.shape().to_vec(), x.dtype()))
        }
    }
}

/// `dL/dx` of `op` from the saved value `s` (the input or the output, as
/// [`UnaryOp::needs`] says; any tensor of the shape for [`Needs::Nothing`]) and the
/// output gradient `g`.
pub(crate) fn unary_backward(op: UnaryOp, s: &Tensor, g: &Tensor) -> Result<Tensor> {
    let n = s.numel();
    match s.device() {
        Device::Cpu => {
            let out = map_float2!(&*g.cpu_data(), &*s.cpu_data(), |gv, sv: T| {
                op.backward_vec(gv, sv)
            });
            Ok(Tensor::from_cpu(out, s.shape().to_vec()))
        }
        Device::Gpu(ctx) => {
            if let Some(mut o) = split::elementwise(&[s, g], s.shape(), 1, s.dtype(), |p| {
                Ok(vec![unary_backward(op, &p[0], &p[1])?])
            })? {
                return Ok(o.remove(0));
            }
            let out = gpu_alloc(ctx, n)?;
            ctx.launch(
                op.kernels().1,
                &op.params(n),
                &[s.gpu_buf(), g.gpu_buf(), &out],
                groups_1d(n),
            );
            Ok(Tensor::from_gpu(out, s.shape().to_vec(), s.dtype()))
        }
    }
}

const PRELU_FWD: &Kernel = kernel!(FILE, "prelu_fwd", [X0, X1, Y0], params = PreluParams);
const PRELU_BWD: &Kernel = kernel!(
    FILE,
    "prelu_bwd",
    [X0, X1, X2, Y0, Y1],
    params = PreluParams
);

/// The kernels of this file, for the entry-point test: each row's, and prelu's.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    let mut all = vec![PRELU_FWD, PRELU_BWD];
    for op in UnaryOp::ROWS {
        let (f, b) = op.kernels();
        all.extend([f, b]);
    }
    all
}

/// Parametric ReLU: `x` for `x > 0`, else `weight[c] * x` where `c` indexes dimension 1
/// of `x` (PyTorch's layout); a one-element `weight` is shared by all channels.
pub fn prelu(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    check_pair("prelu", x, weight)?;
    let channels = if x.rank() >= 2 { x.shape()[1] } else { 1 };
    let w = weight.numel();
    if weight.rank() > 1 || (w != 1 && w != channels) {
        return arg_err(
            "prelu",
            format!(
                "the slope must have 1 or {channels} (channel) elements for input {:?}, got {:?}",
                x.shape(),
                weight.shape()
            ),
        );
    }
    let plane: usize = if x.rank() >= 2 {
        x.shape()[2..].iter().product()
    } else {
        1
    };
    let params = PreluParams {
        n: x.numel() as u32,
        channels: channels as u32,
        plane: plane as u32,
        slopes: w as u32,
    };
    let channel = move |i: usize| if w == 1 { 0 } else { (i / plane) % channels };
    let y = match x.device() {
        Device::Cpu => {
            let out = map_float2!(&*x.cpu_data(), &*weight.cpu_data(), |xv, wv: T| {
                xv.iter()
                    .enumerate()
                    .map(|(i, &a)| if a > T::zero() { a } else { wv[channel(i)] * a })
                    .collect()
            });
            Tensor::from_cpu(out, x.shape().to_vec())
        }
        Device::Gpu(g) => {
            let out = gpu_alloc(g, x.numel())?;
            g.launch(
                PRELU_FWD,
                &params,
                &[x.gpu_buf(), weight.gpu_buf(), &out],
                groups_1d(x.numel()),
            );
            Tensor::from_gpu(out, x.shape().to_vec(), x.dtype())
        }
    };
    let (xs, ws) = (x.detach(), weight.detach());
    Ok(record(y, "prelu", &[x, weight], move |g| {
        let (dx, dw_full) = match xs.device() {
            Device::Cpu => {
                let xd = xs.cpu_data();
                let wd = ws.cpu_data();
                let gd = g.cpu_data();
                let (dx, dw): (CpuData, CpuData) = match (&*xd, &*wd, &*gd) {
                    (CpuData::F32(a), CpuData::F32(b), CpuData::F32(c)) => {
                        let (p, q) = prelu_back(a, b, c, channel);
                        (CpuData::F32(p), CpuData::F32(q))
                    }
                    (CpuData::F64(a), CpuData::F64(b), CpuData::F64(c)) => {
                        let (p, q) = prelu_back(a, b, c, channel);
                        (CpuData::F64(p), CpuData::F64(q))
                    }
                    _ => unreachable!("prelu dtypes checked"),
                };
                (
                    Tensor::from_cpu(dx, xs.shape().to_vec()),
                    Tensor::from_cpu(dw, xs.shape().to_vec()),
                )
            }
            Device::Gpu(ctx) => {
                let n = xs.numel();
                let (dx, dw) = (gpu_alloc(ctx, n)?, gpu_alloc(ctx, n)?);
                ctx.launch(
                    PRELU_BWD,
                    &params,
                    &[xs.gpu_buf(), ws.gpu_buf(), g.gpu_buf(), &dx, &dw],
                    groups_1d(n),
                );
                (
                    Tensor::from_gpu(dx, xs.shape().to_vec(), xs.dtype()),
                    Tensor::from_gpu(dw, xs.shape().to_vec(), xs.dtype()),
                )
            }
        };
        // Sum the per-element slope gradients over everything but the channel.
        let dw = if w == 1 {
            dw_full.sum()?.reshape(ws.shape())?
        } else {
            let n = xs.numel() / (channels * plane);
            dw_full
                .reshape(&[n, channels, plane])?
                .sum_dim(&[0, 2], false)?
                .reshape(ws.shape())?
        };
        Ok(vec![Some(dx), Some(dw)])
    }))
}

fn prelu_back<T: Float>(
    x: &[T],
    w: &[T],
    g: &[T],
    channel: impl Fn(usize) -> usize,
) -> (Vec<T>, Vec<T>) {
    x.iter()
        .zip(g)
        .enumerate()
        .map(|(i, (&a, &gi))| {
            if a > T::zero() {
                (gi, T::zero())
            } else {
                (w[channel(i)] * gi, gi * a)
            }
        })
        .unzip()
}

impl Tensor {
    /// Applies a [`UnaryOp`].
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        unary(self, op)
    }
    /// -x
    pub fn neg(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Neg)
    }
    /// e^x
    pub fn exp(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Log)
    }
    /// Square root.
    pub fn sqrt(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sqrt)
    }
    /// |x| (gradient 0 at 0).
    pub fn abs(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Abs)
    }
    /// The logistic sigmoid; its gradient is `sigma (1 - sigma)`, from the saved output.
    pub fn sigmoid(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sigmoid)
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Tanh)
    }
    /// max(x, 0) (gradient 0 at 0; NaN stays NaN and passes the gradient, as PyTorch).
    pub fn relu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Relu)
    }
    /// `x` for `x > 0`, else `slope * x`.
    pub fn leaky_relu(&self, slope: f32) -> Result<Tensor> {
        unary(
            self,
            UnaryOp::LeakyRelu {
                slope: slope as f64,
            },
        )
    }
    /// PyTorch's `softplus(x, beta, threshold)`: `ln(1 + e^(beta x)) / beta`, and `x`
    /// where `beta x > threshold`. PyTorch's defaults are `beta = 1`, `threshold = 20`.
    pub fn softplus(&self, beta: f32, threshold: f32) -> Result<Tensor> {
        if beta <= 0.0 {
            return arg_err("softplus", format!("beta must be positive, got {beta}"));
        }
        unary(
            self,
            UnaryOp::Softplus {
                beta: beta as f64,
                threshold: threshold as f64,
            },
        )
    }
    /// GELU, exact: `x Phi(x)` with `Phi` the standard normal CDF (PyTorch's
    /// `gelu(x)`, `approximate='none'`). Accurate for negative inputs too (computed
    /// through `erfc`, with no cancellation).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let x = Tensor::from_vec(vec![-1.0f32, 0.0, 1.0], &[3], &Device::cpu())?;
    /// let y = x.gelu()?.to_vec::<f32>()?;
    /// assert!((y[0] + 0.158_655_25).abs() < 1e-6 && y[1] == 0.0);
    /// # Ok(()) }
    /// ```
    pub fn gelu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Gelu)
    }
    /// GELU's tanh approximation, `x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2`
    /// (PyTorch's `gelu(x, approximate='tanh')`).
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        unary(self, UnaryOp::GeluTanh)
    }
    /// SiLU (swish), `x sigmoid(x)`.
    pub fn silu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Silu)
    }
    /// Mish, `x tanh(softplus(x))`.
    pub fn mish(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Mish)
    }
    /// Parametric ReLU with a (trainable) slope per channel (dimension 1) or one slope.
    pub fn prelu(&self, weight: &Tensor) -> Result<Tensor> {
        prelu(self, weight)
    }
    /// `scale * x + shift` for scalars.
    pub fn affine(&self, scale: f32, shift: f32) -> Result<Tensor> {
        unary(
            self,
            UnaryOp::Affine {
                scale: scale as f64,
                shift: shift as f64,
            },
        )
    }
    /// Multiplies by a scalar.
    pub fn mul_scalar(&self, s: f32) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    /// Adds a scalar.
    pub fn add_scalar(&self, s: f32) -> Result<Tensor> {
        self.affine(1.0, s)
    }
}
