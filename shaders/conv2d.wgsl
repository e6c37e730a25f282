// Convolution building blocks (NCHW). A convolution is im2col + the tiled matmul; its
// input gradient is col2im, the exact adjoint of im2col, and a transposed convolution
// runs the pair the other way round. So im2col_fwd is col2im's backward and col2im_fwd
// is im2col's backward.
// Geometry: P[0] = N, P[1] = C, P[2] = H, P[3] = W, P[4] = Ho, P[5] = Wo, P[6] = kh,
// P[7] = kw, P[8] = sh, P[9] = sw, P[10] = ph, P[11] = pw, P[12] = dh, P[13] = dw.
// Columns are laid out [N, C * kh * kw, Ho * Wo] (row c * kh * kw + ki * kw + kj, column
// p = oh * Wo + ow), one matrix per image, so the batched matmul's result is NCHW.

// Both kernels run on a grid of (pixel groups of 256, rows, images), so a thread finds
// its row and image from its workgroup (no division per element): launches cover at most
// 65535 of each, starting at pixel group P[16], row P[14] and image P[15].

// cols[n, c k, p] = x[n, c, oh sh + ki dh - ph, ow sw + kj dw - pw], 0 outside.
// Grid: (ceil(Ho Wo / 256), C kh kw, N).
@compute @workgroup_size(256)
fn im2col_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let pp = pu(4) * pu(5);
    let p = (wid.x + pu(16)) * 256u + t;
    if (p >= pp) { return; }
    let kk = pu(6) * pu(7);
    let row = wid.y + pu(14);
    let n = wid.z + pu(15);
    let c = row / kk;
    let k = row % kk;
    let ki = k / pu(7);
    let kj = k % pu(7);
    let ih = i32((p / pu(5)) * pu(8) + ki * pu(12)) - i32(pu(10));
    let iw = i32((p % pu(5)) * pu(9) + kj * pu(13)) - i32(pu(11));
    var v = 0.0;
    if (ih >= 0 && iw >= 0 && u32(ih) < pu(2) && u32(iw) < pu(3)) {
        v = x0[((n * pu(1) + c) * pu(2) + u32(ih)) * pu(3) + u32(iw)];
    }
    y0[(n * pu(1) * kk + row) * pp + p] = v;
}

// The adjoint: x[n, c, ih, iw] = sum of the column entries that im2col copied it to
// (P[17] = 1: the columns are stored transposed, [N, Ho Wo, C kh kw]).
// One thread per image element, a fixed loop over the kernel taps: deterministic.
// Grid: (ceil(H W / 256), C, N).
@compute @workgroup_size(256)
fn col2im_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let hw = pu(2) * pu(3);
    let px = (wid.x + pu(16)) * 256u + t;
    if (px >= hw) { return; }
    let c = wid.y + pu(14);
    let n = wid.z + pu(15);
    let iw = px % pu(3);
    let ih = px / pu(3);
    let kk = pu(6) * pu(7);
    let pp = pu(4) * pu(5);
    let rows = (n * pu(1) + c) * kk;
    var acc = 0.0;
    for (var ki = 0u; ki < pu(6); ki = ki + 1u) {
        let oh_num = i32(ih + pu(10)) - i32(ki * pu(12));
        if (oh_num < 0 || u32(oh_num) % pu(8) != 0u) { continue; }
        let oh = u32(oh_num) / pu(8);
        if (oh >= pu(4)) { continue; }
        for (var kj = 0u; kj < pu(7); kj = kj + 1u) {
            let ow_num = i32(iw + pu(11)) - i32(kj * pu(13));
            if (ow_num < 0 || u32(ow_num) % pu(9) != 0u) { continue; }
            let ow = u32(ow_num) / pu(9);
            if (ow >= pu(5)) { continue; }
            let row = ki * pu(7) + kj;
            if (pu(17) == 1u) {
                // Columns stored transposed, [N, Ho Wo, C kh kw].
                acc = acc + x0[(n * pp + oh * pu(5) + ow) * pu(1) * kk + c * kk + row];
            } else {
                acc = acc + x0[(rows + row) * pp + oh * pu(5) + ow];
            }
        }
    }
    y0[(n * pu(1) + c) * hw + px] = acc;
}
