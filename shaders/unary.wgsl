// Elementwise unary ops. The kernels of every op in the elementwise table
// (`<name>_fwd`, `<name>_bwd`) are generated from src/backend/elementwise/mod.rs and come before
// this file; what follows is the parametric ReLU, whose slope is a tensor.

// Parametric ReLU, PyTorch layout: x0 = input [N, C, ...], x1 = slopes (C values, or one).
// Parameters: `pp` (PreluParams, src/ops/unary.rs).
fn prelu_channel(i: u32) -> u32 {
    if (pp.slopes == 1u) { return 0u; }
    return (i / pp.plane) % pp.channels;
}

@compute @workgroup_size(256)
fn prelu_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pp.n) { return; }
    let x = x0[i];
    y0[i] = select(x1[prelu_channel(i)] * x, x, x > 0.0);
}

// y0 = dL/dx, y1 = per-element contribution to dL/dslope (summed per channel afterwards).
// x2 = output gradient.
@compute @workgroup_size(256)
fn prelu_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pp.n) { return; }
    let x = x0[i];
    let g = x2[i];
    let pos = x > 0.0;
    y0[i] = select(x1[prelu_channel(i)] * g, g, pos);
    y1[i] = select(g * x, 0.0, pos);
}
