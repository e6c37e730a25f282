// Fused scaled-dot-product attention (FlashAttention-2 scheme) over q [bh, L, E],
// k [bh, S, E], v [bh, S, Ev] and the output [bh, L, Ev], each at its row layout (row i
// of batch-head bh at off + (bh / heads) * batch + (bh % heads) * head + i * row, the
// row's elements consecutive: contiguous tensors, or the heads of a packed projection,
// which then need no copies). The gradients are written at their operands' layouts, the
// output gradient read at the output's. Parameters: `at` (AttentionParams,
// src/backend/gpu/attention.rs). The [L, S] score matrix is never stored:
// - attention_fwd: a workgroup of 128 threads owns 128 query rows of one batch-head (one
//   row per thread, held in registers as vec4s); keys and values stream through
//   workgroup memory in tiles of KT, and each row keeps a running maximum and sum (the
//   online softmax), rescaling its accumulator once per 8 keys. It writes the output and
//   one log-sum-exp per row (+inf for a row that sees no key: its output is 0).
// - attention_delta_bwd: D_i = rowsum(dO o O) beside the log-sum-exp, one thread a row.
// - attention_dq_bwd: the same tiling as the forward; the weights are recomputed from
//   the log-sum-exp, dQ accumulates in registers.
// - attention_dkv_bwd: a workgroup owns 128 keys (one per thread); queries and output
//   gradients stream through workgroup memory in tiles of KT; dK and dV accumulate in
//   registers. No float atomics: every gradient row has one owner.
// Causal tiles wholly above the diagonal are skipped by the loop bounds. The head
// dimensions are override constants (in vec4s, at most 32 = 128 floats) so the inner
// loops have constant trip counts; so is the tile KT (the keys or queries two tiles of
// 512 vec4s hold, a multiple of 8, at most 32: 32 at head_dim 64, 16 at 128), fewer
// tiles meaning fewer barriers. A tile that every row of the block sees whole (no mask,
// not causal or wholly below the diagonal, KT keys) takes a path without per-(row, key)
// tests. Every thread runs every tile (a thread past the last row on zeros, storing
// nothing), so the tile reads sit in uniform control flow: uniform loads, where under a
// per-thread condition lavapipe may load per SIMD lane. The forward keeps a tile's scores
// in vec4s, not a private array indexed by the key (on lavapipe such an array is memory
// written per SIMD lane: with 32 scores in one, the seq-256 forward took 4x as long).
// VEC (every row start and head dimension a multiple of 4, set by the host) loads rows
// as aligned vec4s instead of four checked scalars. Dropout regenerates its keep-test
// from Philox with counter (key, bh * L + row, offset): the forward and the backward see
// the same mask.

override HD4: u32 = 16u;
override HV4: u32 = 16u;
override KT: u32 = 32u;
override VEC: bool = false;
const ROWS: u32 = 128u;

var<workgroup> tile_a: array<vec4<f32>, 512>;
var<workgroup> tile_b: array<vec4<f32>, 512>;

// Elements 4 d4 .. 4 d4 + 3 of a row (attention_common.wgsl's checked loads); with VEC
// the row starts on a vec4 and `len` is a multiple of 4: one aligned load.
fn at_q4(base: u32, d4: u32, len: u32) -> vec4<f32> {
    if (VEC) { return x0v[(base >> 2u) + d4]; }
    return at_q4s(base, d4, len);
}

fn at_k4(base: u32, d4: u32, len: u32) -> vec4<f32> {
    if (VEC) { return x1v[(base >> 2u) + d4]; }
    return at_k4s(base, d4, len);
}

fn at_v4(base: u32, d4: u32, len: u32) -> vec4<f32> {
    if (VEC) { return x2v[(base >> 2u) + d4]; }
    return at_v4s(base, d4, len);
}

fn at_do4(base: u32, d4: u32, len: u32) -> vec4<f32> {
    if (VEC) { return at_dout[(base >> 2u) + d4]; }
    return at_do4s(base, d4, len);
}

// Whether the tile of `n` keys from j0 is seen whole by every query of the block from
// i0: no mask, KT keys, and not causal or the tile's last key at or before the block's
// first query. Uniform over the workgroup.
fn at_plain(n: u32, j0: u32, i0: u32) -> bool {
    return at.mask_kind == 0u && n == KT && (at.causal == 0u || j0 + n <= i0 + 1u);
}

