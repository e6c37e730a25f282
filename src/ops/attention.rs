//! `scaled_dot_product_attention`, PyTorch's `F.scaled_dot_product_attention`, fused:
//! the GPU runs one forward kernel that never stores the `[L, S]` scores (queries in
//! tiles, keys and values streamed with an online softmax) and saves one log-sum-exp
//! per query row, from which the backward recomputes the weights (FlashAttention-2).
//! Attention dropout regenerates its mask from the generator key in both passes.

use crate::autograd::{no_grad, record};
use crate::backend::attention::{AttentionDropout, AttentionGeometry, MaskLayout, RowLayout};
use crate::backend::random::RngKey;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::{check_pair, check_same_device, DType, Tensor};

const OP: &str = "scaled_dot_product_attention";

/// The mask's layout against the leading shape `lead` and the `[l, s]` plane, and the
/// mask itself as a float tensor (materialised over the leading dimensions when its
/// broadcast pattern is not one run of them).
fn mask_layout(
    mask: &Tensor,
    q: &Tensor,
    lead: &[usize],
    l: usize,
    s: usize,
) -> Result<(Tensor, MaskLayout)> {
    check_same_device(OP, q, mask)?;
    let boolean = match mask.dtype() {
        DType::U32 => true,
        d if d == q.dtype() => false,
        d => {
            return arg_err(
                OP,
                format!(
                    "attn_mask must be u32 (0/1) or {:?} like q, got {d:?}",
                    q.dtype()
                ),
            )
        }
    };
    let rank = lead.len() + 2;
    let bad = || {
        shape_err(
            OP,
            format!(
                "attn_mask {:?} does not broadcast to the scores {:?}",
                mask.shape(),
                [lead, &[l, s]].concat()
            ),
        )
    };
    if mask.rank() > rank {
        return bad();
    }
    let mut shape = vec![1; rank - mask.rank()];
    shape.extend_from_slice(mask.shape());
    let (ml, ms) = (shape[rank - 2], shape[rank - 1]);
    if (ml != 1 && ml != l) || (ms != 1 && ms != s) {
        return bad();
    }
    let mlead = &shape[..rank - 2];
    if mlead.iter().zip(lead).any(|(&m, &d)| m != 1 && m != d) {
        return bad();
    }
    // The leading dimensions the mask varies over must be one run a..b.
    let varies: Vec<usize> = (0..lead.len())
        .filter(|&d| mlead[d] != 1 && lead[d] != 1)
        .collect();
    let run = match (varies.first(), varies.last()) {
        (Some(&a), Some(&b)) => (a..=b).all(|d| mlead[d] == lead[d] || lead[d] == 1),
        _ => true,
    };
    let mut m = if boolean {
        // The kernel reads the mask as the compute type (f32 for half sources).
        let dtype = if q.dtype().is_half() {
            DType::F32
        } else {
            q.dtype()
        };
        mask.to_dtype(dtype)?
    } else {
        mask.detach()
    };
    let (blocks, repeat) = if run {
        let (a, b) = match (varies.first(), varies.last()) {
            (Some(&a), Some(&b)) => (a, b + 1),
            _ => (lead.len(), lead.len()),
        };
        (
            lead[a..b].iter().product::<usize>(),
            lead[b..].iter().product::<usize>(),
        )
    } else {
        m = m
            .reshape(&shape)?
            .broadcast_to(&[lead, &[ml, ms]].concat())?;
        (lead.iter().product(), 1)
    };
    Ok((
        m,
        MaskLayout {
            repeat: repeat.max(1),
            blocks: blocks.max(1),
            block: ml * ms,
            row: if ml == 1 { 0 } else { ms },
            col: if ms == 1 { 0 } else { 1 },
            boolean,
        },
    ))
}

