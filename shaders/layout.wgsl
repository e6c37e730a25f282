// Moving elements around: fills, strided copies (permute, slice, broadcast), scatters
// into a region (concatenation, the slice's backward), index_select, gather and where.

// y0[i] = P[1] as f32 for i < P[0].
@compute @workgroup_size(256)
fn fill_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = pf(1u);
}

// yi[i] = P[1] for i < P[0].
@compute @workgroup_size(256)
fn fill_u32_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    yi[i] = pu(1);
}

// Strided gather into a contiguous output: y0[i] = x0[P[14] + sum idx_d * stride_d].
// P[0] = n, P[1] = rank, P[2..8] = output shape, P[8..14] = source strides, P[14] = base.
@compute @workgroup_size(256)
fn strided_copy_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = x0[pu(14) + strided(i, pu(1), 2u, 8u)];
}

// The inverse: writes a contiguous source into a strided region of y0, leaving the
// rest of y0 as it was. Same parameters, strides and base now describe the destination.
@compute @workgroup_size(256)
fn strided_scatter_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[pu(14) + strided(i, pu(1), 2u, 8u)] = x0[i];
}

// index_select along a dimension viewed as [outer, D, inner]: the output is
// [outer, J, inner] with y0[o, j, r] = x0[o, xi[j], r]. P[0] = n out, P[1] = D, P[2] = J,
// P[3] = inner. An index >= D gives NaN.
@compute @workgroup_size(256)
fn index_select_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let r = i % pu(3);
    let j = (i / pu(3)) % pu(2);
    let o = i / (pu(3) * pu(2));
    let k = xi[j];
    var v = nan_f();
    if (k < pu(1)) { v = x0[(o * pu(1) + k) * pu(3) + r]; } else { yi[0] = 1u; }
    y0[i] = v;
}

// Writes a scatter-add's partial sum: the first chunk of j stores, later ones add.
fn store_chunk(i: u32, acc: f32) {
    if (pu(6) == 1u) {
        y0[i] = y0[i] + acc;
    } else {
        y0[i] = acc;
    }
}

// dx[o, d, r] = sum over j with xi[j] == d of g[o, j, r] (a deterministic scatter-add).
// x0 = g; P[0] = n in (x), P[1] = D, P[2] = J, P[3] = inner. One launch covers the
// positions j in [P[4], P[5]) (at most 1024, so no thread loops long) and adds to the
// earlier launches' sums when P[6] = 1.
@compute @workgroup_size(256)
fn index_select_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let r = i % pu(3);
    let d = (i / pu(3)) % pu(1);
    let o = i / (pu(3) * pu(1));
    var acc = 0.0;
    for (var j = pu(4); j < pu(5); j = j + 1u) {
        if (xi[j] == d) { acc = acc + x0[(o * pu(2) + j) * pu(3) + r]; }
    }
    store_chunk(i, acc);
}

// gather along a dimension: the index has the input's shape except along the dimension
// (J there); y0[o, j, r] = x0[o, xi[o, j, r], r]. Same parameters as index_select.
@compute @workgroup_size(256)
fn gather_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let r = i % pu(3);
    let o = i / (pu(3) * pu(2));
    let k = xi[i];
    var v = nan_f();
    if (k < pu(1)) { v = x0[(o * pu(1) + k) * pu(3) + r]; } else { yi[0] = 2u; }
    y0[i] = v;
}

// dx[o, d, r] = sum over j with xi[o, j, r] == d of g[o, j, r]; chunked over j as
// index_select_bwd.
@compute @workgroup_size(256)
fn gather_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let r = i % pu(3);
    let d = (i / pu(3)) % pu(1);
    let o = i / (pu(3) * pu(1));
    var acc = 0.0;
    for (var j = pu(4); j < pu(5); j = j + 1u) {
        let at = (o * pu(2) + j) * pu(3) + r;
        if (xi[at] == d) { acc = acc + x0[at]; }
    }
    store_chunk(i, acc);
}

// where(c, a, b) with broadcasting: P[0] = n, P[1] = rank, P[2..8] = output shape,
// P[8..14], P[14..20], P[20..26] = strides of c (x0), a (x1), b (x2).
@compute @workgroup_size(256)
fn where_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let c = x0[strided(i, pu(1), 2u, 8u)];
    y0[i] = select(x2[strided(i, pu(1), 2u, 20u)], x1[strided(i, pu(1), 2u, 14u)], c != 0.0);
}

// y0 = g where c, else 0; y1 = g where not c, else 0 (output shape). x0 = c, x2 = g.
@compute @workgroup_size(256)
fn where_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let c = x0[strided(i, pu(1), 2u, 8u)] != 0.0;
    let g = x2[i];
    y0[i] = select(0.0, g, c);
    y1[i] = select(g, 0.0, c);
}
