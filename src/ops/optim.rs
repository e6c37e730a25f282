//! Fused optimizer updates: each parameter's step is one kernel that reads the gradient
//! and rewrites the parameter and the optimizer's state in place (no readback, no
//! allocation). The CPU reference runs the same arithmetic in `f32`, so both devices
//! follow the same trajectory up to rounding.

use crate::backend::cpu::CpuData;
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::backend::Storage;
use crate::error::{shape_err, Result};
use crate::ops::{groups_1d, kernel, shader};
use crate::tensor::{check_pair, Tensor};

pub(crate) const FILE: ShaderFile = shader("optim", include_str!("../../shaders/optim.wgsl"));
const SGD_STEP: &Kernel = kernel!(FILE, "sgd_step", [X0, Y0, Y1]);
const ADAM_STEP: &Kernel = kernel!(FILE, "adam_step", [X0, Y0, Y1, Y2]);

/// Hyper-parameters of one SGD step (PyTorch's meaning).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 disables the buffer).
    pub momentum: f32,
    /// Dampening of the gradient in the momentum buffer.
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// The first step initialises the buffer with the gradient itself.
    pub first: bool,
}

/// Hyper-parameters of one Adam/AdamW step.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// Weight decay: an L2 penalty (Adam) or decoupled shrinkage (AdamW).
    pub weight_decay: f32,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
    /// The step number, from 1 (for the bias corrections).
    pub t: u64,
}

fn check(op: &'static str, param: &Tensor, others: &[&Tensor]) -> Result<()> {
    for o in others {
        check_pair(op, param, o)?;
        if o.shape() != param.shape() {
            return shape_err(
                op,
                format!(
                    "{:?} does not match the parameter {:?}",
                    o.shape(),
                    param.shape()
                ),
            );
        }
    }
    Ok(())
}

fn f32_mut(s: &Storage) -> std::sync::RwLockWriteGuard<'_, CpuData> {
    match s {
        Storage::Cpu(c) => c.write(),
        Storage::Gpu(_) => unreachable!("CPU path"),
    }
}

/// `param <- SGD(param, grad, buf)` in place.
pub fn sgd_update(param: &Tensor, grad: &Tensor, buf: &Tensor, hp: SgdStep) -> Result<()> {
    check("sgd_step", param, &[grad, buf])?;
    match param.device() {
        crate::Device::Cpu => {
            let g = grad.cpu_data();
            let CpuData::F32(g) = &*g else {
                return shape_err("sgd_step", "optimizers update f32 parameters");
            };
            let mut p = f32_mut(param.storage());
            let mut b = f32_mut(buf.storage());
            let (CpuData::F32(p), CpuData::F32(b)) = (&mut *p, &mut *b) else {
                return shape_err("sgd_step", "optimizers update f32 parameters");
            };
            for i in 0..p.len() {
                let mut gi = g[i] + hp.weight_decay * p[i];
                if hp.momentum != 0.0 {
                    let bi = if hp.first {
                        gi
                    } else {
                        hp.momentum * b[i] + (1.0 - hp.dampening) * gi
                    };
                    b[i] = bi;
                    gi = if hp.nesterov {
                        gi + hp.momentum * bi
                    } else {
                        bi
                    };
                }
                p[i] -= hp.lr * gi;
            }
        }
        crate::Device::Gpu(ctx) => {
            let n = param.numel();
            let params = [
                n as u32,
                hp.lr.to_bits(),
                hp.momentum.to_bits(),
                hp.dampening.to_bits(),
                hp.weight_decay.to_bits(),
                hp.nesterov as u32,
                hp.first as u32,
            ];
            ctx.launch(
                SGD_STEP,
                &params,
                &[grad.gpu_buf(), param.gpu_buf(), buf.gpu_buf()],
                groups_1d(n),
            );
        }
    }
    Ok(())
}

/// `param <- Adam(param, grad, m, v)` in place.
pub fn adam_update(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    hp: AdamStep,
) -> Result<()> {
    check("adam_step", param, &[grad, m, v])?;
    let bc1 = 1.0 - (hp.beta1 as f64).powi(hp.t as i32);
    let bc2 = 1.0 - (hp.beta2 as f64).powi(hp.t as i32);
    match param.device() {
        crate::Device::Cpu => {
            let g = grad.cpu_data();
            let CpuData::F32(g) = &*g else {
                return shape_err("adam_step", "optimizers update f32 parameters");
            };
            let mut p = f32_mut(param.storage());
            let mut mm = f32_mut(m.storage());
            let mut vv = f32_mut(v.storage());
            let (CpuData::F32(p), CpuData::F32(mm), CpuData::F32(vv)) =
                (&mut *p, &mut *mm, &mut *vv)
            else {
                return shape_err("adam_step", "optimizers update f32 parameters");
            };
            let (bc1, bc2) = (bc1 as f32, bc2 as f32);
            for i in 0..p.len() {
                let mut gi = g[i];
                let mut pi = p[i];
                if hp.decoupled {
                    pi *= 1.0 - hp.lr * hp.weight_decay;
                } else {
                    gi += hp.weight_decay * pi;
                }
                mm[i] = hp.beta1 * mm[i] + (1.0 - hp.beta1) * gi;
                vv[i] = hp.beta2 * vv[i] + (1.0 - hp.beta2) * gi * gi;
                let m_hat = mm[i] / bc1;
                let v_hat = vv[i] / bc2;
                p[i] = pi - hp.lr * m_hat / (v_hat.sqrt() + hp.eps);
            }
        }
        crate::Device::Gpu(ctx) => {
            let n = param.numel();
            let params = [
                n as u32,
                hp.lr.to_bits(),
                hp.beta1.to_bits(),
                hp.beta2.to_bits(),
                hp.eps.to_bits(),
                hp.weight_decay.to_bits(),
                hp.decoupled as u32,
                (bc1 as f32).to_bits(),
                (bc2 as f32).to_bits(),
            ];
            ctx.launch(
                ADAM_STEP,
                &params,
                &[grad.gpu_buf(), param.gpu_buf(), m.gpu_buf(), v.gpu_buf()],
                groups_1d(n),
            );
        }
    }
    Ok(())
}
