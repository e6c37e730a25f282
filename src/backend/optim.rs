//! The optimizers' hyper-parameters, shared by both backends (the op layer,
//! `ops::optim`, validates them and re-exports them), the slots the backends update and
//! their [`Optim`] trait.

use super::Storage;
use crate::error::Result;

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

/// One parameter of an SGD step: `f32` storages of `numel` (> 0) elements each, every
/// one distinct, updated in place.
#[derive(Clone, Copy)]
pub(crate) struct SgdSlot<'a> {
    /// The parameter.
    pub param: &'a Storage,
    /// Its gradient (read only).
    pub grad: &'a Storage,
    /// Its momentum buffer: given exactly when the step has a momentum.
    pub buf: Option<&'a Storage>,
    /// True on the buffer's first step: it starts as the gradient itself.
    pub first: bool,
    /// Elements.
    pub numel: usize,
}

/// One parameter of an Adam step: `f32` storages of `numel` (> 0) elements each, every
/// one distinct, updated in place.
#[derive(Clone, Copy)]
pub(crate) struct AdamSlot<'a> {
    /// The parameter.
    pub param: &'a Storage,
    /// Its gradient (read only).
    pub grad: &'a Storage,
    /// First moment.
    pub m: &'a Storage,
    /// Second moment.
    pub v: &'a Storage,
    /// This parameter's step number, from 1.
    pub t: u64,
    /// Elements.
    pub numel: usize,
}

/// One parameter of an Adagrad step: `f32` storages of `numel` (> 0) elements each,
/// every one distinct, updated in place.
#[derive(Clone, Copy)]
pub(crate) struct AdagradSlot<'a> {
    /// The parameter.
    pub param: &'a Storage,
    /// Its gradient (read only).
    pub grad: &'a Storage,
    /// The sum of squared gradients.
    pub sum: &'a Storage,
    /// This parameter's step number, from 1.
    pub t: u64,
    /// Elements.
    pub numel: usize,
}

/// One parameter of an RMSprop step: `f32` storages of `numel` (> 0) elements each,
/// every one distinct, updated in place.
#[derive(Clone, Copy)]
pub(crate) struct RmspropSlot<'a> {
    /// The parameter.
    pub param: &'a Storage,
    /// Its gradient (read only).
    pub grad: &'a Storage,
    /// The running average of squared gradients.
    pub square_avg: &'a Storage,
    /// The momentum buffer: given exactly when the step has a momentum.
    pub momentum_buffer: Option<&'a Storage>,
    /// The running average of gradients: given exactly when the step is centered.
    pub grad_avg: Option<&'a Storage>,
    /// Elements.
    pub numel: usize,
}

/// One parameter of an Adadelta step: `f32` storages of `numel` (> 0) elements each,
/// every one distinct, updated in place.
#[derive(Clone, Copy)]
pub(crate) struct AdadeltaSlot<'a> {
    /// The parameter.
    pub param: &'a Storage,
    /// Its gradient (read only).
    pub grad: &'a Storage,
    /// The running average of squared gradients.
    pub square_avg: &'a Storage,
    /// The running average of squared updates.
    pub acc_delta: &'a Storage,
    /// Elements.
    pub numel: usize,
}

/// One gradient of a clipping: its storage and element count.
#[derive(Clone, Copy)]
pub(crate) struct Grad<'a> {
    /// The gradient, scaled in place.
    pub storage: &'a Storage,
    /// Elements (possibly 0).
    pub numel: usize,
}

/// The optimizers' fused in-place updates and gradient clipping over whole lists of
/// one device's tensors (checked by the op layer: `f32` parameters, every storage of a
/// slot distinct). The CPU updates one parameter after another in list order; the GPU
/// updates them all in one multi-tensor dispatch per group (more only past its binding
/// limits), everything planned before anything is launched.
pub(crate) trait Optim {
    /// One SGD step of every slot (SGD's groups: the buffers' first step or not).
    fn sgd_step(&self, slots: &[SgdSlot], hp: &SgdStep, guard: Option<&Guard>) -> Result<()>;
    /// One Adam (or AdamW) step of every slot (groups: the step number).
    fn adam_step(&self, slots: &[AdamSlot], hp: &AdamStep, guard: Option<&Guard>) -> Result<()>;
    /// One Adagrad step of every slot (groups: the step number).
    fn adagrad_step(
        &self,
        slots: &[AdagradSlot],
        hp: &AdagradStep,
        guard: Option<&Guard>,
    ) -> Result<()>;
    /// One RMSprop step of every slot (one group).
    fn rmsprop_step(
        &self,
        slots: &[RmspropSlot],
        hp: &RmspropStep,
        guard: Option<&Guard>,
    ) -> Result<()>;
    /// One Adadelta step of every slot (one group).
    fn adadelta_step(
        &self,
        slots: &[AdadeltaSlot],
        hp: &AdadeltaStep,
        guard: Option<&Guard>,
    ) -> Result<()>;
    /// After a guarded step: adds one to `guard.steps[guard.all[j]]` for every `j`
    /// unless `guard.found` flags a non-finite gradient.
    fn count_steps(&self, guard: &Guard) -> Result<()>;
    /// Scales the `distinct` gradients in place so that the global L2 norm of `grads`
    /// is at most `max_norm` (`torch.nn.utils.clip_grad_norm_`'s formula) and returns
    /// that norm before clipping (one value of the gradients' type).
    fn clip_grad_norm(&self, grads: &[Grad], distinct: &[Grad], max_norm: f64) -> Result<Storage>;
}

/// What makes a step guarded (PyTorch's "capturable" steps under a gradient scaler):
/// the device skips the whole step when the scaler's state flags a non-finite gradient,
/// and reads each parameter's step number from `steps` instead of the slots' `t`/`first`
/// (which the host no longer knows), so that nothing is read back. The counts are
/// advanced afterwards by [`Optim::count_steps`]. All `f32` storages on the slots'
/// device.
#[derive(Clone, Copy)]
pub(crate) struct Guard<'a> {
    /// The scaler's state `[scale, growth_tracker, found_inf]`: skip when
    /// `found_inf != 0`.
    pub found: &'a Storage,
    /// The optimizer's step counts, one per parameter (exact integers below 2^24).
    pub steps: &'a Storage,
    /// Slot `k`'s parameter index into `steps`, for the slots of the step (as f32).
    pub live: &'a Storage,
    /// Every stepped parameter's index (those without elements too), for the count.
    pub all: &'a Storage,
    /// Entries of `all`.
    pub n_all: usize,
}
