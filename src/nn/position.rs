//! Fixed sinusoidal position encodings ("Attention is all you need", section 3.5), the
//! parameter-free alternative to a learned [`Embedding`](super::Embedding) of positions.

use super::{Buffer, Module, TrainFlag};
use crate::device::Device;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::Tensor;

/// The sinusoidal position encoding `[seq, d_model]`: row `p`, columns `2i` and `2i + 1`
/// hold `sin(p / 10000^(2i / d_model))` and `cos(p / 10000^(2i / d_model))`, the formula
/// of the PyTorch tutorial's `PositionalEncoding` (an odd `d_model` ends with a sine
/// column). Computed in `f64` on the host, stored as `f32` on `device`. Errors when
/// `d_model` is 0; `seq = 0` gives an empty `[0, d_model]`.
///
/// ```
/// use wgrad::nn::sinusoidal_position_encoding;
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let pe = sinusoidal_position_encoding(10, 4, &Device::cpu())?;
/// assert_eq!(pe.shape(), [10, 4]);
/// // Position 0: sin 0 = 0 on even columns, cos 0 = 1 on odd ones.
/// assert_eq!(pe.narrow(0, 0, 1)?.to_vec::<f32>()?, [0.0, 1.0, 0.0, 1.0]);
/// # Ok(()) }
/// ```
pub fn sinusoidal_position_encoding(seq: usize, d_model: usize, device: &Device) -> Result<Tensor> {
    if d_model == 0 {
        return arg_err(
            "sinusoidal_position_encoding",
            "d_model must be greater than 0",
        );
    }
    let rate = -(10000f64).ln() / d_model as f64;
    let mut values = Vec::new();
    values
        .try_reserve_exact(seq.saturating_mul(d_model))
        .or_else(|_| {
            crate::error::oom_err(
                "sinusoidal_position_encoding",
                format!("[{seq}, {d_model}] does not fit in memory"),
            )
        })?;
    for p in 0..seq {
        for c in 0..d_model {
            // Both columns of a pair share the frequency of the even one.
            let angle = p as f64 * ((c - c % 2) as f64 * rate).exp();
            values.push(if c % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    Tensor::from_vec(values, &[seq, d_model], device)
}

/// Adds the [`sinusoidal_position_encoding`] to a sequence and applies dropout in
/// training mode: the PyTorch tutorial's `PositionalEncoding`, whose table is a buffer
/// `pe` `[max_len, 1, d_model]` (so the tutorial's `state_dict` loads). Input
/// `[L, N, d_model]`, or `[N, L, d_model]` when `batch_first`; the output has the same
/// shape.
///
/// ```
/// use wgrad::nn::PositionalEncoding;
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let pe = PositionalEncoding::new(&dev, 8, 0.1, 100)?;
/// pe.eval();
/// let y = pe.forward(&Tensor::zeros(&[5, 2, 8], &dev)?)?; // [L, N, d_model]
/// assert_eq!(y.shape(), [5, 2, 8]);
/// # Ok(()) }
/// ```
#[derive(Debug, Module)]
pub struct PositionalEncoding {
    /// `[max_len, 1, d_model]`: the encodings, computed once (saved, never trained).
    pub pe: Buffer,
    /// Dropout probability applied after the addition in training mode.
    pub dropout: f64,
    /// Inputs are `[N, L, d_model]` instead of `[L, N, d_model]`.
    pub batch_first: bool,
    training: TrainFlag,
}

impl PositionalEncoding {
    /// Encodings for sequences of up to `max_len` positions of `d_model` features, on
    /// `device`, with dropout `p` (`0 <= p < 1`). Sequence first; see
    /// [`PositionalEncoding::batch_first`].
    pub fn new(device: &Device, d_model: usize, dropout: f64, max_len: usize) -> Result<Self> {
        if !(0.0..1.0).contains(&dropout) {
            return arg_err(
                "PositionalEncoding",
                format!("dropout must be in [0, 1), got {dropout}"),
            );
        }
        let table = sinusoidal_position_encoding(max_len, d_model, device)?.unsqueeze(1)?;
        Ok(PositionalEncoding {
            pe: Buffer::new(table),
            dropout,
            batch_first: false,
            training: TrainFlag::default(),
        })
    }

    /// The same, for `[N, L, d_model]` inputs.
    pub fn batch_first(mut self) -> Self {
        self.batch_first = true;
        self
    }

    /// The longest sequence it encodes.
    pub fn max_len(&self) -> usize {
        self.pe.tensor().shape()[0]
    }
}

/// What the derived `Module` impl calls.
impl PositionalEncoding {
    /// `dropout(x + pe[:L])`; errors when `x` is not 3-D, its width is not `d_model`
    /// or it is longer than `max_len`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let table = self.pe.tensor();
        let (max_len, d_model) = (table.shape()[0], table.shape()[2]);
        let xs = x.shape();
        let seq_dim = usize::from(self.batch_first);
        if xs.len() != 3 || xs[2] != d_model || xs[seq_dim] > max_len {
            let layout = if self.batch_first {
                "[N, L, d_model]"
            } else {
                "[L, N, d_model]"
            };
            return shape_err(
                "PositionalEncoding",
                format!("input {xs:?} must be {layout} with d_model {d_model} and L <= {max_len}"),
            );
        }
        let pe = table.narrow(0, 0, xs[seq_dim])?.to_dtype(x.dtype())?;
        let pe = if self.batch_first {
            pe.transpose(0, 1)?
        } else {
            pe
        };
        x.add(&pe)?.dropout(self.dropout, self.training.get())
    }
}
