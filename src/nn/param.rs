//! [`Parameter`] and [`Buffer`]: the tensors a module owns.

use std::sync::RwLock;

use crate::tensor::Tensor;

/// A trainable tensor owned by a module. The handle inside can be replaced (moving the
/// module to another device) while gradients accumulate in the current one.
pub struct Parameter(RwLock<Tensor>);

impl std::fmt::Debug for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Parameter({:?})", self.tensor())
    }
}

impl Parameter {
    /// Wraps `t` as a leaf that requires grad.
    pub fn new(t: Tensor) -> Parameter {
        Parameter(RwLock::new(t.detach().with_requires_grad(true)))
    }

    /// The current tensor (a handle: gradients accumulate in it).
    pub fn tensor(&self) -> Tensor {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the tensor (used to move a module between devices).
    pub fn replace(&self, t: Tensor) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = t.detach().with_requires_grad(true);
    }
}

/// A tensor a module keeps and saves but does not train (PyTorch's buffers: batch
/// norm's running statistics). It never requires grad, optimizers never see it, and it
/// moves with the module and is saved in its `state_dict`.
pub struct Buffer(RwLock<Tensor>);

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({:?})", self.tensor())
    }
}

impl Buffer {
    /// Wraps `t` (detached; it does not require grad).
    pub fn new(t: Tensor) -> Buffer {
        Buffer(RwLock::new(t.detach()))
    }

    /// The current tensor (a handle sharing the buffer's storage).
    pub fn tensor(&self) -> Tensor {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the tensor (used to move a module between devices).
    pub fn replace(&self, t: Tensor) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = t.detach();
    }
}
