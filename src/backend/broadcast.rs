//! Broadcast geometry of a binary op, shared by both backends: the output shape and
//! both inputs' strides over it, collapsed where contiguous, and the CPU's loops over it.

use crate::backend::cpu::pool::{self, CollectPooled};
use crate::backend::cpu::{Float, StridedIter};
use crate::error::Result;
use crate::shape;

/// Broadcast geometry: output shape and both inputs' strides, as the kernels want them.
pub(crate) struct Broadcast {
    /// The output shape.
    pub(crate) out: Vec<usize>,
    /// a's strides over it (0 where broadcast).
    pub(crate) sa: Vec<usize>,
    /// b's strides over it.
    pub(crate) sb: Vec<usize>,
}

impl Broadcast {
    pub(crate) fn new(op: &'static str, a: &[usize], b: &[usize]) -> Result<Broadcast> {
        let out = shape::broadcast(op, a, b)?;
        shape::check_rank(op, &out)?;
        Ok(Broadcast {
            sa: shape::broadcast_strides(a, &out),
            sb: shape::broadcast_strides(b, &out),
            out,
        })
    }

    /// The same geometry with adjacent dimensions merged wherever both inputs step
    /// through them contiguously (or both broadcast them), so the index arithmetic per
    /// element is as short as possible. Equal shapes collapse to rank 1 with unit strides.
    pub(crate) fn collapsed(&self) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let (mut out, mut sa, mut sb): (Vec<usize>, Vec<usize>, Vec<usize>) =
            (vec![], vec![], vec![]);
        for d in 0..self.out.len() {
            if self.out[d] == 1 {
                continue;
            }
            if let (Some(&a), Some(&b)) = (sa.last(), sb.last()) {
                if a == self.sa[d] * self.out[d] && b == self.sb[d] * self.out[d] {
                    *out.last_mut().unwrap() *= self.out[d];
                    *sa.last_mut().unwrap() = self.sa[d];
                    *sb.last_mut().unwrap() = self.sb[d];
                    continue;
                }
            }
            out.push(self.out[d]);
            sa.push(self.sa[d]);
            sb.push(self.sb[d]);
        }
        (out, sa, sb)
    }

    pub(crate) fn map<T: Float>(&self, a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> Vec<T> {
        if a.len() == b.len() && self.sa == self.sb && a.len() == shape::numel(&self.out) {
            return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect_pooled();
        }
        let mut out = pool::with_capacity(shape::numel(&self.out));
        let (shape, sa, sb) = self.collapsed();
        let Some((&inner, outer)) = shape.split_last() else {
            out.push(f(a[0], b[0]));
            return out;
        };
        let (ia, ib) = (sa[sa.len() - 1], sb[sb.len() - 1]);
        let (oa, ob) = (&sa[..sa.len() - 1], &sb[..sb.len() - 1]);
        // Runs along the innermost dimension as slice loops (they vectorise): both inputs
        // contiguous, or one of them broadcast (a bias).
        for (base_a, base_b) in StridedIter::new(outer, oa).zip(StridedIter::new(outer, ob)) {
            match (ia, ib) {
                (1, 1) => out.extend(
                    a[base_a..base_a + inner]
                        .iter()
                        .zip(&b[base_b..base_b + inner])
                        .map(|(&x, &y)| f(x, y)),
                ),
                (1, 0) => {
                    let y = b[base_b];
                    out.extend(a[base_a..base_a + inner].iter().map(|&x| f(x, y)));
                }
                (0, 1) => {
                    let x = a[base_a];
                    out.extend(b[base_b..base_b + inner].iter().map(|&y| f(x, y)));
                }
                _ => out.extend((0..inner).map(|k| f(a[base_a + k * ia], b[base_b + k * ib]))),
            }
        }
        out
    }

    /// Calls `f(offset in a, offset in b)` for every output element in order: an
    /// odometer over the merged outer dimensions and a plain loop over the innermost one
    /// (where broadcasting a bias is a stride of 0).
    pub(crate) fn for_each_offset(&self, mut f: impl FnMut(usize, usize)) {
        let (out, sa, sb) = self.collapsed();
        let Some((&inner, outer)) = out.split_last() else {
            f(0, 0);
            return;
        };
        let (ia, ib) = (sa[sa.len() - 1], sb[sb.len() - 1]);
        let (oa, ob) = (&sa[..sa.len() - 1], &sb[..sb.len() - 1]);
        for (base_a, base_b) in StridedIter::new(outer, oa).zip(StridedIter::new(outer, ob)) {
            for k in 0..inner {
                f(base_a + k * ia, base_b + k * ib);
            }
        }
    }
}
