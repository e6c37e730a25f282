// Pooling and nearest-neighbour upsampling over NCHW planes.
// Parameters: `pl` (PoolParams, src/ops/pool2d.rs): N C planes, H, W, Ho, Wo, the
// window kh x kw, stride sh, sw, padding ph, pw, and adaptive (avg pooling only).

// Max over each window (padding never wins; NaN beats everything); yi = the winner's index in its plane
// (ih * W + iw), saved for backward. One thread per output.
@compute @workgroup_size(256)
fn maxpool2d_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pl.planes * pl.ho * pl.wo) { return; }
    let ow = i % pl.wo;
    let oh = (i / pl.wo) % pl.ho;
    let plane = i / (pl.wo * pl.ho);
    var best = 0.0;
    var best_at = 0xffffffffu;
    for (var ki = 0u; ki < pl.kh; ki = ki + 1u) {
        let ih = i32(oh * pl.sh + ki) - i32(pl.ph);
        if (ih < 0 || u32(ih) >= pl.h) { continue; }
        for (var kj = 0u; kj < pl.kw; kj = kj + 1u) {
            let iw = i32(ow * pl.sw + kj) - i32(pl.pw);
            if (iw < 0 || u32(iw) >= pl.w) { continue; }
            let at = u32(ih) * pl.w + u32(iw);
            let v = x0[plane * pl.h * pl.w + at];
            // A NaN always takes over (the last NaN of the window wins, as PyTorch).
            if (best_at == 0xffffffffu || v > best || is_nan_f(v)) { best = v; best_at = at; }
        }
    }
    y0[i] = best;
    if (pl.positions != 0u) { yi[i] = best_at; }
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
    if (i >= pl.planes * pl.h * pl.w) { return; }
    let iw = i % pl.w;
    let ih = (i / pl.w) % pl.h;
    let plane = i / (pl.w * pl.h);
    let rh = covering(ih, pl.kh, pl.sh, pl.ph, pl.ho);
    let rw = covering(iw, pl.kw, pl.sw, pl.pw, pl.wo);
    let me = ih * pl.w + iw;
    var acc = 0.0;
    for (var oh = rh.x; oh < rh.y; oh = oh + 1u) {
        for (var ow = rw.x; ow < rw.y; ow = ow + 1u) {
            let o = (plane * pl.ho + oh) * pl.wo + ow;
            if (xi[o] == me) { acc = acc + x0[o]; }
        }
    }
    y0[i] = acc;
}

// Window of output o along an axis: [start, end) and the divisor. Fixed windows count
// the padding (PyTorch's count_include_pad = True); adaptive ones are
// [floor(o n / n_out), ceil((o + 1) n / n_out)).
fn avg_window(o: u32, n: u32, n_out: u32, k: u32, s: u32, p: u32) -> vec3<i32> {
    if (pl.adaptive == 1u) {
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
    if (i >= pl.planes * pl.ho * pl.wo) { return; }
    let ow = i % pl.wo;
    let oh = (i / pl.wo) % pl.ho;
    let plane = i / (pl.wo * pl.ho);
    let wh = avg_window(oh, pl.h, pl.ho, pl.kh, pl.sh, pl.ph);
    let ww = avg_window(ow, pl.w, pl.wo, pl.kw, pl.sw, pl.pw);
    var acc = 0.0;
    for (var ih = max(wh.x, 0); ih < min(wh.y, i32(pl.h)); ih = ih + 1) {
        for (var iw = max(ww.x, 0); iw < min(ww.y, i32(pl.w)); iw = iw + 1) {
            acc = acc + x0[(plane * pl.h + u32(ih)) * pl.w + u32(iw)];
        }
    }
    y0[i] = acc / f32(wh.z * ww.z);
}

// dx = sum over the windows covering the element of g / (window size). x0 = g.
@compute @workgroup_size(256)
fn avgpool2d_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pl.planes * pl.h * pl.w) { return; }
    let iw = i % pl.w;
    let ih = (i / pl.w) % pl.h;
    let plane = i / (pl.w * pl.h);
    var rh = vec2<u32>(0u, pl.ho);
    var rw = vec2<u32>(0u, pl.wo);
    if (pl.adaptive == 0u) {
        rh = covering(ih, pl.kh, pl.sh, pl.ph, pl.ho);
        rw = covering(iw, pl.kw, pl.sw, pl.pw, pl.wo);
    }
    var acc = 0.0;
    for (var oh = rh.x; oh < rh.y; oh = oh + 1u) {
        let wh = avg_window(oh, pl.h, pl.ho, pl.kh, pl.sh, pl.ph);
        if (i32(ih) < wh.x || i32(ih) >= wh.y) { continue; }
        for (var ow = rw.x; ow < rw.y; ow = ow + 1u) {
            let ww = avg_window(ow, pl.w, pl.wo, pl.kw, pl.sw, pl.pw);
            if (i32(iw) < ww.x || i32(iw) >= ww.y) { continue; }
            acc = acc + x0[(plane * pl.ho + oh) * pl.wo + ow] / f32(wh.z * ww.z);
        }
    }
    y0[i] = acc;
}

// Nearest upsampling by integer factors pl.kh (rows) and pl.kw (columns):
// y[plane, oh, ow] = x[plane, oh / pl.kh, ow / pl.kw].
@compute @workgroup_size(256)
fn upsample_nearest_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pl.planes * pl.ho * pl.wo) { return; }
    let ow = i % pl.wo;
    let oh = (i / pl.wo) % pl.ho;
    let plane = i / (pl.wo * pl.ho);
    y0[i] = x0[(plane * pl.h + oh / pl.kh) * pl.w + ow / pl.kw];
}

// dx = the sum of g over the block the element was copied to. x0 = g.
@compute @workgroup_size(256)
fn upsample_nearest_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= pl.planes * pl.h * pl.w) { return; }
    let iw = i % pl.w;
    let ih = (i / pl.w) % pl.h;
    let plane = i / (pl.w * pl.h);
    var acc = 0.0;
    for (var a = 0u; a < pl.kh; a = a + 1u) {
        for (var b = 0u; b < pl.kw; b = b + 1u) {
            acc = acc + x0[(plane * pl.ho + ih * pl.kh + a) * pl.wo + iw * pl.kw + b];
        }
    }
    y0[i] = acc;
}
