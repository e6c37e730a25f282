// Batched matrix products C[b] = op(A)[b] x op(B)[b] with broadcasting over batch dims,
// in a family of kernels the host picks from by shape (src/ops/matmul/plan.rs).
// Parameters: `mm` (MatmulParams, src/ops/matmul/gpu.rs).
// A[m, k] is element a_base + m * mm.a_row + k * mm.a_col and B[k, n] is
// b_base + k * mm.b_row + n * mm.b_col, so transposed operands cost nothing; the tile
// loaders read whichever axis is contiguous with neighbouring threads (override
// constants A_KMAJOR, B_KMAJOR). The batch shape and A's and B's batch strides (0 where
// broadcast) give each batch's bases. mm.first_batch is the first batch of this launch
// (grid z holds at most 65535 (batch, split) pairs), mm.batches those of the whole
// product, mm.splits the splits of K and mm.k_chunk the K per split; mm.accumulate = 1
// adds to y0 instead of writing it, and mm.k_first is the first k of this launch.
// The fused prologue and epilogue are live when the override EPI is not 0; EPI's bits
// choose what is compiled in (so a plain product has none of it): 1 the epilogue, 2 the
// prologue (each element a of A, an output gradient, becomes the activation's backward
// ew_bwd(code, a, x2[index of a]), x2 the saved output or pre-activation laid out like
// A's buffer), 4 the row sums of A (a bias gradient: y1[m] = sum over k of A[m, k], from
// the threads of the first column tile), bits 8-15 the prologue's activation, bits 16-23
// the activation applied last (codes of the elementwise table, 0 the identity; its
// scalars are mm.act_a and mm.act_b). mm.flags: 1 add the bias x2 (per column n, or per
// row m with flag 2), 4 add the addend y1[mm.addend_off + out index], 8 write the value
// before the activation (after bias and addend) to y1[mm.addend_off + out index] too
// (the pre-activation a backward reads). mm.out_off is the offset of the output in y0,
// mm.a_off / mm.b_off those of A / B in their buffers. The bias, addend and activation
// apply once, where the last k of the product is added (a fused product has no splits;
// passes apply it on the last pass, and add to the row sums).
// Grid x and y hold the mm.tiles_x x mm.tiles_y output tiles (columns of tiles fastest)
// folded by the host's `ops::groups_rows` past 65535 workgroups: `tile_of` recovers a
// workgroup's tile from its flat index, and workgroups past the last tile return at once.
// Grid z counts (batch, split) pairs of this launch: z = local batch * splits + split.
// Split s covers k in [k_first + s k_chunk, min(K, k_first + (s + 1) k_chunk)) and writes
// its partial product to y0[(s * batches + batch) * M * N + m * N + n]; a reduction pass
// adds the splits up (no float atomics).

override EPI: u32 = 0u;

fn batch_base_a(b: u32) -> u32 { return mm_sa_offset(b) + select(0u, mm.a_off, EPI != 0u); }
fn batch_base_b(b: u32) -> u32 { return mm_sb_offset(b) + select(0u, mm.b_off, EPI != 0u); }

// The activations are the elementwise table's rows (`ew_fwd`, `ew_bwd` and the `OP_*`
// codes, generated from src/backend/elementwise/mod.rs and placed before this file), with the
// row's scalars mm.act_a and mm.act_b.

fn has_pro() -> bool { return (EPI & 2u) != 0u; }
fn has_rowsum() -> bool { return (EPI & 4u) != 0u; }

// Element i of A's buffer, through the prologue.
fn a_pro(i: u32, v: f32) -> f32 {
    if (has_pro()) { return ew_bwd((EPI >> 8u) & 255u, v, x2[i], mm.act_a, mm.act_b); }
    return v;
}

// Writes (or with mm.accumulate adds) the row sum of A at row m of job j: one [M] vector per
// (split, batch) pair when the product has several (summed after, with the partials).
fn store_rowsum(j: Job, m: u32, v: f32) {
    let at = j.c_base / max(mm.n, 1u) + m;
    if (mm.accumulate == 1u) { y1[at] = y1[at] + v; } else { y1[at] = v; }
}

// The batch, split and k range of a workgroup, and where its output goes.
struct Job {
    batch: u32,
    k_lo: u32,
    k_hi: u32,
    c_base: u32,
}

// The (column, row) output tile of a workgroup; a row past mm.tiles_y is a spare workgroup
// of the folded grid.
fn tile_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let t = row_id(wid, nwg);
    return vec2<u32>(t % mm.tiles_x, t / mm.tiles_x);
}

