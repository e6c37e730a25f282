//! Optimizers (`SGD` with momentum, Nesterov and weight decay; `Adam`; `AdamW`;
//! `Adagrad`; `RMSprop`; `Adadelta`),
//! learning-rate schedules and gradient clipping. On the GPU a step updates every
//! parameter and its state in place in one multi-tensor dispatch (`ops::optim`), and
//! clipping takes three.
//!
//! Optimizers and schedules save and restore their state (`state_dict` /
//! `load_state_dict`) with PyTorch's names, for checkpoints ([`crate::io::Checkpoint`]).

mod schedule;
mod state;
mod steps;

pub use schedule::{
    CosineAnnealingLR, LrScheduler, Scheduled, SchedulerState, StatefulScheduler, StepLR,
};
pub use state::{OptimizerState, Scalar};

use crate::error::{arg_err, Result};
use crate::ops::optim::{
    adam_run, sgd_run, AdadeltaStep, AdadeltaTensors, AdagradStep, AdagradTensors, AdamStep,
    AdamTensors, RmspropStep, RmspropTensors, SgdStep, SgdTensors,
};
use crate::tensor::Tensor;
use state::StateReader;
use steps::{plan_step, DeviceSteps};

/// What every optimizer does.
///
/// A custom optimizer implements `step`, `params`, `lr` and `set_lr`; `zero_grad` and
/// the checkpoint methods have defaults (an optimizer without state saves an empty
/// state and loads only an empty one; override `state_dict`, `check_state_dict` and
/// `load_state_dict` to checkpoint yours). Its `step` updates the parameters with the
/// in-place tensor methods (`add_`, `add_scaled_`, `addcmul_`, `addcdiv_`, `lerp_`,
/// `mul_scalar_`, `sqrt_`...; each one pass, one dispatch on the GPU) under
/// [`crate::no_grad`]:
///
/// ```
/// use wgrad::optim::Optimizer;
/// use wgrad::prelude::*;
///
/// /// Momentum SGD: `buf = momentum * buf + grad; p -= lr * buf`.
/// struct MomentumSgd {
///     params: Vec<Tensor>,
///     bufs: Vec<Tensor>,
///     lr: f64,
///     momentum: f64,
/// }
///
/// impl Optimizer for MomentumSgd {
///     fn step(&mut self) -> wgrad::Result<()> {
///         no_grad(|| {
///             for (p, buf) in self.params.iter().zip(&self.bufs) {
///                 if let Some(g) = p.grad() {
///                     buf.mul_scalar_(self.momentum)?.add_(&g)?;
///                     p.add_scaled_(buf, -self.lr)?;
///                 }
///             }
///             Ok(())
///         })
///     }
///     fn params(&self) -> &[Tensor] {
///         &self.params
///     }
///     fn lr(&self) -> f64 {
///         self.lr
///     }
///     fn set_lr(&mut self, lr: f64) {
///         self.lr = lr
///     }
/// }
///
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let w = Tensor::from_vec(vec![1.0f32, -1.0], &[2], &dev)?.requires_grad_(true)?;
/// let bufs = vec![w.zeros_like()?];
/// let mut opt = MomentumSgd { params: vec![w.clone()], bufs, lr: 0.1, momentum: 0.9 };
/// opt.zero_grad();
/// w.mul(&w)?.sum()?.backward()?; // gradient 2w
/// opt.step()?; // w - 0.1 * 2w
/// let v = w.to_vec::<f32>()?;
/// assert!((v[0] - 0.8).abs() < 1e-6 && (v[1] + 0.8).abs() < 1e-6);
/// assert!(opt.state_dict().tensors.is_empty()); // the default: no state
/// # Ok(()) }
/// ```
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient (parameters without one
    /// are left alone). Invalid hyper-parameters are an error, before anything changes,
    /// and so is an optimizer built from an empty parameter list (`Error::Argument`): it
    /// would train nothing.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let w = Tensor::from_vec(vec![1.0f32, -1.0], &[2], &dev)?.requires_grad_(true)?;
    /// let mut opt = Sgd::new(vec![w.clone()], 0.1);
    /// w.mul(&w)?.sum()?.backward()?; // gradient 2w
    /// opt.step()?; // w - 0.1 * 2w, in place
    /// let w = w.to_vec::<f32>()?;
    /// assert!((w[0] - 0.8).abs() < 1e-6 && (w[1] + 0.8).abs() < 1e-6);
    /// # Ok(()) }
    /// ```
    fn step(&mut self) -> Result<()>;
    /// [`Optimizer::step`] unless a gradient scaler found an infinite or NaN gradient:
    /// `scaler_state` is its state `[scale, growth_tracker, found_inf]`
    /// ([`crate::amp::GradScaler::step`] calls this). The built-in optimizers decide on
    /// the device, reading nothing back (PyTorch's "capturable" steps): their step
    /// counts move to the device (`f32`, exact to 2^24 steps) until a plain `step` or a
    /// loaded state brings them back, and a state dict holds them as 0-d tensors
    /// meanwhile, as PyTorch's. This default reads the flag back (one value) and calls
    /// `step` unless it is set.
    fn step_guarded(&mut self, scaler_state: &Tensor) -> Result<()> {
        if !steps::found_inf(scaler_state)? {
            self.step()?;
        }
        Ok(())
    }
    /// Forgets the parameters' gradients (sets them to `None`, as PyTorch's
    /// `zero_grad(set_to_none=True)`). Call it before each `backward()`: gradients add
    /// up otherwise.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let model = Linear::new(&dev, 2, 1);
    /// let opt = Adam::new(model.parameters(), 1e-3);
    /// model.forward(&Tensor::ones(&[1, 2], &dev)?)?.sum()?.backward()?;
    /// assert!(model.parameters()[0].grad().is_some());
    /// opt.zero_grad();
    /// assert!(model.parameters().iter().all(|p| p.grad().is_none()));
    /// # Ok(()) }
    /// ```
    fn zero_grad(&self) {
        for p in self.params() {
            p.zero_grad();
        }
    }
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// Changes the learning rate (schedulers call this).
    fn set_lr(&mut self, lr: f64);
    /// The parameters being optimised.
    fn params(&self) -> &[Tensor];
    /// The optimizer's state with PyTorch's names: per parameter (by its index in
    /// [`Optimizer::params`]) `state.{i}.…`, and the hyper-parameters
    /// `param_groups.0.…`. The tensors are handles on the live state (no copies), as in
    /// PyTorch: copy them (or write them out) before the next step if they must not move.
    ///
    /// The default, for an optimizer without state, is an empty state.
    fn state_dict(&self) -> OptimizerState {
        OptimizerState::default()
    }
    /// Checks `state` against this optimizer (the number of parameters, every key, each
    /// tensor's shape and dtype, the hyper-parameters' domains) without changing anything.
    /// The error names the offending keys.
    ///
    /// The default, for an optimizer without state, accepts only an empty state
    /// (`Error::Argument` naming the keys otherwise).
    fn check_state_dict(&self, state: &OptimizerState) -> Result<()> {
        let keys: Vec<&str> = state
            .tensors
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(state.scalars.iter().map(|(k, _)| k.as_str()))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        arg_err(
            "load_state_dict",
            format!(
                "this optimizer keeps no state (it does not override state_dict), \
                 but the state has the keys {}",
                keys.join(", ")
            ),
        )
    }
    /// Restores a [`Optimizer::state_dict`], hyper-parameters included (as PyTorch's
    /// `load_state_dict` does). Everything is checked first ([`Optimizer::check_state_dict`]);
    /// on an error nothing has changed. Tensors are copied into the existing state in place
    /// (handles stay valid) and may come from another device.
    ///
    /// The default, for an optimizer without state, loads only an empty state.
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        self.check_state_dict(state)
    }
}

