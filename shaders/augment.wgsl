// Data augmentation over a whole batch of NCHW images. The per-image random choices are
// drawn on the host from the seeded Philox generator (a few numbers per image) and
// passed in xi, so the CPU and the GPU make exactly the same images.

// Crop (after zero padding) then flip. xi holds 4 words per image: crop row offset,
// crop column offset, horizontal flip (0/1), vertical flip (0/1). Parameters: `ag`
// (AugmentParams, src/ops/augment.rs): N, C, H, W (input), Ho, Wo (output), padding.
// out[n, c, y, x] = in[n, c, y' + oy - pad, x' + ox - pad] with y', x' flipped if asked;
// zero where that falls in the padding.
@compute @workgroup_size(256)
fn augment_geometric_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= ag.n * ag.c * ag.ho * ag.wo) { return; }
    let x = i % ag.wo;
    let y = (i / ag.wo) % ag.ho;
    let c = (i / (ag.wo * ag.ho)) % ag.c;
    let n = i / (ag.wo * ag.ho * ag.c);
    let oy = xi[n * 4u];
    let ox = xi[n * 4u + 1u];
    let xx = select(x, ag.wo - 1u - x, xi[n * 4u + 2u] == 1u);
    let yy = select(y, ag.ho - 1u - y, xi[n * 4u + 3u] == 1u);
    let iy = i32(yy + oy) - i32(ag.pad);
    let ix = i32(xx + ox) - i32(ag.pad);
    var v = 0.0;
    if (iy >= 0 && ix >= 0 && u32(iy) < ag.h && u32(ix) < ag.w) {
        v = x0[((n * ag.c + c) * ag.h + u32(iy)) * ag.w + u32(ix)];
    }
    y0[i] = v;
}