fn job_of(z: u32) -> Job {
    var j: Job;
    let split = z % mm.splits;
    j.batch = mm.first_batch + z / mm.splits;
    j.k_lo = mm.k_first + split * mm.k_chunk;
    j.k_hi = min(mm.k, j.k_lo + mm.k_chunk);
    j.c_base = (split * mm.batches + j.batch) * mm.m * mm.n;
    return j;
}

fn store_c(at: u32, v: f32) {
    if (mm.accumulate == 1u) {
        y0[at] = y0[at] + v;
    } else {
        y0[at] = v;
    }
}

// What storing an output needs from the parameter block, read once per thread (on a
// software adapter every parameter read is a load instruction per element otherwise).
struct Store {
    base: u32,        // index of (0, 0) of this job's output, past the output offset
    n: u32,           // row length
    add: bool,        // add to y0 instead of writing it
    last: bool,       // this job adds the last k of an unsplit product: apply the epilogue
    flags: u32,       // mm.flags
    addend: u32,      // index of the addend's (0, 0) in y1 (or of the pre-activation's)
    act_a: f32,       // the epilogue activation's scalars, mm.act_a and mm.act_b
    act_b: f32,
}

fn store_params(j: Job) -> Store {
    var s: Store;
    s.n = mm.n;
    s.add = mm.accumulate == 1u;
    s.base = j.c_base;
    s.last = false;
    s.flags = 0u;
    s.addend = 0u;
    s.act_a = 0.0;
    s.act_b = 0.0;
    if (EPI != 0u) {
        s.act_a = mm.act_a;
        s.act_b = mm.act_b;
        s.base = mm.out_off + j.c_base;
        s.last = j.k_hi == mm.k && mm.splits == 1u;
        s.flags = mm.flags;
        s.addend = mm.addend_off + j.c_base;
    }
    return s;
}

// Stores the product's value v at row m, column n, through the epilogue.
fn store_out(s: Store, m: u32, n: u32, v: f32) {
    let rel = m * s.n + n;
    let at = s.base + rel;
    var r = v;
    if (s.add) { r = y0[at] + r; }
    if (EPI != 0u && s.last) {
        if ((s.flags & 4u) != 0u) { r = r + y1[s.addend + rel]; }
        if ((s.flags & 1u) != 0u) { r = r + x2[select(n, m, (s.flags & 2u) != 0u)]; }
        if ((s.flags & 8u) != 0u) { y1[s.addend + rel] = r; }
        r = ew_fwd((EPI >> 16u) & 255u, r, s.act_a, s.act_b);
    }
    y0[at] = r;
}

// ---- Register-tiled kernel --------------------------------------------------------------
// A 16x16 workgroup computes a BM x BN tile of C (BM = BN = 16 TT), each thread TT x TT
// outputs held in registers: TT = 8 (128 x 128 tiles) for big products, TT = 4 (64 x 64)
// for medium ones. Each step stages a BM x BK slice of A and a BK x BN slice of B in
// workgroup memory (BK = 1024 / BM, so each thread loads one vec4 of each), double
// buffered: the next slice's global loads are issued before the current slice's
// arithmetic and stored after it, one barrier per step. VEC_A / VEC_B read aligned vec4s
// through the x0v / x1v views when the operand's contiguous axis is M (A) or N (B) and
// allows it. A thread's rows are
// r * 64 + ty * 4 + i and its columns h * 64 + tx * 4 + j, so the vec4 reads of workgroup
// memory by neighbouring threads are neighbouring (no bank conflicts).
// Launch: the ceil(N / BN) x ceil(M / BM) tiles folded (see `tile_of`), batches * splits.

override TT: u32 = 8u;
override A_KMAJOR: bool = true;
override B_KMAJOR: bool = false;
override VEC_A: bool = false;
override VEC_B: bool = false;

const TILE_VEC4S: u32 = 256u;                      // vec4s in one staged slice
var<workgroup> tile_a: array<vec4<f32>, 512>;      // [buffer][k][m / 4]
var<workgroup> tile_b: array<vec4<f32>, 512>;      // [buffer][k][n / 4]

fn a_at(i: u32) -> f32 { return x0v[i >> 2u][i & 3u]; }
fn b_at(i: u32) -> f32 { return x1v[i >> 2u][i & 3u]; }

