// Sums whose lanes combine with subgroup operations, compiled only on adapters with
// wgpu's SUBGROUP feature; the shared code is in reduce.wgsl, appended below.

var<private> sg_lane: u32;
var<private> sg_size: u32;
var<private> sg_id: u32;
var<private> sg_count: u32;

// Each subgroup adds its lanes, the subgroup totals meet in workgroup memory and the
// first subgroup adds those. Column sums (several outputs per workgroup, interleaved
// over the lanes) combine through workgroup memory as on other adapters.
fn combine_sum(v: f32, t: u32) -> f32 {
    if (rp.ow != 1u) {
        return combine_tree(v, t);
    }
    let s = subgroupAdd(v);
    if (sg_lane == 0u) { part[sg_id] = s; }
    workgroupBarrier();
    // Every subgroup runs the second add (subgroup operations stay in uniform control
    // flow); only the first one's lanes bring values.
    var acc = 0.0;
    if (sg_id == 0u) {
        for (var i = sg_lane; i < sg_count; i = i + sg_size) { acc = acc + part[i]; }
    }
    let total = subgroupAdd(acc);
    if (sg_id == 0u && sg_lane == 0u) { part_idx[0] = bitcast<u32>(total); }
    workgroupBarrier();
    return bitcast<f32>(part_idx[0]);
}

@compute @workgroup_size(256)
fn sum_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32,
           @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32,
           @builtin(subgroup_id) id: u32, @builtin(num_subgroups) count: u32) {
    sg_lane = lane;
    sg_size = size;
    sg_id = id;
    sg_count = count;
    sum_body(row_id(wid, nwg), t);
}
