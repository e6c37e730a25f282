//! Dropout: in training mode each element is zeroed with probability `p` and the rest
//! scaled by `1 / (1 - p)` (inverted dropout), with masks from the device's seeded
//! generator; in evaluation mode it is the identity.

use super::{Module, TrainFlag};
use crate::error::Result;
use crate::tensor::Tensor;

/// Inverted dropout.
#[derive(Debug, Default)]
pub struct Dropout {
    /// Probability of zeroing an element.
    pub p: f32,
    training: TrainFlag,
}

impl Dropout {
    /// Drops with probability `p` (`0 <= p < 1`, checked when it runs).
    pub fn new(p: f32) -> Dropout {
        Dropout {
            p,
            training: TrainFlag::default(),
        }
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.dropout(self.p, self.training.get())
    }
    fn set_local_training(&self, training: bool) {
        self.training.set(training)
    }
}
