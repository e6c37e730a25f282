//! PyTorch's `DistributedDataParallel`: the same model on every rank, gradients averaged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Collective;
use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::{DType, Tensor};

/// PyTorch's default bucket size.
const DEFAULT_BUCKET_MB: f64 = 25.0;

/// Wraps a [`Module`] for data-parallel training, as PyTorch's
/// `DistributedDataParallel`: at construction every rank takes rank 0's parameters and
/// buffers; after each backward, [`DistributedDataParallel::sync_gradients`] (or
/// [`DistributedDataParallel::backward`], which runs both) replaces every gradient by
/// its mean over the ranks, so the optimizer then takes the same step everywhere.
///
/// The gradients travel in buckets of about 25 MiB (PyTorch's default; see
/// [`DistributedDataParallel::bucket_cap_mb`]): each bucket's gradients are joined into
/// one tensor on their device (buffer copies), read back once, all-reduced on the
/// host, uploaded once and copied back into the gradients. A parameter that has no
/// gradient on this rank but has one on another contributes zeros; one unused on
/// every rank keeps no gradient (one small all-reduce of flags per call decides).
/// Unlike PyTorch the reduction runs after the backward, not overlapped with it.
///
/// As a [`Module`] it is its model under the name `module` (PyTorch's names:
/// `module.0.weight`).
#[derive(Module)]
pub struct DistributedDataParallel<M: Module> {
    module: M,
    #[module(skip)]
    comm: Arc<dyn Collective>,
    bucket_elems: usize,
    #[module(skip)]
    stats: Mutex<SyncStats>,
}

/// Where [`DistributedDataParallel::sync_gradients`] spent its time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncStats {
    /// Calls.
    pub calls: u64,
    /// Buckets reduced.
    pub buckets: u64,
    /// Gradient elements reduced.
    pub elements: u64,
    /// Whole time in `sync_gradients` (joins, readbacks, all-reduce, uploads, copies).
    pub total: Duration,
    /// The part inside the collective's all-reduce.
    pub all_reduce: Duration,
}

impl<M: Module> DistributedDataParallel<M> {
    /// Wraps `module`, broadcasting rank 0's parameters and buffers to every rank.
    pub fn new(module: M, comm: Arc<dyn Collective>) -> Result<Self> {
        let ddp = DistributedDataParallel {
            module,
            comm,
            bucket_elems: (DEFAULT_BUCKET_MB * (1 << 20) as f64 / 4.0) as usize,
            stats: Mutex::new(SyncStats::default()),
        };
        ddp.broadcast_state()?;
        Ok(ddp)
    }

    /// Gradients per bucket, in MiB of `f32` (PyTorch's `bucket_cap_mb`; at least one
    /// tensor per bucket).
    pub fn bucket_cap_mb(mut self, mb: f64) -> Self {
        self.bucket_elems = ((mb.max(0.0) * (1 << 20) as f64) / 4.0) as usize;
        self
    }

    /// The wrapped model.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The wrapped model, unwrapped.
    pub fn into_inner(self) -> M {
        self.module
    }

    /// The transport.
    pub fn comm(&self) -> &Arc<dyn Collective> {
        &self.comm
    }

