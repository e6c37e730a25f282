//! PyTorch's `DistributedSampler`: each rank's disjoint shard of every epoch.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{arg_err, Result};

/// Which examples of a data set of `len` each of `world_size` ranks sees in an epoch, as
/// PyTorch's `torch.utils.data.DistributedSampler`: the indices (shuffled by `seed` and
/// the epoch, the same permutation on every rank) are padded by repeating from the
/// start to a multiple of the world size (or cut to one with `drop_last`), and rank `r`
/// takes every `world_size`-th index from `r`. So every rank has the same number of
/// examples (and of steps), the shards are disjoint, and together they cover every
/// example (plus the padding). Used by [`crate::data::DataLoader::distributed`], which
/// advances the epoch itself.
#[derive(Clone, Debug)]
pub struct DistributedSampler {
    len: usize,
    world_size: usize,
    rank: usize,
    shuffle: Option<u64>,
    drop_last: bool,
}

impl DistributedSampler {
    /// Rank `rank`'s shard of `len` examples over `world_size` ranks, in order.
    pub fn new(len: usize, world_size: usize, rank: usize) -> Result<DistributedSampler> {
        if world_size == 0 || rank >= world_size {
            return arg_err(
                "DistributedSampler",
                format!("rank {rank} of a world of {world_size}"),
            );
        }
        Ok(DistributedSampler {
            len,
            world_size,
            rank,
            shuffle: None,
            drop_last: false,
        })
    }

    /// Shuffles every epoch, seeded by `seed` and the epoch (identically on every rank).
    pub fn shuffle(mut self, seed: u64) -> DistributedSampler {
        self.shuffle = Some(seed);
        self
    }

    /// Drops the tail that does not divide evenly instead of padding.
    pub fn drop_last(mut self, on: bool) -> DistributedSampler {
        self.drop_last = on;
        self
    }

    /// The data set's length the sampler was made for.
    pub fn dataset_len(&self) -> usize {
        self.len
    }

    /// Examples per rank and epoch.
    pub fn num_samples(&self) -> usize {
        if self.drop_last {
            self.len / self.world_size
        } else {
            self.len.div_ceil(self.world_size)
        }
    }

    /// This rank's examples of epoch `epoch`, in order.
    pub fn indices(&self, epoch: u64) -> Vec<usize> {
        let mut all: Vec<usize> = (0..self.len).collect();
        if let Some(seed) = self.shuffle {
            all.shuffle(&mut StdRng::seed_from_u64(
                seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            ));
        }
        let total = self.num_samples() * self.world_size;
        if total <= all.len() {
            all.truncate(total);
        } else if !all.is_empty() {
            let missing = total - all.len();
            let pad: Vec<usize> = all.iter().cycle().take(missing).copied().collect();
            all.extend(pad);
        }
        all.into_iter()
            .skip(self.rank)
            .step_by(self.world_size)
            .collect()
    }
}
