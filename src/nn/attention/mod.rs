//! `MultiheadAttention`: PyTorch's `nn.MultiheadAttention`, with its parameter names and
//! layouts (so its state dicts load), `batch_first`, self- and cross-attention, key
//! padding and attention masks, and the causal hint.

mod sdpa;

use super::{init, Linear, Module, Parameter, TrainFlag};
use crate::backend::random::RngKey;
use crate::device::Device;
use crate::error::{arg_err, shape_err, Result};
use crate::ops::attention::{multi_head_attention, Heads};
use crate::tensor::{DType, Tensor};

const OP: &str = "MultiheadAttention";

/// The constructor arguments of [`MultiheadAttention`] beyond `embed_dim` and
/// `num_heads` (PyTorch's keyword arguments, with its defaults).
///
/// PyTorch's `add_bias_kv` and `add_zero_attn` are not supported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultiheadAttentionOptions {
    /// Dropout on the attention weights in training mode (`0 <= dropout < 1`; default 0).
    pub dropout: f64,
    /// Whether the input and output projections have biases (default `true`).
    pub bias: bool,
    /// Features of the keys (default `None`: `embed_dim`).
    pub kdim: Option<usize>,
    /// Features of the values (default `None`: `embed_dim`).
    pub vdim: Option<usize>,
    /// Inputs and output are `[N, L, E]` instead of `[L, N, E]` (default `false`).
    pub batch_first: bool,
}

impl Default for MultiheadAttentionOptions {
    fn default() -> Self {
        MultiheadAttentionOptions {
            dropout: 0.0,
            bias: true,
            kdim: None,
            vdim: None,
            batch_first: false,
        }
    }
}

/// The arguments of [`MultiheadAttention::forward_qkv`] beyond the query, key and value,
/// with PyTorch's defaults (`need_weights` and `average_attn_weights` true, no masks).
///
/// Masks follow `nn.MultiheadAttention`: a `U32` mask stands in for PyTorch's bool and a
/// 1 (True) means "not allowed to attend"; a float mask is added to the scores.
#[derive(Clone, Copy, Debug)]
pub struct AttentionArgs<'a> {
    /// `[N, S]` (`[S]` for an unbatched input): keys to ignore (padding).
    pub key_padding_mask: Option<&'a Tensor>,
    /// Return the attention weights (computed on the composed path); when false the
    /// weights are not materialised and the fused attention path runs, as in PyTorch.
    pub need_weights: bool,
    /// `[L, S]`, or `[N * num_heads, L, S]` for a mask per batch element and head.
    pub attn_mask: Option<&'a Tensor>,
    /// Average the returned weights over the heads (`[N, L, S]`), else `[N, H, L, S]`.
    pub average_attn_weights: bool,
    /// Causal attention: query `i` sees keys `j <= i`. PyTorch takes this as a hint that
    /// `attn_mask` is the causal mask and requires that mask; here `attn_mask` may be
    /// left out, and the causal mask is then built.
    pub is_causal: bool,
}

impl Default for AttentionArgs<'_> {
    fn default() -> Self {
        AttentionArgs {
            key_padding_mask: None,
            need_weights: true,
            attn_mask: None,
            average_attn_weights: true,
            is_causal: false,
        }
    }
}

