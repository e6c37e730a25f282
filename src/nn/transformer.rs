//! The transformer layers of `torch.nn`: [`TransformerEncoderLayer`],
//! [`TransformerEncoder`], [`TransformerDecoderLayer`] and [`TransformerDecoder`], with
//! PyTorch's sub-module names (`self_attn`, `linear1`, `linear2`, `norm1`, `norm2`,
//! `multihead_attn`, `norm3`, `layers.0`, `norm`), so their state dicts load.

use super::{
    AttentionArgs, Dropout, LayerNorm, LayerNormOptions, Linear, Module, MultiheadAttention,
    MultiheadAttentionOptions,
};
use crate::device::Device;
use crate::error::{arg_err, Result};
use crate::ops::matmul::Act;
use crate::tensor::Tensor;

/// The constructor arguments of the transformer layers beyond `d_model` and `nhead`
/// (PyTorch's keyword arguments, with its defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformerLayerOptions {
    /// Width of the feed-forward block (default 2048).
    pub dim_feedforward: usize,
    /// Dropout after the attention, inside and after the feed-forward block, and on the
    /// attention weights (default 0.1).
    pub dropout: f64,
    /// The feed-forward block's activation (default ReLU; `Act::Gelu` is PyTorch's
    /// `"gelu"`), fused into its first product.
    pub activation: Act,
    /// The layer norms' `eps` (default 1e-5).
    pub layer_norm_eps: f64,
    /// Inputs and outputs are `[N, L, E]` instead of `[L, N, E]` (default `false`).
    pub batch_first: bool,
    /// Pre-norm (`x + f(norm(x))`) instead of post-norm (`norm(x + f(x))`, the default).
    pub norm_first: bool,
    /// Biases in the products and the layer norms (default `true`).
    pub bias: bool,
}

impl Default for TransformerLayerOptions {
    fn default() -> Self {
        TransformerLayerOptions {
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: Act::Relu,
            layer_norm_eps: 1e-5,
            batch_first: false,
            norm_first: false,
            bias: true,
        }
    }
}

/// The masks of [`TransformerEncoderLayer::forward_with`] (PyTorch's `src_mask`,
/// `src_key_padding_mask` and `is_causal`, with the conventions of
/// [`MultiheadAttention`]: a `U32` 1 means "not allowed to attend", a float mask is
/// added to the scores).
#[derive(Clone, Copy, Debug, Default)]
pub struct EncoderMasks<'a> {
    /// `[L, L]` or `[N * nhead, L, L]`.
    pub src_mask: Option<&'a Tensor>,
    /// `[N, L]`: positions to ignore (padding).
    pub src_key_padding_mask: Option<&'a Tensor>,
    /// Causal self-attention (`src_mask` may then be left out).
    pub is_causal: bool,
}

/// The masks of [`TransformerDecoderLayer::forward_with`] (PyTorch's names and
/// conventions, as [`EncoderMasks`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct DecoderMasks<'a> {
    /// `[T, T]` or `[N * nhead, T, T]`: the self-attention's mask.
    pub tgt_mask: Option<&'a Tensor>,
    /// `[T, S]` or `[N * nhead, T, S]`: the cross-attention's mask.
    pub memory_mask: Option<&'a Tensor>,
    /// `[N, T]`: target positions to ignore.
    pub tgt_key_padding_mask: Option<&'a Tensor>,
    /// `[N, S]`: memory positions to ignore.
    pub memory_key_padding_mask: Option<&'a Tensor>,
    /// Causal self-attention.
    pub tgt_is_causal: bool,
    /// Causal cross-attention.
    pub memory_is_causal: bool,
}

fn attention_options(o: &TransformerLayerOptions) -> MultiheadAttentionOptions {
    MultiheadAttentionOptions {
        dropout: o.dropout,
        bias: o.bias,
        kdim: None,
        vdim: None,
        batch_first: o.batch_first,
    }
}

