//! The GPU recurrences (`shaders/rnn.wgsl`): the LSTM and GRU cells' kernels
//! (`lstm_cell_*`, `gru_cell_*`, one step of gate math), and one driver for every layer
//! over whole-sequence buffers (`rnn_layer.rs`) with its step kernels (`lstm_step_*`,
//! `gru_step_*`). Elman, LSTM and GRU differ only in their [`Cell`]: how many gate
//! blocks, whether the step's product adds the input term, what runs after the product
//! (the product's own activation for Elman, a step kernel for the gated cells) and what
//! those kernels bind.

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d, kernel, shader_with};
use super::params::{params, Params};
use super::rnn_layer;
use super::{Generated, GpuContext, Kernel, ShaderFile};
use crate::backend::rnn::{Cell, Dims, Grads, Layer, Need, Saved};
use crate::backend::{Recurrence, Storage};
use crate::error::Result;

/// The op named in this backend's errors.
pub(super) const OP: &str = "rnn";

pub(crate) const FILE: ShaderFile = shader_with(
    "rnn",
    include_str!("../../../shaders/rnn.wgsl"),
    Generated::Fixed(crate::backend::elementwise::wgsl_functions),
)
.with_params(&[&CellParams::INFO, &StepParams::INFO]);

params! {
    /// One cell step's kernels (`lstm_cell_*`, `gru_cell_*`).
    pub(crate) struct CellParams as cp {
        /// Batch.
        b: u32,
        /// Hidden size.
        h: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
    }

    /// The whole-sequence step kernels (`lstm_step_*`, `gru_step_*`): offsets into the
    /// `[T, ...]` buffers.
    pub(crate) struct StepParams as st {
        /// Batch.
        b: u32,
        /// Hidden size.
        h: u32,
        /// Offset of step t's gates (and of their gradients).
        gates: u32,
        /// Offset of h_{t-1} and c_{t-1}.
        prev: u32,
        /// Offset of h_t (forward) or of its gradient (backward).
        cur: u32,
        /// Offset of the cell state written (forward) or of the last cell state's
        /// gradient (backward).
        cell: u32,
        /// Forward: 1 = not the first step, 2 = the last; backward: 1 = the last step.
        flags: u32,
        /// Padding.
        _pad: u32,
    }
}

const LSTM_FWD: &Kernel = kernel!(FILE, "lstm_cell_fwd", [X0, X1, Y0], params = CellParams);
const LSTM_BWD: &Kernel = kernel!(
    FILE,
    "lstm_cell_bwd",
    [X0, X1, X2, Y0, Y1],
    params = CellParams
);
const GRU_FWD: &Kernel = kernel!(FILE, "gru_cell_fwd", [X0, X1, X2, Y0], params = CellParams);
const GRU_BWD: &Kernel = kernel!(
    FILE,
    "gru_cell_bwd",
    [X0, X1, X2, XI, Y0, Y1, Y2],
    params = CellParams
);
pub(super) const LSTM_STEP_FWD: &Kernel =
    kernel!(FILE, "lstm_step_fwd", [X0, X1, Y0, Y1], params = StepParams);
pub(super) const LSTM_STEP_BWD: &Kernel = kernel!(
    FILE,
    "lstm_step_bwd",
    [X0, X1, X2, Y0, Y1, Y2],
    params = StepParams
);
pub(super) const GRU_STEP_FWD: &Kernel =
    kernel!(FILE, "gru_step_fwd", [X0, X1, X2, Y0], params = StepParams);
pub(super) const GRU_STEP_BWD: &Kernel = kernel!(
    FILE,
    "gru_step_bwd",
    [X0, X1, X2, XI, Y0, Y1, Y2],
    params = StepParams
);

/// The kernels of `shaders/rnn.wgsl`, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![
        LSTM_FWD,
        LSTM_BWD,
        GRU_FWD,
        GRU_BWD,
        LSTM_STEP_FWD,
        LSTM_STEP_BWD,
        GRU_STEP_FWD,
        GRU_STEP_BWD,
    ]
}

/// The cell kernels' parameters.
fn cell_params(b: usize, h: usize) -> CellParams {
    CellParams {
        b: b as u32,
        h: h as u32,
        ..Default::default()
    }
}

impl Recurrence for Arc<GpuContext> {
    fn recurrence(&self, cell: Cell, layer: &Layer<'_>, dims: Dims) -> Result<(Storage, Saved)> {
        rnn_layer::forward(self, cell, layer, dims)
    }

    fn recurrence_backward(
        &self,
        cell: Cell,
        layer: &Layer<'_>,
        y: &Storage,
        saved: &Saved,
        gy: &Storage,
        need: Need,
        dims: Dims,
    ) -> Result<Grads> {
        rnn_layer::backward(self, cell, layer, (y, saved, gy), need, dims)
    }

    fn lstm_cell(&self, gates: &Storage, c_prev: &Storage, b: usize, h: usize) -> Result<Storage> {
        let (a, c) = (gates.gpu(OP)?, c_prev.gpu(OP)?);
        let out = gpu_alloc(self, 2 * b * h)?;
        self.launch(
            LSTM_FWD,
            &cell_params(b, h),
            &[a, c, &out],
            groups_1d(b * h),
        );
        Ok(Storage::new_gpu(out))
    }

    fn lstm_cell_backward(
        &self,
        gates: &Storage,
        c_prev: &Storage,
        g: &Storage,
        b: usize,
        h: usize,
    ) -> Result<(Storage, Storage)> {
        let (a, c, g) = (gates.gpu(OP)?, c_prev.gpu(OP)?, g.gpu(OP)?);
        let (da, dc) = (gpu_alloc(self, 4 * b * h)?, gpu_alloc(self, b * h)?);
        self.launch(
            LSTM_BWD,
            &cell_params(b, h),
            &[a, c, g, &da, &dc],
            groups_1d(b * h),
        );
        Ok((Storage::new_gpu(da), Storage::new_gpu(dc)))
    }

    fn gru_cell(
        &self,
        gi: &Storage,
        gh: &Storage,
        h_prev: &Storage,
        b: usize,
        h: usize,
    ) -> Result<Storage> {
        let (gi, gh, hp) = (gi.gpu(OP)?, gh.gpu(OP)?, h_prev.gpu(OP)?);
        let out = gpu_alloc(self, b * h)?;
        self.launch(
            GRU_FWD,
            &cell_params(b, h),
            &[gi, gh, hp, &out],
            groups_1d(b * h),
        );
        Ok(Storage::new_gpu(out))
    }

    fn gru_cell_backward(
        &self,
        gi: &Storage,
        gh: &Storage,
        h_prev: &Storage,
        g: &Storage,
        b: usize,
        h: usize,
    ) -> Result<[Storage; 3]> {
        let (gi, gh, hp, g) = (gi.gpu(OP)?, gh.gpu(OP)?, h_prev.gpu(OP)?, g.gpu(OP)?);
        let (dgi, dgh, dhp) = (
            gpu_alloc(self, 3 * b * h)?,
            gpu_alloc(self, 3 * b * h)?,
            gpu_alloc(self, b * h)?,
        );
        self.launch(
            GRU_BWD,
            &cell_params(b, h),
            &[gi, gh, hp, g, &dgi, &dgh, &dhp],
            groups_1d(b * h),
        );
        Ok([dgi, dgh, dhp].map(Storage::new_gpu))
    }
}