/// Multi-head attention (`torch.nn.MultiheadAttention`):
/// `concat(head_1, ..., head_H) W_o^T + b_o` with
/// `head_i = softmax(Q_i K_i^T / sqrt(d) + mask) V_i`, where `Q`, `K`, `V` are the
/// projected query, key and value split into `H` heads of `d = embed_dim / H`.
///
/// Parameters are PyTorch's: `in_proj_weight` `[3E, E]` (query, key and value
/// projections stacked), or `q_proj_weight` `[E, E]`, `k_proj_weight` `[E, kdim]` and
/// `v_proj_weight` `[E, vdim]` when `kdim` or `vdim` differ from `E`; `in_proj_bias`
/// `[3E]`; and `out_proj` (a [`Linear`]: `out_proj.weight`, `out_proj.bias`). They are
/// initialised as PyTorch does (Xavier uniform projections, zero biases, `out_proj`'s
/// weight uniform in `±1/sqrt(E)`), so a PyTorch `state_dict` loads with
/// [`Module::load_state_dict`]. `add_bias_kv` and `add_zero_attn` are not supported.
///
/// [`Module::forward`] is self-attention without masks; [`MultiheadAttention::forward_qkv`]
/// takes PyTorch's full argument list.
///
/// ```
/// use wgrad::nn::{AttentionArgs, MultiheadAttention, MultiheadAttentionOptions};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let opts = MultiheadAttentionOptions { batch_first: true, ..Default::default() };
/// let mha = MultiheadAttention::with_options(&dev, 16, 4, opts)?;
/// let x = Tensor::randn(&[2, 5, 16], &dev)?; // [N, L, E]
/// let (y, weights) = mha.forward_qkv(&x, &x, &x, AttentionArgs::default())?;
/// assert_eq!(y.shape(), [2, 5, 16]);
/// assert_eq!(weights.unwrap().shape(), [2, 5, 5]); // averaged over the heads
/// assert_eq!(mha.forward(&x)?.shape(), [2, 5, 16]); // Module::forward: self-attention
/// # Ok(()) }
/// ```
#[derive(Debug, Module)]
pub struct MultiheadAttention {
    /// `[3E, E]`: the query, key and value projections stacked (when `kdim = vdim = E`).
    pub in_proj_weight: Option<Parameter>,
    /// `[E, E]`: the query projection (when `kdim` or `vdim` differ from `E`).
    pub q_proj_weight: Option<Parameter>,
    /// `[E, kdim]`: the key projection (when `kdim` or `vdim` differ from `E`).
    pub k_proj_weight: Option<Parameter>,
    /// `[E, vdim]`: the value projection (when `kdim` or `vdim` differ from `E`).
    pub v_proj_weight: Option<Parameter>,
    /// `[3E]`: the query, key and value projections' biases, if the layer has biases.
    pub in_proj_bias: Option<Parameter>,
    /// The output projection `[E, E]` (with a bias if the layer has biases).
    pub out_proj: Linear,
    embed_dim: usize,
    num_heads: usize,
    kdim: usize,
    vdim: usize,
    dropout: f64,
    batch_first: bool,
    training: TrainFlag,
}

impl MultiheadAttention {
    /// Attention over `embed_dim` features in `num_heads` heads, with PyTorch's default
    /// options. Errors when `embed_dim` or `num_heads` is 0 or `num_heads` does not
    /// divide `embed_dim`.
    pub fn new(device: &Device, embed_dim: usize, num_heads: usize) -> Result<Self> {
        Self::with_options(device, embed_dim, num_heads, Default::default())
    }

