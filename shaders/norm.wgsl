// Row normalisations: layer_norm, rms_norm and group_norm (src/ops/norm.rs; the
// geometry in src/backend/norm.rs). The input is R rows of D contiguous elements; row r
// is normalised by its own mean and variance (rms_norm: mean 0, the mean square), then
// element j is scaled and shifted by affine value a = ((r mod G) D + j) / L (layer and
// rms norm: G = L = 1, a = j; group norm of [N, C, L] in G groups: the channel).
//
// Parameters (every entry point): `nm` (NormParams, src/backend/gpu/norm.rs). The host
// never launches with R, D, G or L at 0 and never passes a row longer than 16,384
// elements (64 per thread); the threads per row (tpr) are a power of two from 32 to
// 256. Statistics, [2, R]: mean (0 for rms_norm) and rstd = 1 / sqrt(var + eps).

const NM_RMS: u32 = 1u;
const NM_WEIGHT: u32 = 2u;
const NM_BIAS: u32 = 4u;

var<workgroup> nm_w: array<vec3<f32>, 256>;
var<workgroup> nm_s: array<vec2<f32>, 256>;

fn nm_flag(f: u32) -> bool {
    return (nm.flags & f) != 0u;
}

// The affine value of element j of row r.
fn nm_affine(r: u32, j: u32) -> u32 {
    return ((r % nm.groups) * nm.d + j) / nm.l;
}

// Chan et al.'s combination of two (count, mean, M2) summaries (for rms_norm the means
// stay 0 and M2 is the sum of squares).
fn nm_chan(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    if (b.x == 0.0) { return a; }
    if (a.x == 0.0) { return b; }
    let n = a.x + b.x;
    let f = b.x / n;
    let d = b.y - a.y;
    return vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

// The combined summary of thread t's row: the workgroup's threads form segments of
// nm.tpr consecutive threads, one row each (every thread gets its row's).
fn nm_row3(t: u32, s: vec3<f32>) -> vec3<f32> {
    let lt = t % nm.tpr;
    nm_w[t] = s;
    workgroupBarrier();
    for (var k = nm.tpr / 2u; k > 0u; k = k / 2u) {
        if (lt < k) { nm_w[t] = nm_chan(nm_w[t], nm_w[t + k]); }
        workgroupBarrier();
    }
    let s_all = nm_w[t - lt];
    workgroupBarrier();
    return s_all;
}

// The sum over thread t's row segment, as nm_row3.
fn nm_row2(t: u32, s: vec2<f32>) -> vec2<f32> {
    let lt = t % nm.tpr;
    nm_s[t] = s;
    workgroupBarrier();
    for (var k = nm.tpr / 2u; k > 0u; k = k / 2u) {
        if (lt < k) { nm_s[t] = nm_s[t] + nm_s[t + k]; }
        workgroupBarrier();
    }
    let s_all = nm_s[t - lt];
    workgroupBarrier();
    return s_all;
}

// The sum over the workgroup's `stride`-apart lanes: thread t gets the sum over the
// threads t mod stride + i stride.
fn nm_lanes2(t: u32, s: vec2<f32>, stride: u32) -> vec2<f32> {
    nm_s[t] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k >= stride; k = k / 2u) {
        if (t < k) { nm_s[t] = nm_s[t] + nm_s[t + k]; }
        workgroupBarrier();
    }
    let s_all = nm_s[t % stride];
    workgroupBarrier();
    return s_all;
}

// A segment of nm.tpr threads per row (256 / tpr rows per workgroup: short rows do not
// leave most of a workgroup idle): the row's (count, mean, M2) by Welford's update per
// element (a running sum of squares for rms_norm), combined over the segment; the
// statistics (y1); then y = (x - mean) rstd weight + bias (y0). x0 = input,
// x1 = weight, x2 = bias (when flagged).
@compute @workgroup_size(256)
fn norm_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) t: u32) {
    let lt = t % nm.tpr;
    let r = row_id(wid, nwg) * (WG / nm.tpr) + t / nm.tpr;
    let live = r < nm.rows;
    let base = r * nm.d;
    let rms = nm_flag(NM_RMS);
    var s = vec3<f32>(0.0, 0.0, 0.0);
    if (live) {
        for (var j = lt; j < nm.d; j = j + nm.tpr) {
            let v = x0[base + j];
            s.x = s.x + 1.0;
            if (rms) {
                s.z = s.z + v * v;
            } else {
                let d = v - s.y;
                s.y = s.y + d / s.x;
                s.z = s.z + d * (v - s.y);
            }
        }
    }
    s = nm_row3(t, s);
    if (!live) { return; }
    let mean = s.y;
    let rstd = 1.0 / sqrt(s.z / s.x + nm.eps);
    if (lt == 0u) {
        y1[r] = mean;
        y1[nm.rows + r] = rstd;
    }
    for (var j = lt; j < nm.d; j = j + nm.tpr) {
        let a = nm_affine(r, j);
        var v = (x0[base + j] - mean) * rstd;
        if (nm_flag(NM_WEIGHT)) { v = v * x1[a]; }
        if (nm_flag(NM_BIAS)) { v = v + x2[a]; }
        y0[base + j] = v;
    }
}

