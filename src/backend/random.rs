//! Philox4x32-10, the counter-based generator behind every random op, which both
//! backends read (the CPU's draws in `cpu/random.rs`). The GPU runs the
//! same function in `shaders/random.wgsl`, so a seeded draw gives the same numbers on
//! both backends: element `i` of draw `offset` under `seed` is `philox(seed, [i, 0, offset])`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The seed every generator starts from until `manual_seed` is called.
pub const DEFAULT_SEED: u64 = 0x005E_ED0F_D1CE;

/// A device's random generator: a seed and the number of draws made from it.
#[derive(Debug)]
pub(crate) struct RngState {
    seed: AtomicU64,
    offset: AtomicU64,
}

impl RngState {
    pub(crate) const fn new(seed: u64) -> Self {
        RngState {
            seed: AtomicU64::new(seed),
            offset: AtomicU64::new(0),
        }
    }
    pub(crate) fn reseed(&self, seed: u64) {
        self.seed.store(seed, Ordering::SeqCst);
        self.offset.store(0, Ordering::SeqCst);
    }
    pub(crate) fn get(&self) -> RngKey {
        RngKey {
            seed: self.seed.load(Ordering::SeqCst),
            offset: self.offset.load(Ordering::SeqCst),
        }
    }
    pub(crate) fn set(&self, key: RngKey) {
        self.seed.store(key.seed, Ordering::SeqCst);
        self.offset.store(key.offset, Ordering::SeqCst);
    }
    pub(crate) fn next(&self) -> RngKey {
        RngKey {
            seed: self.seed.load(Ordering::SeqCst),
            offset: self.offset.fetch_add(1, Ordering::SeqCst),
        }
    }
}

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The four 32-bit words Philox4x32-10 makes for one counter under one key.
pub fn philox4x32(key: [u32; 2], counter: [u32; 4]) -> [u32; 4] {
    let (mut k0, mut k1) = (key[0], key[1]);
    let mut c = counter;
    for _ in 0..10 {
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0];
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    c
}

/// Where a random draw reads its numbers: a seed and a per-draw stream offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngKey {
    /// The generator's seed.
    pub seed: u64,
    /// Which draw of that seed this is.
    pub offset: u64,
}

impl RngKey {
    /// The four words for element `i` of this draw.
    pub fn words(&self, i: usize) -> [u32; 4] {
        philox4x32(
            [self.seed as u32, (self.seed >> 32) as u32],
            [
                i as u32,
                ((i as u64) >> 32) as u32,
                self.offset as u32,
                (self.offset >> 32) as u32,
            ],
        )
    }
    /// The parameter words a GPU kernel needs to reproduce this key.
    pub fn gpu_params(&self) -> [u32; 4] {
        [
            self.seed as u32,
            (self.seed >> 32) as u32,
            self.offset as u32,
            (self.offset >> 32) as u32,
        ]
    }
}

/// A uniform number in [0, 1) from the top 24 bits of a word (exact in `f32`).
pub fn uniform01(w: u32) -> f64 {
    (w >> 8) as f64 * (1.0 / 16_777_216.0)
}

/// A standard normal from two words by Box-Muller (the first uniform is kept in (0, 1]).
pub fn normal(w0: u32, w1: u32) -> f64 {
    let u1 = ((w0 >> 8) as f64 + 1.0) * (1.0 / 16_777_216.0);
    let u2 = uniform01(w1);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_published_known_answer() {
        // Random123's known-answer test vectors for philox4x32-10.
        assert_eq!(
            philox4x32([0, 0], [0, 0, 0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32([0xffff_ffff, 0xffff_ffff], [0xffff_ffff; 4]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
    }
}

/// Which distribution a random draw takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dist {
    /// Uniform on [0, 1).
    Uniform,
    /// Standard normal (Box-Muller from two words).
    Normal,
}

/// An op that multiplies its input by a random mask made from a draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Masked {
    /// Inverted dropout: keep where the top 24 bits of the first word reach `threshold`,
    /// scaling kept values by `scale`.
    Dropout {
        /// `ceil(p 2^24)`.
        threshold: u32,
        /// `1 / (1 - p)`.
        scale: f32,
    },
    /// `relu(x + sigma eps)` with `eps ~ N(0, 1)`; the mask is 1 where that is positive.
    NoisyRelu {
        /// The noise's standard deviation.
        sigma: f32,
    },
}
