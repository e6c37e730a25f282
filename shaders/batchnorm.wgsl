// Fused batch normalisation. The input is viewed as [N, C, L] (L = H W, or 1 for [N, C]);
// channel c holds the M = N L elements x[(n C + c) L + l].
//
// Parameters (every entry point): `bn` (BatchNormParams, src/ops/batchnorm.rs): N, C, L,
// the blocks per channel and the elements per block (at most 16,384), flags (below), eps,
// momentum, M / (M - 1) (unbiased variance), N C L, M and 1 / M. The host never launches
// with N, C, L, the blocks or the block at 0.
//
// Per-channel statistics, [4, C]: mean, invstd = 1 / sqrt(var + eps), scale = invstd
// gamma (or invstd), shift = beta (or 0); the forward is y = (x - mean) scale + shift.
// Backward coefficients, [4, C]: mean, b, scale, k with dx = scale g - b - k (x - mean),
// laid out so that mean and scale sit where the statistics keep them (an evaluation-mode
// backward that needs only dx reads the statistics directly, with b = k = 0).

const BN_WEIGHT: u32 = 1u;
const BN_BIAS: u32 = 2u;
// Update running_mean (y1) and running_var (y2) in place.
const BN_RUNNING: u32 = 4u;
// Add 1 to num_batches_tracked (an f32 scalar bound in the u32 slot yi).
const BN_COUNT: u32 = 8u;
// Batch statistics (training); otherwise the statistics are constants (evaluation).
const BN_TRAINING: u32 = 16u;

var<workgroup> bn_w: array<vec3<f32>, 256>;
var<workgroup> bn_s: array<vec2<f32>, 256>;

fn bn_flag(f: u32) -> bool {
    return (bn.flags & f) != 0u;
}

// Offset of element j (0 <= j < M) of channel c.
fn bn_at(c: u32, j: u32) -> u32 {
    let n = j / bn.l;
    return (n * bn.c + c) * bn.l + (j - n * bn.l);
}

// Chan et al.'s combination of two (count, mean, M2) summaries.
fn bn_chan(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    if (b.x == 0.0) { return a; }
    if (a.x == 0.0) { return b; }
    let n = a.x + b.x;
    let f = b.x / n;
    let d = b.y - a.y;
    return vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

// The workgroup's combined summary (every thread gets it).
fn bn_tree3(t: u32, s: vec3<f32>) -> vec3<f32> {
    bn_w[t] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (t < k) { bn_w[t] = bn_chan(bn_w[t], bn_w[t + k]); }
        workgroupBarrier();
    }
    return bn_w[0];
}

fn bn_tree2(t: u32, s: vec2<f32>) -> vec2<f32> {
    bn_s[t] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (t < k) { bn_s[t] = bn_s[t] + bn_s[t + k]; }
        workgroupBarrier();
    }
    return bn_s[0];
}

// (count, mean, M2) of block `blk` of channel c by Welford's update per element (each
// thread reads at most block / 256 = 64 elements), then combined over the workgroup.
fn bn_block_welford(c: u32, blk: u32, t: u32, live: bool) -> vec3<f32> {
    var s = vec3<f32>(0.0, 0.0, 0.0);
    if (live) {
        let start = blk * bn.block;
        let end = min(start + bn.block, bn.m);
        for (var j = start + t; j < end; j = j + WG) {
            let v = x0[bn_at(c, j)];
            s.x = s.x + 1.0;
            let d = v - s.y;
            s.y = s.y + d / s.x;
            s.z = s.z + d * (v - s.y);
        }
    }
    return bn_tree3(t, s);
}

// Channel c's statistics from its summary, and the running statistics' update.
// x1 = gamma, x2 = beta (when flagged).
fn bn_finish(c: u32, s: vec3<f32>) {
    let C = bn.c;
    let mean = s.y;
    let var_b = s.z / s.x;
    let invstd = 1.0 / sqrt(var_b + bn.eps);
    var scale = invstd;
    var shift = 0.0;
    if (bn_flag(BN_WEIGHT)) { scale = invstd * x1[c]; }
    if (bn_flag(BN_BIAS)) { shift = x2[c]; }
    y0[c] = mean;
    y0[C + c] = invstd;
    y0[2u * C + c] = scale;
    y0[3u * C + c] = shift;
    if (bn_flag(BN_RUNNING)) {
        let m = bn.momentum;
        y1[c] = (1.0 - m) * y1[c] + m * mean;
        y2[c] = (1.0 - m) * y2[c] + m * (var_b * bn.unbiased);
    }
    if (bn_flag(BN_COUNT) && c == 0u) {
        yi[0] = bitcast<u32>(bitcast<f32>(yi[0]) + 1.0);
    }
}

// Block summaries of every channel: one workgroup per (channel, block); y0 = [C, B, 3].
@compute @workgroup_size(256)
fn bn_partial_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) t: u32) {
    let w = row_id(wid, nwg);
    let live = w < bn.c * bn.blocks;
    var c = 0u;
    var blk = 0u;
    if (live) {
        c = w / bn.blocks;
        blk = w - c * bn.blocks;
    }
    let s = bn_block_welford(c, blk, t, live);
    if (live && t == 0u) {
        y0[3u * w] = s.x;
        y0[3u * w + 1u] = s.y;
        y0[3u * w + 2u] = s.z;
    }
}

// One workgroup per channel when a channel is one block: the summary and the finish in
// one dispatch. x0 = input, x1 = gamma, x2 = beta, y0 = statistics, y1/y2 = running
// mean/var, yi = num_batches_tracked.
@compute @workgroup_size(256)
fn bn_reduce_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) t: u32) {
    let c = row_id(wid, nwg);
    let live = c < bn.c;
    let s = bn_block_welford(c, 0u, t, live);
    if (live && t == 0u) { bn_finish(c, s); }
}