/// The `Optimizer` methods every optimizer with `params` and `lr` fields shares.
macro_rules! shared_optimizer_methods {
    () => {
        fn zero_grad(&self) {
            for p in &self.params {
                p.zero_grad();
            }
        }
        fn lr(&self) -> f64 {
            self.lr
        }
        fn set_lr(&mut self, lr: f64) {
            self.lr = lr
        }
        fn params(&self) -> &[Tensor] {
            &self.params
        }
    };
}

// After `shared_optimizer_methods!`, which they use.
mod adadelta;
mod adagrad;
mod rmsprop;

pub use adadelta::Adadelta;
pub use adagrad::Adagrad;
pub use rmsprop::RMSprop;

/// Stochastic gradient descent, as `torch.optim.SGD`.
pub struct Sgd {
    params: Vec<Tensor>,
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor.
    pub momentum: f64,
    /// Dampening of new gradients in the momentum buffer.
    pub dampening: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    buffers: Vec<Option<Tensor>>,
    /// Whether each parameter's momentum buffer has had a step (its first fills it with
    /// the gradient itself, as PyTorch does).
    started: Vec<bool>,
    /// Those flags as counts on the device, after a guarded step.
    dsteps: DeviceSteps,
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
    pub fn new(params: Vec<Tensor>, lr: f64) -> Sgd {
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
            dsteps: DeviceSteps::default(),
        }
    }
    /// Sets the momentum factor (and makes the momentum buffers).
    pub fn momentum(mut self, m: f64) -> Sgd {
        self.momentum = m;
        if m != 0.0 && self.buffers.iter().any(|b| b.is_none()) {
            self.buffers = zeros_like_all(&self.params).into_iter().map(Some).collect();
        }
        self
    }
    /// Sets the dampening.
    pub fn dampening(mut self, d: f64) -> Sgd {
        self.dampening = d;
        self
    }
    /// Sets the L2 penalty.
    pub fn weight_decay(mut self, wd: f64) -> Sgd {
        self.weight_decay = wd;
        self
    }
    /// Uses Nesterov momentum.
    pub fn nesterov(mut self, on: bool) -> Sgd {
        self.nesterov = on;
        self
    }
    /// The hyper-parameters of one step.
    fn hyper(&self) -> SgdStep {
        SgdStep {
            lr: self.lr,
            momentum: self.momentum,
            dampening: self.dampening,
            weight_decay: self.weight_decay,
            nesterov: self.nesterov,
        }
    }
    /// Checks the hyper-parameters with PyTorch's rules (a learning rate, momentum and
    /// weight decay that are finite and not negative, a dampening in `[0, 1]`, Nesterov
    /// only with momentum and zero dampening). [`Optimizer::step`] checks them first too.
    pub fn validate(&self) -> Result<()> {
        self.hyper().validate()
    }
}

