// Fused softmax cross-entropy from logits x0 [N, C] and class indices xi [N].
// P[0] = N, P[1] = C. Stable for logits of any size: everything goes through the row's
// log-sum-exp, computed after subtracting the row maximum.

// RT threads per row: 64, or 256 for many classes.
override RT: u32 = 64u;
var<workgroup> red: array<f32, 256>;

fn wg_reduce(t: u32, v: f32, is_max: bool) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = RT / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            if (is_max) { red[t] = max(red[t], red[t + s]); } else { red[t] = red[t] + red[t + s]; }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// One workgroup per row: y0[n] = lse_n - x[n, t_n] (NaN for a target >= C), y1[n] = lse_n.
@compute @workgroup_size(RT)
fn cross_entropy_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) t: u32) {
    let row = row_id(wid, nwg);
    let live = row < P[0];
    let c = P[1];
    // Start from the row's first logit (not a sentinel) so logits of any size work.
    var m = 0.0;
    if (live) {
        m = x0[row * c];
        for (var j = t; j < c; j = j + RT) { m = max(m, x0[row * c + j]); }
    }
    m = wg_reduce(t, m, true);
    var s = 0.0;
    if (live) {
        for (var j = t; j < c; j = j + RT) { s = s + exp(x0[row * c + j] - m); }
    }
    s = wg_reduce(t, s, false);
    if (!live || t != 0u) { return; }
    let lse = m + log(s);
    let tgt = xi[row];
    y0[row] = select(nan_f(), lse - x0[row * c + min(tgt, c - 1u)], tgt < c);
    y1[row] = lse;
}

// One thread per logit: dx[n, j] = g[n] (softmax(x)[n, j] - [j == t_n]).
// x0 = logits, x1 = saved lse [N], x2 = g [N].
@compute @workgroup_size(256)
fn cross_entropy_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    let c = P[1];
    if (i >= P[0] * c) { return; }
    let row = i / c;
    let j = i % c;
    let p = exp(x0[i] - x1[row]);
    y0[i] = x2[row] * (p - select(0.0, 1.0, xi[row] == j));
}
