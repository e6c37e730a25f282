// Prepended to every shader file. Binding 0 is this dispatch's parameter block (a
// 256-byte window of the parameter arena, bound with a dynamic offset), a uniform
// buffer: each kernel reads it as its parameter struct, declared with the file's
// structs (generated from their Rust definitions, src/backend/gpu/params.rs; a uniform
// read is a scalar load where a storage read may be a load per SIMD lane, as on
// lavapipe). The other bindings are fixed slots so that every kernel's layout follows
// from the slots it uses: 1-3 read-only f32 inputs, 4 a read-only u32 input, 5-7 f32
// outputs, 8 a u32 output, 9-11 read-only vec4<f32> views of the three inputs (aligned
// vector loads; element i of such an input is x0v[i >> 2u][i & 3u]). Generated kernels
// bind their own from 12 on.
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> x1: array<f32>;
@group(0) @binding(3) var<storage, read> x2: array<f32>;
@group(0) @binding(4) var<storage, read> xi: array<u32>;
@group(0) @binding(5) var<storage, read_write> y0: array<f32>;
@group(0) @binding(6) var<storage, read_write> y1: array<f32>;
@group(0) @binding(7) var<storage, read_write> y2: array<f32>;
@group(0) @binding(8) var<storage, read_write> yi: array<u32>;
@group(0) @binding(9) var<storage, read> x0v: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> x1v: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read> x2v: array<vec4<f32>>;

// Threads per workgroup of the one-dimensional elementwise kernels.
const WG: u32 = 256u;

// Flat thread index of a 1-D launch that may be split over two grid dimensions
// (a grid dimension holds at most 65535 workgroups).
fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Flat workgroup index of a launch with one workgroup per row.
fn row_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// A quiet NaN. Through a `var`: a constant expression that evaluates to NaN is a
// shader-creation error in WGSL (Chrome's Tint enforces it; naga does not).
fn nan_f() -> f32 {
    var bits = 0x7fc00000u;
    return bitcast<f32>(bits);
}

// +infinity, from a variable's bits for the same reason: a constant infinity is a
// shader-creation error in Tint ("value inf cannot be represented as 'f32'").
fn inf_f() -> f32 {
    var bits = 0x7f800000u;
    return bitcast<f32>(bits);
}

// True for NaN, from the bits: `x != x` may be folded away by a compiler that assumes
// no NaNs, and min/max/clamp with a NaN operand are implementation-defined in WGSL, so
// every NaN-propagating activation below selects explicitly.
fn is_nan_f(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn sigmoid_f(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return select(e / (1.0 + e), x, is_nan_f(x));
}

// max(x, 0), NaN kept (PyTorch's relu; WGSL's max may return either operand).
fn relu_f(x: f32) -> f32 {
    return select(x, 0.0, x < 0.0);
}

// tanh with its argument clamped (some drivers build tanh from exp and overflow past
// |x| ~ 44; tanh(15) is 1 in f32), NaN kept (clamp may turn it into either bound). Below
// |x| = 1/16 an odd polynomial (x - x^3/3 + 2x^5/15 - 17x^7/315, next term under 1e-10
// relative): WGSL bounds the builtin's error only absolutely, and a driver that computes
// (e^2x - 1) / (e^2x + 1) loses every digit near 0 (lavapipe: 1% off at x = 6e-6).
fn tanh_f32(x: f32) -> f32 {
    let x2 = x * x;
    let small = x * (1.0 + x2 * (-0.33333333 + x2 * (0.13333333 + x2 * -0.053968254)));
    let big = select(tanh(clamp(x, -15.0, 15.0)), x, is_nan_f(x));
    return select(big, small, abs(x) < 0.0625);
}

// ln(1 + x) for x >= -0.5, accurate to a few ulp relative near 0. WGSL has no log1p and
// its log carries only an absolute error bound near 1 (2^-21), so Kahan's
// `log(1 + x) * x / ((1 + x) - 1)` is not enough on hardware: for |x| <= 0.4142 this uses
// 2 atanh(s), s = x / (2 + x), as an odd series in s (|s| <= 0.1716, so s^14 / 15 is
// below 2^-24 relative), and log(1 + x) above, where the result is at least 0.34.
fn log1p_f(x: f32) -> f32 {
    if (abs(x) > 0.41421356) {
        return log(1.0 + x);
    }
    let s = x / (2.0 + x);
    let s2 = s * s;
    let poly = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0
        + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0))))));
    return 2.0 * s * poly;
}

// PyTorch's softplus of z = beta x before the division by beta: max(z, 0) +
// log1p(e^-|z|), exact to a few ulp for every z (no overflow, no rounding to 0 while the
// result is a normal f32). NaN gives NaN.
fn softplus_z(z: f32) -> f32 {
    return select(relu_f(z) + log1p_f(exp(-abs(z))), z, is_nan_f(z));
}

// x^e as Rust's powf and PyTorch's pow: an integer e up to 2^24 in magnitude is
// multiplied out by squaring (exact signs for negative x, 0^0 = NaN^0 = 1, 0^-1 = inf);
// otherwise |x|^e through pow, which WGSL defines only for a positive base, so 0 is
// handled here and a negative x gives NaN unless e is an (even) integer.
fn pow_e(x: f32, e: f32) -> f32 {
    let m = abs(e);
    if (e == round(e) && m <= 16777216.0) {
        var n = u32(m);
        var base = x;
        var r = 1.0;
        for (var k = 0u; k < 25u && n != 0u; k = k + 1u) {
            if ((n & 1u) == 1u) { r = r * base; }
            n = n >> 1u;
            if (n != 0u) { base = base * base; }
        }
        return select(r, 1.0 / r, e < 0.0);
    }
    if (is_nan_f(x) || is_nan_f(e)) { return nan_f(); }
    if (x == 0.0) { return select(0.0, inf_f(), e < 0.0); }
    if (x < 0.0 && e != round(e)) { return nan_f(); }
    return pow(abs(x), e);
}

// erfc(x), relative error below 1.2e-7 for every x (Numerical Recipes' Chebyshev fit,
// `erfcc`): no cancellation in the tail, where GELU of a negative input needs it.
fn erfc_f(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(-z * z + poly);
    return select(2.0 - r, r, x >= 0.0);
}

// Philox4x32-10 (Salmon et al., 2011), the counter-based generator of every random draw
// (`shaders/random.wgsl`, attention's dropout) and of the CPU backend: ten rounds on
// counter `c` with key `k`. `mulhilo` is the 32 x 32 -> 64-bit product as (hi, lo),
// from 16-bit halves (WGSL has no 64-bit integers).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox_rounds(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r = r + 1u) {
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}
