//! RMSprop (`torch.optim.RMSprop`), with momentum and the centered variant.

use super::*;
use crate::ops::optim::rmsprop_run;

/// RMSprop, as `torch.optim.RMSprop`: per element, with `g = grad + weight_decay * p`,
/// `square_avg = alpha * square_avg + (1 - alpha) * g^2`; centered, also
/// `grad_avg = alpha * grad_avg + (1 - alpha) * g` and the denominator
/// `sqrt(square_avg - grad_avg^2) + eps`, otherwise `sqrt(square_avg) + eps`; then
/// `p -= lr * g / denominator`, or with a momentum
/// `momentum_buffer = momentum * momentum_buffer + g / denominator` and
/// `p -= lr * momentum_buffer`. Its state, per parameter, is `square_avg`, `step`, and
/// `momentum_buffer` (with a momentum) and `grad_avg` (centered) as PyTorch's.
pub struct RMSprop {
    params: Vec<Tensor>,
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the running averages.
    pub alpha: f64,
    /// Added to the denominator, after the square root.
    pub eps: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// Momentum factor.
    pub momentum: f64,
    /// Divides by the gradients' estimated standard deviation instead of their root mean
    /// square.
    pub centered: bool,
    square_avg: Vec<Tensor>,
    momentum_buffer: Vec<Option<Tensor>>,
    grad_avg: Vec<Option<Tensor>>,
    steps: Vec<u64>,
    /// The step counts on the device, after a guarded step.
    dsteps: DeviceSteps,
}

/// Makes the missing state tensors of the parameters that have a gradient.
fn fill_missing(
    params: &[Tensor],
    grads: &[Option<Tensor>],
    state: &mut [Option<Tensor>],
) -> Result<()> {
    for ((p, g), s) in params.iter().zip(grads).zip(state) {
        if g.is_some() && s.is_none() {
            *s = Some(p.zeros_like()?);
        }
    }
    Ok(())
}

