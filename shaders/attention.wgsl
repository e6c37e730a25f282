// Fused scaled-dot-product attention (FlashAttention-2 scheme) over q [bh, L, E],
// k [bh, S, E], v [bh, S, Ev] and the output [bh, L, Ev], each at its row layout (row i
// of batch-head bh at off + (bh / heads) * batch + (bh % heads) * head + i * row, the
// row's elements consecutive: contiguous tensors, or the heads of a packed projection,
// which then need no copies). The gradients are written at their operands' layouts, the
// output gradient read at the output's. Parameters: `at` (AttentionParams,
// src/backend/gpu/attention.rs). The [L, S] score matrix is never stored:
// - attention_fwd: a workgroup of AW threads owns AW * R query rows of one batch-head;
//   thread t owns rows i0 + t + r AW (r < R), held in registers as vec4s with their
//   output accumulators. Keys and values stream past four at a time, every thread
//   reading the same four rows (a broadcast: one load serves the whole SIMD group on a
//   CPU adapter and the warp on a GPU), each loaded vec4 feeding 4 R multiply-adds. Each
//   row keeps a running maximum and sum (the online softmax), rescaling its accumulator
//   once per four keys. It writes the output and one log-sum-exp per row (+inf for a row
//   that sees no key: its output is 0).
// - attention_delta_bwd: D_i = rowsum(dO o O) beside the log-sum-exp, one thread a row.
// - attention_dq_bwd: the forward's layout; the weights are recomputed from the
//   log-sum-exp, dQ accumulates in registers.
// - attention_dkv_bwd: a workgroup owns AW * R keys (R per thread); queries and output
//   gradients stream past four at a time; dK and dV accumulate in registers. No float
//   atomics: every gradient row has one owner.
// Causal key (query) groups wholly above the diagonal are skipped by the loop bounds.
// The head dimensions (in vec4s, at most 32 = 128 floats), R (rows per thread, with
// R * HD4 and R * HV4 at most 128) and AW are override constants, so every inner loop
// has a constant trip count and the register arrays constant indices. The host picks R 4
// on software adapters (lavapipe: a load instruction costs tens of multiply-adds, so
// each loaded vec4 must feed many; measured 4.7x faster than one row per thread at
// seq 1024) and 1 on hardware GPUs (register pressure). A group of four keys that every
// row of the workgroup sees whole (no mask, all four keys in range, not causal or below
// the diagonal) skips the per-(row, key) tests. No barriers and no workgroup memory:
// every thread runs every key group (a thread past the last row on a clamped row,
// storing nothing), so the key loads stay uniform (on lavapipe a load in divergent
// control flow is a load per SIMD lane). VEC (every row start and head dimension a
// multiple of 4, set by the host) loads rows as aligned vec4s instead of four checked
// scalars. Dropout regenerates its keep-test from Philox with counter
// (key, bh * L + row, offset): the forward and the backward see the same mask.

override HD4: u32 = 16u;
override HV4: u32 = 16u;
override R: u32 = 1u;
override AW: u32 = 128u;
override VEC: bool = false;

@group(0) @binding(12) var<storage, read> at_mask: array<f32>;
@group(0) @binding(13) var<storage, read> at_dout: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read> at_stats: array<f32>;

// The dropout factor of row `row` (bh * L + i) and key `col`: 0 or 1 / (1 - p).
fn at_keep(row: u32, col: u32) -> f32 {
    if (at.dropout == 0u) { return 1.0; }
    let c = philox_rounds(vec4<u32>(col, row, at.offset_lo, at.offset_hi), vec2<u32>(at.seed_lo, at.seed_hi));
    return select(0.0, at.drop_scale, (c.x >> 8u) >= at.threshold);
}

// The first element of row i of batch-head bh of q, k, v and the output.
fn at_qrow(bh: u32, i: u32) -> u32 {
    return at.q_off + (bh / at.q_heads) * at.q_batch + (bh % at.q_heads) * at.q_head + i * at.q_row;
}

fn at_krow(bh: u32, j: u32) -> u32 {
    return at.k_off + (bh / at.k_heads) * at.k_batch + (bh % at.k_heads) * at.k_head + j * at.k_row;
}

