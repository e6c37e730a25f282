//! Ops: each family in one file with its shape rule and argument checks, its forward
//! (calls to the backend seam, [`crate::backend`], through `Device::backend`), its
//! backward (ops or seam calls that turn the output gradient into input gradients) and
//! the values it saves. The CPU loops and GPU launchers live under `src/backend/`, the
//! WGSL in `shaders/<family>.wgsl`.
//! `registry` (with the `testing` feature) lists every op so the gradient suite cannot
//! miss one.

pub mod arith;
pub mod attention;
pub mod augment;
pub mod batchnorm;
pub mod binary;
pub mod conv2d;
pub use crate::backend::elementwise;
pub mod embedding;
pub mod fused;
pub mod half;
pub mod inplace;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool2d;
pub mod random;
pub mod reduce;
#[cfg(feature = "testing")]
pub mod registry;
pub mod rnn;
pub mod softmax;
pub(crate) mod split;
pub mod unary;

pub use crate::backend::{shader_sources, KernelInfo, ParamsInfo, ShaderSource};

/// Checks that a new tensor of `shape` and `dtype` can exist on `device` before an op
/// makes it: the rank, an element count that does not overflow, on the GPU the 32-bit
/// element indices and the adapter's largest buffer, on the CPU (for 1 GiB and more) an
/// allocation the system can give. Returns the element count. Ops call it where the
/// output can be larger than their inputs (creation, broadcasting, products, images).
pub(crate) fn check_out(
    op: &'static str,
    shape: &[usize],
    dtype: crate::tensor::DType,
    device: &crate::device::Device,
) -> crate::error::Result<usize> {
    let n = crate::shape::check_new(op, shape)?;
    let bytes = n as u64 * dtype.size_bytes() as u64;
    device.backend().check_new(op, shape, bytes)?;
    Ok(n)
}
