//! Fused optimizer updates and gradient clipping over whole parameter lists.
//!
//! On the GPU one multi-tensor dispatch (`ops::multi_tensor`) updates every parameter
//! and its state in place (more only when the list is longer than one dispatch may bind),
//! and `clip_grad_norm` is three dispatches: per-workgroup sums of squares over every
//! gradient, one workgroup turning them into the norm and the scale, and the scaling of
//! every gradient in place. Nothing is read back and nothing is allocated but the
//! clipping's partial sums and norm (pooled). The CPU reference runs the same
//! arithmetic in `f32`, so both devices follow the same trajectory up to rounding.

use std::sync::Arc;

use crate::backend::cpu::CpuData;
use crate::backend::gpu::params::{params, Params, Table};
use crate::backend::gpu::{GpuContext, Kernel, ShaderFile, Work};
use crate::backend::Storage;
use crate::device::Device;
use crate::error::{arg_err, shape_err, Result};
use crate::ops::multi_tensor::{self, Member, MultiSpec, ELEMENTWISE};
use crate::ops::{gpu_alloc, groups_rows, kernel, shader, ShaderSource};
use crate::tensor::{check_pair, DType, Tensor};

pub(crate) const FILE: ShaderFile = shader("optim", include_str!("../../../shaders/optim.wgsl"))
    .with_params(&[&ClipNormParams::INFO]);

params! {
    /// SGD's step, with or without momentum (as `torch.optim.SGD`).
    pub(crate) struct SgdParams as sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum factor.
        momentum: f32,
        /// Dampening.
        dampening: f32,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
        /// Nesterov momentum (0/1).
        nesterov: u32,
        /// The buffers' first step (0/1: the buffer starts as the gradient itself).
        first: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
        /// The tensors.
        table: Table,
    }

    /// Adam's and AdamW's step, as PyTorch's.
    pub(crate) struct AdamParams as adam {
        /// Learning rate.
        lr: f32,
        /// First moment decay.
        beta1: f32,
        /// Second moment decay.
        beta2: f32,
        /// Denominator epsilon.
        eps: f32,
        /// Weight decay.
        weight_decay: f32,
        /// Decoupled weight decay (AdamW, 0/1).
        decoupled: u32,
        /// `1 - beta1^t`.
        bc1: f32,
        /// `1 - beta2^t`.
        bc2: f32,
        /// The tensors.
        table: Table,
    }

    /// Clipping's first pass: sums of squares per workgroup.
    pub(crate) struct ClipSumsqParams as clipsq {
        /// Elements per workgroup.
        per_group: u32,
        /// Where this dispatch's partial sums start.
        offset: u32,
        /// The dispatch's workgroups.
        groups: u32,
        /// Padding.
        _pad: u32,
        /// The tensors.
        table: Table,
    }

    /// Clipping's last pass: every gradient times the scale.
    pub(crate) struct ClipScaleParams as clipsc {
        /// The tensors.
        table: Table,
    }

    /// The reduction of clipping's partial sums (`clip_norm_step`).
    pub(crate) struct ClipNormParams as cn {
        /// Partial sums.
        n: u32,
        /// Partial sums per workgroup.
        per_group: u32,
        /// Workgroups.
        groups: u32,
        /// 0: workgroup w writes its sum to y0[w]; 1 (one workgroup): the norm and scale.
        last: u32,
        /// The largest norm kept.
        max_norm: f32,
    }
}

macro_rules! tabled {
    ($($t:ident),*) => {$(
        impl multi_tensor::Tabled for $t {
            fn table(&mut self) -> &mut Table {
                &mut self.table
            }
        }
    )*};
}
tabled!(SgdParams, AdamParams, ClipSumsqParams, ClipScaleParams);

mod clip;
pub use clip::clip_grad_norm;