fn at_vrow(bh: u32, j: u32) -> u32 {
    return at.v_off + (bh / at.v_heads) * at.v_batch + (bh % at.v_heads) * at.v_head + j * at.v_row;
}

fn at_orow(bh: u32, i: u32) -> u32 {
    return at.o_off + (bh / at.o_heads) * at.o_batch + (bh % at.o_heads) * at.o_head + i * at.o_row;
}

fn at_is_neg_inf(x: f32) -> bool {
    return bitcast<u32>(x) == 0xff800000u;
}

fn at_pos_inf() -> f32 {
    var bits = 0x7f800000u;
    return bitcast<f32>(bits);
}

// Elements 4 d4 .. 4 d4 + 3 of a row of `len` floats starting at `base` of one input,
// zero past the row's end (one function per binding: a kernel binds only what it reads).
// With VEC the row starts on a vec4 and `len` is a multiple of 4: one aligned load.
fn at_q4(base: u32, d4: u32, len: u32) -> vec4<f32> {
    if (VEC) { return x0v[(base >> 2u) + d4]; }
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        let i = base + d4 * 4u + c;
        if (d4 * 4u + c < len) { r[c] = x0v[i >> 2u][i & 3u]; }
    }
    return r;
}

fn at_k4(base: u32, d4: u32, len: u32) -> vec4<f32> {
    if (VEC) { return x1v[(base >> 2u) + d4]; }
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        let i = base + d4 * 4u + c;
        if (d4 * 4u + c < len) { r[c] = x1v[i >> 2u][i & 3u]; }
    }
    return r;
}

fn at_v4(base: u32, d4: u32, len: u32) -> vec4<f32> {
    if (VEC) { return x2v[(base >> 2u) + d4]; }
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        let i = base + d4 * 4u + c;
        if (d4 * 4u + c < len) { r[c] = x2v[i >> 2u][i & 3u]; }
    }
    return r;
}

fn at_do4(base: u32, d4: u32, len: u32) -> vec4<f32> {
    if (VEC) { return at_dout[(base >> 2u) + d4]; }
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        let i = base + d4 * 4u + c;
        if (d4 * 4u + c < len) { r[c] = at_dout[i >> 2u][i & 3u]; }
    }
    return r;
}

// Whether query i of batch-head bh sees key j, and the additive term of its score.
fn at_bias(bh: u32, i: u32, j: u32) -> vec2<f32> {
    if (at.causal != 0u && j > i) { return vec2<f32>(0.0, 0.0); }
    if (at.mask_kind == 0u) { return vec2<f32>(1.0, 0.0); }
    let mv = at_mask[((bh / at.m_repeat) % at.m_blocks) * at.m_block + i * at.m_row + j * at.m_col];
    if (at.mask_kind == 2u) { return vec2<f32>(select(0.0, 1.0, mv != 0.0), 0.0); }
    if (at_is_neg_inf(mv)) { return vec2<f32>(0.0, 0.0); }
    return vec2<f32>(1.0, mv);
}

// Visibility (1 or 0) and additive terms of four (query, key) pairs: query iv[c]
// against key jv[c]. A query or key past the end is not visible (the mask is read at
// clamped positions).
fn at_bias4(bh: u32, iv: vec4<u32>, jv: vec4<u32>) -> array<vec4<f32>, 2> {
    var vis = vec4<f32>(0.0);
    var add = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        let i = iv[c];
        let j = jv[c];
        let b = at_bias(bh, min(i, at.l - 1u), min(j, at.s - 1u));
        let shown = i < at.l && j < at.s && !(at.causal != 0u && j > i);
        vis[c] = select(0.0, b.x, shown);
        add[c] = b.y;
    }
    return array<vec4<f32>, 2>(vis, add);
}

// The dropout factors of row `row` against keys j0 .. j0 + 3.
fn at_keep4(row: u32, j0: u32) -> vec4<f32> {
    return vec4<f32>(at_keep(row, j0), at_keep(row, j0 + 1u), at_keep(row, j0 + 2u), at_keep(row, j0 + 3u));
}

// The dropout factors of rows row0 .. row0 + 3 against key j.
fn at_keep4q(row0: u32, j: u32) -> vec4<f32> {
    return vec4<f32>(at_keep(row0, j), at_keep(row0 + 1u, j), at_keep(row0 + 2u, j), at_keep(row0 + 3u, j));
}

