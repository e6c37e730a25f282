// Counter-based random numbers: Philox4x32-10 (`philox_rounds` in the prelude), the same
// function as the CPU backend's `backend/random.rs`. Element i of a draw uses counter
// (i, 0, offset) and key seed.
// Parameters: `rnd` (RandomParams, src/ops/random.rs): n, the seed and the draw offset
// (low and high words), and the op's own: dropout's threshold and scale, noisy ReLU's sigma.

fn philox(i: u32) -> vec4<u32> {
    return philox_rounds(vec4<u32>(i, 0u, rnd.offset_lo, rnd.offset_hi), vec2<u32>(rnd.seed_lo, rnd.seed_hi));
}

fn uniform01(w: u32) -> f32 {
    return f32(w >> 8u) * (1.0 / 16777216.0);
}

// cos(2 pi t) for t in [0, 1), to about an ulp: WGSL only bounds cos's error by 2^-11
// absolute (Chrome's SwiftShader is that coarse), too loose to match the CPU's draws.
// The turn is reduced to [0, 1/8] by symmetry and a Taylor polynomial does the rest
// (its first omitted terms are below 2e-10).
fn cos_turn(t: f32) -> f32 {
    var r = abs(t - round(t));           // cos(2 pi r), r in [0, 1/2]
    var sign = 1.0;
    if (r > 0.25) { r = 0.5 - r; sign = -1.0; } // cos(pi - x) = -cos(x); r in [0, 1/4]
    var v: f32;
    if (r <= 0.125) {
        let x = 6.283185307179586 * r;
        let x2 = x * x;
        v = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0
            + x2 * (1.0 / 40320.0 + x2 * (-1.0 / 3628800.0)))));
    } else {
        let x = 6.283185307179586 * (0.25 - r); // cos(pi/2 - x) = sin(x)
        let x2 = x * x;
        v = x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0
            + x2 * (1.0 / 362880.0 + x2 * (-1.0 / 39916800.0))))));
    }
    return sign * v;
}

// A standard normal by Box-Muller from two words. ln(u1) near 1 goes through log1p_f
// (u1 - 1 is exact there): WGSL's log only bounds its error absolutely near 1.
fn normal01(w0: u32, w1: u32) -> f32 {
    let u1 = (f32(w0 >> 8u) + 1.0) * (1.0 / 16777216.0);
    let u2 = uniform01(w1);
    let ln_u1 = select(log(u1), log1p_f(u1 - 1.0), u1 >= 0.5);
    return sqrt(-2.0 * ln_u1) * cos_turn(u2);
}

@compute @workgroup_size(256)
fn uniform_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= rnd.n) { return; }
    y0[i] = uniform01(philox(i).x);
}

@compute @workgroup_size(256)
fn normal_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= rnd.n) { return; }
    let w = philox(i);
    y0[i] = normal01(w.x, w.y);
}

// Inverted dropout: keep where the top 24 bits of the first word are >= threshold
// (= ceil(p 2^24), an exact integer test on both backends); kept values are scaled by
// scale = 1 / (1 - p). y0 = output, y1 = the scaled mask saved for backward.
@compute @workgroup_size(256)
fn dropout_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= rnd.n) { return; }
    let keep = (philox(i).x >> 8u) >= rnd.threshold;
    let m = select(0.0, rnd.scale, keep);
    y1[i] = m;
    y0[i] = x0[i] * m;
}

// Noisy ReLU: y = max(x + sigma * eps, 0) with eps ~ N(0, 1); y1 = 1 where x + noise > 0.
@compute @workgroup_size(256)
fn noisy_relu_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= rnd.n) { return; }
    let w = philox(i);
    let z = x0[i] + rnd.sigma * normal01(w.x, w.y);
    let pos = z > 0.0;
    y0[i] = select(0.0, z, pos);
    y1[i] = select(0.0, 1.0, pos);
}