fn layer_norm(device: &Device, d_model: usize, o: &TransformerLayerOptions) -> Result<LayerNorm> {
    let options = LayerNormOptions {
        eps: o.layer_norm_eps,
        bias: o.bias,
        ..Default::default()
    };
    LayerNorm::with_options(device, &[d_model], options)
}

fn check_options(op: &'static str, d_model: usize, o: &TransformerLayerOptions) -> Result<()> {
    if d_model == 0 || o.dim_feedforward == 0 {
        return arg_err(
            op,
            format!(
                "d_model and dim_feedforward must be greater than 0, got {d_model} and {}",
                o.dim_feedforward
            ),
        );
    }
    if !(0.0..1.0).contains(&o.dropout) {
        return arg_err(op, format!("dropout must be in [0, 1), got {}", o.dropout));
    }
    Ok(())
}

/// `residual + dropout(attention of x to kv)` (`kv` is `x` itself for self-attention)
/// through `mha` with the masks `(key_padding_mask, attn_mask, is_causal)`, on the fused
/// path (no weights): the attention block both layers share. Where the dropout does
/// nothing (evaluation, or `p = 0`) and the layout is batch first, the residual is added
/// in the output projection's epilogue.
fn attention_block(
    mha: &MultiheadAttention,
    dropout: &Dropout,
    x: &Tensor,
    kv: &Tensor,
    (key_padding_mask, attn_mask, is_causal): (Option<&Tensor>, Option<&Tensor>, bool),
    residual: &Tensor,
) -> Result<Tensor> {
    let args = AttentionArgs {
        key_padding_mask,
        need_weights: false,
        attn_mask,
        average_attn_weights: true,
        is_causal,
    };
    if dropout.is_identity() && mha.batch_first() {
        return Ok(mha.forward_qkv_add(x, kv, kv, args, Some(residual))?.0);
    }
    let (y, _) = mha.forward_qkv(x, kv, kv, args)?;
    residual.add(&dropout.forward(&y)?)
}

