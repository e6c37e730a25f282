// softmax and log_softmax along one dimension. The tensor is viewed as [outer, D, inner];
// one workgroup of RT threads (64, or 256 for long rows) handles one (outer, inner) row of
// D elements. Parameters: `sm` (SoftmaxParams, src/ops/softmax.rs): rows (outer * inner),
// d and inner.

override RT: u32 = 64u;
var<workgroup> red: array<f32, 256>;

fn wg_sum(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = RT / 2u; s > 0u; s = s / 2u) {
        if (t < s) { red[t] = red[t] + red[t + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn wg_max(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = RT / 2u; s > 0u; s = s / 2u) {
        if (t < s) { red[t] = max(red[t], red[t + s]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn elem_at(row: u32, d: u32) -> u32 {
    let o = row / sm.inner;
    let i = row % sm.inner;
    return (o * sm.d + d) * sm.inner + i;
}

// Row max and log of the sum of exp(x - max): the stable log-sum-exp pieces.
fn row_stats(row: u32, t: u32, live: bool) -> vec2<f32> {
    // Start from the row's first element (not a sentinel) so rows of any magnitude work.
    var m = 0.0;
    if (live) {
        m = x0[elem_at(row, 0u)];
        for (var d = t; d < sm.d; d = d + RT) { m = max(m, x0[elem_at(row, d)]); }
    }
    m = wg_max(t, m);
    var s = 0.0;
    if (live) {
        for (var d = t; d < sm.d; d = d + RT) { s = s + exp(x0[elem_at(row, d)] - m); }
    }
    s = wg_sum(t, s);
    return vec2<f32>(m, log(s));
}

@compute @workgroup_size(RT)
fn softmax_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
    let row = row_id(wid, nwg);
    let live = row < sm.rows;
    let st = row_stats(row, t, live);
    if (!live) { return; }
    for (var d = t; d < sm.d; d = d + RT) {
        let k = elem_at(row, d);
        y0[k] = exp(x0[k] - st.x - st.y);
    }
}

@compute @workgroup_size(RT)
fn log_softmax_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) t: u32) {
    let row = row_id(wid, nwg);
    let live = row < sm.rows;
    let st = row_stats(row, t, live);
    if (!live) { return; }
    for (var d = t; d < sm.d; d = d + RT) {
        let k = elem_at(row, d);
        y0[k] = x0[k] - st.x - st.y;
    }
}

// dx = y (g - sum(g y)), from the saved output x0 = y and the gradient x1 = g.
@compute @workgroup_size(RT)
fn softmax_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
    let row = row_id(wid, nwg);
    let live = row < sm.rows;
    var s = 0.0;
    if (live) {
        for (var d = t; d < sm.d; d = d + RT) { let k = elem_at(row, d); s = s + x0[k] * x1[k]; }
    }
    s = wg_sum(t, s);
    if (!live) { return; }
    for (var d = t; d < sm.d; d = d + RT) {
        let k = elem_at(row, d);
        y0[k] = x0[k] * (x1[k] - s);
    }
}

// dx = g - exp(y) sum(g), from the saved output x0 = y (log-probabilities) and x1 = g.
@compute @workgroup_size(RT)
fn log_softmax_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) t: u32) {
    let row = row_id(wid, nwg);
    let live = row < sm.rows;
    var s = 0.0;
    if (live) {
        for (var d = t; d < sm.d; d = d + RT) { s = s + x1[elem_at(row, d)]; }
    }
    s = wg_sum(t, s);
    if (!live) { return; }
    for (var d = t; d < sm.d; d = d + RT) {
        let k = elem_at(row, d);
        y0[k] = x1[k] - exp(x0[k]) * s;
    }
}
