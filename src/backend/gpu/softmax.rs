//! The GPU backend's softmax rows: one workgroup per row (`shaders/softmax.wgsl`).

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_rows, kernel, row_work, shader};
use super::params::{params, Params};
use super::{GpuContext, Kernel, ShaderFile};
use crate::backend::{wrong_backend, Rows, Softmax, Storage};
use crate::error::Result;

pub(crate) const FILE: ShaderFile =
    shader("softmax", include_str!("../../../shaders/softmax.wgsl"))
        .with_params(&[&SoftmaxParams::INFO]);

params! {
    /// Softmax rows: the tensor viewed as `[outer, d, inner]`, one row per (outer, inner).
    pub(crate) struct SoftmaxParams as sm {
        /// Rows (outer * inner).
        rows: u32,
        /// Row length.
        d: u32,
        /// Elements per position of the dimension.
        inner: u32,
        /// Padding.
        _pad: u32,
    }
}
const SOFTMAX_FWD: &Kernel = kernel!(
    FILE,
    "softmax_fwd",
    [X0, Y0],
    loops,
    overrides = ["RT"],
    params = SoftmaxParams
);
const LOG_SOFTMAX_FWD: &Kernel = kernel!(
    FILE,
    "log_softmax_fwd",
    [X0, Y0],
    loops,
    overrides = ["RT"],
    params = SoftmaxParams
);
const SOFTMAX_BWD: &Kernel = kernel!(
    FILE,
    "softmax_bwd",
    [X0, X1, Y0],
    loops,
    overrides = ["RT"],
    params = SoftmaxParams
);
const LOG_SOFTMAX_BWD: &Kernel = kernel!(
    FILE,
    "log_softmax_bwd",
    [X0, X1, Y0],
    loops,
    overrides = ["RT"],
    params = SoftmaxParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![SOFTMAX_FWD, LOG_SOFTMAX_FWD, SOFTMAX_BWD, LOG_SOFTMAX_BWD]
}

/// The kernels' parameters.
fn params(r: Rows) -> SoftmaxParams {
    SoftmaxParams {
        rows: (r.outer * r.inner) as u32,
        d: r.d as u32,
        inner: r.inner as u32,
        ..Default::default()
    }
}

impl Softmax for Arc<GpuContext> {
    fn softmax(&self, x: &Storage, r: Rows, log: bool) -> Result<Storage> {
        let Storage::Gpu(x) = x else {
            return wrong_backend("softmax");
        };
        let k = if log { LOG_SOFTMAX_FWD } else { SOFTMAX_FWD };
        let out = gpu_alloc(self, r.rows() * r.d)?;
        let work = row_work(r.rows(), r.d);
        self.launch_with(k, &params(r), &[x, &out], groups_rows(r.rows()), work);
        Ok(Storage::Gpu(Arc::new(out)))
    }

    fn softmax_backward(&self, y: &Storage, g: &Storage, r: Rows, log: bool) -> Result<Storage> {
        let (Storage::Gpu(y), Storage::Gpu(g)) = (y, g) else {
            return wrong_backend("softmax");
        };
        let k = if log { LOG_SOFTMAX_BWD } else { SOFTMAX_BWD };
        let out = gpu_alloc(self, r.rows() * r.d)?;
        let work = row_work(r.rows(), r.d);
        self.launch_with(k, &params(r), &[y, g, &out], groups_rows(r.rows()), work);
        Ok(Storage::Gpu(Arc::new(out)))
    }
}
