//! The GPU backend's softmax cross-entropy (`shaders/loss.wgsl`): one workgroup per row,
//! or the mean of a small batch on one workgroup; an out-of-range target sets the
//! device's error flag.

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d, groups_rows, kernel, row_work, shader};
use super::params::{params, Params};
use super::{GpuContext, Kernel, ShaderFile, Work};
use crate::backend::{Loss, Storage};
use crate::error::Result;

pub(crate) const FILE: ShaderFile =
    shader("loss", include_str!("../../../shaders/loss.wgsl")).with_params(&[&CeParams::INFO]);

params! {
    /// Softmax cross-entropy of `[n, c]` logits.
    pub(crate) struct CeParams as ce {
        /// Rows.
        n: u32,
        /// Classes.
        c: u32,
        /// 1: the backward of the mean loss (one gradient for every row, over n).
        mean: u32,
        /// Padding.
        _pad: u32,
    }
}
const CE_FWD: &Kernel = kernel!(
    FILE,
    "cross_entropy_fwd",
    [X0, XI, Y0, Y1, YI],
    loops,
    overrides = ["RT"],
    params = CeParams
);
const CE_BWD: &Kernel = kernel!(
    FILE,
    "cross_entropy_bwd",
    [X0, X1, X2, XI, Y0],
    params = CeParams
);
const CE_MEAN_FWD: &Kernel = kernel!(
    FILE,
    "cross_entropy_mean_fwd",
    [X0, XI, Y0, Y1, YI],
    loops,
    params = CeParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![CE_FWD, CE_BWD, CE_MEAN_FWD]
}

/// The cross-entropy kernels' parameters.
fn ce_params(n: usize, c: usize, mean: bool) -> CeParams {
    CeParams {
        n: n as u32,
        c: c as u32,
        mean: mean as u32,
        ..Default::default()
    }
}

/// Logits one workgroup's thread may loop over in the one-dispatch mean loss.
const MEAN_SERIAL: usize = 1024;

impl Loss for Arc<GpuContext> {
    fn row_limit(&self) -> usize {
        crate::backend::gpu::MAX_GROUP_ELEMENTS
    }

    fn cross_entropy(
        &self,
        x: &Storage,
        t: &Storage,
        n: usize,
        c: usize,
    ) -> Result<(Storage, Storage)> {
        let (l, s) = (gpu_alloc(self, n)?, gpu_alloc(self, n)?);
        let flag = self.error_flag()?;
        self.launch_with(
            CE_FWD,
            &ce_params(n, c, false),
            &[
                x.gpu("cross_entropy")?,
                t.gpu("cross_entropy")?,
                &l,
                &s,
                &flag,
            ],
            groups_rows(n),
            row_work(n, c),
        );
        Ok((Storage::new_gpu(l), Storage::new_gpu(s)))
    }

    fn cross_entropy_backward(
        &self,
        x: &Storage,
        lse: &Storage,
        g: &Storage,
        t: &Storage,
        n: usize,
        c: usize,
        mean: bool,
    ) -> Result<Storage> {
        let out = gpu_alloc(self, n * c)?;
        self.launch(
            CE_BWD,
            &ce_params(n, c, mean),
            &[
                x.gpu("cross_entropy")?,
                lse.gpu("cross_entropy")?,
                g.gpu("cross_entropy")?,
                t.gpu("cross_entropy")?,
                &out,
            ],
            groups_1d(n * c),
        );
        Ok(Storage::new_gpu(out))
    }

    fn cross_entropy_mean(
        &self,
        x: &Storage,
        t: &Storage,
        n: usize,
        c: usize,
    ) -> Result<Option<(Storage, Storage)>> {
        let fits = n > 0
            && c > 0
            && n * c <= crate::backend::gpu::MAX_GROUP_ELEMENTS
            && n.div_ceil(256) * c <= MEAN_SERIAL;
        if !fits {
            return Ok(None);
        }
        let (l, s) = (gpu_alloc(self, 1)?, gpu_alloc(self, n)?);
        let flag = self.error_flag()?;
        self.launch_with(
            CE_MEAN_FWD,
            &ce_params(n, c, false),
            &[
                x.gpu("cross_entropy")?,
                t.gpu("cross_entropy")?,
                &l,
                &s,
                &flag,
            ],
            [1, 1, 1],
            Work {
                serial: (n.div_ceil(256) * c) as u64,
                reduced: (n * c) as u64,
                ..Default::default()
            },
        );
        Ok(Some((Storage::new_gpu(l), Storage::new_gpu(s))))
    }
}