/// Stages optional state tensors read from a file: each moved to its parameter's device,
/// with the tensor it will be copied into (the existing one, or a new one).
#[allow(clippy::type_complexity)]
fn stage_optional(
    params: &[Tensor],
    own: &[Option<Tensor>],
    file: Vec<Option<Tensor>>,
) -> Result<Vec<Option<(Tensor, Tensor)>>> {
    let mut staged = Vec::with_capacity(file.len());
    for ((p, own), f) in params.iter().zip(own).zip(file) {
        staged.push(match f {
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
    Ok(staged)
}

/// Copies staged tensors ([`stage_optional`]) into place.
fn commit_optional(
    own: &mut [Option<Tensor>],
    staged: Vec<Option<(Tensor, Tensor)>>,
) -> Result<()> {
    for (own, s) in own.iter_mut().zip(staged) {
        if let Some((dst, src)) = s {
            dst.copy_from(&src)?;
            *own = Some(dst);
        }
    }
    Ok(())
}

impl RMSprop {
    /// RMSprop with PyTorch's defaults: alpha 0.99, eps 1e-8, no weight decay, no
    /// momentum, not centered (PyTorch's default learning rate is 0.01). The builder
    /// methods change them.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let w = Tensor::from_vec(vec![1.0f32, -1.0], &[2], &dev)?.requires_grad_(true)?;
    /// let mut opt = RMSprop::new(vec![w.clone()], 0.01).momentum(0.9).centered(true);
    /// w.mul(&w)?.sum()?.backward()?;
    /// opt.step()?;
    /// assert!(w.to_vec::<f32>()?[0] < 1.0);
    /// # Ok(()) }
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> RMSprop {
        let n = params.len();
        RMSprop {
            square_avg: zeros_like_all(&params),
            params,
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            momentum_buffer: vec![None; n],
            grad_avg: vec![None; n],
            steps: vec![0; n],
            dsteps: DeviceSteps::default(),
        }
    }
    /// Sets the smoothing constant.
    pub fn alpha(mut self, alpha: f64) -> RMSprop {
        self.alpha = alpha;
        self
    }
    /// Sets epsilon.
    pub fn eps(mut self, eps: f64) -> RMSprop {
        self.eps = eps;
        self
    }
    /// Sets the L2 penalty.
    pub fn weight_decay(mut self, wd: f64) -> RMSprop {
        self.weight_decay = wd;
        self
    }
    /// Sets the momentum factor (and makes the momentum buffers).
    pub fn momentum(mut self, m: f64) -> RMSprop {
        self.momentum = m;
        if m != 0.0 && self.momentum_buffer.iter().any(|b| b.is_none()) {
            self.momentum_buffer = zeros_like_all(&self.params).into_iter().map(Some).collect();
        }
        self
    }
    /// Centers the denominator (and makes the gradient averages).
    pub fn centered(mut self, on: bool) -> RMSprop {
        self.centered = on;
        if on && self.grad_avg.iter().any(|a| a.is_none()) {
            self.grad_avg = zeros_like_all(&self.params).into_iter().map(Some).collect();
        }
        self
    }
    /// The hyper-parameters of one step.
    fn hyper(&self) -> RmspropStep {
        RmspropStep {
            lr: self.lr,
            alpha: self.alpha,
            eps: self.eps,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            centered: self.centered,
        }
    }
    /// Checks the hyper-parameters with PyTorch's rules (learning rate, alpha, eps,
    /// momentum and weight decay finite and not negative). [`Optimizer::step`] checks
    /// them first too.
    pub fn validate(&self) -> Result<()> {
        self.hyper().validate()
    }

    /// Reads and checks a state: the hyper-parameters, each parameter's step count and
    /// square average, and the momentum buffers and gradient averages in the file.
    #[allow(clippy::type_complexity)]
    fn read_state(
        &self,
        state: &OptimizerState,
    ) -> Result<(
        RmspropStep,
        Vec<(Tensor, u64)>,
        Vec<Option<Tensor>>,
        Vec<Option<Tensor>>,
    )> {
        let mut r = StateReader::new(state, self.params.len());
        let hp = RmspropStep {
            lr: r.f64("param_groups.0.lr"),
            alpha: r.f64("param_groups.0.alpha"),
            eps: r.f64("param_groups.0.eps"),
            weight_decay: r.f64("param_groups.0.weight_decay"),
            momentum: r.f64("param_groups.0.momentum"),
            centered: r.bool("param_groups.0.centered"),
        };
        let n = self.params.len();
        let (mut out, mut bufs, mut avgs) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (i, p) in self.params.iter().enumerate() {
            let v = r.tensor(&format!("state.{i}.square_avg"), p);
            let t = r.u64(&format!("state.{i}.step"));
            for (key, on, dst) in [
                ("momentum_buffer", hp.momentum != 0.0, &mut bufs),
                ("grad_avg", hp.centered, &mut avgs),
            ] {
                let key = format!("state.{i}.{key}");
                let b = r.optional_tensor(&key, p);
                if on && t > 0 && b.is_none() && !r.has_tensor(&key) {
                    r.missing(&key);
                }
                dst.push(b);
            }
            if let Some(v) = v {
                out.push((v, t));
            }
        }
        r.finish()?;
        hp.validate()?;
        Ok((hp, out, bufs, avgs))
    }
}

impl RMSprop {
    /// One step, guarded by a scaler's state `found` or not.
    fn run(&mut self, found: Option<&Tensor>) -> Result<()> {
        let grads = step_grads("rmsprop_step", &self.params, || self.validate())?;
        // None: skipped (an overflow, decided on the host).
        let Some(prep) = plan_step(
            &mut self.dsteps,
            found,
            &self.params,
            &grads,
            &mut self.steps,
            |s| *s,
            |s, c| *s = c,
        )?
        else {
            return Ok(());
        };
        // Momentum or centering switched on after construction: make the missing state.
        if self.momentum != 0.0 {
            fill_missing(&self.params, &grads, &mut self.momentum_buffer)?;
        }
        if self.centered {
            fill_missing(&self.params, &grads, &mut self.grad_avg)?;
        }
        let items: Vec<RmspropTensors> = self
            .params
            .iter()
            .zip(&grads)
            .zip(
                self.square_avg
                    .iter()
                    .zip(self.momentum_buffer.iter().zip(&self.grad_avg)),
            )
            .filter_map(|((param, g), (square_avg, (b, a)))| {
                g.as_ref().map(|grad| RmspropTensors {
                    param,
                    grad,
                    square_avg,
                    momentum_buffer: b.as_ref(),
                    grad_avg: a.as_ref(),
                })
            })
            .collect();
        let guard = prep.as_ref().map(|p| p.guard(true));
        rmsprop_run(&items, self.hyper(), guard.as_ref())?;
        if guard.is_none() {
            count_steps(self.steps.iter_mut(), &grads);
        }
        Ok(())
    }
}

impl Optimizer for RMSprop {
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
        st.scalar("param_groups.0.alpha", Scalar::F64(self.alpha));
        st.scalar("param_groups.0.eps", Scalar::F64(self.eps));
        st.scalar(
            "param_groups.0.weight_decay",
            Scalar::F64(self.weight_decay),
        );
        st.scalar("param_groups.0.momentum", Scalar::F64(self.momentum));
        st.scalar("param_groups.0.centered", Scalar::Bool(self.centered));
        for i in 0..self.params.len() {
            st.tensor(format!("state.{i}.square_avg"), self.square_avg[i].detach());
            if let Some(b) = &self.momentum_buffer[i] {
                st.tensor(format!("state.{i}.momentum_buffer"), b.detach());
            }
            if let Some(a) = &self.grad_avg[i] {
                st.tensor(format!("state.{i}.grad_avg"), a.detach());
            }
            let key = format!("state.{i}.step");
            self.dsteps
                .emit(&mut st, key, i, Scalar::U64(self.steps[i]));
        }
        st
    }

    fn check_state_dict(&self, state: &OptimizerState) -> Result<()> {
        self.read_state(state).map(|_| ())
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        let (hp, file, bufs, avgs) = self.read_state(state)?;
        // Allocate and move everything first; then only in-place copies remain.
        let mut staged = Vec::with_capacity(file.len());
        for (p, (v, t)) in self.params.iter().zip(file) {
            staged.push((v.to(p.device())?, t));
        }
        let bufs = stage_optional(&self.params, &self.momentum_buffer, bufs)?;
        let avgs = stage_optional(&self.params, &self.grad_avg, avgs)?;
        for ((own, t), (v, ft)) in self.square_avg.iter().zip(&mut self.steps).zip(staged) {
            own.copy_from(&v)?;
            *t = ft;
        }
        self.dsteps.reset();
        commit_optional(&mut self.momentum_buffer, bufs)?;
        commit_optional(&mut self.grad_avg, avgs)?;
        self.lr = hp.lr;
        self.alpha = hp.alpha;
        self.eps = hp.eps;
        self.weight_decay = hp.weight_decay;
        self.momentum = hp.momentum;
        self.centered = hp.centered;
        Ok(())
    }
}