/// SGD without momentum: `p -= lr (g + wd p)`.
pub(crate) static SGD: MultiSpec = MultiSpec {
    entry: "sgd_multi_step",
    params: &SgdParams::INFO,
    roles: &[("g", true), ("p", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: "            let p = $p[i];
            $p[i] = p - sgd.lr * ($g[i] + sgd.weight_decay * p);
",
    after: "",
    loops: false,
};

/// SGD with momentum, as `torch.optim.SGD`.
pub(crate) static SGD_MOMENTUM: MultiSpec = MultiSpec {
    entry: "sgd_momentum_multi_step",
    params: &SgdParams::INFO,
    roles: &[("g", true), ("p", false), ("b", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: "            let p = $p[i];
            let g = $g[i] + sgd.weight_decay * p;
            let mom = sgd.momentum;
            var b = g;
            if (sgd.first == 0u) {
                b = mom * $b[i] + (1.0 - sgd.dampening) * g;
            }
            $b[i] = b;
            let d = select(b, g + mom * b, sgd.nesterov == 1u);
            $p[i] = p - sgd.lr * d;
",
    after: "",
    loops: false,
};

/// Adam and AdamW, as PyTorch's.
pub(crate) static ADAM: MultiSpec = MultiSpec {
    entry: "adam_multi_step",
    params: &AdamParams::INFO,
    roles: &[("g", true), ("p", false), ("m", false), ("v", false)],
    shared: &[],
    decls: "",
    before: ELEMENTWISE,
    case: "            var p = $p[i];
            var g = $g[i];
            let lr = adam.lr;
            if (adam.decoupled == 1u) {
                p = p * (1.0 - lr * adam.weight_decay);
            } else {
                g = g + adam.weight_decay * p;
            }
            let m = adam.beta1 * $m[i] + (1.0 - adam.beta1) * g;
            let v = adam.beta2 * $v[i] + (1.0 - adam.beta2) * g * g;
            $m[i] = m;
            $v[i] = v;
            $p[i] = p - lr * (m / adam.bc1) / (sqrt(v / adam.bc2) + adam.eps);
",
    after: "",
    loops: false,
};

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
};

/// The fixed kernel of `shaders/optim.wgsl`, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    clip::kernels()
}

/// The generated kernels, one sample each, for the shader validation tests.
pub(crate) fn generated_sources() -> Vec<ShaderSource> {
    [&SGD, &SGD_MOMENTUM, &ADAM, &CLIP_SUMSQ, &CLIP_SCALE]
        .into_iter()
        .map(multi_tensor::sample_source)
        .collect()
}

/// Hyper-parameters of one SGD step (PyTorch's meaning).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: no buffer).
    pub momentum: f32,
    /// Dampening of the gradient in the momentum buffer.
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Fails unless `v` is finite and not negative (`Invalid {what}: {v}`, PyTorch's words).
fn non_negative(op: &'static str, what: &str, v: f32) -> Result<()> {
    if v >= 0.0 && v.is_finite() {
        Ok(())
    } else {
        arg_err(op, format!("Invalid {what}: {v}"))
    }
}

impl SgdStep {
    /// Checks the hyper-parameters with PyTorch's rules and words: learning rate,
    /// momentum and weight decay finite and not negative (NaN refused), dampening in
    /// `[0, 1]`, and Nesterov only with a momentum and zero dampening.
    pub fn validate(&self) -> Result<()> {
        let op = "sgd_step";
        non_negative(op, "learning rate", self.lr)?;
        non_negative(op, "momentum value", self.momentum)?;
        non_negative(op, "weight_decay value", self.weight_decay)?;
        if !(0.0..=1.0).contains(&self.dampening) {
            return arg_err(
                op,
                format!(
                    "Invalid dampening value: {} (it must be in [0, 1])",
                    self.dampening
                ),
            );
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return arg_err(
                op,
                "Nesterov momentum requires a momentum and zero dampening",
            );
        }
        Ok(())
    }
}

/// One parameter's part of an SGD step.
#[derive(Clone, Copy, Debug)]
pub struct SgdTensors<'a> {
    /// The parameter, updated in place.
    pub param: &'a Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// Its momentum buffer (needed when the momentum is not 0).
    pub buf: Option<&'a Tensor>,
    /// True on the buffer's first step: it starts as the gradient itself.
    pub first: bool,
}

/// Hyper-parameters of one Adam/AdamW step.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// Weight decay: an L2 penalty (Adam) or decoupled shrinkage (AdamW).
    pub weight_decay: f32,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
}

impl AdamStep {
    /// Checks the hyper-parameters with PyTorch's rules and words: learning rate, eps
    /// and weight decay finite and not negative (NaN refused), each beta in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        let op = "adam_step";
        non_negative(op, "learning rate", self.lr)?;
        non_negative(op, "epsilon value", self.eps)?;
        for (i, b) in [self.beta1, self.beta2].into_iter().enumerate() {
            if !(0.0..1.0).contains(&b) {
                return arg_err(op, format!("Invalid beta parameter at index {i}: {b}"));
            }
        }
        non_negative(op, "weight_decay value", self.weight_decay)
    }
}