// One thread's vec4 of the A slice at rows m0.., columns k0.. (zero outside the matrix
// and outside this workgroup's k range): four neighbouring rows m at one k, so that the
// thread stages a whole vec4 of the [k][m / 4] slice (threads must not write different
// components of one vec4: a compiler may store the whole vector). When m is A's
// contiguous axis (a transposed A) that is one aligned vec4 load (VEC_A) or four
// neighbouring scalars; when k is, four scalars from four rows, with neighbouring threads
// reading neighbouring k of each row (coalesced).
fn load_a(base: u32, m0: u32, k0: u32, k_hi: u32, t: u32) -> vec4<f32> {
    let bm = 16u * TT;
    let bk = 1024u / bm;
    var v = vec4<f32>(0.0);
    if (A_KMAJOR) {
        let k = k0 + t % bk;
        let m = m0 + (t / bk) * 4u;
        if (k >= k_hi) { return v; }
        for (var c = 0u; c < 4u; c = c + 1u) {
            let i = base + (m + c) * mm.a_row + k;
            if (m + c < mm.m) { v[c] = a_pro(i, a_at(i)); }
        }
    } else {
        let k = k0 + t / (bm / 4u);
        let m = m0 + (t % (bm / 4u)) * 4u;
        if (k >= k_hi) { return v; }
        let at = base + m + k * mm.a_col;
        if (VEC_A) {
            if (m < mm.m) {
                v = x0v[at >> 2u];
                if (has_pro()) {
                    for (var c = 0u; c < 4u; c = c + 1u) { v[c] = a_pro(at + c, v[c]); }
                }
            }
            return v;
        }
        for (var c = 0u; c < 4u; c = c + 1u) {
            if (m + c < mm.m) { v[c] = a_pro(at + c, a_at(at + c)); }
        }
    }
    return v;
}

// The same for the B slice at rows k0.., columns n0..: four neighbouring columns n at
// one k.
fn load_b(base: u32, k0: u32, n0: u32, k_hi: u32, t: u32) -> vec4<f32> {
    let bn = 16u * TT;
    let bk = 1024u / bn;
    var v = vec4<f32>(0.0);
    if (B_KMAJOR) {
        let k = k0 + t % bk;
        let n = n0 + (t / bk) * 4u;
        if (k >= k_hi) { return v; }
        for (var c = 0u; c < 4u; c = c + 1u) {
            if (n + c < mm.n) { v[c] = b_at(base + k + (n + c) * mm.b_col); }
        }
    } else {
        let k = k0 + t / (bn / 4u);
        let n = n0 + (t % (bn / 4u)) * 4u;
        if (k >= k_hi) { return v; }
        let at = base + k * mm.b_row + n;
        if (VEC_B) {
            if (n < mm.n) { v = x1v[at >> 2u]; }
            return v;
        }
        for (var c = 0u; c < 4u; c = c + 1u) {
            if (n + c < mm.n) { v[c] = b_at(at + c); }
        }
    }
    return v;
}

// Writes a thread's loaded vec4s into slice buffer `buf`, laid out [k][m / 4] and
// [k][n / 4]: each thread one whole vec4 of each.
fn stage(buf: u32, va: vec4<f32>, vb: vec4<f32>, t: u32) {
    let b4 = 4u * TT;                 // vec4s per k row: BM / 4 = BN / 4
    let bk = 1024u / (16u * TT);
    let at = buf * TILE_VEC4S;
    if (A_KMAJOR) {
        tile_a[at + (t % bk) * b4 + t / bk] = va;
    } else {
        tile_a[at + t] = va;
    }
    if (B_KMAJOR) {
        tile_b[at + (t % bk) * b4 + t / bk] = vb;
    } else {
        tile_b[at + t] = vb;
    }
}

