// Convolution building blocks (NCHW). A convolution is im2col + the tiled matmul; its
// input gradient is col2im, the exact adjoint of im2col, and a transposed convolution
// runs the pair the other way round. So im2col_fwd is col2im's backward and col2im_fwd
// is im2col's backward.
// Geometry: `cv` (ConvParams, src/ops/conv2d/im2col.rs): N, C, H, W, Ho, Wo, the kernel
// kh x kw, stride sh, sw, padding ph, pw and dilation dh, dw.
// Columns are laid out [N, C * kh * kw, Ho * Wo] (row c * kh * kw + ki * kw + kj, column
// p = oh * Wo + ow), one matrix per image, so the batched matmul's result is NCHW.

// Both kernels run on a grid of (pixel groups of 256, rows, images), so a thread finds
// its row and image from its workgroup (no division per element): launches cover at most
// 65535 of each, starting at pixel group cv.group0, row cv.row0 and image cv.image0.

// cols[n, c k, p] = x[n, c, oh sh + ki dh - ph, ow sw + kj dw - pw], 0 outside.
// Grid: (ceil(Ho Wo / 256), C kh kw, N).
@compute @workgroup_size(256)
fn im2col_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let pp = cv.ho * cv.wo;
    let p = (wid.x + cv.group0) * 256u + t;
    if (p >= pp) { return; }
    let kk = cv.kh * cv.kw;
    let row = wid.y + cv.row0;
    let n = wid.z + cv.image0;
    let c = row / kk;
    let k = row % kk;
    let ki = k / cv.kw;
    let kj = k % cv.kw;
    let ih = i32((p / cv.wo) * cv.sh + ki * cv.dh) - i32(cv.ph);
    let iw = i32((p % cv.wo) * cv.sw + kj * cv.dw) - i32(cv.pw);
    var v = 0.0;
    if (ih >= 0 && iw >= 0 && u32(ih) < cv.h && u32(iw) < cv.w) {
        v = x0[((n * cv.c + c) * cv.h + u32(ih)) * cv.w + u32(iw)];
    }
    y0[(n * cv.c * kk + row) * pp + p] = v;
}

// The adjoint: x[n, c, ih, iw] = sum of the column entries that im2col copied it to
// (cv.transposed = 1: the columns are stored transposed, [N, Ho Wo, C kh kw]).
// One thread per image element, a fixed loop over the kernel taps: deterministic.
// Grid: (ceil(H W / 256), C, N).
@compute @workgroup_size(256)
fn col2im_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let hw = cv.h * cv.w;
    let px = (wid.x + cv.group0) * 256u + t;
    if (px >= hw) { return; }
    let c = wid.y + cv.row0;
    let n = wid.z + cv.image0;
    let iw = px % cv.w;
    let ih = px / cv.w;
    let kk = cv.kh * cv.kw;
    let pp = cv.ho * cv.wo;
    let rows = (n * cv.c + c) * kk;
    var acc = 0.0;
    for (var ki = 0u; ki < cv.kh; ki = ki + 1u) {
        let oh_num = i32(ih + cv.ph) - i32(ki * cv.dh);
        if (oh_num < 0 || u32(oh_num) % cv.sh != 0u) { continue; }
        let oh = u32(oh_num) / cv.sh;
        if (oh >= cv.ho) { continue; }
        for (var kj = 0u; kj < cv.kw; kj = kj + 1u) {
            let ow_num = i32(iw + cv.pw) - i32(kj * cv.dw);
            if (ow_num < 0 || u32(ow_num) % cv.sw != 0u) { continue; }
            let ow = u32(ow_num) / cv.sw;
            if (ow >= cv.wo) { continue; }
            let row = ki * cv.kw + kj;
            if (cv.transposed == 1u) {
                // Columns stored transposed, [N, Ho Wo, C kh kw].
                acc = acc + x0[(n * pp + oh * cv.wo + ow) * cv.c * kk + c * kk + row];
            } else {
                acc = acc + x0[(rows + row) * pp + oh * cv.wo + ow];
            }
        }
    }
    y0[(n * cv.c + c) * hw + px] = acc;
}