// Loads keys j0 .. j0 + KT of batch-head bh into tile_a and their values into tile_b,
// key jj's vec4 d4 at jj * HD4 + d4 (HV4 for values; zero past the last key). The
// loops have constant trip counts.
fn at_load_kv(t: u32, valid: bool, bh: u32, j0: u32) {
    workgroupBarrier();
    for (var r = 0u; r < (KT * HD4 + ROWS - 1u) / ROWS; r = r + 1u) {
        let idx = r * ROWS + t;
        let j = j0 + idx / HD4;
        if (idx < KT * HD4) {
            var val = vec4<f32>(0.0);
            if (valid && j < at.s) { val = at_k4(at_krow(bh, j), idx % HD4, at.e); }
            tile_a[idx] = val;
        }
    }
    for (var r = 0u; r < (KT * HV4 + ROWS - 1u) / ROWS; r = r + 1u) {
        let idx = r * ROWS + t;
        let j = j0 + idx / HV4;
        if (idx < KT * HV4) {
            var val = vec4<f32>(0.0);
            if (valid && j < at.s) { val = at_v4(at_vrow(bh, j), idx % HV4, at.ev); }
            tile_b[idx] = val;
        }
    }
    workgroupBarrier();
}

// Loads queries i0 .. i0 + KT of batch-head bh into tile_a and their output gradients
// into tile_b, laid out as at_load_kv's (zero past the last query).
fn at_load_qdo(t: u32, valid: bool, bh: u32, i0: u32) {
    workgroupBarrier();
    for (var r = 0u; r < (KT * HD4 + ROWS - 1u) / ROWS; r = r + 1u) {
        let idx = r * ROWS + t;
        let i = i0 + idx / HD4;
        if (idx < KT * HD4) {
            var val = vec4<f32>(0.0);
            if (valid && i < at.l) { val = at_q4(at_qrow(bh, i), idx % HD4, at.e); }
            tile_a[idx] = val;
        }
    }
    for (var r = 0u; r < (KT * HV4 + ROWS - 1u) / ROWS; r = r + 1u) {
        let idx = r * ROWS + t;
        let i = i0 + idx / HV4;
        if (idx < KT * HV4) {
            var val = vec4<f32>(0.0);
            if (valid && i < at.l) { val = at_do4(at_orow(bh, i), idx % HV4, at.ev); }
            tile_b[idx] = val;
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(128)
fn attention_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) t: u32) {
    let blk = row_id(wid, nwg);
    let valid = blk < at.bh * at.blocks;
    let bh = blk / at.blocks;
    let i0 = (blk % at.blocks) * ROWS;
    let i = i0 + t;
    let live = valid && i < at.l;
    let row = bh * at.l + i;
    var qr: array<vec4<f32>, 32>;
    var acc: array<vec4<f32>, 32>;
    for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
        qr[d4] = vec4<f32>(0.0);
        if (live) { qr[d4] = at_q4(at_qrow(bh, i), d4, at.e); }
    }
    for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) { acc[d4] = vec4<f32>(0.0); }
    var m = 0.0;
    var seen = false;
    var lsum = 0.0;
    var kend = at.s;
    if (at.causal != 0u) { kend = min(at.s, i0 + ROWS); }
    for (var j0 = 0u; j0 < kend; j0 = j0 + KT) {
        at_load_kv(t, valid, bh, j0);
        let n = min(KT, kend - j0);
        // Every thread runs the tile (a thread past the last row on zeros, storing
        // nothing): no per-thread branch around the loops, so the next barrier stays in
        // uniform control flow (Tint requires it) and the tile reads are uniform loads (a
        // load under a per-thread condition is a load per SIMD lane on lavapipe).
        if (at_plain(n, j0, i0)) {
            // Every key counts. Eight keys at a time, their scores in two vec4s (a
            // private array indexed by the key is memory, a load and store per SIMD lane
            // on lavapipe): their maximum, one rescale, then the weights.
            for (var c0 = 0u; c0 < KT; c0 = c0 + 8u) {
                var s0 = vec4<f32>(0.0);
                var s1 = vec4<f32>(0.0);
                for (var c = 0u; c < 4u; c = c + 1u) {
                    var a = 0.0;
                    var b = 0.0;
                    for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
                        a = a + dot(qr[d4], tile_a[(c0 + c) * HD4 + d4]);
                        b = b + dot(qr[d4], tile_a[(c0 + 4u + c) * HD4 + d4]);
                    }
                    s0[c] = a;
                    s1[c] = b;
                }
                s0 = s0 * at.scale;
                s1 = s1 * at.scale;
                let h = max(s0, s1);
                let cmax = max(max(h.x, h.y), max(h.z, h.w));
                let mnew = select(cmax, max(m, cmax), seen);
                let corr = select(0.0, exp(m - mnew), seen);
                let p0 = exp(s0 - vec4<f32>(mnew));
                let p1 = exp(s1 - vec4<f32>(mnew));
                lsum = lsum * corr + dot(p0 + p1, vec4<f32>(1.0));
                for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) { acc[d4] = acc[d4] * corr; }
                for (var c = 0u; c < 4u; c = c + 1u) {
                    let pa = p0[c] * at_keep(row, j0 + c0 + c);
                    let pb = p1[c] * at_keep(row, j0 + c0 + 4u + c);
                    for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
                        acc[d4] = acc[d4] + pa * tile_b[(c0 + c) * HV4 + d4] + pb * tile_b[(c0 + 4u + c) * HV4 + d4];
                    }
                }
                m = mnew;
                seen = true;
            }
        } else {
            // Per-key visibility by selects, not branches (the same uniform loads).
            var sc: array<f32, 32>;
            var ok = 0u;
            var tmax = 0.0;
            for (var jj = 0u; jj < n; jj = jj + 1u) {
                let b = at_bias(bh, i, j0 + jj);
                var s = 0.0;
                for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { s = s + dot(qr[d4], tile_a[jj * HD4 + d4]); }
                s = s * at.scale + b.y;
                sc[jj] = s;
                let vis = b.x != 0.0;
                tmax = select(tmax, select(s, max(tmax, s), ok != 0u), vis);
                ok = ok | select(0u, 1u << jj, vis);
            }
            // A tile this row sees none of leaves its state as it is (corr 1).
            let any = ok != 0u;
            let mnew = select(m, select(tmax, max(m, tmax), seen), any);
            let corr = select(1.0, select(0.0, exp(m - mnew), seen), any);
            lsum = lsum * corr;
            for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) { acc[d4] = acc[d4] * corr; }
            for (var jj = 0u; jj < n; jj = jj + 1u) {
                let p = select(0.0, exp(sc[jj] - mnew), (ok & (1u << jj)) != 0u);
                lsum = lsum + p;
                let pz = p * at_keep(row, j0 + jj);
                for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) { acc[d4] = acc[d4] + pz * tile_b[jj * HV4 + d4]; }
            }
            m = mnew;
            seen = seen || any;
        }
    }
    if (!live) { return; }
    var inv = 0.0;
    if (seen) {
        inv = 1.0 / lsum;
        y1[row] = m + log(lsum);
    } else {
        y1[row] = at_pos_inf();
    }
    for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
        let val = acc[d4] * inv;
        for (var c = 0u; c < 4u; c = c + 1u) {
            let d = d4 * 4u + c;
            if (d < at.ev) { y0[at_orow(bh, i) + d] = val[c]; }
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

@compute @workgroup_size(128)
fn attention_dq_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) t: u32) {
    let blk = row_id(wid, nwg);
    let valid = blk < at.bh * at.blocks;
    let bh = blk / at.blocks;
    let i0 = (blk % at.blocks) * ROWS;
    let i = i0 + t;
    let live = valid && i < at.l;
    let row = bh * at.l + i;
    var qr: array<vec4<f32>, 32>;
    var gr: array<vec4<f32>, 32>;
    var dq: array<vec4<f32>, 32>;
    for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
        qr[d4] = vec4<f32>(0.0);
        dq[d4] = vec4<f32>(0.0);
        if (live) { qr[d4] = at_q4(at_qrow(bh, i), d4, at.e); }
    }
    for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
        gr[d4] = vec4<f32>(0.0);
        if (live) { gr[d4] = at_do4(at_orow(bh, i), d4, at.ev); }
    }
    var lse = 0.0;
    var delta = 0.0;
    if (live) {
        lse = at_stats[2u * row];
        delta = at_stats[2u * row + 1u];
    }
    var kend = at.s;
    if (at.causal != 0u) { kend = min(at.s, i0 + ROWS); }
    for (var j0 = 0u; j0 < kend; j0 = j0 + KT) {
        at_load_kv(t, valid, bh, j0);
        let n = min(KT, kend - j0);
        // Uniform control flow around the loops, as in attention_fwd.
        if (at_plain(n, j0, i0)) {
            for (var jj = 0u; jj < KT; jj = jj + 1u) {
                var s = 0.0;
                for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { s = s + dot(qr[d4], tile_a[jj * HD4 + d4]); }
                let p = exp(s * at.scale - lse);
                var dp = 0.0;
                for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) { dp = dp + dot(gr[d4], tile_b[jj * HV4 + d4]); }
                let ds = p * (dp * at_keep(row, j0 + jj) - delta);
                for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { dq[d4] = dq[d4] + ds * tile_a[jj * HD4 + d4]; }
            }
        } else {
            for (var jj = 0u; jj < n; jj = jj + 1u) {
                let b = at_bias(bh, i, j0 + jj);
                var s = 0.0;
                for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { s = s + dot(qr[d4], tile_a[jj * HD4 + d4]); }
                let p = select(0.0, exp(s * at.scale + b.y - lse), b.x != 0.0);
                var dp = 0.0;
                for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) { dp = dp + dot(gr[d4], tile_b[jj * HV4 + d4]); }
                let ds = p * (dp * at_keep(row, j0 + jj) - delta);
                for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { dq[d4] = dq[d4] + ds * tile_a[jj * HD4 + d4]; }
            }
        }
    }
    if (!live) { return; }
    for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
        let val = dq[d4] * at.scale;
        for (var c = 0u; c < 4u; c = c + 1u) {
            let d = d4 * 4u + c;
            if (d < at.e) { y0[at_qrow(bh, i) + d] = val[c]; }
        }
    }
}

