//! Elementwise unary ops: math (`neg`, `exp`, `log`, `sqrt`, `abs`, scalar `affine`) and
//! the lecture's activations (`sigmoid`, `tanh`, `relu`, `softplus`, `leaky_relu`,
//! `prelu` with a trainable slope; `noisy_relu` lives in `random`). Forward and backward
//! math for the CPU are side by side below; the WGSL twins are in `shaders/unary.wgsl`.
//! Each op saves its input and output; the backward kernel reads the one it needs.

use crate::autograd::record;
use crate::backend::cpu::pool::CollectPooled;
use crate::backend::cpu::{map_float, map_float2, map_float3, CpuData, Float};
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::device::Device;
use crate::error::{arg_err, Result};
use crate::ops::{gpu_alloc, groups_1d, kernel, shader, split};
use crate::tensor::{check_float, check_pair, Tensor};

pub(crate) const FILE: ShaderFile = shader("unary", include_str!("../../shaders/unary.wgsl"));

/// A unary op and its scalar parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// -x
    Neg,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// sqrt x
    Sqrt,
    /// |x|
    Abs,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh x
    Tanh,
    /// max(x, 0), NaN kept (as PyTorch)
    Relu,
    /// x for x > 0, else slope * x
    LeakyRelu {
        /// The negative slope.
        slope: f64,
    },
    /// ln(1 + e^(beta x)) / beta, linear above `threshold` (PyTorch's Softplus).
    Softplus {
        /// Sharpness.
        beta: f64,
        /// Where the function switches to the identity.
        threshold: f64,
    },
    /// scale * x + shift
    Affine {
        /// Multiplier.
        scale: f64,
        /// Offset.
        shift: f64,
    },
}

impl UnaryOp {
    fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Relu => "relu",
            UnaryOp::LeakyRelu { .. } => "leaky_relu",
            UnaryOp::Softplus { .. } => "softplus",
            UnaryOp::Affine { .. } => "affine",
        }
    }

    fn scalars(self) -> [f64; 2] {
        match self {
            UnaryOp::LeakyRelu { slope } => [slope, 0.0],
            UnaryOp::Softplus { beta, threshold } => [beta, threshold],
            UnaryOp::Affine { scale, shift } => [scale, shift],
            _ => [0.0, 0.0],
        }
    }

    /// Forward math on the CPU.
    fn forward<T: Float>(self, x: T) -> T {
        let z = T::zero();
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Relu => x.relu(),
            UnaryOp::LeakyRelu { slope } => {
                if x > z {
                    x
                } else {
                    T::from_f64(slope) * x
                }
            }
            UnaryOp::Softplus { beta, threshold } => {
                let zb = T::from_f64(beta) * x;
                if zb > T::from_f64(threshold) {
                    x
                } else {
                    // max(z, 0) + log1p(e^-|z|): no overflow, and accurate where the
                    // result is tiny (log(1 + e^z) rounds to 0 below z = -16.6 in f32).
                    (zb.relu() + (-zb.abs()).exp().ln_1p()) / T::from_f64(beta)
                }
            }
            UnaryOp::Affine { scale, shift } => T::from_f64(scale) * x + T::from_f64(shift),
        }
    }

    /// Backward math on the CPU: dL/dx from input `x`, output `y`, output gradient `g`.
    fn backward<T: Float>(self, x: T, y: T, g: T) -> T {
        let z = T::zero();
        let one = T::one();
        match self {
            UnaryOp::Neg => -g,
            UnaryOp::Exp => g * y,
            UnaryOp::Log => g / x,
            UnaryOp::Sqrt => g / (T::from_f64(2.0) * y),
            UnaryOp::Abs => {
                if x > z {
                    g
                } else if x < z {
                    -g
                } else {
                    z
                }
            }
            UnaryOp::Sigmoid => g * y * (one - y),
            UnaryOp::Tanh => g * (one - y * y),
            // PyTorch's threshold_backward: 0 where x <= 0, so a NaN input passes g.
            UnaryOp::Relu => {
                if x <= z {
                    z
                } else {
                    g
                }
            }
            UnaryOp::LeakyRelu { slope } => {
                if x > z {
                    g
                } else {
                    T::from_f64(slope) * g
                }
            }
            UnaryOp::Softplus { beta, threshold } => {
                let zb = T::from_f64(beta) * x;
                if zb > T::from_f64(threshold) {
                    g
                } else {
                    g * sigmoid(zb)
                }
            }
            UnaryOp::Affine { scale, .. } => T::from_f64(scale) * g,
        }
    }

    fn kernels(self) -> (&'static Kernel, &'static Kernel) {
        macro_rules! pair {
            ($f:literal, $b:literal) => {
                (
                    kernel!(FILE, $f, [X0, Y0]),
                    kernel!(FILE, $b, [X0, X1, X2, Y0]),
                )
            };
        }
        match self {
            UnaryOp::Neg => pair!("neg_fwd", "neg_bwd"),
            UnaryOp::Exp => pair!("exp_fwd", "exp_bwd"),
            UnaryOp::Log => pair!("log_fwd", "log_bwd"),
            UnaryOp::Sqrt => pair!("sqrt_fwd", "sqrt_bwd"),
            UnaryOp::Abs => pair!("abs_fwd", "abs_bwd"),
            UnaryOp::Sigmoid => pair!("sigmoid_fwd", "sigmoid_bwd"),
            UnaryOp::Tanh => pair!("tanh_fwd", "tanh_bwd"),
            UnaryOp::Relu => pair!("relu_fwd", "relu_bwd"),
            UnaryOp::LeakyRelu { .. } => pair!("leaky_relu_fwd", "leaky_relu_bwd"),
            UnaryOp::Softplus { .. } => pair!("softplus_fwd", "softplus_bwd"),
            UnaryOp::Affine { .. } => pair!("affine_fwd", "affine_bwd"),
        }
    }

    fn params(self, n: usize) -> [u32; 3] {
        let [a, b] = self.scalars();
        [n as u32, (a as f32).to_bits(), (b as f32).to_bits()]
    }
}

