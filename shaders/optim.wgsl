// Fused optimizer updates: one kernel per parameter tensor and step, in place.
// y0 = the parameter, x0 = its gradient, y1 (and y2) = the optimizer's state buffers.
// Entry points are named <optimizer>_step: they update state rather than compute values.

// SGD as PyTorch's torch.optim.SGD. P[0] = n, P[1] = lr, P[2] = momentum,
// P[3] = dampening, P[4] = weight decay, P[5] = nesterov (0/1), P[6] = first step (0/1).
@compute @workgroup_size(256)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= P[0]) { return; }
    let p = y0[i];
    var g = x0[i] + pf(4u) * p;
    let momentum = pf(2u);
    if (momentum != 0.0) {
        var b = g;
        if (P[6] == 0u) {
            b = momentum * y1[i] + (1.0 - pf(3u)) * g;
        }
        y1[i] = b;
        g = select(b, g + momentum * b, P[5] == 1u);
    }
    y0[i] = p - pf(1u) * g;
}

// Adam and AdamW as PyTorch's. P[0] = n, P[1] = lr, P[2] = beta1, P[3] = beta2,
// P[4] = eps, P[5] = weight decay, P[6] = decoupled (AdamW) 0/1,
// P[7] = 1 - beta1^t, P[8] = 1 - beta2^t (bias corrections). y1 = m, y2 = v.
@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= P[0]) { return; }
    var p = y0[i];
    var g = x0[i];
    let lr = pf(1u);
    if (P[6] == 1u) {
        p = p * (1.0 - lr * pf(5u));
    } else {
        g = g + pf(5u) * p;
    }
    let m = pf(2u) * y1[i] + (1.0 - pf(2u)) * g;
    let v = pf(3u) * y2[i] + (1.0 - pf(3u)) * g * g;
    y1[i] = m;
    y2[i] = v;
    let m_hat = m / pf(7u);
    let v_hat = v / pf(8u);
    y0[i] = p - lr * m_hat / (sqrt(v_hat) + pf(4u));
}
