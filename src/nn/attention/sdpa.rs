//! The composed attention of [`MultiheadAttention`](super::MultiheadAttention) that
//! also returns the weights ([`attention_with_weights`]), and its masks. The fused path
//! (`crate::ops::attention::multi_head_attention`, the kernel of
//! [`Tensor::scaled_dot_product_attention`] reading the heads in place) needs neither.

use crate::error::{arg_err, Result};
use crate::ops::layout::fill;
use crate::tensor::{DType, Tensor};

/// The composed path of PyTorch's `multi_head_attention_forward` with `need_weights`:
/// `(softmax(q k^T * scale + mask) v, weights)`, the weights `[B, H, L, S]` after dropout
/// (as PyTorch returns them). `mask` is additive (float) here; a fully masked row is NaN,
/// as PyTorch's plain softmax gives.
pub(super) fn attention_with_weights(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
    dropout_p: f64,
    training: bool,
) -> Result<(Tensor, Tensor)> {
    let weights = scores(q, k, scale, mask)?
        .softmax(-1)?
        .dropout(dropout_p, training)?;
    Ok((weights.matmul(v)?, weights))
}

/// `q k^T * scale (+ mask)`: `[B, H, L, S]`.
fn scores(q: &Tensor, k: &Tensor, scale: f64, mask: Option<&Tensor>) -> Result<Tensor> {
    let s = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(scale)?;
    match mask {
        Some(m) => s.add(m),
        None => Ok(s),
    }
}

/// A mask in `nn.MultiheadAttention`'s convention as an additive float mask of `like`'s
/// dtype: a float mask as it is, a `U32` mask (PyTorch's bool) `-inf` where it is 1
/// (True: "not allowed to attend") and `0` where it is 0, as PyTorch's `_canonical_mask`.
pub(super) fn additive_from_blocking(mask: &Tensor, like: &Tensor) -> Result<Tensor> {
    let dtype = like.dtype();
    match mask.dtype() {
        DType::U32 => {
            let dev = like.device();
            let cond = mask.to_dtype(dtype)?;
            let zero = fill(&[], dtype, 0.0, dev)?;
            let neg_inf = fill(&[], dtype, f64::NEG_INFINITY, dev)?;
            Tensor::where_cond(&cond, &neg_inf, &zero)
        }
        d if d == dtype => Ok(mask.clone()),
        d => arg_err(
            "MultiheadAttention",
            format!("a float mask must have the inputs' dtype {dtype:?}, got {d:?}"),
        ),
    }
}

/// The causal mask `[L, S]` of `like`'s dtype and device: `0` where key `j <= i` (query
/// `i`), `-inf` above the diagonal (PyTorch's top-left alignment).
pub(super) fn causal_additive_mask(l: usize, s: usize, like: &Tensor) -> Result<Tensor> {
    let values: Vec<f32> = (0..l)
        .flat_map(|i| (0..s).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(values, &[l, s], like.device())?.to_dtype(like.dtype())
}

#[cfg(test)]
mod tests {
    //! The conventions of the fused attention that `MultiheadAttention` does not reach
    //! (it always passes an additive float mask): a `U32` mask keeps the pairs where it
    //! is 1, `causal` is the top-left triangle, and a mask with `causal` is refused.
    use super::*;
    use crate::device::Device;

    fn run(mask: Option<&Tensor>, causal: bool) -> Result<Vec<f32>> {
        let dev = Device::cpu();
        dev.manual_seed(3);
        let q = Tensor::randn(&[1, 2, 3, 4], &dev)?;
        let k = Tensor::randn(&[1, 2, 5, 4], &dev)?;
        let v = Tensor::randn(&[1, 2, 5, 2], &dev)?;
        q.scaled_dot_product_attention(&k, &v, mask, 0.0, causal, Some(0.5))?
            .to_vec::<f32>()
    }

    #[test]
    fn a_one_takes_part_and_causal_is_the_top_left_triangle() -> Result<()> {
        let dev = Device::cpu();
        // Query i sees keys j <= i of S = 5 (L = 3).
        let keep: Vec<u32> = (0..3)
            .flat_map(|i| (0..5).map(move |j| u32::from(j <= i)))
            .collect();
        let boolean = Tensor::from_vec(keep.clone(), &[3, 5], &dev)?;
        let float: Vec<f32> = keep
            .iter()
            .map(|&k| if k == 1 { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let float = Tensor::from_vec(float, &[3, 5], &dev)?;
        let (by_bool, by_float, by_flag) = (
            run(Some(&boolean), false)?,
            run(Some(&float), false)?,
            run(None, true)?,
        );
        assert_eq!(by_bool, by_float);
        assert_eq!(by_bool, by_flag);
        assert_ne!(by_bool, run(None, false)?);
        let refused = run(Some(&float), true).unwrap_err().to_string();
        assert!(refused.contains("cannot both be given"), "{refused}");
        Ok(())
    }
}
