//! The optimizers' hyper-parameters, shared by both backends (the op layer,
//! `ops::optim`, validates them and re-exports them).

/// Hyper-parameters of one SGD step (PyTorch's meaning).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: no buffer).
    pub momentum: f32,
    /// Dampening of the gradient in the momentum buffer.
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
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
}

/// The bias corrections `1 - beta1^t`, `1 - beta2^t` (in f64, rounded once).
pub(crate) fn bias_corrections(hp: &AdamStep, t: u64) -> (f32, f32) {
    let t = t.min(i32::MAX as u64) as i32;
    (
        (1.0 - (hp.beta1 as f64).powi(t)) as f32,
        (1.0 - (hp.beta2 as f64).powi(t)) as f32,
    )
}
