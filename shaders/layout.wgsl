// Moving elements around: fills, strided copies (permute, slice, broadcast), scatters
// into a region (concatenation, the slice's backward), index_select, gather and where.
// Parameter structs (src/ops/layout/mod.rs): fp (FillParams), rg (RegionParams), ix
// (IndexParams), wp (WhereParams).

// y0[i] = fp.value for i < fp.n.
@compute @workgroup_size(256)
fn fill_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= fp.n) { return; }
    y0[i] = fp.value;
}

// yi[i] = fp.bits for i < fp.n.
@compute @workgroup_size(256)
fn fill_u32_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= fp.n) { return; }
    yi[i] = fp.bits;
}

// Conversions between u32 and f32 (Tensor::to_dtype), fp.n elements. u32 -> f32: x0 holds
// the u32 bits; values past 2^24 round to a neighbouring f32.
@compute @workgroup_size(256)
fn cast_u32_f32_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= fp.n) { return; }
    y0[i] = f32(bitcast<u32>(x0[i]));
}

// f32 -> u32 as Rust's `as`: toward zero, saturating at 0 and u32::MAX, NaN to 0.
@compute @workgroup_size(256)
fn cast_f32_u32_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= fp.n) { return; }
    let v = x0[i];
    var r = 0u;
    if (v >= 4294967296.0) {
        r = 0xffffffffu;
    } else if (v >= 1.0) {
        r = u32(v);
    }
    yi[i] = r;
}

// Strided gather into a contiguous output: y0[i] = x0[base + sum idx_d * stride_d] over
// the region rg (the output's shape, the source's strides).
@compute @workgroup_size(256)
fn strided_copy_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= rg.n) { return; }
    y0[i] = x0[rg.base + rg_strides_offset(i)];
}

// The inverse: writes a contiguous source into a strided region of y0, leaving the
// rest of y0 as it was. Same parameters, strides and base now describe the destination.
@compute @workgroup_size(256)
fn strided_scatter_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= rg.n) { return; }
    y0[rg.base + rg_strides_offset(i)] = x0[i];
}

// index_select along a dimension viewed as [outer, D, inner]: the output is
// [outer, J, inner] with y0[o, j, r] = x0[o, xi[j], r] (ix: n out, D = size, J = j,
// inner). An index >= D gives NaN.
@compute @workgroup_size(256)
fn index_select_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= ix.n) { return; }
    let r = i % ix.inner;
    let j = (i / ix.inner) % ix.j;
    let o = i / (ix.inner * ix.j);
    let k = xi[j];
    var v = nan_f();
    if (k < ix.size) { v = x0[(o * ix.size + k) * ix.inner + r]; } else { yi[0] = 1u; }
    y0[i] = v;
}

// Writes a scatter-add's partial sum: the first chunk of j stores, later ones add.
fn store_chunk(i: u32, acc: f32) {
    if (ix.accumulate == 1u) {
        y0[i] = y0[i] + acc;
    } else {
        y0[i] = acc;
    }
}

// dx[o, d, r] = sum over j with xi[j] == d of g[o, j, r] (a deterministic scatter-add).
// x0 = g; ix.n = elements of x. One launch covers the positions j in [ix.start,
// ix.end) (at most 1024, so no thread loops long) and adds to the earlier launches'
// sums when ix.accumulate = 1.
@compute @workgroup_size(256)
fn index_select_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= ix.n) { return; }
    let r = i % ix.inner;
    let d = (i / ix.inner) % ix.size;
    let o = i / (ix.inner * ix.size);
    var acc = 0.0;
    for (var j = ix.start; j < ix.end; j = j + 1u) {
        if (xi[j] == d) { acc = acc + x0[(o * ix.j + j) * ix.inner + r]; }
    }
    store_chunk(i, acc);
}

// gather along a dimension: the index has the input's shape except along the dimension
// (J there); y0[o, j, r] = x0[o, xi[o, j, r], r]. Same parameters as index_select.
@compute @workgroup_size(256)
fn gather_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= ix.n) { return; }
    let r = i % ix.inner;
    let o = i / (ix.inner * ix.j);
    let k = xi[i];
    var v = nan_f();
    if (k < ix.size) { v = x0[(o * ix.size + k) * ix.inner + r]; } else { yi[0] = 2u; }
    y0[i] = v;
}

// dx[o, d, r] = sum over j with xi[o, j, r] == d of g[o, j, r]; chunked over j as
// index_select_bwd.
@compute @workgroup_size(256)
fn gather_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= ix.n) { return; }
    let r = i % ix.inner;
    let d = (i / ix.inner) % ix.size;
    let o = i / (ix.inner * ix.size);
    var acc = 0.0;
    for (var j = ix.start; j < ix.end; j = j + 1u) {
        let at = (o * ix.j + j) * ix.inner + r;
        if (xi[at] == d) { acc = acc + x0[at]; }
    }
    store_chunk(i, acc);
}

// where(c, a, b) with broadcasting over wp's output shape, with the strides of c (x0),
// a (x1) and b (x2).
@compute @workgroup_size(256)
fn where_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= wp.n) { return; }
    let c = x0[wp_sc_offset(i)];
    y0[i] = select(x2[wp_sb_offset(i)], x1[wp_sa_offset(i)], c != 0.0);
}

// y0 = g where c, else 0; y1 = g where not c, else 0 (output shape). x0 = c, x2 = g.
@compute @workgroup_size(256)
fn where_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= wp.n) { return; }
    let c = x0[wp_sc_offset(i)] != 0.0;
    let g = x2[i];
    y0[i] = select(0.0, g, c);
    y1[i] = select(g, 0.0, c);
}
