//! The geometry of the row normalisations (`layer_norm`, `rms_norm`, `group_norm`),
//! which both backends read. Each is one normalisation of rows of `D` contiguous
//! elements followed by an affine map:
//!
//! - `layer_norm` and `rms_norm` over a trailing `normalized_shape`: rows of
//!   `D = prod(normalized_shape)`, the weight and bias indexed by the position in the
//!   row (`groups = 1`, `l = 1`);
//! - `group_norm` of `[N, C, L]` in `G` groups: rows of `D = (C / G) L`, row
//!   `r = n G + g`, the weight and bias indexed by the channel `g (C / G) + j / L`
//!   (`groups = G`, `l = L`).
//!
//! Both cases are one formula: element `j` of row `r` reads affine value
//! `((r mod groups) D + j) / l`. `rms_norm` is the same without the mean (the flag
//! [`RMS`]).

use crate::backend::gpu::MAX_GROUP_ELEMENTS;

/// Normalise by the root mean square, without subtracting the mean.
pub(crate) const RMS: u32 = 1;
/// A weight is given.
pub(crate) const WEIGHT: u32 = 2;
/// A bias is given.
pub(crate) const BIAS: u32 = 4;

/// Threads of every normalisation workgroup.
pub(crate) const THREADS: usize = 256;
/// The widest tile of affine values an affine backward workgroup sums (`l = 1`).
const MAX_COLS: usize = 32;
/// The narrowest tile summed whole in one dispatch (`l = 1`): 8 floats of a row, one
/// 32-byte memory sector. Columns too long for it are summed in chunks.
const MIN_WHOLE_COLS: usize = 8;
/// The longest row one workgroup normalises (64 elements per thread); longer rows are
/// normalised by a composition of reductions and elementwise ops (`src/ops/norm.rs`).
pub(crate) const MAX_ROW: usize = MAX_GROUP_ELEMENTS;

/// A row normalisation's geometry and options.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormGeo {
    /// Rows `R`.
    pub rows: usize,
    /// Elements per row `D`.
    pub d: usize,
    /// Row `r`'s affine values start at `(r mod groups) D / l`.
    pub groups: usize,
    /// Consecutive elements of a row that share one affine value (divides `D`).
    pub l: usize,
    /// [`RMS`], [`WEIGHT`], [`BIAS`].
    pub flags: u32,
    /// Added to the variance (or mean square) before the square root.
    pub eps: f64,
}

impl NormGeo {
    /// Elements, `R D`.
    pub fn numel(&self) -> usize {
        self.rows * self.d
    }

    /// The number of affine values (the weight's and bias's elements): `groups D / l`.
    pub fn affine(&self) -> usize {
        self.groups * self.d / self.l
    }

    /// Elements that share one affine value: `(R / groups) l`.
    pub fn per_affine(&self) -> usize {
        self.rows / self.groups * self.l
    }

    /// True for `rms_norm`.
    pub fn rms(&self) -> bool {
        self.flags & RMS != 0
    }

    /// The affine value of element `j` of row `r`.
    pub fn affine_of(&self, r: usize, j: usize) -> usize {
        ((r % self.groups) * self.d + j) / self.l
    }

    /// Element `k` (of [`per_affine`](Self::per_affine)) of those sharing affine value
    /// `a`: its row and its offset in the input.
    pub fn element_of(&self, a: usize, k: usize) -> (usize, usize) {
        let per_row = self.d / self.l;
        let (n, li) = (k / self.l, k % self.l);
        let r = n * self.groups + a / per_row;
        (r, r * self.d + (a % per_row) * self.l + li)
    }

    /// Threads per row of the per-row kernels: one element each for rows of up to 256,
    /// at least 32 (several rows share a workgroup of 256 when they are short).
    pub fn threads_per_row(&self) -> usize {
        self.d.next_power_of_two().clamp(32, THREADS)
    }

    /// Affine values per workgroup of the affine backward. Where neighbouring affine
    /// values are neighbouring elements (`l = 1`: coalesced reads along a row), the
    /// widest tile of 32, 16 or 8 whose whole columns one workgroup sums (at most
    /// 16,384 elements, 64 per thread), so the sums take one dispatch: 8 values of a
    /// row are still one 32-byte read, and 128 affine values over 2,048 rows are 16
    /// workgroups. Longer columns take tiles of 32 summed in chunks. With `l > 1`, 1
    /// (neighbouring threads read neighbouring elements of one channel).
    pub fn cols(&self) -> usize {
        if self.l != 1 {
            return 1;
        }
        let whole = MAX_GROUP_ELEMENTS / self.per_affine().max(1);
        if whole >= MIN_WHOLE_COLS {
            1 << whole.min(MAX_COLS).ilog2()
        } else {
            MAX_COLS
        }
    }

    /// How the affine backward splits each affine value's elements: `(chunk,
    /// chunks)`, a workgroup summing at most 16,384 elements (64 per thread). Both
    /// backends return one partial sum per chunk, which the op adds when there are
    /// several (columns longer than a workgroup sums whole, see [`cols`](Self::cols)).
    pub fn chunks(&self) -> (usize, usize) {
        let chunk = MAX_GROUP_ELEMENTS / self.cols();
        (chunk, self.per_affine().div_ceil(chunk).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_norm_geometry_maps_elements_to_channels() {
        // [N = 2, C = 6, L = 3] in 3 groups: rows of 2 channels x 3 positions.
        let geo = NormGeo {
            rows: 6,
            d: 6,
            groups: 3,
            l: 3,
            flags: 0,
            eps: 0.0,
        };
        assert_eq!(geo.affine(), 6);
        assert_eq!(geo.per_affine(), 6);
        for r in 0..6 {
            for j in 0..6 {
                let (n, g) = (r / 3, r % 3);
                let c = g * 2 + j / 3;
                assert_eq!(geo.affine_of(r, j), c);
                let k = n * 3 + j % 3;
                assert_eq!(geo.element_of(c, k), (r, r * 6 + j));
            }
        }
    }

    #[test]
    fn the_affine_backward_sums_columns_of_up_to_2048_in_one_dispatch() {
        let geo = |rows: usize, d: usize, l: usize| NormGeo {
            rows,
            d,
            groups: 1,
            l,
            flags: WEIGHT | BIAS,
            eps: 1e-5,
        };
        // (rows, cols, chunks) for layer norm over 128 values.
        for (rows, cols, chunks) in [
            (1, 32, 1),
            (512, 32, 1),
            (520, 16, 1),
            (1024, 16, 1),
            (2048, 8, 1),
            (2049, 32, 5),
            (100_000, 32, 196),
        ] {
            let g = geo(rows, 128, 1);
            assert_eq!((g.cols(), g.chunks().1), (cols, chunks), "{rows} rows");
            // A workgroup never sums more than 16K elements.
            assert!(g.cols() * g.chunks().0 <= MAX_GROUP_ELEMENTS);
        }
        // The transformer's layer norms: 16 workgroups, one dispatch.
        let g = geo(2048, 128, 1);
        assert_eq!(g.affine().div_ceil(g.cols()) * g.chunks().1, 16);
        // A channel per workgroup where l > 1, chunked past 16K elements.
        assert_eq!(
            (geo(64, 300, 300).cols(), geo(64, 300, 300).chunks().1),
            (1, 2)
        );
    }
}
