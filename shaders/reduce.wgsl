// Reductions over chosen dimensions, spread over as many workgroups as the work needs.
// (Shared by reduce_tree.wgsl and reduce_subgroup.wgsl, which add the entry points and
// the way the lanes of a workgroup combine.)
//
// A pass reduces, for each output o < rp.outputs, the reduced positions of one split:
// the positions j in [split * rp.chunk, min(rp.m, (split + 1) * rp.chunk)). A
// workgroup's 256 threads are OW = rp.ow outputs by 256 / OW lanes (thread t: output
// t % OW, lane t / OW).
// The lanes of an output stride over its positions, so with OW = 1 neighbouring threads
// read neighbouring positions (reduced dims innermost), and with OW > 1 neighbouring
// threads read neighbouring outputs (column sums); then the lanes combine. Workgroup g
// (flattened over the grid) takes output block g % blocks and split g / blocks.
// Parameters: `rp` (ReduceParams, src/ops/reduce.rs), the kept and reduced dimensions'
// sizes and strides, the scale the final pass applies, the splits, and whether the pass
// writes or reads partial results.

const RT: u32 = 256u;
const NONE: u32 = 0xffffffffu;
var<workgroup> part: array<f32, 256>;
var<workgroup> part_idx: array<u32, 256>;

struct Slot {
    o: u32,
    lane: u32,
    lanes: u32,
    split: u32,
    live: bool,
}

fn slot_of(g: u32, t: u32) -> Slot {
    let ow = rp.ow;
    let blocks = (rp.outputs + ow - 1u) / ow;
    var s: Slot;
    s.o = (g % blocks) * ow + t % ow;
    s.lane = t / ow;
    s.lanes = RT / ow;
    s.split = g / blocks;
    s.live = s.o < rp.outputs && s.split < rp.splits;
    return s;
}

fn reduce_base(o: u32) -> u32 {
    if (rp.kept_rank == 1u) { return o * rp_kept_strides(0u); }
    return rp_kept_strides_offset(o);
}

fn reduce_off(j: u32) -> u32 {
    if (rp.red_rank == 1u) { return j * rp_red_strides(0u); }
    return rp_red_strides_offset(j);
}

// Sums v over the lanes of output t % OW through workgroup memory; the result is valid
// at lane 0 (t < OW).
fn combine_tree(v: f32, t: u32) -> f32 {
    let ow = rp.ow;
    part[t] = v;
    workgroupBarrier();
    for (var s = RT / ow / 2u; s > 0u; s = s / 2u) {
        if (t / ow < s) { part[t] = part[t] + part[t + s * ow]; }
        workgroupBarrier();
    }
    return part[t % ow];
}

fn sum_body(g: u32, t: u32) {
    let s = slot_of(g, t);
    var acc = 0.0;
    if (s.live) {
        let base = reduce_base(s.o);
        let start = s.split * rp.chunk;
        let stop = min(rp.m, start + rp.chunk);
        for (var j = start + s.lane; j < stop; j = j + s.lanes) {
            acc = acc + x0[base + reduce_off(j)];
        }
    }
    let total = combine_sum(acc, t);
    if (s.live && s.lane == 0u) {
        if (rp.partial == 1u) {
            y0[s.split * rp.outputs + s.o] = total;
        } else {
            y0[s.o] = total * rp.scale;
        }
    }
}

// True when (v, j) beats (best, best_j): larger, or equal at an earlier position, where
// NaN is larger than any number (PyTorch: a NaN maximum at its first position).
fn max_better(v: f32, j: u32, best: f32, best_j: u32) -> bool {
    if (j == NONE) { return false; }
    if (best_j == NONE) { return true; }
    let vn = is_nan_f(v);
    let bn = is_nan_f(best);
    if (vn || bn) { return vn && (!bn || j < best_j); }
    return v > best || (v == best && j < best_j);
}

// The maximum and its position (row-major within the reduced dims; the first on ties).
// A first pass reads values and numbers positions itself; later passes (from_partials) read
// the partial values in x0 and their positions in xi.
fn max_body(g: u32, t: u32) {
    let s = slot_of(g, t);
    var best = 0.0;
    var best_j = NONE;
    if (s.live) {
        let base = reduce_base(s.o);
        let start = s.split * rp.chunk;
        let stop = min(rp.m, start + rp.chunk);
        for (var j = start + s.lane; j < stop; j = j + s.lanes) {
            let at = base + reduce_off(j);
            var pos = j;
            if (rp.from_partials == 1u) { pos = xi[at]; }
            let v = x0[at];
            if (max_better(v, pos, best, best_j)) { best = v; best_j = pos; }
        }
    }
    let ow = rp.ow;
    part[t] = best;
    part_idx[t] = best_j;
    workgroupBarrier();
    for (var h = RT / ow / 2u; h > 0u; h = h / 2u) {
        if (t / ow < h) {
            let v = part[t + h * ow];
            let j = part_idx[t + h * ow];
            if (max_better(v, j, part[t], part_idx[t])) { part[t] = v; part_idx[t] = j; }
        }
        workgroupBarrier();
    }
    if (s.live && s.lane == 0u) {
        var at = s.o;
        if (rp.partial == 1u) { at = s.split * rp.outputs + s.o; }
        y0[at] = part[t];
        yi[at] = part_idx[t];
    }
}
