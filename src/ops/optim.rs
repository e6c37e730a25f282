//! Fused optimizer updates and gradient clipping over whole parameter lists.
//!
//! On the GPU one multi-tensor dispatch updates every parameter and its state in place
//! (more only when the list is longer than one dispatch may bind), and `clip_grad_norm`
//! is three dispatches: per-workgroup sums of squares over every gradient, one workgroup
//! turning them into the norm and the scale, and the scaling of every gradient in place.
//! Nothing is read back and nothing is allocated but the clipping's partial sums and
//! norm (pooled). The CPU reference runs the same arithmetic in `f32`, so both devices
//! follow the same trajectory up to rounding. This file checks the arguments and hands
//! each device's tensors to its backend (`backend::{cpu,gpu}::optim`). Half-precision
//! parameters step through `f32` copies rounded back once (PyTorch's opmath).

use crate::backend::{AdadeltaSlot, AdagradSlot, AdamSlot, Grad, Guard, RmspropSlot, SgdSlot};
use crate::device::Device;
use crate::error::{arg_err, shape_err, Result};
use crate::tensor::{check_pair, DType, Tensor};

pub use crate::backend::optim::{AdadeltaStep, AdagradStep, AdamStep, RmspropStep, SgdStep};

/// Fails unless `v` is finite and not negative (`Invalid {what}: {v}`, PyTorch's words).
fn non_negative(op: &'static str, what: &str, v: f64) -> Result<()> {
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

impl AdagradStep {
    /// Checks the hyper-parameters with PyTorch's rules and words: learning rate,
    /// learning-rate decay, weight decay, initial accumulator value and eps finite and
    /// not negative (NaN refused).
    pub fn validate(&self) -> Result<()> {
        let op = "adagrad_step";
        non_negative(op, "learning rate", self.lr)?;
        non_negative(op, "lr_decay value", self.lr_decay)?;
        non_negative(op, "weight_decay value", self.weight_decay)?;
        non_negative(
            op,
            "initial_accumulator_value value",
            self.initial_accumulator_value,
        )?;
        non_negative(op, "epsilon value", self.eps)
    }
}

/// One parameter's part of an Adagrad step.
#[derive(Clone, Copy, Debug)]
pub struct AdagradTensors<'a> {
    /// The parameter, updated in place.
    pub param: &'a Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// The sum of squared gradients (PyTorch's `sum`).
    pub sum: &'a Tensor,
    /// This parameter's step number, from 1 (for the learning-rate decay).
    pub t: u64,
}

impl RmspropStep {
    /// Checks the hyper-parameters with PyTorch's rules and words: learning rate, eps,
    /// momentum, weight decay and alpha finite and not negative (NaN refused).
    pub fn validate(&self) -> Result<()> {
        let op = "rmsprop_step";
        non_negative(op, "learning rate", self.lr)?;
        non_negative(op, "epsilon value", self.eps)?;
        non_negative(op, "momentum value", self.momentum)?;
        non_negative(op, "weight_decay value", self.weight_decay)?;
        non_negative(op, "alpha value", self.alpha)
    }
}

/// One parameter's part of an RMSprop step.
#[derive(Clone, Copy, Debug)]
pub struct RmspropTensors<'a> {
    /// The parameter, updated in place.
    pub param: &'a Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// The running average of squared gradients (PyTorch's `square_avg`).
    pub square_avg: &'a Tensor,
    /// The momentum buffer (needed when the momentum is not 0).
    pub momentum_buffer: Option<&'a Tensor>,
    /// The running average of gradients (needed when centered).
    pub grad_avg: Option<&'a Tensor>,
}

impl AdadeltaStep {
    /// Checks the hyper-parameters with PyTorch's rules and words: learning rate, eps and
    /// weight decay finite and not negative (NaN refused), rho in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        let op = "adadelta_step";
        non_negative(op, "learning rate", self.lr)?;
        if !(0.0..=1.0).contains(&self.rho) {
            return arg_err(op, format!("Invalid rho value: {}", self.rho));
        }
        non_negative(op, "epsilon value", self.eps)?;
        non_negative(op, "weight_decay value", self.weight_decay)
    }
}

/// One parameter's part of an Adadelta step.
#[derive(Clone, Copy, Debug)]
pub struct AdadeltaTensors<'a> {
    /// The parameter, updated in place.
    pub param: &'a Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// The running average of squared gradients (PyTorch's `square_avg`).
    pub square_avg: &'a Tensor,
    /// The running average of squared updates (PyTorch's `acc_delta`).
    pub acc_delta: &'a Tensor,
}