/// The checks both entry points share: head dimensions within the device's kernel, no
/// mask beside `is_causal` (as PyTorch), `dropout_p` in `[0, 1)`.
fn check_call(
    q: &Tensor,
    (e, ev): (usize, usize),
    mask: bool,
    is_causal: bool,
    dropout_p: f64,
) -> Result<()> {
    let limit = q.device().backend().attention_head_limit();
    if e > limit || ev > limit {
        return arg_err(
            OP,
            format!("head dimensions {e} (q, k) and {ev} (v): this device's fused kernel takes at most {limit}"),
        );
    }
    if mask && is_causal {
        return arg_err(
            OP,
            "attn_mask and is_causal cannot both be given (as PyTorch)",
        );
    }
    if !(0.0..1.0).contains(&dropout_p) {
        return arg_err(OP, format!("dropout_p must be in [0, 1), got {dropout_p}"));
    }
    Ok(())
}

/// [`Tensor::scaled_dot_product_attention`] with an explicit generator key for the
/// dropout (the registry's fixed-key cases; `key` is ignored when `dropout_p` is 0).
#[allow(clippy::too_many_arguments)]
pub fn scaled_dot_product_attention_with_key(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    attn_mask: Option<&Tensor>,
    dropout_p: f64,
    is_causal: bool,
    scale: Option<f64>,
    key: RngKey,
) -> Result<Tensor> {
    let ins = crate::ops::half::with_optional(&[q, k, v], &[attn_mask]);
    // Half inference on the GPU reads the half sources as they are (below).
    if !half_inference(&[q, k, v], attn_mask) {
        if let Some(r) = crate::ops::half::widened("scaled_dot_product_attention", &ins, |w| {
            let (f, o) = crate::ops::half::split_optional(w, 3, &[attn_mask]);
            scaled_dot_product_attention_with_key(
                &f[0], &f[1], &f[2], o[0], dropout_p, is_causal, scale, key,
            )
        }) {
            return r;
        }
    }
    check_pair(OP, q, k)?;
    check_pair(OP, q, v)?;
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    if qs.len() < 2 || ks.len() != qs.len() || vs.len() != qs.len() {
        return shape_err(
            OP,
            format!("q {qs:?}, k {ks:?}, v {vs:?}: need [..., L, E], [..., S, E], [..., S, Ev] of one rank >= 2"),
        );
    }
    let r = qs.len();
    let lead = &qs[..r - 2];
    let (l, e, s, ev) = (qs[r - 2], qs[r - 1], ks[r - 2], vs[r - 1]);
    if &ks[..r - 2] != lead || &vs[..r - 2] != lead {
        return shape_err(
            OP,
            format!("q {qs:?}, k {ks:?}, v {vs:?}: the leading (batch, head) dimensions differ"),
        );
    }
    if ks[r - 1] != e {
        return shape_err(OP, format!("q {qs:?} and k {ks:?}: head dimensions differ"));
    }
    if vs[r - 2] != s {
        return shape_err(
            OP,
            format!("k {ks:?} and v {vs:?}: sequence lengths differ"),
        );
    }
    if e == 0 {
        return shape_err(OP, format!("q {qs:?}: the head dimension is 0"));
    }
    check_call(q, (e, ev), attn_mask.is_some(), is_causal, dropout_p)?;
    let scale = scale.unwrap_or(1.0 / (e as f64).sqrt());
    if !scale.is_finite() {
        return arg_err(OP, format!("scale must be finite, got {scale}"));
    }
    let out_shape = [lead, &[l, ev]].concat();
    crate::ops::check_out(OP, &out_shape, q.dtype(), q.device())?;
    // Last: a mask may be converted (checked first, then cast or broadcast).
    let mask = attn_mask
        .map(|m| mask_layout(m, q, lead, l, s))
        .transpose()?;
    let bh: usize = lead.iter().product();
    let geo = AttentionGeometry {
        bh,
        l,
        s,
        e,
        ev,
        scale,
        causal: is_causal,
        mask: mask.as_ref().map(|m| m.1),
        dropout: dropout(dropout_p, key),
        layouts: [
            RowLayout::contiguous(l, e),
            RowLayout::contiguous(s, e),
            RowLayout::contiguous(s, ev),
            RowLayout::contiguous(l, ev),
        ],
    };
    let inputs = Inputs {
        tensors: vec![q, k, v],
        of: [0, 1, 2],
        covered: vec![true; 3],
    };
    run(inputs, geo, mask.map(|m| m.0), out_shape)
}

