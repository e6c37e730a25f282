// Elementwise binary ops with NumPy broadcasting. P[0] = n (output elements),
// P[1] = rank, P[2..8] = output shape, P[8..14] = strides of a (x0), P[14..20] = strides
// of b (x1), 0 on broadcast dimensions. Backward kernels read the output gradient x2
// (output shape) and write the unreduced gradients of a (y0) and b (y1), both in the
// output shape; the host then sums them down to the input shapes.

// P[1] = 0: both inputs have the output's shape (no index arithmetic needed).
fn ia(i: u32) -> u32 {
    if (pu(1) == 0u) { return i; }
    return strided(i, pu(1), 2u, 8u);
}
fn ib(i: u32) -> u32 {
    if (pu(1) == 0u) { return i; }
    return strided(i, pu(1), 2u, 14u);
}

@compute @workgroup_size(256)
fn add_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    y0[i] = a + b;
}

@compute @workgroup_size(256)
fn sub_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    y0[i] = a - b;
}

@compute @workgroup_size(256)
fn mul_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    y0[i] = a * b;
}

@compute @workgroup_size(256)
fn mul_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    let g = x2[i];
    y0[i] = g * b;
    y1[i] = g * a;
}

@compute @workgroup_size(256)
fn div_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    y0[i] = a / b;
}

@compute @workgroup_size(256)
fn div_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    let g = x2[i];
    y0[i] = g / b;
    y1[i] = -g * a / (b * b);
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

@compute @workgroup_size(256)
fn pow_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    y0[i] = pow_f(a, b);
}

@compute @workgroup_size(256)
fn pow_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    let g = x2[i];
    y0[i] = g * b * pow_f(a, b - 1.0);
    // d/db a^b = a^b ln a; PyTorch defines it as 0 where a == 0.
    y1[i] = select(g * pow_f(a, b) * log(a), 0.0, a == 0.0);
}

@compute @workgroup_size(256)
fn maximum_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    // NaN wins, as in PyTorch (WGSL's max may return either operand).
    y0[i] = select(max(a, b), a + b, is_nan_f(a) || is_nan_f(b));
}

// Ties split the gradient evenly, as PyTorch does.

@compute @workgroup_size(256)
fn maximum_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    let g = x2[i];
    let w = select(select(0.0, 1.0, a > b), 0.5, a == b);
    y0[i] = g * w;
    y1[i] = g * (1.0 - w);
}

@compute @workgroup_size(256)
fn minimum_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    y0[i] = select(min(a, b), a + b, is_nan_f(a) || is_nan_f(b));
}

@compute @workgroup_size(256)
fn minimum_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    let g = x2[i];
    let w = select(select(0.0, 1.0, a < b), 0.5, a == b);
    y0[i] = g * w;
    y1[i] = g * (1.0 - w);
}

// Comparisons give 1.0 or 0.0; P[20] picks: 0 eq, 1 ne, 2 lt, 3 le, 4 gt, 5 ge.

@compute @workgroup_size(256)
fn compare_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let a = x0[ia(i)];
    let b = x1[ib(i)];
    var r = false;
    switch pu(20) {
        case 0u: { r = a == b; }
        case 1u: { r = a != b; }
        case 2u: { r = a < b; }
        case 3u: { r = a <= b; }
        case 4u: { r = a > b; }
        default: { r = a >= b; }
    }
    y0[i] = select(0.0, 1.0, r);
}