impl Sgd {
    /// One step, guarded by a scaler's state `found` or not.
    fn run(&mut self, found: Option<&Tensor>) -> Result<()> {
        let grads = step_grads("sgd_step", &self.params, || self.validate())?;
        // None: skipped (an overflow, decided on the host).
        let Some(prep) = plan_step(
            &mut self.dsteps,
            found,
            &self.params,
            &grads,
            &mut self.started,
            |s| *s as u64,
            |s, c| *s = c > 0,
        )?
        else {
            return Ok(());
        };
        let momentum = self.momentum != 0.0;
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
        // Only momentum reads the counts (its buffers' first step).
        let guard = prep.as_ref().map(|p| p.guard(momentum));
        sgd_run(&items, self.hyper(), guard.as_ref())?;
        if momentum && guard.is_none() {
            for (started, g) in self.started.iter_mut().zip(&grads) {
                *started |= g.is_some();
            }
        }
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        self.run(None)
    }
    fn step_guarded(&mut self, scaler_state: &Tensor) -> Result<()> {
        self.run(Some(scaler_state))
    }
    shared_optimizer_methods!();

    fn state_dict(&self) -> OptimizerState {
        let mut st = OptimizerState::default();
        st.scalar("param_groups.0.lr", Scalar::F64(self.lr));
        st.scalar("param_groups.0.momentum", Scalar::F64(self.momentum));
        st.scalar("param_groups.0.dampening", Scalar::F64(self.dampening));
        st.scalar(
            "param_groups.0.weight_decay",
            Scalar::F64(self.weight_decay),
        );
        st.scalar("param_groups.0.nesterov", Scalar::Bool(self.nesterov));
        for (i, (buf, &started)) in self.buffers.iter().zip(&self.started).enumerate() {
            if let Some(b) = buf {
                st.tensor(format!("state.{i}.momentum_buffer"), b.detach());
            }
            let key = format!("state.{i}.started");
            self.dsteps.emit(&mut st, key, i, Scalar::Bool(started));
        }
        st
    }

