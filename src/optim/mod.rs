//! Optimizers (`SGD` with momentum, Nesterov and weight decay; `Adam`; `AdamW`),
//! learning-rate schedules and gradient clipping. On the GPU a step updates every
//! parameter and its state in place in one multi-tensor dispatch (`ops::optim`), and
//! clipping takes three.

mod schedule;

pub use schedule::{CosineAnnealingLR, LrScheduler, Scheduled, StepLR};

use crate::error::Result;
use crate::ops::optim::{adam_update, sgd_update, AdamStep, AdamTensors, SgdStep, SgdTensors};
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
    /// Whether each parameter's momentum buffer has had a step (its first fills it with
    /// the gradient itself, as PyTorch does).
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
        let momentum = self.momentum != 0.0;
        let grads: Vec<Option<Tensor>> = self.params.iter().map(|p| p.grad()).collect();
        if momentum {
            // Momentum switched on after construction: make the missing buffers now.
            for ((p, g), buf) in self.params.iter().zip(&grads).zip(&mut self.buffers) {
                if g.is_some() && buf.is_none() {
                    *buf = Some(p.zeros_like()?);
                }
            }
        }
        let items: Vec<SgdTensors> = self
            .params
            .iter()
            .zip(&grads)
            .zip(self.buffers.iter().zip(&self.started))
            .filter_map(|((param, g), (buf, &started))| {
                g.as_ref().map(|grad| SgdTensors {
                    param,
                    grad,
                    buf: buf.as_ref(),
                    first: momentum && !started,
                })
            })
            .collect();
        let hp = SgdStep {
            lr: self.lr,
            momentum: self.momentum,
            dampening: self.dampening,
            weight_decay: self.weight_decay,
            nesterov: self.nesterov,
        };
        sgd_update(&items, hp)?;
        if momentum {
            for (started, g) in self.started.iter_mut().zip(&grads) {
                *started |= g.is_some();
            }
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
        let grads: Vec<Option<Tensor>> = self.params.iter().map(|p| p.grad()).collect();
        let items: Vec<AdamTensors> = self
            .params
            .iter()
            .zip(&grads)
            .zip(&self.state)
            .filter_map(|((param, g), (m, v, t))| {
                g.as_ref().map(|grad| AdamTensors {
                    param,
                    grad,
                    m,
                    v,
                    t: t + 1,
                })
            })
            .collect();
        let hp = AdamStep {
            lr: self.lr,
            beta1: self.betas.0,
            beta2: self.betas.1,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decoupled: self.decoupled,
        };
        adam_update(&items, hp)?;
        for (st, g) in self.state.iter_mut().zip(&grads) {
            if g.is_some() {
                st.2 += 1;
            }
        }
        Ok(())
    }
    shared_optimizer_methods!();
}

/// Scales all gradients in place so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` (scale `min(1, max_norm / (norm + 1e-6))`; a
/// non-finite norm makes the gradients non-finite as there). Returns the norm before
/// clipping as a 0-d tensor on the parameters' device, or `None` when no parameter has a
/// gradient: nothing is read back, so the training step stays one submit. On the GPU this
/// is three dispatches for any number of parameters that fits one dispatch's bindings.
/// The gradients must all be on one device.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32) -> Result<Option<Tensor>> {
    let grads: Vec<Tensor> = params.iter().filter_map(|p| p.grad()).collect();
    if grads.is_empty() {
        return Ok(None);
    }
    crate::ops::optim::clip_grad_norm(&grads, max_norm).map(Some)
}
