//! Learning-rate schedules, stepped once per epoch like PyTorch's.

use super::Optimizer;

/// Sets an optimizer's learning rate from the epoch number.
pub trait LrScheduler {
    /// The learning rate for `epoch` (0-based) given the initial rate.
    fn lr_at(&self, base_lr: f32, epoch: usize) -> f32;
}

/// Multiplies the rate by `gamma` every `step_size` epochs.
#[derive(Clone, Copy, Debug)]
pub struct StepLR {
    /// Epochs between decays.
    pub step_size: usize,
    /// The decay factor.
    pub gamma: f32,
}

impl LrScheduler for StepLR {
    fn lr_at(&self, base_lr: f32, epoch: usize) -> f32 {
        base_lr * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }
}

/// Cosine annealing from the initial rate to `eta_min` over `t_max` epochs.
#[derive(Clone, Copy, Debug)]
pub struct CosineAnnealingLR {
    /// Epochs of one half cosine.
    pub t_max: usize,
    /// The final rate.
    pub eta_min: f32,
}

impl LrScheduler for CosineAnnealingLR {
    fn lr_at(&self, base_lr: f32, epoch: usize) -> f32 {
        let t = epoch.min(self.t_max) as f32 / self.t_max.max(1) as f32;
        self.eta_min + (base_lr - self.eta_min) * (1.0 + (std::f32::consts::PI * t).cos()) / 2.0
    }
}

/// Applies a schedule to an optimizer: call [`Scheduled::step`] once per epoch.
pub struct Scheduled<S: LrScheduler> {
    schedule: S,
    base_lr: f32,
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
}
