//! The GPU's part of the gradient scaler ([`crate::backend::amp`]): one multi-tensor
//! dispatch that unscales every gradient in place and notes non-finite values (per 26
//! gradients: the table's limit), and one single-thread dispatch for the update
//! (`shaders/amp.wgsl`). Nothing is read back.

use std::sync::Arc;

use super::kernels::{kernel, shader};
use super::multi_tensor::{self, MultiSpec, ELEMENTWISE};
use super::optim::ClipScaleParams;
use super::params::{params, Params};
use super::{GpuContext, Kernel, ShaderFile, Work};
use crate::backend::amp::{Amp, ScaleUpdate};
use crate::backend::{Grad, Storage};
use crate::error::Result;

pub(crate) const FILE: ShaderFile =
    shader("amp", include_str!("../../../shaders/amp.wgsl")).with_params(&[&AmpUpdateParams::INFO]);

params! {
    /// The scale's update rule.
    pub(crate) struct AmpUpdateParams as au {
        /// Growth factor.
        growth: f32,
        /// Backoff factor.
        backoff: f32,
        /// Clean steps before the scale grows (an integer, exact in f32).
        interval: f32,
        /// Padding.
        _pad: u32,
    }
}

/// Unscaling: each gradient element times `1 / state[0]`; any infinite or NaN element
/// (tested on its bits: a compiler may assume floats finite) sets `state[2]` to 1 (every
/// writer writes the same value, so the race is benign: no atomics).
pub(crate) static AMP_UNSCALE: MultiSpec = MultiSpec {
    entry: "amp_unscale_step",
    params: &ClipScaleParams::INFO,
    roles: &[("g", false)],
    shared: &[("amp", false)],
    decls: "",
    before: ELEMENTWISE,
    case: "            let x = $g[i];
            if ((bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u) { amp[2] = 1.0; }
            $g[i] = x * (1.0 / amp[0]);
",
    after: "",
    loops: false,
    stepped: None,
};

const AMP_UPDATE: &Kernel = kernel!(FILE, "amp_update_step", [Y0], params = AmpUpdateParams);

/// The kernel constants of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![AMP_UPDATE]
}

impl Amp for Arc<GpuContext> {
    fn amp_unscale(&self, grads: &[Grad], state: &Storage) -> Result<()> {
        let op = "unscale_";
        let st = state.gpu(op)?;
        let members = multi_tensor::grad_members(op, grads, false)?;
        let chunks = multi_tensor::plan_chunks(
            op,
            &members,
            multi_tensor::tensors_per_dispatch(self, &AMP_UNSCALE, false),
        )?;
        for c in chunks {
            multi_tensor::launch(
                self,
                &AMP_UNSCALE,
                ClipScaleParams::default(),
                &members[c],
                &[st],
                256,
                Work::default(),
                false,
            );
        }
        Ok(())
    }

    fn amp_update(&self, state: &Storage, u: ScaleUpdate) -> Result<()> {
        let p = AmpUpdateParams {
            growth: u.growth,
            backoff: u.backoff,
            interval: u.interval as f32,
            ..Default::default()
        };
        self.launch(AMP_UPDATE, &p, &[state.gpu("update")?], [1, 1, 1]);
        Ok(())
    }
}
