// Recurrent cells: the gate math of one time step, fused, after the input and recurrent
// matrix products (which include the biases). One thread per (batch row, hidden unit).
// Parameters: `cp` (CellParams, src/ops/rnn/mod.rs): B (batch) and H (hidden size).
// The gate nonlinearities and their derivatives are the elementwise table's rows
// (`op_sigmoid_*`, `op_tanh_*`, generated from src/backend/elementwise/mod.rs before this file).

fn sig(x: f32) -> f32 { return op_sigmoid_fwd(x, 0.0, 0.0); }
fn th(x: f32) -> f32 { return op_tanh_fwd(x, 0.0, 0.0); }
// g times the derivative, from the saved output s.
fn sig_bwd(g: f32, s: f32) -> f32 { return op_sigmoid_bwd(g, s, 0.0, 0.0); }
fn th_bwd(g: f32, s: f32) -> f32 { return op_tanh_bwd(g, s, 0.0, 0.0); }

// The activated LSTM gates (i, f, g, o) of the element at `base` of x0 ([B, 4H]).
fn lstm_gates(base: u32, h: u32) -> vec4<f32> {
    return vec4<f32>(
        sig(x0[base]),
        sig(x0[base + h]),
        th(x0[base + 2u * h]),
        sig(x0[base + 3u * h]),
    );
}

// The activated GRU gates (r, z, n) of the element at `base` of x0 = gi and x1 = gh.
fn gru_gates(base: u32, h: u32) -> vec3<f32> {
    let r = sig(x0[base] + x1[base]);
    let z = sig(x0[base + h] + x1[base + h]);
    return vec3<f32>(r, z, th(x0[base + 2u * h] + r * x1[base + 2u * h]));
}

// LSTM (PyTorch's gate order i, f, g, o):
//   i = s(a_i), f = s(a_f), g = tanh(a_g), o = s(a_o)
//   c = f c_prev + i g,  h = o tanh(c)
// x0 = gate pre-activations a [B, 4H], x1 = c_prev [B, H]; y0 = [2, B, H]: h, then c.
@compute @workgroup_size(256)
fn lstm_cell_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    let n = cp.b * cp.h;
    if (i >= n) { return; }
    let h = cp.h;
    let base = (i / h) * 4u * h + i % h;
    let a = lstm_gates(base, h);
    let ig = a.x;
    let fg = a.y;
    let gg = a.z;
    let og = a.w;
    let c = fg * x1[i] + ig * gg;
    y0[i] = og * th(c);
    y0[n + i] = c;
}

// The backward of one LSTM element whose gates start at x0[base]: from the gradients of
// its h (dh) and c (dc_out) and its c_prev, writes the gate gradients into y0 at the same
// positions and returns the gradient of c_prev. The gates are recomputed.
fn lstm_backward(base: u32, h: u32, cp: f32, dh: f32, dc_out: f32) -> f32 {
    let a = lstm_gates(base, h);
    let ig = a.x;
    let fg = a.y;
    let gg = a.z;
    let og = a.w;
    let tc = th(fg * cp + ig * gg);
    let dc = dc_out + th_bwd(dh * og, tc);
    y0[base] = sig_bwd(dc * gg, ig);
    y0[base + h] = sig_bwd(dc * cp, fg);
    y0[base + 2u * h] = th_bwd(dc * ig, gg);
    y0[base + 3u * h] = sig_bwd(dh * tc, og);
    return dc * fg;
}

// Backward from the gradient of [h, c] (x2, [2, B, H]).
// y0 = d a [B, 4H], y1 = d c_prev [B, H].
@compute @workgroup_size(256)
fn lstm_cell_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    let n = cp.b * cp.h;
    if (i >= n) { return; }
    let h = cp.h;
    y1[i] = lstm_backward((i / h) * 4u * h + i % h, h, x1[i], x2[i], x2[n + i]);
}

// GRU (PyTorch's gate order r, z, n):
//   r = s(gi_r + gh_r), z = s(gi_z + gh_z), n = tanh(gi_n + r gh_n)
//   h = (1 - z) n + z h_prev
// x0 = gi [B, 3H] (input product + b_ih), x1 = gh [B, 3H] (recurrent product + b_hh),
// x2 = h_prev [B, H]; y0 = h [B, H].
@compute @workgroup_size(256)
fn gru_cell_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= cp.b * cp.h) { return; }
    let h = cp.h;
    let base = (i / h) * 3u * h + i % h;
    let g = gru_gates(base, h);
    y0[i] = (1.0 - g.y) * g.z + g.y * x2[i];
}

// The backward of one GRU element whose gates start at x0[base] / x1[base]: from the
// gradient of its h (dh) and its h_prev, writes d gi into y0 and d gh into y1 at the
// same positions and returns the direct part of the gradient of h_prev.
fn gru_backward(base: u32, h: u32, hp: f32, dh: f32) -> f32 {
    let g = gru_gates(base, h);
    let r = g.x;
    let z = g.y;
    let nn = g.z;
    let ghn = x1[base + 2u * h];
    let dn = th_bwd(dh * (1.0 - z), nn);
    let dz = sig_bwd(dh * (hp - nn), z);
    let dr = sig_bwd(dn * ghn, r);
    y0[base] = dr;
    y0[base + h] = dz;
    y0[base + 2u * h] = dn;
    y1[base] = dr;
    y1[base + h] = dz;
    y1[base + 2u * h] = dn * r;
    return dh * z;
}