/// One parameter's part of an Adam step.
#[derive(Clone, Copy, Debug)]
pub struct AdamTensors<'a> {
    /// The parameter, updated in place.
    pub param: &'a Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// First moment.
    pub m: &'a Tensor,
    /// Second moment.
    pub v: &'a Tensor,
    /// This parameter's step number, from 1 (for the bias corrections).
    pub t: u64,
}

/// Fails unless `others` are f32 tensors shaped like `param` on its device, with storage
/// of their own (a gradient sharing its parameter's storage is refused).
fn check(op: &'static str, param: &Tensor, others: &[&Tensor]) -> Result<()> {
    if param.dtype() != DType::F32 {
        return Err(crate::error::Error::DType {
            op,
            msg: format!("optimizers update f32 parameters, got {:?}", param.dtype()),
        });
    }
    for o in others {
        check_pair(op, param, o)?;
        if o.shape() != param.shape() {
            return shape_err(
                op,
                format!(
                    "{:?} does not match the parameter {:?}",
                    o.shape(),
                    param.shape()
                ),
            );
        }
        if o.storage().same_as(param.storage()) {
            return arg_err(op, "the gradient or state shares the parameter's storage");
        }
    }
    Ok(())
}

/// The CPU tensor's data, locked for writing (in-place updates).
fn write_data(t: &Tensor) -> std::sync::RwLockWriteGuard<'_, CpuData> {
    match t.storage() {
        Storage::Cpu(c) => c.write(),
        Storage::Gpu(_) => unreachable!("CPU path"),
    }
}

/// Groups of indices into a list of tensors, one per GPU device and key, in list order.
/// CPU tensors are left out (the caller updates them one by one).
fn gpu_groups<K: PartialEq + Copy>(
    devices: impl Iterator<Item = (Device, K)>,
) -> Vec<(Arc<GpuContext>, K, Vec<usize>)> {
    let mut groups: Vec<(Arc<GpuContext>, K, Vec<usize>)> = Vec::new();
    for (i, (dev, key)) in devices.enumerate() {
        let Device::Gpu(ctx) = dev else { continue };
        match groups
            .iter_mut()
            .find(|(c, k, _)| Arc::ptr_eq(c, &ctx) && *k == key)
        {
            Some(g) => g.2.push(i),
            None => groups.push((ctx, key, vec![i])),
        }
    }
    groups
}

/// Runs `spec` over `members` on `ctx` in as few dispatches as the limits allow.
fn launch_all(
    ctx: &Arc<GpuContext>,
    op: &'static str,
    spec: &'static MultiSpec,
    header: impl multi_tensor::Tabled,
    members: &[Member],
) -> Result<()> {
    let chunks =
        multi_tensor::plan_chunks(op, members, multi_tensor::tensors_per_dispatch(ctx, spec))?;
    for c in chunks {
        multi_tensor::launch(ctx, spec, header, &members[c], &[], 256, Work::default());
    }
    Ok(())
}

/// One SGD step of every listed parameter, in place: one dispatch per GPU device (more
/// only past its binding limits), a loop per parameter on the CPU.
pub fn sgd_update(items: &[SgdTensors], hp: SgdStep) -> Result<()> {
    hp.validate()?;
    let momentum = hp.momentum != 0.0;
    for it in items {
        match (momentum, it.buf) {
            (true, Some(b)) => check("sgd_step", it.param, &[it.grad, b])?,
            (true, None) => return arg_err("sgd_step", "momentum needs a buffer per parameter"),
            (false, _) => check("sgd_step", it.param, &[it.grad])?,
        }
    }
    for it in items.iter().filter(|it| it.param.numel() > 0) {
        if matches!(it.param.device(), Device::Cpu) {
            sgd_cpu(it, hp);
        }
    }
    let live = || items.iter().filter(|it| it.param.numel() > 0);
    let keys = live().map(|it| (it.param.device().clone(), it.first));
    let list: Vec<&SgdTensors> = live().collect();
    for (ctx, first, idx) in gpu_groups(keys) {
        let members: Vec<Member> = idx
            .iter()
            .map(|&i| {
                let it = list[i];
                let mut buffers = vec![(it.grad.gpu_buf(), true), (it.param.gpu_buf(), false)];
                if let (true, Some(b)) = (momentum, it.buf) {
                    buffers.push((b.gpu_buf(), false));
                }
                Member {
                    buffers,
                    numel: it.param.numel(),
                }
            })
            .collect();
        let header = SgdParams {
            lr: hp.lr,
            momentum: hp.momentum,
            dampening: hp.dampening,
            weight_decay: hp.weight_decay,
            nesterov: hp.nesterov as u32,
            first: first as u32,
            ..Default::default()
        };
        let spec = if momentum { &SGD_MOMENTUM } else { &SGD };
        launch_all(&ctx, "sgd_step", spec, header, &members)?;
    }
    Ok(())
}