/// `x` through every layer of a stack by `step`, then the stack's final norm.
fn through<L>(
    layers: &[L],
    norm: Option<&LayerNorm>,
    x: &Tensor,
    step: impl Fn(&L, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut x = x.clone();
    for layer in layers {
        x = step(layer, &x)?;
    }
    match norm {
        Some(n) => n.forward(&x),
        None => Ok(x),
    }
}

/// The feed-forward block and its sub-modules, shared by both layers, with its
/// residual connection: `residual + dropout2(linear2(dropout(act(linear1(x)))))`, the
/// activation in `linear1`'s kernel and, where `dropout2` does nothing, the residual in
/// `linear2`'s epilogue.
fn feed_forward(
    linear1: &Linear,
    act: Act,
    dropout: &Dropout,
    linear2: &Linear,
    out_dropout: &Dropout,
    x: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    let h = match linear1.forward_with_activation(x, act) {
        Some(h) => h?,
        None => linear1.forward(x)?,
    };
    let h = dropout.forward(&h)?;
    if out_dropout.is_identity() {
        return linear2.forward_add(&h, residual);
    }
    residual.add(&out_dropout.forward(&linear2.forward(&h)?)?)
}

/// One encoder layer (`torch.nn.TransformerEncoderLayer`): self-attention and a
/// feed-forward block, each with a residual connection and a layer norm, after
/// (post-norm, PyTorch's default) or before (`norm_first`) the block.
///
/// ```
/// use wgrad::nn::{Module, TransformerEncoderLayer, TransformerLayerOptions};
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let opts = TransformerLayerOptions { dim_feedforward: 32, batch_first: true, ..Default::default() };
/// let layer = TransformerEncoderLayer::with_options(&dev, 16, 4, opts)?;
/// let x = Tensor::randn(&[2, 5, 16], &dev)?; // [N, L, E]
/// assert_eq!(layer.forward(&x)?.shape(), [2, 5, 16]);
/// let names: Vec<String> = layer.state_dict().into_iter().map(|(n, _)| n).collect();
/// assert!(names.contains(&"self_attn.in_proj_weight".to_string()));
/// assert!(names.contains(&"norm2.bias".to_string()));
/// # Ok(()) }
/// ```
#[derive(Debug, Module)]
pub struct TransformerEncoderLayer {
    /// The self-attention.
    pub self_attn: MultiheadAttention,
    /// `d_model -> dim_feedforward`.
    pub linear1: Linear,
    /// Inside the feed-forward block.
    pub dropout: Dropout,
    /// `dim_feedforward -> d_model`.
    pub linear2: Linear,
    /// Around the attention.
    pub norm1: LayerNorm,
    /// Around the feed-forward block.
    pub norm2: LayerNorm,
    /// After the attention.
    pub dropout1: Dropout,
    /// After the feed-forward block.
    pub dropout2: Dropout,
    #[module(skip)]
    activation: Act,
    norm_first: bool,
}

impl TransformerEncoderLayer {
    /// A layer with PyTorch's defaults (feed-forward 2048, dropout 0.1, ReLU, post-norm,
    /// sequence first).
    pub fn new(device: &Device, d_model: usize, nhead: usize) -> Result<Self> {
        Self::with_options(device, d_model, nhead, TransformerLayerOptions::default())
    }

    /// A layer with other settings. Errors when `nhead` does not divide `d_model`, a
    /// width is 0 or `dropout` is outside `[0, 1)`.
    pub fn with_options(
        device: &Device,
        d_model: usize,
        nhead: usize,
        options: TransformerLayerOptions,
    ) -> Result<Self> {
        check_options("TransformerEncoderLayer", d_model, &options)?;
        let o = &options;
        Ok(TransformerEncoderLayer {
            self_attn: MultiheadAttention::with_options(
                device,
                d_model,
                nhead,
                attention_options(o),
            )?,
            linear1: Linear::with_bias(device, d_model, o.dim_feedforward, o.bias),
            dropout: Dropout::new(o.dropout),
            linear2: Linear::with_bias(device, o.dim_feedforward, d_model, o.bias),
            norm1: layer_norm(device, d_model, o)?,
            norm2: layer_norm(device, d_model, o)?,
            dropout1: Dropout::new(o.dropout),
            dropout2: Dropout::new(o.dropout),
            activation: o.activation,
            norm_first: o.norm_first,
        })
    }

    /// PyTorch's `forward(src, src_mask, src_key_padding_mask, is_causal)`.
    pub fn forward_with(&self, src: &Tensor, masks: EncoderMasks<'_>) -> Result<Tensor> {
        // Each block returns its input's residual plus its output.
        let attend = |x: &Tensor, residual: &Tensor| {
            let m = (masks.src_key_padding_mask, masks.src_mask, masks.is_causal);
            attention_block(&self.self_attn, &self.dropout1, x, x, m, residual)
        };
        let ff = |x: &Tensor, residual: &Tensor| {
            feed_forward(
                &self.linear1,
                self.activation,
                &self.dropout,
                &self.linear2,
                &self.dropout2,
                x,
                residual,
            )
        };
        if self.norm_first {
            let x = attend(&self.norm1.forward(src)?, src)?;
            ff(&self.norm2.forward(&x)?, &x)
        } else {
            let x = self.norm1.forward(&attend(src, src)?)?;
            self.norm2.forward(&ff(&x, &x)?)
        }
    }

    fn forward(&self, src: &Tensor) -> Result<Tensor> {
        self.forward_with(src, EncoderMasks::default())
    }
}

/// A stack of encoder layers and an optional final norm (`torch.nn.TransformerEncoder`:
/// `layers.0.*`, `layers.1.*`, ..., `norm.*`).
///
/// PyTorch copies one layer `num_layers` times, so its layers start equal;
/// [`TransformerEncoder::build`] makes each layer afresh instead (they start different,
/// which changes nothing once a state dict is loaded or training has begun).
#[derive(Debug, Module)]
pub struct TransformerEncoder {
    /// The layers, in order.
    pub layers: Vec<TransformerEncoderLayer>,
    /// Applied after the last layer (a pre-norm stack needs it).
    pub norm: Option<LayerNorm>,
}

impl TransformerEncoder {
    /// A stack of the given layers.
    pub fn new(layers: Vec<TransformerEncoderLayer>, norm: Option<LayerNorm>) -> Self {
        TransformerEncoder { layers, norm }
    }

    /// `num_layers` layers made by `make(i)`, and the final norm.
    ///
    /// ```
    /// use wgrad::nn::{LayerNorm, Module, TransformerEncoder, TransformerEncoderLayer};
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let enc = TransformerEncoder::build(2, |_| TransformerEncoderLayer::new(&dev, 8, 2),
    ///     Some(LayerNorm::new(&dev, &[8])?))?;
    /// assert_eq!(enc.forward(&Tensor::randn(&[3, 1, 8], &dev)?)?.shape(), [3, 1, 8]);
    /// assert!(enc.state_dict().iter().any(|(n, _)| n == "layers.1.linear2.weight"));
    /// # Ok(()) }
    /// ```
    pub fn build(
        num_layers: usize,
        make: impl FnMut(usize) -> Result<TransformerEncoderLayer>,
        norm: Option<LayerNorm>,
    ) -> Result<Self> {
        let layers = (0..num_layers).map(make).collect::<Result<Vec<_>>>()?;
        Ok(TransformerEncoder { layers, norm })
    }

    /// Every layer with the same masks, then the norm.
    pub fn forward_with(&self, src: &Tensor, masks: EncoderMasks<'_>) -> Result<Tensor> {
        through(&self.layers, self.norm.as_ref(), src, |l, x| {
            l.forward_with(x, masks)
        })
    }

    fn forward(&self, src: &Tensor) -> Result<Tensor> {
        self.forward_with(src, EncoderMasks::default())
    }
}

/// One decoder layer (`torch.nn.TransformerDecoderLayer`): self-attention over the
/// target, cross-attention to the encoder's output (`memory`) and a feed-forward block,
/// each with a residual connection and a layer norm (`norm1`, `norm2`, `norm3`).
///
/// [`Module::forward`] has no memory to attend to, so it is an error; use
/// [`TransformerDecoderLayer::forward_with`].
#[derive(Debug, Module)]
pub struct TransformerDecoderLayer {
    /// The self-attention.
    pub self_attn: MultiheadAttention,
    /// The cross-attention (queries from the target, keys and values from `memory`).
    pub multihead_attn: MultiheadAttention,
    /// `d_model -> dim_feedforward`.
    pub linear1: Linear,
    /// Inside the feed-forward block.
    pub dropout: Dropout,
    /// `dim_feedforward -> d_model`.
    pub linear2: Linear,
    /// Around the self-attention.
    pub norm1: LayerNorm,
    /// Around the cross-attention.
    pub norm2: LayerNorm,
    /// Around the feed-forward block.
    pub norm3: LayerNorm,
    /// After the self-attention.
    pub dropout1: Dropout,
    /// After the cross-attention.
    pub dropout2: Dropout,
    /// After the feed-forward block.
    pub dropout3: Dropout,
    #[module(skip)]
    activation: Act,
    norm_first: bool,
}

impl TransformerDecoderLayer {
    /// A layer with PyTorch's defaults.
    pub fn new(device: &Device, d_model: usize, nhead: usize) -> Result<Self> {
        Self::with_options(device, d_model, nhead, TransformerLayerOptions::default())
    }

    /// A layer with other settings (the errors of
    /// [`TransformerEncoderLayer::with_options`]).
    pub fn with_options(
        device: &Device,
        d_model: usize,
        nhead: usize,
        options: TransformerLayerOptions,
    ) -> Result<Self> {
        check_options("TransformerDecoderLayer", d_model, &options)?;
        let o = &options;
        let attention =
            || MultiheadAttention::with_options(device, d_model, nhead, attention_options(o));
        Ok(TransformerDecoderLayer {
            self_attn: attention()?,
            multihead_attn: attention()?,
            linear1: Linear::with_bias(device, d_model, o.dim_feedforward, o.bias),
            dropout: Dropout::new(o.dropout),
            linear2: Linear::with_bias(device, o.dim_feedforward, d_model, o.bias),
            norm1: layer_norm(device, d_model, o)?,
            norm2: layer_norm(device, d_model, o)?,
            norm3: layer_norm(device, d_model, o)?,
            dropout1: Dropout::new(o.dropout),
            dropout2: Dropout::new(o.dropout),
            dropout3: Dropout::new(o.dropout),
            activation: o.activation,
            norm_first: o.norm_first,
        })
    }

    /// PyTorch's `forward(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
    /// memory_key_padding_mask, tgt_is_causal, memory_is_causal)`.
    pub fn forward_with(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        masks: DecoderMasks<'_>,
    ) -> Result<Tensor> {
        // Each block returns its input's residual plus its output.
        let self_block = |x: &Tensor, residual: &Tensor| {
            let m = (
                masks.tgt_key_padding_mask,
                masks.tgt_mask,
                masks.tgt_is_causal,
            );
            attention_block(&self.self_attn, &self.dropout1, x, x, m, residual)
        };
        let cross_block = |x: &Tensor, residual: &Tensor| {
            let m = (
                masks.memory_key_padding_mask,
                masks.memory_mask,
                masks.memory_is_causal,
            );
            attention_block(&self.multihead_attn, &self.dropout2, x, memory, m, residual)
        };
        let ff = |x: &Tensor, residual: &Tensor| {
            feed_forward(
                &self.linear1,
                self.activation,
                &self.dropout,
                &self.linear2,
                &self.dropout3,
                x,
                residual,
            )
        };
        if self.norm_first {
            let x = self_block(&self.norm1.forward(tgt)?, tgt)?;
            let x = cross_block(&self.norm2.forward(&x)?, &x)?;
            ff(&self.norm3.forward(&x)?, &x)
        } else {
            let x = self.norm1.forward(&self_block(tgt, tgt)?)?;
            let x = self.norm2.forward(&cross_block(&x, &x)?)?;
            self.norm3.forward(&ff(&x, &x)?)
        }
    }

    fn forward(&self, _tgt: &Tensor) -> Result<Tensor> {
        arg_err(
            "TransformerDecoderLayer",
            "a decoder layer attends to the encoder's output: call forward_with(tgt, memory, \
             masks)",
        )
    }
}

/// A stack of decoder layers and an optional final norm (`torch.nn.TransformerDecoder`:
/// `layers.0.*`, ..., `norm.*`). [`Module::forward`] is an error, as for the layer.
#[derive(Debug, Module)]
pub struct TransformerDecoder {
    /// The layers, in order.
    pub layers: Vec<TransformerDecoderLayer>,
    /// Applied after the last layer.
    pub norm: Option<LayerNorm>,
}

impl TransformerDecoder {
    /// A stack of the given layers.
    pub fn new(layers: Vec<TransformerDecoderLayer>, norm: Option<LayerNorm>) -> Self {
        TransformerDecoder { layers, norm }
    }

    /// `num_layers` layers made by `make(i)`, and the final norm.
    pub fn build(
        num_layers: usize,
        make: impl FnMut(usize) -> Result<TransformerDecoderLayer>,
        norm: Option<LayerNorm>,
    ) -> Result<Self> {
        let layers = (0..num_layers).map(make).collect::<Result<Vec<_>>>()?;
        Ok(TransformerDecoder { layers, norm })
    }

    /// Every layer with the same memory and masks, then the norm.
    pub fn forward_with(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        masks: DecoderMasks<'_>,
    ) -> Result<Tensor> {
        through(&self.layers, self.norm.as_ref(), tgt, |l, x| {
            l.forward_with(x, memory, masks)
        })
    }

    fn forward(&self, _tgt: &Tensor) -> Result<Tensor> {
        arg_err(
            "TransformerDecoder",
            "a decoder attends to the encoder's output: call forward_with(tgt, memory, masks)",
        )
    }
}
