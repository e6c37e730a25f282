//! The MPI transport (cargo feature `mpi`): rsmpi over the system's MPI library.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::environment::{Threading, Universe};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Collective;
use crate::error::{Error, Result};

/// MPI's world communicator. Initialised once per process by [`Mpi::init`] (through
/// [`super::init`]); MPI is finalised when it is dropped, so keep it (or the
/// `Arc<dyn Collective>` holding it) alive until the end of `main`. A program started
/// without `mpirun` is a single rank.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Serialises the calls (MPI is initialised with `MPI_THREAD_SERIALIZED`).
    lock: Mutex<()>,
    _universe: Universe,
}

/// True between [`Mpi::init`] and the drop of the `Mpi` (MPI_Finalize): the panic
/// hook may call MPI_Abort only then.
static LIVE: AtomicBool = AtomicBool::new(false);

// SAFETY: MPI is initialised with MPI_THREAD_SERIALIZED, which allows calls from any
// thread as long as no two run at once; every call below holds `lock`.
unsafe impl Send for Mpi {}
unsafe impl Sync for Mpi {}

impl Mpi {
    /// Initialises MPI and installs a panic hook that aborts the whole job (a rank that
    /// panics would otherwise leave the others waiting in a collective forever). The
    /// hook aborts on any panic while MPI runs, even one a `catch_unwind` would catch:
    /// a rank that stops taking part in collectives hangs the job.
    pub fn init() -> Result<Mpi> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| {
                Error::Distributed("MPI is already initialised in this process".into())
            })?;
        if threading < Threading::Serialized {
            return Err(Error::Distributed(format!(
                "the MPI library offers {threading:?} threading; wgrad needs Serialized"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if size > 1 {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                previous(info);
                if LIVE.load(Ordering::SeqCst) {
                    eprintln!("wgrad: rank {rank} of {size} panicked; aborting the MPI job");
                    SimpleCommunicator::world().abort(101);
                }
            }));
        }
        LIVE.store(true, Ordering::SeqCst);
        Ok(Mpi {
            world,
            rank,
            size,
            lock: Mutex::new(()),
            _universe: universe,
        })
    }

    fn serial(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Mpi {
    /// Finalises MPI (the universe drops after this). Drop it on the thread that
    /// created it (MPI's rule), normally at the end of `main`.
    fn drop(&mut self) {
        LIVE.store(false, Ordering::SeqCst);
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        if self.size == 1 || buf.is_empty() {
            return Ok(());
        }
        let _g = self.serial();
        // MPI counts are C ints: at most 2^31 - 1 elements a call.
        let send = buf.to_vec();
        for (s, r) in send
            .chunks(i32::MAX as usize)
            .zip(buf.chunks_mut(i32::MAX as usize))
        {
            self.world.all_reduce_into(s, r, SystemOperation::sum());
        }
        Ok(())
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        if root >= self.size {
            return crate::error::arg_err(
                "broadcast",
                format!("root {root} of {} ranks", self.size),
            );
        }
        if self.size == 1 || buf.is_empty() {
            return Ok(());
        }
        let _g = self.serial();
        let from = self.world.process_at_rank(root as i32);
        for part in buf.chunks_mut(i32::MAX as usize) {
            from.broadcast_into(part);
        }
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        let _g = self.serial();
        self.world.barrier();
        Ok(())
    }
    fn describe(&self) -> String {
        format!("MPI, rank {} of {}", self.rank, self.size)
    }
}