/// Fails unless `param` is a float tensor (`f32`, or a half type, stepped through `f32`
/// copies: [`widen`]) and `others` are tensors of its dtype shaped like it on its
/// device, with storage
/// of their own (a gradient sharing its parameter's storage, or a state sharing the
/// gradient's or another state's, is refused).
fn check(op: &'static str, param: &Tensor, others: &[&Tensor]) -> Result<()> {
    if !matches!(param.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        return Err(crate::error::Error::DType {
            op,
            msg: format!(
                "optimizers update f32, f16 and bf16 parameters, got {:?}",
                param.dtype()
            ),
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
    // A state sharing storage with the gradient or another state (a dispatch cannot bind
    // a buffer both ways, and the CPU cannot lock it both ways).
    for (i, o) in others.iter().enumerate() {
        if others[..i].iter().any(|e| e.storage().same_as(o.storage())) {
            return arg_err(
                op,
                "a tensor's gradient shares storage with its parameter or state; give it a \
                 gradient of its own",
            );
        }
    }
    Ok(())
}

/// True when any of `params` is a half-precision tensor.
fn any_half<'a>(mut params: impl Iterator<Item = &'a Tensor>) -> bool {
    params.any(|p| p.dtype().is_half())
}

/// One item's tensors for a half-precision step: the parameter, the gradient and the
/// states (absent ones `None`).
type Roles<'a> = (&'a Tensor, &'a Tensor, Vec<Option<&'a Tensor>>);

/// The same, widened to `f32` (a half tensor as an `f32` copy; an `f32` one as itself).
type Wide = (Tensor, Tensor, Vec<Option<Tensor>>);

/// `f32` copies of every half tensor of `roles`: optimizers step half-precision
/// parameters and states in `f32` and round them once, as PyTorch's (its "opmath").
fn widen(roles: &[Roles]) -> Result<Vec<Wide>> {
    let wide = |t: &Tensor| -> Result<Tensor> {
        if t.dtype().is_half() {
            t.float()
        } else {
            Ok(t.clone())
        }
    };
    roles
        .iter()
        .map(|(p, g, st)| {
            let st = st
                .iter()
                .map(|t| t.map(wide).transpose())
                .collect::<Result<_>>()?;
            Ok((wide(p)?, wide(g)?, st))
        })
        .collect()
}

/// Rounds the stepped `f32` copies back into the half parameters and states they came
/// from (in place: every handle sees the new values).
fn narrow_back(roles: &[Roles], wide: &[Wide]) -> Result<()> {
    let back = |dst: &Tensor, src: &Tensor| -> Result<()> {
        if dst.dtype().is_half() {
            dst.copy_from(&src.to_dtype(dst.dtype())?)?;
        }
        Ok(())
    };
    for ((p, _, st), (wp, _, wst)) in roles.iter().zip(wide) {
        back(p, wp)?;
        for (t, w) in st.iter().zip(wst) {
            if let (Some(t), Some(w)) = (t, w) {
                back(t, w)?;
            }
        }
    }
    Ok(())
}

/// What makes a step guarded: the device skips it when the gradient scaler's state
/// flags a non-finite gradient, and reads the step numbers from the optimizer's counts on
/// the device, advancing them afterwards (see [`Guard`]). Built by the optimizers
/// (`optim::steps`), which keep these tensors.
pub(crate) struct StepGuard<'a> {
    /// The scaler's state `[scale, growth_tracker, found_inf]`.
    pub found: &'a Tensor,
    /// The counts, `f32`, one per parameter of the optimizer.
    pub steps: &'a Tensor,
    /// Per listed item with elements, its parameter's index into `steps` (`f32`).
    pub live: &'a Tensor,
    /// Per listed item, its parameter's index into `steps` (`f32`).
    pub all: &'a Tensor,
    /// Whether the step advances the counts.
    pub count: bool,
}

