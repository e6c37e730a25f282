//! The plan of a batch normalisation, shared by both backends: the input viewed as
//! `[N, C, L]`, the flags of the call and how the GPU splits each channel into blocks.

use crate::backend::gpu::MAX_GROUP_ELEMENTS;
use crate::error::{arg_err, Result};

// Flags (the kernels' P[5]); the shader names them BN_*.
/// A weight is given.
pub(crate) const WEIGHT: u32 = 1;
/// A bias is given.
pub(crate) const BIAS: u32 = 2;
/// Training with running statistics to update.
pub(crate) const RUNNING: u32 = 4;
/// Training with a `num_batches_tracked` counter to increase.
pub(crate) const COUNT: u32 = 8;
/// Training mode (the batch's statistics).
pub(crate) const TRAINING: u32 = 16;

/// Threads of the reducing workgroups.
pub(crate) const THREADS: usize = 256;
/// Fewest elements of a block when a channel is split (16 per thread).
const MIN_BLOCK: usize = 4096;
/// Workgroups a split aims for (as the reductions do).
const FILL: usize = 512;

/// The input's `[N, C, L]` view and how the GPU splits each channel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Elements per image and channel.
    pub l: usize,
    /// Elements of one block (a multiple of 256, at most 16,384).
    pub block: usize,
    /// Blocks per channel.
    pub blocks: usize,
    /// The call's flags ([`WEIGHT`], [`BIAS`], [`RUNNING`], [`COUNT`], [`TRAINING`]).
    pub flags: u32,
    /// Variance epsilon.
    pub eps: f32,
    /// Running statistics' momentum.
    pub momentum: f32,
}

impl Plan {
    /// Elements per channel, N L.
    pub fn m(&self) -> usize {
        self.n * self.l
    }

    /// Elements, N C L.
    pub fn numel(&self) -> usize {
        self.n * self.c * self.l
    }

    /// True in training mode.
    pub fn training(&self) -> bool {
        self.flags & TRAINING != 0
    }
}

/// Splits each channel's `m` values into blocks: one block when they fit a workgroup
/// (16,384 values), else blocks of 16,384 halved (down to 4,096) until the grid has 512
/// workgroups. `forced` (a multiple of 256 up to 16,384) is for tests of the split path.
pub(crate) fn plan_blocks(
    op: &'static str,
    c: usize,
    m: usize,
    forced: Option<usize>,
) -> Result<(usize, usize)> {
    let block = match forced {
        Some(b) => {
            if b == 0 || b % THREADS != 0 || b > MAX_GROUP_ELEMENTS {
                return arg_err(
                    op,
                    format!(
                        "a block is a multiple of {THREADS} up to {MAX_GROUP_ELEMENTS}, got {b}"
                    ),
                );
            }
            b
        }
        None if m <= MAX_GROUP_ELEMENTS => MAX_GROUP_ELEMENTS,
        None => {
            let mut b = MAX_GROUP_ELEMENTS;
            while b > MIN_BLOCK && c * m.div_ceil(b) < FILL {
                b /= 2;
            }
            b
        }
    };
    let blocks = m.div_ceil(block).max(1);
    if blocks > MAX_GROUP_ELEMENTS {
        return arg_err(
            op,
            format!(
                "{m} values per channel are more than one pass can reduce ({} at most)",
                MAX_GROUP_ELEMENTS * block
            ),
        );
    }
    Ok((block, blocks))
}