    /// Attention with the given options (dropout, biases, `kdim`, `vdim`, `batch_first`).
    pub fn with_options(
        device: &Device,
        embed_dim: usize,
        num_heads: usize,
        options: MultiheadAttentionOptions,
    ) -> Result<Self> {
        let MultiheadAttentionOptions {
            dropout,
            bias,
            kdim,
            vdim,
            batch_first,
        } = options;
        if embed_dim == 0 || num_heads == 0 {
            return arg_err(
                OP,
                format!(
                    "embed_dim and num_heads must be greater than 0, got {embed_dim} and \
                     {num_heads}"
                ),
            );
        }
        if !embed_dim.is_multiple_of(num_heads) {
            return arg_err(
                OP,
                format!("embed_dim {embed_dim} must be divisible by num_heads {num_heads}"),
            );
        }
        if !(0.0..1.0).contains(&dropout) {
            return arg_err(OP, format!("dropout must be in [0, 1), got {dropout}"));
        }
        let (kdim, vdim) = (kdim.unwrap_or(embed_dim), vdim.unwrap_or(embed_dim));
        if kdim == 0 || vdim == 0 {
            return arg_err(
                OP,
                format!("kdim and vdim must be greater than 0, got {kdim} and {vdim}"),
            );
        }
        let xavier = |shape: &[usize]| Parameter::new(init::xavier_uniform(shape, 1.0, device));
        let packed = kdim == embed_dim && vdim == embed_dim;
        let (mut in_proj_weight, mut q_proj_weight, mut k_proj_weight, mut v_proj_weight) =
            (None, None, None, None);
        if packed {
            in_proj_weight = Some(xavier(&[3 * embed_dim, embed_dim]));
        } else {
            q_proj_weight = Some(xavier(&[embed_dim, embed_dim]));
            k_proj_weight = Some(xavier(&[embed_dim, kdim]));
            v_proj_weight = Some(xavier(&[embed_dim, vdim]));
        }
        let in_proj_bias = match bias {
            true => Some(Parameter::new(Tensor::zeros(&[3 * embed_dim], device)?)),
            false => None,
        };
        let out_proj = Linear::with_bias(device, embed_dim, embed_dim, bias);
        if let Some(b) = &out_proj.bias {
            init::zeros_(&b.tensor())?;
        }
        Ok(MultiheadAttention {
            in_proj_weight,
            q_proj_weight,
            k_proj_weight,
            v_proj_weight,
            in_proj_bias,
            out_proj,
            embed_dim,
            num_heads,
            kdim,
            vdim,
            dropout,
            batch_first,
            training: TrainFlag::default(),
        })
    }

    /// The model width `E`.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    /// The number of heads `H`.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// The features of each head, `E / H`.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// Whether inputs and output are `[N, L, E]`.
    pub fn batch_first(&self) -> bool {
        self.batch_first
    }

    /// PyTorch's `forward(query, key, value, key_padding_mask, need_weights, attn_mask,
    /// average_attn_weights, is_causal)`: `query` `[L, N, E]`, `key` `[S, N, kdim]`,
    /// `value` `[S, N, vdim]` (batch first: `[N, L, E]`, ...; unbatched: `[L, E]`,
    /// `[S, kdim]`, `[S, vdim]`) give the output `[L, N, E]` (in the query's layout) and,
    /// when `args.need_weights`, the attention weights `[N, L, S]` (averaged over the
    /// heads) or `[N, H, L, S]`, batch first whatever `batch_first` says (unbatched:
    /// without `N`). The weights are those after dropout, as PyTorch returns them.
    ///
    /// With `need_weights` false the weights are not materialised and the attention runs
    /// as `scaled_dot_product_attention` (the fused path), as PyTorch's does; there a
    /// query whose keys are all masked gives zeros before the output projection, where
    /// the weights path gives NaN (both as PyTorch). With `is_causal` and neither a key
    /// padding mask nor `need_weights`, `attn_mask` is ignored and the causal mask used,
    /// as PyTorch does with the hint.
    ///
    /// Errors (before any work) when a feature size, the batch sizes, the key and value
    /// lengths or a mask's shape do not fit, or a float mask's dtype is not the query's.
    /// An empty sequence gives an empty result (`L = 0`), or the output projection's
    /// bias (`S = 0`), as PyTorch.
    pub fn forward_qkv(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        args: AttentionArgs<'_>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        self.forward_qkv_add(query, key, value, args, None)
    }