pub(crate) fn sigmoid<T: Float>(x: T) -> T {
    let one = T::one();
    if x >= T::zero() {
        one / (one + (-x).exp())
    } else {
        let e = x.exp();
        e / (one + e)
    }
}

/// Applies `op` to every element, recording the backward.
pub fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    check_float(op.name(), x)?;
    let y = unary_forward(x, op)?;
    let (xs, ys) = (x.detach(), y.detach());
    Ok(record(y, op.name(), &[x], move |g| {
        Ok(vec![Some(unary_backward(op, &xs, &ys, g)?)])
    }))
}

fn unary_forward(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let n = x.numel();
    match x.device() {
        Device::Cpu => {
            // The common activations get their own loops: the op's match is not hoisted out
            // of a generic one.
            let out = map_float!(&*x.cpu_data(), |v: T| match op {
                UnaryOp::Relu => v.iter().map(|&a| a.relu()).collect_pooled(),
                UnaryOp::Tanh => v.iter().map(|&a| Float::tanh(a)).collect_pooled(),
                UnaryOp::Sigmoid => v.iter().map(|&a| sigmoid(a)).collect_pooled(),
                _ => v.iter().map(|&a| op.forward::<T>(a)).collect_pooled(),
            });
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

pub(crate) fn unary_backward(op: UnaryOp, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    let n = x.numel();
    match x.device() {
        Device::Cpu => {
            let out = map_float3!(
                &*x.cpu_data(),
                &*y.cpu_data(),
                &*g.cpu_data(),
                |xv, yv, gv: T| match op {
                    UnaryOp::Relu => xv
                        .iter()
                        .zip(gv.iter())
                        .map(|(&a, &g)| if a <= T::zero() { T::zero() } else { g })
                        .collect_pooled(),
                    _ => (0..n)
                        .map(|i| op.backward::<T>(xv[i], yv[i], gv[i]))
                        .collect_pooled(),
                }
            );
            Ok(Tensor::from_cpu(out, x.shape().to_vec()))
        }
        Device::Gpu(ctx) => {
            if let Some(mut o) = split::elementwise(&[x, y, g], x.shape(), 1, x.dtype(), |p| {
                Ok(vec![unary_backward(op, &p[0], &p[1], &p[2])?])
            })? {
                return Ok(o.remove(0));
            }
            let out = gpu_alloc(ctx, n)?;
            ctx.launch(
                op.kernels().1,
                &op.params(n),
                &[x.gpu_buf(), y.gpu_buf(), g.gpu_buf(), &out],
                groups_1d(n),
            );
            Ok(Tensor::from_gpu(out, x.shape().to_vec(), x.dtype()))
        }
    }
}

const PRELU_FWD: &Kernel = kernel!(FILE, "prelu_fwd", [X0, X1, Y0]);
const PRELU_BWD: &Kernel = kernel!(FILE, "prelu_bwd", [X0, X1, X2, Y0, Y1]);

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
    let params = [x.numel() as u32, channels as u32, plane as u32, w as u32];
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
