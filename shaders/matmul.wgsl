// Batched matrix products C[b] = op(A)[b] x op(B)[b] with broadcasting over batch dims.
// A[m, k] is read at x0[a_base + m * P[16] + k * P[17]] and B[k, n] at
// x1[b_base + k * P[18] + n * P[19]], so a transposed operand costs nothing.
// P[0] = M, P[1] = N, P[2] = K, P[3] = batch rank, P[4..8] = batch shape,
// P[8..12] = A's batch strides, P[12..16] = B's batch strides (0 where broadcast),
// P[20] = the first batch of this launch (a grid dimension holds at most 65535 groups).

fn batch_base_a(b: u32) -> u32 { return strided(b, P[3], 4u, 8u); }
fn batch_base_b(b: u32) -> u32 { return strided(b, P[3], 4u, 12u); }

fn load_a(base: u32, m: u32, k: u32) -> f32 {
    if (m < P[0] && k < P[2]) { return x0[base + m * P[16] + k * P[17]]; }
    return 0.0;
}

fn load_b(base: u32, k: u32, n: u32) -> f32 {
    if (k < P[2] && n < P[1]) { return x1[base + k * P[18] + n * P[19]]; }
    return 0.0;
}

// Register-tiled kernel: a 16x16 workgroup computes a 64x64 tile of C, each thread a
// 4x4 block held in registers. Each step stages a 64x16 slice of A and a 16x64 slice
// of B in workgroup memory as vec4s, so the inner loop is two vec4 loads and four
// vec4 multiply-adds. Launch: (ceil(N / 64), ceil(M / 64), batches).
const TK: u32 = 16u;
var<workgroup> tile_a: array<vec4<f32>, 256>; // [k][m / 4]
var<workgroup> tile_b: array<vec4<f32>, 256>; // [k][n / 4]

@compute @workgroup_size(16, 16)
fn matmul_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) t: u32) {
    let m0 = wid.y * 64u;
    let n0 = wid.x * 64u;
    let batch = wid.z + P[20];
    let a_base = batch_base_a(batch);
    let b_base = batch_base_b(batch);
    var acc: array<vec4<f32>, 4>;
    // Loaders: A with k fastest across threads (rows are contiguous in k), B with n fastest.
    let a_q = t / TK;
    let a_k = t % TK;
    let b_k = t / 16u;
    let b_q = t % 16u;
    for (var k0 = 0u; k0 < P[2]; k0 = k0 + TK) {
        let am = m0 + a_q * 4u;
        let ak = k0 + a_k;
        tile_a[a_k * 16u + a_q] = vec4<f32>(load_a(a_base, am, ak), load_a(a_base, am + 1u, ak),
                                            load_a(a_base, am + 2u, ak), load_a(a_base, am + 3u, ak));
        let bk = k0 + b_k;
        let bn = n0 + b_q * 4u;
        tile_b[b_k * 16u + b_q] = vec4<f32>(load_b(b_base, bk, bn), load_b(b_base, bk, bn + 1u),
                                            load_b(b_base, bk, bn + 2u), load_b(b_base, bk, bn + 3u));
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let a = tile_a[kk * 16u + lid.y];
            let b = tile_b[kk * 16u + lid.x];
            acc[0] = acc[0] + a.x * b;
            acc[1] = acc[1] + a.y * b;
            acc[2] = acc[2] + a.z * b;
            acc[3] = acc[3] + a.w * b;
        }
        workgroupBarrier();
    }
    let c_base = batch * P[0] * P[1];
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + lid.y * 4u + i;
        if (m >= P[0]) { break; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n0 + lid.x * 4u + j;
            if (n < P[1]) { y0[c_base + m * P[1] + n] = acc[i][j]; }
        }
    }
}

// The simple kernel the tiled one must beat (kept for the benchmark): one output per
// thread, straight from global memory. Launch: (ceil(N / 16), ceil(M / 16), batches).
@compute @workgroup_size(16, 16)
fn matmul_naive_fwd(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = gid.y;
    let n = gid.x;
    if (m >= P[0] || n >= P[1]) { return; }
    let batch = gid.z + P[20];
    let a_base = batch_base_a(batch);
    let b_base = batch_base_b(batch);
    var acc = 0.0;
    for (var k = 0u; k < P[2]; k = k + 1u) {
        acc = acc + x0[a_base + m * P[16] + k * P[17]] * x1[b_base + k * P[18] + n * P[19]];
    }
    y0[batch * P[0] * P[1] + m * P[1] + n] = acc;
}
