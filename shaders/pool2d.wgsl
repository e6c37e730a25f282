// Pooling and nearest-neighbour upsampling over NCHW planes.
// P[0] = N * C (planes), P[1] = H, P[2] = W, P[3] = Ho, P[4] = Wo, P[5] = kh, P[6] = kw,
// P[7] = sh, P[8] = sw, P[9] = ph, P[10] = pw, P[11] = adaptive (avg pooling only).

// Max over each window (padding never wins; NaN beats everything); yi = the winner's index in its plane
// (ih * W + iw), saved for backward. One thread per output.
@compute @workgroup_size(256)
fn maxpool2d_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0) * pu(3) * pu(4)) { return; }
    let ow = i % pu(4);
    let oh = (i / pu(4)) % pu(3);
    let plane = i / (pu(4) * pu(3));
    var best = 0.0;
    var best_at = 0xffffffffu;
    for (var ki = 0u; ki < pu(5); ki = ki + 1u) {
        let ih = i32(oh * pu(7) + ki) - i32(pu(9));
        if (ih < 0 || u32(ih) >= pu(1)) { continue; }
        for (var kj = 0u; kj < pu(6); kj = kj + 1u) {
            let iw = i32(ow * pu(8) + kj) - i32(pu(10));
            if (iw < 0 || u32(iw) >= pu(2)) { continue; }
            let at = u32(ih) * pu(2) + u32(iw);
            let v = x0[plane * pu(1) * pu(2) + at];
            // A NaN always takes over (the last NaN of the window wins, as PyTorch).
            if (best_at == 0xffffffffu || v > best || is_nan_f(v)) { best = v; best_at = at; }
        }
    }
    y0[i] = best;
    yi[i] = best_at;
}

// Range of outputs along one axis whose window (start o s - p, length k) covers input x.
fn covering(x: u32, k: u32, s: u32, p: u32, n_out: u32) -> vec2<u32> {
    let hi_num = i32(x + p);
    let lo_num = hi_num - i32(k) + 1;
    var lo = 0u;
    if (lo_num > 0) { lo = (u32(lo_num) + s - 1u) / s; }
    let hi = min(u32(hi_num) / s + 1u, n_out);
    return vec2<u32>(lo, hi);
}

// dx[plane, ih, iw] = sum of g over the windows whose saved winner is (ih, iw).
// x0 = g, xi = winners. One thread per input element.
@compute @workgroup_size(256)
fn maxpool2d_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0) * pu(1) * pu(2)) { return; }
    let iw = i % pu(2);
    let ih = (i / pu(2)) % pu(1);
    let plane = i / (pu(2) * pu(1));
    let rh = covering(ih, pu(5), pu(7), pu(9), pu(3));
    let rw = covering(iw, pu(6), pu(8), pu(10), pu(4));
    let me = ih * pu(2) + iw;
    var acc = 0.0;
    for (var oh = rh.x; oh < rh.y; oh = oh + 1u) {
        for (var ow = rw.x; ow < rw.y; ow = ow + 1u) {
            let o = (plane * pu(3) + oh) * pu(4) + ow;
            if (xi[o] == me) { acc = acc + x0[o]; }
        }
    }
    y0[i] = acc;
}

// Window of output o along an axis: [start, end) and the divisor. Fixed windows count
// the padding (PyTorch's count_include_pad = True); adaptive ones are
// [floor(o n / n_out), ceil((o + 1) n / n_out)).
fn avg_window(o: u32, n: u32, n_out: u32, k: u32, s: u32, p: u32) -> vec3<i32> {
    if (pu(11) == 1u) {
        let a = (o * n) / n_out;
        let b = ((o + 1u) * n + n_out - 1u) / n_out;
        return vec3<i32>(i32(a), i32(b), i32(b - a));
    }
    let a = i32(o * s) - i32(p);
    return vec3<i32>(a, a + i32(k), i32(k));
}

@compute @workgroup_size(256)
fn avgpool2d_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0) * pu(3) * pu(4)) { return; }
    let ow = i % pu(4);
    let oh = (i / pu(4)) % pu(3);
    let plane = i / (pu(4) * pu(3));
    let wh = avg_window(oh, pu(1), pu(3), pu(5), pu(7), pu(9));
    let ww = avg_window(ow, pu(2), pu(4), pu(6), pu(8), pu(10));
    var acc = 0.0;
    for (var ih = max(wh.x, 0); ih < min(wh.y, i32(pu(1))); ih = ih + 1) {
        for (var iw = max(ww.x, 0); iw < min(ww.y, i32(pu(2))); iw = iw + 1) {
            acc = acc + x0[(plane * pu(1) + u32(ih)) * pu(2) + u32(iw)];
        }
    }
    y0[i] = acc / f32(wh.z * ww.z);
}

// dx = sum over the windows covering the element of g / (window size). x0 = g.
@compute @workgroup_size(256)
fn avgpool2d_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0) * pu(1) * pu(2)) { return; }
    let iw = i % pu(2);
    let ih = (i / pu(2)) % pu(1);
    let plane = i / (pu(2) * pu(1));
    var rh = vec2<u32>(0u, pu(3));
    var rw = vec2<u32>(0u, pu(4));
    if (pu(11) == 0u) {
        rh = covering(ih, pu(5), pu(7), pu(9), pu(3));
        rw = covering(iw, pu(6), pu(8), pu(10), pu(4));
    }
    var acc = 0.0;
    for (var oh = rh.x; oh < rh.y; oh = oh + 1u) {
        let wh = avg_window(oh, pu(1), pu(3), pu(5), pu(7), pu(9));
        if (i32(ih) < wh.x || i32(ih) >= wh.y) { continue; }
        for (var ow = rw.x; ow < rw.y; ow = ow + 1u) {
            let ww = avg_window(ow, pu(2), pu(4), pu(6), pu(8), pu(10));
            if (i32(iw) < ww.x || i32(iw) >= ww.y) { continue; }
            acc = acc + x0[(plane * pu(3) + oh) * pu(4) + ow] / f32(wh.z * ww.z);
        }
    }
    y0[i] = acc;
}

// Nearest upsampling by integer factors P[5] (rows) and P[6] (columns):
// y[plane, oh, ow] = x[plane, oh / P[5], ow / P[6]].
@compute @workgroup_size(256)
fn upsample_nearest_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0) * pu(3) * pu(4)) { return; }
    let ow = i % pu(4);
    let oh = (i / pu(4)) % pu(3);
    let plane = i / (pu(4) * pu(3));
    y0[i] = x0[(plane * pu(1) + oh / pu(5)) * pu(2) + ow / pu(6)];
}

// dx = the sum of g over the block the element was copied to. x0 = g.
@compute @workgroup_size(256)
fn upsample_nearest_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pu(0) * pu(1) * pu(2)) { return; }
    let iw = i % pu(2);
    let ih = (i / pu(2)) % pu(1);
    let plane = i / (pu(2) * pu(1));
    var acc = 0.0;
    for (var a = 0u; a < pu(5); a = a + 1u) {
        for (var b = 0u; b < pu(6); b = b + 1u) {
            acc = acc + x0[(plane * pu(3) + ih * pu(5) + a) * pu(4) + iw * pu(6) + b];
        }
    }
    y0[i] = acc;
}
