// The gradient scaler's update (src/backend/amp.rs, src/backend/gpu/amp.rs) on its state
// y0 = [scale, growth_tracker, found_inf], as PyTorch's _amp_update_scale_: a step that
// found a non-finite gradient multiplies the scale by the backoff factor and restarts the
// count of clean steps; the interval's clean step multiplies it by the growth factor
// (unless that overflows) and restarts the count; found_inf is cleared. One thread.
// Parameters: `au` (AmpUpdateParams).

@compute @workgroup_size(1)
fn amp_update_step() {
    if (y0[2] != 0.0) {
        y0[0] = y0[0] * au.backoff;
        y0[1] = 0.0;
    } else {
        let clean = y0[1] + 1.0;
        if (clean >= au.interval) {
            let grown = y0[0] * au.growth;
            // Finite: below the largest f32 (an infinite or NaN product fails this).
            if (abs(grown) <= 3.4028234e38) { y0[0] = grown; }
            y0[1] = 0.0;
        } else {
            y0[1] = clean;
        }
    }
    y0[2] = 0.0;
}
