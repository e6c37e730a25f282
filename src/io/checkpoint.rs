//! Training checkpoints: the model, the optimizer, the learning-rate schedule, the
//! device's random generator and the progress (step, epoch) in one safetensors file.
//!
//! Tensors are stored under `model.` (the model's `state_dict` names) and `optimizer.`
//! (`optimizer.state.0.exp_avg`); scalars go into the file's `__metadata__` map:
//! `format` = `wgrad-checkpoint`, `format_version`, `step`, `epoch`, `rng.seed`,
//! `rng.offset`, the optimizer's hyper-parameters and counts
//! (`optimizer.param_groups.0.lr`, `optimizer.state.0.step`) and the schedule
//! (`scheduler.base_lrs.0`, `scheduler.last_epoch`), and a gradient scaler's state when
//! training has one ([`Checkpoint::with_scaler`]: `scaler.scale`,
//! `scaler._growth_tracker`, ... as PyTorch's `GradScaler.state_dict()`). Saving is
//! atomic; loading checks the whole file against the model, optimizer and schedule
//! before changing anything.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::{encode_safetensors, format_err, read_with_metadata, write_atomic_with};
use crate::device::{Device, RngKey};
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::optim::{Optimizer, OptimizerState, Scalar, SchedulerState, StatefulScheduler};
use crate::tensor::{DType, Tensor};

/// The checkpoint format this version writes (and the newest it reads).
pub const CHECKPOINT_VERSION: u32 = 1;

/// The `format` metadata value that marks a checkpoint.
const FORMAT: &str = "wgrad-checkpoint";

/// Everything needed to resume training exactly: a snapshot on the host (copies, so
/// later steps do not change it).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The model's `state_dict`.
    pub model: Vec<(String, Tensor)>,
    /// The optimizer's `state_dict`.
    pub optimizer: OptimizerState,
    /// The schedule's position, if training has one.
    pub scheduler: Option<SchedulerState>,
    /// The training device's random generator (dropout masks, augmentation).
    pub rng: RngKey,
    /// The caller's step counter.
    pub step: u64,
    /// The caller's epoch counter (for instance, epochs completed).
    pub epoch: u64,
    /// The gradient scaler's `state_dict`, if mixed-precision training has one.
    pub scaler: Option<OptimizerState>,
}

/// A copy of `t` on the host that shares nothing with it.
fn host_copy(t: &Tensor) -> Result<Tensor> {
    let cpu = Device::Cpu;
    match t.dtype() {
        DType::F32 => Tensor::from_vec(t.to_vec::<f32>()?, t.shape(), &cpu),
        DType::F64 => Tensor::from_vec(t.to_vec::<f64>()?, t.shape(), &cpu),
        DType::U32 => Tensor::from_vec(t.to_vec::<u32>()?, t.shape(), &cpu),
        DType::F16 => Tensor::from_vec(t.to_vec::<crate::half::f16>()?, t.shape(), &cpu),
        DType::BF16 => Tensor::from_vec(t.to_vec::<crate::half::bf16>()?, t.shape(), &cpu),
    }
}

