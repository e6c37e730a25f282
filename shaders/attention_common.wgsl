// What the fused attention kernels share (`shaders/attention.wgsl`, the tiled kernels,
// and the row kernels generated in src/backend/gpu/attention_rows.rs): the extra
// bindings, row addressing at each operand's layout, the mask and dropout tests, and
// checked row loads. Parameters: `at` (AttentionParams, src/backend/gpu/attention.rs).

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

fn at_neg_inf() -> f32 {
    var bits = 0xff800000u;
    return bitcast<f32>(bits);
}

// Elements 4 d4 .. 4 d4 + 3 of a row of `len` floats starting at `base` of one input,
// zero past the row's end, read as checked scalars (one function per binding: a kernel
// binds only what it reads).
fn at_q4s(base: u32, d4: u32, len: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        let i = base + d4 * 4u + c;
        if (d4 * 4u + c < len) { r[c] = x0v[i >> 2u][i & 3u]; }
    }
    return r;
}

fn at_k4s(base: u32, d4: u32, len: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        let i = base + d4 * 4u + c;
        if (d4 * 4u + c < len) { r[c] = x1v[i >> 2u][i & 3u]; }
    }
    return r;
}

fn at_v4s(base: u32, d4: u32, len: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        let i = base + d4 * 4u + c;
        if (d4 * 4u + c < len) { r[c] = x2v[i >> 2u][i & 3u]; }
    }
    return r;
}

fn at_do4s(base: u32, d4: u32, len: u32) -> vec4<f32> {
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
