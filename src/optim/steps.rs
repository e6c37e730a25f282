//! Step counts on the device, for steps that a gradient scaler may skip there
//! ([`super::Optimizer::step_guarded`], PyTorch's "capturable" optimizers).
//!
//! A built-in optimizer counts its steps on the host, per parameter. A guarded step does
//! not know on the host whether it happens, so its first one moves the counts to the
//! device (`f32`, exact to 2^24 steps, as PyTorch's `step` tensors): the kernels read
//! them there and a one-thread-per-parameter dispatch advances them unless the step was
//! skipped. They stay there until a plain step or a loaded state needs them on the host
//! again (one readback then); a state dict taken meanwhile holds each count as a 0-d
//! tensor, as PyTorch's does.

use super::state::OptimizerState;
use crate::error::Result;
use crate::ops::optim::StepGuard;
use crate::tensor::{DType, Tensor};

/// An optimizer's step counts while they live on the device, and the index tensors of
/// its last guarded step's parameters (kept while the same parameters step).
#[derive(Default)]
pub(crate) struct DeviceSteps {
    /// The counts, `f32` `[params]`, when they live on the device.
    counts: Option<Tensor>,
    /// The last guarded step's stepped parameters (those with elements first flagged),
    /// and their indices as `f32` tensors: every one, and those with elements.
    index: Option<Indices>,
}

/// Stepped parameters (index, has elements) and their indices as tensors: every one,
/// and those with elements.
type Indices = (Vec<(usize, bool)>, Tensor, Tensor);

/// The tensors a guarded step reads, kept alive while it runs.
pub(crate) struct Prepared {
    found: Tensor,
    steps: Tensor,
    all: Tensor,
    live: Tensor,
}

impl Prepared {
    /// The guard of the step: counting steps or not.
    pub(crate) fn guard(&self, count: bool) -> StepGuard<'_> {
        StepGuard {
            found: &self.found,
            steps: &self.steps,
            live: &self.live,
            all: &self.all,
            count,
        }
    }
}

impl DeviceSteps {
    /// The tensors of a guarded step of the parameters that have a gradient in `grads`,
    /// moving the host's counts (`host(i)`) to the device on the first one; `None` when
    /// the step cannot be guarded on the device (a gradient on another device than the
    /// scaler's state `found`): the caller then decides on the host.
    pub(crate) fn prepare(
        &mut self,
        found: &Tensor,
        params: &[Tensor],
        grads: &[Option<Tensor>],
        host: impl Fn(usize) -> u64,
    ) -> Result<Option<Prepared>> {
        let dev = found.device();
        if found.dtype() != DType::F32
            || grads.iter().flatten().any(|g| g.device() != dev)
            || self.counts.as_ref().is_some_and(|c| c.device() != dev)
        {
            return Ok(None);
        }
        let steps = match &self.counts {
            Some(c) => c.clone(),
            None => {
                let v: Vec<f32> = (0..params.len()).map(|i| host(i) as f32).collect();
                let c = Tensor::from_vec(v, &[params.len()], dev)?;
                self.counts = Some(c.clone());
                c
            }
        };
        let stepped: Vec<(usize, bool)> = params
            .iter()
            .zip(grads)
            .enumerate()
            .filter(|(_, (_, g))| g.is_some())
            .map(|(i, (p, _))| (i, p.numel() > 0))
            .collect();
        let cached = self
            .index
            .as_ref()
            .filter(|(key, all, _)| *key == stepped && all.device() == dev);
        let (all, live) = match cached {
            Some((_, all, live)) => (all.clone(), live.clone()),
            None => {
                let all: Vec<f32> = stepped.iter().map(|&(i, _)| i as f32).collect();
                let live: Vec<f32> = stepped
                    .iter()
                    .filter(|&&(_, has)| has)
                    .map(|&(i, _)| i as f32)
                    .collect();
                let (na, nl) = (all.len(), live.len());
                let all = Tensor::from_vec(all, &[na], dev)?;
                let live = Tensor::from_vec(live, &[nl], dev)?;
                self.index = Some((stepped, all.clone(), live.clone()));
                (all, live)
            }
        };
        Ok(Some(Prepared {
            found: found.clone(),
            steps,
            all,
            live,
        }))
    }

    /// Brings the counts back to the host (`set(i, count)` for every parameter; one
    /// readback) if they live on the device.
    pub(crate) fn sync(&mut self, mut set: impl FnMut(usize, u64)) -> Result<()> {
        if let Some(c) = &self.counts {
            for (i, v) in c.to_vec::<f32>()?.into_iter().enumerate() {
                set(i, v as u64);
            }
            self.counts = None;
        }
        Ok(())
    }

    /// Forgets the device's counts (a loaded state replaced them).
    pub(crate) fn reset(&mut self) {
        self.counts = None;
    }

    /// Writes parameter `i`'s count into a state dict under `key`: the host's `host` as
    /// a scalar, or while the counts live on the device a 0-d tensor (nothing read back).
    /// (Should the view fail, which a valid index cannot, the whole counts tensor goes
    /// under `key`: loading then names the key, where a stale host count would be
    /// silently wrong.)
    pub(crate) fn emit(&self, st: &mut OptimizerState, key: String, i: usize, host: super::Scalar) {
        match &self.counts {
            Some(c) => match c.narrow(0, i, 1).and_then(|t| t.reshape(&[])) {
                Ok(t) => st.tensor(key, t),
                Err(_) => st.tensor(key, c.clone()),
            },
            None => st.scalar(key, host),
        }
    }
}

/// Decides how a step runs: `None` when it is skipped (the scaler found a non-finite
/// gradient, decided on the host), else the guarded step's tensors or `None` for a plain
/// step. A plain one (no scaler state `found`) first brings the counts back to the host
/// (`counts[i]`, read by `get` and written by `set`); a guarded one runs on the device,
/// or where it cannot (a gradient on another device) reads the flag back and is skipped
/// or runs plain.
pub(crate) fn plan_step<C>(
    dsteps: &mut DeviceSteps,
    found: Option<&Tensor>,
    params: &[Tensor],
    grads: &[Option<Tensor>],
    counts: &mut [C],
    get: impl Fn(&C) -> u64,
    set: impl Fn(&mut C, u64),
) -> Result<Option<Option<Prepared>>> {
    if let Some(f) = found {
        if let Some(p) = dsteps.prepare(f, params, grads, |i| get(&counts[i]))? {
            return Ok(Some(Some(p)));
        }
        if found_inf(f)? {
            return Ok(None);
        }
    }
    dsteps.sync(|i, c| set(&mut counts[i], c))?;
    Ok(Some(None))
}

/// The scaler state's `found_inf`, read back.
pub(crate) fn found_inf(state: &Tensor) -> Result<bool> {
    Ok(state.to_vec::<f32>()?.get(2).is_some_and(|&f| f != 0.0))
}