/// The dropout of one call (`None` for `p = 0`).
fn dropout(p: f64, key: RngKey) -> Option<AttentionDropout> {
    (p > 0.0).then(|| AttentionDropout {
        threshold: (p * 16_777_216.0).ceil() as u32,
        scale: 1.0 / (1.0 - p),
        key,
    })
}

/// The tensors `q`, `k` and `v` are read from: `of[i]` is operand `i`'s tensor, and
/// `covered[t]` says the operands' layouts together write every element of tensor `t`'s
/// gradient exactly once (else the gradient starts from zeros).
struct Inputs<'a> {
    tensors: Vec<&'a Tensor>,
    of: [usize; 3],
    covered: Vec<bool>,
}

/// Half-precision inference on the GPU without a float mask
/// ([`crate::ops::half::gpu_inference`]): the kernel then reads the sources as they are
/// and, on the native path, writes a 16-bit output; otherwise half sources are widened.
fn half_inference(sources: &[&Tensor], mask: Option<&Tensor>) -> bool {
    crate::ops::half::gpu_inference(sources) && mask.is_none_or(|m| m.dtype() == DType::U32)
}

/// Runs the checked call and records its backward (one gradient per input tensor, the
/// operands' parts written in place at their layouts: no copies to split or merge heads).
fn run(
    inputs: Inputs<'_>,
    geo: AttentionGeometry,
    mask: Option<Tensor>,
    out_shape: Vec<usize>,
) -> Result<Tensor> {
    let first = inputs.tensors[0];
    if geo.bh * geo.l * geo.s * geo.ev == 0 {
        // No query, key or value element: a zero output (PyTorch's result for S = 0)
        // and zero gradients.
        let out = Tensor::zeros(&out_shape, first.device())?.to_dtype(first.dtype())?;
        let zeros: Vec<Tensor> = inputs.tensors.iter().map(|t| t.detach()).collect();
        return Ok(record(out, OP, &inputs.tensors, move |_| {
            zeros.iter().map(|t| t.zeros_like().map(Some)).collect()
        }));
    }
    let [a, b, c] = inputs.of.map(|i| inputs.tensors[i]);
    let backend = first.device().backend();
    let (o, lse) = backend.attention(
        [a.storage(), b.storage(), c.storage()],
        mask.as_ref().map(|m| m.storage()),
        &geo,
    )?;
    let out = crate::ops::half::like(o, out_shape, first)?;
    // The log-sum-exps stay in the compute type (f32 for half sources).
    let lse_dtype = if first.dtype().is_half() {
        DType::F32
    } else {
        first.dtype()
    };
    let lse = Tensor::from_storage(lse, vec![geo.bh * geo.l], lse_dtype, first.device().clone());
    let saved: Vec<Tensor> = inputs.tensors.iter().map(|t| t.detach()).collect();
    let (of, covered) = (inputs.of, inputs.covered);
    let o = out.detach();
    Ok(record(out, OP, &inputs.tensors, move |g| {
        let backend = g.device().backend();
        let grads = saved
            .iter()
            .zip(&covered)
            .map(|(t, &full)| {
                if full {
                    backend.alloc_like(t.storage(), t.numel())
                } else {
                    Ok(Tensor::zeros(t.shape(), t.device())?
                        .to_dtype(t.dtype())?
                        .storage()
                        .clone())
                }
            })
            .collect::<Result<Vec<_>>>()?;
        no_grad(|| {
            backend.attention_backward(
                of.map(|i| saved[i].storage()),
                mask.as_ref().map(|m| m.storage()),
                [o.storage(), lse.storage(), g.storage()],
                &geo,
                of.map(|i| &grads[i]),
            )
        })?;
        Ok(grads
            .into_iter()
            .zip(&saved)
            .map(|(d, t)| Some(Tensor::like(d, t.shape().to_vec(), t)))
            .collect())
    }))
}

