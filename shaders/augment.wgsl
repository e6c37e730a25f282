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
    if (i >= pu(0) * pu(1) * pu(4) * pu(5)) { return; }
    let x = i % pu(5);
    let y = (i / pu(5)) % pu(4);
    let c = (i / (pu(5) * pu(4))) % pu(1);
    let n = i / (pu(5) * pu(4) * pu(1));
    let oy = xi[n * 4u];
    let ox = xi[n * 4u + 1u];
    let xx = select(x, pu(5) - 1u - x, xi[n * 4u + 2u] == 1u);
    let yy = select(y, pu(4) - 1u - y, xi[n * 4u + 3u] == 1u);
    let iy = i32(yy + oy) - i32(pu(6));
    let ix = i32(xx + ox) - i32(pu(6));
    var v = 0.0;
    if (iy >= 0 && ix >= 0 && u32(iy) < pu(2) && u32(ix) < pu(3)) {
        v = x0[((n * pu(1) + c) * pu(2) + u32(iy)) * pu(3) + u32(ix)];
    }
    y0[i] = v;
}
