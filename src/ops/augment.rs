//! The geometric augmentation kernel: random crop after zero padding (which includes
//! random translation) and horizontal/vertical flips, applied to a whole NCHW batch with
//! per-image choices made on the host. Colour changes are compositions of tensor ops in
//! `data::augment`.

pub use crate::backend::ImageMove;
use crate::error::{arg_err, shape_err, Result};
use crate::shape;
use crate::tensor::{check_float, Tensor};

/// Pads each image of `x` (`[N, C, H, W]`) with `padding` zeros, crops `out` (rows,
/// columns) at each image's offsets, then flips it as asked. No gradient (data only).
pub fn geometric(
    x: &Tensor,
    padding: usize,
    out: (usize, usize),
    moves: &[ImageMove],
) -> Result<Tensor> {
    if let Some(r) =
        crate::ops::half::widened("augment", &[x], |w| geometric(&w[0], padding, out, moves))
    {
        return r;
    }
    check_float("augment", x)?;
    if x.rank() != 4 || moves.len() != x.shape()[0] {
        return shape_err(
            "augment",
            format!(
                "needs NCHW images and one move per image: {} and {} moves",
                shape::fmt(x.shape()),
                moves.len()
            ),
        );
    }
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    if out.0 > h + 2 * padding || out.1 > w + 2 * padding {
        return arg_err(
            "augment",
            format!("a {out:?} crop does not fit {h}x{w} padded by {padding}"),
        );
    }
    let (max_r, max_c) = (
        (h + 2 * padding - out.0) as u32,
        (w + 2 * padding - out.1) as u32,
    );
    if let Some(m) = moves
        .iter()
        .find(|m| m.crop_row > max_r || m.crop_col > max_c)
    {
        return arg_err(
            "augment",
            format!("crop offset {m:?} is outside 0..={max_r} x 0..={max_c}"),
        );
    }
    let dims = [n, c, h, w, out.0, out.1, padding];
    let out_shape = vec![n, c, out.0, out.1];
    let out = x.device().backend().geometric(x.storage(), dims, moves)?;
    Ok(Tensor::like(out, out_shape, x))
}
