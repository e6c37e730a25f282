// Reductions over chosen dimensions: one workgroup of 64 threads per output element,
// each thread striding over the reduced positions, then a tree in workgroup memory.
// Forward parameters: P[0] = outputs, P[1] = m (positions reduced per output),
// P[2] = kept dims, P[3] = reduced dims, P[4..10] kept sizes, P[10..16] their input
// strides, P[16..22] reduced sizes, P[22..28] their input strides, P[28] = scale (f32).

const RW: u32 = 64u;
var<workgroup> part: array<f32, 64>;
var<workgroup> part_idx: array<u32, 64>;

fn reduce_base(o: u32) -> u32 { return strided(o, P[2], 4u, 10u); }
fn reduce_off(j: u32) -> u32 { return strided(j, P[3], 16u, 22u); }

// y0[o] = scale * sum of the reduced positions (scale 1 for sum, 1/m for mean).
@compute @workgroup_size(64)
fn sum_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32) {
    let o = row_id(wid, nwg);
    let live = o < P[0];
    var acc = 0.0;
    if (live) {
        let base = reduce_base(o);
        for (var j = t; j < P[1]; j = j + RW) {
            acc = acc + x0[base + reduce_off(j)];
        }
    }
    part[t] = acc;
    workgroupBarrier();
    for (var s = RW / 2u; s > 0u; s = s / 2u) {
        if (t < s) { part[t] = part[t] + part[t + s]; }
        workgroupBarrier();
    }
    if (live && t == 0u) { y0[o] = part[0] * pf(28u); }
}

// y0[o] = max over the reduced positions, yi[o] = its position (the first, on ties).
@compute @workgroup_size(64)
fn max_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32) {
    let o = row_id(wid, nwg);
    let live = o < P[0];
    var best = 0.0;
    var best_j = 0xffffffffu;
    if (live) {
        let base = reduce_base(o);
        for (var j = t; j < P[1]; j = j + RW) {
            let v = x0[base + reduce_off(j)];
            if (v > best || best_j == 0xffffffffu) { best = v; best_j = j; }
        }
    }
    part[t] = best;
    part_idx[t] = best_j;
    workgroupBarrier();
    for (var s = RW / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            let v = part[t + s];
            let j = part_idx[t + s];
            let better = j != 0xffffffffu && (part_idx[t] == 0xffffffffu || v > part[t] || (v == part[t] && j < part_idx[t]));
            if (better) { part[t] = v; part_idx[t] = j; }
        }
        workgroupBarrier();
    }
    if (live && t == 0u) {
        y0[o] = part[0];
        yi[o] = part_idx[0];
    }
}

// Backward, one thread per input element. P[0] = input elements, P[1] = rank,
// P[2..8] input shape, P[8..14] strides into the output (0 on reduced dims),
// P[14..20] strides into the reduced-position space (0 on kept dims), P[20] = scale.

// y0[i] = scale * g[output of i] (the gradient of sum and mean).
@compute @workgroup_size(256)
fn sum_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= P[0]) { return; }
    y0[i] = x0[strided(i, P[1], 2u, 8u)] * pf(20u);
}

// y0[i] = g[output of i] where i was the saved argmax xi, else 0.
@compute @workgroup_size(256)
fn max_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= P[0]) { return; }
    let o = strided(i, P[1], 2u, 8u);
    let j = strided(i, P[1], 2u, 14u);
    y0[i] = select(0.0, x0[o], xi[o] == j);
}
