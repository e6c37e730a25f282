// Elementwise unary ops. Forward: y0 = f(x0). Backward: y0 = dL/dx from the saved input
// x0, the saved output x1 and the output gradient x2. P[0] = n, P[1], P[2] = op scalars.

@compute @workgroup_size(256)
fn neg_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = -x0[i];
}

@compute @workgroup_size(256)
fn neg_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = -x2[i];
}

@compute @workgroup_size(256)
fn exp_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = exp(x0[i]);
}

@compute @workgroup_size(256)
fn exp_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = x2[i] * x1[i];
}

@compute @workgroup_size(256)
fn log_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = log(x0[i]);
}

@compute @workgroup_size(256)
fn log_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = x2[i] / x0[i];
}

@compute @workgroup_size(256)
fn sqrt_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = sqrt(x0[i]);
}

@compute @workgroup_size(256)
fn sqrt_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = x2[i] / (2.0 * x1[i]);
}

@compute @workgroup_size(256)
fn abs_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = abs(x0[i]);
}

@compute @workgroup_size(256)
fn abs_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = x2[i] * sign(x0[i]);
}

@compute @workgroup_size(256)
fn sigmoid_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = sigmoid_f(x0[i]);
}

// sigma' = sigma (1 - sigma), from the saved output.
@compute @workgroup_size(256)
fn sigmoid_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let y = x1[i];
    y0[i] = x2[i] * y * (1.0 - y);
}

@compute @workgroup_size(256)
fn tanh_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = tanh_f32(x0[i]);
}

@compute @workgroup_size(256)
fn tanh_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let y = x1[i];
    y0[i] = x2[i] * (1.0 - y * y);
}

@compute @workgroup_size(256)
fn relu_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = relu_f(x0[i]);
}

@compute @workgroup_size(256)
fn relu_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    // PyTorch's threshold_backward: 0 where x <= 0, so a NaN input passes the gradient.
    y0[i] = select(x2[i], 0.0, x0[i] <= 0.0);
}

// P[1] = negative slope.
@compute @workgroup_size(256)
fn leaky_relu_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let x = x0[i];
    y0[i] = select(pf(1u) * x, x, x > 0.0);
}

@compute @workgroup_size(256)
fn leaky_relu_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = select(pf(1u) * x2[i], x2[i], x0[i] > 0.0);
}

// PyTorch's Softplus: P[1] = beta, P[2] = threshold above which it is linear.
@compute @workgroup_size(256)
fn softplus_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let x = x0[i];
    let z = pf(1u) * x;
    if (z > pf(2u)) {
        y0[i] = x;
    } else {
        y0[i] = softplus_z(z) / pf(1u);
    }
}

@compute @workgroup_size(256)
fn softplus_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let z = pf(1u) * x0[i];
    y0[i] = select(x2[i] * sigmoid_f(z), x2[i], z > pf(2u));
}

// y = P[1] * x + P[2] (scalar multiply and add).
@compute @workgroup_size(256)
fn affine_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = pf(1u) * x0[i] + pf(2u);
}

@compute @workgroup_size(256)
fn affine_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    y0[i] = pf(1u) * x2[i];
}

// Parametric ReLU, PyTorch layout: x0 = input [N, C, ...], x1 = slopes (C values, or one).
// P[1] = C, P[2] = elements per channel plane, P[3] = number of slopes.
fn prelu_channel(i: u32) -> u32 {
    if (pu(3) == 1u) { return 0u; }
    return (i / pu(2)) % pu(1);
}

@compute @workgroup_size(256)
fn prelu_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let x = x0[i];
    y0[i] = select(x1[prelu_channel(i)] * x, x, x > 0.0);
}

// y0 = dL/dx, y1 = per-element contribution to dL/dslope (summed per channel afterwards).
// x2 = output gradient.
@compute @workgroup_size(256)
fn prelu_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0)) { return; }
    let x = x0[i];
    let g = x2[i];
    let pos = x > 0.0;
    y0[i] = select(x1[prelu_channel(i)] * g, g, pos);
    y1[i] = select(g * x, 0.0, pos);
}