    /// Where the gradient synchronisation spent its time so far.
    pub fn stats(&self) -> SyncStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Clears [`DistributedDataParallel::stats`].
    pub fn reset_stats(&self) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = SyncStats::default();
    }

    /// Copies rank 0's parameters and buffers to every rank (done by `new`).
    pub fn broadcast_state(&self) -> Result<()> {
        let mut state: Vec<Tensor> = self.module.parameters();
        state.extend(self.module.named_buffers().into_iter().map(|(_, t)| t));
        check_f32(&state)?;
        for bucket in buckets(&state, self.bucket_elems) {
            let mut host = join(bucket)?;
            self.comm.broadcast(&mut host, 0)?;
            split_into(&host, bucket)?;
        }
        Ok(())
    }

    /// `loss.backward()`, then [`DistributedDataParallel::sync_gradients`].
    pub fn backward(&self, loss: &Tensor) -> Result<()> {
        loss.backward()?;
        self.sync_gradients()
    }

    /// Replaces every parameter's gradient by its mean over the ranks (every rank must
    /// call it, after its backward and before its optimizer step).
    pub fn sync_gradients(&self) -> Result<()> {
        let start = Instant::now();
        let params = self.module.parameters();
        check_f32(&params)?;
        if self.comm.world_size() == 1 {
            // The mean over one rank is the gradient itself: nothing to move.
            let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.calls += 1;
            s.total += start.elapsed();
            return Ok(());
        }
        // Which parameters got a gradient on some rank: those every rank reduces (a
        // rank that did not use one adds zeros); one unused everywhere keeps no
        // gradient, as in a single process (the optimizer then skips it).
        let mut used: Vec<f32> = params
            .iter()
            .map(|p| if p.grad().is_some() { 1.0 } else { 0.0 })
            .collect();
        self.comm.all_reduce_sum(&mut used)?;
        let grads: Vec<Tensor> = params
            .iter()
            .zip(&used)
            .filter(|(_, &u)| u > 0.0)
            .map(|(p, _)| match p.grad() {
                Some(g) => Ok(g),
                None => {
                    let z = p.zeros_like()?;
                    p.set_grad(Some(z.clone()));
                    Ok(z)
                }
            })
            .collect::<Result<_>>()?;
        let scale = 1.0 / self.comm.world_size() as f32;
        let (mut reduce, mut count, mut elements) = (Duration::ZERO, 0, 0);
        for bucket in buckets(&grads, self.bucket_elems) {
            let mut host = join(bucket)?;
            let t = Instant::now();
            self.comm.all_reduce_sum(&mut host)?;
            reduce += t.elapsed();
            if scale != 1.0 {
                host.iter_mut().for_each(|v| *v *= scale);
            }
            split_into(&host, bucket)?;
            count += 1;
            elements += host.len() as u64;
        }
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.calls += 1;
        s.buckets += count;
        s.elements += elements;
        s.all_reduce += reduce;
        s.total += start.elapsed();
        Ok(())
    }
}

fn check_f32(ts: &[Tensor]) -> Result<()> {
    match ts.iter().find(|t| t.dtype() != DType::F32) {
        Some(t) => Err(Error::Distributed(format!(
            "data-parallel training moves f32 tensors; found {:?} {:?}",
            t.dtype(),
            t.shape()
        ))),
        None => Ok(()),
    }
}

/// Consecutive runs of `ts` of at most `cap` elements (at least one tensor each).
fn buckets(ts: &[Tensor], cap: usize) -> Vec<&[Tensor]> {
    let mut out = Vec::new();
    let (mut first, mut size) = (0, 0);
    for (i, t) in ts.iter().enumerate() {
        if i > first && size + t.numel() > cap {
            out.push(&ts[first..i]);
            first = i;
            size = 0;
        }
        size += t.numel();
    }
    if first < ts.len() {
        out.push(&ts[first..]);
    }
    out
}

/// The elements of `ts`, one after the other, on the host: one join on the device and
/// one readback.
fn join(ts: &[Tensor]) -> Result<Vec<f32>> {
    no_grad(|| {
        let flat: Vec<Tensor> = ts
            .iter()
            .map(|t| t.detach().reshape(&[t.numel()]))
            .collect::<Result<_>>()?;
        Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0)?.to_vec::<f32>()
    })
}

/// Writes `host` back into `ts` in place (one upload, then a copy per tensor).
fn split_into(host: &[f32], ts: &[Tensor]) -> Result<()> {
    let Some(first) = ts.first() else {
        return Ok(());
    };
    no_grad(|| {
        let all = Tensor::from_vec(host.to_vec(), &[host.len()], first.device())?;
        let mut at = 0;
        for t in ts {
            let n = t.numel();
            t.copy_from(&all.narrow(0, at, n)?.reshape(t.shape())?)?;
            at += n;
        }
        Ok(())
    })
}

/// What the derived `Module` impl calls.
impl<M: Module> DistributedDataParallel<M> {
    /// The wrapped model's output.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.module.forward(x)
    }
}