/// The heads of one operand of [`multi_head_attention`]: `src` `[N, T, W]` holds head
/// `h`'s `T` rows at columns `col + h * head_dim ..`, as a packed projection does.
#[derive(Clone, Copy)]
pub(crate) struct Heads<'a> {
    /// The projection `[N, T, W]`.
    pub src: &'a Tensor,
    /// The column of head 0's first element.
    pub col: usize,
}

/// Attention of `heads` heads read straight from packed projections: queries `[N, L,
/// heads * e]` at `q`, keys at `k` and values `[N, S, heads * ev]` at `v` give `[N, L,
/// heads * ev]` with the heads side by side, as `MultiheadAttention` feeds its output
/// projection. The same as splitting the heads (`[N, T, H, d] -> [N, H, T, d]`), calling
/// [`Tensor::scaled_dot_product_attention`] and merging them back, without the copies
/// (the kernels read and write the heads at their strides, and the backward writes each
/// projection's gradient in place). `mask` broadcasts to `[N, heads, L, S]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn multi_head_attention(
    [q, k, v]: [Heads<'_>; 3],
    heads: usize,
    (e, ev): (usize, usize),
    attn_mask: Option<&Tensor>,
    dropout_p: f64,
    is_causal: bool,
    scale: f64,
    key: RngKey,
) -> Result<Tensor> {
    // Half sources: each distinct one widened once, so packed operands stay packed.
    let mut distinct: Vec<&Tensor> = Vec::new();
    for h in [&q, &k, &v] {
        if !distinct.iter().any(|t| t.same_tensor(h.src)) {
            distinct.push(h.src);
        }
    }
    let at = |t: &Tensor| distinct.iter().position(|d| d.same_tensor(t)).unwrap_or(0);
    let (iq, ik, iv) = (at(q.src), at(k.src), at(v.src));
    let (cq, ck, cv) = (q.col, k.col, v.col);
    let ins = crate::ops::half::with_optional(&distinct, &[attn_mask]);
    if half_inference(&distinct, attn_mask) {
        // Read as they are below.
    } else if let Some(r) = crate::ops::half::widened(OP, &ins, |w| {
        let (f, m) = crate::ops::half::split_optional(w, distinct.len(), &[attn_mask]);
        let heads_at = |i: usize, col: usize| Heads { src: &f[i], col };
        multi_head_attention(
            [heads_at(iq, cq), heads_at(ik, ck), heads_at(iv, cv)],
            heads,
            (e, ev),
            m[0],
            dropout_p,
            is_causal,
            scale,
            key,
        )
    }) {
        return r;
    }
    check_pair(OP, q.src, k.src)?;
    check_pair(OP, q.src, v.src)?;
    let dims = |h: &Heads<'_>, width: usize| -> Result<(usize, usize, usize)> {
        let sh = h.src.shape();
        if sh.len() != 3 || h.col + heads * width > sh[2] {
            return shape_err(
                OP,
                format!(
                    "a projection {sh:?} must be [N, T, W] with {heads} heads of {width} from column {}",
                    h.col
                ),
            );
        }
        Ok((sh[0], sh[1], sh[2]))
    };
    let ((n, l, wq), (nk, s, wk), (nv, sv, wv)) = (dims(&q, e)?, dims(&k, e)?, dims(&v, ev)?);
    if nk != n || nv != n || sv != s {
        return shape_err(
            OP,
            format!(
                "q {:?}, k {:?}, v {:?}: batch sizes or key lengths differ",
                q.src.shape(),
                k.src.shape(),
                v.src.shape()
            ),
        );
    }
    if heads == 0 || e == 0 {
        return shape_err(OP, format!("{heads} heads of dimension {e}"));
    }
    check_call(q.src, (e, ev), attn_mask.is_some(), is_causal, dropout_p)?;
    let out_shape = vec![n, l, heads * ev];
    crate::ops::check_out(OP, &out_shape, q.src.dtype(), q.src.device())?;
    let lead = [n, heads];
    let mask = attn_mask
        .map(|m| mask_layout(m, q.src, &lead, l, s))
        .transpose()?;
    // One input per distinct tensor; each operand's columns on it.
    let mut tensors: Vec<&Tensor> = Vec::new();
    let mut cols: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut of = [0; 3];
    for (i, (h, width)) in [(q, e), (k, e), (v, ev)].into_iter().enumerate() {
        let span = (h.col, h.col + heads * width);
        match tensors.iter().position(|t| t.same_tensor(h.src)) {
            Some(t) if cols[t].iter().all(|&(a, b)| span.1 <= a || b <= span.0) => {
                cols[t].push(span);
                of[i] = t;
            }
            _ => {
                tensors.push(h.src);
                cols.push(vec![span]);
                of[i] = tensors.len() - 1;
            }
        }
    }
    let covered = tensors
        .iter()
        .zip(&cols)
        .map(|(t, c)| c.iter().map(|(a, b)| b - a).sum::<usize>() == t.shape()[2])
        .collect();
    let bh = n * heads;
    let layout = |h: &Heads<'_>, t: usize, w: usize, width: usize| RowLayout {
        off: h.col,
        heads,
        batch: t * w,
        head: width,
        row: w,
    };
    let geo = AttentionGeometry {
        bh,
        l,
        s,
        e,
        ev,
        scale,
        causal: is_causal,
        mask: mask.as_ref().map(|m| m.1),
        dropout: dropout(dropout_p, key),
        layouts: [
            layout(&q, l, wq, e),
            layout(&k, s, wk, e),
            layout(&v, s, wv, ev),
            RowLayout {
                off: 0,
                heads,
                batch: l * heads * ev,
                head: ev,
                row: heads * ev,
            },
        ],
    };
    let inputs = Inputs {
        tensors,
        of,
        covered,
    };
    run(inputs, geo, mask.map(|m| m.0), out_shape)
}