    /// [`MultiheadAttention::forward_qkv`] with `residual` (the query's shape and
    /// layout) added in the output projection's epilogue: a transformer layer's residual
    /// connection without a pass of its own.
    pub(crate) fn forward_qkv_add(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        args: AttentionArgs<'_>,
        residual: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (batched, n, l, s) = self.check_inputs(query, key, value)?;
        if let Some(r) = residual {
            if r.shape() != query.shape() {
                return shape_err(
                    OP,
                    format!("a residual {:?} for a query {:?}", r.shape(), query.shape()),
                );
            }
        }
        let mask = self.merged_mask(&args, batched, n, l, s, query)?;
        // Batch-first, batched views: [N, L, E], [N, S, kdim], [N, S, vdim].
        let canonical = |t: &Tensor| -> Result<Tensor> {
            match (batched, self.batch_first) {
                (false, _) => t.unsqueeze(0),
                (true, true) => Ok(t.clone()),
                (true, false) => t.transpose(0, 1),
            }
        };
        // Self-attention (and keys that are the values) keeps one tensor, so that one
        // product projects them together.
        let q_in = canonical(query)?;
        let k_in = if key.same_tensor(query) {
            q_in.clone()
        } else {
            canonical(key)?
        };
        let v_in = if value.same_tensor(key) {
            k_in.clone()
        } else {
            canonical(value)?
        };
        let (h, d) = (self.num_heads, self.head_dim());
        let scale = 1.0 / (d as f64).sqrt();
        let training = self.training.get();
        let (attended, weights) = match mask {
            MaskPlan::Weights(m) => {
                let (q, k, v) = self.project_inputs(&q_in, &k_in, &v_in)?;
                // [N, T, E] -> [N, H, T, d].
                let heads =
                    |t: Tensor, len: usize| t.reshape(&[n, len, h, d])?.permute(&[0, 2, 1, 3]);
                let (q, k, v) = (heads(q, l)?, heads(k, s)?, heads(v, s)?);
                let (o, w) = sdpa::attention_with_weights(
                    &q,
                    &k,
                    &v,
                    m.as_ref(),
                    scale,
                    self.dropout,
                    training,
                )?;
                // [N, H, L, d] -> [N, L, E].
                let o = o.permute(&[0, 2, 1, 3])?.reshape(&[n, l, self.embed_dim])?;
                (o, Some(w))
            }
            MaskPlan::Fused { mask, causal } => {
                let p = if training { self.dropout } else { 0.0 };
                let o = self.fused_heads(&q_in, &k_in, &v_in, mask.as_ref(), causal, scale, p)?;
                (o, None)
            }
        };
        // The output projection, with the residual in its epilogue.
        let out = match residual {
            Some(r) => self.out_proj.forward_add(&attended, &canonical(r)?)?,
            None => self.out_proj.forward(&attended)?,
        };
        let out = match (batched, self.batch_first) {
            (false, _) => out.squeeze(0)?,
            (true, true) => out,
            (true, false) => out.transpose(0, 1)?,
        };
        let weights = match weights {
            None => None,
            Some(w) => {
                let w = match args.average_attn_weights {
                    true => w.mean_dim(&[1], false)?,
                    false => w,
                };
                Some(if batched { w } else { w.squeeze(0)? })
            }
        };
        Ok((out, weights))
    }

