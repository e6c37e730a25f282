//! Adagrad (`torch.optim.Adagrad`).

use super::*;
use crate::ops::optim::adagrad_run;

/// Adagrad, as `torch.optim.Adagrad`: per element, with `g = grad + weight_decay * p`,
/// `sum += g^2` and `p -= clr * g / (sqrt(sum) + eps)`, where step `t` (from 1) uses
/// `clr = lr / (1 + (t - 1) * lr_decay)`. Its state, per parameter, is `sum` and `step`.
pub struct Adagrad {
    params: Vec<Tensor>,
    /// Learning rate.
    pub lr: f64,
    /// Learning-rate decay per step.
    pub lr_decay: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// The value the sums of squares start from.
    pub initial_accumulator_value: f64,
    /// Added to the denominator, after the square root.
    pub eps: f64,
    /// Per parameter: the sum of squared gradients and the step count.
    state: Vec<(Tensor, u64)>,
    /// The step counts on the device, after a guarded step.
    dsteps: DeviceSteps,
}

impl Adagrad {
    /// Adagrad with PyTorch's defaults: no learning-rate decay, no weight decay, sums
    /// starting from 0, eps 1e-10 (PyTorch's default learning rate is 0.01). The builder
    /// methods change them.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let w = Tensor::from_vec(vec![1.0f32, -1.0], &[2], &dev)?.requires_grad_(true)?;
    /// let mut opt = Adagrad::new(vec![w.clone()], 0.1).lr_decay(0.01);
    /// w.mul(&w)?.sum()?.backward()?; // gradient 2w
    /// opt.step()?; // sum = 4w^2, so w - 0.1 * 2w / |2w| = w - 0.1 sign(w)
    /// let w = w.to_vec::<f32>()?;
    /// assert!((w[0] - 0.9).abs() < 1e-6 && (w[1] + 0.9).abs() < 1e-6);
    /// # Ok(()) }
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Adagrad {
        Adagrad {
            state: zeros_like_all(&params)
                .into_iter()
                .map(|s| (s, 0))
                .collect(),
            params,
            lr,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            dsteps: DeviceSteps::default(),
        }
    }
    /// Sets the learning-rate decay.
    pub fn lr_decay(mut self, d: f64) -> Adagrad {
        self.lr_decay = d;
        self
    }
    /// Sets the L2 penalty.
    pub fn weight_decay(mut self, wd: f64) -> Adagrad {
        self.weight_decay = wd;
        self
    }
    /// Sets epsilon.
    pub fn eps(mut self, eps: f64) -> Adagrad {
        self.eps = eps;
        self
    }
    /// Sets the value the sums of squares start from, and refills the sums of the
    /// parameters that have not stepped yet with it (as PyTorch, which reads it when the
    /// optimizer is built). A value that is negative or not finite is refused by the
    /// next step, and fills nothing.
    pub fn initial_accumulator_value(mut self, v: f64) -> Adagrad {
        self.initial_accumulator_value = v;
        if v >= 0.0 && v.is_finite() {
            for (s, t) in &self.state {
                if *t == 0 {
                    s.full_like(v)
                        .and_then(|full| s.copy_from(&full))
                        .expect("a state is a float tensor of its own");
                }
            }
        }
        self
    }
    /// The hyper-parameters of one step.
    fn hyper(&self) -> AdagradStep {
        AdagradStep {
            lr: self.lr,
            lr_decay: self.lr_decay,
            weight_decay: self.weight_decay,
            initial_accumulator_value: self.initial_accumulator_value,
            eps: self.eps,
        }
    }
    /// Checks the hyper-parameters with PyTorch's rules (learning rate, learning-rate
    /// decay, weight decay, initial accumulator value and eps finite and not negative).
    /// [`Optimizer::step`] checks them first too.
    pub fn validate(&self) -> Result<()> {
        self.hyper().validate()
    }

    /// Reads and checks a state: the hyper-parameters and each parameter's sum and step
    /// count.
    #[allow(clippy::type_complexity)]
    fn read_state(&self, state: &OptimizerState) -> Result<(AdagradStep, Vec<(Tensor, u64)>)> {
        let mut r = StateReader::new(state, self.params.len());
        let hp = AdagradStep {
            lr: r.f64("param_groups.0.lr"),
            lr_decay: r.f64("param_groups.0.lr_decay"),
            weight_decay: r.f64("param_groups.0.weight_decay"),
            initial_accumulator_value: r.f64("param_groups.0.initial_accumulator_value"),
            eps: r.f64("param_groups.0.eps"),
        };
        let mut out = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            let s = r.tensor(&format!("state.{i}.sum"), p);
            let t = r.u64(&format!("state.{i}.step"));
            if let Some(s) = s {
                out.push((s, t));
            }
        }
        r.finish()?;
        hp.validate()?;
        Ok((hp, out))
    }
}

impl Adagrad {
    /// One step, guarded by a scaler's state `found` or not.
    fn run(&mut self, found: Option<&Tensor>) -> Result<()> {
        let grads = step_grads("adagrad_step", &self.params, || self.validate())?;
        // None: skipped (an overflow, decided on the host).
        let Some(prep) = plan_step(
            &mut self.dsteps,
            found,
            &self.params,
            &grads,
            &mut self.state,
            |s| s.1,
            |s, c| s.1 = c,
        )?
        else {
            return Ok(());
        };
        let items: Vec<AdagradTensors> = self
            .params
            .iter()
            .zip(&grads)
            .zip(&self.state)
            .filter_map(|((param, g), (sum, t))| {
                g.as_ref().map(|grad| AdagradTensors {
                    param,
                    grad,
                    sum,
                    t: t + 1,
                })
            })
            .collect();
        let guard = prep.as_ref().map(|p| p.guard(true));
        adagrad_run(&items, self.hyper(), guard.as_ref())?;
        if guard.is_none() {
            count_steps(self.state.iter_mut().map(|st| &mut st.1), &grads);
        }
        Ok(())
    }
}

impl Optimizer for Adagrad {
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
        st.scalar("param_groups.0.lr_decay", Scalar::F64(self.lr_decay));
        st.scalar(
            "param_groups.0.weight_decay",
            Scalar::F64(self.weight_decay),
        );
        st.scalar(
            "param_groups.0.initial_accumulator_value",
            Scalar::F64(self.initial_accumulator_value),
        );
        st.scalar("param_groups.0.eps", Scalar::F64(self.eps));
        for (i, (s, t)) in self.state.iter().enumerate() {
            st.tensor(format!("state.{i}.sum"), s.detach());
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
        for (p, (s, t)) in self.params.iter().zip(file) {
            staged.push((s.to(p.device())?, t));
        }
        for (own, (s, t)) in self.state.iter_mut().zip(staged) {
            own.0.copy_from(&s)?;
            own.1 = t;
        }
        self.dsteps.reset();
        self.lr = hp.lr;
        self.lr_decay = hp.lr_decay;
        self.weight_decay = hp.weight_decay;
        self.initial_accumulator_value = hp.initial_accumulator_value;
        self.eps = hp.eps;
        Ok(())
    }
}
