//! Dropout: in training mode each element is zeroed with probability `p` and the rest
//! scaled by `1 / (1 - p)` (inverted dropout), with masks from the device's seeded
//! generator; in evaluation mode it is the identity.

use super::{Module, TrainFlag};
use crate::error::Result;
use crate::tensor::Tensor;

/// Inverted dropout.
#[derive(Debug, Default, Module)]
pub struct Dropout {
    /// Probability of zeroing an element.
    pub p: f64,
    training: TrainFlag,
}

impl Dropout {
    /// Drops with probability `p` (`0 <= p < 1`, checked when it runs). A new module is
    /// in training mode; [`Module::set_training`] switches it.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let drop = Dropout::new(0.5);
    /// let x = Tensor::ones(&[1000], &dev)?;
    /// let y = drop.forward(&x)?.to_vec::<f32>()?;
    /// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0)); // kept values scaled by 1 / (1 - p)
    /// drop.set_training(false); // evaluation: the identity
    /// assert_eq!(drop.forward(&x)?.to_vec::<f32>()?, x.to_vec::<f32>()?);
    /// # Ok(()) }
    /// ```
    pub fn new(p: f64) -> Dropout {
        Dropout {
            p,
            training: TrainFlag::default(),
        }
    }
}

/// What the derived `Module` impl calls.
impl Dropout {
    /// True when [`Module::forward`] returns its input unchanged (evaluation, or `p = 0`),
    /// so a caller may fuse what follows into what precedes it.
    pub(crate) fn is_identity(&self) -> bool {
        self.p == 0.0 || !self.training.get()
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.dropout(self.p, self.training.get())
    }
}
