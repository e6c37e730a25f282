// Prepended to every shader file. Binding 0 is this dispatch's parameter block (a
// 256-byte window of the parameter arena, bound with a dynamic offset), a uniform
// buffer: its 64 words are read with pu(i) (a uniform read is a scalar load where a
// storage read may be a load per SIMD lane, as on lavapipe). The other
// bindings are fixed slots so that every kernel's layout follows from the slots it uses:
// 1-3 read-only f32 inputs, 4 a read-only u32 input, 5-7 f32 outputs, 8 a u32 output,
// 9-11 read-only vec4<f32> views of the three inputs (aligned vector loads; element i of
// such an input is x0v[i >> 2u][i & 3u]). Generated kernels bind their own from 12 on.
@group(0) @binding(0) var<uniform> P: array<vec4<u32>, 16>;
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

// Parameter word `i`.
fn pu(i: u32) -> u32 {
    return P[i >> 2u][i & 3u];
}

// Parameter word `i` read as f32.
fn pf(i: u32) -> f32 {
    return bitcast<f32>(pu(i));
}

// Offset into a strided buffer of element `i` of a contiguous tensor whose shape is
// P[shape_at .. shape_at + rank], with the buffer's strides at P[stride_at ..].
fn strided(i: u32, rank: u32, shape_at: u32, stride_at: u32) -> u32 {
    var rem = i;
    var off = 0u;
    for (var d = i32(rank) - 1; d >= 0; d = d - 1) {
        let s = pu(shape_at + u32(d));
        off = off + (rem % s) * pu(stride_at + u32(d));
        rem = rem / s;
    }
    return off;
}

fn sigmoid_f(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn nan_f() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}
