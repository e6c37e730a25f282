// Elementwise binary ops with NumPy broadcasting. The ops' math and their kernels
// `<name>_fwd` / `<name>_bwd` are generated from the elementwise table
// (src/backend/elementwise/binary.rs) and placed before this file; this file gives them their
// indexing. Parameters: `bp` (BinaryParams, src/ops/binary.rs): n output elements, the
// collapsed output shape and the strides of a (x0) and b (x1) over it, 0 on broadcast
// dimensions. Backward kernels read the output gradient x2 (output shape) and write the
// unreduced gradients of a (y0) and b (y1), both in the output shape; the host then sums
// them down to the input shapes.

// Rank 0: both inputs have the output's shape (no index arithmetic needed).
fn ia(i: u32) -> u32 {
    if (bp.rank == 0u) { return i; }
    return bp_sa_offset(i);
}
fn ib(i: u32) -> u32 {
    if (bp.rank == 0u) { return i; }
    return bp_sb_offset(i);
}

// a^b; for a < 0 only integer b is meaningful, as in PyTorch.
fn pow_f(a: f32, b: f32) -> f32 {
    if (a >= 0.0) { return pow(a, b); }
    let r = pow(-a, b);
    if (b == round(b)) {
        return select(r, -r, (i32(b) & 1) == 1);
    }
    return nan_f();
}

// Comparisons give 1.0 or 0.0; bp.code is the comparison's (CMP_<NAME>, generated).
@compute @workgroup_size(256)
fn compare_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= bp.n) { return; }
    y0[i] = select(0.0, 1.0, cmp_test(bp.code, x0[ia(i)], x1[ib(i)]));
}

// The same comparisons of two u32 tensors (whose buffers the f32 slots x0 and x1 bind:
// their bits are read back as u32), giving u32 1 or 0 in yi.
@compute @workgroup_size(256)
fn compare_u32_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= bp.n) { return; }
    let a = bitcast<u32>(x0[ia(i)]);
    let b = bitcast<u32>(x1[ib(i)]);
    yi[i] = select(0u, 1u, cmp_test_u32(bp.code, a, b));
}