// Backward. The output gradient d h [B, H] arrives in the u32 slot (xi), read through
// bitcast: the f32 slots hold gi, gh and h_prev. y0 = d gi, y1 = d gh, y2 = d h_prev.
@compute @workgroup_size(256)
fn gru_cell_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= cp.b * cp.h) { return; }
    let h = cp.h;
    y2[i] = gru_backward((i / h) * 3u * h + i % h, h, x2[i], bitcast<f32>(xi[i]));
}

// ---- Whole-sequence LSTM, one step at a time on [T, ...] buffers --------------------
// The step's gate pre-activations come from one fused product (h_{t-1} W_hh^T + gi_t +
// b_hh, written into slot t of x0 = [T, B, 4H]); these kernels read and write their
// slots in place, so a step needs no copies.
// Parameters: `st` (StepParams, src/ops/rnn/mod.rs): B, H, the offsets of step t's
// gates (and of its gate gradients), of c_{t-1} (and h_{t-1}), of h_t (forward) or of
// its gradient (backward), of c_t (forward) or of the last cell state's gradient
// (backward), and flags.

// Forward. x1 = c0; y0 = [T + 1, B, H] (h_0 .. h_{T-1}, then c_{T-1}); y1 = c_t of the
// steps before the last. Flags: 1 c_{t-1} from y1 (else x1), 2 c_t into y0 (else y1).
@compute @workgroup_size(256)
fn lstm_step_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= st.b * st.h) { return; }
    let h = st.h;
    let a = lstm_gates(st.gates + (i / h) * 4u * h + i % h, h);
    var cp = 0.0;
    if ((st.flags & 1u) != 0u) { cp = y1[st.prev + i]; } else { cp = x1[st.prev + i]; }
    let c = a.y * cp + a.x * a.z;
    y0[st.cur + i] = a.w * th(c);
    if ((st.flags & 2u) != 0u) { y0[st.cell + i] = c; } else { y1[st.cell + i] = c; }
}

// Backward, gates recomputed. x1 = the c_{t-1} source (c0 or the saved cell states),
// x2 = the gradient of the forward's y0; y0 = gate gradients [T, B, 4H]; y1 = the cell
// gradient carried between steps [B, H] (read, then replaced by d c_{t-1}); y2 = the
// hidden gradient carried from the later step's product [B, H]. Flag 1: the last step
// (its cell gradient is the output's, and nothing is carried in).
@compute @workgroup_size(256)
fn lstm_step_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= st.b * st.h) { return; }
    let h = st.h;
    var dh = x2[st.cur + i];
    var dc = 0.0;
    if ((st.flags & 1u) != 0u) {
        dc = x2[st.cell + i];
    } else {
        dh = dh + y2[i];
        dc = y1[i];
    }
    y1[i] = lstm_backward(st.gates + (i / h) * 4u * h + i % h, h, x1[st.prev + i], dh, dc);
}

// ---- Whole-sequence GRU, one step at a time on [T, ...] buffers ---------------------
// x0 = gi [T, B, 3H] (input product + b_ih), x1 = gh [T, B, 3H] (recurrent products +
// b_hh, slot t written by the step's fused product). The parameters are the LSTM's
// (one launcher drives both, src/ops/rnn/gpu.rs); st.cell is unused.

// Forward: y0 = [T, B, H]. Flag 1: h_{t-1} from y0 (else from x2 = h0).
@compute @workgroup_size(256)
fn gru_step_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= st.b * st.h) { return; }
    let h = st.h;
    let g = gru_gates(st.gates + (i / h) * 3u * h + i % h, h);
    var hp = 0.0;
    if ((st.flags & 1u) != 0u) { hp = y0[st.prev + i]; } else { hp = x2[st.prev + i]; }
    y0[st.cur + i] = (1.0 - g.y) * g.z + g.y * hp;
}

// Backward: x2 = h_{t-1}'s source (h0 or the saved outputs), xi = the output gradient
// [T, B, H] read through bitcast; y0 = d gi and y1 = d gh, [T, B, 3H]; y2 = the hidden
// gradient carried from the later step [B, H], read (unless flag 1: the last step) and
// replaced by the direct part of d h_{t-1} (the step's product adds d gh W_hh to it).
@compute @workgroup_size(256)
fn gru_step_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= st.b * st.h) { return; }
    let h = st.h;
    var dh = bitcast<f32>(xi[st.cur + i]);
    if ((st.flags & 1u) == 0u) { dh = dh + y2[i]; }
    y2[i] = gru_backward(st.gates + (i / h) * 3u * h + i % h, h, x2[st.prev + i], dh);
}
