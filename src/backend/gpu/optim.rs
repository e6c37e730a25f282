//! The GPU backend's fused optimizer updates and gradient clipping over whole parameter
//! lists: one multi-tensor dispatch ([`super::multi_tensor`]) updates every parameter
//! and its state in place (more only when the list is longer than one dispatch may
//! bind), and clipping is three dispatches: per-workgroup sums of squares over every
//! gradient, one workgroup turning them into the norm and the scale
//! (`shaders/optim.wgsl`), and the scaling of every gradient in place. Nothing is read
//! back and nothing is allocated but the clipping's partial sums and norm (pooled).

use std::sync::Arc;

use super::clip::{CLIP_NORM, CLIP_SCALE, CLIP_SUMSQ};
use super::kernels::{groups_rows, kernel, shader};
use super::multi_tensor::{self, Member, MultiSpec};
use super::optim_specs::{
    ADADELTA, ADAGRAD, ADAM, RMSPROP, RMSPROP_CENTERED, RMSPROP_CENTERED_MOMENTUM,
    RMSPROP_MOMENTUM, SGD, SGD_MOMENTUM,
};
use super::params::{params, Params, Table};
use super::{GpuBuffer, GpuContext, Kernel, ShaderFile, Work};
use crate::backend::optim::{
    adagrad_clr, bias_corrections, AdadeltaStep, AdagradStep, AdamStep, RmspropStep, SgdStep,
};
use crate::backend::{
    AdadeltaSlot, AdagradSlot, AdamSlot, Grad, Guard, Optim, RmspropSlot, SgdSlot, Storage,
};
use crate::error::Result;

pub(crate) const FILE: ShaderFile = shader("optim", include_str!("../../../shaders/optim.wgsl"))
    .with_params(&[&ClipNormParams::INFO, &CountStepsParams::INFO]);

/// `count_steps_step`: the counts after a guarded step.
const COUNT_STEPS: &Kernel = kernel!(
    FILE,
    "count_steps_step",
    [X0, X1, Y0],
    params = CountStepsParams
);

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
        /// A guarded step's first index into `sidx` (its chunk's first tensor).
        base: u32,
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
        /// `ln(beta1)` (at least -1000), for a guarded step's bias corrections.
        lnb1: f32,
        /// `ln(beta2)` (at least -1000).
        lnb2: f32,
        /// A guarded step's first index into `sidx` (its chunk's first tensor).
        base: u32,
        /// Padding.
        _pad: u32,
        /// The tensors.
        table: Table,
    }

    /// Adagrad's step, as `torch.optim.Adagrad`.
    pub(crate) struct AdagradParams as adagrad {
        /// This step's learning rate, `lr / (1 + (t - 1) lr_decay)` (a guarded step's:
        /// `lr`, decayed on the device).
        clr: f32,
        /// Added after the square root.
        eps: f32,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
        /// Learning-rate decay (read by a guarded step).
        lr_decay: f32,
        /// A guarded step's first index into `sidx` (its chunk's first tensor).
        base: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
        /// Padding.
        _pad2: u32,
        /// The tensors.
        table: Table,
    }

    /// RMSprop's step, as `torch.optim.RMSprop`.
    pub(crate) struct RmspropParams as rms {
        /// Learning rate.
        lr: f32,
        /// Smoothing constant.
        alpha: f32,
        /// Added after the square root.
        eps: f32,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
        /// Momentum factor.
        momentum: f32,
        /// A guarded step's first index into `sidx` (its chunk's first tensor).
        base: u32,
        /// Padding.
        _pad1: u32,
        /// Padding.
        _pad2: u32,
        /// The tensors.
        table: Table,
    }

    /// Adadelta's step, as `torch.optim.Adadelta`.
    pub(crate) struct AdadeltaParams as adadelta {
        /// Learning rate.
        lr: f32,
        /// Decay of the running averages.
        rho: f32,
        /// Added inside the square roots.
        eps: f32,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
        /// A guarded step's first index into `sidx` (its chunk's first tensor).
        base: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
        /// Padding.
        _pad2: u32,
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

    /// The counts after a guarded step (`count_steps_step`).
    pub(crate) struct CountStepsParams as cs {
        /// Stepped parameters.
        n: u32,
    }
}