// A segment of nm.tpr threads per row, as norm_fwd:
// dx = rstd (gw - mean(gw) - xhat mean(gw xhat)), gw = g weight, xhat = (x - mean) rstd
// (rms_norm: without mean(gw)). x0 = input, x1 = output gradient, x2 = statistics,
// xi = weight (f32 bits, when flagged; the three f32 input slots are taken), y0 = dx.
@compute @workgroup_size(256)
fn norm_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) t: u32) {
    let lt = t % nm.tpr;
    let r = row_id(wid, nwg) * (WG / nm.tpr) + t / nm.tpr;
    let live = r < nm.rows;
    let base = r * nm.d;
    var mean = 0.0;
    var rstd = 0.0;
    var s = vec2<f32>(0.0, 0.0);
    if (live) {
        mean = x2[r];
        rstd = x2[nm.rows + r];
        for (var j = lt; j < nm.d; j = j + nm.tpr) {
            var gw = x1[base + j];
            if (nm_flag(NM_WEIGHT)) { gw = gw * bitcast<f32>(xi[nm_affine(r, j)]); }
            s = s + vec2<f32>(gw, gw * ((x0[base + j] - mean) * rstd));
        }
    }
    s = nm_row2(t, s);
    if (!live) { return; }
    var c1 = s.x * nm.inv_d;
    if (nm_flag(NM_RMS)) { c1 = 0.0; }
    let c2 = s.y * nm.inv_d;
    for (var j = lt; j < nm.d; j = j + nm.tpr) {
        var gw = x1[base + j];
        if (nm_flag(NM_WEIGHT)) { gw = gw * bitcast<f32>(xi[nm_affine(r, j)]); }
        let xhat = (x0[base + j] - mean) * rstd;
        y0[base + j] = rstd * (gw - c1 - xhat * c2);
    }
}

// The weight's and bias's gradients as a column reduction: one workgroup per (tile of
// `cols` affine values, chunk of `chunk` elements of each), lanes of 256 / cols threads
// per affine value (neighbouring threads take neighbouring affine values when L = 1, so
// a row's reads coalesce). Columns of up to 2,048 rows are one chunk (tiles of 8 to 32
// values, NormGeo::cols), so this is the whole reduction. y0 = sum g xhat, y1 = sum g,
// [chunks, A] each (the op adds several chunks). x0 = input, x1 = output gradient,
// x2 = statistics.
@compute @workgroup_size(256)
fn norm_affine_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) t: u32) {
    let w = row_id(wid, nwg);
    let tiles = (nm.affine + nm.cols - 1u) / nm.cols;
    let live_group = w < tiles * nm.chunks;
    var tile = 0u;
    var chunk = 0u;
    if (live_group) {
        tile = w / nm.chunks;
        chunk = w - tile * nm.chunks;
    }
    let col = t % nm.cols;
    let lane = t / nm.cols;
    let lanes = WG / nm.cols;
    let a = tile * nm.cols + col;
    let live = live_group && a < nm.affine;
    var s = vec2<f32>(0.0, 0.0);
    if (live) {
        let per_row = nm.d / nm.l;
        let g = a / per_row;
        let within = (a - g * per_row) * nm.l;
        let start = chunk * nm.chunk;
        let end = min(start + nm.chunk, nm.per_affine);
        for (var k = start + lane; k < end; k = k + lanes) {
            let n = k / nm.l;
            let r = n * nm.groups + g;
            let i = r * nm.d + within + (k - n * nm.l);
            let gv = x1[i];
            s = s + vec2<f32>(gv * ((x0[i] - x2[r]) * x2[nm.rows + r]), gv);
        }
    }
    s = nm_lanes2(t, s, nm.cols);
    if (live && lane == 0u) {
        y0[chunk * nm.affine + a] = s.x;
        y1[chunk * nm.affine + a] = s.y;
    }
}