/// Hands each device's slots to its backend (`step`); a guarded step's slots must all
/// be on the scaler's device, with one index per item (`items` of them).
fn dispatch<S>(
    op: &'static str,
    items: usize,
    live: Vec<(&Device, S)>,
    guard: Option<&StepGuard>,
    step: impl Fn(&Device, &[S], Option<&Guard>) -> Result<()>,
) -> Result<()> {
    let Some(g) = guard else {
        for (dev, slots) in by_device(live.into_iter()) {
            step(dev, &slots, None)?;
        }
        return Ok(());
    };
    let dev = g.found.device();
    for t in [g.steps, g.live, g.all] {
        check_pair(op, g.found, t)?;
    }
    if live.iter().any(|(d, _)| *d != dev) {
        return arg_err(
            op,
            "a guarded step's parameters must be on the scaler's device",
        );
    }
    if g.live.numel() != live.len() || g.all.numel() != items {
        return arg_err(op, "a guarded step needs one step index per parameter");
    }
    let slots: Vec<S> = live.into_iter().map(|(_, s)| s).collect();
    let guard = Guard {
        found: g.found.storage(),
        steps: g.steps.storage(),
        live: g.live.storage(),
        all: g.all.storage(),
        n_all: items,
    };
    if !slots.is_empty() {
        step(dev, &slots, Some(&guard))?;
    }
    if g.count {
        dev.backend().count_steps(&guard)?;
    }
    Ok(())
}

/// Groups `items` by device, in order of first appearance (list order within a group).
fn by_device<'a, T>(items: impl Iterator<Item = (&'a Device, T)>) -> Vec<(&'a Device, Vec<T>)> {
    let mut groups: Vec<(&Device, Vec<T>)> = Vec::new();
    for (dev, it) in items {
        match groups.iter_mut().find(|(d, _)| *d == dev) {
            Some(g) => g.1.push(it),
            None => groups.push((dev, vec![it])),
        }
    }
    groups
}

/// One SGD step of every listed parameter, in place: one dispatch per GPU device (more
/// only past its binding limits), a loop per parameter on the CPU.
pub fn sgd_update(items: &[SgdTensors], hp: SgdStep) -> Result<()> {
    sgd_run(items, hp, None)
}

/// [`sgd_update`], guarded when `guard` is given.
pub(crate) fn sgd_run(items: &[SgdTensors], hp: SgdStep, guard: Option<&StepGuard>) -> Result<()> {
    hp.validate()?;
    let momentum = hp.momentum != 0.0;
    for it in items {
        match (momentum, it.buf) {
            (true, Some(b)) => check("sgd_step", it.param, &[it.grad, b])?,
            (true, None) => return arg_err("sgd_step", "momentum needs a buffer per parameter"),
            (false, _) => check("sgd_step", it.param, &[it.grad])?,
        }
    }
    if any_half(items.iter().map(|it| it.param)) {
        let roles: Vec<_> = items
            .iter()
            .map(|it| (it.param, it.grad, vec![it.buf]))
            .collect();
        let w = widen(&roles)?;
        let wide: Vec<SgdTensors> = items
            .iter()
            .zip(&w)
            .map(|(it, (p, g, st))| SgdTensors {
                param: p,
                grad: g,
                buf: st[0].as_ref(),
                first: it.first,
            })
            .collect();
        sgd_run(&wide, hp, guard)?;
        return narrow_back(&roles, &w);
    }
    let live = items.iter().filter(|it| it.param.numel() > 0).map(|it| {
        let slot = SgdSlot {
            param: it.param.storage(),
            grad: it.grad.storage(),
            buf: it.buf.filter(|_| momentum).map(|b| b.storage()),
            first: it.first,
            numel: it.param.numel(),
        };
        (it.param.device(), slot)
    });
    let live: Vec<_> = live.collect();
    dispatch("sgd_step", items.len(), live, guard, |dev, slots, g| {
        dev.backend().sgd_step(slots, &hp, g)
    })
}

/// One Adam (or AdamW) step of every listed parameter, in place: one dispatch per GPU
/// device and step number (parameters that missed steps have their own), a loop per
/// parameter on the CPU.
pub fn adam_update(items: &[AdamTensors], hp: AdamStep) -> Result<()> {
    adam_run(items, hp, None)
}