/// The optimizers' parameter structs: a guarded step's chunk sets its first index into
/// `sidx`.
trait Based {
    fn set_base(&mut self, base: u32);
}

macro_rules! based {
    ($($t:ident),*) => {$(
        impl Based for $t {
            fn set_base(&mut self, base: u32) {
                self.base = base;
            }
        }
    )*};
}
based!(
    SgdParams,
    AdamParams,
    AdagradParams,
    RmspropParams,
    AdadeltaParams
);

macro_rules! tabled {
    ($($t:ident),*) => {$(
        impl multi_tensor::Tabled for $t {
            fn table(&mut self) -> &mut Table {
                &mut self.table
            }
        }
    )*};
}
tabled!(
    SgdParams,
    AdamParams,
    AdagradParams,
    RmspropParams,
    AdadeltaParams,
    ClipSumsqParams,
    ClipScaleParams
);

/// The fixed kernel of `shaders/optim.wgsl`, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![CLIP_NORM, COUNT_STEPS]
}

/// The generated kernels, one instance (for three tensors) each, plain and guarded, for
/// the shader validation tests.
pub(crate) fn generated_kernels() -> Vec<&'static Kernel> {
    let specs = [
        &SGD,
        &SGD_MOMENTUM,
        &ADAM,
        &ADAGRAD,
        &RMSPROP,
        &RMSPROP_MOMENTUM,
        &RMSPROP_CENTERED,
        &RMSPROP_CENTERED_MOMENTUM,
        &ADADELTA,
        &CLIP_SUMSQ,
        &CLIP_SCALE,
        &super::amp::AMP_UNSCALE,
    ];
    let mut out = Vec::new();
    for spec in specs {
        out.push(multi_tensor::kernel(spec, 3, false));
        if spec.stepped.is_some() {
            out.push(multi_tensor::kernel(spec, 3, true));
        }
    }
    out
}

/// The chunks of one update: its header, its tensors and how they split into
/// dispatches (all planned before anything is launched).
type Planned<'a, P> = (P, Vec<Member<'a>>, Vec<std::ops::Range<usize>>);

/// Plans `spec` over `members` on `ctx` in as few dispatches as the limits allow.
fn plan<'a, P>(
    ctx: &GpuContext,
    op: &'static str,
    spec: &'static MultiSpec,
    header: P,
    members: Vec<Member<'a>>,
    guarded: bool,
) -> Result<Planned<'a, P>> {
    let per = multi_tensor::tensors_per_dispatch(ctx, spec, guarded);
    let chunks = multi_tensor::plan_chunks(op, &members, per)?;
    Ok((header, members, chunks))
}

/// A guarded step's shared buffers: the scaler's state, the counts, the slots' indices.
fn guard_buffers<'a>(guard: Option<&Guard<'a>>, op: &'static str) -> Result<Vec<&'a GpuBuffer>> {
    match guard {
        None => Ok(Vec::new()),
        Some(g) => Ok(vec![g.found.gpu(op)?, g.steps.gpu(op)?, g.live.gpu(op)?]),
    }
}

/// Launches planned updates of `spec`, one dispatch per chunk; guarded when `shared`
/// holds a guard's buffers (then there is one group, in slot order, and each chunk's
/// header names its first slot).
fn launch_all<P: multi_tensor::Tabled + Based + Copy>(
    ctx: &Arc<GpuContext>,
    spec: &'static MultiSpec,
    planned: &[Planned<P>],
    shared: &[&GpuBuffer],
) {
    let guarded = !shared.is_empty();
    for (header, members, chunks) in planned {
        for c in chunks {
            let mut header = *header;
            header.set_base(c.start as u32);
            multi_tensor::launch(
                ctx,
                spec,
                header,
                &members[c.clone()],
                shared,
                256,
                Work::default(),
                guarded,
            );
        }
    }
}

