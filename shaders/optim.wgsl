// Gradient clipping's reduction. The optimizers' updates and clipping's passes over the
// gradients are multi-tensor kernels generated in src/ops/optim.rs (one dispatch binds
// many tensors); this file holds the one kernel with fixed slots.

var<workgroup> norm_red: array<f32, 256>;

// The partial sums of squares x0[0 .. P[0]] reduced by P[2] workgroups of P[1] each
// (P[1] / 256 per thread). P[3] = 0: workgroup w writes its sum to y0[w] (a pass over
// more than 16K partials); P[3] = 1 (one workgroup): y0[0] = the norm, sqrt(sum), and
// y0[1] = the clipping scale min(1, P[4] / (norm + 1e-6)) with P[4] = max_norm, as
// torch.nn.utils.clip_grad_norm_ (a NaN scale stays NaN: min() may drop NaNs).
@compute @workgroup_size(256)
fn clip_norm_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = row_id(wid, nwg);
    let base = w * pu(1);
    let end = min(base + pu(1), pu(0));
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
    if (lid == 0u && w < pu(2)) {
        let total = norm_red[0];
        if (pu(3) == 0u) {
            y0[w] = total;
        } else {
            let norm = sqrt(total);
            var scale = pf(4u) / (norm + 1e-6);
            let nan = (bitcast<u32>(scale) & 0x7fffffffu) > 0x7f800000u;
            if (!nan) {
                scale = min(scale, 1.0);
            }
            y0[0] = norm;
            y0[1] = scale;
        }
    }
}
