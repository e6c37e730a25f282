//! The gradient scaler's device work (`amp::GradScaler`): unscaling every gradient in
//! place while noting any non-finite value, and the scale's update, both on the device
//! so that nothing is read back. The scaler's state is one `f32` tensor of three
//! elements: `[scale, growth_tracker, found_inf]`.

use super::{Grad, Storage};
use crate::error::Result;

/// Elements of the scaler's state.
pub(crate) const STATE_LEN: usize = 3;

/// The scale's update rule (`torch.amp.GradScaler`'s `growth_factor`, `backoff_factor`
/// and `growth_interval`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScaleUpdate {
    pub growth: f32,
    pub backoff: f32,
    pub interval: u32,
}

/// The update as both backends compute it, on `[scale, tracker, found]` (PyTorch's
/// `_amp_update_scale_`): a step with a non-finite gradient backs the scale off and
/// restarts the count; `interval` clean steps in a row grow it (unless that overflows);
/// `found` is cleared for the next step.
pub(crate) fn update_state(s: &mut [f32], u: ScaleUpdate) {
    if s[2] != 0.0 {
        s[0] *= u.backoff;
        s[1] = 0.0;
    } else {
        let clean = s[1] + 1.0;
        if clean >= u.interval as f32 {
            let grown = s[0] * u.growth;
            if grown.is_finite() {
                s[0] = grown;
            }
            s[1] = 0.0;
        } else {
            s[1] = clean;
        }
    }
    s[2] = 0.0;
}

/// The backends' part.
pub(crate) trait Amp {
    /// Multiplies every gradient (each distinct storage once) by `1 / state[0]` in place
    /// and sets `state[2]` to 1 when any gradient element was infinite or NaN.
    fn amp_unscale(&self, grads: &[Grad], state: &Storage) -> Result<()>;
    /// Applies [`update_state`] to `state`.
    fn amp_update(&self, state: &Storage, u: ScaleUpdate) -> Result<()>;
}