/// [`adam_update`], guarded when `guard` is given.
pub(crate) fn adam_run(
    items: &[AdamTensors],
    hp: AdamStep,
    guard: Option<&StepGuard>,
) -> Result<()> {
    hp.validate()?;
    for it in items {
        check("adam_step", it.param, &[it.grad, it.m, it.v])?;
        if it.t == 0 {
            return arg_err("adam_step", "step numbers start at 1");
        }
    }
    if any_half(items.iter().map(|it| it.param)) {
        let roles: Vec<_> = items
            .iter()
            .map(|it| (it.param, it.grad, vec![Some(it.m), Some(it.v)]))
            .collect();
        let w = widen(&roles)?;
        let mut wide = Vec::with_capacity(items.len());
        for (it, (p, g, st)) in items.iter().zip(&w) {
            if let [Some(m), Some(v)] = &st[..] {
                wide.push(AdamTensors {
                    param: p,
                    grad: g,
                    m,
                    v,
                    t: it.t,
                });
            }
        }
        adam_run(&wide, hp, guard)?;
        return narrow_back(&roles, &w);
    }
    let live = items.iter().filter(|it| it.param.numel() > 0).map(|it| {
        let slot = AdamSlot {
            param: it.param.storage(),
            grad: it.grad.storage(),
            m: it.m.storage(),
            v: it.v.storage(),
            t: it.t,
            numel: it.param.numel(),
        };
        (it.param.device(), slot)
    });
    let live: Vec<_> = live.collect();
    dispatch("adam_step", items.len(), live, guard, |dev, slots, g| {
        dev.backend().adam_step(slots, &hp, g)
    })
}

/// One Adagrad step of every listed parameter, in place: one dispatch per GPU device
/// and step number (parameters that missed steps have their own), a loop per parameter
/// on the CPU.
pub fn adagrad_update(items: &[AdagradTensors], hp: AdagradStep) -> Result<()> {
    adagrad_run(items, hp, None)
}

/// [`adagrad_update`], guarded when `guard` is given.
pub(crate) fn adagrad_run(
    items: &[AdagradTensors],
    hp: AdagradStep,
    guard: Option<&StepGuard>,
) -> Result<()> {
    hp.validate()?;
    for it in items {
        check("adagrad_step", it.param, &[it.grad, it.sum])?;
        if it.t == 0 {
            return arg_err("adagrad_step", "step numbers start at 1");
        }
    }
    if any_half(items.iter().map(|it| it.param)) {
        let roles: Vec<_> = items
            .iter()
            .map(|it| (it.param, it.grad, vec![Some(it.sum)]))
            .collect();
        let w = widen(&roles)?;
        let mut wide = Vec::with_capacity(items.len());
        for (it, (p, g, st)) in items.iter().zip(&w) {
            if let [Some(sum)] = &st[..] {
                wide.push(AdagradTensors {
                    param: p,
                    grad: g,
                    sum,
                    t: it.t,
                });
            }
        }
        adagrad_run(&wide, hp, guard)?;
        return narrow_back(&roles, &w);
    }
    let live = items.iter().filter(|it| it.param.numel() > 0).map(|it| {
        let slot = AdagradSlot {
            param: it.param.storage(),
            grad: it.grad.storage(),
            sum: it.sum.storage(),
            t: it.t,
            numel: it.param.numel(),
        };
        (it.param.device(), slot)
    });
    let live: Vec<_> = live.collect();
    dispatch("adagrad_step", items.len(), live, guard, |dev, slots, g| {
        dev.backend().adagrad_step(slots, &hp, g)
    })
}

/// One RMSprop step of every listed parameter, in place: one dispatch per GPU device
/// (more only past its binding limits), a loop per parameter on the CPU.
pub fn rmsprop_update(items: &[RmspropTensors], hp: RmspropStep) -> Result<()> {
    rmsprop_run(items, hp, None)
}

