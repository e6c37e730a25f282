//! `clip_grad_norm`: the global L2 norm of every gradient and the scaling of each in place
//! (three dispatches on the GPU: per-workgroup sums of squares, the norm and scale in one
//! workgroup, the scaling), or the same arithmetic on the CPU.

use super::*;

const CLIP_NORM: &Kernel = kernel!(
    FILE,
    "clip_norm_step",
    [X0, Y0],
    loops,
    params = ClipNormParams
);

/// The fixed kernel of `shaders/optim.wgsl`.
pub(super) fn kernels() -> Vec<&'static Kernel> {
    vec![CLIP_NORM]
}

/// Most elements one clipping workgroup reduces (rule 2 of the GPU shape rules), and the
/// most partial sums one workgroup of the norm pass reads.
const CLIP_MAX_PER_GROUP: usize = 16 * 1024;

/// Elements per workgroup of clipping's first pass over tensors of `numels`: the
/// smallest power of two from 1,024 whose partial sums one workgroup can reduce, or the
/// largest allowed (then the partials take more than one reduction pass). And the
/// number of partial sums.
pub(super) fn clip_per_group(numels: &[usize]) -> (usize, usize) {
    let mut per = 1024;
    loop {
        let partials: usize = numels.iter().map(|n| n.div_ceil(per)).sum();
        if partials <= CLIP_MAX_PER_GROUP || per == CLIP_MAX_PER_GROUP {
            return (per, partials);
        }
        per *= 2;
    }
}

/// Scales the gradients `grads` in place so that their global L2 norm is at most
/// `max_norm` (scale `min(1, max_norm / (norm + 1e-6))`, as
/// `torch.nn.utils.clip_grad_norm_`; a non-finite norm gives a NaN or zero scale as
/// there) and returns the norm before clipping as a 0-d tensor on their device, without
/// a readback. A gradient listed twice (or two gradients sharing storage) counts twice in
/// the norm and is scaled once. On the GPU: three dispatches (more only past the binding
/// limits or past 256M elements).
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f32) -> Result<Tensor> {
    let Some(first) = grads.first() else {
        return arg_err("clip_grad_norm", "no gradients");
    };
    for g in grads {
        check_pair("clip_grad_norm", first, g)?;
    }
    // Each distinct storage once, for the scaling.
    let mut distinct: Vec<&Tensor> = Vec::new();
    for g in grads {
        if !distinct.iter().any(|d| d.storage().same_as(g.storage())) {
            distinct.push(g);
        }
    }
    match first.device() {
        Device::Cpu => Ok(clip_cpu(grads, &distinct, max_norm)),
        Device::Gpu(ctx) => clip_gpu(ctx, grads, &distinct, max_norm),
    }
}

/// The sum of squares of `v` in f64, over eight independent accumulators (which the
/// compiler vectorises; one running sum would serialise on the adds).
fn sum_squares<T: Copy + Into<f64>>(v: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            let x: f64 = x.into();
            *a += x * x;
        }
    }
    let tail: f64 = rest
        .iter()
        .map(|&x| {
            let x: f64 = x.into();
            x * x
        })
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// The CPU reference of clipping: sums of squares accumulated in f64, then the norm and
/// the scale in the gradients' type with the kernels' formula (`scale > 1` is false for a
/// NaN, which therefore propagates as in PyTorch).
fn clip_cpu(grads: &[Tensor], distinct: &[&Tensor], max_norm: f32) -> Tensor {
    let mut total = 0.0f64;
    for g in grads {
        total += match &*g.cpu_data() {
            CpuData::F32(v) => sum_squares(v),
            CpuData::F64(v) => sum_squares(v),
            CpuData::U32(_) => unreachable!("checked: float tensors"),
        };
    }
    if grads[0].dtype() == DType::F64 {
        let norm = total.sqrt();
        let mut scale = max_norm as f64 / (norm + 1e-6);
        if scale > 1.0 {
            scale = 1.0;
        }
        for g in distinct {
            if let CpuData::F64(v) = &mut *write_data(g) {
                v.iter_mut().for_each(|x| *x *= scale);
            }
        }
        return Tensor::from_cpu(CpuData::F64(vec![norm]), vec![]);
    }
    let norm = total.sqrt() as f32;
    let mut scale = max_norm / (norm + 1e-6);
    if scale > 1.0 {
        scale = 1.0;
    }
    for g in distinct {
        if let CpuData::F32(v) = &mut *write_data(g) {
            v.iter_mut().for_each(|x| *x *= scale);
        }
    }
    Tensor::from_cpu(CpuData::F32(vec![norm]), vec![])
}

/// Clipping on the GPU: sums of squares per workgroup, the norm and scale on one
/// workgroup (after extra reduction passes only past 16K partial sums), the scaling.
fn clip_gpu(
    ctx: &Arc<GpuContext>,
    grads: &[Tensor],
    distinct: &[&Tensor],
    max_norm: f32,
) -> Result<Tensor> {
    let numels: Vec<usize> = grads.iter().map(|g| g.numel()).collect();
    let (per_group, count) = clip_per_group(&numels);
    let mut partials = gpu_alloc(ctx, count.max(1))?;
    let members: Vec<Member> = grads
        .iter()
        .filter(|g| g.numel() > 0)
        .map(|g| Member {
            buffers: vec![(g.gpu_buf(), true)],
            numel: g.numel(),
        })
        .collect();
    let chunks = multi_tensor::plan_chunks(
        "clip_grad_norm",
        &members,
        multi_tensor::tensors_per_dispatch(ctx, &CLIP_SUMSQ),
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
    let scaled: Vec<Member> = distinct
        .iter()
        .filter(|g| g.numel() > 0)
        .map(|g| Member {
            buffers: vec![(g.gpu_buf(), false)],
            numel: g.numel(),
        })
        .collect();
    let chunks = multi_tensor::plan_chunks(
        "clip_grad_norm",
        &scaled,
        multi_tensor::tensors_per_dispatch(ctx, &CLIP_SCALE),
    )?;
    for c in chunks {
        multi_tensor::launch(
            ctx,
            &CLIP_SCALE,
            ClipScaleParams::default(),
            &scaled[c],
            &[&ns],
            256,
            Work::default(),
        );
    }
    Ok(Tensor::from_gpu(ns, vec![], DType::F32))
}
