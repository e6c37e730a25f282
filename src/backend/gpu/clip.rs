//! The GPU backend's gradient clipping over whole parameter lists, in three dispatches:
//! per-workgroup sums of squares over every gradient, one workgroup turning them into
//! the norm and the scale (`shaders/optim.wgsl`, [`super::optim::FILE`]), and the
//! scaling of every gradient in place. Nothing is read back and nothing is allocated
//! but the partial sums and the norm (pooled).

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_rows, kernel};
use super::multi_tensor::{MultiSpec, ELEMENTWISE};
use super::optim::*;
use super::params::Params;
use super::*;
use crate::backend::Grad;

/// Clipping, pass 1: each workgroup sums the squares of up to `per_group` consecutive
/// elements of one gradient (`per_group` / 256 per thread) and writes the sum to
/// `partials[offset + wg]`.
pub(crate) static CLIP_SUMSQ: MultiSpec = MultiSpec {
    entry: "clip_sumsq_step",
    params: &ClipSumsqParams::INFO,
    roles: &[("g", true)],
    shared: &[("partials", false)],
    decls: "var<workgroup> sumsq_red: array<f32, 256>;\n",
    before: "    let base = (wg - tfirst) * clipsq.per_group;
    let end = min(base + clipsq.per_group, tn);
    var s = 0.0;
",
    case: "            for (var i = base + lid; i < end; i = i + WG) {
                let x = $g[i];
                s = s + x * x;
            }
",
    after: "    sumsq_red[lid] = s;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w = w / 2u) {
        if (lid < w) {
            sumsq_red[lid] = sumsq_red[lid] + sumsq_red[lid + w];
        }
        workgroupBarrier();
    }
    if (lid == 0u && wg < clipsq.groups) {
        partials[clipsq.offset + wg] = sumsq_red[0];
    }
",
    loops: true,
    stepped: None,
};

/// Clipping, pass 3: every gradient times the scale `ns[1]` (`ns` = [norm, scale]).
pub(crate) static CLIP_SCALE: MultiSpec = MultiSpec {
    entry: "clip_scale_step",
    params: &ClipScaleParams::INFO,
    roles: &[("g", false)],
    shared: &[("ns", true)],
    decls: "",
    before: ELEMENTWISE,
    case: "            $g[i] = $g[i] * ns[1];
",
    after: "",
    loops: false,
    stepped: None,
};

pub(super) const CLIP_NORM: &Kernel = kernel!(
    FILE,
    "clip_norm_step",
    [X0, Y0],
    loops,
    params = ClipNormParams
);

/// Most elements one clipping workgroup reduces (rule 2 of the GPU shape rules), and the
/// most partial sums one workgroup of the norm pass reads.
const CLIP_MAX_PER_GROUP: usize = 16 * 1024;

/// Elements per workgroup of clipping's first pass over tensors of `numels`: the
/// smallest power of two from 1,024 whose partial sums one workgroup can reduce, or the
/// largest allowed (then the partials take more than one reduction pass). And the
/// number of partial sums.
pub(crate) fn clip_per_group(numels: &[usize]) -> (usize, usize) {
    let mut per = 1024;
    loop {
        let partials: usize = numels.iter().map(|n| n.div_ceil(per)).sum();
        if partials <= CLIP_MAX_PER_GROUP || per == CLIP_MAX_PER_GROUP {
            return (per, partials);
        }
        per *= 2;
    }
}

/// Clipping on the GPU: sums of squares per workgroup, the norm and scale on one
/// workgroup (after extra reduction passes only past 16K partial sums), the scaling.
pub(super) fn clip_gpu(
    ctx: &Arc<GpuContext>,
    grads: &[Grad],
    distinct: &[Grad],
    max_norm: f32,
) -> Result<super::GpuBuffer> {
    let op = "clip_grad_norm";
    let numels: Vec<usize> = grads.iter().map(|g| g.numel).collect();
    let (per_group, count) = clip_per_group(&numels);
    let mut partials = gpu_alloc(ctx, count.max(1))?;
    let members = multi_tensor::grad_members(op, grads, true)?;
    let chunks = multi_tensor::plan_chunks(
        op,
        &members,
        multi_tensor::tensors_per_dispatch(ctx, &CLIP_SUMSQ, false),
    )?;
    // The scaling's chunks too, before anything is launched.
    let scaled = multi_tensor::grad_members(op, distinct, false)?;
    let scale_chunks = multi_tensor::plan_chunks(
        op,
        &scaled,
        multi_tensor::tensors_per_dispatch(ctx, &CLIP_SCALE, false),
    )?;
    let mut offset = 0;
    for c in chunks {
        let chunk = &members[c];
        let groups = multi_tensor::chunk_groups(chunk, per_group);
        let header = ClipSumsqParams {
            per_group: per_group as u32,
            offset: offset as u32,
            groups: groups as u32,
            ..Default::default()
        };
        let work = Work {
            serial: (per_group / 256) as u64,
            reduced: chunk.iter().map(|m| m.numel as u64).sum(),
            ..Default::default()
        };
        multi_tensor::launch(
            ctx,
            &CLIP_SUMSQ,
            header,
            chunk,
            &[&partials],
            per_group,
            work,
            false,
        );
        offset += groups;
    }
    debug_assert_eq!(offset, count);
    // Past 16K partial sums (over 256M elements), reduce them in passes first.
    let mut count = count;
    while count > CLIP_MAX_PER_GROUP {
        let groups = count.div_ceil(CLIP_MAX_PER_GROUP);
        let next = gpu_alloc(ctx, groups)?;
        let params = ClipNormParams {
            n: count as u32,
            per_group: CLIP_MAX_PER_GROUP as u32,
            groups: groups as u32,
            last: 0,
            max_norm,
        };
        let work = Work {
            serial: (CLIP_MAX_PER_GROUP / 256) as u64,
            reduced: count as u64,
            ..Default::default()
        };
        ctx.launch_with(
            CLIP_NORM,
            &params,
            &[&partials, &next],
            groups_rows(groups),
            work,
        );
        partials = next;
        count = groups;
    }
    // [norm, scale]: the norm tensor's buffer also carries the scale for the last pass.
    let ns = gpu_alloc(ctx, 2)?;
    let params = ClipNormParams {
        n: count as u32,
        per_group: count as u32,
        groups: 1,
        last: 1,
        max_norm,
    };
    let work = Work {
        serial: count.div_ceil(256).max(1) as u64,
        reduced: count as u64,
        ..Default::default()
    };
    ctx.launch_with(CLIP_NORM, &params, &[&partials, &ns], [1, 1, 1], work);
    for c in scale_chunks {
        multi_tensor::launch(
            ctx,
            &CLIP_SCALE,
            ClipScaleParams::default(),
            &scaled[c],
            &[&ns],
            256,
            Work::default(),
            false,
        );
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    /// The sums of squares are split so that one workgroup reduces at most 16K partials.
    #[test]
    fn clipping_grows_its_workgroups_before_it_needs_a_second_reduction_pass() {
        assert_eq!(super::clip_per_group(&[1000, 1]), (1024, 2));
        assert_eq!(super::clip_per_group(&[1 << 24]), (1024, 1 << 14));
        assert_eq!(
            super::clip_per_group(&[(1 << 24) + 1]),
            (2048, (1 << 13) + 1)
        );
        assert_eq!(super::clip_per_group(&[1 << 30]), (16384, 1 << 16));
    }
}