@compute @workgroup_size(16, 16)
fn matmul_tile_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(local_invocation_index) t: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(wid, nwg);
    if (tile.y >= mm.tiles_y) { return; }
    let bm = 16u * TT;
    let bk = 1024u / bm;
    let b4 = 4u * TT;
    let groups = TT / 4u;             // 4-row (4-column) groups per thread
    let m0 = tile.y * bm;
    let n0 = tile.x * bm;
    let job = job_of(wid.z);
    let a_base = batch_base_a(job.batch);
    let b_base = batch_base_b(job.batch);
    var acc: array<vec4<f32>, 16>;    // [row r * groups + column group h]
    // The row sums of A, kept by the first column of threads of the first column tile.
    let sums = has_rowsum() && tile.x == 0u && lid.x == 0u;
    var rs: array<vec4<f32>, 2>;
    let steps = (job.k_hi - job.k_lo + bk - 1u) / bk;
    var va = load_a(a_base, m0, job.k_lo, job.k_hi, t);
    var vb = load_b(b_base, job.k_lo, n0, job.k_hi, t);
    stage(0u, va, vb, t);
    workgroupBarrier();
    for (var s = 0u; s < steps; s = s + 1u) {
        let cur = (s % 2u) * TILE_VEC4S;
        let more = s + 1u < steps;
        if (more) {
            let k1 = job.k_lo + (s + 1u) * bk;
            va = load_a(a_base, m0, k1, job.k_hi, t);
            vb = load_b(b_base, k1, n0, job.k_hi, t);
        }
        for (var kk = 0u; kk < bk; kk = kk + 1u) {
            let row = cur + kk * b4;
            for (var g = 0u; g < groups; g = g + 1u) {
                let a = tile_a[row + g * 16u + lid.y];
                if (sums) { rs[g] = rs[g] + a; }
                for (var h = 0u; h < groups; h = h + 1u) {
                    let b = tile_b[row + h * 16u + lid.x];
                    let r = g * 4u;
                    acc[(r + 0u) * groups + h] = acc[(r + 0u) * groups + h] + a.x * b;
                    acc[(r + 1u) * groups + h] = acc[(r + 1u) * groups + h] + a.y * b;
                    acc[(r + 2u) * groups + h] = acc[(r + 2u) * groups + h] + a.z * b;
                    acc[(r + 3u) * groups + h] = acc[(r + 3u) * groups + h] + a.w * b;
                }
            }
        }
        if (more) {
            stage((s + 1u) % 2u, va, vb, t);
        }
        workgroupBarrier();
    }
    let st = store_params(job);
    for (var g = 0u; g < groups; g = g + 1u) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let m = m0 + g * 64u + lid.y * 4u + i;
            if (m >= mm.m) { continue; }
            if (sums) { store_rowsum(job, m, rs[g][i]); }
            for (var h = 0u; h < groups; h = h + 1u) {
                let v = acc[(g * 4u + i) * groups + h];
                for (var j = 0u; j < 4u; j = j + 1u) {
                    let n = n0 + h * 64u + lid.x * 4u + j;
                    if (n < mm.n) { store_out(st, m, n, v[j]); }
                }
            }
        }
    }
}

// ---- Small-tile kernel ------------------------------------------------------------------
// For products with few rows or columns: an 8x8 workgroup computes an 8 SM x 8 SN tile
// (SM, SN = 2 or 4: 16 or 32 rows by 16 or 32 columns), each thread SM x SN outputs
// (rows ty + 8 i, columns tx + 8 j, so neighbouring threads read neighbouring columns),
// straight from global memory with no staging and no barriers: the inner loop runs over
// exactly this workgroup's k range, so a small K is not padded to a slice. Rows and
// columns past the matrix are clamped for the loads and not stored.
// Launch: the ceil(N / (8 SN)) x ceil(M / (8 SM)) tiles folded (see `tile_of`), batches * splits.
override SM: u32 = 2u;
override SN: u32 = 2u;
// A is read from y0 (the recurrent step: h_{t-1} sits in the output buffer the step
// writes h_t into); x0 is then unused.
override A_IN_Y0: bool = false;
// B gathered from an image x1 [C, H, W] (per batch) as a convolution's columns, with no
// columns in memory: 1 = im2col, B[k = (c, kh, kw), n = (oh, ow)] (the forward), 2 = its
// transpose, B[k = (oh, ow), n = (c, kh, kw)] (the weight's gradient); zero where the
// tap falls in the padding. The image's geometry: mm.conv_c, _h, _w, _ho, _wo, _kh, _kw,
// the stride _sh, _sw, padding _ph, _pw and dilation _dh, _dw.
override B_CONV: u32 = 0u;

// A tap of the gather split into what depends on one index: channel offset, row and
// column (each of the row and column parts may be negative).
struct Tap {
    c: u32,
    y: i32,
    x: i32,
}

// The part of a tap that depends on the image position (oh, ow) = pixel p.
fn tap_pixel(p: u32) -> Tap {
    var t: Tap;
    t.c = 0u;
    t.y = i32((p / mm.conv_wo) * mm.conv_sh) - i32(mm.conv_ph);
    t.x = i32((p % mm.conv_wo) * mm.conv_sw) - i32(mm.conv_pw);
    return t;
}

// The part that depends on the kernel position (c, kh, kw) = column row r.
fn tap_kernel(r: u32) -> Tap {
    let kk = mm.conv_kh * mm.conv_kw;
    let kr = r % kk;
    var t: Tap;
    t.c = (r / kk) * mm.conv_h * mm.conv_w;
    t.y = i32((kr / mm.conv_kw) * mm.conv_dh);
    t.x = i32((kr % mm.conv_kw) * mm.conv_dw);
    return t;
}