    fn check_state_dict(&self, state: &OptimizerState) -> Result<()> {
        self.read_state(state).map(|_| ())
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        let (hp, started, bufs) = self.read_state(state)?;
        // Allocate and move everything first; then only in-place copies remain.
        let mut staged = Vec::with_capacity(bufs.len());
        for ((p, own), file) in self.params.iter().zip(&self.buffers).zip(bufs) {
            staged.push(match file {
                None => None,
                Some(f) => {
                    let dst = match own {
                        Some(b) => b.clone(),
                        None => p.zeros_like()?,
                    };
                    Some((dst, f.to(p.device())?))
                }
            });
        }
        for (own, s) in self.buffers.iter_mut().zip(staged) {
            if let Some((dst, src)) = s {
                dst.copy_from(&src)?;
                *own = Some(dst);
            }
        }
        self.started = started;
        self.dsteps.reset();
        self.lr = hp.lr;
        self.momentum = hp.momentum;
        self.dampening = hp.dampening;
        self.weight_decay = hp.weight_decay;
        self.nesterov = hp.nesterov;
        Ok(())
    }
}

impl Sgd {
    /// Reads and checks a state: the hyper-parameters, the started flags and the momentum
    /// buffers present in the file.
    #[allow(clippy::type_complexity)]
    fn read_state(
        &self,
        state: &OptimizerState,
    ) -> Result<(SgdStep, Vec<bool>, Vec<Option<Tensor>>)> {
        let mut r = StateReader::new(state, self.params.len());
        let hp = SgdStep {
            lr: r.f64("param_groups.0.lr"),
            momentum: r.f64("param_groups.0.momentum"),
            dampening: r.f64("param_groups.0.dampening"),
            weight_decay: r.f64("param_groups.0.weight_decay"),
            nesterov: r.bool("param_groups.0.nesterov"),
        };
        let mut started = Vec::with_capacity(self.params.len());
        let mut bufs = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            let s = r.bool(&format!("state.{i}.started"));
            let key = format!("state.{i}.momentum_buffer");
            let b = r.optional_tensor(&key, p);
            if s && hp.momentum != 0.0 && b.is_none() && !r.has_tensor(&key) {
                r.missing(&key);
            }
            started.push(s);
            bufs.push(b);
        }
        r.finish()?;
        hp.validate()?;
        Ok((hp, started, bufs))
    }
}

/// The gradients of a step's parameters (`None` where a parameter has none), after the
/// checks every built-in step makes first, in this order: there are parameters, the
/// hyper-parameters are valid (`validate`), and no gradient shares its parameter's
/// storage. Nothing has changed when it returns an error.
fn step_grads(
    op: &'static str,
    params: &[Tensor],
    validate: impl FnOnce() -> Result<()>,
) -> Result<Vec<Option<Tensor>>> {
    check_has_params(op, params)?;
    validate()?;
    check_own_grads(op, params)?;
    Ok(params.iter().map(|p| p.grad()).collect())
}

/// Adds one to the step count of every parameter that had a gradient this step.
fn count_steps<'a>(counts: impl Iterator<Item = &'a mut u64>, grads: &[Option<Tensor>]) {
    for (t, g) in counts.zip(grads) {
        if g.is_some() {
            *t += 1;
        }
    }
}

/// Refuses to step an optimizer built from an empty parameter list: it would train
/// nothing without a word (a hand-written `Module` whose `children()` leaves out its
/// layers, or parameters taken from a model with none).
fn check_has_params(op: &'static str, params: &[Tensor]) -> Result<()> {
    if params.is_empty() {
        return arg_err(
            op,
            "the optimizer has no parameters, so a step would train nothing; build it from \
             the model's parameters (a hand-written Module must list its sub-modules in \
             children(), or use #[derive(Module)])",
        );
    }
    Ok(())
}

