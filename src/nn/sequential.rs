//! [`Sequential`]: modules applied one after another, named `0`, `1`, ... as in
//! PyTorch, with adjacent product-and-activation pairs fused.

use super::Module;
use crate::error::Result;
use crate::tensor::Tensor;

/// Modules applied one after another; children are named `0`, `1`, ... as in PyTorch.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty sequence; add layers with [`Sequential::add`].
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// let model = Sequential::new();
    /// assert!(model.is_empty());
    /// ```
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a module (builder style: `Sequential::new().add(...).add(...)`). Its
    /// parameters are named after its position: `0.weight`, `2.bias`, ...
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let model = Sequential::new()
    ///     .add(Linear::new(&dev, 64, 128))
    ///     .add(ReLU)
    ///     .add(Dropout::new(0.2))
    ///     .add(Linear::new(&dev, 128, 10));
    /// assert_eq!(model.len(), 4);
    /// assert_eq!(model.forward(&Tensor::zeros(&[8, 64], &dev)?)?.shape(), [8, 10]);
    /// let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias"]);
    /// # Ok(()) }
    /// ```
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, m: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(m));
        self
    }

    /// Appends a boxed module.
    pub fn push(&mut self, m: Box<dyn Module>) {
        self.layers.push(m);
    }

    /// The number of modules.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The outputs of every layer for one input (for looking inside a network).
    pub fn forward_all(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut outs = Vec::with_capacity(self.layers.len());
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward(&h)?;
            outs.push(h.clone());
        }
        Ok(outs)
    }
}

impl Module for Sequential {
    /// Runs the layers in order; a layer that can fuse the activation module after it
    /// (`Linear` or `Conv2d` then `ReLU`, `Tanh`, ...) runs both as one kernel.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let mut i = 0;
        while i < self.layers.len() {
            let layer = &self.layers[i];
            let act = self.layers.get(i + 1).and_then(|l| l.fusable_activation());
            if let Some(fused) = act.and_then(|a| layer.forward_with_activation(&h, a)) {
                h = fused?;
                i += 2;
            } else {
                h = layer.forward(&h)?;
                i += 1;
            }
        }
        Ok(h)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.as_ref() as &dyn Module))
            .collect()
    }
}