// Where the image value at the sum of two tap parts sits in x1, or -1 in the padding.
fn tap_index(base: u32, a: Tap, b: Tap) -> i32 {
    let y = a.y + b.y;
    let x = a.x + b.x;
    if (y < 0 || x < 0 || u32(y) >= mm.conv_h || u32(x) >= mm.conv_w) { return -1; }
    return i32(base + a.c + b.c + u32(y) * mm.conv_w + u32(x));
}

// The image value at the sum of two tap parts (zero in the padding).
fn gather(base: u32, a: Tap, b: Tap) -> f32 {
    let i = tap_index(base, a, b);
    if (i < 0) { return 0.0; }
    return x1[u32(i)];
}

@compute @workgroup_size(8, 8)
fn matmul_small_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(wid, nwg);
    if (tile.y >= mm.tiles_y) { return; }
    let job = job_of(wid.z);
    let a_base = batch_base_a(job.batch);
    let b_base = batch_base_b(job.batch);
    let m0 = tile.y * 8u * SM + lid.y;
    let n0 = tile.x * 8u * SN + lid.x;
    var a_row: array<u32, 4>;
    var b_col: array<u32, 4>;
    for (var i = 0u; i < SM; i = i + 1u) {
        a_row[i] = a_base + min(m0 + 8u * i, mm.m - 1u) * mm.a_row;
    }
    var taps: array<Tap, 4>;
    for (var j = 0u; j < SN; j = j + 1u) {
        let n = min(n0 + 8u * j, mm.n - 1u);
        b_col[j] = b_base + n * mm.b_col;
        if (B_CONV == 1u) { taps[j] = tap_pixel(n); }
        if (B_CONV == 2u) { taps[j] = tap_kernel(n); }
    }
    let sums = has_rowsum() && tile.x == 0u && lid.x == 0u;
    var rs: array<f32, 4>;
    var acc: array<f32, 16>;          // [i * 4 + j]
    for (var k = job.k_lo; k < job.k_hi; k = k + 1u) {
        let ka = k * mm.a_col;
        let kb = k * mm.b_row;
        var a: array<f32, 4>;
        var b: array<f32, 4>;
        for (var i = 0u; i < SM; i = i + 1u) {
            let at = a_row[i] + ka;
            var av: f32;
            if (A_IN_Y0) { av = y0[at]; } else { av = x0[at]; }
            a[i] = a_pro(at, av);
            if (sums) { rs[i] = rs[i] + a[i]; }
        }
        if (B_CONV == 0u) {
            for (var j = 0u; j < SN; j = j + 1u) { b[j] = x1[b_col[j] + kb]; }
        } else {
            var tk: Tap;
            if (B_CONV == 1u) { tk = tap_kernel(k); } else { tk = tap_pixel(k); }
            for (var j = 0u; j < SN; j = j + 1u) { b[j] = gather(b_base, taps[j], tk); }
        }
        for (var i = 0u; i < SM; i = i + 1u) {
            for (var j = 0u; j < SN; j = j + 1u) {
                acc[i * 4u + j] = acc[i * 4u + j] + a[i] * b[j];
            }
        }
    }
    let st = store_params(job);
    for (var i = 0u; i < SM; i = i + 1u) {
        let m = m0 + 8u * i;
        if (m >= mm.m) { continue; }
        if (sums) { store_rowsum(job, m, rs[i]); }
        for (var j = 0u; j < SN; j = j + 1u) {
            let n = n0 + 8u * j;
            if (n < mm.n) { store_out(st, m, n, acc[i * 4u + j]); }
        }
    }
}