    /// The fused path: the projections (one product for self-attention, one for keys
    /// that are the values), then attention reading each head where the projection
    /// wrote it and writing the heads side by side, `[N, L, E]`: no copies to split or
    /// merge heads.
    #[allow(clippy::too_many_arguments)]
    fn fused_heads(
        &self,
        q_in: &Tensor,
        k_in: &Tensor,
        v_in: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
        scale: f64,
        dropout_p: f64,
    ) -> Result<Tensor> {
        let e = self.embed_dim;
        let (h, d) = (self.num_heads, self.head_dim());
        let key = match dropout_p > 0.0 {
            true => q_in.device().next_rng_key(),
            false => RngKey { seed: 0, offset: 0 },
        };
        let bias = self.in_proj_bias.as_ref().map(Parameter::tensor);
        let packed = |x: &Tensor, from: usize, parts: usize| -> Result<Tensor> {
            let w = self.in_proj_weight.as_ref().expect("checked").tensor();
            let (w, b) = match (from, parts) {
                (0, 3) => (w, bias.clone()),
                _ => (
                    w.narrow(0, from * e, parts * e)?,
                    bias.as_ref()
                        .map(|b| b.narrow(0, from * e, parts * e))
                        .transpose()?,
                ),
            };
            x.linear_act(&w, b.as_ref(), crate::nn::Act::Identity)
        };
        let attend = |q: Heads<'_>, k: Heads<'_>, v: Heads<'_>| {
            multi_head_attention([q, k, v], h, (d, d), mask, dropout_p, causal, scale, key)
        };
        let at = |src, col| Heads { src, col };
        match (
            &self.in_proj_weight,
            k_in.same_tensor(q_in),
            v_in.same_tensor(k_in),
        ) {
            (Some(_), true, true) => {
                let qkv = packed(q_in, 0, 3)?;
                attend(at(&qkv, 0), at(&qkv, e), at(&qkv, 2 * e))
            }
            (Some(_), _, true) => {
                let (q, kv) = (packed(q_in, 0, 1)?, packed(k_in, 1, 2)?);
                attend(at(&q, 0), at(&kv, 0), at(&kv, e))
            }
            _ => {
                let (q, k, v) = self.project_inputs(q_in, k_in, v_in)?;
                attend(at(&q, 0), at(&k, 0), at(&v, 0))
            }
        }
    }

    /// Checks features, ranks, batch sizes and lengths; returns whether the input is
    /// batched, the batch size `N` (1 unbatched) and the lengths `L` and `S`.
    fn check_inputs(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
    ) -> Result<(bool, usize, usize, usize)> {
        let (qs, ks, vs) = (query.shape(), key.shape(), value.shape());
        let batched = match qs.len() {
            3 => true,
            2 => false,
            r => {
                return shape_err(
                    OP,
                    format!("query must be [L, N, E], [N, L, E] or [L, E], got rank {r} {qs:?}"),
                )
            }
        };
        if ks.len() != qs.len() || vs.len() != qs.len() {
            return shape_err(
                OP,
                format!(
                    "query {qs:?}, key {ks:?} and value {vs:?} must all be batched (3-D) or \
                     all unbatched (2-D)"
                ),
            );
        }
        let last = qs.len() - 1;
        for (what, shape, want) in [
            ("query", qs, self.embed_dim),
            ("key", ks, self.kdim),
            ("value", vs, self.vdim),
        ] {
            if shape[last] != want {
                return shape_err(
                    OP,
                    format!("{what} {shape:?} must have {want} features in its last dimension"),
                );
            }
        }
        if ks[..last] != vs[..last] {
            return shape_err(
                OP,
                format!("key {ks:?} and value {vs:?} must have the same batch size and length"),
            );
        }
        if !batched {
            return Ok((false, 1, qs[0], ks[0]));
        }
        let (batch_dim, seq_dim) = if self.batch_first { (0, 1) } else { (1, 0) };
        if qs[batch_dim] != ks[batch_dim] {
            return shape_err(
                OP,
                format!(
                    "query {qs:?} and key {ks:?} have different batch sizes (batch_first = {})",
                    self.batch_first
                ),
            );
        }
        Ok((true, qs[batch_dim], qs[seq_dim], ks[seq_dim]))
    }

    /// The query, key and value projections `[N, T, E]`.
    fn project_inputs(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let e = self.embed_dim;
        let bias = self.in_proj_bias.as_ref().map(Parameter::tensor);
        let bias_part = |i: usize| -> Result<Option<Tensor>> {
            bias.as_ref().map(|b| b.narrow(0, i * e, e)).transpose()
        };
        let weights = match &self.in_proj_weight {
            Some(w) => {
                let w = w.tensor();
                [
                    w.narrow(0, 0, e)?,
                    w.narrow(0, e, e)?,
                    w.narrow(0, 2 * e, e)?,
                ]
            }
            None => {
                let get = |p: &Option<Parameter>| p.as_ref().map(Parameter::tensor);
                match (
                    get(&self.q_proj_weight),
                    get(&self.k_proj_weight),
                    get(&self.v_proj_weight),
                ) {
                    (Some(q), Some(k), Some(v)) => [q, k, v],
                    _ => {
                        return arg_err(
                            OP,
                            "needs in_proj_weight, or all of q_proj_weight, k_proj_weight and \
                             v_proj_weight",
                        )
                    }
                }
            }
        };
        let project = |x: &Tensor, i: usize| -> Result<Tensor> {
            x.linear_act(
                &weights[i],
                bias_part(i)?.as_ref(),
                crate::nn::Act::Identity,
            )
        };
        Ok((project(q, 0)?, project(k, 1)?, project(v, 2)?))
    }

    /// Checks the masks and merges them into one additive mask, as PyTorch's
    /// `multi_head_attention_forward` does, and picks the path.
    fn merged_mask(
        &self,
        args: &AttentionArgs<'_>,
        batched: bool,
        n: usize,
        l: usize,
        s: usize,
        like: &Tensor,
    ) -> Result<MaskPlan> {
        let h = self.num_heads;
        if let Some(m) = args.key_padding_mask {
            let want: &[usize] = if batched { &[n, s] } else { &[s] };
            if m.shape() != want {
                return shape_err(
                    OP,
                    format!(
                        "key_padding_mask has shape {:?}, expected {want:?}",
                        m.shape()
                    ),
                );
            }
        }
        if let Some(m) = args.attn_mask {
            let ok = match m.rank() {
                2 => m.shape() == [l, s],
                3 => m.shape() == [n * h, l, s],
                _ => false,
            };
            if !ok {
                return shape_err(
                    OP,
                    format!(
                        "attn_mask has shape {:?}, expected [{l}, {s}] or [{}, {l}, {s}] \
                         (batch size times heads, L, S)",
                        m.shape(),
                        n * h
                    ),
                );
            }
        }
        for (what, mask) in [
            ("key_padding_mask", args.key_padding_mask),
            ("attn_mask", args.attn_mask),
        ] {
            if let Some(m) = mask {
                if m.dtype() != DType::U32 && m.dtype() != like.dtype() {
                    return arg_err(
                        OP,
                        format!(
                            "{what} must be U32 (bool) or the query's dtype {:?}, got {:?}",
                            like.dtype(),
                            m.dtype()
                        ),
                    );
                }
            }
        }
        if args.is_causal && args.key_padding_mask.is_none() && !args.need_weights {
            // PyTorch drops attn_mask here and hands the causal flag to the fused path.
            return Ok(MaskPlan::Fused {
                mask: None,
                causal: true,
            });
        }
        let attn = match (args.attn_mask, args.is_causal) {
            (Some(m), _) => {
                let m = sdpa::additive_from_blocking(m, like)?;
                Some(match m.rank() {
                    2 => m.reshape(&[1, 1, l, s])?,
                    _ => m.reshape(&[n, h, l, s])?,
                })
            }
            (None, true) => Some(sdpa::causal_additive_mask(l, s, like)?.reshape(&[1, 1, l, s])?),
            (None, false) => None,
        };
        let padding = args
            .key_padding_mask
            .map(|m| sdpa::additive_from_blocking(m, like)?.reshape(&[n, 1, 1, s]))
            .transpose()?;
        let mask = match (attn, padding) {
            (Some(a), Some(p)) => Some(a.add(&p)?),
            (a, p) => a.or(p),
        };
        Ok(match args.need_weights {
            true => MaskPlan::Weights(mask),
            false => MaskPlan::Fused {
                mask,
                causal: false,
            },
        })
    }
}

/// Which attention path runs, with its additive mask (broadcastable to `[N, H, L, S]`).
enum MaskPlan {
    /// The composed path that returns the weights.
    Weights(Option<Tensor>),
    /// The fused path.
    Fused { mask: Option<Tensor>, causal: bool },
}

/// What the derived `Module` impl calls.
impl MultiheadAttention {
    /// Self-attention of `x` without masks (the output only).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let args = AttentionArgs {
            need_weights: false,
            ..Default::default()
        };
        Ok(self.forward_qkv(x, x, x, args)?.0)
    }
}
