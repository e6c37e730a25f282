//! The geometry of the layout and indexing primitives, shared by both backends: fill
//! values, strided regions of a buffer (and their contiguous runs), the indexed ops'
//! `[outer, size, inner]` views and `where`'s broadcast over its output.

use crate::backend::cpu::StridedIter;
use crate::shape;

/// A fill value, of the element type the new storage holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Fill {
    /// 32-bit floats.
    F32(f32),
    /// 64-bit floats (CPU only).
    F64(f64),
    /// Unsigned indices.
    U32(u32),
}

/// A strided region of a buffer: element `i` of its contiguous form is at `base +
/// sum idx_d * strides[d]`, where `idx` is `i`'s position in `shape`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region<'a> {
    /// Its shape.
    pub shape: &'a [usize],
    /// Its strides in the buffer.
    pub strides: &'a [usize],
    /// Its first element's offset.
    pub base: usize,
}

impl Region<'_> {
    /// Elements.
    pub fn numel(&self) -> usize {
        shape::numel(self.shape)
    }

    /// Splits the region into contiguous runs: the trailing dimensions whose strides are
    /// those of a contiguous layout form one run of `run` elements, and the leading `k`
    /// dimensions (shape and strides `[..k]`) walk the runs' starts. Returns `(run, k)`.
    pub fn contiguous_runs(&self) -> (usize, usize) {
        let (mut run, mut k) = (1, self.shape.len());
        while k > 0 && (self.strides[k - 1] == run || self.shape[k - 1] == 1) {
            run *= self.shape[k - 1];
            k -= 1;
        }
        (run, k)
    }

    /// Calls `f(region offset, flat offset, run)` for each contiguous run (see
    /// [`Region::contiguous_runs`]); offsets into the buffer are `base` plus the first.
    pub fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (run, k) = self.contiguous_runs();
        if run == 0 {
            return;
        }
        for (i, o) in StridedIter::new(&self.shape[..k], &self.strides[..k]).enumerate() {
            f(o, i * run, run);
        }
    }

    /// The buffer offsets of the region's elements, in order.
    pub fn offsets(&self) -> impl Iterator<Item = usize> + '_ {
        StridedIter::new(self.shape, self.strides).map(move |o| self.base + o)
    }
}

/// Which indexed op reads through an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// `index_select`: one index per position along the dimension (a 1-D index).
    Select,
    /// `gather`: one index per output element (the index has the output's shape).
    Gather,
}

/// `index_select` and `gather` along a dimension, the input viewed as `[outer, size,
/// inner]` and the output (and a gather's index) as `[outer, j, inner]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Indexed {
    /// Which op.
    pub pick: Pick,
    /// Positions before the dimension.
    pub outer: usize,
    /// The dimension's size in the input.
    pub size: usize,
    /// Its size in the output (the index's length along it).
    pub j: usize,
    /// Elements per position of the dimension.
    pub inner: usize,
}

impl Indexed {
    /// The op's name, for errors.
    pub fn name(&self) -> &'static str {
        match self.pick {
            Pick::Select => "index_select",
            Pick::Gather => "gather",
        }
    }

    /// The output's elements.
    pub fn out_len(&self) -> usize {
        self.outer * self.j * self.inner
    }

    /// The input's elements.
    pub fn in_len(&self) -> usize {
        self.outer * self.size * self.inner
    }

    /// The input element that output element `i` reads, through the index `idx` (whose
    /// values are checked to be below `size`).
    #[inline]
    pub fn source(&self, i: usize, idx: &[u32]) -> usize {
        let r = i % self.inner;
        let o = i / (self.inner * self.j);
        let k = match self.pick {
            Pick::Select => idx[(i / self.inner) % self.j],
            Pick::Gather => idx[i],
        };
        (o * self.size + k as usize) * self.inner + r
    }
}

/// `where(cond, a, b)` broadcast over its output: the output's shape and each operand's
/// strides over it (0 where broadcast).
#[derive(Clone, Debug)]
pub(crate) struct WhereGeo {
    /// The output's shape.
    pub out: Vec<usize>,
    /// The condition's strides.
    pub sc: Vec<usize>,
    /// a's strides.
    pub sa: Vec<usize>,
    /// b's strides.
    pub sb: Vec<usize>,
}

impl WhereGeo {
    /// The geometry of `cond`, `a` and `b` broadcast to `out`.
    pub fn new(cond: &[usize], a: &[usize], b: &[usize], out: &[usize]) -> WhereGeo {
        WhereGeo {
            out: out.to_vec(),
            sc: shape::broadcast_strides(cond, out),
            sa: shape::broadcast_strides(a, out),
            sb: shape::broadcast_strides(b, out),
        }
    }

    /// The output's elements.
    pub fn n(&self) -> usize {
        shape::numel(&self.out)
    }
}