/// The CPU reference of one parameter's SGD step (the kernels' arithmetic, in f32).
fn sgd_cpu(it: &SgdTensors, hp: SgdStep) {
    let g = it.grad.cpu_data();
    let mut p = write_data(it.param);
    let (CpuData::F32(g), CpuData::F32(p)) = (&*g, &mut *p) else {
        unreachable!("checked: f32 tensors")
    };
    let (lr, wd) = (hp.lr, hp.weight_decay);
    match it.buf.filter(|_| hp.momentum != 0.0) {
        None => {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= lr * (g + wd * *p);
            }
        }
        Some(b) => {
            let mut b = write_data(b);
            let CpuData::F32(b) = &mut *b else {
                unreachable!("checked: f32 tensors")
            };
            let (mom, damp) = (hp.momentum, 1.0 - hp.dampening);
            for ((p, b), &g) in p.iter_mut().zip(b.iter_mut()).zip(g) {
                let g = g + wd * *p;
                let bi = if it.first { g } else { mom * *b + damp * g };
                *b = bi;
                let d = if hp.nesterov { g + mom * bi } else { bi };
                *p -= lr * d;
            }
        }
    }
}

/// The bias corrections `1 - beta1^t`, `1 - beta2^t` (in f64, rounded once).
fn bias_corrections(hp: &AdamStep, t: u64) -> (f32, f32) {
    let t = t.min(i32::MAX as u64) as i32;
    (
        (1.0 - (hp.beta1 as f64).powi(t)) as f32,
        (1.0 - (hp.beta2 as f64).powi(t)) as f32,
    )
}

/// One Adam (or AdamW) step of every listed parameter, in place: one dispatch per GPU
/// device and step number (parameters that missed steps have their own), a loop per
/// parameter on the CPU.
pub fn adam_update(items: &[AdamTensors], hp: AdamStep) -> Result<()> {
    hp.validate()?;
    for it in items {
        check("adam_step", it.param, &[it.grad, it.m, it.v])?;
        if it.t == 0 {
            return arg_err("adam_step", "step numbers start at 1");
        }
    }
    for it in items.iter().filter(|it| it.param.numel() > 0) {
        if matches!(it.param.device(), Device::Cpu) {
            adam_cpu(it, hp);
        }
    }
    let live = || items.iter().filter(|it| it.param.numel() > 0);
    let keys = live().map(|it| (it.param.device().clone(), it.t));
    let list: Vec<&AdamTensors> = live().collect();
    for (ctx, t, idx) in gpu_groups(keys) {
        let members: Vec<Member> = idx
            .iter()
            .map(|&i| {
                let it = list[i];
                Member {
                    buffers: vec![
                        (it.grad.gpu_buf(), true),
                        (it.param.gpu_buf(), false),
                        (it.m.gpu_buf(), false),
                        (it.v.gpu_buf(), false),
                    ],
                    numel: it.param.numel(),
                }
            })
            .collect();
        let (bc1, bc2) = bias_corrections(&hp, t);
        let header = AdamParams {
            lr: hp.lr,
            beta1: hp.beta1,
            beta2: hp.beta2,
            eps: hp.eps,
            weight_decay: hp.weight_decay,
            decoupled: hp.decoupled as u32,
            bc1,
            bc2,
            ..Default::default()
        };
        launch_all(&ctx, "adam_step", &ADAM, header, &members)?;
    }
    Ok(())
}

