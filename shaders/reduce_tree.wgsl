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

// The sum of u32 tensors (wrapping past u32::MAX): inputs through x0 (their bits read as
// u32), sums in yi.
@compute @workgroup_size(256)
fn sum_u32_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
    sum_u32_body(row_id(wid, nwg), t);
}

@compute @workgroup_size(256)
fn max_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32) {
    max_body(row_id(wid, nwg), t);
}

// The maximum of u32 tensors: values through x0 and y0 as bits, positions in xi and yi.
@compute @workgroup_size(256)
fn max_u32_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
    max_u32_body(row_id(wid, nwg), t);
}

// Backward, one thread per input element. Parameters: `rb` (ReduceBwdParams,
// src/ops/reduce.rs): the input's shape, its strides into the output (0 on reduced
// dims) and into the reduced-position space (0 on kept dims), and the scale.

// y0[i] = scale * g[output of i] (the gradient of sum and mean).
@compute @workgroup_size(256)
fn sum_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= rb.n) { return; }
    y0[i] = x0[rb_out_strides_offset(i)] * rb.scale;
}

// y0[i] = g[output of i] where i was the saved argmax xi, else 0.
@compute @workgroup_size(256)
fn max_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= rb.n) { return; }
    let o = rb_out_strides_offset(i);
    let j = rb_red_strides_offset(i);
    y0[i] = select(0.0, x0[o], xi[o] == j);
}
