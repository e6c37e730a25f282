//! [`GradScaler`], PyTorch's `torch.amp.GradScaler`.

use crate::backend::amp::{ScaleUpdate, STATE_LEN};
use crate::backend::Grad;
use crate::error::{arg_err, Error, Result};
use crate::optim::{Optimizer, OptimizerState, Scalar};
use crate::tensor::{DType, Tensor};

/// Scales the loss so that small half-precision gradients do not flush to zero, then
/// unscales the gradients before the optimizer step, skipping steps whose gradients
/// overflowed and adapting the scale, as PyTorch's `torch.amp.GradScaler` (same defaults:
/// initial scale 2^16, growth factor 2, backoff factor 0.5, growth interval 2,000).
///
/// The scale, the count of clean steps and the overflow flag live on the loss's device;
/// unscaling every gradient and checking it for infinities and NaNs is one multi-tensor
/// dispatch on the GPU, and the scale's update is another. The built-in optimizers skip
/// an overflowed step on the device too (their step counts move there, as PyTorch's
/// capturable optimizers'), so nothing is read back per step.
///
/// ```
/// use wgrad::amp::{autocast, GradScaler};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let model = Linear::new(&dev, 4, 2);
/// let mut opt = Sgd::new(model.parameters(), 0.1);
/// let mut scaler = GradScaler::new();
/// let (x, y) = (Tensor::randn_seeded(&[8, 4], 1, &dev)?, Tensor::zeros(&[8], &dev)?.to_dtype(DType::U32)?);
/// for _ in 0..3 {
///     opt.zero_grad();
///     let loss = autocast(&dev, DType::F16, || model.forward(&x)?.cross_entropy(&y))??;
///     scaler.scale(&loss)?.backward()?;
///     scaler.step(&mut opt)?; // unscales, and skips the step on inf/NaN gradients
///     scaler.update()?;
/// }
/// assert_eq!(scaler.get_scale()?, 65536.0);
/// # Ok(()) }
/// ```
pub struct GradScaler {
    /// `[scale, growth_tracker, found_inf]` on the device, made by the first `scale`.
    state: Option<Tensor>,
    init_scale: f64,
    growth_factor: f64,
    backoff_factor: f64,
    growth_interval: u64,
    enabled: bool,
    /// The optimizers unscaled since the last `update` (by address).
    unscaled: Vec<usize>,
    /// A loaded count of clean steps for the state the next `scale` makes.
    pending_tracker: u64,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler::new()
    }
}

impl GradScaler {
    /// A scaler with PyTorch's defaults.
    pub fn new() -> GradScaler {
        GradScaler {
            state: None,
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            enabled: true,
            unscaled: Vec::new(),
            pending_tracker: 0,
        }
    }

    /// The first scale (positive and finite).
    pub fn init_scale(mut self, v: f64) -> GradScaler {
        self.init_scale = v;
        self
    }

    /// The factor the scale grows by after `growth_interval` clean steps (above 1).
    pub fn growth_factor(mut self, v: f64) -> GradScaler {
        self.growth_factor = v;
        self
    }

    /// The factor the scale shrinks by after an overflow (between 0 and 1).
    pub fn backoff_factor(mut self, v: f64) -> GradScaler {
        self.backoff_factor = v;
        self
    }

    /// Clean steps in a row before the scale grows (at least 1).
    pub fn growth_interval(mut self, v: u64) -> GradScaler {
        self.growth_interval = v;
        self
    }

    /// Off: `scale` returns the loss, `step` steps, `update` does nothing.
    pub fn enabled(mut self, on: bool) -> GradScaler {
        self.enabled = on;
        self
    }

