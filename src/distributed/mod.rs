//! Data-parallel training across processes and machines.
//!
//! No vendor-neutral GPU collective library exists (NCCL is NVIDIA's, RCCL AMD's, and
//! neither takes a wgpu buffer), so wgrad follows the pattern HPC clusters and
//! Horovod-style training use: read the gradients back to the host, all-reduce them
//! with MPI, upload the result. [`DistributedDataParallel`] does that in buckets (one
//! readback and one upload per bucket, not per parameter); [`DistributedSampler`] gives
//! each rank a disjoint shard of every epoch.
//!
//! A [`Collective`] is the transport: [`SingleProcess`] (the default, one rank) or, with
//! the cargo feature `mpi`, `Mpi` (the system's MPI library through rsmpi). [`init`]
//! picks: MPI when the feature is on (a program started without `mpirun` is then a
//! single rank), else a single process.
//!
//! ```no_run
//! use wgrad::distributed::{self, DistributedDataParallel};
//! use wgrad::prelude::*;
//! # fn main() -> wgrad::Result<()> {
//! let comm = distributed::init()?;                   // rank, world size
//! let dev = distributed::device_for_rank(comm.as_ref()); // one GPU per rank
//! let model = Sequential::new().add(Linear::new(&dev, 64, 10));
//! let ddp = DistributedDataParallel::new(model, comm.clone())?; // rank 0's weights everywhere
//! let mut opt = Sgd::new(ddp.parameters(), 0.1);
//! # let x = Tensor::zeros(&[8, 64], &dev)?;
//! # let y = Tensor::zeros(&[8], &dev)?.to_dtype(DType::U32)?;
//! let loss = ddp.forward(&x)?.cross_entropy(&y)?;
//! opt.zero_grad();
//! ddp.backward(&loss)?;                              // backward, then the averaged gradients
//! opt.step()?;                                       // the same step on every rank
//! # Ok(()) }
//! ```

mod ddp;
#[cfg(feature = "mpi")]
mod mpi;
mod sampler;

use std::sync::Arc;

pub use ddp::{DistributedDataParallel, SyncStats};
#[cfg(feature = "mpi")]
pub use mpi::Mpi;
pub use sampler::DistributedSampler;

use crate::device::Device;
use crate::error::Result;

/// The collective operations data-parallel training needs, over the ranks of one job.
/// Every rank must make the same calls in the same order (as in MPI).
pub trait Collective: Send + Sync {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world_size(&self) -> usize;
    /// This process's rank among the ranks on its machine (to pick its GPU).
    fn local_rank(&self) -> usize {
        local_rank_from_env().unwrap_or(self.rank())
    }
    /// Replaces `buf` on every rank by the element-wise sum over the ranks.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// Replaces `buf` on every rank by `root`'s.
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// A short description for logs (`"single process"`, `"MPI, 4 ranks"`).
    fn describe(&self) -> String;
}

/// One process, no communication: the default, and what a program built without the
/// `mpi` feature uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _buf: &mut [f32], root: usize) -> Result<()> {
        if root != 0 {
            return crate::error::arg_err("broadcast", format!("root {root} of a single process"));
        }
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "single process".into()
    }
}

/// The transport of this job: with the `mpi` feature, MPI (initialised here, once per
/// process; a program started without `mpirun` is one rank, and a rank that panics
/// ends the whole job instead of leaving the others waiting); without it, a single
/// process.
pub fn init() -> Result<Arc<dyn Collective>> {
    #[cfg(feature = "mpi")]
    {
        Ok(Arc::new(Mpi::init()?))
    }
    #[cfg(not(feature = "mpi"))]
    {
        Ok(Arc::new(SingleProcess))
    }
}

/// The local rank the launcher set: `WGRAD_LOCAL_RANK`, else Open MPI's
/// `OMPI_COMM_WORLD_LOCAL_RANK`, MPICH's `MPI_LOCALRANKID`, Slurm's `SLURM_LOCALID`.
pub fn local_rank_from_env() -> Option<usize> {
    [
        "WGRAD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

/// The device of this rank: one GPU per rank, chosen by local rank among the machine's
/// hardware GPUs (rank `r` gets GPU `r mod count`, a separate device per rank). On a
/// machine without a hardware GPU every rank uses the CPU backend, unless
/// `WGRAD_DDP_DEVICE=gpu` asks for the default adapter (ranks then share it, as tests
/// share lavapipe). `WGRAD_DDP_DEVICE=cpu` forces the CPU.
pub fn device_for_rank(comm: &dyn Collective) -> Device {
    match std::env::var("WGRAD_DDP_DEVICE").as_deref() {
        Ok("cpu") => return Device::cpu(),
        Ok("gpu") => return Device::gpu().unwrap_or(Device::Cpu),
        _ => {}
    }
    Device::hardware_gpu(comm.local_rank()).unwrap_or(Device::Cpu)
}