// A finite stand-in for -inf in maxima over visible scores.
const AT_LOWEST: f32 = -3.402823e38;


@compute @workgroup_size(AW)
fn attention_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) t: u32) {
    let blk = row_id(wid, nwg);
    if (blk >= at.bh * at.blocks) { return; }
    let bh = blk / at.blocks;
    let i0 = (blk % at.blocks) * AW * R;
    var qr: array<vec4<f32>, 128>;
    var acc: array<vec4<f32>, 128>;
    var m: array<f32, 4>;
    var lsum: array<f32, 4>;
    var seen: array<bool, 4>;
    for (var r = 0u; r < R; r = r + 1u) {
        let base = at_qrow(bh, min(i0 + t + r * AW, at.l - 1u));
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { qr[r * HD4 + d4] = at_q4(base, d4, at.e); }
        for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) { acc[r * HV4 + d4] = vec4<f32>(0.0); }
        m[r] = 0.0;
        lsum[r] = 0.0;
        seen[r] = false;
    }
    var kend = at.s;
    if (at.causal != 0u) { kend = min(at.s, i0 + AW * R); }
    let last = at.s - 1u;
    for (var j0 = 0u; j0 < kend; j0 = j0 + 4u) {
        let jv = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u);
        let kb = vec4<u32>(at_krow(bh, min(jv.x, last)), at_krow(bh, min(jv.y, last)),
                           at_krow(bh, min(jv.z, last)), at_krow(bh, min(jv.w, last)));
        // Scores of four keys per row: every thread loads the same four key vec4s.
        var s: array<vec4<f32>, 4>;
        for (var r = 0u; r < R; r = r + 1u) { s[r] = vec4<f32>(0.0); }
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
            let k0 = at_k4(kb.x, d4, at.e);
            let k1 = at_k4(kb.y, d4, at.e);
            let k2 = at_k4(kb.z, d4, at.e);
            let k3 = at_k4(kb.w, d4, at.e);
            for (var r = 0u; r < R; r = r + 1u) {
                let x = qr[r * HD4 + d4];
                s[r] = s[r] + vec4<f32>(dot(x, k0), dot(x, k1), dot(x, k2), dot(x, k3));
            }
        }
        // Plain: every row of the workgroup sees all four keys.
        let plain = at.mask_kind == 0u && j0 + 4u <= at.s && (at.causal == 0u || j0 + 3u <= i0);
        var p: array<vec4<f32>, 4>;
        for (var r = 0u; r < R; r = r + 1u) {
            let i = i0 + t + r * AW;
            var sc = s[r] * at.scale;
            var vis = vec4<bool>(true);
            if (!plain) {
                let b = at_bias4(bh, vec4<u32>(i), jv);
                sc = sc + b[1];
                vis = b[0] != vec4<f32>(0.0);
            }
            let shown = select(vec4<f32>(AT_LOWEST), sc, vis);
            let tmax = max(max(shown.x, shown.y), max(shown.z, shown.w));
            let any_vis = any(vis);
            // A group this row sees none of leaves its state as it is (corr 1).
            let mnew = select(m[r], select(tmax, max(m[r], tmax), seen[r]), any_vis);
            let corr = select(1.0, select(0.0, exp(m[r] - mnew), seen[r]), any_vis);
            var pr = select(vec4<f32>(0.0), exp(sc - vec4<f32>(mnew)), vis);
            lsum[r] = lsum[r] * corr + dot(pr, vec4<f32>(1.0));
            for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) { acc[r * HV4 + d4] = acc[r * HV4 + d4] * corr; }
            m[r] = mnew;
            seen[r] = seen[r] || any_vis;
            if (at.dropout != 0u) { pr = pr * at_keep4(bh * at.l + i, j0); }
            p[r] = pr;
        }
        let vb = vec4<u32>(at_vrow(bh, min(jv.x, last)), at_vrow(bh, min(jv.y, last)),
                           at_vrow(bh, min(jv.z, last)), at_vrow(bh, min(jv.w, last)));
        for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
            let v0 = at_v4(vb.x, d4, at.ev);
            let v1 = at_v4(vb.y, d4, at.ev);
            let v2 = at_v4(vb.z, d4, at.ev);
            let v3 = at_v4(vb.w, d4, at.ev);
            for (var r = 0u; r < R; r = r + 1u) {
                let w = p[r];
                acc[r * HV4 + d4] = acc[r * HV4 + d4] + w.x * v0 + w.y * v1 + w.z * v2 + w.w * v3;
            }
        }
    }
    for (var r = 0u; r < R; r = r + 1u) {
        let i = i0 + t + r * AW;
        if (i >= at.l) { break; }
        let row = bh * at.l + i;
        var inv = 0.0;
        if (seen[r]) {
            inv = 1.0 / lsum[r];
            y1[row] = m[r] + log(lsum[r]);
        } else {
            y1[row] = at_pos_inf();
        }
        let base = at_orow(bh, i);
        for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
            let val = acc[r * HV4 + d4] * inv;
            for (var c = 0u; c < 4u; c = c + 1u) {
                let d = d4 * 4u + c;
                if (d < at.ev) { y0[base + d] = val[c]; }
            }
        }
    }
}