impl Tensor {
    /// Scaled-dot-product attention of the queries `self` `[..., L, E]` over keys `k`
    /// `[..., S, E]` and values `v` `[..., S, Ev]` (the same leading batch and head
    /// dimensions), as PyTorch's `F.scaled_dot_product_attention`:
    /// `softmax(q k^T scale + mask) v`, `[..., L, Ev]`.
    ///
    /// - `scale` defaults to `1 / sqrt(E)`.
    /// - `is_causal`: query `i` sees keys `j <= i` (upper-left aligned, as PyTorch).
    /// - `attn_mask`, broadcast to `[..., L, S]`: a `u32` 0/1 mask (1 = the key takes
    ///   part) or a float mask of `q`'s dtype added to the scores (`-inf` excludes). A
    ///   query row that sees no key gives zeros (as PyTorch). The mask gets no gradient.
    ///   Giving both a mask and `is_causal` is an error, as in PyTorch.
    /// - `dropout_p > 0` drops attention weights with that probability (scaling the
    ///   rest by `1 / (1 - p)`) from the device's seeded generator; pass 0 outside
    ///   training, as with PyTorch's function.
    ///
    /// On the GPU this is one fused kernel that never stores the `[L, S]` scores (and
    /// three for the backward); head dimensions of at most 128 there.
    ///
    /// ```
    /// # use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let q = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], &[1, 2, 2], &dev)?;
    /// let v = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 2, 2], &dev)?;
    /// let out = q.scaled_dot_product_attention(&q, &v, None, 0.0, true, None)?;
    /// assert_eq!(out.to_vec::<f32>()?[..2], [1.0, 2.0]); // row 0 sees key 0 only
    /// # Ok(()) }
    /// ```
    pub fn scaled_dot_product_attention(
        &self,
        k: &Tensor,
        v: &Tensor,
        attn_mask: Option<&Tensor>,
        dropout_p: f64,
        is_causal: bool,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        let key = if dropout_p > 0.0 {
            self.device().next_rng_key()
        } else {
            RngKey { seed: 0, offset: 0 }
        };
        scaled_dot_product_attention_with_key(
            self, k, v, attn_mask, dropout_p, is_causal, scale, key,
        )
    }
}
