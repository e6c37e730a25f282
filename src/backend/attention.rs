//! The geometry of scaled-dot-product attention that both backends read: the sizes of
//! `q [bh, L, E]`, `k [bh, S, E]`, `v [bh, S, Ev]`, where the mask's element for
//! (batch-head, query row, key column) lives, and the dropout keep-test, keyed per
//! (batch-head, row, column) so that the forward and the backward regenerate the same
//! mask from the generator key without storing it.

use super::random::RngKey;

/// Where a mask broadcast over the leading (batch-head) dimension and the `[L, S]`
/// plane keeps element `(bh, i, j)`: at `((bh / repeat) % blocks) * block + i * row +
/// j * col` (a stride of 0 broadcasts that dimension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MaskLayout {
    /// Consecutive batch-heads that share one mask block.
    pub repeat: usize,
    /// Distinct mask blocks.
    pub blocks: usize,
    /// Elements between blocks.
    pub block: usize,
    /// Elements between mask rows (0 when the mask has one row).
    pub row: usize,
    /// Elements between mask columns (0 when the mask has one column).
    pub col: usize,
    /// True for a 0/1 mask (0 excludes the key), false for an additive one.
    pub boolean: bool,
}

impl MaskLayout {
    /// The mask's element for batch-head `bh`, query `i`, key `j`.
    pub(crate) fn at(&self, bh: usize, i: usize, j: usize) -> usize {
        ((bh / self.repeat) % self.blocks) * self.block + i * self.row + j * self.col
    }
}

/// Attention dropout: keep when the top 24 bits of the first Philox word for counter
/// `(j, bh * L + i, offset)` reach `threshold`, and scale kept weights by `scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AttentionDropout {
    /// `ceil(p 2^24)`.
    pub threshold: u32,
    /// `1 / (1 - p)`.
    pub scale: f64,
    /// The generator key of this call.
    pub key: RngKey,
}

impl AttentionDropout {
    /// True when the weight of query row `row` (counted over all batch-heads, `bh * L +
    /// i`) for key `col` is kept.
    pub(crate) fn keeps(&self, row: usize, col: usize) -> bool {
        let w = super::random::philox4x32(
            [self.key.seed as u32, (self.key.seed >> 32) as u32],
            [
                col as u32,
                row as u32,
                self.key.offset as u32,
                (self.key.offset >> 32) as u32,
            ],
        );
        (w[0] >> 8) >= self.threshold
    }
}

/// Where the rows of one attention operand (or of the output) live in its storage: row
/// `i` of batch-head `bh` starts at `off + (bh / heads) * batch + (bh % heads) * head +
/// i * row`, and its elements are consecutive. A contiguous `[bh, rows, width]` tensor is
/// [`RowLayout::contiguous`]; the heads of a packed projection `[N, T, 3E]` are strided
/// views into it, so multi-head attention needs no copies to split or merge heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowLayout {
    /// Offset of the first element.
    pub off: usize,
    /// Batch-heads per outer step (the heads); 1 for a plain leading dimension.
    pub heads: usize,
    /// Elements between outer steps (batches).
    pub batch: usize,
    /// Elements between heads.
    pub head: usize,
    /// Elements between rows.
    pub row: usize,
}

impl RowLayout {
    /// Rows of `width` elements, `rows` per batch-head, one batch-head after another.
    pub(crate) fn contiguous(rows: usize, width: usize) -> RowLayout {
        RowLayout {
            off: 0,
            heads: 1,
            batch: rows * width,
            head: 0,
            row: width,
        }
    }

    /// The first element of row `i` of batch-head `bh`.
    pub(crate) fn at(&self, bh: usize, i: usize) -> usize {
        self.off + (bh / self.heads) * self.batch + (bh % self.heads) * self.head + i * self.row
    }
}

/// The sizes and options of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AttentionGeometry {
    /// Batch-heads: the product of the leading dimensions.
    pub bh: usize,
    /// Query rows `L`.
    pub l: usize,
    /// Keys `S`.
    pub s: usize,
    /// Head dimension of queries and keys `E`.
    pub e: usize,
    /// Head dimension of values `Ev`.
    pub ev: usize,
    /// The factor of `q k^T`.
    pub scale: f64,
    /// Query `i` sees keys `j <= i` only (upper-left aligned, as PyTorch).
    pub causal: bool,
    /// The mask's layout, when a mask is given.
    pub mask: Option<MaskLayout>,
    /// Dropout of the attention weights, when training with `p > 0`.
    pub dropout: Option<AttentionDropout>,
    /// Where the rows of `q`, `k`, `v` and of the output live (the gradients of `q`, `k`
    /// and `v` are written at their operands' layouts, the output gradient is read at
    /// the output's).
    pub layouts: [RowLayout; 4],
}

impl AttentionGeometry {
    /// Whether query `i` of batch-head `bh` may see key `j`, and the additive term of
    /// its score (`mask` is the mask's data, when there is one).
    pub(crate) fn bias(&self, mask: Option<&[f64]>, bh: usize, i: usize, j: usize) -> Option<f64> {
        if self.causal && j > i {
            return None;
        }
        match (self.mask, mask) {
            (Some(m), Some(data)) => {
                let v = data[m.at(bh, i, j)];
                if m.boolean {
                    (v != 0.0).then_some(0.0)
                } else if v == f64::NEG_INFINITY {
                    None
                } else {
                    Some(v)
                }
            }
            _ => Some(0.0),
        }
    }
}
