//! The column transforms of a convolution: `im2col` gathers each output position's
//! receptive field into a column, `col2im` folds columns back, summing overlaps. They are
//! adjoint, so each one's backward is the other's kernel. The CPU loops and the GPU
//! launches live behind the backend seam (`Conv`); `mod.rs` builds convolutions from
//! them and the matrix product.

use crate::autograd::record;
pub use crate::backend::conv2d::Geometry;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::{check_float, Tensor};

/// Kernel size, stride and dilation must be positive: the column kernels divide by them.
pub(super) fn check_positive(
    op: &'static str,
    k: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
) -> Result<()> {
    if [k.0, k.1, stride.0, stride.1, dilation.0, dilation.1].contains(&0) {
        return arg_err(op, "kernel size, stride and dilation must be positive");
    }
    Ok(())
}

/// [`check_positive`] for a geometry.
fn check(g: &Geometry, op: &'static str) -> Result<()> {
    check_positive(op, g.k, g.stride, g.dilation)
}

/// `im2col` (`to_cols`) or `col2im` of `x`, no graph.
fn run(x: &Tensor, g: Geometry, to_cols: bool) -> Result<Tensor> {
    let backend = x.device().backend();
    Ok(if to_cols {
        Tensor::like(backend.im2col(x.storage(), &g)?, g.cols_shape(), x)
    } else {
        Tensor::like(backend.col2im(x.storage(), &g)?, g.image_shape(), x)
    })
}

/// Unfolds image patches into columns `[N, C kh kw, Ho Wo]`: one matrix per image, so a
/// convolution is one batched matrix product (the weight broadcast over the batch) whose
/// result is already NCHW.
pub fn im2col(x: &Tensor, g: Geometry) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened("im2col", &[x], |w| im2col(&w[0], g)) {
        return r;
    }
    check_float("im2col", x)?;
    check(&g, "im2col")?;
    if x.shape() != g.image_shape().as_slice() {
        return shape_err(
            "im2col",
            format!(
                "input {:?} does not match the geometry {:?}",
                x.shape(),
                g.image_shape()
            ),
        );
    }
    let y = run(x, g, true)?;
    Ok(record(y, "im2col", &[x], move |grad| {
        Ok(vec![Some(run(grad, g, false)?)])
    }))
}

/// Folds columns `[N, C kh kw, Ho Wo]` back into images, summing overlaps.
pub fn col2im(cols: &Tensor, g: Geometry) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened("col2im", &[cols], |w| col2im(&w[0], g)) {
        return r;
    }
    check_float("col2im", cols)?;
    check(&g, "col2im")?;
    if cols.shape() != g.cols_shape().as_slice() {
        return shape_err(
            "col2im",
            format!(
                "columns {:?} do not match the geometry {:?}",
                cols.shape(),
                g.cols_shape()
            ),
        );
    }
    let y = run(cols, g, false)?;
    Ok(record(y, "col2im", &[cols], move |grad| {
        Ok(vec![Some(run(grad, g, true)?)])
    }))
}