@compute @workgroup_size(256)
fn attention_delta_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_id(gid, nwg);
    if (row >= at.bh * at.l) { return; }
    let base = at_orow(row / at.l, row % at.l);
    var d = 0.0;
    for (var c = 0u; c < at.ev; c = c + 1u) { d = d + x0[base + c] * x1[base + c]; }
    y0[2u * row] = x2[row];
    y0[2u * row + 1u] = d;
}

@compute @workgroup_size(AW)
fn attention_dq_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) t: u32) {
    let blk = row_id(wid, nwg);
    if (blk >= at.bh * at.blocks) { return; }
    let bh = blk / at.blocks;
    let i0 = (blk % at.blocks) * AW * R;
    var qr: array<vec4<f32>, 128>;
    var gr: array<vec4<f32>, 128>;
    var dq: array<vec4<f32>, 128>;
    var lse: array<f32, 4>;
    var delta: array<f32, 4>;
    for (var r = 0u; r < R; r = r + 1u) {
        let i = min(i0 + t + r * AW, at.l - 1u);
        let qb = at_qrow(bh, i);
        let ob = at_orow(bh, i);
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
            qr[r * HD4 + d4] = at_q4(qb, d4, at.e);
            dq[r * HD4 + d4] = vec4<f32>(0.0);
        }
        for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) { gr[r * HV4 + d4] = at_do4(ob, d4, at.ev); }
        lse[r] = at_stats[2u * (bh * at.l + i)];
        delta[r] = at_stats[2u * (bh * at.l + i) + 1u];
    }
    var kend = at.s;
    if (at.causal != 0u) { kend = min(at.s, i0 + AW * R); }
    let last = at.s - 1u;
    for (var j0 = 0u; j0 < kend; j0 = j0 + 4u) {
        let jv = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u);
        let kb = vec4<u32>(at_krow(bh, min(jv.x, last)), at_krow(bh, min(jv.y, last)),
                           at_krow(bh, min(jv.z, last)), at_krow(bh, min(jv.w, last)));
        let vb = vec4<u32>(at_vrow(bh, min(jv.x, last)), at_vrow(bh, min(jv.y, last)),
                           at_vrow(bh, min(jv.z, last)), at_vrow(bh, min(jv.w, last)));
        var s: array<vec4<f32>, 4>;
        var dp: array<vec4<f32>, 4>;
        for (var r = 0u; r < R; r = r + 1u) {
            s[r] = vec4<f32>(0.0);
            dp[r] = vec4<f32>(0.0);
        }
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
            let k0 = at_k4(kb.x, d4, at.e);
            let k1 = at_k4(kb.y, d4, at.e);
            let k2 = at_k4(kb.z, d4, at.e);
            let k3 = at_k4(kb.w, d4, at.e);
            for (var r = 0u; r < R; r = r + 1u) {
                let x = qr[r * HD4 + d4];
                s[r] = s[r] + vec4<f32>(dot(x, k0), dot(x, k1), dot(x, k2), dot(x, k3));
            }
        }
        for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
            let v0 = at_v4(vb.x, d4, at.ev);
            let v1 = at_v4(vb.y, d4, at.ev);
            let v2 = at_v4(vb.z, d4, at.ev);
            let v3 = at_v4(vb.w, d4, at.ev);
            for (var r = 0u; r < R; r = r + 1u) {
                let g = gr[r * HV4 + d4];
                dp[r] = dp[r] + vec4<f32>(dot(g, v0), dot(g, v1), dot(g, v2), dot(g, v3));
            }
        }
        let plain = at.mask_kind == 0u && j0 + 4u <= at.s && (at.causal == 0u || j0 + 3u <= i0);
        var ds: array<vec4<f32>, 4>;
        for (var r = 0u; r < R; r = r + 1u) {
            let i = i0 + t + r * AW;
            var sc = s[r] * at.scale;
            var vis = vec4<bool>(true);
            if (!plain) {
                let b = at_bias4(bh, vec4<u32>(i), jv);
                sc = sc + b[1];
                vis = b[0] != vec4<f32>(0.0);
            }
            let pr = select(vec4<f32>(0.0), exp(sc - vec4<f32>(lse[r])), vis);
            var z = vec4<f32>(1.0);
            if (at.dropout != 0u) { z = at_keep4(bh * at.l + i, j0); }
            ds[r] = pr * (dp[r] * z - vec4<f32>(delta[r]));
        }
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
            let k0 = at_k4(kb.x, d4, at.e);
            let k1 = at_k4(kb.y, d4, at.e);
            let k2 = at_k4(kb.z, d4, at.e);
            let k3 = at_k4(kb.w, d4, at.e);
            for (var r = 0u; r < R; r = r + 1u) {
                let w = ds[r];
                dq[r * HD4 + d4] = dq[r * HD4 + d4] + w.x * k0 + w.y * k1 + w.z * k2 + w.w * k3;
            }
        }
    }
    for (var r = 0u; r < R; r = r + 1u) {
        let i = i0 + t + r * AW;
        if (i >= at.l) { break; }
        let base = at_qrow(bh, i);
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
            let val = dq[r * HD4 + d4] * at.scale;
            for (var c = 0u; c < 4u; c = c + 1u) {
                let d = d4 * 4u + c;
                if (d < at.e) { y0[base + d] = val[c]; }
            }
        }
    }
}