impl Checkpoint {
    /// Snapshots the training state: `model` and `optimizer` (copied to the host), the
    /// schedule, `device`'s random generator, and the caller's `step` and `epoch`.
    pub fn capture(
        model: &dyn Module,
        optimizer: &dyn Optimizer,
        scheduler: Option<&dyn StatefulScheduler>,
        device: &Device,
        step: u64,
        epoch: u64,
    ) -> Result<Checkpoint> {
        let model = model
            .state_dict()
            .iter()
            .map(|(n, t)| Ok((n.clone(), host_copy(t)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut optimizer = optimizer.state_dict();
        for (_, t) in &mut optimizer.tensors {
            *t = host_copy(t)?;
        }
        Ok(Checkpoint {
            model,
            optimizer,
            scheduler: scheduler.map(|s| s.scheduler_state()),
            rng: device.rng_state(),
            step,
            epoch,
            scaler: None,
        })
    }

    /// The checkpoint with `scaler`'s state (read back from its device), which
    /// [`Checkpoint::restore_scaler`] puts back.
    pub fn with_scaler(mut self, scaler: &crate::amp::GradScaler) -> Result<Checkpoint> {
        self.scaler = Some(scaler.state_dict()?);
        Ok(self)
    }

    /// Restores the gradient scaler's state; a checkpoint without one is an error, and
    /// then the scaler is unchanged.
    pub fn restore_scaler(&self, scaler: &mut crate::amp::GradScaler) -> Result<()> {
        match &self.scaler {
            Some(st) => scaler.load_state_dict(st),
            None => Err(Error::StateDict(
                "missing key scaler.scale (the checkpoint has no gradient scaler)".into(),
            )),
        }
    }

    /// Writes the checkpoint to `path`, atomically: on any error the previous file is
    /// left as it was.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with(path.as_ref(), &mut |f, d| std::io::Write::write_all(f, d))
    }

    /// [`Checkpoint::save`] with the bytes written by `write` (a seam for tests).
    #[doc(hidden)]
    pub fn save_with(
        &self,
        path: &Path,
        write: &mut dyn FnMut(&mut File, &[u8]) -> std::io::Result<()>,
    ) -> Result<()> {
        let mut tensors = Vec::with_capacity(self.model.len() + self.optimizer.tensors.len());
        for (n, t) in &self.model {
            tensors.push((format!("model.{n}"), t.clone()));
        }
        for (n, t) in &self.optimizer.tensors {
            tensors.push((format!("optimizer.{n}"), t.clone()));
        }
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("format_version".to_string(), CHECKPOINT_VERSION.to_string());
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert("epoch".to_string(), self.epoch.to_string());
        meta.insert("rng.seed".to_string(), self.rng.seed.to_string());
        meta.insert("rng.offset".to_string(), self.rng.offset.to_string());
        for (n, v) in &self.optimizer.scalars {
            meta.insert(format!("optimizer.{n}"), v.to_string());
        }
        for (n, v) in self.scaler.iter().flat_map(|s| &s.scalars) {
            meta.insert(format!("scaler.{n}"), v.to_string());
        }
        if let Some(s) = &self.scheduler {
            meta.insert(
                "scheduler.base_lrs.0".to_string(),
                Scalar::F64(s.base_lr).to_string(),
            );
            meta.insert("scheduler.last_epoch".to_string(), s.last_epoch.to_string());
        }
        let bytes = encode_safetensors(&tensors, Some(meta), path)?;
        write_atomic_with(path, &bytes, write)
    }

    /// Reads a checkpoint (onto the host). A file that is not a wgrad checkpoint, comes
    /// from a newer format, or lacks or has unknown entries is an error naming them.
    pub fn read(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let (tensors, mut meta) = read_with_metadata(path, &Device::Cpu)?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(format_err(
                path,
                format!(
                    "not a wgrad checkpoint (its metadata lacks format = {FORMAT}); a model \
                     file loads with io::load"
                ),
            ));
        }
        meta.remove("format");
        let mut take = |key: &str| -> Result<String> {
            meta.remove(key)
                .ok_or_else(|| format_err(path, format!("missing key {key}")))
        };
        let number = |key: &str, text: String| -> Result<u64> {
            text.parse::<u64>()
                .map_err(|_| format_err(path, format!("{key}: {text:?} is not a count")))
        };
        let version = number("format_version", take("format_version")?)?;
        if version > u64::from(CHECKPOINT_VERSION) || version == 0 {
            return Err(format_err(
                path,
                format!(
                    "checkpoint format_version {version}; this wgrad reads 1 to {CHECKPOINT_VERSION}"
                ),
            ));
        }
        let step = number("step", take("step")?)?;
        let epoch = number("epoch", take("epoch")?)?;
        let rng = RngKey {
            seed: number("rng.seed", take("rng.seed")?)?,
            offset: number("rng.offset", take("rng.offset")?)?,
        };
        let scheduler = match (
            meta.remove("scheduler.base_lrs.0"),
            meta.remove("scheduler.last_epoch"),
        ) {
            (None, None) => None,
            (Some(lr), Some(e)) => Some(SchedulerState {
                base_lr: lr.parse::<f64>().map_err(|_| {
                    format_err(
                        path,
                        format!("scheduler.base_lrs.0: {lr:?} is not a number"),
                    )
                })?,
                last_epoch: number("scheduler.last_epoch", e)?,
            }),
            (None, Some(_)) => {
                return Err(format_err(path, "missing key scheduler.base_lrs.0"));
            }
            (Some(_), None) => {
                return Err(format_err(path, "missing key scheduler.last_epoch"));
            }
        };
        let mut optimizer = OptimizerState::default();
        let mut scaler: Option<OptimizerState> = None;
        let mut rest: Vec<(String, String)> = meta.into_iter().collect();
        rest.sort();
        for (key, text) in rest {
            let parse = || {
                Scalar::parse(&text)
                    .ok_or_else(|| format_err(path, format!("{key}: {text:?} is not a value")))
            };
            if let Some(name) = key.strip_prefix("optimizer.") {
                optimizer.scalar(name, parse()?);
            } else if let Some(name) = key.strip_prefix("scaler.") {
                scaler
                    .get_or_insert_with(Default::default)
                    .scalar(name, parse()?);
            } else {
                return Err(format_err(path, format!("unexpected key {key}")));
            }
        }
        let mut model = Vec::new();
        for (key, t) in tensors {
            if let Some(name) = key.strip_prefix("model.") {
                model.push((name.to_string(), t));
            } else if let Some(name) = key.strip_prefix("optimizer.") {
                optimizer.tensor(name, t);
            } else {
                return Err(format_err(path, format!("unexpected key {key}")));
            }
        }
        Ok(Checkpoint {
            model,
            optimizer,
            scheduler,
            rng,
            step,
            epoch,
            scaler,
        })
    }

    /// Checks that the checkpoint fits `model`, `optimizer` and `scheduler` (every key,
    /// shape and dtype, the hyper-parameters' domains) without changing anything. The
    /// error lists every problem, with its key as stored in the file
    /// (`missing key model.2.weight`, `unexpected key optimizer.state.4.exp_avg`).
    pub fn check(
        &self,
        model: &dyn Module,
        optimizer: &dyn Optimizer,
        scheduler: Option<&dyn StatefulScheduler>,
    ) -> Result<()> {
        let mut problems = Vec::new();
        let own = model.state_dict();
        for (name, t) in &own {
            match self.model.iter().find(|(n, _)| n == name) {
                None => problems.push(format!("missing key model.{name}")),
                Some((_, s)) if s.shape() != t.shape() || s.dtype() != t.dtype() => {
                    problems.push(format!(
                        "model.{name}: {:?} {:?} in the checkpoint, {:?} {:?} in the model",
                        s.dtype(),
                        s.shape(),
                        t.dtype(),
                        t.shape()
                    ))
                }
                Some(_) => {}
            }
        }
        for (name, _) in &self.model {
            if !own.iter().any(|(n, _)| n == name) {
                problems.push(format!("unexpected key model.{name}"));
            }
        }
        match optimizer.check_state_dict(&self.optimizer) {
            Ok(()) => {}
            Err(Error::StateDict(msg)) => problems.extend(
                msg.split("; ")
                    .map(|p| prefix_key(p, "optimizer.").to_string()),
            ),
            Err(e) => problems.push(format!("optimizer: {e}")),
        }
        match (scheduler, &self.scheduler) {
            (Some(_), Some(s)) => {
                if let Err(e) = s.check() {
                    problems.push(format!("scheduler: {e}"));
                }
            }
            (None, None) => {}
            (Some(_), None) => problems
                .push("missing key scheduler.last_epoch (the checkpoint has no schedule)".into()),
            (None, Some(_)) => problems.push(
                "unexpected key scheduler.last_epoch (the checkpoint has a schedule; pass the \
                 scheduler to restore it)"
                    .into(),
            ),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::StateDict(problems.join("; ")))
        }
    }

