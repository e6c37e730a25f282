//! The indexing ops: `index_select`, `gather` and `where`, whose backward scatters (adds)
//! the output gradient back through the same indices.

use super::*;
use crate::backend::layout::{Indexed, Pick, WhereGeo};

/// `x` read through `index` as `geo` says, with the backward that scatter-adds the
/// output gradient back (into a tensor of `x`'s shape).
fn indexed(x: &Tensor, index: &Tensor, geo: Indexed, out_shape: Vec<usize>) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened("index_select", &[x, index], |w| {
        indexed(&w[0], &w[1], geo, out_shape.clone())
    }) {
        return r;
    }
    let s = x
        .device()
        .backend()
        .index(x.storage(), index.storage(), &geo)?;
    let y = Tensor::like(s, out_shape, x);
    let (idx, full) = (index.clone(), x.shape().to_vec());
    Ok(record(y, geo.name(), &[x], move |g| {
        let dx = g
            .device()
            .backend()
            .index_backward(g.storage(), idx.storage(), &geo)?;
        Ok(vec![Some(Tensor::like(dx, full.clone(), g))])
    }))
}

impl Tensor {
    /// Rows (or slices along `dim`) picked by a `u32` index vector, like `torch.index_select`
    /// (of a float or a `u32` tensor).
    pub fn index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        check_index("index_select", index)?;
        check_same_device("index_select", self, index)?;
        if index.rank() != 1 {
            return shape_err(
                "index_select",
                format!("the index must be 1-D, got {:?}", index.shape()),
            );
        }
        let d = shape::normalize_dim("index_select", dim, self.rank())?;
        let (outer, size, inner) = split3(self.shape(), d);
        let j = index.numel();
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = j;
        let geo = Indexed {
            pick: Pick::Select,
            outer,
            size,
            j,
            inner,
        };
        indexed(self, index, geo, out_shape)
    }

    /// `torch.gather`: `out[.., j, ..] = self[.., index[.., j, ..], ..]` along `dim`. The
    /// index has the input's shape except along `dim`. The input may be float or `u32`.
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        check_index("gather", index)?;
        check_same_device("gather", self, index)?;
        let d = shape::normalize_dim("gather", dim, self.rank())?;
        let fits = index.rank() == self.rank()
            && (0..self.rank()).all(|k| k == d || index.shape()[k] == self.shape()[k]);
        if !fits {
            return shape_err(
                "gather",
                format!(
                    "the index {} must match the input {} except along dimension {d}",
                    shape::fmt(index.shape()),
                    shape::fmt(self.shape())
                ),
            );
        }
        let (outer, size, inner) = split3(self.shape(), d);
        let geo = Indexed {
            pick: Pick::Gather,
            outer,
            size,
            j: index.shape()[d],
            inner,
        };
        indexed(self, index, geo, index.shape().to_vec())
    }

    /// `torch.where(cond, a, b)` with broadcasting: `a` where `cond != 0`, else `b`.
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if let Some(r) = crate::ops::half::widened("where", &[cond, a, b], |w| {
            Tensor::where_cond(&w[0], &w[1], &w[2])
        }) {
            return r;
        }
        check_pair("where", a, b)?;
        check_pair("where", cond, a)?;
        let ab = shape::broadcast("where", a.shape(), b.shape())?;
        let out = shape::broadcast("where", cond.shape(), &ab)?;
        crate::ops::check_out("where", &out, a.dtype(), a.device())?;
        let geo = WhereGeo::new(cond.shape(), a.shape(), b.shape(), &out);
        let s = a
            .device()
            .backend()
            .where_cond(cond.storage(), a.storage(), b.storage(), &geo)?;
        let y = Tensor::like(s, out, a);
        let (cs, a_shape, b_shape) = (cond.detach(), a.shape().to_vec(), b.shape().to_vec());
        Ok(record(y, "where", &[a, b], move |g| {
            let (da, db) = g
                .device()
                .backend()
                .where_backward(cs.storage(), g.storage(), &geo)?;
            let (da, db) = (
                Tensor::like(da, geo.out.clone(), g),
                Tensor::like(db, geo.out.clone(), g),
            );
            Ok(vec![
                Some(da.sum_to_shape(&a_shape)?),
                Some(db.sum_to_shape(&b_shape)?),
            ])
        }))
    }
}
