// Reductions whose lanes combine through workgroup memory (every adapter); the shared
// code is in reduce.wgsl, appended below.

fn combine_sum(v: f32, t: u32) -> f32 {
    return combine_tree(v, t);
}

@compute @workgroup_size(256)
fn sum_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32) {
    sum_body(row_id(wid, nwg), t);
}

@compute @workgroup_size(256)
fn max_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32) {
    max_body(row_id(wid, nwg), t);
}

// Backward, one thread per input element. P[0] = input elements, P[1] = rank,
// P[2..8] input shape, P[8..14] strides into the output (0 on reduced dims),
// P[14..20] strides into the reduced-position space (0 on kept dims), P[20] = scale.

// y0[i] = scale * g[output of i] (the gradient of sum and mean).
@compute @workgroup_size(256)
fn sum_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = x0[strided(i, pu(1), 2u, 8u)] * pf(20u);
}

// y0[i] = g[output of i] where i was the saved argmax xi, else 0.
@compute @workgroup_size(256)
fn max_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let o = strided(i, pu(1), 2u, 8u);
    let j = strided(i, pu(1), 2u, 14u);
    y0[i] = select(0.0, x0[o], xi[o] == j);
}
