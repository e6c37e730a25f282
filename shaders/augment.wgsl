// Data augmentation over a whole batch of NCHW images. The per-image random choices are
// drawn on the host from the seeded Philox generator (a few numbers per image) and
// passed in xi, so the CPU and the GPU make exactly the same images.

// Crop (after zero padding) then flip. xi holds 4 words per image: crop row offset,
// crop column offset, horizontal flip (0/1), vertical flip (0/1). P[0] = N, P[1] = C,
// P[2] = H, P[3] = W (input), P[4] = Ho, P[5] = Wo (output), P[6] = padding.
// out[n, c, y, x] = in[n, c, y' + oy - pad, x' + ox - pad] with y', x' flipped if asked;
// zero where that falls in the padding.
@compute @workgroup_size(256)
fn augment_geometric_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= P[0] * P[1] * P[4] * P[5]) { return; }
    let x = i % P[5];
    let y = (i / P[5]) % P[4];
    let c = (i / (P[5] * P[4])) % P[1];
    let n = i / (P[5] * P[4] * P[1]);
    let oy = xi[n * 4u];
    let ox = xi[n * 4u + 1u];
    let xx = select(x, P[5] - 1u - x, xi[n * 4u + 2u] == 1u);
    let yy = select(y, P[4] - 1u - y, xi[n * 4u + 3u] == 1u);
    let iy = i32(yy + oy) - i32(P[6]);
    let ix = i32(xx + ox) - i32(P[6]);
    var v = 0.0;
    if (iy >= 0 && ix >= 0 && u32(iy) < P[2] && u32(ix) < P[3]) {
        v = x0[((n * P[1] + c) * P[2] + u32(iy)) * P[3] + u32(ix)];
    }
    y0[i] = v;
}
