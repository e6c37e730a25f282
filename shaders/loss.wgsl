// Fused softmax cross-entropy from logits x0 [N, C] and class indices xi [N].
// Parameters: `ce` (CeParams, src/ops/loss.rs): N and C. Stable for logits of any size: everything goes through the row's
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
    let live = row < ce.n;
    let c = ce.c;
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
    if (tgt >= c) { yi[0] = 3u; }
    y0[row] = select(nan_f(), lse - x0[row * c + min(tgt, c - 1u)], tgt < c);
    y1[row] = lse;
}

// The mean loss of a small batch on one workgroup of 256 threads (the host uses it when
// N C <= 16K and each thread's rows hold at most 1,024 logits): thread t takes rows t,
// t + 256, ...; y1[n] = lse_n (saved for the backward), y0[0] = the mean of the rows'
// losses (NaN for a target >= C).
@compute @workgroup_size(256)
fn cross_entropy_mean_fwd(@builtin(local_invocation_index) t: u32) {
    let c = ce.c;
    var total = 0.0;
    for (var row = t; row < ce.n; row = row + 256u) {
        var m = x0[row * c];
        for (var j = 1u; j < c; j = j + 1u) { m = max(m, x0[row * c + j]); }
        var s = 0.0;
        for (var j = 0u; j < c; j = j + 1u) { s = s + exp(x0[row * c + j] - m); }
        let lse = m + log(s);
        let tgt = xi[row];
        if (tgt >= c) { yi[0] = 3u; }
        total = total + select(nan_f(), lse - x0[row * c + min(tgt, c - 1u)], tgt < c);
        y1[row] = lse;
    }
    red[t] = total;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (t < s) { red[t] = red[t] + red[t + s]; }
        workgroupBarrier();
    }
    if (t == 0u) { y0[0] = red[0] / f32(ce.n); }
}

// One thread per logit: dx[n, j] = g[n] (softmax(x)[n, j] - [j == t_n]), or with
// ce.mean = 1 (the mean's gradient) g[0] / N for every row.
// x0 = logits, x1 = saved lse [N], x2 = g [N] (or [1]).
@compute @workgroup_size(256)
fn cross_entropy_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    let c = ce.c;
    if (i >= ce.n * c) { return; }
    let row = i / c;
    let j = i % c;
    let p = exp(x0[i] - x1[row]);
    var g = 0.0;
    if (ce.mean == 1u) { g = x2[0] / f32(ce.n); } else { g = x2[row]; }
    y0[i] = g * (p - select(0.0, 1.0, xi[row] == j));
}
