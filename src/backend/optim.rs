//! The optimizers' hyper-parameters, shared by both backends (the op layer,
//! `ops::optim`, validates them and re-exports them).

/// Hyper-parameters of one SGD step (PyTorch's meaning).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: no buffer).
    pub momentum: f64,
    /// Dampening of the gradient in the momentum buffer.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Hyper-parameters of one Adam/AdamW step.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay: an L2 penalty (Adam) or decoupled shrinkage (AdamW).
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
}

/// The bias corrections `1 - beta1^t`, `1 - beta2^t` (in f64, rounded once).
pub(crate) fn bias_corrections(hp: &AdamStep, t: u64) -> (f32, f32) {
    let t = t.min(i32::MAX as u64) as i32;
    (
        (1.0 - hp.beta1.powi(t)) as f32,
        (1.0 - hp.beta2.powi(t)) as f32,
    )
}

/// Hyper-parameters of one Adagrad step (`torch.optim.Adagrad`).
#[derive(Clone, Copy, Debug)]
pub struct AdagradStep {
    /// Learning rate.
    pub lr: f64,
    /// Learning-rate decay: step `t` uses `lr / (1 + (t - 1) lr_decay)`.
    pub lr_decay: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// The value the sums of squares start from (read when the state is made).
    pub initial_accumulator_value: f64,
    /// Added to the denominator, after the square root.
    pub eps: f64,
}

/// Adagrad's learning rate at step `t` (from 1): `lr / (1 + (t - 1) lr_decay)`, in f64
/// rounded once.
pub(crate) fn adagrad_clr(hp: &AdagradStep, t: u64) -> f32 {
    (hp.lr / (1.0 + (t.saturating_sub(1)) as f64 * hp.lr_decay)) as f32
}

/// Hyper-parameters of one RMSprop step (`torch.optim.RMSprop`).
#[derive(Clone, Copy, Debug)]
pub struct RmspropStep {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the running averages.
    pub alpha: f64,
    /// Added to the denominator, after the square root.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor (0: no buffer).
    pub momentum: f64,
    /// Centered: the gradient's variance (with its running mean) instead of its second
    /// moment under the square root.
    pub centered: bool,
}

/// Hyper-parameters of one Adadelta step (`torch.optim.Adadelta`).
#[derive(Clone, Copy, Debug)]
pub struct AdadeltaStep {
    /// Learning rate (scales the computed update).
    pub lr: f64,
    /// Decay of the running averages.
    pub rho: f64,
    /// Added inside both square roots.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}
