//! Optimizers (`SGD` with momentum, Nesterov and weight decay; `Adam`; `AdamW`),
//! learning-rate schedules and gradient clipping. Each parameter's update is one fused
//! kernel (`shaders/optim.wgsl`) that rewrites the parameter and its state in place.

mod schedule;

pub use schedule::{CosineAnnealingLR, LrScheduler, Scheduled, StepLR};

use crate::error::Result;
use crate::ops::optim::{adam_update, sgd_update, AdamStep, SgdStep};
use crate::tensor::Tensor;

/// What every optimizer does.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// Forgets the parameters' gradients.
    fn zero_grad(&self);
    /// The current learning rate.
    fn lr(&self) -> f32;
    /// Changes the learning rate (schedulers call this).
    fn set_lr(&mut self, lr: f32);
    /// The parameters being optimised.
    fn params(&self) -> &[Tensor];
}

/// The `Optimizer` methods every optimizer with `params` and `lr` fields shares.
macro_rules! shared_optimizer_methods {
    () => {
        fn zero_grad(&self) {
            for p in &self.params {
                p.zero_grad();
            }
        }
        fn lr(&self) -> f32 {
            self.lr
        }
        fn set_lr(&mut self, lr: f32) {
            self.lr = lr
        }
        fn params(&self) -> &[Tensor] {
            &self.params
        }
    };
}

/// Stochastic gradient descent, as `torch.optim.SGD`.
pub struct Sgd {
    params: Vec<Tensor>,
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor.
    pub momentum: f32,
    /// Dampening of new gradients in the momentum buffer.
    pub dampening: f32,
    /// L2 penalty.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    buffers: Vec<Option<Tensor>>,
    /// Whether each parameter has had a step (its first step fills the buffer with the
    /// gradient itself, as PyTorch does).
    started: Vec<bool>,
}

/// Zeroed state shaped like each parameter, made up front so that the first step
/// allocates no more than later ones (steady-state training creates nothing).
fn zeros_like_all(params: &[Tensor]) -> Vec<Tensor> {
    params
        .iter()
        .map(|p| {
            p.zeros_like()
                .expect("a parameter is a float tensor on its own device")
        })
        .collect()
}

impl Sgd {
    /// Plain SGD with learning rate `lr`; add momentum etc. with the builder methods.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Sgd {
        let n = params.len();
        Sgd {
            params,
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            buffers: vec![None; n],
            started: vec![false; n],
        }
    }
    /// Sets the momentum factor (and makes the momentum buffers).
    pub fn momentum(mut self, m: f32) -> Sgd {
        self.momentum = m;
        if m != 0.0 && self.buffers.iter().any(|b| b.is_none()) {
            self.buffers = zeros_like_all(&self.params).into_iter().map(Some).collect();
        }
        self
    }
    /// Sets the dampening.
    pub fn dampening(mut self, d: f32) -> Sgd {
        self.dampening = d;
        self
    }
    /// Sets the L2 penalty.
    pub fn weight_decay(mut self, wd: f32) -> Sgd {
        self.weight_decay = wd;
        self
    }
    /// Uses Nesterov momentum.
    pub fn nesterov(mut self, on: bool) -> Sgd {
        self.nesterov = on;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        for ((p, buf), started) in self
            .params
            .iter()
            .zip(self.buffers.iter_mut())
            .zip(self.started.iter_mut())
        {
            let Some(g) = p.grad() else { continue };
            let first = !std::mem::replace(started, true);
            let b = match buf {
                Some(b) => b.clone(),
                None => {
                    // Momentum switched on after construction: make the buffer now.
                    let b = p.zeros_like()?;
                    *buf = Some(b.clone());
                    b
                }
            };
            let hp = SgdStep {
                lr: self.lr,
                momentum: self.momentum,
                dampening: self.dampening,
                weight_decay: self.weight_decay,
                nesterov: self.nesterov,
                first,
            };
            sgd_update(p, &g, &b, hp)?;
        }
        Ok(())
    }
    shared_optimizer_methods!();
}

/// Adam (`torch.optim.Adam`) or, with decoupled weight decay, AdamW.
pub struct Adam {
    params: Vec<Tensor>,
    /// Learning rate.
    pub lr: f32,
    /// Decay rates of the first and second moments.
    pub betas: (f32, f32),
    /// Added to the denominator.
    pub eps: f32,
    /// L2 penalty (Adam) or decoupled decay (AdamW).
    pub weight_decay: f32,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
    state: Vec<(Tensor, Tensor, u64)>,
}

impl Adam {
    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Adam {
        let m = zeros_like_all(&params);
        let v = zeros_like_all(&params);
        Adam {
            state: m.into_iter().zip(v).map(|(m, v)| (m, v, 0)).collect(),
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
    /// Sets the moment decay rates.
    pub fn betas(mut self, b1: f32, b2: f32) -> Adam {
        self.betas = (b1, b2);
        self
    }
    /// Sets epsilon.
    pub fn eps(mut self, eps: f32) -> Adam {
        self.eps = eps;
        self
    }
    /// Sets the weight decay.
    pub fn weight_decay(mut self, wd: f32) -> Adam {
        self.weight_decay = wd;
        self
    }
}

/// AdamW (`torch.optim.AdamW`): Adam with decoupled weight decay, default 0.01.
pub struct AdamW;

impl AdamW {
    /// AdamW with PyTorch's defaults.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(params: Vec<Tensor>, lr: f32) -> Adam {
        let mut a = Adam::new(params, lr);
        a.decoupled = true;
        a.weight_decay = 0.01;
        a
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        for (p, st) in self.params.iter().zip(self.state.iter_mut()) {
            let Some(g) = p.grad() else { continue };
            let (m, v, t) = st;
            *t += 1;
            let hp = AdamStep {
                lr: self.lr,
                beta1: self.betas.0,
                beta2: self.betas.1,
                eps: self.eps,
                weight_decay: self.weight_decay,
                decoupled: self.decoupled,
                t: *t,
            };
            adam_update(p, &g, m, v, hp)?;
        }
        Ok(())
    }
    shared_optimizer_methods!();
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_`. Returns the norm before clipping as a 0-d tensor on
/// the parameters' device: nothing is read back, so the training step stays one submit.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32) -> Result<Option<Tensor>> {
    let grads: Vec<(&Tensor, Tensor)> = params
        .iter()
        .filter_map(|p| p.grad().map(|g| (p, g)))
        .collect();
    let Some((_, first)) = grads.first() else {
        return Ok(None);
    };
    crate::autograd::no_grad(|| {
        let mut total = first.mul(first)?.sum()?;
        for (_, g) in &grads[1..] {
            total = total.add(&g.mul(g)?.sum()?)?;
        }
        let norm = total.sqrt()?;
        // scale = min(1, max_norm / (norm + 1e-6)), as PyTorch.
        let one = Tensor::full(&[], 1.0, norm.device())?;
        let scale = norm
            .add_scalar(1e-6)?
            .div(&Tensor::full(&[], max_norm, norm.device())?)?;
        let scale = one.div(&scale)?.minimum(&one)?;
        for (p, g) in &grads {
            p.set_grad(Some(g.mul(&scale)?));
        }
        Ok(Some(norm))
    })
}