/// The distinct values of `key` over `items`, in order of first appearance (one group
/// of all items for a guarded step, whose step numbers live on the device).
fn keys<T, K: PartialEq + Copy>(items: &[T], guarded: bool, key: impl Fn(&T) -> K) -> Vec<K> {
    let mut out: Vec<K> = Vec::new();
    for it in items {
        let k = key(it);
        if !out.contains(&k) && (out.is_empty() || !guarded) {
            out.push(k);
        }
    }
    out
}

/// `ln(beta)` for a guarded step's bias correction, at least -1000 (so that beta = 0
/// gives a correction of exactly 1 without an infinity in the shader).
fn ln_beta(beta: f64) -> f32 {
    beta.ln().max(-1000.0) as f32
}

impl Optim for Arc<GpuContext> {
    fn sgd_step(&self, slots: &[SgdSlot], hp: &SgdStep, guard: Option<&Guard>) -> Result<()> {
        let op = "sgd_step";
        let momentum = hp.momentum != 0.0;
        let spec = if momentum { &SGD_MOMENTUM } else { &SGD };
        let guarded = guard.is_some();
        // One dispatch per value of `first` (the buffers' first step or not).
        let mut planned = Vec::new();
        for first in keys(slots, guarded, |s| s.first) {
            let mut members = Vec::new();
            for s in slots.iter().filter(|s| guarded || s.first == first) {
                let mut buffers = vec![(s.grad.gpu(op)?, true), (s.param.gpu(op)?, false)];
                if let (true, Some(b)) = (momentum, s.buf) {
                    buffers.push((b.gpu(op)?, false));
                }
                members.push(Member {
                    buffers,
                    numel: s.numel,
                });
            }
            let header = SgdParams {
                lr: hp.lr as f32,
                momentum: hp.momentum as f32,
                dampening: hp.dampening as f32,
                weight_decay: hp.weight_decay as f32,
                nesterov: hp.nesterov as u32,
                first: first as u32,
                ..Default::default()
            };
            planned.push(plan(self, op, spec, header, members, guarded)?);
        }
        launch_all(self, spec, &planned, &guard_buffers(guard, op)?);
        Ok(())
    }

    fn adam_step(&self, slots: &[AdamSlot], hp: &AdamStep, guard: Option<&Guard>) -> Result<()> {
        let op = "adam_step";
        let guarded = guard.is_some();
        // One dispatch per step number (parameters that missed steps have their own).
        let mut planned = Vec::new();
        for t in keys(slots, guarded, |s| s.t) {
            let mut members = Vec::new();
            for s in slots.iter().filter(|s| guarded || s.t == t) {
                members.push(Member {
                    buffers: vec![
                        (s.grad.gpu(op)?, true),
                        (s.param.gpu(op)?, false),
                        (s.m.gpu(op)?, false),
                        (s.v.gpu(op)?, false),
                    ],
                    numel: s.numel,
                });
            }
            let (bc1, bc2) = bias_corrections(hp, t);
            let header = AdamParams {
                lr: hp.lr as f32,
                beta1: hp.beta1 as f32,
                beta2: hp.beta2 as f32,
                eps: hp.eps as f32,
                weight_decay: hp.weight_decay as f32,
                decoupled: hp.decoupled as u32,
                bc1,
                bc2,
                lnb1: ln_beta(hp.beta1),
                lnb2: ln_beta(hp.beta2),
                ..Default::default()
            };
            planned.push(plan(self, op, &ADAM, header, members, guarded)?);
        }
        launch_all(self, &ADAM, &planned, &guard_buffers(guard, op)?);
        Ok(())
    }