// ---- Block kernel (software adapters) ---------------------------------------------------
// For adapters that run a workgroup's invocations as the SIMD lanes of a CPU thread
// (lavapipe, SwiftShader, WARP). There every load instruction costs tens of times a
// multiply-add, whatever its addresses (measured on lavapipe: a scalar load about 40
// cycles per lane, a vec4 load about twice that, a loop iteration a few), workgroup
// memory is no cheaper than a storage buffer, and barriers switch coroutines. So each
// thread keeps a large block of outputs in registers (BR rows by BC columns, up to
// 16 x 16) and reads its operands straight from memory, four values of k at a time, as
// aligned vec4s where the layout allows (LAYOUT bit 4 for A, 8 for B): 32 multiply-adds
// per load instruction at 16 x 16, against 16 for the 128-wide tile and 2 for the small
// kernel's 4 x 4. Not for hardware GPUs, where 256 accumulators per thread would spill.
// A 4x4 workgroup covers 4 BR rows by 4 BC columns; thread (tx, ty) owns rows
// m0 + i (i < BR) and columns n0 + 4 q + c (q < BC / 4), contiguous so that one vec4
// holds four of them. LAYOUT bits: 1 A is contiguous along k (else along m), 2 B is
// contiguous along k (else along n), 4 / 8 read A / B as aligned vec4s along that axis
// (the host checks every stride and offset). Rows and columns past the matrix are
// clamped for the loads and not stored; values of k past the job's range load as zero.
// With A_IN_Y0 A is read from y0 and with B_CONV B is gathered from an image, as in the
// small kernel (as scalars).
// Launch: the ceil(N / (4 BC)) x ceil(M / (4 BR)) tiles folded (see `tile_of`), batches * splits.
override BR: u32 = 16u;
override BC: u32 = 16u;
override LAYOUT: u32 = 0u;

// A(m, k) through the prologue, or 0 for k past the range.
fn block_a(base: u32, m: u32, k: u32, k_hi: u32) -> f32 {
    if (k >= k_hi) { return 0.0; }
    let i = base + m * mm.a_row + k * mm.a_col;
    var v: f32;
    if (A_IN_Y0) { v = y0[i]; } else { v = a_at(i); }
    return a_pro(i, v);
}

// A vec4 of A's buffer at element i (aligned) through the prologue, whose saved output
// x2 is laid out like A's buffer (so aligned alike).
fn block_a4(i: u32) -> vec4<f32> {
    let v = x0v[i >> 2u];
    if (has_pro()) {
        let s = x2v[i >> 2u];
        let code = (EPI >> 8u) & 255u;
        let a = mm.act_a;
        let b = mm.act_b;
        return vec4<f32>(ew_bwd(code, v.x, s.x, a, b), ew_bwd(code, v.y, s.y, a, b),
                         ew_bwd(code, v.z, s.z, a, b), ew_bwd(code, v.w, s.w, a, b));
    }
    return v;
}

// B(k, n), gathered from the taps of column n and of row k when B is an image's columns;
// 0 for k past the range.
fn block_b(base: u32, k: u32, n: u32, tap_n: Tap, tap_k: Tap, k_hi: u32) -> f32 {
    if (k >= k_hi) { return 0.0; }
    if (B_CONV == 0u) { return b_at(base + k * mm.b_row + n * mm.b_col); }
    let i = tap_index(base, tap_n, tap_k);
    if (i < 0) { return 0.0; }
    return b_at(u32(i));
}

// A block of A: a[i] = A(m0 + i, k0 .. k0 + 4). With `full` all four values of k are in
// the range and the vec4 loads may be used (the callers pass a constant, so each call
// compiles to one path: no masked-off branch is executed by the SIMD lanes).
fn block_load_a(a: ptr<function, array<vec4<f32>, 16>>, base: u32, m0: u32, k0: u32, k_hi: u32, full: bool) {
    let last_m = mm.m - 1u;
    if (full && (LAYOUT & 5u) == 5u) {
        for (var i = 0u; i < BR; i = i + 1u) {
            (*a)[i] = block_a4(base + min(m0 + i, last_m) * mm.a_row + k0);
        }
    } else if (full && (LAYOUT & 4u) != 0u) {
        // Contiguous along m (M is a multiple of 4): four rows per vec4, transposed.
        for (var g = 0u; g < BR / 4u; g = g + 1u) {
            let at = base + min(m0 + 4u * g, mm.m - 4u) + k0 * mm.a_col;
            let v0 = block_a4(at);
            let v1 = block_a4(at + mm.a_col);
            let v2 = block_a4(at + 2u * mm.a_col);
            let v3 = block_a4(at + 3u * mm.a_col);
            (*a)[4u * g] = vec4<f32>(v0.x, v1.x, v2.x, v3.x);
            (*a)[4u * g + 1u] = vec4<f32>(v0.y, v1.y, v2.y, v3.y);
            (*a)[4u * g + 2u] = vec4<f32>(v0.z, v1.z, v2.z, v3.z);
            (*a)[4u * g + 3u] = vec4<f32>(v0.w, v1.w, v2.w, v3.w);
        }
    } else {
        for (var i = 0u; i < BR; i = i + 1u) {
            let m = min(m0 + i, last_m);
            (*a)[i] = vec4<f32>(block_a(base, m, k0, k_hi), block_a(base, m, k0 + 1u, k_hi),
                                block_a(base, m, k0 + 2u, k_hi), block_a(base, m, k0 + 3u, k_hi));
        }
    }
}

