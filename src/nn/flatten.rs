//! `Flatten`: merges dimensions `start_dim..=end_dim` into one, like `torch.nn.Flatten`
//! (defaults `start_dim = 1`, `end_dim = -1`: `[N, C, H, W]` becomes `[N, C H W]`).

use super::Module;
use crate::error::Result;
use crate::tensor::Tensor;

/// Flattens a range of dimensions (a view: no copy).
#[derive(Clone, Copy, Debug, Module)]
pub struct Flatten {
    /// The first dimension merged (negative counts from the end).
    pub start_dim: isize,
    /// The last dimension merged (negative counts from the end).
    pub end_dim: isize,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten {
            start_dim: 1,
            end_dim: -1,
        }
    }
}

impl Flatten {
    /// Keeps the batch dimension and flattens the rest (PyTorch's default).
    pub fn new() -> Flatten {
        Flatten::default()
    }

    /// Flattens `start_dim..=end_dim`.
    pub fn dims(start_dim: isize, end_dim: isize) -> Flatten {
        Flatten { start_dim, end_dim }
    }
}

/// What the derived `Module` impl calls.
impl Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.flatten(self.start_dim, self.end_dim)
    }
}
