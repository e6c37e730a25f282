// Elementwise binary ops with NumPy broadcasting. The ops' math and their kernels
// `<name>_fwd` / `<name>_bwd` are generated from the elementwise table
// (src/ops/elementwise/binary.rs) and placed before this file; this file gives them their
// indexing. P[0] = n (output elements), P[1] = rank, P[2..8] = output shape, P[8..14] =
// strides of a (x0), P[14..20] = strides of b (x1), 0 on broadcast dimensions. Backward
// kernels read the output gradient x2 (output shape) and write the unreduced gradients
// of a (y0) and b (y1), both in the output shape; the host then sums them down to the
// input shapes.

// P[1] = 0: both inputs have the output's shape (no index arithmetic needed).
fn ia(i: u32) -> u32 {
    if (pu(1) == 0u) { return i; }
    return strided(i, pu(1), 2u, 8u);
}
fn ib(i: u32) -> u32 {
    if (pu(1) == 0u) { return i; }
    return strided(i, pu(1), 2u, 14u);
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

// Comparisons give 1.0 or 0.0; P[20] is the comparison's code (CMP_<NAME>, generated).
@compute @workgroup_size(256)
fn compare_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = select(0.0, 1.0, cmp_test(pu(20), x0[ia(i)], x1[ib(i)]));
}