/// The CPU reference of one parameter's Adam step (the kernel's arithmetic, in f32).
fn adam_cpu(it: &AdamTensors, hp: AdamStep) {
    let (bc1, bc2) = bias_corrections(&hp, it.t);
    let g = it.grad.cpu_data();
    let mut p = write_data(it.param);
    let mut m = write_data(it.m);
    let mut v = write_data(it.v);
    let (CpuData::F32(g), CpuData::F32(p), CpuData::F32(m), CpuData::F32(v)) =
        (&*g, &mut *p, &mut *m, &mut *v)
    else {
        unreachable!("checked: f32 tensors")
    };
    let (lr, b1, b2, eps, wd) = (hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay);
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let (mut pi, mut gi) = (*p, g);
        if hp.decoupled {
            pi *= 1.0 - lr * wd;
        } else {
            gi += wd * pi;
        }
        let mi = b1 * *m + (1.0 - b1) * gi;
        let vi = b2 * *v + (1.0 - b2) * gi * gi;
        *m = mi;
        *v = vi;
        *p = pi - lr * (mi / bc1) / ((vi / bc2).sqrt() + eps);
    }
}

#[cfg(test)]
mod tests {
    use crate::optim::{clip_grad_norm, Adam, Optimizer, Sgd};
    use crate::prelude::*;

    /// Parameters of several sizes (one past a workgroup, one of a single element) with
    /// fixed gradients, on `dev`.
    fn params(dev: &Device) -> Vec<Tensor> {
        [&[300usize][..], &[1], &[3, 7], &[2], &[257]]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let p = Tensor::randn_seeded(s, 40 + i as u64, &Device::cpu())
                    .unwrap()
                    .to(dev)
                    .unwrap()
                    .requires_grad_(true)
                    .unwrap();
                let g = Tensor::randn_seeded(s, 80 + i as u64, &Device::cpu())
                    .unwrap()
                    .to(dev)
                    .unwrap();
                p.set_grad(Some(g));
                p
            })
            .collect()
    }

    fn values(ts: &[Tensor]) -> Vec<f32> {
        ts.iter().flat_map(|t| t.to_vec::<f32>().unwrap()).collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 + 1e-5 * y.abs(),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// With at most two tensors per dispatch, five parameters take three dispatches per
    /// update (2 + 2 + 1) and clipping seven (3 + 1 + 3), with the CPU's results.
    #[test]
    fn a_capped_dispatch_runs_in_balanced_chunks_with_the_cpus_results() {
        let gpu = Device::gpu().expect("a GPU adapter (lavapipe will do)");
        let Device::Gpu(ctx) = &gpu else {
            unreachable!()
        };
        ctx.set_multi_tensor_cap(2);
        let cpu = Device::cpu();
        type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;
        let makes: [(&str, Make); 2] = [
            ("sgd", |p| {
                Box::new(Sgd::new(p, 0.1).momentum(0.9).nesterov(true))
            }),
            ("adam", |p| Box::new(Adam::new(p, 0.01).weight_decay(0.1))),
        ];
        for (what, make) in makes {
            let (pc, pg) = (params(&cpu), params(&gpu));
            let (mut oc, mut og) = (make(pc.clone()), make(pg.clone()));
            for _ in 0..2 {
                oc.step().unwrap();
                gpu.sync().unwrap();
                let before = gpu.counters().dispatches;
                og.step().unwrap();
                assert_eq!(gpu.counters().dispatches - before, 3, "{what}");
            }
            close(&values(&pg), &values(&pc), what);
        }
        let (pc, pg) = (params(&cpu), params(&gpu));
        let nc = clip_grad_norm(&pc, 0.5).unwrap().unwrap();
        gpu.sync().unwrap();
        let before = gpu.counters().dispatches;
        let ng = clip_grad_norm(&pg, 0.5).unwrap().unwrap();
        assert_eq!(gpu.counters().dispatches - before, 7, "clipping");
        close(
            &[ng.item().unwrap() as f32],
            &[nc.item().unwrap() as f32],
            "norm",
        );
        let grads =
            |ps: &[Tensor]| values(&ps.iter().map(|p| p.grad().unwrap()).collect::<Vec<_>>());
        close(&grads(&pg), &grads(&pc), "clipped gradients");
        ctx.set_multi_tensor_cap(0);
    }

    /// The sums of squares are split so that one workgroup reduces at most 16K partials.
    #[test]
    fn clipping_grows_its_workgroups_before_it_needs_a_second_reduction_pass() {
        assert_eq!(super::clip::clip_per_group(&[1000, 1]), (1024, 2));
        assert_eq!(super::clip::clip_per_group(&[1 << 24]), (1024, 1 << 14));
        assert_eq!(
            super::clip::clip_per_group(&[(1 << 24) + 1]),
            (2048, (1 << 13) + 1)
        );
        assert_eq!(super::clip::clip_per_group(&[1 << 30]), (16384, 1 << 16));
    }
}
