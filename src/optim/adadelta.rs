//! Adadelta (`torch.optim.Adadelta`).

use super::*;
use crate::ops::optim::adadelta_run;

/// Adadelta, as `torch.optim.Adadelta`: per element, with `g = grad + weight_decay * p`,
/// `square_avg = rho * square_avg + (1 - rho) * g^2`,
/// `delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g`,
/// `acc_delta = rho * acc_delta + (1 - rho) * delta^2` and `p -= lr * delta`. Its state,
/// per parameter, is `square_avg`, `acc_delta` and `step`.
pub struct Adadelta {
    params: Vec<Tensor>,
    /// Learning rate (scales the computed update).
    pub lr: f64,
    /// Decay of the running averages.
    pub rho: f64,
    /// Added inside both square roots.
    pub eps: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// Per parameter: `square_avg`, `acc_delta` and the step count.
    state: Vec<(Tensor, Tensor, u64)>,
    /// The step counts on the device, after a guarded step.
    dsteps: DeviceSteps,
}

impl Adadelta {
    /// Adadelta with PyTorch's defaults: rho 0.9, eps 1e-6, no weight decay (PyTorch's
    /// default learning rate is 1.0). The builder methods change them.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let w = Tensor::from_vec(vec![1.0f32, -1.0], &[2], &dev)?.requires_grad_(true)?;
    /// let mut opt = Adadelta::new(vec![w.clone()], 1.0).rho(0.95);
    /// w.mul(&w)?.sum()?.backward()?;
    /// opt.step()?;
    /// assert!(w.to_vec::<f32>()?[0] < 1.0);
    /// # Ok(()) }
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Adadelta {
        let v = zeros_like_all(&params);
        let u = zeros_like_all(&params);
        Adadelta {
            state: v.into_iter().zip(u).map(|(v, u)| (v, u, 0)).collect(),
            dsteps: DeviceSteps::default(),
            params,
            lr,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
        }
    }
    /// Sets the decay of the running averages.
    pub fn rho(mut self, rho: f64) -> Adadelta {
        self.rho = rho;
        self
    }
    /// Sets epsilon.
    pub fn eps(mut self, eps: f64) -> Adadelta {
        self.eps = eps;
        self
    }
    /// Sets the L2 penalty.
    pub fn weight_decay(mut self, wd: f64) -> Adadelta {
        self.weight_decay = wd;
        self
    }
    /// The hyper-parameters of one step.
    fn hyper(&self) -> AdadeltaStep {
        AdadeltaStep {
            lr: self.lr,
            rho: self.rho,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
    /// Checks the hyper-parameters with PyTorch's rules (learning rate, eps and weight
    /// decay finite and not negative, rho in `[0, 1]`). [`Optimizer::step`] checks them
    /// first too.
    pub fn validate(&self) -> Result<()> {
        self.hyper().validate()
    }

    /// Reads and checks a state: the hyper-parameters and each parameter's averages and
    /// step count.
    #[allow(clippy::type_complexity)]
    fn read_state(
        &self,
        state: &OptimizerState,
    ) -> Result<(AdadeltaStep, Vec<(Tensor, Tensor, u64)>)> {
        let mut r = StateReader::new(state, self.params.len());
        let hp = AdadeltaStep {
            lr: r.f64("param_groups.0.lr"),
            rho: r.f64("param_groups.0.rho"),
            eps: r.f64("param_groups.0.eps"),
            weight_decay: r.f64("param_groups.0.weight_decay"),
        };
        let mut out = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            let v = r.tensor(&format!("state.{i}.square_avg"), p);
            let u = r.tensor(&format!("state.{i}.acc_delta"), p);
            let t = r.u64(&format!("state.{i}.step"));
            if let (Some(v), Some(u)) = (v, u) {
                out.push((v, u, t));
            }
        }
        r.finish()?;
        hp.validate()?;
        Ok((hp, out))
    }
}

impl Adadelta {
    /// One step, guarded by a scaler's state `found` or not.
    fn run(&mut self, found: Option<&Tensor>) -> Result<()> {
        let grads = step_grads("adadelta_step", &self.params, || self.validate())?;
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
        let items: Vec<AdadeltaTensors> = self
            .params
            .iter()
            .zip(&grads)
            .zip(&self.state)
            .filter_map(|((param, g), (square_avg, acc_delta, _))| {
                g.as_ref().map(|grad| AdadeltaTensors {
                    param,
                    grad,
                    square_avg,
                    acc_delta,
                })
            })
            .collect();
        let guard = prep.as_ref().map(|p| p.guard(true));
        adadelta_run(&items, self.hyper(), guard.as_ref())?;
        if guard.is_none() {
            count_steps(self.state.iter_mut().map(|st| &mut st.2), &grads);
        }
        Ok(())
    }
}

impl Optimizer for Adadelta {
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
        st.scalar("param_groups.0.rho", Scalar::F64(self.rho));
        st.scalar("param_groups.0.eps", Scalar::F64(self.eps));
        st.scalar(
            "param_groups.0.weight_decay",
            Scalar::F64(self.weight_decay),
        );
        for (i, (v, u, t)) in self.state.iter().enumerate() {
            st.tensor(format!("state.{i}.square_avg"), v.detach());
            st.tensor(format!("state.{i}.acc_delta"), u.detach());
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
        for (p, (v, u, t)) in self.params.iter().zip(file) {
            staged.push((v.to(p.device())?, u.to(p.device())?, t));
        }
        for (own, (v, u, t)) in self.state.iter_mut().zip(staged) {
            own.0.copy_from(&v)?;
            own.1.copy_from(&u)?;
            own.2 = t;
        }
        self.dsteps.reset();
        self.lr = hp.lr;
        self.rho = hp.rho;
        self.eps = hp.eps;
        self.weight_decay = hp.weight_decay;
        Ok(())
    }
}