@compute @workgroup_size(AW)
fn attention_dkv_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) t: u32) {
    let blk = row_id(wid, nwg);
    if (blk >= at.bh * at.blocks) { return; }
    let bh = blk / at.blocks;
    let j0 = (blk % at.blocks) * AW * R;
    var kr: array<vec4<f32>, 128>;
    var vr: array<vec4<f32>, 128>;
    var dk: array<vec4<f32>, 128>;
    var dv: array<vec4<f32>, 128>;
    for (var r = 0u; r < R; r = r + 1u) {
        let j = min(j0 + t + r * AW, at.s - 1u);
        let kb = at_krow(bh, j);
        let vb = at_vrow(bh, j);
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
            kr[r * HD4 + d4] = at_k4(kb, d4, at.e);
            dk[r * HD4 + d4] = vec4<f32>(0.0);
        }
        for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
            vr[r * HV4 + d4] = at_v4(vb, d4, at.ev);
            dv[r * HV4 + d4] = vec4<f32>(0.0);
        }
    }
    // Causal: queries before this block's first key see none of its keys.
    var istart = 0u;
    if (at.causal != 0u) { istart = j0 / 4u * 4u; }
    // The block's last key, for the plain test.
    let jlast = min(j0 + AW * R, at.s) - 1u;
    let lastq = at.l - 1u;
    for (var i0 = istart; i0 < at.l; i0 = i0 + 4u) {
        let iv = vec4<u32>(i0, i0 + 1u, i0 + 2u, i0 + 3u);
        let ic = min(iv, vec4<u32>(lastq));
        let qb = vec4<u32>(at_qrow(bh, ic.x), at_qrow(bh, ic.y), at_qrow(bh, ic.z), at_qrow(bh, ic.w));
        let ob = vec4<u32>(at_orow(bh, ic.x), at_orow(bh, ic.y), at_orow(bh, ic.z), at_orow(bh, ic.w));
        let rows = vec4<u32>(bh * at.l) + ic;
        let lse = vec4<f32>(at_stats[2u * rows.x], at_stats[2u * rows.y], at_stats[2u * rows.z], at_stats[2u * rows.w]);
        let delta = vec4<f32>(at_stats[2u * rows.x + 1u], at_stats[2u * rows.y + 1u],
                              at_stats[2u * rows.z + 1u], at_stats[2u * rows.w + 1u]);
        // s[r][c]: key r's score against query i0 + c; dp likewise.
        var s: array<vec4<f32>, 4>;
        var dp: array<vec4<f32>, 4>;
        for (var r = 0u; r < R; r = r + 1u) {
            s[r] = vec4<f32>(0.0);
            dp[r] = vec4<f32>(0.0);
        }
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
            let q0 = at_q4(qb.x, d4, at.e);
            let q1 = at_q4(qb.y, d4, at.e);
            let q2 = at_q4(qb.z, d4, at.e);
            let q3 = at_q4(qb.w, d4, at.e);
            for (var r = 0u; r < R; r = r + 1u) {
                let x = kr[r * HD4 + d4];
                s[r] = s[r] + vec4<f32>(dot(x, q0), dot(x, q1), dot(x, q2), dot(x, q3));
            }
        }
        for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
            let g0 = at_do4(ob.x, d4, at.ev);
            let g1 = at_do4(ob.y, d4, at.ev);
            let g2 = at_do4(ob.z, d4, at.ev);
            let g3 = at_do4(ob.w, d4, at.ev);
            for (var r = 0u; r < R; r = r + 1u) {
                let x = vr[r * HV4 + d4];
                dp[r] = dp[r] + vec4<f32>(dot(x, g0), dot(x, g1), dot(x, g2), dot(x, g3));
            }
        }
        // Plain: all four queries are in range and see every key of this block.
        let plain = at.mask_kind == 0u && i0 + 4u <= at.l && (at.causal == 0u || jlast <= i0);
        var pz: array<vec4<f32>, 4>;
        var ds: array<vec4<f32>, 4>;
        for (var r = 0u; r < R; r = r + 1u) {
            let j = j0 + t + r * AW;
            var sc = s[r] * at.scale;
            var vis = vec4<bool>(true);
            if (!plain) {
                let b = at_bias4(bh, iv, vec4<u32>(j));
                sc = sc + b[1];
                vis = b[0] != vec4<f32>(0.0);
            }
            let pr = select(vec4<f32>(0.0), exp(sc - lse), vis);
            var z = vec4<f32>(1.0);
            if (at.dropout != 0u) { z = at_keep4q(bh * at.l + i0, j); }
            pz[r] = pr * z;
            ds[r] = pr * (dp[r] * z - delta);
        }
        for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
            let g0 = at_do4(ob.x, d4, at.ev);
            let g1 = at_do4(ob.y, d4, at.ev);
            let g2 = at_do4(ob.z, d4, at.ev);
            let g3 = at_do4(ob.w, d4, at.ev);
            for (var r = 0u; r < R; r = r + 1u) {
                let w = pz[r];
                dv[r * HV4 + d4] = dv[r * HV4 + d4] + w.x * g0 + w.y * g1 + w.z * g2 + w.w * g3;
            }
        }
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
            let q0 = at_q4(qb.x, d4, at.e);
            let q1 = at_q4(qb.y, d4, at.e);
            let q2 = at_q4(qb.z, d4, at.e);
            let q3 = at_q4(qb.w, d4, at.e);
            for (var r = 0u; r < R; r = r + 1u) {
                let w = ds[r];
                dk[r * HD4 + d4] = dk[r * HD4 + d4] + w.x * q0 + w.y * q1 + w.z * q2 + w.w * q3;
            }
        }
    }
    for (var r = 0u; r < R; r = r + 1u) {
        let j = j0 + t + r * AW;
        if (j >= at.s) { break; }
        let kb = at_krow(bh, j);
        let vb = at_vrow(bh, j);
        for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
            let val = dk[r * HD4 + d4] * at.scale;
            for (var c = 0u; c < 4u; c = c + 1u) {
                let d = d4 * 4u + c;
                if (d < at.e) { y0[kb + d] = val[c]; }
            }
        }
        for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
            for (var c = 0u; c < 4u; c = c + 1u) {
                let d = d4 * 4u + c;
                if (d >= at.ev) { continue; }
                if (at.dv_in_dk != 0u) {
                    y0[vb + d] = dv[r * HV4 + d4][c];
                } else {
                    y1[vb + d] = dv[r * HV4 + d4][c];
                }
            }
        }
    }
}