/// [`rmsprop_update`], guarded when `guard` is given.
pub(crate) fn rmsprop_run(
    items: &[RmspropTensors],
    hp: RmspropStep,
    guard: Option<&StepGuard>,
) -> Result<()> {
    hp.validate()?;
    let momentum = hp.momentum != 0.0;
    for it in items {
        let mut others = vec![it.grad, it.square_avg];
        match (momentum, it.momentum_buffer) {
            (true, Some(b)) => others.push(b),
            (true, None) => {
                return arg_err("rmsprop_step", "momentum needs a buffer per parameter")
            }
            (false, _) => {}
        }
        match (hp.centered, it.grad_avg) {
            (true, Some(a)) => others.push(a),
            (true, None) => {
                return arg_err(
                    "rmsprop_step",
                    "centered needs a gradient average per parameter",
                )
            }
            (false, _) => {}
        }
        check("rmsprop_step", it.param, &others)?;
    }
    if any_half(items.iter().map(|it| it.param)) {
        let roles: Vec<_> = items
            .iter()
            .map(|it| {
                let st = vec![Some(it.square_avg), it.momentum_buffer, it.grad_avg];
                (it.param, it.grad, st)
            })
            .collect();
        let w = widen(&roles)?;
        let mut wide = Vec::with_capacity(items.len());
        for (p, g, st) in &w {
            if let [Some(square_avg), b, a] = &st[..] {
                wide.push(RmspropTensors {
                    param: p,
                    grad: g,
                    square_avg,
                    momentum_buffer: b.as_ref(),
                    grad_avg: a.as_ref(),
                });
            }
        }
        rmsprop_run(&wide, hp, guard)?;
        return narrow_back(&roles, &w);
    }
    let live = items.iter().filter(|it| it.param.numel() > 0).map(|it| {
        let slot = RmspropSlot {
            param: it.param.storage(),
            grad: it.grad.storage(),
            square_avg: it.square_avg.storage(),
            momentum_buffer: it.momentum_buffer.filter(|_| momentum).map(|b| b.storage()),
            grad_avg: it.grad_avg.filter(|_| hp.centered).map(|a| a.storage()),
            numel: it.param.numel(),
        };
        (it.param.device(), slot)
    });
    let live: Vec<_> = live.collect();
    dispatch("rmsprop_step", items.len(), live, guard, |dev, slots, g| {
        dev.backend().rmsprop_step(slots, &hp, g)
    })
}

/// One Adadelta step of every listed parameter, in place: one dispatch per GPU device
/// (more only past its binding limits), a loop per parameter on the CPU.
pub fn adadelta_update(items: &[AdadeltaTensors], hp: AdadeltaStep) -> Result<()> {
    adadelta_run(items, hp, None)
}

/// [`adadelta_update`], guarded when `guard` is given.
pub(crate) fn adadelta_run(
    items: &[AdadeltaTensors],
    hp: AdadeltaStep,
    guard: Option<&StepGuard>,
) -> Result<()> {
    hp.validate()?;
    for it in items {
        check(
            "adadelta_step",
            it.param,
            &[it.grad, it.square_avg, it.acc_delta],
        )?;
    }
    if any_half(items.iter().map(|it| it.param)) {
        let roles: Vec<_> = items
            .iter()
            .map(|it| {
                (
                    it.param,
                    it.grad,
                    vec![Some(it.square_avg), Some(it.acc_delta)],
                )
            })
            .collect();
        let w = widen(&roles)?;
        let mut wide = Vec::with_capacity(items.len());
        for (p, g, st) in &w {
            if let [Some(square_avg), Some(acc_delta)] = &st[..] {
                wide.push(AdadeltaTensors {
                    param: p,
                    grad: g,
                    square_avg,
                    acc_delta,
                });
            }
        }
        adadelta_run(&wide, hp, guard)?;
        return narrow_back(&roles, &w);
    }
    let live = items.iter().filter(|it| it.param.numel() > 0).map(|it| {
        let slot = AdadeltaSlot {
            param: it.param.storage(),
            grad: it.grad.storage(),
            square_avg: it.square_avg.storage(),
            acc_delta: it.acc_delta.storage(),
            numel: it.param.numel(),
        };
        (it.param.device(), slot)
    });
    let live: Vec<_> = live.collect();
    dispatch(
        "adadelta_step",
        items.len(),
        live,
        guard,
        |dev, slots, g| dev.backend().adadelta_step(slots, &hp, g),
    )
}

/// Scales the gradients `grads` in place so that their global L2 norm is at most
/// `max_norm` (scale `min(1, max_norm / (norm + 1e-6))`, as
/// `torch.nn.utils.clip_grad_norm_`; a non-finite norm gives a NaN or zero scale as
/// there) and returns the norm before clipping as a 0-d tensor on their device, without
/// a readback. A gradient listed twice (or two gradients sharing storage) counts twice in
/// the norm and is scaled once. On the GPU: three dispatches (more only past the binding
/// limits or past 256M elements).
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Result<Tensor> {
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
    fn grad(g: &Tensor) -> Grad<'_> {
        Grad {
            storage: g.storage(),
            numel: g.numel(),
        }
    }
    let all: Vec<Grad> = grads.iter().map(grad).collect();
    let distinct: Vec<Grad> = distinct.into_iter().map(grad).collect();
    let norm = first
        .device()
        .backend()
        .clip_grad_norm(&all, &distinct, max_norm)?;
    Ok(Tensor::like(norm, vec![], first))
}
