//! Learning-rate schedules, stepped once per epoch like PyTorch's.

use super::Optimizer;
use crate::error::{arg_err, Result};

/// Sets an optimizer's learning rate from the epoch number.
pub trait LrScheduler {
    /// The learning rate for `epoch` (0-based) given the initial rate.
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64;
}

/// Multiplies the rate by `gamma` every `step_size` epochs.
#[derive(Clone, Copy, Debug)]
pub struct StepLR {
    /// Epochs between decays.
    pub step_size: usize,
    /// The decay factor.
    pub gamma: f64,
}

impl LrScheduler for StepLR {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }
}

/// Cosine annealing from the initial rate to `eta_min` over `t_max` epochs, with
/// PyTorch's closed form `eta_min + (base - eta_min) (1 + cos(pi epoch / t_max)) / 2`.
/// Past `t_max` the cosine goes on (as in PyTorch, there is no clamp): the rate climbs
/// back to the initial rate at `2 t_max`, and so on.
#[derive(Clone, Copy, Debug)]
pub struct CosineAnnealingLR {
    /// Epochs of one half cosine.
    pub t_max: usize,
    /// The final rate.
    pub eta_min: f64,
}

impl LrScheduler for CosineAnnealingLR {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        let t = epoch as f64 / self.t_max.max(1) as f64;
        self.eta_min + (base_lr - self.eta_min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
    }
}

/// Applies a schedule to an optimizer: call [`Scheduled::step`] once per epoch.
pub struct Scheduled<S: LrScheduler> {
    schedule: S,
    base_lr: f64,
    epoch: usize,
}

impl<S: LrScheduler> Scheduled<S> {
    /// Starts the schedule from the optimizer's current rate.
    pub fn new(schedule: S, opt: &dyn Optimizer) -> Self {
        Scheduled {
            schedule,
            base_lr: opt.lr(),
            epoch: 0,
        }
    }
    /// Advances one epoch and sets the optimizer's rate.
    pub fn step(&mut self, opt: &mut dyn Optimizer) {
        self.epoch += 1;
        opt.set_lr(self.schedule.lr_at(self.base_lr, self.epoch));
    }
    /// Where the schedule stands (PyTorch's `base_lrs` and `last_epoch`).
    pub fn state_dict(&self) -> SchedulerState {
        SchedulerState {
            base_lr: self.base_lr,
            last_epoch: self.epoch as u64,
        }
    }
    /// Restores a [`Scheduled::state_dict`]. The optimizer's rate is not touched: it
    /// comes with the optimizer's own state. A negative or non-finite base rate, or an
    /// epoch past `usize`, is an error and changes nothing.
    pub fn load_state_dict(&mut self, state: &SchedulerState) -> Result<()> {
        let epoch = state.check()?;
        self.base_lr = state.base_lr;
        self.epoch = epoch;
        Ok(())
    }
}

/// A schedule's position: the initial rate and the epochs done (PyTorch's `base_lrs` for
/// one parameter group, and `last_epoch`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SchedulerState {
    /// The rate the schedule started from.
    pub base_lr: f64,
    /// Epochs stepped so far.
    pub last_epoch: u64,
}

impl SchedulerState {
    /// Fails unless the state can be loaded; returns the epoch.
    pub(crate) fn check(&self) -> Result<usize> {
        if !(self.base_lr >= 0.0 && self.base_lr.is_finite()) {
            return arg_err(
                "load_state_dict",
                format!("Invalid learning rate: {} (base_lrs.0)", self.base_lr),
            );
        }
        usize::try_from(self.last_epoch).or_else(|_| {
            arg_err(
                "load_state_dict",
                format!("last_epoch {} does not fit usize", self.last_epoch),
            )
        })
    }
}

/// A schedule whose position can be saved and restored, whatever its [`LrScheduler`]:
/// checkpoints take one as `&dyn StatefulScheduler`.
pub trait StatefulScheduler {
    /// Where the schedule stands.
    fn scheduler_state(&self) -> SchedulerState;
    /// Restores a position (checked first; on an error nothing changes).
    fn load_scheduler_state(&mut self, state: &SchedulerState) -> Result<()>;
}

impl<S: LrScheduler> StatefulScheduler for Scheduled<S> {
    fn scheduler_state(&self) -> SchedulerState {
        self.state_dict()
    }
    fn load_scheduler_state(&mut self, state: &SchedulerState) -> Result<()> {
        self.load_state_dict(state)
    }
}