    /// Restores the checkpoint into `model`, `optimizer`, `scheduler` and `device`'s
    /// random generator. Everything is checked first ([`Checkpoint::check`]): on an error
    /// nothing has changed. Tensors are copied in place, so parameter handles stay valid,
    /// and may move between devices (a checkpoint saved on the CPU resumes on a GPU).
    pub fn restore(
        &self,
        model: &dyn Module,
        optimizer: &mut dyn Optimizer,
        scheduler: Option<&mut dyn StatefulScheduler>,
        device: &Device,
    ) -> Result<()> {
        self.check(model, optimizer, scheduler.as_deref())?;
        // Move every tensor to where it goes before changing anything: running out of
        // device memory part-way then leaves the model and optimizer as they were (the
        // loads below only copy in place).
        let own = model.state_dict();
        let mut staged_model = Vec::with_capacity(self.model.len());
        for (name, s) in &self.model {
            let like = own.iter().find(|(n, _)| n == name).map(|(_, t)| t);
            staged_model.push((
                name.clone(),
                match like {
                    Some(t) => crate::nn::stage_for(s, t)?,
                    None => s.clone(),
                },
            ));
        }
        let staged_optimizer = OptimizerState {
            tensors: self
                .optimizer
                .tensors
                .iter()
                .map(|(n, t)| Ok((n.clone(), t.to(device)?)))
                .collect::<Result<_>>()?,
            scalars: self.optimizer.scalars.clone(),
        };
        model.load_state_dict(&staged_model)?;
        optimizer.load_state_dict(&staged_optimizer)?;
        if let (Some(s), Some(state)) = (scheduler, &self.scheduler) {
            s.load_scheduler_state(state)?;
        }
        device.set_rng_state(self.rng);
        Ok(())
    }
}