// A block of B: b[kk * 4 + q] = B(k0 + kk, n0 + 4 q .. n0 + 4 q + 4), as `block_load_a`.
fn block_load_b(b: ptr<function, array<vec4<f32>, 16>>, taps: ptr<function, array<Tap, 16>>, base: u32,
                n0: u32, k0: u32, k_hi: u32, full: bool) {
    let last_n = mm.n - 1u;
    let quads = BC / 4u;
    if (full && (LAYOUT & 10u) == 8u) {
        for (var kk = 0u; kk < 4u; kk = kk + 1u) {
            for (var q = 0u; q < quads; q = q + 1u) {
                (*b)[kk * 4u + q] = x1v[(base + (k0 + kk) * mm.b_row + min(n0 + 4u * q, mm.n - 4u)) >> 2u];
            }
        }
    } else if (full && (LAYOUT & 8u) != 0u) {
        // Contiguous along k: one vec4 of k per column, transposed.
        for (var q = 0u; q < quads; q = q + 1u) {
            let n = n0 + 4u * q;
            let v0 = x1v[(base + k0 + min(n, last_n) * mm.b_col) >> 2u];
            let v1 = x1v[(base + k0 + min(n + 1u, last_n) * mm.b_col) >> 2u];
            let v2 = x1v[(base + k0 + min(n + 2u, last_n) * mm.b_col) >> 2u];
            let v3 = x1v[(base + k0 + min(n + 3u, last_n) * mm.b_col) >> 2u];
            (*b)[q] = vec4<f32>(v0.x, v1.x, v2.x, v3.x);
            (*b)[4u + q] = vec4<f32>(v0.y, v1.y, v2.y, v3.y);
            (*b)[8u + q] = vec4<f32>(v0.z, v1.z, v2.z, v3.z);
            (*b)[12u + q] = vec4<f32>(v0.w, v1.w, v2.w, v3.w);
        }
    } else {
        for (var kk = 0u; kk < 4u; kk = kk + 1u) {
            let k = k0 + kk;
            // The row's tap (divisions) once for all columns.
            var tk: Tap;
            if (B_CONV == 1u) { tk = tap_kernel(k); }
            if (B_CONV == 2u) { tk = tap_pixel(k); }
            for (var q = 0u; q < quads; q = q + 1u) {
                let n = n0 + 4u * q;
                (*b)[kk * 4u + q] = vec4<f32>(
                    block_b(base, k, min(n, last_n), (*taps)[4u * q], tk, k_hi),
                    block_b(base, k, min(n + 1u, last_n), (*taps)[4u * q + 1u], tk, k_hi),
                    block_b(base, k, min(n + 2u, last_n), (*taps)[4u * q + 2u], tk, k_hi),
                    block_b(base, k, min(n + 3u, last_n), (*taps)[4u * q + 3u], tk, k_hi));
            }
        }
    }
}

// acc[i * 4 + q] += a[i].x b[q]: one value of k (the tail past the whole blocks).
fn block_fma1(acc: ptr<function, array<vec4<f32>, 64>>, rs: ptr<function, array<f32, 16>>,
              a: ptr<function, array<vec4<f32>, 16>>, b: ptr<function, array<vec4<f32>, 16>>, sums: bool) {
    for (var i = 0u; i < BR; i = i + 1u) {
        let av = (*a)[i].x;
        if (sums) { (*rs)[i] = (*rs)[i] + av; }
        for (var q = 0u; q < BC / 4u; q = q + 1u) {
            (*acc)[i * 4u + q] = (*acc)[i * 4u + q] + av * (*b)[q];
        }
    }
}

// acc[i * 4 + q] += sum over kk of a[i][kk] b[kk * 4 + q], and the row sums.
fn block_fma(acc: ptr<function, array<vec4<f32>, 64>>, rs: ptr<function, array<f32, 16>>,
             a: ptr<function, array<vec4<f32>, 16>>, b: ptr<function, array<vec4<f32>, 16>>, sums: bool) {
    for (var i = 0u; i < BR; i = i + 1u) {
        let av = (*a)[i];
        if (sums) { (*rs)[i] = (*rs)[i] + ((av.x + av.y) + (av.z + av.w)); }
        for (var q = 0u; q < BC / 4u; q = q + 1u) {
            (*acc)[i * 4u + q] = (*acc)[i * 4u + q] + av.x * (*b)[q] + av.y * (*b)[4u + q]
                                 + av.z * (*b)[8u + q] + av.w * (*b)[12u + q];
        }
    }
}

