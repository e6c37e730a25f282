// Gradient clipping's reduction. The optimizers' updates and clipping's passes over the
// gradients are multi-tensor kernels generated in src/ops/optim.rs (one dispatch binds
// many tensors); this file holds the one kernel with fixed slots.

var<workgroup> norm_red: array<f32, 256>;

// The partial sums of squares x0[0 .. cn.n] reduced by cn.groups workgroups of
// cn.per_group each (cn.per_group / 256 per thread); `cn`: ClipNormParams
// (src/ops/optim/mod.rs). cn.last = 0: workgroup w writes its sum to y0[w] (a pass over
// more than 16K partials); cn.last = 1 (one workgroup): y0[0] = the norm, sqrt(sum), and
// y0[1] = the clipping scale min(1, cn.max_norm / (norm + 1e-6)), as
// torch.nn.utils.clip_grad_norm_ (a NaN scale stays NaN: min() may drop NaNs).
@compute @workgroup_size(256)
fn clip_norm_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = row_id(wid, nwg);
    let base = w * cn.per_group;
    let end = min(base + cn.per_group, cn.n);
    var s = 0.0;
    for (var i = base + lid; i < end; i = i + WG) {
        s = s + x0[i];
    }
    norm_red[lid] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (lid < h) {
            norm_red[lid] = norm_red[lid] + norm_red[lid + h];
        }
        workgroupBarrier();
    }
    if (lid == 0u && w < cn.groups) {
        let total = norm_red[0];
        if (cn.last == 0u) {
            y0[w] = total;
        } else {
            let norm = sqrt(total);
            var scale = cn.max_norm / (norm + 1e-6);
            let nan = (bitcast<u32>(scale) & 0x7fffffffu) > 0x7f800000u;
            if (!nan) {
                scale = min(scale, 1.0);
            }
            y0[0] = norm;
            y0[1] = scale;
        }
    }
}

// After a step under a gradient scaler (src/backend/gpu/optim.rs, `count_steps`): adds
// one to the step count y0[x1[j]] of every stepped parameter j < cs.n, unless the
// scaler's state x0 = [scale, growth_tracker, found_inf] flags a non-finite gradient
// (the step was skipped). The indices are distinct: one writer per count.
@compute @workgroup_size(256)
fn count_steps_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = row_id(wid, nwg) * WG + lid;
    if (j >= cs.n || x0[2] != 0.0) {
        return;
    }
    let i = u32(x1[j]);
    y0[i] = y0[i] + 1.0;
}
