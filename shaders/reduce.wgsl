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
// The lanes' u32 values (a u32 maximum's; a u32 sum's).
var<workgroup> part_u32: array<u32, 256>;

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

// `sum_body`, `max_body` and their u32 twins `sum_u32_body`, `max_u32_body` are generated
// from one text (src/backend/gpu/reduce.rs, `reduce_bodies`) and placed before this file.

// max_better for u32 values (no NaN).
fn max_better_u32(v: u32, j: u32, best: u32, best_j: u32) -> bool {
    if (j == NONE) { return false; }
    if (best_j == NONE) { return true; }
    return v > best || (v == best && j < best_j);
}

// Sums v over the lanes of output t % OW as combine_tree does, for u32 (wrapping adds).
fn combine_sum_u32(v: u32, t: u32) -> u32 {
    let ow = rp.ow;
    part_u32[t] = v;
    workgroupBarrier();
    for (var s = RT / ow / 2u; s > 0u; s = s / 2u) {
        if (t / ow < s) { part_u32[t] = part_u32[t] + part_u32[t + s * ow]; }
        workgroupBarrier();
    }
    return part_u32[t % ow];
}