/// `problem` with the key it names (`missing key X`, `unexpected key X`, `X: ...`)
/// prefixed by `prefix`.
fn prefix_key(problem: &str, prefix: &str) -> String {
    for lead in ["missing key ", "unexpected key "] {
        if let Some(key) = problem.strip_prefix(lead) {
            return format!("{lead}{prefix}{key}");
        }
    }
    if problem.starts_with("state.") || problem.starts_with("param_groups.") {
        return format!("{prefix}{problem}");
    }
    format!("optimizer: {problem}")
}

/// Saves a checkpoint of `model`, `optimizer`, `scheduler`, `device`'s random generator
/// and the caller's `step` and `epoch` to `path`, atomically ([`Checkpoint`]).
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: &dyn Optimizer,
    scheduler: Option<&dyn StatefulScheduler>,
    device: &Device,
    step: u64,
    epoch: u64,
) -> Result<()> {
    Checkpoint::capture(model, optimizer, scheduler, device, step, epoch)?.save(path)
}

/// Loads a checkpoint from `path` into `model`, `optimizer`, `scheduler` and `device`'s
/// random generator, and returns it (its `step` and `epoch` say where to resume). The
/// whole file is checked first: on any error (a damaged file, another architecture, a
/// missing or unexpected key, which the message names) nothing has changed.
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: &mut dyn Optimizer,
    scheduler: Option<&mut dyn StatefulScheduler>,
    device: &Device,
) -> Result<Checkpoint> {
    let path = path.as_ref();
    let ck = Checkpoint::read(path)?;
    ck.restore(model, optimizer, scheduler, device)
        .map_err(|e| match e {
            Error::StateDict(msg) => {
                format_err(path, format!("does not fit the training state: {msg}"))
            }
            other => other,
        })?;
    Ok(ck)
}