// One workgroup per channel combines the channel's B block summaries (x0 = [C, B, 3]),
// then finishes as bn_reduce_fwd does.
@compute @workgroup_size(256)
fn bn_finalize_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) t: u32) {
    let c = row_id(wid, nwg);
    let live = c < bn.c;
    var s = vec3<f32>(0.0, 0.0, 0.0);
    if (live) {
        for (var b = t; b < bn.blocks; b = b + WG) {
            let k = 3u * (c * bn.blocks + b);
            s = bn_chan(s, vec3<f32>(x0[k], x0[k + 1u], x0[k + 2u]));
        }
    }
    s = bn_tree3(t, s);
    if (live && t == 0u) { bn_finish(c, s); }
}

// Evaluation-mode statistics from the running ones: one thread per channel.
// x0 = running_mean, x1 = running_var, x2 = gamma, xi = beta (f32 bits in the u32 slot:
// the three f32 input slots are taken).
@compute @workgroup_size(256)
fn bn_eval_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat_id(gid, nwg);
    let C = bn.c;
    if (c >= C) { return; }
    let invstd = 1.0 / sqrt(x1[c] + bn.eps);
    var scale = invstd;
    var shift = 0.0;
    if (bn_flag(BN_WEIGHT)) { scale = invstd * x2[c]; }
    if (bn_flag(BN_BIAS)) { shift = bitcast<f32>(xi[c]); }
    y0[c] = x0[c];
    y0[C + c] = invstd;
    y0[2u * C + c] = scale;
    y0[3u * C + c] = shift;
}

// y = (x - mean) scale + shift. x0 = input, x1 = statistics [4, C].
@compute @workgroup_size(256)
fn bn_norm_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= bn.numel) { return; }
    let C = bn.c;
    let c = (i / bn.l) % C;
    y0[i] = (x0[i] - x1[c]) * x1[2u * C + c] + x1[3u * C + c];
}

// (sum g, sum g xhat) over block `blk` of channel c, xhat = (x - mean) invstd.
// x0 = input, x1 = output gradient, x2 = statistics.
fn bn_block_grad(c: u32, blk: u32, t: u32, live: bool) -> vec2<f32> {
    var s = vec2<f32>(0.0, 0.0);
    if (live) {
        let mean = x2[c];
        let invstd = x2[bn.c + c];
        let start = blk * bn.block;
        let end = min(start + bn.block, bn.m);
        for (var j = start + t; j < end; j = j + WG) {
            let k = bn_at(c, j);
            let g = x1[k];
            s = s + vec2<f32>(g, g * ((x0[k] - mean) * invstd));
        }
    }
    return bn_tree2(t, s);
}

// Channel c's weight and bias gradients (y1 = dgamma = sum g xhat, y2 = dbeta = sum g)
// and the coefficients of dx (y0). x2 = statistics.
fn bn_bwd_finish(c: u32, s: vec2<f32>) {
    let C = bn.c;
    let invstd = x2[C + c];
    let scale = x2[2u * C + c];
    var b = 0.0;
    var k = 0.0;
    if (bn_flag(BN_TRAINING)) {
        b = scale * s.x * bn.inv_m;
        k = scale * invstd * s.y * bn.inv_m;
    }
    y0[c] = x2[c];
    y0[C + c] = b;
    y0[2u * C + c] = scale;
    y0[3u * C + c] = k;
    y1[c] = s.y;
    y2[c] = s.x;
}

// Block sums of the backward: one workgroup per (channel, block); y0 = [C, B, 2].
@compute @workgroup_size(256)
fn bn_partial_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) t: u32) {
    let w = row_id(wid, nwg);
    let live = w < bn.c * bn.blocks;
    var c = 0u;
    var blk = 0u;
    if (live) {
        c = w / bn.blocks;
        blk = w - c * bn.blocks;
    }
    let s = bn_block_grad(c, blk, t, live);
    if (live && t == 0u) {
        y0[2u * w] = s.x;
        y0[2u * w + 1u] = s.y;
    }
}

// One workgroup per channel when a channel is one block: sums and finish in one dispatch.
@compute @workgroup_size(256)
fn bn_reduce_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) t: u32) {
    let c = row_id(wid, nwg);
    let live = c < bn.c;
    let s = bn_block_grad(c, 0u, t, live);
    if (live && t == 0u) { bn_bwd_finish(c, s); }
}

// One workgroup per channel adds the channel's B block sums (x0 = [C, B, 2]) and finishes.
@compute @workgroup_size(256)
fn bn_finalize_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) t: u32) {
    let c = row_id(wid, nwg);
    let live = c < bn.c;
    var s = vec2<f32>(0.0, 0.0);
    if (live) {
        for (var b = t; b < bn.blocks; b = b + WG) {
            let k = 2u * (c * bn.blocks + b);
            s = s + vec2<f32>(x0[k], x0[k + 1u]);
        }
    }
    s = bn_tree2(t, s);
    if (live && t == 0u) { bn_bwd_finish(c, s); }
}

// dx = scale g - b - k (x - mean). x0 = input, x1 = output gradient, x2 = coefficients
// (or, without BN_TRAINING, the statistics: dx = scale g).
@compute @workgroup_size(256)
fn bn_dx_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= bn.numel) { return; }
    let C = bn.c;
    let c = (i / bn.l) % C;
    var d = x2[2u * C + c] * x1[i];
    if (bn_flag(BN_TRAINING)) {
        d = d - x2[C + c] - x2[3u * C + c] * (x0[i] - x2[c]);
    }
    y0[i] = d;
}
