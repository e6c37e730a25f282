//! The embedding lookup (`torch.nn.functional.embedding`): rows of a table picked by
//! indices, built on `index_select`, whose backward scatter-adds into the picked rows.

use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

/// Rows of `weight` `[V, D]` picked by `u32` indices of any shape: `[..., D]`
/// (`torch.nn.functional.embedding`). The backward scatter-adds into the picked rows.
pub fn embedding(indices: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if weight.rank() != 2 {
        return shape_err(
            "embedding",
            format!("the table {:?} must be [V, D]", weight.shape()),
        );
    }
    let mut shape = indices.shape().to_vec();
    shape.push(weight.shape()[1]);
    weight
        .index_select(0, &indices.reshape(&[indices.numel()])?)?
        .reshape(&shape)
}