@compute @workgroup_size(4, 4)
fn matmul_block_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(wid, nwg);
    if (tile.y >= mm.tiles_y) { return; }
    let job = job_of(wid.z);
    let a_base = batch_base_a(job.batch);
    let b_base = batch_base_b(job.batch);
    let m0 = (tile.y * 4u + lid.y) * BR;
    let n0 = (tile.x * 4u + lid.x) * BC;
    let quads = BC / 4u;
    var taps: array<Tap, 16>;
    if (B_CONV != 0u) {
        for (var j = 0u; j < BC; j = j + 1u) {
            let n = min(n0 + j, mm.n - 1u);
            if (B_CONV == 1u) { taps[j] = tap_pixel(n); } else { taps[j] = tap_kernel(n); }
        }
    }
    let sums = has_rowsum() && tile.x == 0u && lid.x == 0u;
    var rs: array<f32, 16>;
    var acc: array<vec4<f32>, 64>;    // [i * 4 + q]: rows m0 + i, columns n0 + 4 q ..
    var a: array<vec4<f32>, 16>;
    var b: array<vec4<f32>, 16>;
    // Whole blocks of four values of k, then the rest one at a time. (Two loops, not a
    // branch inside one: SIMD lanes execute both sides of a branch.)
    let k_full = job.k_lo + (job.k_hi - job.k_lo) / 4u * 4u;
    for (var k0 = job.k_lo; k0 < k_full; k0 = k0 + 4u) {
        block_load_a(&a, a_base, m0, k0, job.k_hi, true);
        block_load_b(&b, &taps, b_base, n0, k0, job.k_hi, true);
        block_fma(&acc, &rs, &a, &b, sums);
    }
    for (var k = k_full; k < job.k_hi; k = k + 1u) {
        block_load_a(&a, a_base, m0, k, k + 1u, false);
        block_load_b(&b, &taps, b_base, n0, k, k + 1u, false);
        block_fma1(&acc, &rs, &a, &b, sums);
    }
    let st = store_params(job);
    for (var i = 0u; i < BR; i = i + 1u) {
        let m = m0 + i;
        if (m >= mm.m) { break; }
        if (sums) { store_rowsum(job, m, rs[i]); }
        for (var q = 0u; q < quads; q = q + 1u) {
            let v = acc[i * 4u + q];
            for (var c = 0u; c < 4u; c = c + 1u) {
                let n = n0 + 4u * q + c;
                if (n < mm.n) { store_out(st, m, n, v[c]); }
            }
        }
    }
}

// ---- Naive kernel -----------------------------------------------------------------------
// The simple kernel the others must beat (kept for the benchmark): one output per
// thread, straight from global memory.
// Launch: the ceil(N / 16) x ceil(M / 16) tiles folded (see `tile_of`), batches *
// splits of this launch.
@compute @workgroup_size(16, 16)
fn matmul_naive_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(wid, nwg);
    let m = tile.y * 16u + lid.y;
    let n = tile.x * 16u + lid.x;
    if (m >= mm.m || n >= mm.n) { return; }
    let job = job_of(wid.z);
    let a_base = batch_base_a(job.batch);
    let b_base = batch_base_b(job.batch);
    var acc = 0.0;
    for (var k = job.k_lo; k < job.k_hi; k = k + 1u) {
        acc = acc + x0[a_base + m * mm.a_row + k * mm.a_col] * x1[b_base + k * mm.b_row + n * mm.b_col];
    }
    store_c(job.c_base + m * mm.n + n, acc);
}

// ---- Sum of partial products -------------------------------------------------------
// y0[i] = sum over s of x0[s * len + i] for i < len (the partial products of the
// splits and summed batches, `count` of them), and y1[i] = sum over s of
// x1[s * rows + i] for i < rows (their row sums, a bias gradient), in one pass
// (`sp`: SumPartialsParams). Deterministic. Grid: ceil((len + rows) / 256) workgroups
// (split over y past 65535).
@compute @workgroup_size(256)
fn matmul_partials_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < sp.len) {
        var acc = 0.0;
        for (var s = 0u; s < sp.count; s = s + 1u) { acc = acc + x0[s * sp.len + i]; }
        y0[i] = acc;
    } else if (i < sp.len + sp.rows) {
        let r = i - sp.len;
        var acc = 0.0;
        for (var s = 0u; s < sp.count; s = s + 1u) { acc = acc + x1[s * sp.rows + r]; }
        y1[r] = acc;
    }
}