@compute @workgroup_size(128)
fn attention_dkv_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) t: u32) {
    let blk = row_id(wid, nwg);
    let valid = blk < at.bh * at.blocks;
    let bh = blk / at.blocks;
    let j0 = (blk % at.blocks) * ROWS;
    let j = j0 + t;
    let live = valid && j < at.s;
    var kr: array<vec4<f32>, 32>;
    var vr: array<vec4<f32>, 32>;
    var dk: array<vec4<f32>, 32>;
    var dv: array<vec4<f32>, 32>;
    for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
        kr[d4] = vec4<f32>(0.0);
        dk[d4] = vec4<f32>(0.0);
        if (live) { kr[d4] = at_k4(at_krow(bh, j), d4, at.e); }
    }
    for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
        vr[d4] = vec4<f32>(0.0);
        dv[d4] = vec4<f32>(0.0);
        if (live) { vr[d4] = at_v4(at_vrow(bh, j), d4, at.ev); }
    }
    // Causal: queries before this block's first key see none of its keys.
    var istart = 0u;
    if (at.causal != 0u) { istart = (j0 / KT) * KT; }
    for (var i0 = istart; i0 < at.l; i0 = i0 + KT) {
        at_load_qdo(t, valid, bh, i0);
        let n = min(KT, at.l - i0);
        // Plain: every query of the tile sees every key of this block (the tile's first
        // query at or after the block's last key when causal).
        let plain = at.mask_kind == 0u && n == KT && (at.causal == 0u || j0 + ROWS <= i0 + 1u);
        // Uniform control flow around the loops, as in attention_fwd.
        if (plain) {
            for (var ii = 0u; ii < KT; ii = ii + 1u) {
                let row = bh * at.l + i0 + ii;
                var s = 0.0;
                for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { s = s + dot(kr[d4], tile_a[ii * HD4 + d4]); }
                let p = exp(s * at.scale - at_stats[2u * row]);
                let z = at_keep(row, j);
                var dp = 0.0;
                for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
                    let g = tile_b[ii * HV4 + d4];
                    dp = dp + dot(g, vr[d4]);
                    dv[d4] = dv[d4] + (p * z) * g;
                }
                let ds = p * (dp * z - at_stats[2u * row + 1u]);
                for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { dk[d4] = dk[d4] + ds * tile_a[ii * HD4 + d4]; }
            }
        } else {
            for (var ii = 0u; ii < n; ii = ii + 1u) {
                let i = i0 + ii;
                let b = at_bias(bh, i, j);
                let row = bh * at.l + i;
                var s = 0.0;
                for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { s = s + dot(kr[d4], tile_a[ii * HD4 + d4]); }
                let p = select(0.0, exp(s * at.scale + b.y - at_stats[2u * row]), b.x != 0.0);
                let z = at_keep(row, j);
                var dp = 0.0;
                for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
                    let g = tile_b[ii * HV4 + d4];
                    dp = dp + dot(g, vr[d4]);
                    dv[d4] = dv[d4] + (p * z) * g;
                }
                let ds = p * (dp * z - at_stats[2u * row + 1u]);
                for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) { dk[d4] = dk[d4] + ds * tile_a[ii * HD4 + d4]; }
            }
        }
    }
    if (!live) { return; }
    for (var d4 = 0u; d4 < HD4; d4 = d4 + 1u) {
        let val = dk[d4] * at.scale;
        for (var c = 0u; c < 4u; c = c + 1u) {
            let d = d4 * 4u + c;
            if (d < at.e) { y0[at_krow(bh, j) + d] = val[c]; }
        }
    }
    for (var d4 = 0u; d4 < HV4; d4 = d4 + 1u) {
        for (var c = 0u; c < 4u; c = c + 1u) {
            let d = d4 * 4u + c;
            if (d >= at.ev) { continue; }
            if (at.dv_in_dk != 0u) {
                y0[at_vrow(bh, j) + d] = dv[d4][c];
            } else {
                y1[at_vrow(bh, j) + d] = dv[d4][c];
            }
        }
    }
}