    /// Whether it scales.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self) -> Result<()> {
        let ok = self.init_scale > 0.0
            && self.init_scale.is_finite()
            && self.init_scale <= f32::MAX as f64
            && self.growth_factor > 1.0
            && self.growth_factor.is_finite()
            && self.backoff_factor > 0.0
            && self.backoff_factor < 1.0
            && (1..=1 << 24).contains(&self.growth_interval);
        if ok {
            return Ok(());
        }
        arg_err(
            "GradScaler",
            format!(
                "init_scale {} (positive, finite), growth_factor {} (> 1), backoff_factor {} \
                 (in (0, 1)) and growth_interval {} (1 to 2^24)",
                self.init_scale, self.growth_factor, self.backoff_factor, self.growth_interval
            ),
        )
    }

    /// The loss times the scale (PyTorch's `scaler.scale(loss)`); call `backward` on it.
    /// The first call puts the scaler's state on the loss's device.
    pub fn scale(&mut self, loss: &Tensor) -> Result<Tensor> {
        if !self.enabled {
            return Ok(loss.clone());
        }
        self.validate()?;
        let state = self.state_on(loss)?;
        let scale = state.narrow(0, 0, 1)?.reshape(&[])?;
        loss.mul(&scale.to_dtype(loss.dtype())?)
    }

    fn state_on(&mut self, like: &Tensor) -> Result<Tensor> {
        match &self.state {
            Some(s) if s.device() == like.device() => Ok(s.clone()),
            Some(s) => Err(Error::DeviceMismatch {
                op: "GradScaler",
                a: s.device().name(),
                b: like.device().name(),
            }),
            None => {
                let v = vec![self.init_scale as f32, self.pending_tracker as f32, 0.0];
                let s = Tensor::from_vec(v, &[STATE_LEN], like.device())?;
                self.state = Some(s.clone());
                Ok(s)
            }
        }
    }

    /// Divides the optimizer's gradients by the scale in place and notes whether any is
    /// infinite or NaN (PyTorch's `scaler.unscale_(optimizer)`), for instance before
    /// clipping them. At most once per optimizer between two `update`s.
    pub fn unscale_(&mut self, opt: &dyn Optimizer) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let id = opt as *const dyn Optimizer as *const () as usize;
        if self.unscaled.contains(&id) {
            return arg_err(
                "unscale_",
                "unscale_() was already called on this optimizer since the last update()",
            );
        }
        let grads: Vec<Tensor> = opt.params().iter().filter_map(|p| p.grad()).collect();
        let Some(first) = grads.first() else {
            self.unscaled.push(id);
            return Ok(());
        };
        let state = self.state_on(first)?;
        let mut distinct: Vec<&Tensor> = Vec::new();
        for g in &grads {
            if g.dtype() != DType::F32 {
                return Err(Error::DType {
                    op: "unscale_",
                    msg: format!(
                        "gradients are unscaled in f32 (master weights), got {:?}",
                        g.dtype()
                    ),
                });
            }
            crate::tensor::check_same_device("unscale_", g, &state)?;
            if !distinct.iter().any(|d| d.storage().same_as(g.storage())) {
                distinct.push(g);
            }
        }
        let slots: Vec<Grad> = distinct
            .iter()
            .map(|g| Grad {
                storage: g.storage(),
                numel: g.numel(),
            })
            .collect();
        state
            .device()
            .backend()
            .amp_unscale(&slots, state.storage())?;
        self.unscaled.push(id);
        Ok(())
    }

    /// Unscales the gradients (unless `unscale_` did already) and runs the optimizer's
    /// step unless a gradient was infinite or NaN (PyTorch's `scaler.step(optimizer)`).
    /// The built-in optimizers make that decision on the device
    /// ([`Optimizer::step_guarded`]): nothing is read back, so a training step under the
    /// scaler stays one submit. Whether the step was skipped shows in the scale after
    /// [`GradScaler::update`] (halved).
    pub fn step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        if !self.enabled {
            return opt.step();
        }
        let id = &*opt as *const dyn Optimizer as *const () as usize;
        if !self.unscaled.contains(&id) {
            self.unscale_(&*opt)?;
        }
        match &self.state {
            Some(state) => opt.step_guarded(state),
            // No gradient and no scaled loss yet: nothing overflowed.
            None => opt.step(),
        }
    }

    /// Adapts the scale for the next step (PyTorch's `scaler.update()`): halved (by the
    /// backoff factor) after an overflow, doubled (by the growth factor) after the
    /// growth interval's clean steps. On the device.
    pub fn update(&mut self) -> Result<()> {
        self.unscaled.clear();
        if !self.enabled {
            return Ok(());
        }
        self.validate()?;
        let Some(state) = &self.state else {
            return Ok(());
        };
        let u = ScaleUpdate {
            growth: self.growth_factor as f32,
            backoff: self.backoff_factor as f32,
            interval: self.growth_interval as u32,
        };
        state.device().backend().amp_update(state.storage(), u)
    }

    /// A copy of the device state `[scale, growth_tracker, found_inf]` (nothing read
    /// back), once the first `scale` has made it.
    #[doc(hidden)]
    pub fn state_tensor(&self) -> Option<Tensor> {
        self.state
            .as_ref()
            .map(|s| s.mul_scalar(1.0))
            .and_then(Result::ok)
    }

    /// The current scale (read back), or the initial one before the first `scale`; 1 when
    /// disabled.
    pub fn get_scale(&self) -> Result<f64> {
        if !self.enabled {
            return Ok(1.0);
        }
        match &self.state {
            Some(s) => Ok(s.to_vec::<f32>()?[0] as f64),
            None => Ok(self.init_scale),
        }
    }

    /// The state with PyTorch's `GradScaler.state_dict()` names: `scale`,
    /// `growth_factor`, `backoff_factor`, `growth_interval`, `_growth_tracker` (read
    /// back). Empty when disabled, as PyTorch's.
    pub fn state_dict(&self) -> Result<OptimizerState> {
        let mut st = OptimizerState::default();
        if !self.enabled {
            return Ok(st);
        }
        let (scale, tracker) = match &self.state {
            Some(s) => {
                let v = s.to_vec::<f32>()?;
                (v[0] as f64, v[1] as u64)
            }
            None => (self.init_scale, 0),
        };
        st.scalar("scale", Scalar::F64(scale));
        st.scalar("growth_factor", Scalar::F64(self.growth_factor));
        st.scalar("backoff_factor", Scalar::F64(self.backoff_factor));
        st.scalar("growth_interval", Scalar::U64(self.growth_interval));
        st.scalar("_growth_tracker", Scalar::U64(tracker));
        Ok(st)
    }

    /// Restores [`GradScaler::state_dict`]'s state (the scale and count go to the
    /// device of the next `scale`). Missing or malformed keys are an error, and then
    /// nothing changes.
    pub fn load_state_dict(&mut self, st: &OptimizerState) -> Result<()> {
        let get = |name: &str| st.scalars.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        let f = |name: &str| match get(name) {
            Some(Scalar::F64(v)) => Ok(v),
            Some(Scalar::U64(v)) => Ok(v as f64),
            _ => arg_err(
                "GradScaler::load_state_dict",
                format!("`{name}` missing or not a number"),
            ),
        };
        let u = |name: &str| match get(name) {
            Some(Scalar::U64(v)) => Ok(v),
            _ => arg_err(
                "GradScaler::load_state_dict",
                format!("`{name}` missing or not a count"),
            ),
        };
        let next = GradScaler {
            state: None,
            init_scale: f("scale")?,
            growth_factor: f("growth_factor")?,
            backoff_factor: f("backoff_factor")?,
            growth_interval: u("growth_interval")?,
            enabled: self.enabled,
            unscaled: Vec::new(),
            pending_tracker: 0,
        };
        next.validate()?;
        let tracker = u("_growth_tracker")?;
        let device = self.state.as_ref().map(|s| s.device().clone());
        *self = next;
        self.pending_tracker = tracker;
        if let Some(dev) = device {
            let v = vec![self.init_scale as f32, tracker as f32, 0.0];
            self.state = Some(Tensor::from_vec(v, &[STATE_LEN], &dev)?);
        }
        Ok(())
    }
}