/// Refuses a gradient that shares its own parameter's storage (`p.set_grad(Some(p))`,
/// or a view of `p`): the update would read what it writes.
fn check_own_grads(op: &'static str, params: &[Tensor]) -> Result<()> {
    for (i, p) in params.iter().enumerate() {
        if let Some(g) = p.grad() {
            if g.storage().same_as(p.storage()) {
                return arg_err(
                    op,
                    format!(
                        "the gradient of parameter {i} shares the parameter's storage; give it a \
                         gradient of its own"
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Adam (`torch.optim.Adam`) or, with decoupled weight decay, AdamW.
pub struct Adam {
    params: Vec<Tensor>,
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moments.
    pub betas: (f64, f64),
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty (Adam) or decoupled decay (AdamW).
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
    state: Vec<(Tensor, Tensor, u64)>,
    /// The step counts on the device, after a guarded step.
    dsteps: DeviceSteps,
}

impl Adam {
    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay. The
    /// builder methods change them.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let model = Sequential::new().add(Linear::new(&dev, 2, 1));
    /// let mut opt = Adam::new(model.parameters(), 1e-2).betas(0.9, 0.99);
    /// let (x, y) = (Tensor::ones(&[4, 2], &dev)?, Tensor::zeros(&[4, 1], &dev)?);
    /// let before = model.forward(&x)?.mse_loss(&y)?.item()?;
    /// for _ in 0..10 {
    ///     let loss = model.forward(&x)?.mse_loss(&y)?;
    ///     opt.zero_grad();
    ///     loss.backward()?;
    ///     opt.step()?;
    /// }
    /// assert!(model.forward(&x)?.mse_loss(&y)?.item()? < before);
    /// # Ok(()) }
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Adam {
        let m = zeros_like_all(&params);
        let v = zeros_like_all(&params);
        Adam {
            state: m.into_iter().zip(v).map(|(m, v)| (m, v, 0)).collect(),
            dsteps: DeviceSteps::default(),
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
    /// Sets the moment decay rates.
    pub fn betas(mut self, b1: f64, b2: f64) -> Adam {
        self.betas = (b1, b2);
        self
    }
    /// Sets epsilon.
    pub fn eps(mut self, eps: f64) -> Adam {
        self.eps = eps;
        self
    }
    /// Sets the weight decay.
    pub fn weight_decay(mut self, wd: f64) -> Adam {
        self.weight_decay = wd;
        self
    }
    /// The hyper-parameters of one step.
    fn hyper(&self) -> AdamStep {
        AdamStep {
            lr: self.lr,
            beta1: self.betas.0,
            beta2: self.betas.1,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decoupled: self.decoupled,
        }
    }
    /// Checks the hyper-parameters with PyTorch's rules (a learning rate, eps and weight
    /// decay that are finite and not negative, betas in `[0, 1)`). [`Optimizer::step`]
    /// checks them first too.
    pub fn validate(&self) -> Result<()> {
        self.hyper().validate()
    }

    /// Reads and checks a state: the hyper-parameters and each parameter's moments and
    /// step count.
    #[allow(clippy::type_complexity)]
    fn read_state(&self, state: &OptimizerState) -> Result<(AdamStep, Vec<(Tensor, Tensor, u64)>)> {
        let mut r = StateReader::new(state, self.params.len());
        let hp = AdamStep {
            lr: r.f64("param_groups.0.lr"),
            beta1: r.f64("param_groups.0.betas.0"),
            beta2: r.f64("param_groups.0.betas.1"),
            eps: r.f64("param_groups.0.eps"),
            weight_decay: r.f64("param_groups.0.weight_decay"),
            decoupled: r.bool("param_groups.0.decoupled_weight_decay"),
        };
        let mut out = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            let m = r.tensor(&format!("state.{i}.exp_avg"), p);
            let v = r.tensor(&format!("state.{i}.exp_avg_sq"), p);
            let t = r.u64(&format!("state.{i}.step"));
            if let (Some(m), Some(v)) = (m, v) {
                out.push((m, v, t));
            }
        }
        r.finish()?;
        hp.validate()?;
        Ok((hp, out))
    }
}

/// AdamW (`torch.optim.AdamW`): Adam with decoupled weight decay, default 0.01.
pub struct AdamW;

impl AdamW {
    /// AdamW with PyTorch's defaults.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(params: Vec<Tensor>, lr: f64) -> Adam {
        let mut a = Adam::new(params, lr);
        a.decoupled = true;
        a.weight_decay = 0.01;
        a
    }
}

impl Adam {
    /// One step, guarded by a scaler's state `found` or not.
    fn run(&mut self, found: Option<&Tensor>) -> Result<()> {
        let grads = step_grads("adam_step", &self.params, || self.validate())?;
        // None: skipped (an overflow, decided on the host).
        let Some(prep) = plan_step(
            &mut self.dsteps,
            found,
            &self.params,
            &grads,
            &mut self.state,
            |s| s.2,
            |s, c| s.2 = c,
        )?
        else {
            return Ok(());
        };
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
        let guard = prep.as_ref().map(|p| p.guard(true));
        adam_run(&items, self.hyper(), guard.as_ref())?;
        if guard.is_none() {
            count_steps(self.state.iter_mut().map(|st| &mut st.2), &grads);
        }
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        self.run(None)
    }
    fn step_guarded(&mut self, scaler_state: &Tensor) -> Result<()> {
        self.run(Some(scaler_state))
    }
    shared_optimizer_methods!();

    fn state_dict(&self) -> OptimizerState {
        let mut st = OptimizerState::default();
        st.scalar("param_groups.0.lr", Scalar::F64(self.lr));
        st.scalar("param_groups.0.betas.0", Scalar::F64(self.betas.0));
        st.scalar("param_groups.0.betas.1", Scalar::F64(self.betas.1));
        st.scalar("param_groups.0.eps", Scalar::F64(self.eps));
        st.scalar(
            "param_groups.0.weight_decay",
            Scalar::F64(self.weight_decay),
        );
        st.scalar(
            "param_groups.0.decoupled_weight_decay",
            Scalar::Bool(self.decoupled),
        );
        for (i, (m, v, t)) in self.state.iter().enumerate() {
            st.tensor(format!("state.{i}.exp_avg"), m.detach());
            st.tensor(format!("state.{i}.exp_avg_sq"), v.detach());
            self.dsteps
                .emit(&mut st, format!("state.{i}.step"), i, Scalar::U64(*t));
        }
        st
    }

    fn check_state_dict(&self, state: &OptimizerState) -> Result<()> {
        self.read_state(state).map(|_| ())
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        let (hp, file) = self.read_state(state)?;
        // Move everything to the parameters' devices first; then only in-place copies.
        let mut staged = Vec::with_capacity(file.len());
        for (p, (m, v, t)) in self.params.iter().zip(file) {
            staged.push((m.to(p.device())?, v.to(p.device())?, t));
        }
        for (own, (m, v, t)) in self.state.iter_mut().zip(staged) {
            own.0.copy_from(&m)?;
            own.1.copy_from(&v)?;
            own.2 = t;
        }
        self.dsteps.reset();
        self.lr = hp.lr;
        self.betas = (hp.beta1, hp.beta2);
        self.eps = hp.eps;
        self.weight_decay = hp.weight_decay;
        self.decoupled = hp.decoupled;
        Ok(())
    }
}

/// Scales all gradients in place so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` (scale `min(1, max_norm / (norm + 1e-6))`; a
/// non-finite norm makes the gradients non-finite as there). Returns the norm before
/// clipping as a 0-d tensor on the parameters' device, or `None` when no parameter has a
/// gradient: nothing is read back, so the training step stays one submit. On the GPU this
/// is three dispatches for any number of parameters that fits one dispatch's bindings.
/// The gradients must all be on one device.
/// A gradient that shares a parameter's storage is an error (scaling it would change the
/// parameter).
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<Option<Tensor>> {
    for g in params.iter().filter_map(|p| p.grad()) {
        if params.iter().any(|p| p.storage().same_as(g.storage())) {
            return arg_err(
                "clip_grad_norm",
                "a gradient shares a parameter's storage; give it a gradient of its own",
            );
        }
    }
    let grads: Vec<Tensor> = params.iter().filter_map(|p| p.grad()).collect();
    if grads.is_empty() {
        return Ok(None);
    }
    crate::ops::optim::clip_grad_norm(&grads, max_norm).map(Some)
}
