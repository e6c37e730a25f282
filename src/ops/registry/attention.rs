//! Fused scaled-dot-product attention.

use super::*;
use crate::ops::attention::{multi_head_attention, scaled_dot_product_attention_with_key, Heads};
use crate::tensor::DType;

/// How a case masks the scores.
#[derive(Clone, Copy, Debug)]
enum Masking {
    /// No mask.
    None,
    /// `is_causal`.
    Causal,
    /// A 0/1 `u32` mask of the given shape (an extra input).
    Boolean(&'static [usize]),
    /// An additive float mask of the given shape: `-inf` where a 0/1 draw is 0, else
    /// 1.5 (an extra input).
    Additive(&'static [usize]),
}

/// One case: q, k and v shapes, the masking, the logit factor (q and k are multiplied
/// by it), the dropout probability and the scale.
type AttentionCase = (
    &'static [usize],
    &'static [usize],
    &'static [usize],
    Masking,
    f64,
    f64,
    Option<f64>,
);

/// Attention: causal and not, a sequence not a multiple of the tiles (16 keys, 64
/// rows), 0/1 and additive masks broadcast over heads (and over queries; one whose
/// pattern is not a run of the leading dimensions), L != S and
/// Ev != E, a long key sequence crossing many tiles and query rows crossing two blocks,
/// logits near ±700, dropout with a fixed key.
pub(super) fn entries() -> Vec<OpEntry> {
    use Masking::*;
    let cases: &[AttentionCase] = &[
        (
            &[1, 2, 5, 4],
            &[1, 2, 5, 4],
            &[1, 2, 5, 4],
            None,
            1.0,
            0.0,
            Option::None,
        ),
        (
            &[2, 1, 7, 3],
            &[2, 1, 7, 3],
            &[2, 1, 7, 5],
            Causal,
            1.0,
            0.0,
            Option::None,
        ),
        (
            &[3, 6, 4],
            &[3, 9, 4],
            &[3, 9, 2],
            None,
            1.0,
            0.0,
            Some(0.7),
        ),
        (
            &[1, 2, 130, 5],
            &[1, 2, 130, 5],
            &[1, 2, 130, 3],
            Causal,
            1.0,
            0.0,
            Option::None,
        ),
        (
            &[1, 1, 70, 4],
            &[1, 1, 300, 4],
            &[1, 1, 300, 3],
            None,
            1.0,
            0.0,
            Option::None,
        ),
        (
            &[2, 3, 5, 4],
            &[2, 3, 17, 4],
            &[2, 3, 17, 4],
            Boolean(&[5, 17]),
            1.0,
            0.0,
            Option::None,
        ),
        (
            &[2, 3, 5, 4],
            &[2, 3, 6, 4],
            &[2, 3, 6, 3],
            Additive(&[2, 1, 5, 6]),
            1.0,
            0.0,
            Option::None,
        ),
        (
            &[2, 3, 2, 3, 4],
            &[2, 3, 2, 5, 4],
            &[2, 3, 2, 5, 2],
            Boolean(&[2, 1, 2, 3, 5]),
            1.0,
            0.0,
            Option::None,
        ),
        (
            &[2, 2, 4, 3],
            &[2, 2, 6, 3],
            &[2, 2, 6, 3],
            Boolean(&[2, 1, 1, 6]),
            1.0,
            0.0,
            Option::None,
        ),
        (
            &[1, 2, 9, 3],
            &[1, 2, 9, 3],
            &[1, 2, 9, 4],
            None,
            10.0,
            0.0,
            Option::None,
        ),
        (
            &[1, 2, 9, 3],
            &[1, 2, 9, 3],
            &[1, 2, 9, 4],
            Causal,
            10.0,
            0.0,
            Option::None,
        ),
        (
            &[1, 2, 6, 4],
            &[1, 2, 20, 4],
            &[1, 2, 20, 3],
            None,
            1.0,
            0.3,
            Option::None,
        ),
        (
            &[1, 2, 20, 4],
            &[1, 2, 20, 4],
            &[1, 2, 20, 3],
            Causal,
            1.0,
            0.25,
            Option::None,
        ),
    ];
    vec![sdpa_entry(cases), packed_entry()]
}

/// Where a packed case reads q, k and v: (input, column) each.
type Packing = [(usize, usize); 3];

/// One packed case: the input shapes, the packing, the heads, the head dimensions
/// `(e, ev)`, the masking and the dropout probability.
type PackedCase = (
    Vec<&'static [usize]>,
    Packing,
    usize,
    (usize, usize),
    Masking,
    f64,
);

/// Attention reading the heads in place from packed projections (what
/// `MultiheadAttention` runs): one `[N, T, 3 H d]` projection for self-attention, a query
/// projection beside a packed key-value one, separate projections, a projection wider
/// than its heads (its gradient starts from zeros), masks, causal rows crossing the tiles
/// and the 64-row blocks, and dropout with a fixed key.
fn packed_entry() -> OpEntry {
    use Masking::*;
    let cases: Vec<PackedCase> = vec![
        (
            vec![&[2, 5, 18]],
            [(0, 0), (0, 6), (0, 12)],
            2,
            (3, 3),
            None,
            0.0,
        ),
        (
            vec![&[1, 7, 24]],
            [(0, 0), (0, 8), (0, 16)],
            2,
            (4, 4),
            Causal,
            0.0,
        ),
        (
            vec![&[1, 6, 8], &[1, 9, 16]],
            [(0, 0), (1, 0), (1, 8)],
            2,
            (4, 4),
            Additive(&[1, 1, 1, 9]),
            0.0,
        ),
        (
            vec![&[1, 4, 10], &[1, 5, 8], &[1, 5, 6]],
            [(0, 1), (1, 0), (2, 0)],
            2,
            (4, 3),
            Boolean(&[1, 2, 4, 5]),
            0.0,
        ),
        (
            vec![&[1, 20, 24]],
            [(0, 0), (0, 8), (0, 16)],
            2,
            (4, 4),
            None,
            0.25,
        ),
        (
            vec![&[1, 70, 16]],
            [(0, 0), (0, 4), (0, 8)],
            1,
            (4, 8),
            Causal,
            0.0,
        ),
    ];
    OpEntry {
        name: "multi_head_attention (heads in place)",
        differentiable: true,
        kernels: &[
            "attention_fwd",
            "attention_delta_bwd",
            "attention_dq_bwd",
            "attention_dkv_bwd",
            "attention_rows_fwd",
            "attention_rows_dq_bwd",
            "attention_rows_dkv_bwd",
        ],
        cases: cases
            .into_iter()
            .map(|(shapes, packing, heads, dims, masking, p)| {
                let sources = shapes.len();
                let mut inputs: Vec<InputSpec> =
                    shapes.iter().map(|s| spec(s, Domain::Any)).collect();
                if let Boolean(m) | Additive(m) = masking {
                    inputs.push(spec(m, Domain::Mask));
                }
                let label = format!(
                    "{shapes:?} at {packing:?}, {heads} heads of {dims:?} {masking:?}, dropout {p}"
                );
                case(label, inputs, move |x, _| {
                    let mask = match masking {
                        Boolean(_) => Some(x[sources].to_dtype(DType::U32)?),
                        Additive(_) => Some(x[sources].mul_scalar(1.5)?.add(&x[sources].log()?)?),
                        _ => Option::None,
                    };
                    let at = |(i, col): (usize, usize)| Heads { src: &x[i], col };
                    let key = RngKey { seed: 5, offset: 1 };
                    multi_head_attention(
                        packing.map(at),
                        heads,
                        dims,
                        mask.as_ref(),
                        p,
                        matches!(masking, Causal),
                        1.0 / (dims.0 as f64).sqrt(),
                        key,
                    )
                })
            })
            .collect(),
    }
}

/// The cases of [`Tensor::scaled_dot_product_attention`] on contiguous tensors.
fn sdpa_entry(cases: &[AttentionCase]) -> OpEntry {
    use Masking::*;
    OpEntry {
        name: "scaled_dot_product_attention",
        differentiable: true,
        kernels: &[
            "attention_fwd",
            "attention_delta_bwd",
            "attention_dq_bwd",
            "attention_dkv_bwd",
            "attention_rows_fwd",
            "attention_rows_dq_bwd",
            "attention_rows_dkv_bwd",
        ],
        cases: cases
            .iter()
            .map(|&(q, k, v, masking, factor, p, scale)| {
                let mut inputs = vec![
                    spec(q, Domain::Any),
                    spec(k, Domain::Any),
                    spec(v, Domain::Any),
                ];
                if let Boolean(m) | Additive(m) = masking {
                    inputs.push(spec(m, Domain::Mask));
                }
                let label = format!(
                    "q {q:?} k {k:?} v {v:?} {masking:?}{}{}{}",
                    if factor != 1.0 {
                        format!(", logits x{}", factor * factor)
                    } else {
                        String::new()
                    },
                    if p > 0.0 {
                        format!(", dropout {p}")
                    } else {
                        String::new()
                    },
                    scale.map_or(String::new(), |s| format!(", scale {s}")),
                );
                case(label, inputs, move |x, _| {
                    let (qt, kt) = if factor != 1.0 {
                        (x[0].mul_scalar(factor as _)?, x[1].mul_scalar(factor as _)?)
                    } else {
                        (x[0].clone(), x[1].clone())
                    };
                    let mask = match masking {
                        Boolean(_) => Some(x[3].to_dtype(DType::U32)?),
                        Additive(_) => Some(x[3].mul_scalar(1.5)?.add(&x[3].log()?)?),
                        _ => Option::None,
                    };
                    let key = RngKey {
                        seed: 11,
                        offset: 3,
                    };
                    let causal = matches!(masking, Causal);
                    scaled_dot_product_attention_with_key(
                        &qt,
                        &kt,
                        &x[2],
                        mask.as_ref(),
                        p,
                        causal,
                        scale,
                        key,
                    )
                })
            })
            .collect(),
    }
}