    fn adagrad_step(
        &self,
        slots: &[AdagradSlot],
        hp: &AdagradStep,
        guard: Option<&Guard>,
    ) -> Result<()> {
        let op = "adagrad_step";
        let guarded = guard.is_some();
        // One dispatch per step number (its learning rate decays with it).
        let mut planned = Vec::new();
        for t in keys(slots, guarded, |s| s.t) {
            let mut members = Vec::new();
            for s in slots.iter().filter(|s| guarded || s.t == t) {
                members.push(Member {
                    buffers: vec![
                        (s.grad.gpu(op)?, true),
                        (s.param.gpu(op)?, false),
                        (s.sum.gpu(op)?, false),
                    ],
                    numel: s.numel,
                });
            }
            let header = AdagradParams {
                clr: if guarded {
                    hp.lr as f32
                } else {
                    adagrad_clr(hp, t)
                },
                eps: hp.eps as f32,
                weight_decay: hp.weight_decay as f32,
                lr_decay: hp.lr_decay as f32,
                ..Default::default()
            };
            planned.push(plan(self, op, &ADAGRAD, header, members, guarded)?);
        }
        launch_all(self, &ADAGRAD, &planned, &guard_buffers(guard, op)?);
        Ok(())
    }

    fn rmsprop_step(
        &self,
        slots: &[RmspropSlot],
        hp: &RmspropStep,
        guard: Option<&Guard>,
    ) -> Result<()> {
        let op = "rmsprop_step";
        let momentum = hp.momentum != 0.0;
        let spec = match (momentum, hp.centered) {
            (false, false) => &RMSPROP,
            (true, false) => &RMSPROP_MOMENTUM,
            (false, true) => &RMSPROP_CENTERED,
            (true, true) => &RMSPROP_CENTERED_MOMENTUM,
        };
        let mut members = Vec::new();
        for s in slots {
            let mut buffers = vec![
                (s.grad.gpu(op)?, true),
                (s.param.gpu(op)?, false),
                (s.square_avg.gpu(op)?, false),
            ];
            if let (true, Some(b)) = (momentum, s.momentum_buffer) {
                buffers.push((b.gpu(op)?, false));
            }
            if let (true, Some(a)) = (hp.centered, s.grad_avg) {
                buffers.push((a.gpu(op)?, false));
            }
            members.push(Member {
                buffers,
                numel: s.numel,
            });
        }
        let header = RmspropParams {
            lr: hp.lr as f32,
            alpha: hp.alpha as f32,
            eps: hp.eps as f32,
            weight_decay: hp.weight_decay as f32,
            momentum: hp.momentum as f32,
            ..Default::default()
        };
        let planned = [plan(self, op, spec, header, members, guard.is_some())?];
        launch_all(self, spec, &planned, &guard_buffers(guard, op)?);
        Ok(())
    }

    fn adadelta_step(
        &self,
        slots: &[AdadeltaSlot],
        hp: &AdadeltaStep,
        guard: Option<&Guard>,
    ) -> Result<()> {
        let op = "adadelta_step";
        let mut members = Vec::new();
        for s in slots {
            members.push(Member {
                buffers: vec![
                    (s.grad.gpu(op)?, true),
                    (s.param.gpu(op)?, false),
                    (s.square_avg.gpu(op)?, false),
                    (s.acc_delta.gpu(op)?, false),
                ],
                numel: s.numel,
            });
        }
        let header = AdadeltaParams {
            lr: hp.lr as f32,
            rho: hp.rho as f32,
            eps: hp.eps as f32,
            weight_decay: hp.weight_decay as f32,
            ..Default::default()
        };
        let planned = [plan(self, op, &ADADELTA, header, members, guard.is_some())?];
        launch_all(self, &ADADELTA, &planned, &guard_buffers(guard, op)?);
        Ok(())
    }

    fn count_steps(&self, guard: &Guard) -> Result<()> {
        let op = "count_steps";
        if guard.n_all == 0 {
            return Ok(());
        }
        let p = CountStepsParams {
            n: guard.n_all as u32,
        };
        let buffers = [
            guard.found.gpu(op)?,
            guard.all.gpu(op)?,
            guard.steps.gpu(op)?,
        ];
        self.launch(
            COUNT_STEPS,
            &p,
            &buffers,
            groups_rows(guard.n_all.div_ceil(256)),
        );
        Ok(())
    }

    fn clip_grad_norm(&self, grads: &[Grad], distinct: &[Grad], max_norm: f64) -> Result<Storage> {
        super::clip::clip_gpu(self, grads, distinct, max_norm as f32).map(Storage::new_gpu)
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
}
