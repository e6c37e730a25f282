// Half-precision conversions (src/backend/half.rs): f32 to f16 or bf16 and back, with
// integer operations only, so every adapter gives PyTorch's bits: round to nearest, ties
// to even, past the largest finite value to infinity, subnormals kept, NaN kept quiet.
// (WGSL's pack2x16float leaves overflow undefined and may flush subnormals.) The f32
// side is bound as u32 words: a float load could flush a subnormal before the bits are
// seen. Half elements are packed two to a word: element i in the low 16 bits of word
// i / 2 when i is even, the high 16 bits when odd (zero past an odd count). Parameters:
// `hp` (HalfParams, src/backend/gpu/half.rs).

// f32 bits to f16 bits.
fn hf_f16_from_f32(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let e = (b >> 23u) & 0xffu;
    let m = b & 0x7fffffu;
    if (e == 0xffu) {
        // Infinity, or NaN with its payload's top bits and the quiet bit.
        return select(sign | 0x7c00u, sign | 0x7e00u | (m >> 13u), m != 0u);
    }
    let exp = i32(e) - 127;
    if (exp > 15) { return sign | 0x7c00u; }
    if (exp >= -14) {
        // A normal f16; a carry out of the mantissa bumps the exponent (to infinity
        // past 65504).
        let hm = m >> 13u;
        let rest = m & 0x1fffu;
        var h = sign | (u32(exp + 15) << 10u) | hm;
        if (rest > 0x1000u || (rest == 0x1000u && (hm & 1u) == 1u)) { h = h + 1u; }
        return h;
    }
    if (exp < -25) { return sign; }
    // A subnormal f16 (or a carry into the smallest normal one): the value over 2^-24.
    let full = m | 0x800000u;
    let shift = u32(-exp - 1);
    let hm = full >> shift;
    let rest = full & ((1u << shift) - 1u);
    let halfway = 1u << (shift - 1u);
    var h = sign | hm;
    if (rest > halfway || (rest == halfway && (hm & 1u) == 1u)) { h = h + 1u; }
    return h;
}

// f32 bits to bf16 bits.
fn hf_bf16_from_f32(b: u32) -> u32 {
    if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

// f16 bits to the f32 bits of the same value (exact).
fn hf_f32_from_f16(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0x1fu) { return sign | 0x7f800000u | (m << 13u); }
    if (e == 0u) {
        if (m == 0u) { return sign; }
        // A subnormal: m 2^-24 = 2^(p - 24) (m / 2^p), p its leading bit.
        let p = firstLeadingBit(m);
        return sign | ((p + 103u) << 23u) | ((m << (23u - p)) & 0x7fffffu);
    }
    return sign | ((e + 112u) << 23u) | (m << 13u);
}

fn hf_from_f32(b: u32) -> u32 {
    if (hp.bf16 != 0u) { return hf_bf16_from_f32(b); }
    return hf_f16_from_f32(b);
}

// f32 (as u32 words in xi) to packed half words in yi: one thread per output word.
@compute @workgroup_size(256)
fn half_pack_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = flat_id(gid, nwg);
    if (w >= (hp.n + 1u) / 2u) { return; }
    let lo = hf_from_f32(xi[2u * w]);
    var hi = 0u;
    if (2u * w + 1u < hp.n) { hi = hf_from_f32(xi[2u * w + 1u]); }
    yi[w] = lo | (hi << 16u);
}

// Packed half words in xi to f32 (as u32 words in yi): one thread per element.
@compute @workgroup_size(256)
fn half_unpack_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= hp.n) { return; }
    let h = (xi[i / 2u] >> (16u * (i & 1u))) & 0xffffu;
    if (hp.bf16 != 0u) {
        yi[i] = h << 16u;
    } else {
        yi[i] = hf_f32_from_f16(h);
    }
}
